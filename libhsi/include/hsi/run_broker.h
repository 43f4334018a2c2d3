// hsi/run_broker.h: hsi-run's connection to hsid (docs/hsi-run.md).
//
// One per process that uses hsi-run: it registers the process's listening
// TCP sockets, proposes a connection before connect(), claims an accepted
// one, and awaits the pairing before a connector's first byte. Each call
// hands hsid the socket itself (SCM_RIGHTS) as the proof that the caller
// holds that end of that connection; hsid keeps no reference to it.
// A refusal is not an error for the program: the caller keeps the
// connection on TCP, and `*reason` names why (hsi::wire kRunFallback*).
//
// The connection is an hsid client with no LPAR (ClaimRequest with an empty
// name); it is close-on-exec.
//
// Thread safety: none; the caller serializes (hsi-run holds a lock).
#ifndef HSI_RUN_BROKER_H_
#define HSI_RUN_BROKER_H_

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsi/export.h"
#include "hsi/ring.h"
#include "hsi/segment.h"

namespace hsi {

struct RunBrokerOptions {
  std::string socket_path;               // "": ResolveSocketPath (hsi/session.h)
  std::optional<uint32_t> hsid_uid;      // who may serve it besides root
  absl::Duration timeout = absl::Seconds(2);  // each call's bound
};

// The far end's ring segment and page, mapped read-only.
struct RunPeer {
  uint64_t stream_id = 0;
  Segment ring;
  Segment page;
  uint64_t gen = 0;  // Reattach: the new own segments' generation; Fetch: the peer's
};

class HSI_EXPORT RunBroker {
 public:
  // Connects and says hello. kUnavailable when no hsid answers.
  static absl::StatusOr<std::unique_ptr<RunBroker>> Connect(const RunBrokerOptions& options);
  ~RunBroker();

  // Registers listening socket `fd` under `listener_id`.
  absl::Status Listen(uint64_t listener_id, int fd);
  void Unlisten(uint64_t listener_id);
  // Before connect(): `fd` is bound, not connected, `dest` where it will
  // connect; `ring`/`page` this end's own (sealed) segments. Returns the
  // stream id; a refusal sets `*reason`.
  absl::StatusOr<uint64_t> Propose(int fd, const sockaddr* dest, socklen_t dest_len, const Segment& ring,
                                   const Segment& page, const RingGeometry& geometry, uint32_t* reason);
  // After accept(): `fd` the accepted socket. Returns the connector's
  // segments; kNotFound with *reason = kRunFallbackPlainPeer for a client
  // that proposed nothing.
  absl::StatusOr<RunPeer> Claim(int fd, const Segment& ring, const Segment& page, const RingGeometry& geometry,
                                uint32_t* reason);
  // Connector, before its first byte: waits up to `wait_ms` for the claim
  // (then hsid abandons the proposal: both ends stay on TCP). With `poll`,
  // only looks: kUnavailable while not claimed, the proposal kept open.
  absl::StatusOr<RunPeer> Await(uint64_t stream_id, int fd, uint32_t wait_ms, bool poll, const RingGeometry& geometry,
                                uint32_t* reason);
  // After an exec (docs/hsi-run.md section 5), the new image: hands in
  // `fd` (the stream's socket, as proof) and its fresh, seeded `ring` and
  // `page` for `side` of `stream_id`; `peer_gen` the generation of the
  // peer's segments its old image used. Returns the peer's current
  // segments, and in `gen` the generation hsid gave the new ones.
  absl::StatusOr<RunPeer> Reattach(uint64_t stream_id, uint32_t side, uint64_t peer_gen, int fd, const Segment& ring,
                                   const Segment& page, const RingGeometry& geometry);
  // The peer of an exec: its segments newer than `have_gen` (kUnavailable:
  // its new image has not re-attached yet).
  absl::StatusOr<RunPeer> Fetch(uint64_t stream_id, uint32_t side, uint64_t have_gen, int fd,
                                const RingGeometry& geometry);
  // Notices (no answer): the last descriptor of `side` closed; a fallback
  // this process decided.
  void Close(uint64_t stream_id, uint32_t side);
  void Fallback(uint32_t reason);

  bool connected() const;

 private:
  struct State;
  explicit RunBroker(std::unique_ptr<State> s);
  std::unique_ptr<State> state_;
};

}  // namespace hsi

#endif  // HSI_RUN_BROKER_H_
