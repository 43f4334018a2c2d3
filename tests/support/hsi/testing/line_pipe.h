// hsi/testing/line_pipe.h: a pipe carrying lines of text from forked
// children to the test process.
//
// Made before fork(), so that parent and children share both ends; children
// Write() ("ADDR 10.240.0.2", "ERR ..."), the parent Read()s with a
// timeout, which is how tests wait for a child's state instead of sleeping.
// Both ends are close-on-exec. A line is written with one write() (atomic
// for lines up to PIPE_BUF, so lines from several children do not mix).
//
// Thread safety: Write() from any process or thread; Read() from one thread.
#ifndef HSI_TESTING_LINE_PIPE_H_
#define HSI_TESTING_LINE_PIPE_H_

#include <string>

#include "absl/time/time.h"

namespace hsi::testing {

class LinePipe {
 public:
  LinePipe();
  ~LinePipe();
  LinePipe(const LinePipe&) = delete;
  LinePipe& operator=(const LinePipe&) = delete;

  // Writes `s` and a newline.
  void Write(const std::string& s) const;
  // The next line without its newline, waiting up to `timeout`; "" on
  // timeout or EOF. A timeout of zero still takes a line already there.
  std::string Read(absl::Duration timeout = absl::Seconds(60));
  // Closes this process's write end (so that the reader sees EOF once every
  // child has exited).
  void CloseWrite();
  int read_fd() const { return r_; }

 private:
  int r_ = -1, w_ = -1;
  std::string buf_;
};

}  // namespace hsi::testing

#endif  // HSI_TESTING_LINE_PIPE_H_
