// hsi/testing/line_pipe.h: a pipe carrying lines of text from forked
// children to the test process.
//
// hsi::support::LinePipe (hsi/support/process.h), which tools and bench use
// too. Made before fork(), so that parent and children share both ends;
// children Write() ("ADDR 10.240.0.2", "ERR ..."), the parent Read()s with a
// timeout ("" at timeout or EOF), which is how tests wait for a child's
// state instead of sleeping.
//
// Thread safety: Write() from any process or thread; Read() from one thread.
#ifndef HSI_TESTING_LINE_PIPE_H_
#define HSI_TESTING_LINE_PIPE_H_

#include "hsi/support/process.h"

namespace hsi::testing {

using LinePipe = ::hsi::support::LinePipe;

}  // namespace hsi::testing

#endif  // HSI_TESTING_LINE_PIPE_H_
