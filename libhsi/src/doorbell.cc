#include "hsi/doorbell.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "internal/syscall.h"

namespace hsi {

using internal::ErrnoStatus;

absl::StatusOr<Doorbell> Doorbell::Create() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "eventfd");
  return Doorbell(UniqueFd(fd));
}

absl::StatusOr<Doorbell> Doorbell::Adopt(UniqueFd fd) {
  if (!fd.valid()) return absl::InvalidArgumentError("doorbell: no fd");
  // An eventfd shows as "anon_inode:[eventfd]" in /proc/self/fd.
  char link[64];
  std::string path = absl::StrCat("/proc/self/fd/", fd.get());
  ssize_t n = ::readlink(path.c_str(), link, sizeof(link) - 1);
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("doorbell: readlink ", path));
  if (absl::string_view(link, n) != "anon_inode:[eventfd]") {
    return absl::InvalidArgumentError(absl::StrCat(
        "doorbell: fd ", fd.get(), " is ", absl::string_view(link, n),
        ", not an eventfd"));
  }
  return Doorbell(std::move(fd));
}

void Doorbell::Ring() const {
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

absl::StatusOr<UniqueFd> Doorbell::Dup() const {
  int fd = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "doorbell: dup");
  return UniqueFd(fd);
}

}  // namespace hsi
