// internal/futex.h: the ring's sleep and wake-up, on a word of the waker's
// segment (docs/ring.md, "Waking").
//
// A sleeper waits with FUTEX_WAIT on a word of its peer's segment, through
// its read-only mapping of it (futex wait and wake both work on a read-only
// shared mapping; the kernel keys a shared futex by the memfd's page, so
// both mappings name the same futex): the peer's "woke" word, in which the
// peer stores the sleeper's need-wakeup flag value it answers before it
// calls FUTEX_WAKE through its own mapping. So an answer is state, not an
// event: a wake-up that comes before the sleeper is in FUTEX_WAIT is not
// lost (the word no longer holds what the sleeper loaded, or already holds
// its flag), and a third holder of the segment (a sniffer) can wake us
// spuriously but cannot consume a wake-up meant for us (FutexWake() wakes
// every waiter).
//
// Shared futexes (no FUTEX_PRIVATE_FLAG): the two ends are two processes.
//
// Thread safety: free functions.
#ifndef HSI_INTERNAL_FUTEX_H_
#define HSI_INTERNAL_FUTEX_H_

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstddef>
#include <ctime>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hsi::internal {

// The address of the low 32 bits of a 64-bit word: what FUTEX_WAIT compares.
// A sleep epoch's low half comes back only after 2^31 sleeps, far longer
// than the microseconds between a sleeper's load and its FUTEX_WAIT.
inline const uint32_t* FutexHalf(const uint64_t* word) {
  const auto* p = reinterpret_cast<const uint32_t*>(word);
  return std::endian::native == std::endian::little ? p : p + 1;
}
inline const uint32_t* FutexHalf(const std::atomic<uint64_t>& word) {
  static_assert(sizeof(std::atomic<uint64_t>) == sizeof(uint64_t));
  return FutexHalf(reinterpret_cast<const uint64_t*>(&word));
}

// `deadline` as the absolute CLOCK_REALTIME timespec the futex calls take,
// in *ts; null for InfiniteFuture (no timeout).
inline const timespec* DeadlineTimespec(absl::Time deadline, timespec* ts) {
  if (deadline == absl::InfiniteFuture()) return nullptr;
  *ts = absl::ToTimespec(deadline);
  return ts;
}

// After a futex error that a retry will not cure (a word we cannot read,
// say): a 1 ms pause, so that a broken wait cannot spin. Whether the
// caller should re-check (the deadline has not passed).
inline bool PauseAfterFutexError(absl::Time deadline) {
  const timespec ms = {0, 1000000};
  ::nanosleep(&ms, nullptr);
  return deadline == absl::InfiniteFuture() || absl::Now() < deadline;
}

// Sleeps while *word == expected, until woken, interrupted or `deadline`
// (absolute, CLOCK_REALTIME: FUTEX_WAIT_BITSET takes it as is, so no clock
// read is needed). True when the caller should re-check its condition
// (woken, the word had changed already, a signal, or an error that a retry
// will not cure: then after a 1 ms pause, so a broken futex cannot spin);
// false once `deadline` has passed.
inline bool FutexWaitUntil(const uint32_t* word, uint32_t expected, absl::Time deadline) {
  if (deadline == absl::InfinitePast()) return false;  // its timespec would be invalid (EINVAL)
  timespec ts;
  const long r = ::syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, expected,
                           DeadlineTimespec(deadline, &ts), nullptr, FUTEX_BITSET_MATCH_ANY);
  if (r == 0) return true;
  switch (errno) {
    case EAGAIN:  // the word moved before we slept: re-check
    case EINTR:
      return true;
    case ETIMEDOUT:
      return false;
    default:
      return PauseAfterFutexError(deadline);
  }
}

// Wakes every thread sleeping in FutexWaitUntil() on `word` (INT_MAX, not
// 1: another waiter on the word must not take our sleeper's wake-up).
inline void FutexWake(const uint32_t* word) {
  ::syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// Several futex words slept on at once (FUTEX_WAITV, Linux 5.16): a NIC
// that sleeps on the "woke" word of every link's peer and on hsid's event
// word in one syscall (internal/data_path.h). Each word is compared with
// the value its owner loaded (a word that moved already makes the wait
// return at once, as FUTEX_WAIT's), and a FUTEX_WAKE of any of them ends
// the wait. At most kMax words.
class FutexSet {
 public:
  static constexpr size_t kMax = FUTEX_WAITV_MAX;
  void Clear() { n_ = 0; }
  // False (and nothing added) when the set is full.
  bool Add(const uint32_t* word, uint32_t expected) {
    if (n_ == kMax) return false;
    w_[n_] = futex_waitv{expected, reinterpret_cast<uintptr_t>(word), FUTEX_32, 0};
    ++n_;
    return true;
  }

  enum class Woke { kRecheck, kDeadline, kUnsupported };
  // Sleeps until a word is woken or moved (kRecheck, also after a signal),
  // `deadline` (kDeadline; absolute, CLOCK_REALTIME, so no clock read), or
  // kUnsupported when this kernel lacks FUTEX_WAITV (ENOSYS): then the
  // caller sleeps another way.
  Woke WaitUntil(absl::Time deadline) {
    if (deadline == absl::InfinitePast()) return Woke::kDeadline;
    timespec ts;
    const long r =
        ::syscall(SYS_futex_waitv, w_, static_cast<unsigned>(n_), 0u, DeadlineTimespec(deadline, &ts), CLOCK_REALTIME);
    if (r >= 0) return Woke::kRecheck;
    switch (errno) {
      case ETIMEDOUT:
        return Woke::kDeadline;
      case ENOSYS:
        return Woke::kUnsupported;
      case EAGAIN:
      case EINTR:
        return Woke::kRecheck;
      default:
        return PauseAfterFutexError(deadline) ? Woke::kRecheck : Woke::kDeadline;
    }
  }

 private:
  futex_waitv w_[kMax];
  size_t n_ = 0;
};

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_FUTEX_H_
