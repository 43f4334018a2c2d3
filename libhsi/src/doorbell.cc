#include "hsi/doorbell.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
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
  int p[2];
  if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return ErrnoStatus(errno, "doorbell: pipe2");
  *ring_end = UniqueFd(p[1]);
  return Doorbell(UniqueFd(p[0]), Kind::kWaitEnd);
}

absl::StatusOr<Doorbell> Doorbell::Adopt(UniqueFd fd) {
  if (!fd.valid()) return absl::InvalidArgumentError("doorbell: no fd");
  // /proc/self/fd shows an eventfd as "anon_inode:[eventfd]", a pipe as
  // "pipe:[inode]"; the access mode tells a pipe's ends apart.
  char link[64];
  std::string path = absl::StrCat("/proc/self/fd/", fd.get());
  ssize_t n = ::readlink(path.c_str(), link, sizeof(link) - 1);
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("doorbell: readlink ", path));
  const absl::string_view what(link, static_cast<size_t>(n));
  if (what == "anon_inode:[eventfd]") return Doorbell(std::move(fd), Kind::kEventfd);
  if (absl::StartsWith(what, "pipe:")) {
    const int mode = ::fcntl(fd.get(), F_GETFL) & O_ACCMODE;
    if (mode == O_RDONLY) return Doorbell(std::move(fd), Kind::kWaitEnd);
    if (mode == O_WRONLY) return Doorbell(std::move(fd), Kind::kRingEnd);
  }
  return absl::InvalidArgumentError(absl::StrCat("doorbell: fd ", fd.get(), " is ", what,
                                                 ", not an eventfd or an end of a split doorbell (a pipe)"));
}

namespace {

// Kernels whose pipes do not take RWF_NOWAIT (before 6.6 or so; Debian
// 12's 6.1 among them): a non-blocking fd is written at once; a blocking
// one (a peer cleared O_NONBLOCK on the shared file) only if poll() finds
// room, which leaves a window in which another writer fills the pipe and
// this write waits until the owner drains it.
ssize_t WriteIfRoom(int fd, const char* one, bool is_private) {
  if (!is_private && (::fcntl(fd, F_GETFL) & O_NONBLOCK) == 0) {
    pollfd p = {fd, POLLOUT, 0};
    while (::poll(&p, 1, 0) < 0 && errno == EINTR) {
    }
    if ((p.revents & POLLOUT) == 0) {
      errno = (p.revents & POLLERR) != 0 ? EPIPE : EAGAIN;  // no reader, or full (rung)
      return -1;
    }
  }
  return ::write(fd, one, 1);
}

// Writes one byte to a pipe's write end without blocking (RWF_NOWAIT,
// whatever O_NONBLOCK says). -1 with errno as write(2)'s, else 1. A reader
// that is gone raises SIGPIPE: RingPipe() below takes it.
ssize_t WriteOne(int fd, bool is_private) {
  const char one = 1;
  iovec iov = {const_cast<char*>(&one), 1};
  // Whether this kernel's pipes take RWF_NOWAIT: a property of the kernel,
  // learnt from the first EOPNOTSUPP, so later rings do not try again.
  // Relaxed: a stale value costs one failed pwritev2, nothing else.
  static std::atomic<bool> no_nowait{false};
  ssize_t r;
  do {
    if (no_nowait.load(std::memory_order_relaxed)) {
      r = WriteIfRoom(fd, &one, is_private);
    } else {
      r = ::pwritev2(fd, &iov, 1, -1, RWF_NOWAIT);
      if (r < 0 && errno == EOPNOTSUPP) {
        no_nowait.store(true, std::memory_order_relaxed);
        r = WriteIfRoom(fd, &one, is_private);
      }
    }
  } while (r < 0 && errno == EINTR);
  return r;
}

// WriteOne() where the pipe may have no reader left: a reader that is gone
// costs EPIPE, not the process's life: SIGPIPE is blocked in this thread
// for the write, and the one the write raised is taken before the mask is
// restored (unless one was pending already, which is the thread's own).
void RingPipe(int fd, bool is_private) {
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  bool pending_before = false;
  if (sigismember(&old, SIGPIPE)) {
    sigset_t pending;
    sigemptyset(&pending);
    pending_before = ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  }
  const ssize_t r = WriteOne(fd, is_private);
  if (r < 0 && errno == EPIPE && !pending_before) {
    const timespec zero = {0, 0};
    while (::sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

}  // namespace

void Doorbell::Ring() const {
  if (kind_ == Kind::kWaitEnd) return;
  if (kind_ == Kind::kRingEnd) {
    // With a reader of our own the pipe always has one: no EPIPE, no
    // SIGPIPE, so no signal mask around the write (one syscall).
    if (reader_.valid()) {
      (void)WriteOne(fd_.get(), private_);
      return;
    }
    return RingPipe(fd_.get(), private_);
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
    // Only the owner holds the read end; still, RWF_NOWAIT as for eventfds.
    char buf[256];
    iovec iov = {buf, sizeof(buf)};
    bool any = false;
    // Bounded: a pipe holds 64 KiB; a peer that keeps filling it cannot
    // keep us here.
    for (int round = 0; round < 512; ++round) {
      ssize_t n = ::preadv2(fd_.get(), &iov, 1, -1, RWF_NOWAIT);
      if (n < 0 && errno == EOPNOTSUPP) {
        n = (::fcntl(fd_.get(), F_GETFL) & O_NONBLOCK) != 0 ? ::read(fd_.get(), buf, sizeof(buf)) : -1;
      }
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

bool Doorbell::MakePrivate() {
  if (kind_ != Kind::kRingEnd) return false;
  if (private_) return true;
  absl::StatusOr<UniqueFd> fd = OpenPrivate();
  if (!fd.ok()) return false;
  fd_ = std::move(*fd);
  private_ = true;
  HoldReader();
  return true;
}

bool Doorbell::AssumePrivate() {
  if (kind_ != Kind::kRingEnd) return false;
  private_ = true;
  HoldReader();
  return true;
}

void Doorbell::HoldReader() {
  if (reader_.valid()) return;
  // A pipe's /proc link opens as a FIFO: O_RDONLY gives a read end of the
  // same pipe (O_NONBLOCK: at once, writer or not). Refused (EACCES) for
  // another uid's pipe, which then keeps the signal mask.
  const std::string path = absl::StrCat("/proc/self/fd/", fd_.get());
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) reader_ = UniqueFd(fd);
}

absl::StatusOr<UniqueFd> Doorbell::OpenPrivate() const {
  if (kind_ != Kind::kRingEnd) return Dup();
  const std::string path = absl::StrCat("/proc/self/fd/", fd_.get());
  const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("doorbell: reopen ", path));
  return UniqueFd(fd);
}

}  // namespace hsi
