// daemon/event_loop.h: hsid's one io_uring, and the loop that runs it.
//
// hsid is one thread around one io_uring (DESIGN.md section 4). The loop
// owns the ring, a signalfd for SIGTERM and SIGINT, and one timeout at a
// time. The other parts of hsid ask it for readiness polls, writes and
// cancellations, each tagged with a Kind and an id (a client id, a NIC id),
// and get each completion back through EventLoop::Handler with that tag.
// The socket I/O itself is non-blocking recvmsg/sendmsg that the parts do
// when a poll completes; the only I/O the ring does itself is a doorbell
// write that might block (nics.h).
//
// Contract:
// - Init() blocks SIGTERM and SIGINT for the process, ignores SIGPIPE, and
//   reads the two signals from a signalfd. Run() returns OK once either
//   arrives, after the turn in which it arrived is finished.
// - Requests are submitted in batches, at the latest when Run() next waits;
//   a full submission queue is submitted early, never dropped.
// - Each completion goes to Handler::OnEvent once, with its tag, except the
//   loop's own (the signalfd) and cancellations' (Kind::kIgnore). After
//   each completion, its own included, Run() calls Handler::AfterEvent;
//   after all completions of a turn, Handler::AfterTurn, where arming for
//   the next turn belongs.
// - While Handler::ExpectSoon() says so, Run() checks the completion queue
//   for up to 150 µs before it sleeps, yielding the CPU between checks;
//   otherwise it never spins: an idle hsid uses no CPU.
// - ArmTimer(): one timeout at a time; Kind::kTimer completes it.
//
// Thread safety: none. One thread calls everything, Run() included.
#ifndef HSI_DAEMON_EVENT_LOOP_H_
#define HSI_DAEMON_EVENT_LOOP_H_

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "hsi/fd.h"

namespace hsid {

class EventLoop {
 public:
  // What a request is for; with an id, the tag its completion comes back with.
  enum class Kind : uint8_t {
    kListen = 1,     // the listening socket is readable
    kSignal = 2,     // the loop's own signalfd
    kClientIn = 3,   // a client socket is readable (id: client id)
    kClientOut = 4,  // a client socket is writable (id: client id)
    kTimer = 5,      // the timeout of ArmTimer()
    kIgnore = 6,     // a cancellation's own completion
    kBell = 7,       // a doorbell write finished (id: NIC id)
    kCluster = 8,    // the cluster member's eventfd is readable (cluster.h)
  };

  class Handler {
   public:
    virtual ~Handler() = default;
    // One completion: `res` is the CQE's result (a poll mask or -errno).
    virtual void OnEvent(Kind kind, uint64_t id, int res) = 0;
    virtual void AfterEvent() = 0;
    virtual void AfterTurn() = 0;
    // Whether a completion is due within microseconds (see above).
    virtual bool ExpectSoon() const = 0;
  };

  EventLoop() = default;
  ~EventLoop() { Close(); }
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Blocks the signals, opens the signalfd and the ring (512 entries).
  absl::Status Init();
  // Tears the ring down (cancelling what is pending); the destructor does
  // it too. Nothing may be called afterwards.
  void Close();

  // Asks for one completion when `fd` is ready for `mask` (poll(2) bits).
  void ArmPoll(int fd, uint32_t mask, Kind kind, uint64_t id);
  // Writes `len` bytes of `data` to `fd` at the file's position; `data`
  // must stay valid until the completion.
  void Write(int fd, const void* data, size_t len, Kind kind, uint64_t id);
  // Cancels the request tagged (`kind`, `id`), if it is still pending.
  void Cancel(Kind kind, uint64_t id);
  // A Kind::kTimer completion `after` from now, unless one is pending.
  void ArmTimer(absl::Duration after);
  bool timer_armed() const { return timer_pending_; }

  // Serves completions until SIGTERM or SIGINT; an error only if the ring
  // itself fails.
  absl::Status Run(Handler& handler);

 private:
  io_uring_sqe* Sqe();
  // Waits briefly, without sleeping, for a completion (ExpectSoon()).
  void SpinForCompletion();
  // The completions ready now, as (tag, result), removed from the queue.
  std::vector<std::pair<uint64_t, int>> Reap();
  void ReadSignals();

  hsi::UniqueFd signal_fd_;
  io_uring ring_{};
  bool ring_ok_ = false;
  bool timer_pending_ = false;
  __kernel_timespec timer_ts_{};  // read by the kernel while the timeout is pending
  bool stop_ = false;
};

}  // namespace hsid

#endif  // HSI_DAEMON_EVENT_LOOP_H_
