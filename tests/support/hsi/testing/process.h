// hsi/testing/process.h: what reliability tests measure and change about a
// process: its open fds and RSS (from /proc), its fd limit, its uid, memory
// shared with forked children, and the one-line figures they print.
//
// Thread safety: none needed; call from the test's main thread (RaiseNoFile,
// FillFdGaps and DropTo change the whole process).
#ifndef HSI_TESTING_PROCESS_H_
#define HSI_TESTING_PROCESS_H_

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <new>

namespace hsi::testing {

// Open fds of `pid` (entries of /proc/PID/fd), -1 if unreadable.
int FdCount(pid_t pid);
// VmRSS of `pid` in KiB, -1 if unreadable.
long RssKiB(pid_t pid);

// Raises the soft RLIMIT_NOFILE to min(hard, want); returns the new soft limit.
rlim_t RaiseNoFile(rlim_t want);
// Fills every unused fd number below this process's highest open fd with
// /dev/null, so that a RLIMIT_NOFILE of highest + 1 + n leaves exactly n
// free fds. Returns the highest open fd.
int FillFdGaps();
// Drops to uid/gid `id` with no supplementary groups; false if not allowed.
bool DropTo(uint32_t id);

// Prints "RELIABILITY " + the formatted line to stdout and flushes, so that
// it can be grepped from ctest -V (docs/reliability.md quotes these).
void Summary(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// A T in memory shared with forked children (MAP_SHARED before fork()),
// value-initialized; T must be usable from several processes (atomics, PODs).
// The mapping is released when the Shared goes away; get() is nullptr if
// mmap failed.
template <typename T>
class Shared {
 public:
  Shared() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    p_ = p == MAP_FAILED ? nullptr : new (p) T();
  }
  ~Shared() {
    if (p_ != nullptr) ::munmap(p_, sizeof(T));
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  T* get() { return p_; }
  T* operator->() { return p_; }
  T& operator*() { return *p_; }

 private:
  T* p_ = nullptr;
};

}  // namespace hsi::testing

#endif  // HSI_TESTING_PROCESS_H_
