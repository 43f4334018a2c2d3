// daemon/server.h: hsid, the supervisor (the PR/SM role).
//
// One thread, one io_uring event loop (poll requests on the listening
// socket, every client socket, a signalfd and a timeout; the socket I/O
// itself is non-blocking recvmsg/sendmsg with SCM_RIGHTS). hsid admits
// LPARs by SO_PEERCRED and the config's policy, attaches NICs to CHPIDs,
// creates the two sealed ring segments of each link and hands each end its
// own segment, then -- once it has seen both sealed F_SEAL_FUTURE_WRITE --
// the peer's segment and doorbell. It keeps the segment fds only to read
// counters (pread of the owner-written counter block; hsid never maps a
// ring). Frames never pass through hsid (invariant 4).
//
// Thread safety: a Server is used by the one thread that calls Run().
#ifndef HSI_DAEMON_SERVER_H_
#define HSI_DAEMON_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config.h"

namespace hsid {

struct ServerOptions {
  std::string socket_path;  // resolved already
  Config config;
  bool verbose = false;     // log every request to stderr
};

class Server {
 public:
  // Creates the socket directory if needed, refuses to start if another
  // hsid answers on `socket_path`, removes a stale socket and listens.
  static absl::StatusOr<std::unique_ptr<Server>> Create(ServerOptions options);
  virtual ~Server() = default;
  // Serves until SIGTERM or SIGINT; then closes every client and unlinks
  // the socket. Errors only if the event loop itself fails.
  virtual absl::Status Run() = 0;
};

}  // namespace hsid

#endif  // HSI_DAEMON_SERVER_H_
