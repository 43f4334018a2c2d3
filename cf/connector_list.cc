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

}  // namespace hsi::cf
