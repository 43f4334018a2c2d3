// Forwarding header for tests/ifd only, which another branch is changing as
// this one moves the test helpers into hsi::testing (tests/support/). Remove
// it once tests/ifd includes "hsi/testing/hsid.h" and links hsi::testing
// itself (and drops the target_link_libraries(ifd_test ...) in
// tests/CMakeLists.txt).
#ifndef HSI_TESTS_HSID_HSID_UTIL_H_
#define HSI_TESTS_HSID_HSID_UTIL_H_

#include "hsi/testing/hsid.h"
#include "hsi/testing/line_pipe.h"

namespace hsi::testing {
using Report = LinePipe;  // the old name of LinePipe
}  // namespace hsi::testing

#endif  // HSI_TESTS_HSID_HSID_UTIL_H_
