// bench/harness.h: cross-process measurement helpers shared by
// hsi-ring-bench (Google Benchmark) and hsi-demo (the side-by-side table).
//
// What is here:
//   - CPU placement: PlanCpus() picks two different CPUs for the measuring
//     process and its peer; ScopedPin pins the caller for a scope.
//   - Peer: a fork()ed process pinned to a CPU that is always reaped (killed
//     and waited for) when its handle goes away, so no error path leaves a
//     spinning process behind. It dies with its parent (PR_SET_PDEATHSIG).
//   - SharedMemory: a MAP_SHARED|MAP_ANONYMOUS mapping made before fork().
//   - The bare cache-line ping-pong (the hardware floor every other figure is
//     compared with), the hsi ring ping-pong and one-way stream, and the
//     loopback TCP baseline, each as a "measuring side" and a "peer side".
//   - TickClock for timing single round trips, and percentile math.
//
// Nothing here is part of libhsi's API; it only uses the public headers.
//
// Thread safety: none of these types is shared between threads. Each peer
// side runs in its own process.
#ifndef HSI_BENCH_HARNESS_H_
#define HSI_BENCH_HARNESS_H_

#include <sched.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hsi/endpoint.h"
#include "hsi/fd.h"
#include "hsi/ring.h"
#include "hsi/wait.h"
#include "hsi/support/cpu.h"
#include "hsi/support/tick_clock.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace hsi::bench {

// ------------------------------------------------------------------ CPUs

// Where the measuring process and its peer run.
struct CpuPlan {
  int self = -1;  // CPU of the measuring process; -1: not pinned
  int peer = -1;  // CPU of the forked peer; -1: not pinned
  // "cpu 0 <-> cpu 1", or why nothing is pinned ("unpinned: only 1 CPU").
  std::string label;
  bool pinned() const { return self >= 0 && peer >= 0; }
};

// Picks the first two CPUs the calling process may run on. With fewer than
// two, returns an unpinned plan whose label says so.
CpuPlan PlanCpus();

// Pins the calling thread to `cpu` (support/hsi/support/cpu.h).
using ::hsi::support::PinToCpu;

// Pins the calling thread to `cpu` (nothing if `cpu` < 0) and restores the
// previous affinity mask when it goes out of scope.
class ScopedPin {
 public:
  explicit ScopedPin(int cpu);
  ~ScopedPin();
  ScopedPin(const ScopedPin&) = delete;
  ScopedPin& operator=(const ScopedPin&) = delete;

  // OK, or why the pin failed (the thread then runs where it ran before).
  const absl::Status& status() const { return status_; }

 private:
  cpu_set_t saved_;
  bool restore_ = false;
  absl::Status status_;
};

// ------------------------------------------------------------------ peers

// A fork()ed peer process. The destructor SIGKILLs and reaps it if it is
// still there, so every path out of a benchmark reaps its child.
class Peer {
 public:
  // Forks; the child sets PR_SET_PDEATHSIG (it dies if we die), pins itself
  // to `cpu` (unless `cpu` < 0), runs `body` and _exit()s with its return
  // value (0 = success; on failure `body` prints its own message, see
  // PeerFailed()). `name` is used in statuses ("peer", "LPAR B").
  static absl::StatusOr<Peer> Fork(absl::string_view name, int cpu,
                                   const std::function<int()>& body);

  Peer() = default;
  ~Peer() { Kill(); }
  Peer(Peer&& other) noexcept;
  Peer& operator=(Peer&& other) noexcept;
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  // True once the peer has exited and been reaped (does not block).
  bool Poll();
  // Waits up to `timeout` for the peer to exit, killing it at the timeout.
  // OK if it exited with 0; otherwise a status saying how it ended.
  absl::Status Join(absl::Duration timeout);
  // SIGKILLs and reaps the peer if it has not been reaped yet.
  void Kill();
  // After the peer was reaped: OK if it exited with 0, else how it ended.
  absl::Status exit_status() const;

 private:
  void Reap(int wait_status);
  pid_t pid_ = -1;
  std::string name_;
  int wait_status_ = 0;
  bool reaped_ = false;
};

// For a peer's body: prints "<program>: <who>: <status>" to stderr and
// returns the exit code the body should return (1).
int PeerFailed(absl::string_view who, const absl::Status& status);

// Sets the program name PeerFailed() prints (default "hsi-bench").
void SetProgramName(absl::string_view name);

// ---------------------------------------------------------- shared memory

// A zeroed MAP_SHARED|MAP_ANONYMOUS mapping, populated up front, inherited
// by children forked after it was made. Move-only; unmapped on destruction.
class SharedMemory {
 public:
  static absl::StatusOr<SharedMemory> Create(size_t bytes);

  SharedMemory() = default;
  ~SharedMemory();
  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  // The first word, on its own page-aligned (so 64-byte-aligned) line.
  std::atomic<uint64_t>* word() const { return static_cast<std::atomic<uint64_t>*>(data_); }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// ------------------------------------------------------------------ time

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// TickClock (support/hsi/support/tick_clock.h) times one round trip.
using ::hsi::support::TickClock;

// ----------------------------------------------------------- statistics

struct Summary {
  size_t n = 0;
  double min = 0, p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};

// Percentile of `sorted` (ascending, non-empty) by the nearest-rank method:
// the smallest value with at least q of the samples at or below it.
double Percentile(const std::vector<double>& sorted, double q);
// Sorts `samples` and summarizes them; an all-zero Summary if empty.
Summary Summarize(std::vector<double> samples);

// ------------------------------------------- cache-line ping-pong (floor)

// The value that tells a CacheLinePong() to return.
inline constexpr uint64_t kLineStop = ~uint64_t{0};

// How long one side of a ping-pong waits for the other before giving up.
inline constexpr absl::Duration kPeerTimeout = absl::Seconds(10);

// The measuring side of the bare hardware floor: two processes bouncing one
// cache line. `word` is SharedMemory::word() of a mapping made before fork;
// the peer runs CacheLinePong() on it. With `pause` both sides execute a
// pause instruction per spin, as libhsi's spin loop does.
class CacheLinePinger {
 public:
  CacheLinePinger(std::atomic<uint64_t>* word, bool pause)
      // Relaxed: read once before the peer is engaged; the value is ours.
      : word_(word), value_(word->load(std::memory_order_relaxed)), pause_(pause) {}

  // One round trip: stores the next odd value and spins until the peer
  // answers with the even value after it. False if it did not answer within
  // kPeerTimeout (peer dead or wedged).
  bool RoundTrip() {
    const uint64_t want = value_ + 2;
    // Release pairs with the acquire load in CacheLinePong().
    word_->store(value_ + 1, std::memory_order_release);
    // Acquire pairs with the peer's release store of the answer.
    for (uint64_t i = 1; word_->load(std::memory_order_acquire) != want; ++i) {
      if (pause_) CpuRelax();
      if ((i & 4095) == 0 && Slow(i)) return false;
    }
    value_ = want;
    return true;
  }
  // Tells the peer to return from CacheLinePong().
  void Stop() { word_->store(kLineStop, std::memory_order_release); }

 private:
  bool Slow(uint64_t spins);  // reads the clock; true past kPeerTimeout
  std::atomic<uint64_t>* word_;
  uint64_t value_;
  bool pause_;
  std::chrono::steady_clock::time_point slow_since_;
};

// The peer side: answers `limit` round trips (0: until Stop()). Fails if no
// ping comes within `timeout`.
absl::Status CacheLinePong(std::atomic<uint64_t>* word, uint64_t limit, bool pause,
                           absl::Duration timeout = kPeerTimeout);

// ------------------------------------------------------ hsi ring helpers

// A Wait for loops of many short waits: its deadline slides to now +
// `timeout` every `every` calls of Next(), so a dead peer is noticed within
// about `timeout` without reading the clock on every call.
class SlidingWait {
 public:
  SlidingWait(WaitMode mode, absl::Duration timeout, uint32_t every = 4096)
      : wait_{mode, absl::Now() + timeout}, timeout_(timeout), every_(every) {}
  const Wait& Next() {
    if (++calls_ == every_) {
      calls_ = 0;
      wait_.deadline = absl::Now() + timeout_;
    }
    return wait_;
  }

 private:
  Wait wait_;
  absl::Duration timeout_;
  uint32_t every_;
  uint32_t calls_ = 0;
};

// Frame types used between the benchmark processes (the ring does not
// interpret them).
inline constexpr uint16_t kTypeData = 1;
inline constexpr uint16_t kTypeControl = 0xfff0;  // hsi-demo phase changes
inline constexpr uint16_t kTypeStop = 0xfff1;     // "stop now"
inline constexpr uint16_t kTypeEnd = 0xfff2;      // stream end, carries a tally

// The measuring side of an hsi ping-pong: sends a frame of `size` bytes
// carrying a round-trip index, waits for the peer's echo (RingEcho) and
// checks its length and index. `zero_copy`: Reserve/Commit + Peek/Release;
// otherwise the copying Send + Receive.
class RingPinger {
 public:
  RingPinger(Endpoint* end, size_t size, bool zero_copy);
  absl::Status RoundTrip(const Wait& wait);

 private:
  absl::Status Check(absl::Span<const uint8_t> echo);
  Endpoint* end_;
  size_t size_;
  bool zero_copy_;
  uint64_t index_ = 0;
  std::vector<uint8_t> out_, in_;
};

// The peer side: echoes data frames back (same length and bytes) until a
// kTypeStop frame or `limit` frames (0: no limit), waiting as `mode` says.
// Any other frame type is an error; so is no frame for kPeerTimeout.
absl::Status RingEcho(Endpoint* end, WaitMode mode, bool zero_copy, uint64_t limit);

// Sends an empty frame of `type` (kTypeStop, kTypeControl...) with `payload`.
absl::Status SendControl(RingProducer* tx, uint16_t type, absl::Span<const uint8_t> payload,
                         const Wait& wait);

// What a stream source sent, as it says in its end frame.
struct StreamTally {
  uint64_t frames = 0;
  uint64_t checksum = 0;     // sum of every 64-bit word of every payload
  uint64_t full_events = 0;  // source: times it found the ring full
};

// One-way zero-copy stream, producing side. Frame i is `size` bytes: the
// 64-bit index i, then a byte pattern derived from i. Frames are committed
// with CommitDeferred() and published once per Batch().
class StreamSource {
 public:
  // `size` must be a multiple of 8, at least 8, at most the ring's MTU.
  static absl::StatusOr<StreamSource> Create(RingProducer* tx, size_t size);

  // Writes and commits `n` frames (TryReserve; only when the ring is full it
  // publishes and waits for room as `wait` says), then Publish()es once.
  absl::Status Batch(uint32_t n, const Wait& wait);
  // Commits and publishes the end frame carrying tally().
  absl::Status End(const Wait& wait);
  const StreamTally& tally() const { return tally_; }

 private:
  StreamSource(RingProducer* tx, size_t size) : tx_(tx), size_(size) {}
  RingProducer* tx_;
  size_t size_;
  StreamTally tally_;
};

// One-way stream, consuming side: checks every frame's type, length and
// index (order), sums every word of its payload (so all bytes are read, as
// a real receiver would), and releases with ReleaseDeferred(), publishing
// once per Batch().
class StreamSink {
 public:
  StreamSink(RingConsumer* rx, size_t size) : rx_(rx), size_(size) {}

  // Consumes `n` data frames (TryPeek; Peek as `wait` says only when
  // empty), then Publish()es once.
  absl::Status Batch(uint32_t n, const Wait& wait);
  // Consumes data frames up to and including the source's end frame, and
  // checks the source's tally against ours: kDataLoss if frames or checksum
  // differ. Returns the source's tally.
  absl::StatusOr<StreamTally> DrainToEnd(const Wait& wait);
  const StreamTally& tally() const { return tally_; }
  // Times a TryPeek found nothing and we had to wait.
  uint64_t empty_polls() const { return empty_polls_; }

 private:
  absl::Status Take(const Frame& f);
  RingConsumer* rx_;
  size_t size_;
  StreamTally tally_;
  uint64_t empty_polls_ = 0;
};

// Frames per Publish() for a stream of `size`-byte frames on `geometry`:
// 64, fewer when 4 batches would not fit the ring.
uint32_t StreamBatch(const RingGeometry& geometry, size_t size);

// ------------------------------------------------------ loopback TCP

// A listening TCP socket on 127.0.0.1 with an ephemeral port (in *port).
absl::StatusOr<UniqueFd> TcpListenLoopback(uint16_t* port);
// Accepts one connection (TCP_NODELAY set), waiting at most `timeout`.
absl::StatusOr<UniqueFd> TcpAccept(int listen_fd, absl::Duration timeout);
// Connects to 127.0.0.1:`port` with TCP_NODELAY set.
absl::StatusOr<UniqueFd> TcpConnectLoopback(uint16_t port);
// Blocking full-length send/recv (EINTR retried; short transfers looped).
// RecvAll fails with kUnavailable at EOF.
absl::Status SendAll(int fd, const void* data, size_t n);
absl::Status RecvAll(int fd, void* data, size_t n);
// Echoes `size`-byte messages (size >= 1) until EOF (OK) or `limit`
// messages (0: no limit).
absl::Status TcpEcho(int fd, size_t size, uint64_t limit);

}  // namespace hsi::bench

#endif  // HSI_BENCH_HARNESS_H_
