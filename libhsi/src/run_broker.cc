// hsi/run_broker.h: hsi-run's requests to hsid.
#include "hsi/run_broker.h"

#include <fcntl.h>
#include <netinet/in.h>

#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hsi/session.h"
#include "hsi/stream.h"
#include "internal/control_channel.h"

namespace hsi {


struct RunBroker::State final : internal::ControlChannel::Handler {
  State(std::string path, std::optional<uint32_t> uid) : ctl(std::move(path), uid, this) {}
  void OnEvent(wire::Message&) override {}
  void OnStrayReply(wire::Message&) override {}
  void OnLost(const absl::Status&) override {}
  internal::ControlChannel ctl;
};

RunBroker::RunBroker(std::unique_ptr<State> s) : state_(std::move(s)) {}
RunBroker::~RunBroker() = default;

bool RunBroker::connected() const { return state_->ctl.connected(); }

absl::StatusOr<std::unique_ptr<RunBroker>> RunBroker::Connect(const RunBrokerOptions& options) {
  absl::StatusOr<std::string> path = ResolveSocketPath(options.socket_path);
  if (!path.ok()) return path.status();
  auto st = std::make_unique<State>(*path, options.hsid_uid);
  st->ctl.set_timeout(options.timeout);
  const wire::ClaimRequest claim = wire::Zeroed<wire::ClaimRequest>();  // no LPAR
  if (absl::StatusOr<wire::ClaimReply> c = st->ctl.Open(claim); !c.ok()) return c.status();
  return std::unique_ptr<RunBroker>(new RunBroker(std::move(st)));
}

namespace {

absl::StatusOr<UniqueFd> Dup(int fd) {
  const int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return absl::InternalError(absl::StrCat("hsi-run: dup: ", std::strerror(errno)));
  return UniqueFd(d);
}

// Close-on-exec duplicates of `fds`, to send (the message owns them).
absl::StatusOr<std::vector<UniqueFd>> DupAll(std::initializer_list<int> fds) {
  std::vector<UniqueFd> out;
  for (int f : fds) {
    absl::StatusOr<UniqueFd> d = Dup(f);
    if (!d.ok()) return d.status();
    out.push_back(std::move(*d));
  }
  return out;
}

// Maps the peer's ring and page from a reply's two fds.
absl::StatusOr<RunPeer> MapPeerParts(wire::Message& m, const RingGeometry& g, uint64_t stream_id) {
  if (m.fds.size() != 2) return absl::InternalError("hsi-run: the reply carries no segments");
  if (absl::Status s = CheckStreamPage(m.fds[1].get()); !s.ok()) return s;
  RunPeer p;
  p.stream_id = stream_id;
  absl::StatusOr<Segment> ring = Segment::MapPeer(std::move(m.fds[0]), g.segment_size());
  if (!ring.ok()) return ring.status();
  absl::StatusOr<Segment> page = Segment::MapPeer(std::move(m.fds[1]), kStreamPageSize);
  if (!page.ok()) return page.status();
  p.ring = std::move(*ring);
  p.page = std::move(*page);
  return p;
}

}  // namespace

absl::Status RunBroker::Listen(uint64_t listener_id, int fd) {
  auto req = wire::Zeroed<wire::RunListenRequest>();
  req.listener_id = listener_id;
  absl::StatusOr<UniqueFd> d = Dup(fd);
  if (!d.ok()) return d.status();
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(*d));
  wire::Message m;
  return state_->ctl.CallRaw(wire::MsgType::kRunListenRequest, &req, sizeof(req), std::move(fds),
                             wire::MsgType::kRunListenReply, &m);
}

void RunBroker::Unlisten(uint64_t listener_id) {
  auto n = wire::Zeroed<wire::RunUnlistenNotice>();
  n.listener_id = listener_id;
  (void)state_->ctl.Send(wire::Encode(0, n), absl::Now() + state_->ctl.timeout());
}

absl::StatusOr<uint64_t> RunBroker::Propose(int fd, const sockaddr* dest, socklen_t dest_len, const Segment& ring,
                                            const Segment& page, const RingGeometry& geometry, uint32_t* reason) {
  *reason = wire::kRunFallbackInternal;
  auto req = wire::Zeroed<wire::RunProposeRequest>();
  if (dest->sa_family == AF_INET && dest_len >= sizeof(sockaddr_in)) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(dest);
    req.destination.family = AF_INET;
    req.destination.port = ntohs(in->sin_port);
    std::memcpy(req.destination.addr, &in->sin_addr, 4);
  } else if (dest->sa_family == AF_INET6 && dest_len >= sizeof(sockaddr_in6)) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(dest);
    req.destination.family = AF_INET6;
    req.destination.port = ntohs(in6->sin6_port);
    std::memcpy(req.destination.addr, &in6->sin6_addr, 16);
  } else {
    return absl::InvalidArgumentError("hsi-run: not an IPv4 or IPv6 destination");
  }
  req.capacity = geometry.capacity;
  req.mtu = geometry.mtu;
  absl::StatusOr<std::vector<UniqueFd>> fds = DupAll({fd, ring.fd(), page.fd()});
  if (!fds.ok()) return fds.status();
  wire::Message m;
  absl::Status s = state_->ctl.CallRaw(wire::MsgType::kRunProposeRequest, &req, sizeof(req), std::move(*fds),
                                       wire::MsgType::kRunProposeReply, &m);
  if (m.type == wire::MsgType::kRunProposeReply) {
    const auto rep = m.As<wire::RunProposeReply>();
    *reason = rep.reason;
    if (s.ok()) return rep.stream_id;
  } else if (!state_->ctl.connected()) {
    *reason = wire::kRunFallbackNoHsid;
  }
  return s.ok() ? absl::InternalError("hsi-run: no proposal reply") : s;
}

absl::StatusOr<RunPeer> RunBroker::Claim(int fd, const Segment& ring, const Segment& page,
                                         const RingGeometry& geometry, uint32_t* reason) {
  *reason = wire::kRunFallbackInternal;
  auto req = wire::Zeroed<wire::RunClaimRequest>();
  absl::StatusOr<std::vector<UniqueFd>> fds = DupAll({fd, ring.fd(), page.fd()});
  if (!fds.ok()) return fds.status();
  wire::Message m;
  absl::Status s = state_->ctl.CallRaw(wire::MsgType::kRunClaimRequest, &req, sizeof(req), std::move(*fds),
                                       wire::MsgType::kRunClaimReply, &m);
  if (m.type != wire::MsgType::kRunClaimReply) {
    if (!state_->ctl.connected()) *reason = wire::kRunFallbackNoHsid;
    return s.ok() ? absl::InternalError("hsi-run: no claim reply") : s;
  }
  const auto rep = m.As<wire::RunClaimReply>();
  *reason = rep.reason;
  if (!s.ok()) return s;
  *reason = wire::kRunFallbackInternal;
  return MapPeerParts(m, geometry, rep.stream_id);
}

absl::StatusOr<RunPeer> RunBroker::Await(uint64_t stream_id, int fd, uint32_t wait_ms, bool poll,
                                         const RingGeometry& geometry, uint32_t* reason) {
  *reason = wire::kRunFallbackInternal;
  auto req = wire::Zeroed<wire::RunAwaitRequest>();
  req.stream_id = stream_id;
  req.wait_ms = wait_ms;
  req.flags = poll ? uint32_t{wire::kRunAwaitPoll} : 0u;
  absl::StatusOr<UniqueFd> d = Dup(fd);
  if (!d.ok()) return d.status();
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(*d));
  wire::Message m;
  // hsid answers by wait_ms; allow it the call timeout on top.
  const absl::Time deadline = absl::Now() + absl::Milliseconds(wait_ms) + state_->ctl.timeout();
  const absl::Duration saved = state_->ctl.timeout();
  state_->ctl.set_timeout(absl::Milliseconds(wait_ms) + saved);
  absl::Status s = state_->ctl.CallRaw(wire::MsgType::kRunAwaitRequest, &req, sizeof(req), std::move(fds),
                                       wire::MsgType::kRunAwaitReply, &m, deadline);
  state_->ctl.set_timeout(saved);
  if (m.type != wire::MsgType::kRunAwaitReply) {
    if (!state_->ctl.connected()) *reason = wire::kRunFallbackNoHsid;
    return s.ok() ? absl::InternalError("hsi-run: no await reply") : s;
  }
  const auto rep = m.As<wire::RunAwaitReply>();
  *reason = rep.reason;
  if (!s.ok()) return s;
  *reason = wire::kRunFallbackInternal;
  return MapPeerParts(m, geometry, stream_id);
}

namespace {

// A call whose reply ({status, gen} + the peer's ring and page) hands this
// end segments: Reattach and Fetch.
template <typename Req, typename Reply>
absl::StatusOr<RunPeer> CallForParts(internal::ControlChannel& ctl, const Req& req, std::vector<UniqueFd> fds,
                                     const RingGeometry& geometry) {
  wire::Message m;
  absl::Status s = ctl.CallRaw(wire::kTypeOf<Req>, &req, sizeof(req), std::move(fds), wire::kTypeOf<Reply>, &m);
  if (!s.ok()) return s;
  absl::StatusOr<RunPeer> p = MapPeerParts(m, geometry, req.stream_id);
  if (p.ok()) p->gen = m.As<Reply>().gen;
  return p;
}

}  // namespace

absl::StatusOr<RunPeer> RunBroker::Reattach(uint64_t stream_id, uint32_t side, uint64_t peer_gen, int fd,
                                            const Segment& ring, const Segment& page, const RingGeometry& geometry) {
  auto req = wire::Zeroed<wire::RunReattachRequest>();
  req.stream_id = stream_id;
  req.side = side;
  req.peer_gen = peer_gen;
  absl::StatusOr<std::vector<UniqueFd>> fds = DupAll({fd, ring.fd(), page.fd()});
  if (!fds.ok()) return fds.status();
  return CallForParts<wire::RunReattachRequest, wire::RunReattachReply>(state_->ctl, req, std::move(*fds), geometry);
}

absl::StatusOr<RunPeer> RunBroker::Fetch(uint64_t stream_id, uint32_t side, uint64_t have_gen, int fd,
                                         const RingGeometry& geometry) {
  auto req = wire::Zeroed<wire::RunFetchRequest>();
  req.stream_id = stream_id;
  req.side = side;
  req.have_gen = have_gen;
  absl::StatusOr<std::vector<UniqueFd>> fds = DupAll({fd});
  if (!fds.ok()) return fds.status();
  return CallForParts<wire::RunFetchRequest, wire::RunFetchReply>(state_->ctl, req, std::move(*fds), geometry);
}

void RunBroker::Close(uint64_t stream_id, uint32_t side) {
  auto n = wire::Zeroed<wire::RunCloseNotice>();
  n.stream_id = stream_id;
  n.side = side;
  (void)state_->ctl.Send(wire::Encode(0, n), absl::Now() + state_->ctl.timeout());
}

void RunBroker::Fallback(uint32_t reason) {
  auto n = wire::Zeroed<wire::RunFallbackNotice>();
  n.reason = reason;
  (void)state_->ctl.Send(wire::Encode(0, n), absl::Now() + state_->ctl.timeout());
}

}  // namespace hsi
