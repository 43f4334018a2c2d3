// hsi/support/cpu.h: CPU placement for programs that measure (the tools'
// --pin and the benchmarks' pinned peers).
//
// Thread safety: PinToCpu() affects only the calling thread.
#ifndef HSI_SUPPORT_CPU_H_
#define HSI_SUPPORT_CPU_H_

#include "absl/status/status.h"

namespace hsi::support {

// Pins the calling thread to `cpu` (sched_setaffinity). kInternal naming
// the CPU and errno if the kernel refuses (a CPU outside the cpuset, a
// number past the last CPU).
absl::Status PinToCpu(int cpu);

}  // namespace hsi::support

#endif  // HSI_SUPPORT_CPU_H_
