// server_list.cc: hsi-cf's list requests (cf/list_structure.h). Every
// field is read through proto::Reader and checked before use.
#include "absl/strings/str_cat.h"
#include "server.h"

namespace hsi::cf {

namespace {

absl::StatusOr<ListEnd> EndOf(uint8_t e) {
  if (e > 1)
    return absl::InvalidArgumentError(absl::StrCat("list end ", e, " is not 0 (head) or 1 (tail)"));
  return static_cast<ListEnd>(e);
}

}  // namespace

void Server::SendTransitions(const std::vector<Transition>& out) {
  for (const Transition& t : out) {
    auto c = conns_.find(t.conn);
    if (c == conns_.end()) continue;
    if (!t.popped) {
      proto::Writer w(proto::Header{proto::kTransitionNote, 0, t.conn, 0});
      w.U32(t.list);
      Reply(c->second.peer, w.frame());
      continue;
    }
    SendPopNote(c->second, t);
  }
}

void Server::SendPopNote(const Conn& c, const Transition& t) {
  proto::Writer w(proto::Header{proto::kPopNote, t.request_id, t.conn, 0});
  w.U32(t.list).Str(t.entry.key).Str(t.entry.data);
  if (reply_mode_ == ReplyMode::kDrop) return;  // the secondary applying a mirror
  if (reply_mode_ == ReplyMode::kHold) {        // duplexing sends it after the ack (cf/duplex.h)
    held_.push_back(HeldFrame{c.peer, {w.frame().begin(), w.frame().end()}, t});
    return;
  }
  auto l = links_.find(c.peer);
  absl::Status sent = l == links_.end() ? absl::UnavailableError("no link")
                                        : l->second.Send(w.frame(), Wait::Never());
  if (sent.ok()) return;
  // The waiter's ring is full (it does not read) or its link is down:
  // the entry goes back to the head of its list rather than be lost (a
  // transition for its monitors, if any); the waiting pop has ended. A
  // duplexed structure's put-back is mirrored (Duplex::PutBack).
  if (duplex_ && duplex_->PutBack(t, sent)) return;
  std::vector<Transition> again;
  PutBack(c, t, sent, &again).IgnoreError();  // logged
  SendTransitions(again);
}

absl::Status Server::PutBack(const Conn& c, const Transition& t, const absl::Status& why,
                             std::vector<Transition>* again) {
  absl::StatusOr<uint32_t> back =
      StructureOf(c).list->Push(t.list, ListEnd::kHead, t.entry.key, t.entry.data, again);
  Log(absl::StrCat("entry for the waiting pop of ", c.connector, " on list ", t.list, " of ",
                   c.structure, " not sent (", why.message(),
                   "): ", back.ok() ? "back at the list's head" : back.status().message()));
  return back.status();
}

absl::Status Server::DispatchList(const Conn& conn, ListStructure& list, const proto::Header& h,
                                  proto::Reader& r, proto::Writer& w) {
  std::vector<Transition> out;
  switch (h.type) {
    case proto::kListPush: {
      const uint32_t n = r.U32("list");
      const uint8_t e = r.U8("end");
      std::string key = r.Str("key", proto::kMaxKey);
      std::string data = r.Str("data", proto::kMaxData);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<ListEnd> end = EndOf(e);
      if (!end.ok()) return end.status();
      absl::StatusOr<uint32_t> len = list.Push(n, *end, std::move(key), std::move(data), &out);
      if (!len.ok()) return len.status();
      w.U32(*len);
      break;
    }
    case proto::kListPop:
    case proto::kListPopWait: {  // the same body: u32 list, u8 end
      const uint32_t n = r.U32("list");
      const uint8_t e = r.U8("end");
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<ListEnd> end = EndOf(e);
      if (!end.ok()) return end.status();
      if (h.type == proto::kListPop) {
        absl::StatusOr<ListEntry> got = list.Pop(n, *end);
        if (!got.ok()) return got.status();
        w.Str(got->key).Str(got->data);
        break;
      }
      absl::StatusOr<PopWaitResult> got = list.PopWait(h.conn, h.request_id, n, *end);
      if (!got.ok()) return got.status();
      w.U8(got->waiting ? 0 : 1).U32(got->left);
      if (!got->waiting) w.Str(got->entry.key).Str(got->entry.data);
      break;
    }
    case proto::kListPopCancel: {
      const uint32_t n = r.U32("list");
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<bool> withdrawn = list.CancelPopWait(h.conn, n);
      if (!withdrawn.ok()) return withdrawn.status();
      w.U8(*withdrawn ? 1 : 0);
      break;
    }
    case proto::kListRead:
    case proto::kListDelete: {
      const uint32_t n = r.U32("list");
      const std::string key = r.Str("key", proto::kMaxKey);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      if (h.type == proto::kListDelete) return list.Delete(n, key);
      absl::StatusOr<ListEntry> got = list.Read(n, key);
      if (!got.ok()) return got.status();
      w.Str(got->key).Str(got->data);
      break;
    }
    case proto::kListMove: {
      const uint32_t from = r.U32("from list");
      const uint32_t to = r.U32("to list");
      const std::string key = r.Str("key", proto::kMaxKey);
      const uint8_t e = r.U8("end");
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<ListEnd> end = EndOf(e);
      if (!end.ok()) return end.status();
      if (absl::Status s = list.Move(from, to, key, *end, &out); !s.ok()) return s;
      break;
    }
    case proto::kListMonitor: {
      const uint32_t n = r.U32("list");
      const uint8_t on = r.U8("on");
      if (absl::Status s = r.Done(); !s.ok()) return s;
      if (on > 1)
        return absl::InvalidArgumentError(absl::StrCat("monitor: on = ", on, " is not 0 or 1"));
      absl::StatusOr<uint32_t> len = list.Monitor(h.conn, n, on == 1);
      if (!len.ok()) return len.status();
      w.U32(*len);
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("CF ", config_.lpar, ": message type ", h.type, " is a ",
                       h.type >= proto::kCacheRegister ? "cache" : "lock", " request; ",
                       conn.structure, " is a list structure"));
  }
  // Sent by Handle() after the reply: the pusher sees its reply first.
  pending_transitions_.insert(pending_transitions_.end(), out.begin(), out.end());
  return absl::OkStatus();
}

}  // namespace hsi::cf
