#include "listen_socket.h"

#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hsid {
namespace {

using hsi::UniqueFd;

std::string ModeText(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// Creates the missing directories of `dir` (0755, as hsid's uid).
absl::Status MakeDirs(const std::string& dir) {
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i != dir.size() && dir[i] != '/') continue;
    const std::string part = dir.substr(0, i);
    if (::mkdir(part.c_str(), 0755) < 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("create socket directory ", part));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckSocketDirectory(const std::string& dir, uid_t uid) {
  // From the socket's own directory up to "/".
  std::string d = dir;
  bool own = true;
  for (;;) {
    struct stat st;
    if (::lstat(d.c_str(), &st) < 0) return absl::ErrnoToStatus(errno, absl::StrCat("socket directory ", d));
    const std::string what = own ? "the socket's directory " : "the directory above the socket ";
    if (!S_ISDIR(st.st_mode)) {
      return absl::PermissionDeniedError(absl::StrCat(what, d, " is not a directory"));
    }
    if (st.st_uid != 0 && st.st_uid != uid) {
      return absl::PermissionDeniedError(absl::StrCat(
          what, d, " is owned by uid ", st.st_uid, ", not by root or hsid's uid ", uid,
          ": its owner could replace the socket; refusing to serve there (choose another --socket)"));
    }
    const bool others_write = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
    if (others_write && (own || (st.st_mode & S_ISVTX) == 0)) {
      return absl::PermissionDeniedError(absl::StrCat(
          what, d, " (mode ", ModeText(st.st_mode), ") is writable by ",
          (st.st_mode & S_IWOTH) ? "others" : "its group",
          own ? "" : " and not sticky",
          ": another user could rename a symlink over the socket, move it aside or squat its name; "
          "refusing to serve there (choose another --socket)"));
    }
    if (d == "/") return absl::OkStatus();
    own = false;
    const size_t slash = d.rfind('/');
    d = slash == 0 ? "/" : d.substr(0, slash);
  }
}

absl::StatusOr<ListenSocket> OpenListenSocket(const std::string& path, uid_t uid) {
  const size_t slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("socket path \"", path, "\" names no file"));
  }
  if (dir != "." && dir != "/") {
    if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  }
  char real[PATH_MAX];
  if (::realpath(dir.c_str(), real) == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("socket directory ", dir));
  dir = real;
  if (absl::Status s = CheckSocketDirectory(dir, uid); !s.ok()) return s;

  ListenSocket ls;
  ls.path = dir == "/" ? absl::StrCat("/", name) : absl::StrCat(dir, "/", name);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (ls.path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path \"", ls.path, "\" is longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, ls.path.data(), ls.path.size());
  // Another hsid on this socket? A stale socket file is removed.
  {
    UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    bool dead_listener = false;
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      // A process killed with SIGKILL leaves its listening socket alive
      // until the kernel has torn down its io_uring (asynchronously): an
      // answer from a pid that no longer exists is no other hsid.
      ucred cred{};
      socklen_t len = sizeof(cred);
      dead_listener = ::getsockopt(probe.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0 &&
                      ::kill(cred.pid, 0) < 0 && errno == ESRCH;
      if (!dead_listener) {
        return absl::AlreadyExistsError(absl::StrCat("another hsid (pid ", cred.pid, ") is already serving ", ls.path));
      }
    }
    struct stat st;
    if (::lstat(ls.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return absl::AlreadyExistsError(absl::StrCat(ls.path, " exists and is not a socket; not removing it"));
      }
      if (::unlink(ls.path.c_str()) < 0) return absl::ErrnoToStatus(errno, absl::StrCat("remove stale socket ", ls.path));
      ls.stale = true;
    }
  }
  ls.fd = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!ls.fd.valid()) return absl::ErrnoToStatus(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  // Anyone may connect; SO_PEERCRED and the policy decide what they may do.
  // The file's mode comes from the socket inode's mode less the umask at
  // bind(): set both here instead of a chmod() by path after bind(), which
  // would follow a symlink renamed over the path in between.
  if (::fchmod(ls.fd.get(), 0666) < 0) return absl::ErrnoToStatus(errno, "fchmod(control socket, 0666)");
  const mode_t old_umask = ::umask(0);
  const int bound = ::bind(ls.fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound < 0) return absl::ErrnoToStatus(bind_errno, absl::StrCat("bind ", ls.path));
  if (::listen(ls.fd.get(), 128) < 0) return absl::ErrnoToStatus(errno, "listen");
  return ls;
}

}  // namespace hsid
