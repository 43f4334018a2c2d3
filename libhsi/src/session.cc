#include "hsi/session.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "hsi/nic.h"
#include "internal/control_socket.h"
#include "internal/session_state.h"
#include "internal/syscall.h"

namespace hsi {

using internal::LinkState;
using internal::Message;
using internal::MsgType;
using internal::NicState;
using internal::SessionState;
namespace wire = internal;

absl::StatusOr<std::string> ResolveSocketPath(absl::string_view explicit_path) {
  if (!explicit_path.empty()) return std::string(explicit_path);
  if (const char* env = std::getenv("HSI_SOCKET"); env != nullptr && env[0] != '\0') return std::string(env);
  if (::geteuid() == 0) return std::string("/run/hsi/hsid.sock");
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && xdg[0] != '\0') {
    return absl::StrCat(xdg, "/hsi/hsid.sock");
  }
  return absl::FailedPreconditionError(
      "no hsid socket: pass a socket path, or set HSI_SOCKET, or XDG_RUNTIME_DIR (for non-root users)");
}

namespace internal {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

int PollMs(absl::Time until) {
  if (until == absl::InfiniteFuture()) return -1;
  absl::Duration left = until - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 1 << 30));
}

// Waits until the control socket is readable or `ms` (PollMs) passes. hsid
// answers most requests within tens of microseconds, less than it takes the
// scheduler to wake a sleeping thread on a busy host, so the wait first
// polls without sleeping for up to kControlSpin, yielding the CPU between
// checks (hsid or the peer may need it), then sleeps in poll(2).
constexpr absl::Duration kControlSpin = absl::Microseconds(150);
void AwaitControl(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  if (ms != 0) {
    const absl::Time spin_end = absl::Now() + kControlSpin;
    do {
      if (::poll(&p, 1, 0) != 0) return;
      ::sched_yield();
    } while (absl::Now() < spin_end);
  }
  ::poll(&p, 1, ms);
}

}  // namespace

std::string NicState::ChpidText() const {
  return absl::AsciiStrToUpper(absl::StrCat(absl::Hex(info.chpid, absl::kZeroPad2)));
}

void NicState::Forget(const std::shared_ptr<LinkState>& l) {
  active.erase(std::remove(active.begin(), active.end(), l), active.end());
  auto it = by_peer.find(l->peer.value());
  if (it != by_peer.end() && it->second == l) by_peer.erase(it);
  if (peeked == l) peeked.reset();
}

SessionState::~SessionState() { Close(); }

void SessionState::Close() {
  closed_ = true;
  ctl_.Reset();
  events_ = nullptr;
  event_page_ = Segment();
}

absl::Status SessionState::Open(bool reclaim) {
  absl::StatusOr<UniqueFd> fd = ConnectControl(path_, opt_.hsid_uid);
  if (!fd.ok()) return fd.status();
  ctl_ = std::move(*fd);
  ClaimRequest req = Zeroed<ClaimRequest>();
  SetName(req.lpar, opt_.lpar);
  req.flags = reclaim ? uint32_t{kClaimReclaim} : uint32_t{0};
  ClaimReply rep;
  Message m;
  absl::Status s = CallRaw(ClaimRequest::kType, &req, sizeof(req), {}, ClaimReply::kType, &m);
  if (s.ok() && m.fds.size() == 1) {
    absl::StatusOr<Segment> page = Segment::MapPeer(std::move(m.fds[0]), kEventPageSize);
    if (page.ok()) {
      event_page_ = std::move(*page);
    } else {
      s = absl::InternalError(absl::StrCat("hsid at ", path_, ": its event page is unusable: ", page.status().message()));
    }
  }
  if (!s.ok()) {
    ctl_.Reset();
    return s;
  }
  rep = m.As<ClaimReply>();
  events_ = static_cast<const uint64_t*>(event_page_.data());
  // Everything hsid sent before this point is on the socket: the next
  // Pump() reads it, and the word counts only what comes after.
  seen_events_ = __atomic_load_n(events_, __ATOMIC_ACQUIRE);
  is_admin_ = rep.is_admin != 0;
  ever_connected_ = true;
  return absl::OkStatus();
}

absl::Status SessionState::CallRaw(MsgType type, const void* body, size_t size, std::vector<UniqueFd> fds,
                                   MsgType reply_type, Message* reply, absl::Time caller_deadline) {
  if (!ctl_.valid()) {
    return absl::UnavailableError(absl::StrCat("hsid at ", path_, " is not connected (reconnecting)"));
  }
  const uint32_t id = NextRequestId();
  const absl::Time deadline = absl::Now() + call_timeout();
  // The send keeps the session's bound: a datagram not sent is reported as
  // a lost connection. The reply is awaited only as long as the caller may.
  const absl::Time reply_by = std::min(caller_deadline, deadline);
  OutMessage out;
  MsgHeader h{kProtoMagic, kProtoVersion, static_cast<uint16_t>(type), id, static_cast<uint32_t>(size)};
  out.bytes.resize(sizeof(h) + size);
  std::memcpy(out.bytes.data(), &h, sizeof(h));
  std::memcpy(out.bytes.data() + sizeof(h), body, size);
  out.fds = std::move(fds);
  if (absl::Status s = SendUntil(ctl_.get(), out, deadline); !s.ok()) {
    // hsid may have refused this connection and closed it before reading
    // the request: its queued answer says why.
    std::optional<absl::Status> refusal = QueuedRefusal(ctl_.get());
    Disconnected(refusal.value_or(s));
    if (refusal.has_value()) return *refusal;
    return absl::UnavailableError(absl::StrCat("hsid at ", path_, ": ", s.message()));
  }
  for (;;) {
    absl::StatusOr<std::optional<Message>> m = TryReceive(ctl_.get(), Direction::kToClient);
    if (!m.ok()) {
      Disconnected(m.status());
      // Out of fds here is ours to fix, not hsid's: keep the code.
      const absl::StatusCode code = m.status().code() == absl::StatusCode::kResourceExhausted
                                        ? absl::StatusCode::kResourceExhausted
                                        : absl::StatusCode::kUnavailable;
      return absl::Status(code, absl::StrCat("hsid at ", path_, ": connection lost: ", m.status().message()));
    }
    if (!m->has_value()) {
      const int ms = PollMs(reply_by);
      if (ms == 0) {
        return absl::DeadlineExceededError(absl::StrCat(
            "hsid at ", path_, " did not answer ", MsgTypeName(static_cast<uint16_t>(type)),
            reply_by < deadline ? " before the deadline"
                                : absl::StrCat(" within ", absl::FormatDuration(call_timeout()))));
      }
      AwaitControl(ctl_.get(), ms);
      continue;
    }
    Message& msg = **m;
    if (msg.type == MsgType::kErrorReply) {
      absl::Status s = FromWire(msg.As<ErrorReply>().status);
      Disconnected(s);
      return s;
    }
    if (msg.request_id == 0) {
      HandleEvent(msg);
      if (!ctl_.valid()) return absl::UnavailableError("hsid connection lost");
      continue;
    }
    if (msg.request_id != id) {  // a LinkRequest's, or a late reply to a request that timed out
      OnReply(msg);
      continue;
    }
    if (msg.type != reply_type) {
      absl::Status s = absl::InternalError(absl::StrCat("hsid answered ", MsgTypeName(static_cast<uint16_t>(msg.type)),
                                                        " to ", MsgTypeName(static_cast<uint16_t>(type))));
      Disconnected(s);
      return s;
    }
    WireStatus ws;
    std::memcpy(&ws, msg.body.data(), sizeof(ws));  // every reply body starts with it
    *reply = std::move(msg);
    return FromWire(ws);
  }
}

void SessionState::Disconnected(const absl::Status& why) {
  ctl_.Reset();
  events_ = nullptr;
  event_page_ = Segment();
  next_reconnect_ = absl::Now();
  backoff_ = absl::Milliseconds(10);
  // Out of fds locally is the caller's to fix, not hsid's: keep the code.
  auto lost = [&](const std::string& link_name) {
    return absl::Status(
        why.code() == absl::StatusCode::kResourceExhausted ? why.code() : absl::StatusCode::kUnavailable,
        absl::StrCat(link_name, ": hsid connection lost during link setup", why.message().empty() ? "" : ": ",
                     why.message()));
  };
  // Links in setup cannot complete without hsid; links that are up stay up.
  for (auto it = links_.begin(); it != links_.end();) {
    auto next = std::next(it);
    if (it->second->state == LinkState::kSetup) {
      it->second->down = true;
      it->second->down_status = lost(it->second->Name());
      links_.erase(it);
    }
    it = next;
  }
  // hsid dropped the pending setups with the connection; a call waiting for
  // one learns why (the next call asks the new connection afresh).
  for (PendingSetup& p : setups_) {
    if (p.failed) continue;
    p.failed = true;
    p.status = lost(absl::StrCat("link ", p.local.ToString(), "->", p.peer.ToString()));
  }
}

void SessionState::Pump() {
  if (!ctl_.valid()) {
    if (!closed_ && opt_.reconnect && ever_connected_ && !in_reconnect_ && absl::Now() >= next_reconnect_) {
      Reconnect();
    }
    return;
  }
  // Read before the socket: an event hsid sends meanwhile moves the word
  // again. Only a drained socket settles it (at most 64 messages a call).
  const uint64_t events = events_ != nullptr ? __atomic_load_n(events_, __ATOMIC_ACQUIRE) : 0;
  for (int i = 0; i < 64 && ctl_.valid(); ++i) {
    absl::StatusOr<std::optional<Message>> m = TryReceive(ctl_.get(), Direction::kToClient);
    if (!m.ok()) return Disconnected(m.status());
    if (!m->has_value()) {
      seen_events_ = events;
      return;
    }
    if ((*m)->type == MsgType::kErrorReply) return Disconnected(FromWire((*m)->As<ErrorReply>().status));
    if ((*m)->request_id == 0) {
      HandleEvent(**m);
    } else {
      OnReply(**m);
    }
  }
}

absl::Status SessionState::EnsureConnected() {
  if (!ctl_.valid()) Pump();
  if (!ctl_.valid()) {
    return absl::UnavailableError(absl::StrCat("hsid at ", path_, " is not reachable (reconnecting with backoff)"));
  }
  return absl::OkStatus();
}

void SessionState::Reconnect() {
  in_reconnect_ = true;
  absl::Status s = Open(/*reclaim=*/true);
  if (s.ok()) {
    // hsid rebuilds its tables from us: the NICs with their addresses, then
    // every live link, each end handing in its own (sealed) segment.
    links_.clear();
    for (auto& nic : nics_) {
      AttachRequest req = Zeroed<AttachRequest>();
      req.chpid = nic->info.chpid;
      req.address = nic->info.address.value();
      std::vector<UniqueFd> fds;
      absl::StatusOr<UniqueFd> bell = internal::DupFd(nic->bell_ring_end, "NIC doorbell");
      if (!bell.ok()) {
        s = bell.status();
        break;
      }
      fds.push_back(std::move(*bell));
      AttachReply rep;
      absl::Status a = Call(req, std::move(fds), &rep);
      if (!ctl_.valid()) {
        s = a;
        break;
      }
      if (!a.ok()) {
        nic->up = false;
        nic->down_status = absl::UnavailableError(absl::StrCat(nic->Name(), ": could not re-attach after hsid restarted: ",
                                                               a.message()));
        // hsid ids start at 1: the old id may now be another NIC's, whose
        // events must not land here.
        nic->nic_id = 0;
        continue;
      }
      nic->nic_id = rep.nic_id;
      // The restarted hsid may have another definition of the CHPID (a new
      // config). Links up now keep the geometry they were made with; new
      // ones get the CHPID's current one, so NicInfo follows hsid.
      nic->info.subnet = Subnet(Address(rep.subnet), static_cast<int>(rep.prefix));
      nic->info.mfs = rep.mfs;
      nic->info.mtu = rep.mtu;
      nic->info.geometry = RingGeometry{rep.capacity, rep.mtu};
      nic->info.drop = rep.overflow == kOverflowDrop;
      for (const auto& l : nic->active) {
        if (l->down) continue;
        RelinkRequest rr = Zeroed<RelinkRequest>();
        rr.nic_id = nic->nic_id;
        rr.peer_address = l->peer.value();
        std::vector<UniqueFd> segfd;
        absl::StatusOr<UniqueFd> seg = l->own.DupFd();
        if (!seg.ok()) continue;
        segfd.push_back(std::move(*seg));
        LinkReply lr;
        absl::Status r = Call(rr, std::move(segfd), &lr);
        if (!ctl_.valid()) break;
        if (!r.ok()) {
          l->down = true;
          l->down_status = absl::UnavailableError(absl::StrCat(l->Name(), ": lost in an hsid restart: ", r.message()));
          continue;
        }
        l->link_id = lr.link_id;
        links_[Key(lr.link_id, nic->nic_id)] = l;
      }
      if (!ctl_.valid()) break;
    }
    if (!ctl_.valid() && s.ok()) s = absl::UnavailableError("hsid connection lost while re-registering");
  }
  in_reconnect_ = false;
  if (!s.ok()) {
    ctl_.Reset();
    next_reconnect_ = absl::Now() + backoff_;
    backoff_ = std::min(backoff_ * 2, absl::Milliseconds(100));
  }
}

NicState* SessionState::NicById(uint32_t nic_id) {
  for (auto& n : nics_) {
    if (n->nic_id == nic_id && !n->detached) return n.get();
  }
  return nullptr;
}

void SessionState::HandleEvent(Message& m) {
  switch (m.type) {
    case MsgType::kLinkOffer: return OnOffer(m);
    case MsgType::kLinkPeer: return OnPeer(m);
    case MsgType::kLinkDown: return OnDown(m);
    case MsgType::kNicStateEvent: return OnNicState(m);
    default: return;
  }
}

void SessionState::OnOffer(Message& m) {
  const auto o = m.As<LinkOffer>();
  LinkSealed sealed = Zeroed<LinkSealed>();
  sealed.link_id = o.link_id;
  sealed.nic_id = o.nic_id;
  NicState* nic = NicById(o.nic_id);
  const RingGeometry g{o.capacity, o.mtu};
  absl::Status s;
  auto l = std::make_shared<LinkState>();
  if (nic == nullptr) {
    s = absl::NotFoundError("no such NIC");
  } else if (g.capacity != nic->info.geometry.capacity || g.mtu != nic->info.geometry.mtu) {
    s = absl::InvalidArgumentError("geometry differs from the CHPID's");
  } else {
    absl::StatusOr<Segment> own = Segment::MapOwner(std::move(m.fds[0]), g.segment_size());
    if (own.ok()) {
      l->own = std::move(*own);
    } else {
      s = own.status();
    }
  }
  sealed.code = static_cast<uint32_t>(s.code());
  if (s.ok()) {
    l->link_id = o.link_id;
    l->chpid = nic->info.chpid;
    l->local = nic->info.address;
    l->peer = Address(o.peer_address);
    l->peer_lpar = NameOf(o.peer_lpar);
    l->geometry = g;
    l->drop = nic->info.drop;
    l->own_bell = nic->bell;
    links_[Key(o.link_id, o.nic_id)] = l;
  }
  if (absl::Status st = SendUntil(ctl_.get(), Encode(0, sealed), absl::Now() + opt_.timeout); !st.ok()) {
    Disconnected(st);
  }
}

void SessionState::OnPeer(Message& m) {
  const auto p = m.As<LinkPeer>();
  auto it = links_.find(Key(p.link_id, p.nic_id));
  if (it == links_.end() || it->second->state != LinkState::kSetup) return;
  std::shared_ptr<LinkState> l = it->second;
  NicState* nic = NicById(p.nic_id);
  // Gives the link up here and tells hsid, which tears it down and tells the
  // peer why (else the peer would send into a ring nobody reads).
  auto fail = [&](const absl::Status& s) {
    l->down = true;
    l->down_status = absl::DataLossError(absl::StrCat(l->Name(), ": the peer's segment or doorbell is unusable: ",
                                                      s.message()));
    SetupFailed(p.link_id, p.nic_id, l->down_status);
    links_.erase(it);
    LinkClose close = Zeroed<LinkClose>();
    close.link_id = p.link_id;
    close.nic_id = p.nic_id;
    const WireStatus w = ToWire(l->down_status);
    close.code = w.code;
    std::memcpy(close.text, w.message, sizeof(close.text));
    if (absl::Status st = SendUntil(ctl_.get(), Encode(0, close), absl::Now() + opt_.timeout); !st.ok()) {
      Disconnected(st);
    }
  };
  if (nic == nullptr) return fail(absl::NotFoundError("NIC detached"));
  absl::StatusOr<Segment> peer = Segment::MapPeer(std::move(m.fds[0]), l->geometry.segment_size());
  if (!peer.ok()) return fail(peer.status());
  absl::StatusOr<Doorbell> bell = Doorbell::Adopt(std::move(m.fds[1]));
  if (!bell.ok()) return fail(bell.status());
  l->peer_segment = std::move(*peer);
  l->peer_bell = std::move(*bell);
  absl::StatusOr<RingProducer> tx = RingProducer::Create(l->own, l->peer_segment, *l->own_bell, l->peer_bell, l->geometry);
  if (!tx.ok()) return fail(tx.status());
  absl::StatusOr<RingConsumer> rx = RingConsumer::Create(l->own, l->peer_segment, *l->own_bell, l->peer_bell, l->geometry);
  if (!rx.ok()) return fail(rx.status());
  l->tx = std::move(*tx);
  l->rx = std::move(*rx);
  l->state = LinkState::kReady;
  SetupUp(p.link_id, p.nic_id);
  // A previous link to this peer that died stays in `active` until drained.
  for (auto& n : nics_) {
    if (n.get() != nic) continue;
    n->active.push_back(l);
    n->by_peer[l->peer.value()] = l;
  }
}

void SessionState::OnDown(const Message& m) {
  const auto d = m.As<LinkDown>();
  const absl::Status why = absl::UnavailableError(absl::string_view(d.text, strnlen(d.text, sizeof(d.text))));
  SetupFailed(d.link_id, d.nic_id, why);
  auto it = links_.find(Key(d.link_id, d.nic_id));
  if (it == links_.end()) return;
  it->second->down = true;
  it->second->down_status = why;
  links_.erase(it);
}

void SessionState::OnNicState(const Message& m) {
  const auto e = m.As<NicStateEvent>();
  NicState* nic = NicById(e.nic_id);
  if (nic == nullptr) return;
  nic->up = e.up != 0;
  nic->down_status = nic->up ? absl::OkStatus()
                             : absl::UnavailableError(absl::StrCat(nic->Name(), " was set down by an admin"));
}

template <typename Ready, typename Arm>
absl::Status SessionState::WaitLoop(NicState& nic, const Wait& wait, Ready ready, Arm arm) {
  if (ready()) return absl::OkStatus();
  if (wait.mode != WaitMode::kBlock) {
    const absl::Time spin_end = wait.mode == WaitMode::kSpin ? wait.deadline
                                                            : std::min(wait.deadline, absl::Now() + wait.spin_for);
    for (uint32_t i = 1;; ++i) {
      if (ready()) return absl::OkStatus();
      CpuRelax();
      if ((i & 1023) == 0) {
        Pump();
        if (spin_end != absl::InfiniteFuture() && absl::Now() >= spin_end) break;
      }
      if (spin_end == absl::InfinitePast()) break;
    }
    if (ready()) return absl::OkStatus();
    if (wait.mode == WaitMode::kSpin) return absl::DeadlineExceededError("");
  }
  for (;;) {
    Pump();
    arm(true);
    if (ready()) {
      arm(false);
      return absl::OkStatus();
    }
    absl::Time until = wait.deadline;
    if (!ctl_.valid() && opt_.reconnect && !closed_) until = std::min(until, next_reconnect_ + absl::Milliseconds(1));
    const int ms = PollMs(until);
    if (ms == 0 && until == wait.deadline) {
      arm(false);
      return absl::DeadlineExceededError("");
    }
    struct pollfd p[2] = {{nic.bell->fd(), POLLIN, 0}, {ctl_.valid() ? ctl_.get() : -1, POLLIN, 0}};
    ::poll(p, 2, ms);
    arm(false);
    nic.bell->Drain();
    if (ready()) return absl::OkStatus();
  }
}

absl::StatusOr<std::shared_ptr<NicState>> SessionState::Attach(uint32_t chpid, std::optional<Address> address) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // The NIC's doorbell is split (a pipe): hsid and the peers get only its
  // ring end, so no peer can consume our wake-ups (docs/ring.md).
  auto nic = std::make_shared<NicState>();
  absl::StatusOr<Doorbell> bell = Doorbell::CreateSplit(&nic->bell_ring_end);
  if (!bell.ok()) return bell.status();
  nic->bell = std::make_shared<Doorbell>(std::move(*bell));
  absl::StatusOr<UniqueFd> dup = internal::DupFd(nic->bell_ring_end, "NIC doorbell");
  if (!dup.ok()) return dup.status();
  AttachRequest req = Zeroed<AttachRequest>();
  req.chpid = chpid;
  req.address = address ? address->value() : 0;
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(*dup));
  AttachReply rep;
  if (absl::Status s = Call(req, std::move(fds), &rep); !s.ok()) return s;
  nic->nic_id = rep.nic_id;
  nic->info.chpid = chpid;
  nic->info.address = Address(rep.address);
  nic->info.subnet = Subnet(Address(rep.subnet), static_cast<int>(rep.prefix));
  nic->info.mfs = rep.mfs;
  nic->info.mtu = rep.mtu;
  nic->info.geometry = RingGeometry{rep.capacity, rep.mtu};
  nic->info.drop = rep.overflow == kOverflowDrop;
  nics_.push_back(nic);
  return nic;
}

void SessionState::Detach(NicState& nic) {
  if (nic.detached) return;
  if (ctl_.valid()) {
    DetachRequest req = Zeroed<DetachRequest>();
    req.nic_id = nic.nic_id;
    DetachReply rep;
    (void)Call(req, {}, &rep);
  }
  nic.detached = true;
  for (auto& l : nic.active) {
    if (!l->down) {
      l->down = true;
      l->down_status = absl::FailedPreconditionError(absl::StrCat(l->Name(), ": NIC ", l->local.ToString(), " was detached"));
    }
  }
  for (auto it = links_.begin(); it != links_.end();) {
    auto next = std::next(it);
    if ((it->first & 0xffffffffu) == nic.nic_id) links_.erase(it);
    it = next;
  }
  std::erase_if(setups_, [&](const PendingSetup& p) { return p.nic_id == nic.nic_id; });
  nics_.erase(std::remove_if(nics_.begin(), nics_.end(), [&](const auto& n) { return n.get() == &nic; }), nics_.end());
}

absl::StatusOr<std::shared_ptr<LinkState>> SessionState::GetLink(NicState& nic, Address peer, absl::Time deadline) {
  if (auto it = nic.by_peer.find(peer.value()); it != nic.by_peer.end() && !it->second->down) return it->second;
  std::vector<SetupWant> wants(1);
  wants[0].peer = peer;
  SetUpLinks(nic, wants, deadline, [](SetupWant&) {});
  if (wants[0].link != nullptr) return std::move(wants[0].link);
  return wants[0].status;
}

namespace {
// hsid gives a setup up after 5 s (kSetupTimeout in daemon/server.cc) and
// says so with a LinkDown; this only keeps an entry that never heard of its
// end from counting against max_link_setups for ever.
constexpr absl::Duration kSetupBackstop = absl::Seconds(10);
}  // namespace

SessionState::PendingSetup* SessionState::FindSetup(uint32_t nic_id, Address peer) {
  for (PendingSetup& p : setups_) {
    if (p.nic_id == nic_id && p.peer == peer) return &p;
  }
  return nullptr;
}

size_t SessionState::SetupsInFlight() {
  const absl::Time now = absl::Now();
  std::erase_if(setups_, [&](const PendingSetup& p) { return p.expires <= now; });
  return static_cast<size_t>(
      std::count_if(setups_.begin(), setups_.end(), [](const PendingSetup& p) { return !p.failed; }));
}

void SessionState::SetupUp(uint32_t link_id, uint32_t nic_id) {
  std::erase_if(setups_, [&](const PendingSetup& p) { return p.link_id == link_id && p.nic_id == nic_id; });
}

void SessionState::SetupFailed(uint32_t link_id, uint32_t nic_id, const absl::Status& why) {
  for (PendingSetup& p : setups_) {
    if (p.link_id == link_id && p.nic_id == nic_id && link_id != 0 && !p.failed) {
      p.failed = true;
      p.status = why;
    }
  }
}

void SessionState::OnReply(Message& m) {
  if (m.type != MsgType::kLinkReply) return;  // a late reply to a request that timed out
  auto p = std::find_if(setups_.begin(), setups_.end(),
                        [&](const PendingSetup& x) { return x.request_id != 0 && x.request_id == m.request_id; });
  if (p == setups_.end()) return;
  const auto r = m.As<LinkReply>();
  p->request_id = 0;
  if (absl::Status s = FromWire(r.status); !s.ok()) {
    p->failed = true;
    p->status = std::move(s);
    return;
  }
  p->link_id = r.link_id;
  // hsid answers with the pair's link if it has one, which may be up.
  if (auto it = links_.find(Key(r.link_id, p->nic_id)); it != links_.end() && it->second->state == LinkState::kReady) {
    setups_.erase(p);
  }
}

absl::Status SessionState::StartSetup(NicState& nic, Address peer) {
  LinkRequest req = Zeroed<LinkRequest>();
  req.nic_id = nic.nic_id;
  req.peer_address = peer.value();
  const uint32_t id = NextRequestId();
  if (absl::Status s = SendUntil(ctl_.get(), Encode(id, req), absl::Now() + call_timeout()); !s.ok()) {
    Disconnected(s);
    return absl::UnavailableError(absl::StrCat("hsid at ", path_, ": ", s.message()));
  }
  setups_.push_back(
      PendingSetup{nic.nic_id, nic.info.address, peer, id, 0, absl::Now() + kSetupBackstop, false, absl::OkStatus()});
  return absl::OkStatus();
}

bool SessionState::Settle(NicState& nic, SetupWant& w) {
  if (auto it = nic.by_peer.find(w.peer.value()); it != nic.by_peer.end()) {
    std::shared_ptr<LinkState> l = it->second;
    w.done = true;
    if (!l->down) {
      // Up, maybe made by the peer meanwhile: hsid holds one link per pair.
      std::erase_if(setups_, [&](const PendingSetup& p) { return p.nic_id == nic.nic_id && p.peer == w.peer; });
      w.link = std::move(l);
      return true;
    }
    // A dead link answers once with why; the next call makes a new link.
    nic.by_peer.erase(it);
    w.status = l->down_status;
    w.reason = std::string(w.status.message());
    return true;
  }
  PendingSetup* p = FindSetup(nic.nic_id, w.peer);
  if (p == nullptr || !p->failed) return false;
  w.done = true;
  w.status = p->status;
  w.reason = std::string(w.status.message());
  setups_.erase(setups_.begin() + (p - setups_.data()));
  return true;
}

template <typename OnReady>
void SessionState::SetUpLinks(NicState& nic, std::vector<SetupWant>& wants, absl::Time deadline, OnReady on_ready) {
  const absl::Time start = absl::Now();
  const bool session_bound = deadline > start + opt_.timeout;
  const absl::Time until = session_bound ? start + opt_.timeout : deadline;
  // Setups that failed while no call waited for them: this call asks anew.
  std::erase_if(setups_, [](const PendingSetup& p) { return p.failed; });
  auto fail = [&](SetupWant& w, absl::StatusCode code, std::string reason) {
    w.done = true;
    w.status = absl::Status(code, absl::StrCat("link ", nic.info.address.ToString(), "->", w.peer.ToString(), ": ",
                                               reason));
    w.reason = std::move(reason);
  };
  // Settles what can be settled; the wants whose links are up wait in `up`
  // for on_ready, which notify() runs. True while a want is still open.
  std::vector<SetupWant*> up;
  auto settle_all = [&] {
    bool open = false;
    for (SetupWant& w : wants) {
      if (w.done) continue;
      if (!Settle(nic, w)) {
        open = true;
      } else if (w.link != nullptr) {
        up.push_back(&w);
      }
    }
    return open;
  };
  auto notify = [&] {
    for (SetupWant* w : up) on_ready(*w);  // may pump events; does not touch `up`
    up.clear();
  };
  bool open = settle_all();
  if (open) {
    if (absl::Status s = EnsureConnected(); !s.ok()) {
      for (SetupWant& w : wants) {
        if (w.done) continue;
        w.done = true;
        w.status = s;
        w.reason = std::string(s.message());
      }
      return notify();
    }
  }
  const size_t cap = std::max<uint32_t>(opt_.max_link_setups, 1);
  for (;;) {
    if (!open) return notify();
    if (!ctl_.valid()) {
      for (SetupWant& w : wants) {
        if (!w.done) fail(w, absl::StatusCode::kUnavailable, "hsid connection lost during link setup");
      }
      return notify();
    }
    // Every setup not under way yet goes out now, as many as the cap
    // allows; then links already up get their turn (hsid and the peers work
    // on the new ones meanwhile), then all are awaited together.
    for (SetupWant& w : wants) {
      if (w.done || FindSetup(nic.nic_id, w.peer) != nullptr) continue;
      if (SetupsInFlight() >= cap || !StartSetup(nic, w.peer).ok()) break;
    }
    notify();
    if (!ctl_.valid()) continue;
    if (const int ms = PollMs(until); ms != 0) AwaitControl(ctl_.get(), ms);
    Pump();
    open = settle_all();
    if (absl::Now() >= until) break;
  }
  notify();
  // Out of time: each want says what it was still waiting for.
  const std::string when =
      session_bound    ? absl::StrCat("within SessionOptions::timeout, ", absl::FormatDuration(opt_.timeout))
      : until <= start ? std::string("by the deadline, which had passed")
                       : absl::StrCat("by the deadline, after ",
                                      absl::FormatDuration(absl::Ceil(until - start, absl::Milliseconds(1))));
  for (SetupWant& w : wants) {
    if (w.done) continue;
    const PendingSetup* p = FindSetup(nic.nic_id, w.peer);
    if (!ctl_.valid()) {
      fail(w, absl::StatusCode::kUnavailable, "hsid connection lost during link setup");
    } else if (p == nullptr) {
      fail(w, absl::StatusCode::kUnavailable,
           absl::StrCat("link setup not started ", when, ": ", SetupsInFlight(),
                        " link setups of this session are pending (SessionOptions::max_link_setups = ", cap, ")"));
    } else if (p->request_id != 0) {
      fail(w, absl::StatusCode::kDeadlineExceeded, absl::StrCat("hsid did not answer the link request ", when));
    } else {
      fail(w, absl::StatusCode::kDeadlineExceeded,
           absl::StrCat("not up ", when, ": the peer has not sealed its end of the link; it does not answer",
                        " hsid's link offer, which hsid withdraws after 5s"));
    }
  }
}

absl::Status SessionState::SendOnLink(NicState& nic, LinkState& l, absl::Span<const uint8_t> payload,
                                      const Wait& wait, uint16_t type) {
  if (!l.down && l.tx.TrySend(payload, type)) return absl::OkStatus();
  if (payload.size() > l.geometry.mtu) {
    return absl::InvalidArgumentError(absl::StrCat("CHPID ", nic.ChpidText(), ": ", l.Name(), ": frame of ",
                                                   payload.size(), " bytes exceeds the MTU ", l.geometry.mtu));
  }
  if (l.down) return l.down_status;
  if (!l.tx.ok()) return l.tx.status();
  if (l.drop) {
    l.tx.RecordDrop();
    l.tx.Publish();
    return absl::ResourceExhaustedError(absl::StrCat("CHPID ", nic.ChpidText(), ": ", l.Name(),
                                                     ": ring full, frame dropped (overflow policy drop; counted)"));
  }
  bool sent = false;
  absl::Status w = WaitLoop(
      nic, wait,
      [&] {
        if (l.down || !l.tx.ok()) return true;
        sent = l.tx.TrySend(payload, type);
        return sent;
      },
      [&](bool on) {
        if (on) {
          l.tx.ArmWakeup();
        } else {
          l.tx.DisarmWakeup();
        }
      });
  if (sent) return absl::OkStatus();
  if (l.down) return l.down_status;
  if (!l.tx.ok()) return l.tx.status();
  (void)w;
  return absl::DeadlineExceededError(absl::StrCat("CHPID ", nic.ChpidText(), ": ", l.Name(),
                                                  ": no room in the ring before the deadline"));
}

absl::StatusOr<std::vector<Address>> SessionState::Peers(NicState& nic, absl::Time deadline) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  std::vector<Address> out;
  uint32_t cursor = 0;
  do {
    PeersRequest req = Zeroed<PeersRequest>();
    req.nic_id = nic.nic_id;
    req.cursor = cursor;
    PeersReply rep;
    if (absl::Status s = Call(req, {}, &rep, deadline); !s.ok()) return s;
    for (uint32_t i = 0; i < rep.count; ++i) out.emplace_back(rep.addresses[i]);
    cursor = rep.next_cursor;
  } while (cursor != 0);
  return out;
}

absl::Status SessionState::Broadcast(NicState& nic, absl::Span<const uint8_t> payload, const Wait& wait) {
  absl::StatusOr<std::vector<Address>> peers = Peers(nic, wait.deadline);
  if (!peers.ok()) return peers.status();
  std::vector<SetupWant> wants(peers->size());
  for (size_t i = 0; i < wants.size(); ++i) wants[i].peer = (*peers)[i];
  // Peers with a link get the frame first; the others as their links come
  // up, all under the one deadline.
  SetUpLinks(nic, wants, wait.deadline, [&](SetupWant& w) {
    if (absl::Status s = SendOnLink(nic, *w.link, payload, wait, kTypeBroadcast); !s.ok()) {
      w.status = s;
      w.reason = std::string(s.message());
    }
  });
  size_t reached = 0;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::vector<std::pair<std::string, std::vector<Address>>> not_reached;  // by reason, first seen first
  for (const SetupWant& w : wants) {
    if (w.status.ok()) {
      ++reached;
      continue;
    }
    if (code == absl::StatusCode::kOk) code = w.status.code();
    auto g = std::find_if(not_reached.begin(), not_reached.end(), [&](const auto& x) { return x.first == w.reason; });
    if (g == not_reached.end()) g = not_reached.insert(not_reached.end(), {w.reason, {}});
    g->second.push_back(w.peer);
  }
  if (code == absl::StatusCode::kOk) return absl::OkStatus();
  std::string text = absl::StrCat("CHPID ", nic.ChpidText(), ": broadcast from ", nic.info.address.ToString(),
                                  " reached ", reached, " of ", wants.size(), " peers; not reached: ");
  constexpr size_t kListed = 16;  // addresses named per reason
  for (size_t i = 0; i < not_reached.size(); ++i) {
    const auto& [reason, addrs] = not_reached[i];
    if (i > 0) absl::StrAppend(&text, "; ");
    for (size_t k = 0; k < addrs.size() && k < kListed; ++k) {
      absl::StrAppend(&text, k > 0 ? ", " : "", addrs[k].ToString());
    }
    if (addrs.size() > kListed) absl::StrAppend(&text, " and ", addrs.size() - kListed, " more");
    absl::StrAppend(&text, " (", reason, ")");
  }
  return absl::Status(code, text);
}

}  // namespace internal

// ------------------------------------------------------------------ Session

Session::Session() = default;
Session::~Session() {
  if (state_) state_->Close();
}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&& o) noexcept {
  if (this != &o) {
    if (state_) state_->Close();
    state_ = std::move(o.state_);
  }
  return *this;
}

absl::StatusOr<Session> Session::Connect(SessionOptions options) {
  if (options.lpar.empty()) return absl::InvalidArgumentError("session: an LPAR name is required");
  char name[wire::kNameLen] = {};
  if (options.lpar.size() >= wire::kNameLen) {
    return absl::InvalidArgumentError(absl::StrCat("LPAR name \"", options.lpar, "\" is longer than 31 characters"));
  }
  std::memcpy(name, options.lpar.data(), options.lpar.size());
  if (absl::Status s = wire::ValidateName(name, "LPAR name", false); !s.ok() || options.lpar == "*") {
    return absl::InvalidArgumentError(absl::StrCat("LPAR name \"", options.lpar, "\": ",
                                                   s.ok() ? "\"*\" is reserved" : s.message()));
  }
  absl::StatusOr<std::string> path = ResolveSocketPath(options.socket_path);
  if (!path.ok()) return path.status();
  auto state = std::make_shared<SessionState>(std::move(options), *path);
  if (absl::Status s = state->Open(false); !s.ok()) return s;
  return Session(std::move(state));
}

absl::StatusOr<Nic> Session::AttachNic(uint32_t chpid, std::optional<Address> address) {
  if (!state_) return absl::FailedPreconditionError("session: not connected");
  if (chpid > 0xff) return absl::InvalidArgumentError(absl::StrCat("CHPID ", chpid, " is not in 00..FF"));
  absl::StatusOr<std::shared_ptr<NicState>> n = state_->Attach(chpid, address);
  if (!n.ok()) return n.status();
  Nic nic;
  nic.session_ = state_;
  nic.nic_ = std::move(*n);
  return nic;
}

absl::Status Session::Poll() {
  if (!state_) return absl::FailedPreconditionError("session: not connected");
  state_->Pump();
  return state_->connected() ? absl::OkStatus()
                             : absl::UnavailableError(absl::StrCat("hsid at ", state_->path(), " is not reachable"));
}

bool Session::connected() const { return state_ && state_->connected(); }
int Session::fd() const { return state_ ? state_->ctl_fd() : -1; }
absl::Time Session::next_poll() const { return state_ ? state_->reconnect_at() : absl::InfiniteFuture(); }
const std::string& Session::lpar() const { return state_->options().lpar; }
const std::string& Session::socket_path() const { return state_->path(); }

// ------------------------------------------------------------------ Nic

Nic::Nic() = default;
Nic::~Nic() {
  if (session_ && nic_) session_->Detach(*nic_);
}
Nic::Nic(Nic&&) noexcept = default;
Nic& Nic::operator=(Nic&& o) noexcept {
  if (this != &o) {
    if (session_ && nic_) session_->Detach(*nic_);
    session_ = std::move(o.session_);
    nic_ = std::move(o.nic_);
  }
  return *this;
}

const NicInfo& Nic::info() const { return nic_->info; }
int Nic::fd() const { return nic_->bell->fd(); }

namespace {

// A default-constructed or moved-from handle: a caller's mistake, answered
// with a status rather than a crash.
absl::Status EmptyHandle(const char* what) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": empty handle (default-constructed or moved from)"));
}

absl::Status NicUsable(const NicState& n) {
  if (n.detached) return absl::FailedPreconditionError(absl::StrCat(n.Name(), " is detached"));
  if (!n.up) return n.down_status;
  return absl::OkStatus();
}

// What a `take` in TryAny found on one link. kSkip: a status to report for
// this link's next frame (it does not fit the caller's buffer), which stays
// where it is; the round robin moves on past the link.
enum class Took { kFrame, kEmpty, kError, kSkip };

// Peeks at `l`'s next frame; kError with the ring's status if it is BROKEN.
// An empty ring costs no absl::Status: this runs in every spin of a wait.
Took PeekLink(LinkState& l, hsi::Frame* f, absl::Status* err) {
  if (l.rx.TryPeek(f)) return Took::kFrame;
  if (l.rx.ok()) return Took::kEmpty;
  *err = l.rx.status();
  return Took::kError;
}

// One pass over the NIC's links, round robin. True if a frame was copied
// (or peeked) or there is a status to report in *st. take(link, &err)
// returns what it found, and sets err with kError or kSkip.
template <typename Take>
bool TryAny(NicState& n, absl::Status* st, Take take) {
  if (!n.up) {
    *st = n.down_status;
    return true;
  }
  const size_t count = n.active.size();
  size_t idx = n.rr < count ? n.rr : 0;
  for (size_t k = 0; k < count; ++k, idx = idx + 1 == count ? 0 : idx + 1) {
    // By reference: this runs in every spin of a wait, and a shared_ptr copy
    // costs two atomic read-modify-writes. `take` does not change `active`;
    // Forget() does, so it gets a copy.
    const std::shared_ptr<LinkState>& l = n.active[idx];
    // Read `down` before looking at the ring: a frame committed before the
    // peer died is visible by the time we learn of the death.
    const bool down = l->down;
    absl::Status s;
    const Took took = take(l, &s);
    if (took == Took::kFrame || took == Took::kSkip) {
      if (took == Took::kSkip) *st = std::move(s);
      n.rr = idx + 1;
      return true;
    }
    if (took == Took::kEmpty) {
      if (!down) continue;
      *st = l->down_status;  // drained: report once, then forget the link
      n.Forget(std::shared_ptr<LinkState>(l));
      return true;
    }
    *st = absl::Status(s.code(), absl::StrCat(l->Name(), ": ", s.message()));
    n.Forget(std::shared_ptr<LinkState>(l));
    return true;
  }
  return false;
}

void ArmAll(NicState& n, bool on) {
  for (auto& l : n.active) {
    if (on) {
      l->rx.ArmWakeup();
    } else {
      l->rx.DisarmWakeup();
    }
  }
}

}  // namespace

absl::Status Nic::SendTo(Address to, absl::Span<const uint8_t> payload, const Wait& wait) {
  if (!nic_) return EmptyHandle("Nic::SendTo");
  NicState& n = *nic_;
  session_->MaybePump();  // first: it may bring the NIC back up
  if (absl::Status s = NicUsable(n); !s.ok()) return s;
  if (payload.size() > n.info.mtu) {
    return absl::InvalidArgumentError(absl::StrCat("CHPID ", n.ChpidText(), ": frame ", n.info.address.ToString(), "->",
                                                   to.ToString(), " of ", payload.size(), " bytes exceeds the MTU ",
                                                   n.info.mtu, " (MFS ", n.info.mfs / 1024, "K)"));
  }
  if (to == n.info.subnet.broadcast()) return session_->Broadcast(n, payload, wait);
  if (!n.info.subnet.IsHost(to)) {
    return absl::InvalidArgumentError(absl::StrCat("CHPID ", n.ChpidText(), ": ", to.ToString(),
                                                   " is not a NIC address in subnet ", n.info.subnet.ToString()));
  }
  absl::StatusOr<std::shared_ptr<LinkState>> l = session_->GetLink(n, to, wait.deadline);
  if (!l.ok()) return l.status();
  return session_->SendOnLink(n, **l, payload, wait, internal::kTypeUnicast);
}

absl::StatusOr<Received> Nic::Receive(absl::Span<uint8_t> buffer, const Wait& wait) {
  if (!nic_) return EmptyHandle("Nic::Receive");
  NicState& n = *nic_;
  session_->MaybePump();  // first: it may bring the NIC back up
  if (absl::Status s = NicUsable(n); !s.ok()) return s;
  if (n.peeked) Release();
  Received r;
  absl::Status st;
  bool got = false;
  auto take = [&](const std::shared_ptr<LinkState>& lp, absl::Status* err) {
    LinkState& l = *lp;
    hsi::Frame f;
    if (const Took t = PeekLink(l, &f, err); t != Took::kFrame) return t;
    if (f.payload.size() > buffer.size()) {
      // The frame stays for a call with a buffer that fits it (or a Peek);
      // the other links take their turns meanwhile (TryAny moves on).
      *err = absl::ResourceExhaustedError(absl::StrCat(n.Name(), ": frame of ", f.payload.size(), " bytes from ",
                                                       l.peer.ToString(), " does not fit the ", buffer.size(),
                                                       "-byte buffer"));
      return Took::kSkip;
    }
    uint16_t type = 0;
    absl::StatusOr<size_t> len = l.rx.TryReceive(buffer, &type);  // the frame just peeked
    if (!len.ok()) {
      *err = len.status();
      return Took::kError;
    }
    r.source = l.peer;
    r.length = *len;
    r.broadcast = type == internal::kTypeBroadcast;
    got = true;
    return Took::kFrame;
  };
  absl::Status w = session_->WaitLoop(n, wait, [&] { return TryAny(n, &st, take); },
                                      [&](bool on) { ArmAll(n, on); });
  if (got) return r;
  if (!st.ok()) return st;
  (void)w;
  return absl::DeadlineExceededError(absl::StrCat(n.Name(), ": no frame arrived before the deadline"));
}

absl::StatusOr<FrameView> Nic::Peek(const Wait& wait) {
  if (!nic_) return EmptyHandle("Nic::Peek");
  NicState& n = *nic_;
  session_->MaybePump();  // first: it may bring the NIC back up
  if (absl::Status s = NicUsable(n); !s.ok()) return s;
  if (n.peeked) {
    hsi::Frame f;
    if (n.peeked->rx.TryPeek(&f)) return FrameView{n.peeked->peer, f.payload, f.type == internal::kTypeBroadcast};
    n.peeked.reset();
  }
  session_->MaybePump();
  FrameView v;
  absl::Status st;
  bool got = false;
  auto take = [&](const std::shared_ptr<LinkState>& lp, absl::Status* err) {
    hsi::Frame f;
    if (const Took t = PeekLink(*lp, &f, err); t != Took::kFrame) return t;
    v = FrameView{lp->peer, f.payload, f.type == internal::kTypeBroadcast};
    n.peeked = lp;
    got = true;
    return Took::kFrame;
  };
  session_->WaitLoop(n, wait, [&] { return TryAny(n, &st, take); }, [&](bool on) { ArmAll(n, on); }).IgnoreError();
  if (got) return v;
  if (!st.ok()) return st;
  return absl::DeadlineExceededError(absl::StrCat(n.Name(), ": no frame arrived before the deadline"));
}

void Nic::Release() {
  if (nic_ && nic_->peeked) {
    nic_->peeked->rx.Release();
    nic_->peeked.reset();
  }
}

absl::StatusOr<hsi::Link> Nic::Link(Address peer, const Wait& wait) {
  if (!nic_) return EmptyHandle("Nic::Link");
  NicState& n = *nic_;
  session_->MaybePump();  // first: it may bring the NIC back up
  if (absl::Status s = NicUsable(n); !s.ok()) return s;
  if (!n.info.subnet.IsHost(peer)) {
    return absl::InvalidArgumentError(absl::StrCat("CHPID ", n.ChpidText(), ": ", peer.ToString(),
                                                   " is not a NIC address in subnet ", n.info.subnet.ToString()));
  }
  absl::StatusOr<std::shared_ptr<LinkState>> l = session_->GetLink(n, peer, wait.deadline);
  if (!l.ok()) return l.status();
  hsi::Link link;
  link.session_ = session_;
  link.nic_ = nic_;
  link.link_ = std::move(*l);
  return link;
}

bool Nic::PrepareWait() {
  if (!nic_) return true;  // Receive() then reports the empty handle
  NicState& n = *nic_;
  session_->Pump();
  n.bell->Drain();
  if (!n.up || n.detached) return true;
  ArmAll(n, true);
  for (auto& l : n.active) {
    hsi::Frame f;
    if (l->down || !l->rx.ok() || l->rx.TryPeek(&f)) return true;
  }
  return false;
}

namespace {

// Waits as `wait` says until `l` has a frame and peeks it into *f: OK then;
// else the ring's BROKEN status, the link's down status once it is drained,
// the NIC's status if it is down or detached, or kDeadlineExceeded.
absl::Status WaitForLinkFrame(SessionState& session, NicState& nic, LinkState& l, const Wait& wait, hsi::Frame* f) {
  absl::Status st;
  bool got = false;
  auto ready = [&] {
    const bool down = l.down;  // before the ring: see TryAny
    if (const Took t = PeekLink(l, f, &st); t != Took::kEmpty) {
      got = t == Took::kFrame;
      return true;
    }
    if (down) {
      st = l.down_status;
      return true;
    }
    if (!nic.up || nic.detached) {
      st = NicUsable(nic);
      return true;
    }
    return false;
  };
  if (!ready()) {
    session.WaitLoop(nic, wait, ready, [&](bool on) {
      if (on) {
        l.rx.ArmWakeup();
      } else {
        l.rx.DisarmWakeup();
      }
    }).IgnoreError();
  }
  if (got) return absl::OkStatus();
  if (!st.ok()) return st;
  return absl::DeadlineExceededError(absl::StrCat(l.Name(), ": no frame arrived before the deadline"));
}

}  // namespace

// ------------------------------------------------------------------ Link

Link::Link() = default;
Link::~Link() = default;
Link::Link(Link&&) noexcept = default;
Link& Link::operator=(Link&&) noexcept = default;

Address Link::local() const { return link_->local; }
Address Link::peer() const { return link_->peer; }
absl::Status Link::status() const {
  if (!link_) return EmptyHandle("Link::status");
  session_->MaybePump();  // a link-down hsid already sent is seen here
  if (link_->down) return link_->down_status;
  if (!link_->rx.ok()) return link_->rx.status();
  return link_->tx.status();
}
RingCounters Link::tx_counters() const { return link_->tx.counters(); }
RingCounters Link::rx_counters() const { return link_->rx.counters(); }

absl::Status Link::Send(absl::Span<const uint8_t> payload, const Wait& wait) {
  if (!link_) return EmptyHandle("Link::Send");
  session_->MaybePump();
  if (!link_->down && link_->tx.TrySend(payload)) return absl::OkStatus();
  return session_->SendOnLink(*nic_, *link_, payload, wait, internal::kTypeUnicast);
}

absl::StatusOr<size_t> Link::Receive(absl::Span<uint8_t> buffer, const Wait& wait) {
  if (!link_) return EmptyHandle("Link::Receive");
  session_->MaybePump();
  LinkState& l = *link_;
  l.peeked = false;  // a copying receive consumes a peeked frame
  hsi::Frame f;
  if (absl::Status s = WaitForLinkFrame(*session_, *nic_, l, wait, &f); !s.ok()) return s;
  if (f.payload.size() > buffer.size()) {  // it stays
    return absl::ResourceExhaustedError(absl::StrCat(l.Name(), ": frame of ", f.payload.size(),
                                                     " bytes does not fit the ", buffer.size(), "-byte buffer"));
  }
  return l.rx.TryReceive(buffer);  // the frame just peeked
}

absl::StatusOr<absl::Span<const uint8_t>> Link::Peek(const Wait& wait) {
  if (!link_) return EmptyHandle("Link::Peek");
  session_->MaybePump();
  LinkState& l = *link_;
  hsi::Frame f;
  if (absl::Status s = WaitForLinkFrame(*session_, *nic_, l, wait, &f); !s.ok()) return s;
  l.peeked = true;
  return f.payload;
}

void Link::Release() {
  if (link_ && link_->peeked) {
    link_->rx.Release();
    link_->peeked = false;
  }
}

}  // namespace hsi
