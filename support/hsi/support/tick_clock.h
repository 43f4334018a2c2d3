// hsi/support/tick_clock.h: a cheap clock for timing one round trip, shared
// by the tools (hsi-ping) and the benchmarks (bench/).
//
// On x86 it reads the TSC, which is the kernel's own clocksource on these
// machines: ~10 ns to read, where clock_gettime() costs 20 to 150 ns on this
// VM depending on the host. Calibrate() measures its rate against
// steady_clock. Elsewhere it is steady_clock itself.
//
// Thread safety: Now() anywhere; a calibrated TickClock is a value.
#ifndef HSI_SUPPORT_TICK_CLOCK_H_
#define HSI_SUPPORT_TICK_CLOCK_H_

#include <chrono>
#include <cstdint>

#include "absl/time/time.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace hsi::support {

class TickClock {
 public:
  static uint64_t Now() {
#if defined(__x86_64__) || defined(__i386__)
    return __rdtsc();
#else
    return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
  }
  // Measures ticks per ns against steady_clock over `span`, and the cost of
  // reading the clock twice back to back (what each timed sample carries).
  static TickClock Calibrate(absl::Duration span = absl::Milliseconds(50));

  double ns_per_tick() const { return ns_per_tick_; }
  double ToNs(uint64_t ticks) const { return static_cast<double>(ticks) * ns_per_tick_; }
  // Nanoseconds from tick `t0` to tick `t1`; 0 if the clock stepped back
  // (two CPUs whose TSCs are out of step).
  double NsBetween(uint64_t t0, uint64_t t1) const { return t1 > t0 ? ToNs(t1 - t0) : 0; }
  // Median cost in ns of an empty timed sample (two Now() calls).
  double overhead_ns() const { return overhead_ns_; }
  // "TSC" or "steady_clock".
  static const char* Name();

 private:
  double ns_per_tick_ = 1.0;
  double overhead_ns_ = 0.0;
};

}  // namespace hsi::support

#endif  // HSI_SUPPORT_TICK_CLOCK_H_
