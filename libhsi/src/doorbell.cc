#include "hsi/doorbell.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "internal/syscall.h"

namespace hsi {

using internal::ErrnoStatus;

absl::StatusOr<Doorbell> Doorbell::Create() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "eventfd");
  return Doorbell(UniqueFd(fd), Kind::kEventfd);
}

absl::StatusOr<Doorbell> Doorbell::CreateSplit(UniqueFd* ring_end) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoStatus(errno, "doorbell: socketpair");
  }
  *ring_end = UniqueFd(sv[1]);
  return Doorbell(UniqueFd(sv[0]), Kind::kWaitEnd);
}

absl::StatusOr<Doorbell> Doorbell::Adopt(UniqueFd fd) {
  if (!fd.valid()) return absl::InvalidArgumentError("doorbell: no fd");
  // /proc/self/fd shows an eventfd as "anon_inode:[eventfd]", a socket as
  // "socket:[inode]".
  char link[64];
  std::string path = absl::StrCat("/proc/self/fd/", fd.get());
  ssize_t n = ::readlink(path.c_str(), link, sizeof(link) - 1);
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("doorbell: readlink ", path));
  const absl::string_view what(link, static_cast<size_t>(n));
  if (what == "anon_inode:[eventfd]") return Doorbell(std::move(fd), Kind::kEventfd);
  if (absl::StartsWith(what, "socket:")) {
    int domain = 0, type = 0;
    socklen_t len = sizeof(int);
    sockaddr_un peer{};
    socklen_t plen = sizeof(peer);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX &&
        ::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM &&
        ::getpeername(fd.get(), reinterpret_cast<sockaddr*>(&peer), &plen) == 0) {
      return Doorbell(std::move(fd), Kind::kRingEnd);
    }
    return absl::InvalidArgumentError(absl::StrCat("doorbell: fd ", fd.get(), " is a socket, but not a connected Unix "
                                                   "stream socket (the ring end of a split doorbell)"));
  }
  return absl::InvalidArgumentError(absl::StrCat("doorbell: fd ", fd.get(), " is ", what,
                                                 ", not an eventfd or the ring end of a split doorbell"));
}

void Doorbell::Ring() const {
  if (kind_ == Kind::kWaitEnd) return;
  if (kind_ == Kind::kRingEnd) {
    // MSG_DONTWAIT: never blocks, whatever O_NONBLOCK a peer left on the
    // shared socket; a full socket (EAGAIN) is readable, so rung already.
    // MSG_NOSIGNAL: an owner that is gone raises no SIGPIPE here.
    const char one = 1;
    while (::send(fd_.get(), &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    return;
  }
  // A counter at its maximum is not writable: its sleeper is signalled
  // already, and a write() would block if a peer cleared O_NONBLOCK on the
  // shared file. So look first (cheap next to the wake-up it causes).
  struct pollfd pfd = {fd_.get(), POLLOUT, 0};
  while (::poll(&pfd, 1, 0) < 0 && errno == EINTR) {
  }
  if ((pfd.revents & POLLOUT) == 0) return;
  const uint64_t one = 1;
  while (::write(fd_.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

bool Doorbell::Drain() const {
  if (kind_ == Kind::kRingEnd) return false;
  if (kind_ == Kind::kWaitEnd) {
    char buf[256];
    bool any = false;
    // Bounded: a peer that keeps filling the socket cannot keep us here.
    for (int round = 0; round < 512; ++round) {
      const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) any = true;
      if (n != static_cast<ssize_t>(sizeof(buf))) break;
    }
    return any;
  }
  uint64_t count;
  iovec iov = {&count, sizeof(count)};
  for (;;) {
    // RWF_NOWAIT: never blocks, whatever O_NONBLOCK a peer left on the
    // shared file (eventfd reads honour it since Linux 5.10).
    ssize_t n = ::preadv2(fd_.get(), &iov, 1, -1, RWF_NOWAIT);
    if (n < 0 && errno == EOPNOTSUPP) {
      n = (::fcntl(fd_.get(), F_GETFL) & O_NONBLOCK) != 0 ? ::read(fd_.get(), &count, sizeof(count)) : -1;
    }
    if (n == sizeof(count)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

absl::Status Doorbell::WaitUntil(absl::Time deadline) const {
  for (;;) {
    struct pollfd pfd = {fd_.get(), POLLIN, 0};
    timespec ts;
    timespec* tsp = nullptr;
    if (deadline != absl::InfiniteFuture()) {
      absl::Duration left = deadline - absl::Now();
      if (left < absl::ZeroDuration()) left = absl::ZeroDuration();
      ts = absl::ToTimespec(left);
      tsp = &ts;
    }
    int r = ::ppoll(&pfd, 1, tsp, nullptr);
    if (r < 0 && errno != EINTR) return ErrnoStatus(errno, "doorbell: ppoll");
    if (r > 0) {
      // Rung. If another waiter drained it first, the callers re-check
      // their condition and re-arm; returning keeps that wake-up theirs.
      Drain();
      return absl::OkStatus();
    }
    if (r == 0 && deadline != absl::InfiniteFuture() && absl::Now() >= deadline) {
      return absl::DeadlineExceededError("doorbell: deadline passed");
    }
  }
}

absl::StatusOr<UniqueFd> Doorbell::Dup() const { return internal::DupFd(fd_, "doorbell"); }

}  // namespace hsi
