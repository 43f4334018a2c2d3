#include "internal/control_socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "internal/syscall.h"

namespace hsi::internal {

absl::StatusOr<uint32_t> TrustedHsidUid(std::optional<uint32_t> configured) {
  if (configured.has_value()) return *configured;
  if (const char* env = std::getenv("HSI_HSID_UID"); env != nullptr && env[0] != '\0') {
    uint32_t uid;
    if (!absl::SimpleAtoi(env, &uid)) {
      return absl::InvalidArgumentError(absl::StrCat("HSI_HSID_UID=\"", env, "\" is not a uid (a decimal number)"));
    }
    return uid;
  }
  return static_cast<uint32_t>(::geteuid());
}

absl::StatusOr<UniqueFd> ConnectControl(const std::string& path, std::optional<uint32_t> hsid_uid) {
  absl::StatusOr<uint32_t> trusted = TrustedHsidUid(hsid_uid);
  if (!trusted.ok()) return trusted.status();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("hsid socket path \"", path, "\" is empty or longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ErrnoStatus(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    return absl::UnavailableError(absl::StrCat("hsid is not reachable at ", path, ": ", std::strerror(errno)));
  }
  // The credentials the kernel recorded when the server called listen():
  // nobody can fake them, and they stay those of whoever bound the socket.
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    return ErrnoStatus(errno, absl::StrCat("SO_PEERCRED of the hsid socket ", path));
  }
  if (cred.uid != 0 && cred.uid != *trusted) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the hsid socket ", path, " is served by uid ", cred.uid, " (pid ", cred.pid, "), not by root or uid ", *trusted,
        " (the uid this client trusts: set HSI_HSID_UID or the options' hsid_uid if hsid runs as another user); "
        "not talking to it"));
  }
  return fd;
}

}  // namespace hsi::internal
