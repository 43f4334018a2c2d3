// internal/control_socket.h: the client's end of hsid's control socket:
// connecting to it and checking who serves it (DESIGN.md invariant 9).
//
// A client trusts the socket it reached only if SO_PEERCRED names root or
// the uid it expects hsid to run as: SessionOptions::hsid_uid /
// SnifferOptions::hsid_uid, else $HSI_HSID_UID, else the client's own
// effective uid (a user's own hsid). A socket served by anyone else (a
// process that moved the real socket aside and bound its own, a squatter
// in a shared directory) is refused before a single request is sent: a
// fake hsid could otherwise hand out the memory an LPAR's frames go to.
//
// Thread safety: free functions, no shared state.
#ifndef HSI_INTERNAL_CONTROL_SOCKET_H_
#define HSI_INTERNAL_CONTROL_SOCKET_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "hsi/fd.h"

namespace hsi::internal {

// The uid besides root a client trusts to serve hsid: `configured` if set,
// else $HSI_HSID_UID (a decimal uid), else geteuid(). kInvalidArgument if
// $HSI_HSID_UID is not a uid.
absl::StatusOr<uint32_t> TrustedHsidUid(std::optional<uint32_t> configured);

// Connects a non-blocking, close-on-exec SOCK_SEQPACKET socket to `path`
// and checks the server's SO_PEERCRED uid against TrustedHsidUid(). Returns
// the connected socket; kUnavailable when nobody answers at `path` (the
// message names it and errno's text), kPermissionDenied when the socket is
// served by another uid ("... is served by uid 1234 (pid 77), not by root
// or uid 0 ..."), kInvalidArgument for a path too long for sun_path.
absl::StatusOr<UniqueFd> ConnectControl(const std::string& path, std::optional<uint32_t> hsid_uid);

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_CONTROL_SOCKET_H_
