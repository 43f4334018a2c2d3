// hsi-ring-bench: Google Benchmark micro-benchmarks of the frame ring across
// two processes, beside the hardware floor (a bare cache-line ping-pong) and
// loopback TCP. See bench/README.md for what each one measures and how to
// read the counters.
//
// Every benchmark fork()s a peer process, pins itself and the peer to two
// different CPUs (or says in the label that it could not), and reaps the
// peer on every path out (Peer's destructor kills and waits). Times are real
// (wall-clock) time: the work is split over two processes.
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "harness.h"
#include "hsi/endpoint.h"
#include "hsi/ring.h"
#include "hsi/wait.h"

namespace hsi::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Untimed round trips before each timed loop (page faults, caches, branch
// predictors, the peer getting scheduled).
constexpr int kWarmupRoundTrips = 200;
// Cache-line round trips each ping-pong run measures first, as its floor
// (after kFloorWarmup untimed ones).
constexpr uint64_t kFloorWarmup = 2000;
constexpr uint64_t kFloorRoundTrips = 20000;

void Fail(benchmark::State& state, const absl::Status& status) {
  if (!state.error_occurred()) state.SkipWithError(status.ToString().c_str());
}

// An error on our side, with the peer's fate if it is already gone (the
// usual cause of a wait running into its deadline).
absl::Status WithPeer(const absl::Status& s, Peer& peer) {
  if (s.ok() || !peer.Poll() || peer.exit_status().ok()) return s;
  return absl::Status(s.code(), absl::StrCat(s.message(), "; ", peer.exit_status().message()));
}

// Reaps the peer after a run; a peer that failed fails the run.
void JoinPeer(benchmark::State& state, Peer& peer) {
  absl::Status s = peer.Join(absl::Seconds(10));
  if (!s.ok()) Fail(state, s);
}

double NsPerIteration(Clock::duration elapsed, benchmark::IterationCount iterations) {
  if (iterations == 0) return 0;
  return std::chrono::duration<double, std::nano>(elapsed).count() /
         static_cast<double>(iterations);
}

// ------------------------------------------------------- cache-line floor

// Two processes bounce one 64-byte-aligned cache line (an atomic counter in
// a MAP_SHARED|MAP_ANONYMOUS page made before fork). One iteration is one
// round trip; `pause` adds a pause instruction per spin on both sides, as
// libhsi's spin loop does.
void BM_CacheLinePingPong(benchmark::State& state, bool pause) {
  const CpuPlan plan = PlanCpus();
  absl::StatusOr<SharedMemory> mem = SharedMemory::Create(4096);
  if (!mem.ok()) return Fail(state, mem.status());
  ScopedPin pin(plan.self);
  if (!pin.status().ok()) return Fail(state, pin.status());
  std::atomic<uint64_t>* word = mem->word();
  absl::StatusOr<Peer> peer = Peer::Fork("cache-line peer", plan.peer, [&]() -> int {
    absl::Status s = CacheLinePong(word, 0, pause);
    return s.ok() ? 0 : PeerFailed("cache-line peer", s);
  });
  if (!peer.ok()) return Fail(state, peer.status());

  CacheLinePinger pinger(word, pause);
  bool ok = true;
  for (int i = 0; i < kWarmupRoundTrips && ok; ++i) ok = pinger.RoundTrip();
  const auto t0 = Clock::now();
  for (auto _ : state) {
    if (!pinger.RoundTrip()) {
      ok = false;
      break;
    }
  }
  const auto t1 = Clock::now();
  if (ok) {
    pinger.Stop();
  } else {
    Fail(state, WithPeer(absl::DeadlineExceededError("cache-line peer stopped answering"), *peer));
    peer->Kill();
  }
  JoinPeer(state, *peer);
  state.counters["rtt_ns"] = NsPerIteration(t1 - t0, state.iterations());
  state.SetLabel(plan.label);
}

// ------------------------------------------------------ ring ping-pong

RingGeometry PingPongGeometry() { return RingGeometry{uint64_t{1} << 20, 16384}; }

// Cross-process ping-pong over a duplex Endpoint: we send a `size`-byte
// frame on tx, the peer echoes it back, we wait for it. One iteration is one
// round trip. Both sides wait as `mode` says.
void BM_RingPingPong(benchmark::State& state, WaitMode mode, size_t size, bool zero_copy) {
  const CpuPlan plan = PlanCpus();
  const RingGeometry g = PingPongGeometry();
  absl::StatusOr<EndpointFdPair> fds = CreateEndpointFds(g);
  if (!fds.ok()) return Fail(state, fds.status());
  ScopedPin pin(plan.self);
  if (!pin.status().ok()) return Fail(state, pin.status());
  SlidingWait wait(mode, kPeerTimeout);

  absl::StatusOr<SharedMemory> line = SharedMemory::Create(4096);
  if (!line.ok()) return Fail(state, line.status());
  std::atomic<uint64_t>* word = line->word();

  absl::StatusOr<Peer> peer = Peer::Fork("echo peer", plan.peer, [&]() -> int {
    fds->b = {};
    absl::StatusOr<Endpoint> end = Endpoint::Open(std::move(fds->a), g);
    if (!end.ok()) return PeerFailed("echo peer", end.status());
    absl::Status s = CacheLinePong(word, kFloorWarmup + kFloorRoundTrips, /*pause=*/false);
    if (s.ok()) s = RingEcho(&*end, mode, zero_copy, 0);
    return s.ok() ? 0 : PeerFailed("echo peer", s);
  });
  if (!peer.ok()) return Fail(state, peer.status());
  fds->a = {};
  absl::StatusOr<Endpoint> end = Endpoint::Open(std::move(fds->b), g);
  if (!end.ok()) return Fail(state, end.status());

  // The floor, measured by the same two processes just before the timed
  // loop: the host may move our vCPUs between runs, so a ratio to a floor
  // measured in another run would mislead.
  double floor_ns = 0;
  {
    CacheLinePinger line_pinger(word, /*pause=*/false);
    auto f0 = Clock::now();
    for (uint64_t i = 0; i < kFloorWarmup + kFloorRoundTrips; ++i) {
      if (i == kFloorWarmup) f0 = Clock::now();
      if (!line_pinger.RoundTrip()) {
        return Fail(state, WithPeer(absl::DeadlineExceededError(
                                        "echo peer stopped answering on the cache line"),
                                    *peer));
      }
    }
    floor_ns = NsPerIteration(Clock::now() - f0, static_cast<int64_t>(kFloorRoundTrips));
  }

  RingPinger pinger(&*end, size, zero_copy);
  absl::Status s;
  for (int i = 0; i < kWarmupRoundTrips && s.ok(); ++i) s = pinger.RoundTrip(wait.Next());
  const uint64_t wakeups0 = end->tx().counters().wakeups_sent;
  const auto t0 = Clock::now();
  if (s.ok()) {
    for (auto _ : state) {
      s = pinger.RoundTrip(wait.Next());
      if (!s.ok()) break;
    }
  }
  const auto t1 = Clock::now();
  const uint64_t wakeups = end->tx().counters().wakeups_sent - wakeups0;
  if (s.ok()) {
    s = SendControl(&end->tx(), kTypeStop, {}, Wait::Adaptive(absl::Now() + absl::Seconds(5)));
  }
  if (!s.ok()) {
    Fail(state, WithPeer(s, *peer));
    peer->Kill();  // it may be waiting for a frame that will not come
  }
  JoinPeer(state, *peer);
  const double rtt_ns = NsPerIteration(t1 - t0, state.iterations());
  state.counters["rtt_ns"] = rtt_ns;
  state.counters["floor_ns"] = floor_ns;
  state.counters["x_floor"] = floor_ns > 0 ? rtt_ns / floor_ns : 0;
  // Doorbell writes we made per round trip (0 when the peer never sleeps).
  state.counters["wakeups_per_rtt"] =
      state.iterations() == 0 ? 0
                              : static_cast<double>(wakeups) /
                                    static_cast<double>(state.iterations());
  state.SetLabel(plan.label);
}

// ----------------------------------------------------------- ring stream

RingGeometry StreamGeometry(size_t size) {
  if (size <= 1024) return RingGeometry{uint64_t{1} << 20, 16384};
  return RingGeometry{uint64_t{4} << 20, 65536};
}

// Cross-process one-way stream, zero-copy and batched: the peer produces
// (TryReserve + CommitDeferred, Publish() once per batch), we consume
// (TryPeek + ReleaseDeferred, Publish() once per batch) and read every byte.
// One iteration is one batch. At the end we stop the producer, drain the
// ring and check the producer's frame count and checksum against ours.
void BM_RingStream(benchmark::State& state, size_t size) {
  const CpuPlan plan = PlanCpus();
  const RingGeometry g = StreamGeometry(size);
  const uint32_t batch = StreamBatch(g, size);
  absl::StatusOr<EndpointFdPair> fds = CreateEndpointFds(g);
  if (!fds.ok()) return Fail(state, fds.status());
  ScopedPin pin(plan.self);
  if (!pin.status().ok()) return Fail(state, pin.status());
  absl::StatusOr<Peer> peer = Peer::Fork("stream producer", plan.peer, [&]() -> int {
    fds->b = {};
    absl::StatusOr<Endpoint> end = Endpoint::Open(std::move(fds->a), g);
    if (!end.ok()) return PeerFailed("stream producer", end.status());
    absl::StatusOr<StreamSource> source = StreamSource::Create(&end->tx(), size);
    if (!source.ok()) return PeerFailed("stream producer", source.status());
    SlidingWait wait(WaitMode::kSpin, kPeerTimeout, 256);
    for (;;) {
      if (absl::Status s = source->Batch(batch, wait.Next()); !s.ok()) {
        return PeerFailed("stream producer", s);
      }
      Frame f;
      if (end->rx().TryPeek(&f)) {
        if (f.type != kTypeStop) {
          return PeerFailed("stream producer", absl::DataLossError(absl::StrCat(
              "unexpected control frame type 0x", absl::Hex(f.type))));
        }
        end->rx().Release();
        break;
      }
      if (!end->rx().ok()) return PeerFailed("stream producer", end->rx().status());
    }
    absl::Status s = source->End(wait.Next());
    return s.ok() ? 0 : PeerFailed("stream producer", s);
  });
  if (!peer.ok()) return Fail(state, peer.status());
  fds->a = {};
  absl::StatusOr<Endpoint> end = Endpoint::Open(std::move(fds->b), g);
  if (!end.ok()) return Fail(state, end.status());

  StreamSink sink(&end->rx(), size);
  SlidingWait wait(WaitMode::kSpin, kPeerTimeout, 256);
  // Warm-up: two laps of the ring (first-touch page faults on both sides).
  const uint64_t record = (16 + size + 15) / 16 * 16;
  const uint64_t warm_batches = (2 * g.capacity / record + batch - 1) / batch;
  absl::Status s;
  for (uint64_t i = 0; i < warm_batches && s.ok(); ++i) s = sink.Batch(batch, wait.Next());
  const uint64_t empty0 = sink.empty_polls();
  if (s.ok()) {
    for (auto _ : state) {
      s = sink.Batch(batch, wait.Next());
      if (!s.ok()) break;
    }
  }
  const uint64_t empty = sink.empty_polls() - empty0;
  if (s.ok()) s = SendControl(&end->tx(), kTypeStop, {}, wait.Next());
  absl::StatusOr<StreamTally> sent = s.ok() ? sink.DrainToEnd(wait.Next())
                                            : absl::StatusOr<StreamTally>(s);
  if (!sent.ok()) {
    Fail(state, WithPeer(sent.status(), *peer));
    peer->Kill();  // it may be waiting for room that will not come
  }
  JoinPeer(state, *peer);

  const double frames = static_cast<double>(state.iterations()) * batch;
  state.counters["frames"] = benchmark::Counter(frames, benchmark::Counter::kIsRate);
  state.counters["bytes"] = benchmark::Counter(frames * static_cast<double>(size),
                                               benchmark::Counter::kIsRate,
                                               benchmark::Counter::kIs1024);
  state.counters["batch"] = batch;
  // Consumer found the ring empty, per 1000 frames consumed (producer-bound
  // when high); producer found it full, per 1000 frames sent.
  state.counters["empty_per_kframe"] = frames == 0 ? 0 : 1000.0 * static_cast<double>(empty) / frames;
  if (sent.ok() && sent->frames != 0) {
    state.counters["full_per_kframe"] =
        1000.0 * static_cast<double>(sent->full_events) / static_cast<double>(sent->frames);
  }
  state.SetLabel(absl::StrCat(plan.label, sent.ok() ? absl::StrCat("; verified ", sent->frames,
                                                                    " frames + checksum")
                                                    : ""));
}

// ------------------------------------------------------- TCP baselines

// Loopback TCP ping-pong with TCP_NODELAY, blocking send/recv with
// full-length loops: the baseline hsi's round trip is compared with.
void BM_TcpPingPong(benchmark::State& state, size_t size) {
  const CpuPlan plan = PlanCpus();
  uint16_t port = 0;
  absl::StatusOr<UniqueFd> listener = TcpListenLoopback(&port);
  if (!listener.ok()) return Fail(state, listener.status());
  ScopedPin pin(plan.self);
  if (!pin.status().ok()) return Fail(state, pin.status());
  absl::StatusOr<Peer> peer = Peer::Fork("tcp echo peer", plan.peer, [&]() -> int {
    absl::StatusOr<UniqueFd> conn = TcpAccept(listener->get(), absl::Seconds(10));
    if (!conn.ok()) return PeerFailed("tcp echo peer", conn.status());
    absl::Status s = TcpEcho(conn->get(), size, 0);
    return s.ok() ? 0 : PeerFailed("tcp echo peer", s);
  });
  if (!peer.ok()) return Fail(state, peer.status());
  listener->Reset();
  absl::StatusOr<UniqueFd> conn = TcpConnectLoopback(port);
  if (!conn.ok()) return Fail(state, conn.status());

  std::vector<uint8_t> out(size, 0x5a), in(size);
  uint64_t index = 0;
  auto round_trip = [&]() -> absl::Status {
    ++index;
    std::memcpy(out.data(), &index, std::min<size_t>(8, size));
    if (absl::Status s = SendAll(conn->get(), out.data(), size); !s.ok()) return s;
    if (absl::Status s = RecvAll(conn->get(), in.data(), size); !s.ok()) return s;
    if (std::memcmp(in.data(), &index, std::min<size_t>(8, size)) != 0) {
      return absl::DataLossError("tcp echo carries another round trip's index");
    }
    return absl::OkStatus();
  };
  absl::Status s;
  for (int i = 0; i < kWarmupRoundTrips && s.ok(); ++i) s = round_trip();
  const auto t0 = Clock::now();
  if (s.ok()) {
    for (auto _ : state) {
      s = round_trip();
      if (!s.ok()) break;
    }
  }
  const auto t1 = Clock::now();
  if (!s.ok()) Fail(state, WithPeer(s, *peer));
  conn->Reset();  // EOF ends the peer's echo loop
  JoinPeer(state, *peer);
  state.counters["rtt_ns"] = NsPerIteration(t1 - t0, state.iterations());
  state.SetLabel(plan.label);
}

// Loopback TCP bulk stream: the peer sends `size`-byte chunks, we receive
// each in full and read every word, as BM_RingStream's consumer does. One
// iteration is one chunk.
void BM_TcpStream(benchmark::State& state, size_t size) {
  const CpuPlan plan = PlanCpus();
  uint16_t port = 0;
  absl::StatusOr<UniqueFd> listener = TcpListenLoopback(&port);
  if (!listener.ok()) return Fail(state, listener.status());
  ScopedPin pin(plan.self);
  if (!pin.status().ok()) return Fail(state, pin.status());
  absl::StatusOr<Peer> peer = Peer::Fork("tcp stream peer", plan.peer, [&]() -> int {
    absl::StatusOr<UniqueFd> conn = TcpAccept(listener->get(), absl::Seconds(10));
    if (!conn.ok()) return PeerFailed("tcp stream peer", conn.status());
    std::vector<uint8_t> chunk(size, 0x33);
    for (uint64_t i = 0;; ++i) {
      std::memcpy(chunk.data(), &i, 8);
      for (size_t done = 0; done < size;) {
        const ssize_t r = ::send(conn->get(), chunk.data() + done, size - done, MSG_NOSIGNAL);
        if (r >= 0) {
          done += static_cast<size_t>(r);
        } else if (errno == EPIPE || errno == ECONNRESET) {
          return 0;  // the reader closed the connection: the normal end
        } else if (errno != EINTR) {
          return PeerFailed("tcp stream peer", absl::ErrnoToStatus(errno, "send"));
        }
      }
    }
  });
  if (!peer.ok()) return Fail(state, peer.status());
  listener->Reset();
  absl::StatusOr<UniqueFd> conn = TcpConnectLoopback(port);
  if (!conn.ok()) return Fail(state, conn.status());

  std::vector<uint8_t> in(size);
  uint64_t expect = 0, sum = 0;
  auto take = [&]() -> absl::Status {
    if (absl::Status s = RecvAll(conn->get(), in.data(), size); !s.ok()) return s;
    uint64_t index;
    std::memcpy(&index, in.data(), 8);
    if (index != expect++) return absl::DataLossError("tcp stream: chunk out of order");
    for (size_t w = 0; w < size / 8; ++w) {
      uint64_t x;
      std::memcpy(&x, in.data() + 8 * w, 8);
      sum += x;
    }
    return absl::OkStatus();
  };
  absl::Status s;
  for (int i = 0; i < 256 && s.ok(); ++i) s = take();
  if (s.ok()) {
    for (auto _ : state) {
      s = take();
      if (!s.ok()) break;
    }
  }
  if (!s.ok()) Fail(state, WithPeer(s, *peer));
  benchmark::DoNotOptimize(sum);
  conn->Reset();
  JoinPeer(state, *peer);
  const double chunks = static_cast<double>(state.iterations());
  state.counters["frames"] = benchmark::Counter(chunks, benchmark::Counter::kIsRate);
  state.counters["bytes"] = benchmark::Counter(chunks * static_cast<double>(size),
                                               benchmark::Counter::kIsRate,
                                               benchmark::Counter::kIs1024);
  state.SetLabel(plan.label);
}

void RegisterAll() {
  for (bool pause : {false, true}) {
    benchmark::RegisterBenchmark(absl::StrCat("BM_CacheLinePingPong/pause:", pause).c_str(),
                                 BM_CacheLinePingPong, pause)
        ->UseRealTime();
  }
  for (size_t size : {size_t{64}, size_t{1024}}) {
    for (WaitMode mode : {WaitMode::kSpin, WaitMode::kAdaptive, WaitMode::kBlock}) {
      for (bool zero_copy : {false, true}) {
        const std::string name =
            absl::StrCat("BM_RingPingPong/mode:", WaitModeName(mode), "/size:", size,
                         "/path:", zero_copy ? "zerocopy" : "copy");
        benchmark::RegisterBenchmark(name.c_str(), BM_RingPingPong, mode, size, zero_copy)
            ->UseRealTime();
      }
    }
  }
  for (size_t size : {64, 256, 1024, 4096, 16384, 65536}) {
    benchmark::RegisterBenchmark(absl::StrCat("BM_RingStream/size:", size).c_str(),
                                 BM_RingStream, size)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark("BM_TcpPingPong/size:64", BM_TcpPingPong, size_t{64})
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_TcpStream/size:65536", BM_TcpStream, size_t{65536})
      ->UseRealTime();
}

}  // namespace
}  // namespace hsi::bench

int main(int argc, char** argv) {
  hsi::bench::SetProgramName("hsi-ring-bench");
  hsi::bench::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
