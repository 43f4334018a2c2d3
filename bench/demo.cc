// hsi-demo: two LPAR processes on one link, measured side by side.
//
// The supervisor (this process, playing hsid) creates the link
// (CreateEndpointFds), a shared cache line and a loopback TCP listener, then
// forks "LPAR A" (the measuring side) and "LPAR B" (the echoing side),
// pinned to two different CPUs. In the same run, interleaved in rounds, A
// times `--count` round trips of `--size` bytes over each transport:
//
//   cache-line floor   the two processes bounce one cache line (no ring)
//   hsi spin           zero-copy Reserve/Commit + Peek/Release, busy-polling
//   hsi block          the same, sleeping in FUTEX_WAIT (the ring's blocking path)
//   loopback TCP       TCP_NODELAY, blocking send/recv of the full message
//
// then streams 64-byte frames one way (B to A) and checks the exact count
// and a checksum. The supervisor reaps both LPARs (killing the other if one
// fails or the run overruns) and prints the table, or JSON with --json.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "harness.h"
#include "hsi/endpoint.h"
#include "hsi/ring.h"
#include "hsi/wait.h"

namespace hsi::bench {
namespace {

constexpr const char* kProgram = "hsi-demo";

// The link every run uses (a CHPID with 16K frames would have this MTU).
constexpr RingGeometry kGeometry{uint64_t{1} << 20, 16384};
constexpr size_t kStreamFrameSize = 64;

constexpr uint64_t kMaxCount = 1000000;
constexpr uint64_t kMaxRounds = 100;
constexpr uint64_t kMaxSamples = 2000000;  // count x rounds, per transport
constexpr uint64_t kMaxStreamFrames = uint64_t{1} << 32;

struct Options {
  uint64_t count = 4000;
  uint64_t rounds = 5;
  uint64_t size = 64;
  uint64_t stream_frames = 20000000;
  bool json = false;
};

void PrintHelp() {
  std::printf(
      "Usage: %s [--count N] [--rounds R] [--size BYTES] [--stream-frames N] [--json]\n"
      "\n"
      "Forks two processes, LPAR A and LPAR B, pinned to two CPUs and joined by an\n"
      "hsi link, and measures in the same run, interleaved in rounds, the round trip\n"
      "of BYTES-byte messages between them over: a bare shared cache line (the\n"
      "hardware floor), the hsi ring busy-polling (spin), the hsi ring sleeping on\n"
      "its doorbell (block), and loopback TCP with TCP_NODELAY. Then it streams\n"
      "64-byte frames one way over the ring and checks the exact count and a\n"
      "checksum. Prints p50/p99/mean per transport and the ratios to loopback TCP\n"
      "and to the floor.\n"
      "\n"
      "Options:\n"
      "  --count N          round trips per transport per round (1..%" PRIu64
      ", default %" PRIu64 ")\n"
      "  --rounds R         rounds; each runs every transport once, in rotated order\n"
      "                     (1..%" PRIu64 ", default %" PRIu64 "; count x rounds <= %" PRIu64 ")\n"
      "  --size BYTES       message size of the round trips (1..%u, the link MTU;\n"
      "                     default %" PRIu64 ")\n"
      "  --stream-frames N  64-byte frames in the one-way stream (1..%" PRIu64
      ", default %" PRIu64 ")\n"
      "  --json             print the results as one JSON object instead of a table\n"
      "  --help             print this help and exit\n"
      "\n"
      "Values may be given as --flag VALUE or --flag=VALUE.\n"
      "\n"
      "Exit status: 0 when everything was measured and every check passed; 1 when a\n"
      "process, the link or a check failed (the message says which); 2 for a bad\n"
      "command line.\n",
      kProgram, kMaxCount, Options{}.count, kMaxRounds, Options{}.rounds, kMaxSamples,
      kGeometry.mtu, Options{}.size, kMaxStreamFrames, Options{}.stream_frames);
}

[[noreturn]] void UsageError(const std::string& message) {
  std::fprintf(stderr, "%s: %s (see --help)\n", kProgram, message.c_str());
  std::exit(2);
}

uint64_t ParseNumber(absl::string_view flag, absl::string_view text, uint64_t lo, uint64_t hi) {
  uint64_t v = 0;
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) {
        return c >= '0' && c <= '9';
      }) || !absl::SimpleAtoi(text, &v)) {
    UsageError(absl::StrCat(flag, " wants a whole number, got '", text, "'"));
  }
  if (v < lo || v > hi) {
    UsageError(absl::StrCat(flag, " ", v, " is outside ", lo, "..", hi));
  }
  return v;
}

Options ParseFlags(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    absl::string_view name = arg, value;
    bool has_value = false;
    if (size_t eq = arg.find('='); absl::StartsWith(arg, "--") && eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    auto take_value = [&]() -> absl::string_view {
      if (has_value) return value;
      if (i + 1 >= argc) UsageError(absl::StrCat(name, " needs a value"));
      return argv[++i];
    };
    if (name == "--help" || name == "-h") {
      if (has_value) UsageError("--help takes no value");
      PrintHelp();
      std::exit(0);
    } else if (name == "--json") {
      if (has_value) UsageError("--json takes no value");
      o.json = true;
    } else if (name == "--count") {
      o.count = ParseNumber(name, take_value(), 1, kMaxCount);
    } else if (name == "--rounds") {
      o.rounds = ParseNumber(name, take_value(), 1, kMaxRounds);
    } else if (name == "--size") {
      o.size = ParseNumber(name, take_value(), 1, UINT32_MAX);
      if (o.size > kGeometry.mtu) {
        UsageError(absl::StrCat("--size ", o.size, " exceeds the link MTU of ", kGeometry.mtu,
                                " bytes"));
      }
    } else if (name == "--stream-frames") {
      o.stream_frames = ParseNumber(name, take_value(), 1, kMaxStreamFrames);
    } else if (absl::StartsWith(arg, "-")) {
      UsageError(absl::StrCat("unknown flag '", arg, "'"));
    } else {
      UsageError(absl::StrCat("unexpected argument '", arg, "'"));
    }
  }
  if (o.count * o.rounds > kMaxSamples) {
    UsageError(absl::StrCat("--count ", o.count, " x --rounds ", o.rounds, " = ",
                            o.count * o.rounds, " round trips per transport; at most ",
                            kMaxSamples));
  }
  return o;
}

// ----------------------------------------------------- what A measures

enum Transport { kFloor, kHsiSpin, kHsiBlock, kTcp, kTransports };
constexpr std::array<const char*, kTransports> kTransportName = {
    "cache-line floor", "hsi spin", "hsi block", "loopback TCP"};
constexpr std::array<const char*, kTransports> kTransportKey = {"cacheline", "hsi_spin",
                                                                "hsi_block", "tcp"};
// Phases A announces to B on the link; the transports first.
enum Phase : uint32_t { kPhaseStream = kTransports, kPhaseDone };

struct Control {
  uint32_t phase;
  uint32_t reserved;
  uint64_t n;
};
static_assert(std::is_trivially_copyable_v<Control>);

// Written by LPAR A into shared memory, read by the supervisor after A
// exited (waitpid orders it).
struct Results {
  Summary rtt[kTransports];
  uint64_t stream_frames;
  double stream_seconds;
  uint64_t stream_checksum;
  uint64_t stream_empty_polls;
  uint64_t stream_full_events;
  uint64_t complete;  // 1 once A filled everything in
};
static_assert(std::is_trivially_copyable_v<Results>);

// Untimed round trips at the start of every phase.
uint64_t Warmup(uint64_t count) { return std::clamp<uint64_t>(count / 10, 1, 200); }

// Generous bound for one phase of `n` exchanges.
absl::Time PhaseDeadline(uint64_t n) {
  return absl::Now() + absl::Seconds(10) + absl::Milliseconds(static_cast<int64_t>(n));
}

struct Shared {
  Options options;
  TickClock clock;
  std::atomic<uint64_t>* line = nullptr;
  Results* results = nullptr;
  uint16_t tcp_port = 0;
};

int Fail(const char* who, const absl::Status& s) { return PeerFailed(who, s); }

absl::Status SendPhase(Endpoint* end, uint32_t phase, uint64_t n) {
  const Control c{phase, 0, n};
  return SendControl(&end->tx(), kTypeControl,
                     absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&c), sizeof(c)),
                     Wait::Adaptive(absl::Now() + absl::Seconds(10)));
}

// LPAR A: announces each phase to B, times every round trip, then the
// stream; writes the summaries to shared memory.
int RunLparA(const Shared& sh, EndpointFds fds) {
  constexpr const char* kWho = "LPAR A";
  const Options& o = sh.options;
  absl::StatusOr<Endpoint> end = Endpoint::Open(std::move(fds), kGeometry);
  if (!end.ok()) return Fail(kWho, end.status());
  absl::StatusOr<UniqueFd> tcp = TcpConnectLoopback(sh.tcp_port);
  if (!tcp.ok()) return Fail(kWho, tcp.status());

  std::vector<std::vector<uint64_t>> ticks(kTransports);
  for (auto& t : ticks) t.reserve(o.count * o.rounds);
  RingPinger spin_pinger(&*end, o.size, /*zero_copy=*/true);
  RingPinger block_pinger(&*end, o.size, /*zero_copy=*/true);
  std::vector<uint8_t> out(o.size, 0x5a), in(o.size);
  uint64_t tcp_index = 0;
  const uint64_t warm = Warmup(o.count);
  const uint64_t n = warm + o.count;

  for (uint64_t round = 0; round < o.rounds; ++round) {
    for (int k = 0; k < kTransports; ++k) {
      // Rotate the order each round so that no transport always runs first.
      const auto t = static_cast<Transport>((k + round) % kTransports);
      if (absl::Status s = SendPhase(&*end, t, n); !s.ok()) return Fail(kWho, s);
      const absl::Time deadline = PhaseDeadline(n);
      std::vector<uint64_t>& out_ticks = ticks[t];
      absl::Status s;
      switch (t) {
        case kFloor: {
          CacheLinePinger pinger(sh.line, /*pause=*/false);
          for (uint64_t i = 0; i < n; ++i) {
            const uint64_t t0 = TickClock::Now();
            const bool ok = pinger.RoundTrip();
            const uint64_t t1 = TickClock::Now();
            if (!ok) {
              return Fail(kWho, absl::DeadlineExceededError("LPAR B stopped answering on the "
                                                            "cache line"));
            }
            if (i >= warm) out_ticks.push_back(t1 - t0);
          }
          break;
        }
        case kHsiSpin:
        case kHsiBlock: {
          RingPinger& pinger = t == kHsiSpin ? spin_pinger : block_pinger;
          const Wait wait{t == kHsiSpin ? WaitMode::kSpin : WaitMode::kBlock, deadline};
          for (uint64_t i = 0; i < n && s.ok(); ++i) {
            const uint64_t t0 = TickClock::Now();
            s = pinger.RoundTrip(wait);
            const uint64_t t1 = TickClock::Now();
            if (i >= warm) out_ticks.push_back(t1 - t0);
          }
          break;
        }
        case kTcp: {
          const size_t idx = std::min<size_t>(8, o.size);
          for (uint64_t i = 0; i < n && s.ok(); ++i) {
            ++tcp_index;
            std::memcpy(out.data(), &tcp_index, idx);
            const uint64_t t0 = TickClock::Now();
            s = SendAll(tcp->get(), out.data(), o.size);
            if (s.ok()) s = RecvAll(tcp->get(), in.data(), o.size);
            const uint64_t t1 = TickClock::Now();
            if (s.ok() && std::memcmp(in.data(), &tcp_index, idx) != 0) {
              s = absl::DataLossError("tcp echo carries another round trip's index");
            }
            if (i >= warm) out_ticks.push_back(t1 - t0);
          }
          break;
        }
        default:
          break;
      }
      if (!s.ok()) {
        return Fail(kWho, absl::Status(s.code(), absl::StrCat(kTransportName[t], ": ",
                                                              s.message())));
      }
    }
  }

  // One-way stream of 64-byte frames, B to A.
  const Wait stream_wait = Wait::Spin(PhaseDeadline(o.stream_frames / 1000));
  if (absl::Status s = SendPhase(&*end, kPhaseStream, o.stream_frames); !s.ok()) {
    return Fail(kWho, s);
  }
  StreamSink sink(&end->rx(), kStreamFrameSize);
  const uint32_t batch = StreamBatch(kGeometry, kStreamFrameSize);
  // The clock starts at the first frame, so B's reaction time is not counted.
  if (absl::Status s = sink.Batch(1, stream_wait); !s.ok()) return Fail(kWho, s);
  const uint64_t t0 = TickClock::Now();
  for (uint64_t left = o.stream_frames - 1; left > 0;) {
    const uint32_t now = static_cast<uint32_t>(std::min<uint64_t>(left, batch));
    if (absl::Status s = sink.Batch(now, stream_wait); !s.ok()) return Fail(kWho, s);
    left -= now;
  }
  const uint64_t t1 = TickClock::Now();
  absl::StatusOr<StreamTally> sent = sink.DrainToEnd(stream_wait);
  if (!sent.ok()) return Fail(kWho, sent.status());
  if (sent->frames != o.stream_frames) {
    return Fail(kWho, absl::DataLossError(absl::StrCat(
        "stream: asked for ", o.stream_frames, " frames, LPAR B sent ", sent->frames)));
  }
  if (absl::Status s = SendPhase(&*end, kPhaseDone, 0); !s.ok()) return Fail(kWho, s);

  Results& r = *sh.results;
  for (int t = 0; t < kTransports; ++t) {
    std::vector<double> ns;
    ns.reserve(ticks[t].size());
    for (uint64_t x : ticks[t]) ns.push_back(sh.clock.ToNs(x));
    r.rtt[t] = Summarize(std::move(ns));
  }
  r.stream_frames = sink.tally().frames;
  r.stream_seconds = sh.clock.ToNs(t1 - t0) * 1e-9;
  r.stream_checksum = sink.tally().checksum;
  r.stream_empty_polls = sink.empty_polls();
  r.stream_full_events = sent->full_events;
  r.complete = 1;
  return 0;
}

// LPAR B: waits for A's phase announcements and plays the other side.
int RunLparB(const Shared& sh, EndpointFds fds, UniqueFd listener) {
  constexpr const char* kWho = "LPAR B";
  const Options& o = sh.options;
  absl::StatusOr<Endpoint> end = Endpoint::Open(std::move(fds), kGeometry);
  if (!end.ok()) return Fail(kWho, end.status());
  absl::StatusOr<UniqueFd> tcp = TcpAccept(listener.get(), absl::Seconds(10));
  if (!tcp.ok()) return Fail(kWho, tcp.status());
  listener.Reset();

  for (;;) {
    Frame f;
    if (absl::Status s = end->rx().Peek(&f, Wait::Adaptive(absl::Now() + absl::Seconds(30)));
        !s.ok()) {
      return Fail(kWho, absl::Status(s.code(), absl::StrCat("waiting for LPAR A: ", s.message())));
    }
    Control c;
    if (f.type != kTypeControl || f.payload.size() != sizeof(c)) {
      return Fail(kWho, absl::DataLossError(absl::StrCat(
          "expected a phase announcement, got a frame of type 0x", absl::Hex(f.type), " and ",
          f.payload.size(), " bytes")));
    }
    std::memcpy(&c, f.payload.data(), sizeof(c));
    end->rx().Release();
    absl::Status s;
    switch (c.phase) {
      case kFloor:
        s = CacheLinePong(sh.line, c.n, /*pause=*/false);
        break;
      case kHsiSpin:
        s = RingEcho(&*end, WaitMode::kSpin, /*zero_copy=*/true, c.n);
        break;
      case kHsiBlock:
        s = RingEcho(&*end, WaitMode::kBlock, /*zero_copy=*/true, c.n);
        break;
      case kTcp:
        s = TcpEcho(tcp->get(), o.size, c.n);
        break;
      case kPhaseStream: {
        absl::StatusOr<StreamSource> source = StreamSource::Create(&end->tx(), kStreamFrameSize);
        if (!source.ok()) return Fail(kWho, source.status());
        const uint32_t batch = StreamBatch(kGeometry, kStreamFrameSize);
        const Wait wait = Wait::Spin(PhaseDeadline(c.n / 1000));
        for (uint64_t left = c.n; left > 0 && s.ok();) {
          const uint32_t now = static_cast<uint32_t>(std::min<uint64_t>(left, batch));
          s = source->Batch(now, wait);
          left -= now;
        }
        if (s.ok()) s = source->End(wait);
        break;
      }
      case kPhaseDone:
        return 0;
      default:
        s = absl::DataLossError(absl::StrCat("unknown phase ", c.phase));
    }
    if (!s.ok()) {
      const char* what = c.phase < kTransports ? kTransportName[c.phase] : "stream";
      return Fail(kWho, absl::Status(s.code(), absl::StrCat(what, ": ", s.message())));
    }
  }
}

// ----------------------------------------------------------- reporting

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        return v;
      }
    }
  }
  return "unknown CPU";
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      out += absl::StrFormat("\\u%04x", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// JSON has no NaN or infinity.
std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.6g", v);
}

struct Report {
  Options options;
  CpuPlan plan;
  std::string cpu_model;
  double timer_overhead_ns;
  pid_t pid_a, pid_b;
  Results r;

  double StreamRate() const {
    return r.stream_seconds > 0 ? static_cast<double>(r.stream_frames - 1) / r.stream_seconds
                                : 0;
  }
};

void PrintTable(const Report& rep) {
  const Options& o = rep.options;
  const Results& r = rep.r;
  const double floor = r.rtt[kFloor].p50;
  const double tcp = r.rtt[kTcp].p50;
  std::printf("hsi-demo: LPAR A (pid %d) <-> LPAR B (pid %d), %s, %s\n", rep.pid_a, rep.pid_b,
              rep.plan.label.c_str(), rep.cpu_model.c_str());
  std::printf(
      "%" PRIu64 "-byte round trips: %" PRIu64 " rounds x %" PRIu64
      " per transport, interleaved; hsi = zero-copy Reserve/Commit + Peek/Release\n"
      "timer: %s, each sample includes ~%.0f ns of timer reads\n\n",
      o.size, o.rounds, o.count, TickClock::Name(), rep.timer_overhead_ns);
  std::printf("%-18s %11s %11s %11s %11s   %9s %13s\n", "transport", "p50 ns", "p99 ns",
              "mean ns", "min ns", "p50/floor", "TCP p50/p50");
  for (int t = 0; t < kTransports; ++t) {
    const Summary& s = r.rtt[t];
    std::printf("%-18s %11.0f %11.0f %11.0f %11.0f   %8.2fx %12.1fx\n", kTransportName[t], s.p50,
                s.p99, s.mean, s.min, s.p50 / floor, tcp / s.p50);
  }
  const double rate = rep.StreamRate();
  std::printf(
      "\none-way stream, %zu-byte frames, LPAR B -> LPAR A (zero-copy, batches of %u):\n"
      "  %.2f M frames/s, %.2f GB/s of payload; %" PRIu64
      " frames, count and checksum verified\n",
      kStreamFrameSize, StreamBatch(kGeometry, kStreamFrameSize), rate / 1e6,
      rate * static_cast<double>(kStreamFrameSize) / 1e9, r.stream_frames);

  auto verdict = [](bool met) { return met ? "met" : "NOT met"; };
  const double spin = r.rtt[kHsiSpin].p50, block = r.rtt[kHsiBlock].p50;
  std::printf("\nDESIGN.md section 7 targets, this run (p50):\n");
  std::printf("  hsi spin <= 2x cache-line floor   %8.2fx     %s\n", spin / floor,
              verdict(spin <= 2 * floor));
  std::printf("  hsi spin >= 100x below TCP        %8.1fx     %s\n", tcp / spin,
              verdict(tcp >= 100 * spin));
  std::printf("  hsi block below TCP               %8.2fx     %s\n", tcp / block,
              verdict(block < tcp));
  std::printf("  64 B stream >= 20 M frames/s      %8.2f M    %s\n", rate / 1e6,
              verdict(rate >= 20e6));
}

void PrintJson(const Report& rep) {
  const Options& o = rep.options;
  const Results& r = rep.r;
  const double floor = r.rtt[kFloor].p50;
  const double tcp = r.rtt[kTcp].p50;
  std::string j = "{\n";
  absl::StrAppend(&j, "  \"program\": \"hsi-demo\",\n");
  absl::StrAppend(&j, "  \"cpus\": ", JsonString(rep.plan.label), ",\n");
  absl::StrAppend(&j, "  \"pinned\": ", rep.plan.pinned() ? "true" : "false", ",\n");
  absl::StrAppend(&j, "  \"cpu_model\": ", JsonString(rep.cpu_model), ",\n");
  absl::StrAppend(&j, "  \"timer\": ", JsonString(TickClock::Name()), ",\n");
  absl::StrAppend(&j, "  \"timer_overhead_ns\": ", JsonNumber(rep.timer_overhead_ns), ",\n");
  absl::StrAppend(&j, "  \"size\": ", o.size, ",\n  \"count\": ", o.count,
                  ",\n  \"rounds\": ", o.rounds, ",\n");
  absl::StrAppend(&j, "  \"rtt_ns\": {\n");
  for (int t = 0; t < kTransports; ++t) {
    const Summary& s = r.rtt[t];
    absl::StrAppend(&j, "    ", JsonString(kTransportKey[t]), ": {\"n\": ", s.n,
                    ", \"p50\": ", JsonNumber(s.p50), ", \"p90\": ", JsonNumber(s.p90),
                    ", \"p99\": ", JsonNumber(s.p99), ", \"p999\": ", JsonNumber(s.p999),
                    ", \"mean\": ", JsonNumber(s.mean), ", \"min\": ", JsonNumber(s.min),
                    ", \"max\": ", JsonNumber(s.max),
                    ", \"p50_vs_floor\": ", JsonNumber(s.p50 / floor),
                    ", \"tcp_p50_vs_p50\": ", JsonNumber(tcp / s.p50), "}",
                    t + 1 < kTransports ? ",\n" : "\n");
  }
  absl::StrAppend(&j, "  },\n");
  const double rate = rep.StreamRate();
  absl::StrAppend(&j, "  \"stream\": {\"size\": ", kStreamFrameSize,
                  ", \"frames\": ", r.stream_frames,
                  ", \"seconds\": ", JsonNumber(r.stream_seconds),
                  ", \"frames_per_s\": ", JsonNumber(rate),
                  ", \"bytes_per_s\": ", JsonNumber(rate * kStreamFrameSize),
                  ", \"verified\": true, \"consumer_empty_polls\": ", r.stream_empty_polls,
                  ", \"producer_full_events\": ", r.stream_full_events, "}\n");
  absl::StrAppend(&j, "}\n");
  std::fputs(j.c_str(), stdout);
}

// ---------------------------------------------------------- supervisor

int Run(const Options& o) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "%s: %s\n", kProgram, s.ToString().c_str());
    return 1;
  };
  if (absl::Status s = kGeometry.Validate(); !s.ok()) return fail(s);
  Shared sh;
  sh.options = o;
  sh.clock = TickClock::Calibrate();
  const CpuPlan plan = PlanCpus();

  absl::StatusOr<EndpointFdPair> fds = CreateEndpointFds(kGeometry);
  if (!fds.ok()) return fail(fds.status());
  absl::StatusOr<SharedMemory> line = SharedMemory::Create(4096);
  if (!line.ok()) return fail(line.status());
  absl::StatusOr<SharedMemory> results = SharedMemory::Create(sizeof(Results));
  if (!results.ok()) return fail(results.status());
  sh.line = line->word();
  sh.results = new (results->data()) Results{};
  absl::StatusOr<UniqueFd> listener = TcpListenLoopback(&sh.tcp_port);
  if (!listener.ok()) return fail(listener.status());

  absl::StatusOr<Peer> b = Peer::Fork("LPAR B", plan.peer, [&]() -> int {
    fds->a = {};
    return RunLparB(sh, std::move(fds->b), std::move(*listener));
  });
  if (!b.ok()) return fail(b.status());
  absl::StatusOr<Peer> a = Peer::Fork("LPAR A", plan.self, [&]() -> int {
    fds->b = {};
    listener->Reset();
    return RunLparA(sh, std::move(fds->a));
  });
  if (!a.ok()) return fail(a.status());
  // The supervisor keeps nothing of the link: it is the LPARs' now.
  fds->a = {};
  fds->b = {};
  listener->Reset();

  // Reap both; if either fails or the run overruns, kill the other.
  const absl::Time deadline =
      absl::Now() + absl::Seconds(120) +
      absl::Milliseconds(static_cast<int64_t>(o.rounds * (o.count + Warmup(o.count)))) +
      absl::Milliseconds(static_cast<int64_t>(o.stream_frames / 1000));
  bool failed = false, overran = false;
  while (!(a->Poll() && b->Poll())) {
    failed = (a->Poll() && !a->exit_status().ok()) || (b->Poll() && !b->exit_status().ok());
    if (failed) break;
    if (absl::Now() > deadline) {
      overran = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (failed) {
    // Give the other LPAR a moment to end by itself: it usually notices and
    // says what it saw.
    const absl::Time grace = absl::Now() + absl::Milliseconds(500);
    while (!(a->Poll() && b->Poll()) && absl::Now() < grace) {
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
  bool ok = !overran;
  for (Peer* p : {&*a, &*b}) {
    if (!p->Poll()) {
      p->Kill();
      if (!overran) {
        std::fprintf(stderr, "%s: stopped %s (pid %d) after the other LPAR failed\n", kProgram,
                     p->name().c_str(), p->pid());
      }
    } else if (!p->exit_status().ok()) {
      fail(p->exit_status());
      ok = false;
    }
  }
  if (overran) {
    return fail(absl::DeadlineExceededError(
        "the run took far longer than it should; stopped both LPARs"));
  }
  if (!ok) return 1;
  if (sh.results->complete != 1) {
    return fail(absl::InternalError("LPAR A exited without writing its results"));
  }

  Report rep{o, plan, CpuModel(), sh.clock.overhead_ns(), a->pid(), b->pid(), *sh.results};
  if (o.json) {
    PrintJson(rep);
  } else {
    PrintTable(rep);
  }
  return 0;
}

}  // namespace
}  // namespace hsi::bench

int main(int argc, char** argv) {
  hsi::bench::SetProgramName(hsi::bench::kProgram);
  const hsi::bench::Options options = hsi::bench::ParseFlags(argc, argv);
  return hsi::bench::Run(options);
}
