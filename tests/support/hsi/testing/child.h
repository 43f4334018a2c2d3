// hsi/testing/child.h: a forked child that is always reaped.
//
// hsi::support::Child (hsi/support/process.h), which tools and bench use
// too: Child(body) forks; the child runs `body` and _exit()s with its return
// value. It dies with the test process (PR_SET_PDEATHSIG), and the
// destructor SIGKILLs and reaps it if the test did not Wait() for it, so a
// failing assertion leaves no process behind. The child is a copy of the
// test process: it must not use gtest assertions (report through a
// LinePipe or the exit code instead).
//
// Thread safety: one thread at a time per Child.
#ifndef HSI_TESTING_CHILD_H_
#define HSI_TESTING_CHILD_H_

#include "hsi/support/process.h"

namespace hsi::testing {

using Child = ::hsi::support::Child;

}  // namespace hsi::testing

#endif  // HSI_TESTING_CHILD_H_
