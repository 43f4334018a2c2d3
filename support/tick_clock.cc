#include "hsi/support/tick_clock.h"

#include <algorithm>
#include <vector>

#include "absl/time/clock.h"

namespace hsi::support {

TickClock TickClock::Calibrate(absl::Duration span) {
  TickClock c;
  const auto c0 = std::chrono::steady_clock::now();
  const uint64_t t0 = Now();
  absl::SleepFor(span);
  const auto c1 = std::chrono::steady_clock::now();
  const uint64_t t1 = Now();
  const double ns = std::chrono::duration<double, std::nano>(c1 - c0).count();
  if (t1 > t0) c.ns_per_tick_ = ns / static_cast<double>(t1 - t0);
  std::vector<double> empty(2001);
  for (double& e : empty) {
    const uint64_t a = Now();
    const uint64_t b = Now();
    e = static_cast<double>(b - a) * c.ns_per_tick_;
  }
  std::nth_element(empty.begin(), empty.begin() + empty.size() / 2, empty.end());
  c.overhead_ns_ = empty[empty.size() / 2];
  return c;
}

const char* TickClock::Name() {
#if defined(__x86_64__) || defined(__i386__)
  return "TSC";
#else
  return "steady_clock";
#endif
}

}  // namespace hsi::support
