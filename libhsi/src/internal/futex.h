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
#include <ctime>

#include "absl/time/time.h"

namespace hsi::internal {

// The address of the low 32 bits of a 64-bit word: what FUTEX_WAIT compares.
// A sleep epoch's low half comes back only after 2^31 sleeps, far longer
// than the microseconds between a sleeper's load and its FUTEX_WAIT.
inline const uint32_t* FutexHalf(const std::atomic<uint64_t>& word) {
  const auto* p = reinterpret_cast<const uint32_t*>(&word);
  return std::endian::native == std::endian::little ? p : p + 1;
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
  const timespec* tsp = nullptr;
  if (deadline != absl::InfiniteFuture()) {
    ts = absl::ToTimespec(deadline);
    tsp = &ts;
  }
  const long r = ::syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, expected, tsp, nullptr,
                           FUTEX_BITSET_MATCH_ANY);
  if (r == 0) return true;
  switch (errno) {
    case EAGAIN:  // the word moved before we slept: re-check
    case EINTR:
      return true;
    case ETIMEDOUT:
      return false;
    default: {
      const timespec ms = {0, 1000000};
      ::nanosleep(&ms, nullptr);
      return deadline == absl::InfiniteFuture() || absl::Now() < deadline;
    }
  }
}

// Wakes every thread sleeping in FutexWaitUntil() on `word` (INT_MAX, not
// 1: another waiter on the word must not take our sleeper's wake-up).
inline void FutexWake(const uint32_t* word) {
  ::syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_FUTEX_H_
