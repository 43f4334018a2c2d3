// hsi/testing/program.h: other programs a test runs, and waiting for them.
//
// - Shell(): a shell command's exit status and output (popen).
// - SpawnLogged(): a program forked and exec'd with its output in a log
//   file; it dies with the test (PR_SET_PDEATHSIG, checked against the
//   race with a parent that died before the flag was set).
// - KillAndReap(): sends a signal and reaps, retrying on EINTR.
// - Program: a SpawnLogged program that its destructor kills (SIGKILL)
//   and reaps, so a failing test leaves no process behind.
// - Eventually(): polls a condition until it holds or a deadline passes;
//   the way a test waits for another process's state instead of sleeping
//   a fixed time.
//
// Thread safety: none needed; call from the test's main thread.
#ifndef HSI_TESTING_PROGRAM_H_
#define HSI_TESTING_PROGRAM_H_

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hsi::testing {

// A shell command's exit status (128 + signal if killed) and output.
struct ShellResult {
  int status = -1;
  std::string out;
  bool ok() const { return status == 0; }
};
// Runs `cmd` with /bin/sh; `out` is stdout and stderr, or stdout only
// (stderr to /dev/null) when `with_stderr` is false.
ShellResult Shell(const std::string& cmd, bool with_stderr = true);
// Whether `program` is on the PATH.
bool Have(const std::string& program);
// The whole text of the file at `path`, "" if it cannot be read.
std::string ReadFile(const std::string& path);

enum class LogMode { kTruncate, kAppend };
// Forks and execs argv[0] (searched on the PATH) with stderr, and stdout
// unless `stdout_fd` >= 0 names another fd for it, going to the file
// `log`. Returns the child's pid, -1 if fork failed; a child that cannot
// exec exits 127.
pid_t SpawnLogged(const std::vector<std::string>& argv, const std::string& log,
                  LogMode mode = LogMode::kTruncate, int stdout_fd = -1);
// Sends `sig` to `pid` and reaps it; the wait status, or -1 if pid <= 0.
int KillAndReap(pid_t pid, int sig);

// A program run in the background (SpawnLogged); the destructor kills
// (SIGKILL) and reaps it.
class Program {
 public:
  Program(std::vector<std::string> argv, std::string log, LogMode mode = LogMode::kTruncate)
      : log_(std::move(log)), pid_(SpawnLogged(argv, log_, mode)) {}
  ~Program() { Stop(SIGKILL); }
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  // Sends `sig` and reaps; the wait status, or -1 if not running.
  int Stop(int sig) {
    const int status = KillAndReap(pid_, sig);
    pid_ = -1;
    return status;
  }
  // The wait status once it exits by itself within `timeout`, else -1.
  int WaitExit(absl::Duration timeout);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  std::string log() const { return ReadFile(log_); }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

// Polls `cond` every `every` (10 ms unless a look is costly, such as a
// process start) until it holds or `timeout` passes; the last answer of
// `cond`, so a caller asserts on the one evaluation that decided.
template <typename F>
bool Eventually(F cond, absl::Duration timeout = absl::Seconds(10), absl::Duration every = absl::Milliseconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  do {
    if (cond()) return true;
    absl::SleepFor(every);
  } while (absl::Now() < deadline);
  return cond();
}

}  // namespace hsi::testing

#endif  // HSI_TESTING_PROGRAM_H_
