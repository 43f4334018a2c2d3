// Forking helpers for multi-process tests: a child that always gets reaped.
#ifndef HSI_TESTS_RING_FORK_UTIL_H_
#define HSI_TESTS_RING_FORK_UTIL_H_

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

namespace hsi::testing {

// A forked child running `body`; its return value is the exit code. The
// destructor kills and reaps it if the test did not Wait() for it, so a
// failing test leaves no process behind. The child dies with the parent.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::_exit(body());
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Waits for the child; returns its exit code, or 128+signal.
  int Wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace hsi::testing

#endif  // HSI_TESTS_RING_FORK_UTIL_H_
