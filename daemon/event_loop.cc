#include "event_loop.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "log.h"

namespace hsid {
namespace {


// How long Run() checks for a completion before it sleeps while one is
// expected (a link setup waiting for the ends' LinkSealed).
constexpr absl::Duration kSetupSpin = absl::Microseconds(150);

constexpr uint64_t kIdMask = (uint64_t{1} << 56) - 1;
uint64_t Tag(EventLoop::Kind k, uint64_t id) { return (uint64_t{static_cast<uint8_t>(k)} << 56) | (id & kIdMask); }

}  // namespace

absl::Status EventLoop::Init() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) < 0) return absl::ErrnoToStatus(errno, "sigprocmask");
  ::signal(SIGPIPE, SIG_IGN);
  signal_fd_ = hsi::UniqueFd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_.valid()) return absl::ErrnoToStatus(errno, "signalfd");

  int r = io_uring_queue_init(512, &ring_, 0);
  if (r < 0) return absl::ErrnoToStatus(-r, "io_uring_queue_init");
  ring_ok_ = true;
  return absl::OkStatus();
}

void EventLoop::Close() {
  if (ring_ok_) io_uring_queue_exit(&ring_);
  ring_ok_ = false;
}

io_uring_sqe* EventLoop::Sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  // A submit empties the submission queue, so this is a bug, not a state.
  if (sqe == nullptr) std::abort();
  return sqe;
}

void EventLoop::ArmPoll(int fd, uint32_t mask, Kind kind, uint64_t id) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_poll_add(sqe, fd, mask);
  io_uring_sqe_set_data64(sqe, Tag(kind, id));
}

void EventLoop::Write(int fd, const void* data, size_t len, Kind kind, uint64_t id) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_write(sqe, fd, data, static_cast<unsigned>(len), static_cast<uint64_t>(-1));
  io_uring_sqe_set_data64(sqe, Tag(kind, id));
}

void EventLoop::Cancel(Kind kind, uint64_t id) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_cancel64(sqe, Tag(kind, id), 0);
  io_uring_sqe_set_data64(sqe, Tag(Kind::kIgnore, 0));
}

void EventLoop::ArmTimer(absl::Duration after) {
  if (timer_pending_) return;
  const int64_t ns = absl::ToInt64Nanoseconds(after);
  timer_ts_ = {ns / 1000000000, ns % 1000000000};
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_timeout(sqe, &timer_ts_, 0, 0);
  io_uring_sqe_set_data64(sqe, Tag(Kind::kTimer, 0));
  timer_pending_ = true;
}

void EventLoop::SpinForCompletion() {
  // A link setup in progress waits for both ends' LinkSealed, which come
  // within tens of microseconds, sooner than a sleeping hsid would be
  // woken for them on a busy host: check the completion queue without
  // sleeping for up to kSetupSpin first, yielding the CPU (the ends may
  // need it) between checks. Idle hsid never spins.
  io_uring_submit(&ring_);
  const absl::Time spin_end = absl::Now() + kSetupSpin;
  while (io_uring_cq_ready(&ring_) == 0 && absl::Now() < spin_end) ::sched_yield();
}

std::vector<std::pair<uint64_t, int>> EventLoop::Reap() {
  io_uring_cqe* cqe;
  unsigned head;
  unsigned seen = 0;
  std::vector<std::pair<uint64_t, int>> events;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    events.emplace_back(io_uring_cqe_get_data64(cqe), cqe->res);
    ++seen;
  }
  io_uring_cq_advance(&ring_, seen);
  return events;
}

void EventLoop::ReadSignals() {
  signalfd_siginfo si;
  while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
    Log(absl::StrCat("signal ", si.ssi_signo, ": shutting down"));
    stop_ = true;
  }
  if (!stop_) ArmPoll(signal_fd_.get(), POLLIN, Kind::kSignal, 0);
}

absl::Status EventLoop::Run(Handler& handler) {
  ArmPoll(signal_fd_.get(), POLLIN, Kind::kSignal, 0);
  while (!stop_) {
    if (handler.ExpectSoon()) SpinForCompletion();
    int r = io_uring_submit_and_wait(&ring_, 1);
    // EAGAIN/EBUSY: the kernel is short of memory or the completion queue
    // overflowed; reaping completions below makes room, so go on.
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) return absl::ErrnoToStatus(-r, "io_uring_submit_and_wait");
    for (auto [tag, res] : Reap()) {
      const auto kind = static_cast<Kind>(tag >> 56);
      if (kind == Kind::kSignal) {
        ReadSignals();
      } else if (kind != Kind::kIgnore) {
        if (kind == Kind::kTimer) timer_pending_ = false;
        handler.OnEvent(kind, tag & kIdMask, res);
      }
      handler.AfterEvent();
    }
    handler.AfterTurn();
  }
  return absl::OkStatus();
}

}  // namespace hsid
