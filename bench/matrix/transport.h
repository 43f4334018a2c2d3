// bench/matrix/transport.h: the transports hsi-bench compares, behind one
// interface.
//
// A measurement "cell" is one transport at one message size in one
// repetition. The coordinator (hsi-bench's main process) calls
// Transport::Prepare() to make what both ends share (a socket pair, ring
// segments, queue names...), then forks two children pinned to two CPUs:
// side A measures (times round trips, sinks the stream) and side B answers
// (echoes, sources the stream). Each child calls Link::Open() for its side
// and drives the returned End.
//
// Messages: every message is exactly `size` bytes. Word 0 (8 bytes) is the
// message index; every other word is FillWord(index). A receiver checks the
// index (order, no loss) and sums every word (all bytes are read, as a real
// receiver must); the coordinator compares the sink's sum with the source's.
// Index kStopIndex ends an echo loop, kEndIndex ends a stream.
//
// Thread safety: none. Each End lives in one single-threaded child process
// (iceoryx adds its own runtime threads).
#ifndef HSI_BENCH_MATRIX_TRANSPORT_H_
#define HSI_BENCH_MATRIX_TRANSPORT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "harness.h"
#include "hsi/wait.h"

namespace hsi::bench::matrix {

inline constexpr uint64_t kStopIndex = ~uint64_t{0};
inline constexpr uint64_t kEndIndex = ~uint64_t{0} - 1;

// Every other word of message i.
inline uint64_t FillWord(uint64_t i) { return (i + 1) * 0x9E3779B97F4A7C15ULL; }

// Writes message i of `size` bytes (size >= 8, a multiple of 8) to `p`.
inline void FillMessage(uint8_t* p, size_t size, uint64_t i) {
  const uint64_t fill = FillWord(i);
  std::memcpy(p, &i, 8);
  for (size_t off = 8; off < size; off += 8) std::memcpy(p + off, &fill, 8);
}

// The checksum contribution of message i as the source computes it.
inline uint64_t MessageSum(size_t size, uint64_t i) { return i + (size / 8 - 1) * FillWord(i); }

// The sum of every 64-bit word of `size` bytes at `p` (what a sink computes).
inline uint64_t WordSum(const uint8_t* p, size_t size) {
  uint64_t sum = 0;
  for (size_t off = 0; off < size; off += 8) {
    uint64_t x;
    std::memcpy(&x, p + off, 8);
    sum += x;
  }
  return sum;
}

inline uint64_t IndexOf(const uint8_t* p) {
  uint64_t i;
  std::memcpy(&i, p, 8);
  return i;
}

// What one side of a stream counted.
struct Tally {
  uint64_t frames = 0;
  uint64_t checksum = 0;
};

// Shared between the sink, which decides when the stream ends, and the
// source, which polls it. Lives in the cell's shared memory.
struct StreamStop {
  std::atomic<uint32_t> stop{0};
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// The sink's clock: Due() is cheap (reads the TSC every 16th call) and
// becomes true, once, after the stream's duration; it then sets the flag the
// source polls.
class SinkTimer {
 public:
  SinkTimer(StreamStop* stop, absl::Duration span, const TickClock& clock)
      : stop_(stop),
        end_(TickClock::Now() +
             static_cast<uint64_t>(absl::ToDoubleNanoseconds(span) / clock.ns_per_tick())) {}
  // True when the source has been told to stop (call Due() once per frame).
  bool Due() {
    if (fired_) return true;
    if ((++calls_ & 15) != 0) return false;
    if (TickClock::Now() < end_) return false;
    // Release: nothing to publish but the flag itself; pairs with the
    // source's relaxed polling load (any order is fine: it only ends a loop).
    stop_->stop.store(1, std::memory_order_release);
    fired_ = true;
    return true;
  }
  bool fired() const { return fired_; }

 private:
  StreamStop* stop_;
  uint64_t end_;
  uint32_t calls_ = 0;
  bool fired_ = false;
};

inline bool StopRequested(const StreamStop& s) {
  // Relaxed: the flag only ends the source's loop; the data it sends after
  // it are ordered by the transport itself.
  return s.stop.load(std::memory_order_relaxed) != 0;
}

// One side of a connection, opened in a child process.
class End {
 public:
  virtual ~End() = default;

  // Side A: one round trip of message `index` (`size` bytes out, the echo of
  // the same bytes back), with the echo checked.
  virtual absl::Status RoundTrip(uint64_t index) = 0;
  // Side A: tells side B's Echo() to return.
  virtual absl::Status StopEcho() = 0;
  // Side B: echoes messages until StopEcho()'s message.
  virtual absl::Status Echo() = 0;

  // Side B: sends messages 0, 1, ... until `stop` is set, then an end
  // marker. Fills `sent`.
  virtual absl::Status Source(const StreamStop& stop, Tally* sent) = 0;
  // Side A: receives until the end marker, calling timer->Due() once per
  // message. Fills `got`.
  virtual absl::Status Sink(SinkTimer* timer, Tally* got) = 0;

  // True if the child must leave with exit() rather than _exit() so that a
  // library can deregister (iceoryx's runtime tells RouDi it is gone).
  virtual bool wants_exit() const { return false; }
};

enum class Side { kA, kB };

// What both ends of one cell share; made in the coordinator before fork(),
// copied into both children by fork().
class Link {
 public:
  virtual ~Link() = default;
  // In a child: opens `side`, closing what belongs to the other side.
  virtual absl::StatusOr<std::unique_ptr<End>> Open(Side side) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Short name for --transports, JSON and plot files: "hsi-spin-zc", "tcp".
  virtual std::string key() const = 0;
  // For tables: "hsi spin zero-copy".
  virtual std::string label() const = 0;
  // Whether it has a one-way stream (the cache-line floor does not).
  virtual bool streams() const { return true; }
  // Whether message size matters (the cache-line floor is one line).
  virtual bool sized() const { return true; }
  // Whether it carries `size`-byte messages at all (the session API: up to
  // the CHPID's MTU); sizes it does not fit are left out of its row.
  virtual bool fits(size_t size) const { return size > 0; }
  // Makes a link for `size`-byte messages; `tag` is unique in this run.
  virtual absl::StatusOr<std::unique_ptr<Link>> Prepare(size_t size, const std::string& tag) = 0;
};

// Every transport this build has, in table order. The iceoryx one is there
// only when hsi-bench was built with iceoryx (see IceoryxAvailable()).
std::vector<std::unique_ptr<Transport>> AllTransports();

// The blocking floor (two processes in FUTEX_WAIT/FUTEX_WAKE on one word)
// and the ring sleeping on its eventfd doorbell (wakeup.cc).
std::unique_ptr<Transport> MakeFutexTransport();
std::unique_ptr<Transport> MakeHsiBellTransport();

// The session API (hsi::Session, Nic::SendTo/Receive) through a private
// hsid that the transport starts on first use and stops when destroyed
// (session.cc), waiting as `mode` says; `batch`: the stream goes through
// Link::SendBatch/ReceiveBatch.
std::unique_ptr<Transport> MakeSessionTransport(WaitMode mode, bool batch = false);

// iceoryx: whether it was compiled in (CMake found iceoryx_posh), and the
// transport (nullptr when not compiled in).
bool IceoryxCompiledIn();
std::unique_ptr<Transport> MakeIceoryxTransport();
// Starts iox-roudi with a mempool per message size in `sizes`, writing
// roudi.toml and roudi.log into `dir`; waits until it accepts clients.
// kUnavailable if it exits at once (e.g. another RouDi runs).
absl::Status StartRouDi(const std::vector<size_t>& sizes, const std::string& dir);
// Stops iox-roudi (SIGTERM, then SIGKILL) if StartRouDi() started it.
void StopRouDi();

// Reading and writing whole buffers on a blocking fd (EINTR retried, short
// transfers looped). ReadFull fails with kUnavailable at EOF.
absl::Status WriteFull(int fd, const void* data, size_t n);
absl::Status ReadFull(int fd, void* data, size_t n);

}  // namespace hsi::bench::matrix

#endif  // HSI_BENCH_MATRIX_TRANSPORT_H_
