// internal/spin_wait.h: the one spin-then-sleep loop behind every blocking
// call of libhsi (RingProducer::Reserve, RingConsumer::Peek, and the NIC and
// link calls of a Session), and the one CpuRelax.
//
// A wait (hsi/wait.h) has two phases:
//   spin  (kSpin until the deadline, kAdaptive for spin_for): check, pause,
//         check again; every kCheckEvery rounds run the caller's periodic
//         work and look at the clock.
//   sleep (kBlock at once, kAdaptive after spinning): the need-wakeup
//         protocol of docs/ring.md: arm (store a sleep epoch, fence),
//         re-check, sleep until woken or the deadline, disarm, re-check.
//
// Thread safety: free functions; the callbacks are the caller's.
#ifndef HSI_INTERNAL_SPIN_WAIT_H_
#define HSI_INTERNAL_SPIN_WAIT_H_

#include <algorithm>
#include <bit>
#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "hsi/wait.h"

namespace hsi::internal {

// One round of a busy wait: tells the core that this thread spins (x86
// PAUSE, ARM YIELD), which saves power and lets a hyperthread sibling run.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#endif
}

// When the spin phase of `wait` ends: its deadline (kSpin), spin_for from
// now but no later than the deadline (kAdaptive), InfinitePast (kBlock: no
// spinning).
inline absl::Time SpinEnd(const Wait& wait) {
  switch (wait.mode) {
    case WaitMode::kSpin:
      return wait.deadline;
    case WaitMode::kAdaptive:
      return std::min(wait.deadline, absl::Now() + wait.spin_for);
    case WaitMode::kBlock:
      break;
  }
  return absl::InfinitePast();
}

// Spins until ready() returns true (true) or `until` passes (false, after
// a last ready()). Every kCheckEvery rounds (a power of two) it calls
// every() and reads the clock; it never reads the clock when `until` is
// InfiniteFuture. An `until` of InfinitePast (Wait::Never()) looks twice and
// does not spin.
template <uint32_t kCheckEvery, typename Ready, typename Every>
bool SpinUntil(absl::Time until, Ready&& ready, Every&& every) {
  static_assert(std::has_single_bit(kCheckEvery));
  const bool forever = until == absl::InfiniteFuture();
  const bool once = until == absl::InfinitePast();
  for (uint32_t i = 1;; ++i) {
    if (ready()) return true;
    CpuRelax();
    if ((i & (kCheckEvery - 1)) == 0) {
      every();
      if (!forever && absl::Now() >= until) return ready();
    }
    if (once) return ready();
  }
}

// Waits as `wait` says until ready() returns true: true then, false once the
// deadline passed. Requires that the caller checked ready() once already
// (this starts by spinning or arming). The sleep phase, each round:
//   arm()             ask to be woken (a new sleep epoch, then a fence)
//   ready()           re-check: whatever came before the flag was seen
//   sleep(deadline)   sleep until woken (true) or the deadline (false)
//   disarm(), ready()
// every() runs every kCheckEvery rounds of the spin phase.
template <uint32_t kCheckEvery, typename Ready, typename Every, typename Arm, typename Sleep, typename Disarm>
bool SpinThenSleep(const Wait& wait, Ready&& ready, Every&& every, Arm&& arm, Sleep&& sleep, Disarm&& disarm) {
  if (wait.mode != WaitMode::kBlock && SpinUntil<kCheckEvery>(SpinEnd(wait), ready, every)) return true;
  if (wait.mode == WaitMode::kSpin) return false;
  for (;;) {
    arm();
    if (ready()) {
      disarm();
      return true;
    }
    const bool woken = sleep(wait.deadline);
    disarm();
    if (ready()) return true;
    if (!woken) return false;
  }
}

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_SPIN_WAIT_H_
