#include "hsi/endpoint.h"

#include <fcntl.h>

#include <utility>

namespace hsi {

struct HSI_LOCAL Endpoint::State {
  Segment own;
  Segment peer;
  Doorbell own_bell;
  Doorbell peer_bell;
  Doorbell own_space_bell;
  Doorbell peer_space_bell;
  RingProducer tx;
  RingConsumer rx;
};

absl::StatusOr<EndpointFdPair> CreateEndpointFds(const RingGeometry& geometry) {
  absl::StatusOr<UniqueFd> seg_a = CreateRingSegment(geometry, "hsi-link-a");
  if (!seg_a.ok()) return seg_a.status();
  absl::StatusOr<UniqueFd> seg_b = CreateRingSegment(geometry, "hsi-link-b");
  if (!seg_b.ok()) return seg_b.status();
  absl::StatusOr<Doorbell> bell_a = Doorbell::Create();
  if (!bell_a.ok()) return bell_a.status();
  absl::StatusOr<Doorbell> bell_b = Doorbell::Create();
  if (!bell_b.ok()) return bell_b.status();
  absl::StatusOr<Doorbell> space_a = Doorbell::Create();
  if (!space_a.ok()) return space_a.status();
  absl::StatusOr<Doorbell> space_b = Doorbell::Create();
  if (!space_b.ok()) return space_b.status();

  EndpointFdPair pair;
  auto dup = [](int fd) { return UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0)); };
  pair.a.peer_segment = dup(seg_b->get());
  pair.b.peer_segment = dup(seg_a->get());
  pair.a.peer_bell = dup(bell_b->fd());
  pair.b.peer_bell = dup(bell_a->fd());
  pair.a.peer_space_bell = dup(space_b->fd());
  pair.b.peer_space_bell = dup(space_a->fd());
  pair.a.own_space_bell = dup(space_a->fd());
  pair.b.own_space_bell = dup(space_b->fd());
  if (!pair.a.peer_segment.valid() || !pair.b.peer_segment.valid() ||
      !pair.a.peer_bell.valid() || !pair.b.peer_bell.valid() ||
      !pair.a.peer_space_bell.valid() || !pair.b.peer_space_bell.valid() ||
      !pair.a.own_space_bell.valid() || !pair.b.own_space_bell.valid()) {
    return absl::ResourceExhaustedError("link: out of file descriptors duplicating fds");
  }
  pair.a.own_segment = std::move(*seg_a);
  pair.b.own_segment = std::move(*seg_b);
  absl::StatusOr<UniqueFd> fa = bell_a->Dup();
  if (!fa.ok()) return fa.status();
  absl::StatusOr<UniqueFd> fb = bell_b->Dup();
  if (!fb.ok()) return fb.status();
  pair.a.own_bell = std::move(*fa);
  pair.b.own_bell = std::move(*fb);
  return pair;
}

absl::StatusOr<Endpoint> Endpoint::Open(EndpointFds fds, const RingGeometry& geometry) {
  auto state = std::make_unique<State>();
  absl::StatusOr<Segment> own = Segment::MapOwner(std::move(fds.own_segment), geometry.segment_size());
  if (!own.ok()) return own.status();
  absl::StatusOr<Segment> peer = Segment::MapPeer(std::move(fds.peer_segment), geometry.segment_size());
  if (!peer.ok()) return peer.status();
  absl::StatusOr<Doorbell> own_bell = Doorbell::Adopt(std::move(fds.own_bell));
  if (!own_bell.ok()) return own_bell.status();
  absl::StatusOr<Doorbell> peer_bell = Doorbell::Adopt(std::move(fds.peer_bell));
  if (!peer_bell.ok()) return peer_bell.status();
  absl::StatusOr<Doorbell> own_space = Doorbell::Adopt(std::move(fds.own_space_bell));
  if (!own_space.ok()) return own_space.status();
  absl::StatusOr<Doorbell> peer_space = Doorbell::Adopt(std::move(fds.peer_space_bell));
  if (!peer_space.ok()) return peer_space.status();
  // Each bell must be able to do its job: ours to be waited on, the peer's
  // to be rung.
  using Kind = Doorbell::Kind;
  for (const Doorbell* b : {&*own_bell, &*own_space}) {
    if (b->kind() == Kind::kRingEnd) {
      return absl::InvalidArgumentError("endpoint: an own doorbell is a pipe's write end; it cannot be waited on");
    }
  }
  for (const Doorbell* b : {&*peer_bell, &*peer_space}) {
    if (b->kind() == Kind::kWaitEnd) {
      return absl::InvalidArgumentError("endpoint: a peer doorbell is a pipe's read end; it cannot be rung");
    }
  }
  state->own = std::move(*own);
  state->peer = std::move(*peer);
  state->own_bell = std::move(*own_bell);
  state->peer_bell = std::move(*peer_bell);
  state->own_space_bell = std::move(*own_space);
  state->peer_space_bell = std::move(*peer_space);
  // The producer sleeps on the space doorbell and rings the peer's data
  // doorbell; the consumer sleeps on the data doorbell and rings the peer's
  // space doorbell.
  absl::StatusOr<RingProducer> tx = RingProducer::Create(
      state->own, state->peer, state->own_space_bell, state->peer_bell, geometry);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<RingConsumer> rx = RingConsumer::Create(
      state->own, state->peer, state->own_bell, state->peer_space_bell, geometry);
  if (!rx.ok()) return rx.status();
  state->tx = std::move(*tx);
  state->rx = std::move(*rx);
  Endpoint e;
  e.state_ = std::move(state);
  return e;
}

Endpoint::Endpoint() = default;
Endpoint::~Endpoint() = default;
Endpoint::Endpoint(Endpoint&&) noexcept = default;
Endpoint& Endpoint::operator=(Endpoint&&) noexcept = default;

RingProducer& Endpoint::tx() { return state_->tx; }
RingConsumer& Endpoint::rx() { return state_->rx; }
int Endpoint::fd() const { return state_->own_bell.fd(); }
int Endpoint::space_fd() const { return state_->own_space_bell.fd(); }

}  // namespace hsi
