// hsi/doorbell.h: the userspace "thin interrupt": an eventfd, or a pipe
// split between the one who waits and those who ring.
//
// One end of a ring pair sleeps on its own doorbell; its peer rings it only
// when the sleeper said so in shared memory (need-wakeup, see hsi/ring.h),
// so an idle or busy-polling link makes no syscalls.
//
// Two kinds:
//   - an eventfd (Create()): whoever holds the fd can ring it, wait on it
//     and consume its rings. Fine between two ends that trust each other
//     (hsi::Endpoint, the benchmarks).
//   - a split doorbell (CreateSplit()), a pipe: the owner keeps the read
//     end (the wait end) and waits on it; whoever may ring gets the write
//     end (the ring end), which cannot read. So a peer cannot consume rings
//     meant for the owner; nor can it reopen the pipe for reading through
//     /proc unless it runs as the owner's uid or as root (the pipe is mode
//     0600): the uid is the boundary, as for ptrace. Every NIC's doorbell
//     is split (docs/ring.md, "Doorbells and hostile peers").
//
// Thread safety: Ring() may be called from any thread or process holding
// the fd (or a ring end); one thread at a time should WaitUntil().
//
// Hostile holders: holders of one fd share its open file, so a peer can
// clear O_NONBLOCK on it, saturate an eventfd's counter or fill a pipe.
// Ring(), Drain() and WaitUntil() never block for that (RWF_NOWAIT), and a
// full doorbell counts as rung (its sleeper is signalled anyway). Ringing a
// split doorbell whose owner is gone raises no SIGPIPE in the process: a
// ring end made private (MakePrivate/AssumePrivate) holds a read end of
// the pipe of its own, which it never reads, so the pipe always has a
// reader and a ring is one write(); otherwise (the pipe of another uid,
// whose read end we may not open) Ring() blocks SIGPIPE in the calling
// thread for the write and takes the one it caused. A peer that keeps a
// split doorbell full can keep its owner waking, as frames from it could;
// it cannot make the owner miss a wake-up.
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
  enum class Kind { kEventfd, kWaitEnd, kRingEnd };

  // A new non-blocking, close-on-exec eventfd.
  static absl::StatusOr<Doorbell> Create();
  // A new split doorbell (a non-blocking, close-on-exec pipe): returns the
  // end to wait on (the read end) and stores the end to ring with (the
  // write end; hand copies of it to whoever may ring) in `*ring_end`.
  static absl::StatusOr<Doorbell> CreateSplit(UniqueFd* ring_end);
  // Adopts an eventfd, or either end of a split doorbell (a pipe), received
  // from elsewhere (e.g. SCM_RIGHTS). Fails with kInvalidArgument for
  // anything else.
  static absl::StatusOr<Doorbell> Adopt(UniqueFd fd);

  Doorbell() = default;
  Doorbell(Doorbell&&) = default;
  Doorbell& operator=(Doorbell&&) = default;

  // Wakes whoever sleeps on this doorbell (an eventfd or a ring end; the
  // wait end does not ring itself). Does not block on a full doorbell, even
  // if a peer made the fd blocking.
  void Ring() const;
  // Sleeps until rung or `deadline`. Returns OK when the doorbell was rung
  // (the count is consumed, or another thread took it first: callers
  // re-check their condition), kDeadlineExceeded at the deadline. EINTR is
  // retried.
  absl::Status WaitUntil(absl::Time deadline) const;
  // Consumes pending rings without sleeping (an eventfd or a wait end);
  // true if there was one.
  bool Drain() const;

  Kind kind() const { return kind_; }
  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }
  // A new fd for the same open file (to send to a peer).
  absl::StatusOr<UniqueFd> Dup() const;
  // For a ring end: a new, non-blocking open file of the same pipe, whose
  // flags no other holder can change (reopened through /proc/self/fd; needs
  // the pipe owner's uid or root, else the error says so). Otherwise Dup().
  absl::StatusOr<UniqueFd> OpenPrivate() const;
  // For a ring end: rings through an open file of its own from now on
  // (OpenPrivate()), which no other holder can make blocking, so Ring()
  // writes at once without first asking whether the file is still
  // non-blocking. False (and nothing changes) where the reopen is refused
  // (another uid's pipe) or for another kind.
  bool MakePrivate();
  // For a ring end received as an open file of the receiver's own, which
  // its giver made with OpenPrivate() and kept no copy of (hsid says so in
  // LinkSpareUp): Ring() trusts it to stay non-blocking from now on, as
  // after MakePrivate(), without reopening it. False for another kind.
  bool AssumePrivate();
  // Both also open a read end of the pipe for this process (never read;
  // where the reopen is allowed: the pipe owner's uid or root), so that a
  // ring after the owner is gone meets no EPIPE and needs no SIGPIPE mask.

 private:
  Doorbell(UniqueFd fd, Kind kind) : fd_(std::move(fd)), kind_(kind) {}
  UniqueFd fd_;
  Kind kind_ = Kind::kEventfd;
  bool private_ = false;  // a ring end reopened by MakePrivate()
  // A read end of a private ring end's pipe, never read: keeps the pipe
  // from losing its last reader (no EPIPE, no SIGPIPE) when its owner goes.
  UniqueFd reader_;
  void HoldReader();
};

}  // namespace hsi

#endif  // HSI_DOORBELL_H_
