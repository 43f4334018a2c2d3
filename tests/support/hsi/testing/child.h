// hsi/testing/child.h: a forked child that is always reaped.
//
// Child(body) forks; the child runs `body` and _exit()s with its return
// value. It dies with the test process (PR_SET_PDEATHSIG), and the
// destructor SIGKILLs and reaps it if the test did not Wait() for it, so a
// failing assertion leaves no process behind. The child is a copy of the
// test process: it must not use gtest assertions (report through a
// LinePipe or the exit code instead).
//
// Thread safety: one thread at a time per Child.
#ifndef HSI_TESTING_CHILD_H_
#define HSI_TESTING_CHILD_H_

#include <sys/types.h>

#include <functional>

namespace hsi::testing {

class Child {
 public:
  explicit Child(const std::function<int()>& body);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // False if fork() failed.
  bool started() const { return pid_ > 0; }
  // -1 once reaped.
  pid_t pid() const { return pid_; }
  // Waits for the child; its exit code, or 128 + the signal that killed it.
  int Wait();

 private:
  pid_t pid_ = -1;
};

}  // namespace hsi::testing

#endif  // HSI_TESTING_CHILD_H_
