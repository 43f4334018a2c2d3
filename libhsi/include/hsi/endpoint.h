// hsi/endpoint.h: one end of a duplex link: two rings over two segments.
//
// A link between ends A and B is two segments and four doorbells. A's
// segment carries the A->B frames with A's producer state and A's consumer
// state for B->A; B's segment the mirror. Each end maps its own segment
// read-write and the other's read-only (invariant 1). The blocking calls
// of tx() and rx() sleep on futexes in the peer's segment (hsi/ring.h), a
// different word for data and for room. For callers that wait on a file
// descriptor (epoll, io_uring) each end also has two doorbells, after
// ArmWakeup(): the data doorbell (fd(), rung by the peer's producer) and
// the space doorbell (space_fd(), rung by the peer's consumer), so that a
// tx thread and an rx thread of one end, both blocked, never take each
// other's wake-ups.
//
// CreateEndpointFds() makes the memory and doorbells for both ends; in a
// running host hsid does this and passes each end its EndpointFds by
// SCM_RIGHTS. Tests, the demo and benchmarks call it before fork().
//
// Thread safety: tx() and rx() may be used by two different threads; each of
// them by one thread at a time.
#ifndef HSI_ENDPOINT_H_
#define HSI_ENDPOINT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "hsi/doorbell.h"
#include "hsi/fd.h"
#include "hsi/ring.h"
#include "hsi/segment.h"
#include "hsi/export.h"

namespace hsi {

// Everything one end needs to open its side of a link.
struct EndpointFds {
  UniqueFd own_segment;   // mapped read-write, then sealed against new writers
  UniqueFd peer_segment;  // mapped read-only
  UniqueFd own_bell;         // this end's consumer sleeps here (data)
  UniqueFd peer_bell;        // this end's producer rings the peer's consumer here
  UniqueFd own_space_bell;   // this end's producer sleeps here (room in a full ring)
  UniqueFd peer_space_bell;  // this end's consumer rings the peer's producer here
};

struct EndpointFdPair {
  EndpointFds a;
  EndpointFds b;
};

// Creates two ring segments (sealed memfds) and four doorbells for a link
// of `geometry`, and hands each end its fds.
HSI_EXPORT absl::StatusOr<EndpointFdPair> CreateEndpointFds(const RingGeometry& geometry);

class HSI_EXPORT Endpoint {
 public:
  // Maps and checks the segments (see Segment::MapOwner/MapPeer) and builds
  // both rings. Errors as Segment and RingProducer/RingConsumer::Create.
  static absl::StatusOr<Endpoint> Open(EndpointFds fds, const RingGeometry& geometry);

  Endpoint();
  ~Endpoint();
  Endpoint(Endpoint&&) noexcept;
  Endpoint& operator=(Endpoint&&) noexcept;

  RingProducer& tx();  // frames to the peer
  RingConsumer& rx();  // frames from the peer
  // This end's data doorbell fd: readable when the peer rang because it sent
  // frames (for epoll/io_uring).
  int fd() const;
  // This end's space doorbell fd: readable when the peer rang because it
  // released room in a ring that was full.
  int space_fd() const;

 private:
  struct HSI_LOCAL State;
  std::unique_ptr<State> state_;
};

}  // namespace hsi

#endif  // HSI_ENDPOINT_H_
