// hsi/doorbell.h: an eventfd doorbell, the userspace "thin interrupt".
//
// One end of a ring pair sleeps on its own doorbell; its peer rings it only
// when the sleeper said so in shared memory (need-wakeup, see hsi/ring.h),
// so an idle or busy-polling link makes no syscalls.
//
// Thread safety: Ring() may be called from any thread or process holding
// the fd; one thread at a time should WaitUntil().
//
// Hostile holders: every holder of the fd shares one open file, so a peer
// can clear O_NONBLOCK on it or saturate its counter. Drain() and
// WaitUntil() never block on the read for that (RWF_NOWAIT), and Ring()
// skips a doorbell whose counter is already saturated (its sleeper is
// signalled anyway). What a holder can still do is consume rings meant for
// the owner; see docs/ring.md, "Doorbells and hostile peers".
#ifndef HSI_DOORBELL_H_
#define HSI_DOORBELL_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsi/fd.h"
#include "hsi/export.h"

namespace hsi {

class HSI_EXPORT Doorbell {
 public:
  // A new non-blocking, close-on-exec eventfd.
  static absl::StatusOr<Doorbell> Create();
  // Adopts an eventfd received from elsewhere (e.g. SCM_RIGHTS). Fails
  // with kInvalidArgument if `fd` is not an eventfd.
  static absl::StatusOr<Doorbell> Adopt(UniqueFd fd);

  Doorbell() = default;
  Doorbell(Doorbell&&) = default;
  Doorbell& operator=(Doorbell&&) = default;

  // Wakes whoever sleeps on this doorbell. Does not block on a saturated
  // counter, even if a peer made the fd blocking.
  void Ring() const;
  // Sleeps until rung or `deadline`. Returns OK when the doorbell was rung
  // (the count is consumed, or another thread took it first: callers
  // re-check their condition), kDeadlineExceeded at the deadline. EINTR is
  // retried.
  absl::Status WaitUntil(absl::Time deadline) const;
  // Consumes a pending ring without sleeping; true if there was one.
  bool Drain() const;

  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }
  // A new fd for the same eventfd (to send to a peer).
  absl::StatusOr<UniqueFd> Dup() const;

 private:
  explicit Doorbell(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace hsi

#endif  // HSI_DOORBELL_H_
