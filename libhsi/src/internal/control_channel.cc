#include "internal/control_channel.h"

#include <poll.h>
#include <sched.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "internal/control_socket.h"

namespace hsi::internal {

int PollMs(absl::Time until) {
  if (until == absl::InfiniteFuture()) return -1;
  absl::Duration left = until - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 1 << 30));
}

namespace {
constexpr absl::Duration kControlSpin = absl::Microseconds(150);
}  // namespace

void ControlChannel::Await(absl::Time until) const {
  const int ms = PollMs(until);
  struct pollfd p = {fd_.get(), POLLIN, 0};
  if (ms != 0) {
    const absl::Time spin_end = absl::Now() + kControlSpin;
    do {
      if (::poll(&p, 1, 0) != 0) return;
      ::sched_yield();
    } while (absl::Now() < spin_end);
  }
  ::poll(&p, 1, ms);
}

absl::StatusOr<wire::ClaimReply> ControlChannel::Open(const wire::ClaimRequest& claim) {
  Close();
  absl::StatusOr<UniqueFd> fd = ConnectControl(path_, hsid_uid_);
  if (!fd.ok()) return fd.status();
  fd_ = std::move(*fd);
  wire::Message m;
  absl::Status s = CallRaw(wire::kTypeOf<wire::ClaimRequest>, &claim, sizeof(claim), {}, wire::kTypeOf<wire::ClaimReply>, &m);
  if (s.ok()) {
    // A reply that does not refuse carries the page (Decode checks).
    absl::StatusOr<Segment> page = m.fds.size() == 1
                                       ? Segment::MapPeer(std::move(m.fds[0]), wire::kEventPageSize)
                                       : absl::StatusOr<Segment>(absl::InternalError("no page came with the reply"));
    if (page.ok()) {
      event_page_ = std::move(*page);
    } else {
      s = absl::InternalError(absl::StrCat("hsid at ", path_, ": its event page is unusable: ", page.status().message()));
    }
  }
  if (!s.ok()) {
    Close();
    return s;
  }
  events_ = static_cast<const uint64_t*>(event_page_.data());
  // Everything hsid sent before this point is on the socket: the next
  // Pump() reads it, and the word counts only what comes after.
  seen_events_ = __atomic_load_n(events_, __ATOMIC_ACQUIRE);
  return m.As<wire::ClaimReply>();
}

void ControlChannel::Close() {
  fd_.Reset();
  events_ = nullptr;
  event_page_ = Segment();
}

void ControlChannel::Lost(const absl::Status& why) {
  Close();
  handler_->OnLost(why);
}

absl::Status ControlChannel::Send(const wire::OutMessage& out, absl::Time deadline) {
  if (absl::Status s = wire::SendUntil(fd_.get(), out, deadline); !s.ok()) {
    Lost(s);
    return absl::UnavailableError(absl::StrCat("hsid at ", path_, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ControlChannel::SendRequest(wire::MsgType type, uint32_t id, const void* body, size_t size,
                                         std::vector<UniqueFd> fds, absl::Time deadline) {
  wire::OutMessage out;
  wire::MsgHeader h{wire::kProtoMagic, wire::kProtoVersion, static_cast<uint16_t>(type), id, static_cast<uint32_t>(size)};
  out.bytes.resize(sizeof(h) + size);
  std::memcpy(out.bytes.data(), &h, sizeof(h));
  std::memcpy(out.bytes.data() + sizeof(h), body, size);
  out.fds = std::move(fds);
  if (absl::Status s = wire::SendUntil(fd_.get(), out, deadline); !s.ok()) {
    // hsid may have refused this connection and closed it before reading
    // the request: its queued answer says why.
    std::optional<absl::Status> refusal = wire::QueuedRefusal(fd_.get());
    Lost(refusal.value_or(s));
    if (refusal.has_value()) return *refusal;
    return absl::UnavailableError(absl::StrCat("hsid at ", path_, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ControlChannel::CallRaw(wire::MsgType type, const void* body, size_t size, std::vector<UniqueFd> fds,
                                     wire::MsgType reply_type, wire::Message* reply, absl::Time caller_deadline) {
  if (!fd_.valid()) {
    return absl::UnavailableError(absl::StrCat("hsid at ", path_, " is not connected (reconnecting)"));
  }
  const uint32_t id = NextRequestId();
  const absl::Duration timeout = timeout_;
  const absl::Time deadline = absl::Now() + timeout;
  // The send keeps the channel's bound: a datagram not sent is reported as
  // a lost connection. The reply is awaited only as long as the caller may.
  const absl::Time reply_by = std::min(caller_deadline, deadline);
  if (absl::Status s = SendRequest(type, id, body, size, std::move(fds), deadline); !s.ok()) return s;
  for (;;) {
    absl::StatusOr<std::optional<wire::Message>> m = wire::TryReceive(fd_.get(), wire::Direction::kToClient);
    if (!m.ok()) {
      Lost(m.status());
      // Out of fds here is ours to fix, not hsid's: keep the code.
      const absl::StatusCode code = m.status().code() == absl::StatusCode::kResourceExhausted
                                        ? absl::StatusCode::kResourceExhausted
                                        : absl::StatusCode::kUnavailable;
      return absl::Status(code, absl::StrCat("hsid at ", path_, ": connection lost: ", m.status().message()));
    }
    if (!m->has_value()) {
      if (PollMs(reply_by) == 0) {
        return absl::DeadlineExceededError(absl::StrCat(
            "hsid at ", path_, " did not answer ", wire::MsgTypeName(static_cast<uint16_t>(type)),
            reply_by < deadline ? " before the deadline" : absl::StrCat(" within ", absl::FormatDuration(timeout))));
      }
      Await(reply_by);
      continue;
    }
    wire::Message& msg = **m;
    if (msg.type == wire::MsgType::kErrorReply) {
      absl::Status s = wire::FromWire(msg.As<wire::ErrorReply>().status);
      Lost(s);
      return s;
    }
    if (msg.request_id == 0) {
      handler_->OnEvent(msg);
      if (!fd_.valid()) return absl::UnavailableError("hsid connection lost");
      continue;
    }
    if (msg.request_id != id) {  // a LinkRequest's, or a late reply to a request that timed out
      handler_->OnStrayReply(msg);
      continue;
    }
    if (msg.type != reply_type) {
      absl::Status s = absl::InternalError(absl::StrCat("hsid answered ", wire::MsgTypeName(static_cast<uint16_t>(msg.type)),
                                                        " to ", wire::MsgTypeName(static_cast<uint16_t>(type))));
      Lost(s);
      return s;
    }
    wire::WireStatus ws;
    std::memcpy(&ws, msg.body.data(), sizeof(ws));  // every reply body starts with it
    *reply = std::move(msg);
    return wire::FromWire(ws);
  }
}

void ControlChannel::Pump() {
  // Read before the socket: an event hsid sends meanwhile moves the word
  // again. Only a drained socket settles it (at most 64 messages a call).
  const uint64_t events = events_ != nullptr ? __atomic_load_n(events_, __ATOMIC_ACQUIRE) : 0;
  for (int i = 0; i < 64 && fd_.valid(); ++i) {
    absl::StatusOr<std::optional<wire::Message>> m = wire::TryReceive(fd_.get(), wire::Direction::kToClient);
    if (!m.ok()) return Lost(m.status());
    if (!m->has_value()) {
      seen_events_ = events;
      return;
    }
    if ((*m)->type == wire::MsgType::kErrorReply) return Lost(wire::FromWire((*m)->As<wire::ErrorReply>().status));
    if ((*m)->request_id == 0) {
      handler_->OnEvent(**m);
    } else {
      handler_->OnStrayReply(**m);
    }
  }
}

}  // namespace hsi::internal
