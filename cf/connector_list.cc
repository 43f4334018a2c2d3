// connector_list.cc: CfClient's list requests (docs/cf.md). The CF's
// replies are validated as any peer's frames (kDataLoss if malformed).
#include "absl/strings/str_cat.h"
#include "client_internal.h"

namespace hsi::cf {

using proto::Header;
using proto::Reader;
using proto::Writer;

namespace {

absl::Status CheckKey(const std::string& key) {
  if (key.size() > proto::kMaxKey) {
    return absl::InvalidArgumentError(absl::StrCat("list entry key of ", key.size(),
                                                   " bytes: at most ", proto::kMaxKey, " allowed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ListEntry> EntryReply(CfClient::State& s, const std::vector<uint8_t>& rep) {
  Reader r(rep);
  ListEntry e;
  e.key = r.Str("key", proto::kMaxKey);
  e.data = r.Str("data", proto::kMaxData);
  if (absl::Status st = r.Done(); !st.ok())
    return absl::DataLossError(absl::StrCat(s.Name(), ": ", st.message()));
  return e;
}

absl::StatusOr<uint32_t> CountReply(CfClient::State& s, const std::vector<uint8_t>& rep) {
  Reader r(rep);
  const uint32_t n = r.U32("length");
  if (absl::Status st = r.Done(); !st.ok())
    return absl::DataLossError(absl::StrCat(s.Name(), ": ", st.message()));
  return n;
}

}  // namespace

absl::StatusOr<uint32_t> CfClient::Push(const Connection& c, uint32_t list, ListEnd end,
                                        const std::string& key, const std::string& data) {
  if (absl::Status st = CheckKey(key); !st.ok()) return st;
  if (data.size() > proto::kMaxData) {
    return absl::InvalidArgumentError(absl::StrCat(
        "list entry data of ", data.size(), " bytes: at most ", proto::kMaxData, " allowed"));
  }
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kListPush, id, c.token, 0});
  w.U32(list).U8(static_cast<uint8_t>(end)).Str(key).Str(data);
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  return CountReply(*s_, *rep);
}

absl::StatusOr<ListEntry> CfClient::Pop(const Connection& c, uint32_t list, ListEnd end) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kListPop, id, c.token, 0});
  w.U32(list).U8(static_cast<uint8_t>(end));
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  return EntryReply(*s_, *rep);
}

absl::StatusOr<ListEntry> CfClient::Read(const Connection& c, uint32_t list,
                                         const std::string& key) {
  if (absl::Status st = CheckKey(key); !st.ok()) return st;
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kListRead, id, c.token, 0});
  w.U32(list).Str(key);
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  return EntryReply(*s_, *rep);
}

absl::Status CfClient::Delete(const Connection& c, uint32_t list, const std::string& key) {
  if (absl::Status st = CheckKey(key); !st.ok()) return st;
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kListDelete, id, c.token, 0});
  w.U32(list).Str(key);
  return Call(*s_, w, id).status();
}

absl::Status CfClient::Move(const Connection& c, uint32_t from, uint32_t to, const std::string& key,
                            ListEnd end) {
  if (absl::Status st = CheckKey(key); !st.ok()) return st;
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kListMove, id, c.token, 0});
  w.U32(from).U32(to).Str(key).U8(static_cast<uint8_t>(end));
  return Call(*s_, w, id).status();
}

absl::StatusOr<uint32_t> CfClient::Monitor(const Connection& c, uint32_t list, bool on) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kListMonitor, id, c.token, 0});
  w.U32(list).U8(on ? 1 : 0);
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  return CountReply(*s_, *rep);
}

namespace {

// The kPopNote for PopWait request `id` on connection `conn`, taken from
// the event queue; false if it is not there.
bool TakePopped(CfClient::State& s, uint32_t conn, uint64_t id, ListPop* out) {
  for (auto it = s.events.begin(); it != s.events.end(); ++it) {
    if (it->kind != Event::Kind::kPopped || it->request != id || it->conn != conn) continue;
    out->entry = std::move(it->entry);
    out->left = 0;  // the CF hands out an entry only to an empty list's waiter
    s.events.erase(it);
    return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<ListPop> CfClient::PopWait(const Connection& c, uint32_t list, ListEnd end,
                                          const Wait& wait) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kListPopWait, id, c.token, 0});
  w.U32(list).U8(static_cast<uint8_t>(end));
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  Reader r(*rep);
  const uint8_t got = r.U8("got");
  ListPop out;
  out.left = r.U32("left");
  if (got == 1) {
    out.entry.key = r.Str("key", proto::kMaxKey);
    out.entry.data = r.Str("data", proto::kMaxData);
  }
  if (absl::Status st = r.Done(); !st.ok())
    return absl::DataLossError(absl::StrCat(s_->Name(), ": ", st.message()));
  if (got > 1) return absl::DataLossError(absl::StrCat(s_->Name(), ": pop-wait got = ", got));
  if (got == 1) return out;
  // The list was empty: the entry comes in a note with this request's id.
  std::vector<uint8_t> unused;
  bool matched = false;
  while (!TakePopped(*s_, c.token, id, &out)) {
    absl::Status st = ReceiveOne(*s_, wait, 0, &unused, &matched);
    if (st.code() != absl::StatusCode::kDeadlineExceeded) {
      if (!st.ok()) return st;
      continue;
    }
    // Nothing by the deadline: withdraw the request. An entry the CF popped
    // for it before the withdrawal arrives ahead of this reply (one link,
    // in order) and is returned.
    const uint64_t cid = s_->next_id++;
    Writer cw(Header{proto::kListPopCancel, cid, c.token, 0});
    cw.U32(list);
    absl::StatusOr<std::vector<uint8_t>> crep = Call(*s_, cw, cid);
    if (!crep.ok()) return crep.status();
    if (TakePopped(*s_, c.token, id, &out)) return out;
    return absl::DeadlineExceededError(absl::StrCat(c.structure, ": list ", list,
                                                    " stayed empty until the deadline (the pop"
                                                    " is withdrawn)"));
  }
  return out;
}

}  // namespace hsi::cf
