// daemon/listen_socket.h: hsid's control socket, made so that no other
// user can interfere with it (issue 13, DESIGN.md invariant 9).
//
// Contract:
// - The socket's directory and every directory above it must be owned by
//   root or hsid's own uid. The socket's own directory must not be writable
//   by group or others at all; a directory above it may be only if it is
//   sticky (as /tmp): there no one can rename or remove what hsid owns.
//   Anything else is refused with a message naming the directory, its owner
//   and mode: another user who can write there could rename a symlink over
//   the socket path, move the socket aside and serve a fake hsid, or squat
//   the name.
// - Missing directories are created 0755 (then checked like the rest).
// - The socket file gets mode 0666 from the socket's inode mode and a zero
//   umask at bind(); hsid never chmods by path (a path can be a symlink by
//   then). Who may do what is decided by SO_PEERCRED and the policy.
// - Another hsid answering on the path: kAlreadyExists. A stale socket
//   (no one answers) is removed; anything else at the path is left alone
//   and refused.
// - The socket is bound at the path with its directory resolved
//   (realpath), so no symlink lies between hsid and its socket.
//
// Thread safety: call before any other thread exists (umask is per process).
#ifndef HSI_DAEMON_LISTEN_SOCKET_H_
#define HSI_DAEMON_LISTEN_SOCKET_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "hsi/fd.h"

namespace hsid {

struct ListenSocket {
  hsi::UniqueFd fd;   // listening, non-blocking, close-on-exec
  std::string path;   // where it is bound (directory resolved)
  bool stale = false; // a previous hsid's socket was found and removed
};

// Checks `dir` (absolute, no symlinks) and its ancestors as above for a
// daemon running as `uid`. kPermissionDenied names the directory.
absl::Status CheckSocketDirectory(const std::string& dir, uid_t uid);

// Creates, checks and binds the control socket at `path`; listens.
absl::StatusOr<ListenSocket> OpenListenSocket(const std::string& path, uid_t uid);

}  // namespace hsid

#endif  // HSI_DAEMON_LISTEN_SOCKET_H_
