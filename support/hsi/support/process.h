// hsi/support/process.h: forked children that are always reaped, and a
// pipe carrying lines of text from them to their parent.
//
// Shared by tools/ (hsi-ping's and hsi-perf's responders), bench/ and the
// tests (hsi::testing uses these): a child is a copy of the caller made by
// fork(), runs `body` and _exit()s with its return value; it dies with its
// parent (PR_SET_PDEATHSIG), and the destructor SIGKILLs and reaps it if
// nobody waited, so a failing caller leaves no process behind. A LinePipe
// is made before fork(), so that parent and children share both ends;
// children Write() lines ("ADDR 10.240.0.2", "ERR ..."), the parent reads
// them with a deadline, which is how a parent waits for a child's state
// instead of sleeping. Both ends are close-on-exec; a line is written with
// one write() (atomic up to PIPE_BUF, so lines from several children do not
// mix).
//
// Thread safety: one thread at a time per Child; LinePipe::Write from any
// process or thread, the reads from one thread.
#ifndef HSI_SUPPORT_PROCESS_H_
#define HSI_SUPPORT_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hsi::support {

// A forked child running `body` (its return value is the exit status). It
// dies with its parent (PR_SET_PDEATHSIG) and the destructor kills and
// reaps it if nobody waited.
class Child {
 public:
  Child() = default;
  explicit Child(const std::function<int()>& body);
  ~Child();
  Child(Child&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  Child& operator=(Child&& o) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Waits; the exit status, or 128 + signal.
  int Wait();
  // SIGTERM, then SIGKILL after `grace`, and reaps.
  int Stop(absl::Duration grace = absl::Seconds(2));

 private:
  pid_t pid_ = -1;
};

// A pipe carrying lines from children to the parent.
class LinePipe {
 public:
  LinePipe();
  ~LinePipe();
  LinePipe(const LinePipe&) = delete;
  LinePipe& operator=(const LinePipe&) = delete;
  void Write(const std::string& line) const;
  // The next line without its newline, or nullopt at EOF or the deadline.
  std::optional<std::string> ReadLine(absl::Time deadline);
  // The same waiting up to `timeout`, "" at EOF or timeout. A timeout of
  // zero still takes a line already there.
  std::string Read(absl::Duration timeout = absl::Seconds(60));
  void CloseWrite();
  int read_fd() const { return r_; }

 private:
  int r_ = -1, w_ = -1;
  std::string buf_;
};

}  // namespace hsi::support

#endif  // HSI_SUPPORT_PROCESS_H_
