// hsi-bench: the side-by-side benchmark matrix (issue 5).
//
// Every transport (transport.h) at every message size, cross-process, in one
// run: for each repetition, for each size, the transports in an order
// rotated every time (round-robin interleaving), each "cell" in two fresh
// child processes pinned to two CPUs. A cell measures
//   1. ping-pong: side A times each round trip of a `size`-byte message that
//      side B echoes (p50/p99/p99.9 from the TSC);
//   2. one-way stream: side B sends messages as fast as it can, side A
//      receives and checks each one (order and a checksum of every word);
//      frames/s and bytes/s over the whole stream;
// and the CPU time (getrusage, all threads) each process spent in each
// phase. The report gives, per transport and size, the median over the
// repetitions with its min-max spread, and ratios against loopback TCP
// (median over repetitions of the per-repetition ratio).
//
// Outputs: a table on stdout; --json FILE with every cell's summary;
// --out DIR with report.txt, results.json, the plot data, plot.gp and PNG
// plots drawn by gnuplot (skipped with a message if gnuplot is missing).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "harness.h"
#include "nlohmann/json.hpp"
#include "transport.h"

ABSL_FLAG(bool, quick, false,
          "a short run (sizes 64,4K,64K, 3 repetitions, short phases): under 2 minutes");
ABSL_FLAG(std::string, json, "", "write every cell's summary and the medians as JSON to FILE");
ABSL_FLAG(std::string, out, "",
          "write report.txt, results.json, plot data, plot.gp and PNG plots into DIR "
          "(created if missing)");
ABSL_FLAG(std::string, transports, "all",
          "comma-separated transports to run (see --list), or 'all'");
ABSL_FLAG(std::string, sizes, "",
          "comma-separated message sizes in bytes, multiples of 8 in 8..1M; K and M suffixes "
          "(default 64,256,1K,4K,16K,64K,1M; with --quick 64,4K,64K)");
ABSL_FLAG(int, reps, 0, "repetitions of the whole matrix (default 5; with --quick 3)");
ABSL_FLAG(int, pingpong_ms, 0, "time per ping-pong phase in ms (default 300; with --quick 120)");
ABSL_FLAG(int, stream_ms, 0, "time per one-way stream in ms (default 300; with --quick 120)");
ABSL_FLAG(int, max_round_trips, 100000, "round trips timed per cell at most");
ABSL_FLAG(bool, list, false, "list the transports of this build and exit");

namespace hsi::bench::matrix {
namespace {

constexpr const char* kProgram = "hsi-bench";

[[noreturn]] void UsageError(const std::string& message) {
  std::fprintf(stderr, "%s: %s (see --help)\n", kProgram, message.c_str());
  std::exit(2);
}

// ---------------------------------------------------------------- options

struct Options {
  bool quick = false;
  std::string json_path, out_dir;
  std::vector<size_t> sizes;
  std::vector<std::string> transports;  // keys, in table order
  int reps = 5;
  absl::Duration pingpong = absl::Milliseconds(300);
  absl::Duration stream = absl::Milliseconds(300);
  uint64_t max_round_trips = 100000;
  std::string command;  // as typed, for the report
};

size_t ParseSize(absl::string_view text) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  uint64_t mult = 1;
  for (absl::string_view suffix : {"kib", "k"}) {
    if (absl::EndsWith(t, suffix)) {
      mult = 1024;
      t.resize(t.size() - suffix.size());
      break;
    }
  }
  for (absl::string_view suffix : {"mib", "m"}) {
    if (mult == 1 && absl::EndsWith(t, suffix)) {
      mult = 1024 * 1024;
      t.resize(t.size() - suffix.size());
      break;
    }
  }
  if (absl::EndsWith(t, "b")) t.pop_back();
  uint64_t v = 0;
  if (t.empty() || !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(t, &v)) {
    UsageError(absl::StrCat("--sizes: '", text, "' is not a size (e.g. 64, 4K, 1M)"));
  }
  v *= mult;
  if (v < 8 || v > (1u << 20) || v % 8 != 0) {
    UsageError(absl::StrCat("--sizes: ", v, " bytes; sizes must be multiples of 8 in 8..1048576"));
  }
  return v;
}

std::string SizeName(size_t s) {
  if (s >= (1u << 20) && s % (1u << 20) == 0) return absl::StrCat(s >> 20, " MiB");
  if (s >= 1024 && s % 1024 == 0) return absl::StrCat(s >> 10, " KiB");
  return absl::StrCat(s, " B");
}

Options ParseOptions(int argc, char** argv,
                     const std::vector<std::unique_ptr<Transport>>& all) {
  Options o;
  for (int i = 0; i < argc; ++i) {
    if (i) o.command += ' ';
    o.command += argv[i];
  }
  o.quick = absl::GetFlag(FLAGS_quick);
  o.json_path = absl::GetFlag(FLAGS_json);
  o.out_dir = absl::GetFlag(FLAGS_out);
  const std::string sizes = absl::GetFlag(FLAGS_sizes);
  const std::string default_sizes = o.quick ? "64,4K,64K" : "64,256,1K,4K,16K,64K,1M";
  std::set<size_t> seen;
  for (absl::string_view s : absl::StrSplit(sizes.empty() ? default_sizes : sizes, ',')) {
    const size_t v = ParseSize(s);
    if (seen.insert(v).second) o.sizes.push_back(v);
  }
  std::sort(o.sizes.begin(), o.sizes.end());

  std::vector<std::string> keys;
  for (const auto& t : all) keys.push_back(t->key());
  const std::string wanted = absl::GetFlag(FLAGS_transports);
  if (wanted == "all") {
    o.transports = keys;
  } else {
    std::set<std::string> pick;
    for (absl::string_view k : absl::StrSplit(wanted, ',', absl::SkipWhitespace())) {
      const std::string key(absl::StripAsciiWhitespace(k));
      if (key == "iceoryx" && !IceoryxCompiledIn()) {
        std::fprintf(stderr,
                     "%s: iceoryx: skipped, this hsi-bench was built without iceoryx "
                     "(install libiceoryx-posh-dev and reconfigure)\n",
                     kProgram);
        continue;
      }
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        UsageError(absl::StrCat("--transports: unknown transport '", key,
                                "'; known: ", absl::StrJoin(keys, ","), " (or 'all')"));
      }
      pick.insert(key);
    }
    if (pick.empty() && !wanted.empty() && wanted != "iceoryx") {
      UsageError("--transports: no transport given");
    }
    for (const std::string& k : keys) {
      if (pick.count(k)) o.transports.push_back(k);
    }
  }

  const int reps = absl::GetFlag(FLAGS_reps);
  if (reps < 0 || reps > 100) UsageError(absl::StrCat("--reps ", reps, " is outside 1..100"));
  o.reps = reps != 0 ? reps : (o.quick ? 3 : 5);
  const int pp = absl::GetFlag(FLAGS_pingpong_ms);
  const int st = absl::GetFlag(FLAGS_stream_ms);
  if (pp < 0 || pp > 60000) UsageError(absl::StrCat("--pingpong_ms ", pp, " is outside 1..60000"));
  if (st < 0 || st > 60000) UsageError(absl::StrCat("--stream_ms ", st, " is outside 1..60000"));
  o.pingpong = absl::Milliseconds(pp != 0 ? pp : (o.quick ? 120 : 300));
  o.stream = absl::Milliseconds(st != 0 ? st : (o.quick ? 120 : 300));
  const int max_rt = absl::GetFlag(FLAGS_max_round_trips);
  if (max_rt < 100 || max_rt > 10000000) {
    UsageError(absl::StrCat("--max_round_trips ", max_rt, " is outside 100..10000000"));
  }
  o.max_round_trips = static_cast<uint64_t>(max_rt);
  return o;
}

// ------------------------------------------------- the cell, in the children

// One child's report, in the cell's shared memory.
struct SideReport {
  int32_t done;        // 1 once the child filled the rest
  double cpu_pingpong; // user+system seconds in the ping-pong phase
  double cpu_stream;   // ... in the stream phase
  int64_t preempted;   // involuntary context switches in both phases
  char error[400];     // why the child failed, if it did
};

// The cell's shared memory: made by the coordinator before forking the two
// children, read by it after both exited (waitpid orders it).
struct CellShared {
  std::atomic<uint32_t> barrier[4];
  StreamStop stop;
  SideReport side[2];
  uint64_t round_trips;  // A: timed round trips (samples below)
  uint64_t warmup;       // A: untimed round trips before them
  Tally sent;            // B: the stream as sent
  Tally got;             // A: the stream as received
  double stream_seconds; // A: from the start barrier to the end marker
  double samples[1];     // A: round-trip times in ns (round_trips of them)
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

size_t CellBytes(uint64_t max_samples) {
  return sizeof(CellShared) + max_samples * sizeof(double);
}

// Times this process was preempted (involuntary context switches): how
// much another tenant of the machine got in the way.
int64_t Preemptions() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_nivcsw;
}

double CpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// Both children arrive at barrier k before either goes on. Spins briefly
// (the other side is usually a few microseconds behind), then sleeps.
absl::Status Barrier(CellShared* cell, int k) {
  // acq_rel/acquire: what each side did before the barrier is visible to
  // the other after it.
  cell->barrier[k].fetch_add(1, std::memory_order_acq_rel);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (uint64_t i = 0; cell->barrier[k].load(std::memory_order_acquire) < 2; ++i) {
    if (i < 20000) {
      CpuRelax();
      continue;
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("the other side never reached barrier ", k));
    }
    ::usleep(50);
  }
  return absl::OkStatus();
}

struct CellSpec {
  size_t size;
  absl::Duration pingpong;
  absl::Duration stream;
  uint64_t max_round_trips;
  bool streams;
};

int Fail(CellShared* cell, Side side, const absl::Status& s) {
  SideReport& r = cell->side[side == Side::kA ? 0 : 1];
  std::snprintf(r.error, sizeof(r.error), "%s", s.ToString().c_str());
  return 1;
}

// Leaves the child: through exit() if the transport needs its library's
// teardown (iceoryx deregisters from RouDi), else by returning to
// Peer::Fork's _exit().
int Leave(std::unique_ptr<End> end, int code) {
  const bool wants_exit = end != nullptr && end->wants_exit();
  end.reset();
  if (wants_exit) std::exit(code);
  return code;
}

int RunSideA(Link* link, CellShared* cell, const CellSpec& spec, const TickClock& clock) {
  absl::StatusOr<std::unique_ptr<End>> opened = link->Open(Side::kA);
  if (!opened.ok()) return Fail(cell, Side::kA, opened.status());
  std::unique_ptr<End> end = std::move(*opened);
  auto fail = [&](const absl::Status& s) { return Leave(std::move(end), Fail(cell, Side::kA, s)); };
  if (absl::Status s = Barrier(cell, 0); !s.ok()) return fail(s);

  // Ping-pong: an untimed warm-up (a tenth of the phase, at most 2000
  // round trips), then round trips timed one by one until the phase's time
  // or the sample budget is used up.
  const double c0 = CpuSeconds();
  const int64_t v0 = Preemptions();
  const auto ticks = [&](absl::Duration d) {
    return static_cast<uint64_t>(absl::ToDoubleNanoseconds(d) / clock.ns_per_tick());
  };
  uint64_t index = 0;
  const uint64_t warm_end = TickClock::Now() + ticks(spec.pingpong / 10);
  while (index < 2000 && TickClock::Now() < warm_end) {
    if (absl::Status s = end->RoundTrip(index++); !s.ok()) return fail(s);
  }
  cell->warmup = index;
  const uint64_t start = TickClock::Now();
  const uint64_t stop = start + ticks(spec.pingpong);
  uint64_t n = 0;
  for (uint64_t t1 = start; n < spec.max_round_trips && t1 < stop; ++n) {
    const uint64_t t0 = TickClock::Now();
    if (absl::Status s = end->RoundTrip(index++); !s.ok()) return fail(s);
    t1 = TickClock::Now();
    cell->samples[n] = clock.ToNs(t1 - t0);
  }
  cell->round_trips = n;
  if (absl::Status s = end->StopEcho(); !s.ok()) return fail(s);
  cell->side[0].cpu_pingpong = CpuSeconds() - c0;
  if (absl::Status s = Barrier(cell, 1); !s.ok()) return fail(s);

  if (spec.streams) {
    const double c2 = CpuSeconds();
    const uint64_t t0 = TickClock::Now();
    SinkTimer timer(&cell->stop, spec.stream, clock);
    Tally got;
    if (absl::Status s = end->Sink(&timer, &got); !s.ok()) return fail(s);
    cell->stream_seconds = clock.ToNs(TickClock::Now() - t0) * 1e-9;
    cell->side[0].cpu_stream = CpuSeconds() - c2;
    cell->got = got;
  }
  cell->side[0].preempted = Preemptions() - v0;
  if (spec.streams) {
    if (absl::Status s = Barrier(cell, 2); !s.ok()) return fail(s);
  }
  cell->side[0].done = 1;
  return Leave(std::move(end), 0);
}

int RunSideB(Link* link, CellShared* cell, const CellSpec& spec) {
  absl::StatusOr<std::unique_ptr<End>> opened = link->Open(Side::kB);
  if (!opened.ok()) return Fail(cell, Side::kB, opened.status());
  std::unique_ptr<End> end = std::move(*opened);
  auto fail = [&](const absl::Status& s) { return Leave(std::move(end), Fail(cell, Side::kB, s)); };
  if (absl::Status s = Barrier(cell, 0); !s.ok()) return fail(s);
  const double c0 = CpuSeconds();
  const int64_t v0 = Preemptions();
  if (absl::Status s = end->Echo(); !s.ok()) return fail(s);
  cell->side[1].cpu_pingpong = CpuSeconds() - c0;
  if (absl::Status s = Barrier(cell, 1); !s.ok()) return fail(s);
  if (spec.streams) {
    const double c2 = CpuSeconds();
    Tally sent;
    if (absl::Status s = end->Source(cell->stop, &sent); !s.ok()) return fail(s);
    cell->side[1].cpu_stream = CpuSeconds() - c2;
    cell->sent = sent;
  }
  cell->side[1].preempted = Preemptions() - v0;
  if (spec.streams) {
    if (absl::Status s = Barrier(cell, 2); !s.ok()) return fail(s);
  }
  cell->side[1].done = 1;
  return Leave(std::move(end), 0);
}

// ------------------------------------------------ the cell, in the coordinator

struct CellResult {
  std::string transport;
  size_t size = 0;
  int rep = 0;
  bool ok = false;
  std::string error;
  Summary rtt;
  uint64_t round_trips = 0, warmup = 0;
  double cpu_pingpong_a = 0, cpu_pingpong_b = 0;
  bool streamed = false;
  uint64_t frames = 0;
  double stream_seconds = 0;
  double cpu_stream_a = 0, cpu_stream_b = 0;
  int64_t preempted = 0;  // involuntary context switches, both sides

  double frames_per_s() const { return stream_seconds > 0 ? frames / stream_seconds : 0; }
  double bytes_per_s() const { return frames_per_s() * static_cast<double>(size); }
  // CPU seconds of both processes per million frames streamed.
  double cpu_per_mframe() const {
    return frames ? (cpu_stream_a + cpu_stream_b) / static_cast<double>(frames) * 1e6 : 0;
  }
  // CPU seconds of both processes per million round trips.
  double cpu_per_mrt() const {
    const uint64_t n = round_trips + warmup;
    return n ? (cpu_pingpong_a + cpu_pingpong_b) / static_cast<double>(n) * 1e6 : 0;
  }
};

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Waits for both children, up to `timeout`; if one fails, kills the other.
// Returns an error naming what went wrong.
absl::Status JoinBoth(Peer* a, Peer* b, absl::Duration timeout) {
  UniqueFd fa(PidfdOpen(a->pid())), fb(PidfdOpen(b->pid()));
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status first;
  while (!(a->Poll() && b->Poll())) {
    // Sleep in poll() on the pidfds: no periodic wake-ups that would steal
    // a CPU from the spinning children.
    pollfd p[2] = {{fa.get(), POLLIN, 0}, {fb.get(), POLLIN, 0}};
    const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (fa.valid() && fb.valid()) {
      ::poll(p, 2, static_cast<int>(std::min<int64_t>(ms, 1000)));
    } else {
      ::usleep(1000);  // no pidfds (old kernel): poll the children
    }
    for (Peer* peer : {a, b}) {
      if (peer->Poll() && first.ok() && !peer->exit_status().ok()) {
        first = peer->exit_status();
        a->Kill();
        b->Kill();
      }
    }
    if (absl::Now() > deadline) {
      a->Kill();
      b->Kill();
      return absl::DeadlineExceededError(
          absl::StrCat("cell did not finish within ", absl::FormatDuration(timeout)));
    }
  }
  if (!first.ok()) return first;
  if (!a->exit_status().ok()) return a->exit_status();
  return b->exit_status();
}

CellResult RunCell(Transport* t, size_t size, int rep, const Options& opt, const CpuPlan& cpus,
                   const TickClock& clock, SharedMemory* mem, int cell_no) {
  CellResult r;
  r.transport = t->key();
  r.size = size;
  r.rep = rep;
  std::memset(mem->data(), 0, mem->size());
  auto* cell = new (mem->data()) CellShared;
  const CellSpec spec{size, opt.pingpong, opt.stream, opt.max_round_trips, t->streams()};
  const std::string tag = absl::StrCat("hsi-bench-", ::getpid(), "-", cell_no);
  absl::StatusOr<std::unique_ptr<Link>> link = t->Prepare(size, tag);
  if (!link.ok()) {
    r.error = absl::StrCat("prepare: ", link.status().ToString());
    return r;
  }
  Link* l = link->get();
  absl::StatusOr<Peer> b = Peer::Fork("side B", cpus.peer, [&] { return RunSideB(l, cell, spec); });
  if (!b.ok()) {
    r.error = b.status().ToString();
    return r;
  }
  absl::StatusOr<Peer> a =
      Peer::Fork("side A", cpus.self, [&] { return RunSideA(l, cell, spec, clock); });
  if (!a.ok()) {
    r.error = a.status().ToString();
    return r;
  }
  const absl::Duration timeout = opt.pingpong + opt.stream + absl::Seconds(40);
  absl::Status joined = JoinBoth(&*a, &*b, timeout);
  link->reset();  // after both children are gone: names (Boost queues) may go
  if (!joined.ok()) {
    std::string why;
    for (int s = 0; s < 2; ++s) {
      if (cell->side[s].error[0] != '\0') {
        absl::StrAppend(&why, why.empty() ? "" : "; ", s == 0 ? "A: " : "B: ", cell->side[s].error);
      }
    }
    r.error = why.empty() ? joined.ToString() : why;
    return r;
  }
  if (!cell->side[0].done || !cell->side[1].done) {
    r.error = "a child exited without reporting";
    return r;
  }
  const uint64_t n = std::min(cell->round_trips, opt.max_round_trips);
  r.rtt = Summarize(std::vector<double>(cell->samples, cell->samples + n));
  r.round_trips = n;
  r.warmup = cell->warmup;
  r.cpu_pingpong_a = cell->side[0].cpu_pingpong;
  r.cpu_pingpong_b = cell->side[1].cpu_pingpong;
  r.preempted = cell->side[0].preempted + cell->side[1].preempted;
  if (spec.streams) {
    if (cell->sent.frames != cell->got.frames || cell->sent.checksum != cell->got.checksum) {
      r.error = absl::StrCat("stream: source sent ", cell->sent.frames, " frames (checksum 0x",
                             absl::Hex(cell->sent.checksum), "), sink got ", cell->got.frames,
                             " (checksum 0x", absl::Hex(cell->got.checksum), ")");
      return r;
    }
    r.streamed = true;
    r.frames = cell->got.frames;
    r.stream_seconds = cell->stream_seconds;
    r.cpu_stream_a = cell->side[0].cpu_stream;
    r.cpu_stream_b = cell->side[1].cpu_stream;
  }
  r.ok = true;
  return r;
}

// --------------------------------------------------------------- report

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Spread {
  double median = 0, min = 0, max = 0;
  size_t n = 0;
};

Spread Spreads(const std::vector<double>& v) {
  Spread s;
  if (v.empty()) return s;
  s.median = Median(v);
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  s.n = v.size();
  return s;
}

// The medians of one transport at one size.
struct Row {
  std::string key, label;
  size_t size = 0;
  int ok_reps = 0;
  std::string error;  // the first failure, if any
  Spread p50, p99, p999, fps, bps, cpu_mframe, cpu_mrt;
  bool streamed = false;
  // Median over repetitions of (TCP's figure / ours) for round trips, and
  // (ours / TCP's) for bytes/s; 0 when either is missing.
  double rtt_vs_tcp = 0, bps_vs_tcp = 0;
};

std::string Ns(double ns) {
  if (ns <= 0) return "-";
  if (ns < 1e4) return absl::StrFormat("%.0f ns", ns);
  if (ns < 1e6) return absl::StrFormat("%.1f us", ns / 1e3);
  return absl::StrFormat("%.2f ms", ns / 1e6);
}

std::string Rate(double v, const char* unit) {
  if (v <= 0) return "-";
  if (v >= 1e9) return absl::StrFormat("%.2f G%s", v / 1e9, unit);
  if (v >= 1e6) return absl::StrFormat("%.2f M%s", v / 1e6, unit);
  if (v >= 1e3) return absl::StrFormat("%.1f K%s", v / 1e3, unit);
  return absl::StrFormat("%.0f %s", v, unit);
}

std::string Ratio(double x) {
  if (x <= 0) return "-";
  if (x >= 100) return absl::StrFormat("%.0fx", x);
  if (x >= 10) return absl::StrFormat("%.1fx", x);
  return absl::StrFormat("%.2fx", x);
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

struct Machine {
  std::string cpu, kernel, cpus_label, load_before, load_after;
  long online_cpus = 0;
};

Machine DescribeMachine(const CpuPlan& plan) {
  Machine m;
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        m.cpu = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
      break;
    }
  }
  utsname u{};
  if (::uname(&u) == 0) m.kernel = u.release;
  m.online_cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  m.cpus_label = plan.label;
  m.load_before = LoadAverage();
  return m;
}

class Report {
 public:
  Report(const Options& opt, const std::vector<Transport*>& ts) : opt_(opt), ts_(ts) {}

  void Add(CellResult r) { cells_.push_back(std::move(r)); }
  const std::vector<CellResult>& cells() const { return cells_; }

  void Summarize() {
    rows_.clear();
    for (size_t s : opt_.sizes) {
      for (Transport* t : ts_) {
        if ((!t->sized() && s != opt_.sizes.front()) || !t->fits(s)) continue;
        Row row;
        row.key = t->key();
        row.label = t->label();
        row.size = s;
        std::vector<double> p50, p99, p999, fps, bps, cpu, cpurt, rr, br;
        for (const CellResult& c : cells_) {
          if (c.transport != row.key || c.size != s) continue;
          if (!c.ok) {
            if (row.error.empty()) row.error = c.error;
            continue;
          }
          ++row.ok_reps;
          p50.push_back(c.rtt.p50);
          p99.push_back(c.rtt.p99);
          p999.push_back(c.rtt.p999);
          cpurt.push_back(c.cpu_per_mrt());
          if (c.streamed) {
            row.streamed = true;
            fps.push_back(c.frames_per_s());
            bps.push_back(c.bytes_per_s());
            cpu.push_back(c.cpu_per_mframe());
          }
          if (const CellResult* tcp = Find("tcp", s, c.rep); tcp != nullptr) {
            if (c.rtt.p50 > 0) rr.push_back(tcp->rtt.p50 / c.rtt.p50);
            if (c.streamed && tcp->streamed && tcp->bytes_per_s() > 0) {
              br.push_back(c.bytes_per_s() / tcp->bytes_per_s());
            }
          }
        }
        row.p50 = Spreads(p50);
        row.p99 = Spreads(p99);
        row.p999 = Spreads(p999);
        row.fps = Spreads(fps);
        row.bps = Spreads(bps);
        row.cpu_mframe = Spreads(cpu);
        row.cpu_mrt = Spreads(cpurt);
        row.rtt_vs_tcp = Median(rr);
        row.bps_vs_tcp = Median(br);
        rows_.push_back(row);
      }
    }
  }

  const Row* FindRow(const std::string& key, size_t size) const {
    for (const Row& r : rows_) {
      if (r.key == key && r.size == size && r.ok_reps > 0) return &r;
    }
    return nullptr;
  }

  std::string Table(const Machine& m, double seconds) const {
    std::string out;
    absl::StrAppendFormat(&out, "hsi-bench: %s, %ld CPUs online, kernel %s; %s\n", m.cpu,
                          m.online_cpus, m.kernel, m.cpus_label);
    absl::StrAppendFormat(
        &out,
        "%d repetitions, transports interleaved round-robin; ping-pong %s and stream %s per "
        "cell; run took %.0f s\n",
        opt_.reps, absl::FormatDuration(opt_.pingpong), absl::FormatDuration(opt_.stream),
        seconds);
    absl::StrAppendFormat(&out,
                          "load average before the run %s, after %s (other tenants; "
                          "2 CPUs)\n",
                          m.load_before, m.load_after);
    absl::StrAppend(&out,
                    "medians over repetitions [min-max]; xTCP: loopback TCP's round trip / "
                    "this one, this bytes/s / TCP's (median of per-repetition ratios)\n"
                    "command: ",
                    opt_.command, "\n");
    for (size_t s : opt_.sizes) {
      absl::StrAppendFormat(&out, "\n== %s messages ==\n", SizeName(s));
      absl::StrAppendFormat(&out, "%-26s %9s %-21s %9s %9s %7s | %10s %10s %-21s %7s | %9s\n",
                            "transport", "rtt p50", "[min-max]", "p99", "p99.9", "xTCP",
                            "frames/s", "bytes/s", "[min-max]", "xTCP", "CPU s/M");
      for (const Row& r : rows_) {
        if (r.size != s) continue;
        if (r.ok_reps == 0) {
          absl::StrAppendFormat(&out, "%-26s FAILED: %s\n", r.label, r.error);
          continue;
        }
        const std::string p50_range =
            absl::StrCat("[", Ns(r.p50.min), "-", Ns(r.p50.max), "]");
        std::string line = absl::StrFormat("%-26s %9s %-21s %9s %9s %7s", r.label,
                                           Ns(r.p50.median), p50_range, Ns(r.p99.median),
                                           Ns(r.p999.median), Ratio(r.rtt_vs_tcp));
        if (r.streamed) {
          const std::string bps_range = absl::StrCat("[", Rate(r.bps.min, "B/s"), "-",
                                                     Rate(r.bps.max, "B/s"), "]");
          absl::StrAppendFormat(&line, " | %10s %10s %-21s %7s | %9.3f",
                                Rate(r.fps.median, "/s"), Rate(r.bps.median, "B/s"), bps_range,
                                Ratio(r.bps_vs_tcp), r.cpu_mframe.median);
        } else {
          absl::StrAppend(&line, " |  (no stream)");
        }
        if (r.ok_reps < opt_.reps) {
          absl::StrAppend(&line, absl::StrFormat("  (%d of %d reps; %s)", r.ok_reps, opt_.reps,
                                                 r.error));
        }
        absl::StrAppend(&out, line, "\n");
      }
    }
    absl::StrAppend(&out,
                    "\nCPU s/M: user+system CPU seconds of both processes per million frames "
                    "of the one-way stream.\n");
    absl::StrAppend(&out, Checks());
    return out;
  }

  // The DESIGN.md section 7 targets this run can check.
  std::string Checks() const {
    std::string out = "\nDESIGN.md targets, this run (medians):\n";
    const size_t small = opt_.sizes.front();
    auto line = [&](const std::string& what, double value, bool met, const std::string& shown) {
      absl::StrAppendFormat(&out, "  %-52s %10s  %s\n", what, shown, met ? "met" : "NOT met");
      (void)value;
    };
    const Row* spin = FindRow("hsi-spin-zc", small);
    const Row* tcp = FindRow("tcp", small);
    const Row* floor = FindRow("floor", small);
    const Row* iox = FindRow("iceoryx", small);
    const std::string at = SizeName(small);
    if (spin && floor) {
      const double x = spin->p50.median / floor->p50.median;
      line(absl::StrCat("hsi spin ", at, " round trip <= 2x cache-line floor"), x, x <= 2,
           absl::StrFormat("%.2fx", x));
    }
    if (spin && tcp) {
      line(absl::StrCat("hsi spin ", at, " round trip >= 100x below TCP"), spin->rtt_vs_tcp,
           spin->rtt_vs_tcp >= 100, Ratio(spin->rtt_vs_tcp));
    }
    if (spin && iox) {
      const double x = iox->p50.median / spin->p50.median;
      line(absl::StrCat("hsi spin ", at, " round trip >= 5x below iceoryx"), x, x >= 5,
           Ratio(x));
    }
    // Issue 15: the blocking floor and the session API beside the ring. Each
    // ratio is taken within a repetition; the median over repetitions.
    if (FindRow("futex", small) != nullptr) {
      for (const char* k : {"hsi-block-zc", "hsi-block-copy", "session-block"}) {
        if (const Row* r = FindRow(k, small); r != nullptr) {
          const double x = PairRatio(k, "futex", small, /*stream=*/false);
          line(absl::StrCat(r->label, " ", at, " round trip <= 1.2x futex floor"), x, x > 0 && x <= 1.2,
               absl::StrFormat("%.2fx", x));
        }
      }
    }
    // The blocking round trip below the pipe's and TCP's (DESIGN.md: block
    // below TCP; issue 15: the ring's and the session's below both).
    for (const char* b : {"hsi-block-zc", "hsi-block-copy", "session-block"}) {
      const Row* r = FindRow(b, small);
      if (r == nullptr) continue;
      for (const char* k : {"pipe", "tcp"}) {
        if (FindRow(k, small) == nullptr) continue;
        const double x = PairRatio(b, k, small, /*stream=*/false);
        line(absl::StrCat(r->label, " ", at, " round trip below ", k == std::string("tcp") ? "TCP" : k), x,
             x > 0 && x < 1, absl::StrFormat("%.2fx", x));
      }
    }
    if (FindRow("session-spin", small) && FindRow("hsi-spin-copy", small)) {
      const double x = PairRatio("session-spin", "hsi-spin-copy", small, /*stream=*/false);
      line(absl::StrCat("session spin ", at, " round trip <= 1.2x ring spin (copy)"), x, x > 0 && x <= 1.2,
           absl::StrFormat("%.2fx", x));
      const double y = PairRatio("session-spin", "hsi-spin-copy", small, /*stream=*/true);
      line(absl::StrCat("session ", at, " stream >= 0.8x ring stream (copy, spin)"), y, y >= 0.8,
           absl::StrFormat("%.2fx", y));
    }
    if (FindRow("session-spin-batch", small) && FindRow("hsi-spin-zc", small)) {
      const double y = PairRatio("session-spin-batch", "hsi-spin-zc", small, /*stream=*/true);
      line(absl::StrCat("session ", at, " stream (Link batch) >= 0.8x ring (zero-copy)"), y, y >= 0.8,
           absl::StrFormat("%.2fx", y));
    }
    if (spin && small == 64 && spin->streamed) {
      line("hsi 64 B one-way stream >= 20 M frames/s", spin->fps.median, spin->fps.median >= 20e6,
           Rate(spin->fps.median, "/s"));
    }
    if (std::find(opt_.sizes.begin(), opt_.sizes.end(), 65536) != opt_.sizes.end()) {
      for (const char* k : {"hsi-spin-zc", "hsi-adaptive-zc", "hsi-block-zc"}) {
        const Row* r = FindRow(k, 65536);
        if (r && FindRow("tcp", 65536) && r->streamed) {
          line(absl::StrCat(r->label, " 64 KiB stream >= 3x TCP bytes/s"), r->bps_vs_tcp,
               r->bps_vs_tcp >= 3, Ratio(r->bps_vs_tcp));
        }
      }
    }
    return out;
  }

  nlohmann::ordered_json Json(const Machine& m, double seconds) const {
    using nlohmann::ordered_json;
    ordered_json j;
    j["program"] = kProgram;
    j["command"] = opt_.command;
    j["machine"] = {{"cpu", m.cpu},
                    {"online_cpus", m.online_cpus},
                    {"kernel", m.kernel},
                    {"placement", m.cpus_label},
                    {"loadavg_before", m.load_before},
                    {"loadavg_after", m.load_after}};
    j["settings"] = {{"quick", opt_.quick},
                     {"reps", opt_.reps},
                     {"sizes", opt_.sizes},
                     {"transports", opt_.transports},
                     {"pingpong_ms", absl::ToInt64Milliseconds(opt_.pingpong)},
                     {"stream_ms", absl::ToInt64Milliseconds(opt_.stream)},
                     {"max_round_trips", opt_.max_round_trips},
                     {"seconds", seconds}};
    auto spread = [](const Spread& s) {
      return ordered_json{{"median", s.median}, {"min", s.min}, {"max", s.max}, {"n", s.n}};
    };
    ordered_json rows = ordered_json::array();
    for (const Row& r : rows_) {
      ordered_json o{{"transport", r.key}, {"label", r.label}, {"size", r.size},
                     {"ok_reps", r.ok_reps}};
      if (!r.error.empty()) o["error"] = r.error;
      o["rtt_p50_ns"] = spread(r.p50);
      o["rtt_p99_ns"] = spread(r.p99);
      o["rtt_p999_ns"] = spread(r.p999);
      o["cpu_s_per_mrt"] = spread(r.cpu_mrt);
      o["rtt_tcp_over_this"] = r.rtt_vs_tcp;
      if (r.streamed) {
        o["frames_per_s"] = spread(r.fps);
        o["bytes_per_s"] = spread(r.bps);
        o["cpu_s_per_mframe"] = spread(r.cpu_mframe);
        o["bytes_per_s_this_over_tcp"] = r.bps_vs_tcp;
      }
      rows.push_back(o);
    }
    j["summary"] = rows;
    ordered_json cells = ordered_json::array();
    for (const CellResult& c : cells_) {
      ordered_json o{{"transport", c.transport}, {"size", c.size}, {"rep", c.rep}, {"ok", c.ok}};
      if (!c.ok) {
        o["error"] = c.error;
      } else {
        o["rtt_ns"] = {{"n", c.rtt.n},       {"min", c.rtt.min}, {"p50", c.rtt.p50},
                       {"p90", c.rtt.p90},   {"p99", c.rtt.p99}, {"p999", c.rtt.p999},
                       {"max", c.rtt.max},   {"mean", c.rtt.mean}};
        o["warmup_round_trips"] = c.warmup;
        o["preempted"] = c.preempted;
        o["cpu_pingpong_s"] = {{"a", c.cpu_pingpong_a}, {"b", c.cpu_pingpong_b}};
        if (c.streamed) {
          o["stream"] = {{"frames", c.frames},
                         {"seconds", c.stream_seconds},
                         {"frames_per_s", c.frames_per_s()},
                         {"bytes_per_s", c.bytes_per_s()},
                         {"cpu_s", {{"a", c.cpu_stream_a}, {"b", c.cpu_stream_b}}},
                         {"cpu_s_per_mframe", c.cpu_per_mframe()}};
        }
      }
      cells.push_back(o);
    }
    j["cells"] = cells;
    j["checks"] = Checks();
    return j;
  }

  // Plot data (one file per transport), plot.gp, and the PNGs if gnuplot
  // is there. Returns what it did, for the user.
  std::string Plots(const std::string& dir) const {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(fs::path(dir) / "data", ec);
    std::string gp =
        "# written by hsi-bench; run: gnuplot plot.gp (in this directory)\n"
        "set terminal pngcairo size 1100,700 noenhanced font ',10'\n"
        "set logscale xy\nset grid\nset key outside right top\n"
        "set xlabel 'message size (bytes)'\n"
        "set xtics ('64' 64, '256' 256, '1K' 1024, '4K' 4096, '16K' 16384, '64K' 65536, "
        "'256K' 262144, '1M' 1048576)\n";
    absl::StrAppendFormat(&gp, "set xrange [%g:%g]\n", opt_.sizes.front() * 0.7,
                          opt_.sizes.back() * 1.4);
    std::vector<std::string> rtt_plots, bps_plots, cpu_plots;
    // One colour per transport family: hsi modes in blues/greens (copy
    // variants dashed), the kernel paths in reds, the libraries in others.
    const std::map<std::string, std::string> colour = {
        {"hsi-spin-zc", "#08519c"},     {"hsi-spin-copy", "#08519c"},
        {"hsi-adaptive-zc", "#3182bd"}, {"hsi-adaptive-copy", "#3182bd"},
        {"hsi-block-zc", "#31a354"},    {"hsi-block-copy", "#31a354"},
        {"tcp", "#de2d26"},             {"tcp-uring", "#fc9272"},
        {"unix", "#984ea3"},            {"pipe", "#a65628"},
        {"boost-mq", "#ff7f00"},        {"iceoryx", "#636363"},
        {"session-spin", "#54278f"},    {"session-adaptive", "#756bb1"},
        {"session-block", "#9e9ac8"},   {"session-spin-batch", "#3f007d"}};
    for (Transport* t : ts_) {
      if (!t->sized()) continue;
      const auto c = colour.find(t->key());
      const std::string style = absl::StrCat(
          " with linespoints lw 2 lc rgb '", c == colour.end() ? "#000000" : c->second, "'",
          absl::EndsWith(t->key(), "-copy") ? " dt 2" : "");
      const std::string file = absl::StrCat("data/", t->key(), ".dat");
      std::ofstream f(fs::path(dir) / file);
      f << "# size rtt_p50_ns rtt_p99_ns frames_per_s bytes_per_s cpu_s_per_mframe\n";
      int lines = 0;
      for (const Row& r : rows_) {
        if (r.key != t->key() || r.ok_reps == 0) continue;
        f << r.size << ' ' << r.p50.median << ' ' << r.p99.median << ' '
          << (r.streamed ? r.fps.median : NAN) << ' ' << (r.streamed ? r.bps.median : NAN)
          << ' ' << (r.streamed ? r.cpu_mframe.median : NAN) << '\n';
        ++lines;
      }
      if (lines == 0) continue;
      rtt_plots.push_back(
          absl::StrCat("'", file, "' using 1:($2/1000)", style, " title '", t->label(), "'"));
      if (t->streams()) {
        bps_plots.push_back(
            absl::StrCat("'", file, "' using 1:($5/1e9)", style, " title '", t->label(), "'"));
        cpu_plots.push_back(
            absl::StrCat("'", file, "' using 1:6", style, " title '", t->label(), "'"));
      }
    }
    std::string floor_line;
    if (const Row* f = FindRow("floor", opt_.sizes.front()); f != nullptr) {
      floor_line = absl::StrFormat(", %g with lines dashtype 2 lc rgb 'black' title "
                                   "'cache-line floor (%s)'",
                                   f->p50.median / 1000, Ns(f->p50.median));
    }
    absl::StrAppend(&gp, "\nset output 'rtt_p50.png'\nset title 'hsi-bench: ping-pong round "
                         "trip, p50 (lower is better)'\nset ylabel 'round trip (us)'\nplot ",
                    absl::StrJoin(rtt_plots, ", \\\n     "), floor_line, "\n");
    absl::StrAppend(&gp, "\nset output 'throughput.png'\nset title 'hsi-bench: one-way stream "
                         "throughput (higher is better)'\nset ylabel 'GB/s (10^9 bytes/s)'\nplot ",
                    absl::StrJoin(bps_plots, ", \\\n     "), "\n");
    absl::StrAppend(&gp, "\nset output 'cpu.png'\nset title 'hsi-bench: CPU seconds (both "
                         "processes) per million frames streamed (lower is better)'\nset ylabel "
                         "'CPU s / M frames'\nplot ",
                    absl::StrJoin(cpu_plots, ", \\\n     "), "\n");
    {
      std::ofstream f(fs::path(dir) / "plot.gp");
      f << gp;
    }
    if (rtt_plots.empty()) return "no sized transport measured: no plots";
    if (!OnPath("gnuplot")) {
      return absl::StrCat("gnuplot not found (apt-get install gnuplot-nox): no PNG plots; the "
                          "data and plot.gp are in ",
                          dir);
    }
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (::chdir(dir.c_str()) != 0) ::_exit(126);
      const int null = ::open("/dev/null", O_WRONLY);
      if (null >= 0) ::dup2(null, 1);
      ::execlp("gnuplot", "gnuplot", "plot.gp", nullptr);
      ::_exit(127);
    }
    int st = 0;
    if (pid < 0 || ::waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      return absl::StrCat("gnuplot failed on ", dir, "/plot.gp (status ", st, ")");
    }
    return absl::StrCat("plots: ", dir, "/rtt_p50.png, ", dir, "/throughput.png, ", dir,
                        "/cpu.png");
  }

 private:
  // The median over repetitions of a's figure / b's figure within each
  // repetition: round-trip p50 (b's cell at the smallest size if b is not
  // sized), or stream frames/s. 0 if no repetition has both.
  double PairRatio(const std::string& a, const std::string& b, size_t size, bool stream) const {
    std::vector<double> x;
    for (int rep = 0; rep < opt_.reps; ++rep) {
      const CellResult* ca = Find(a, size, rep);
      const CellResult* cb = Find(b, size, rep);
      if (cb == nullptr) cb = Find(b, opt_.sizes.front(), rep);
      if (ca == nullptr || cb == nullptr) continue;
      if (stream) {
        if (ca->streamed && cb->streamed && cb->frames_per_s() > 0) {
          x.push_back(ca->frames_per_s() / cb->frames_per_s());
        }
      } else if (cb->rtt.p50 > 0) {
        x.push_back(ca->rtt.p50 / cb->rtt.p50);
      }
    }
    return Median(x);
  }

  const CellResult* Find(const std::string& key, size_t size, int rep) const {
    for (const CellResult& c : cells_) {
      if (c.ok && c.transport == key && c.size == size && c.rep == rep) return &c;
    }
    return nullptr;
  }
  static bool OnPath(const char* exe) {
    const char* path = std::getenv("PATH");
    for (absl::string_view d : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
      const std::string p = absl::StrCat(d, "/", exe);
      if (::access(p.c_str(), X_OK) == 0) return true;
    }
    return false;
  }

  const Options& opt_;
  std::vector<Transport*> ts_;
  std::vector<CellResult> cells_;
  std::vector<Row> rows_;
};

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return static_cast<bool>(f);
}

int Main(int argc, char** argv) {
  SetProgramName(kProgram);
  std::vector<std::unique_ptr<Transport>> all = AllTransports();
  if (absl::GetFlag(FLAGS_list)) {
    for (const auto& t : all) std::printf("%-18s %s\n", t->key().c_str(), t->label().c_str());
    if (!IceoryxCompiledIn()) std::printf("(iceoryx: not built in; install libiceoryx-posh-dev)\n");
    return 0;
  }
  Options opt = ParseOptions(argc, argv, all);
  if (!IceoryxCompiledIn() && absl::GetFlag(FLAGS_transports) == "all") {
    std::fprintf(stderr,
                 "%s: iceoryx: skipped, this hsi-bench was built without iceoryx (install "
                 "libiceoryx-posh-dev and reconfigure)\n",
                 kProgram);
  }
  if (!opt.out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(opt.out_dir, ec);
    if (ec) {
      std::fprintf(stderr, "%s: --out %s: %s\n", kProgram, opt.out_dir.c_str(),
                   ec.message().c_str());
      return 2;
    }
  }

  // A private scratch directory for RouDi's config and log.
  char scratch_tmpl[] = "/tmp/hsi-bench-XXXXXX";
  const char* scratch = ::mkdtemp(scratch_tmpl);
  if (scratch == nullptr) {
    std::fprintf(stderr, "%s: mkdtemp: %s\n", kProgram, std::strerror(errno));
    return 1;
  }
  if (std::find(opt.transports.begin(), opt.transports.end(), "iceoryx") !=
      opt.transports.end()) {
    if (absl::Status s = StartRouDi(opt.sizes, scratch); !s.ok()) {
      std::fprintf(stderr, "%s: iceoryx: skipped: %s\n", kProgram, s.ToString().c_str());
      opt.transports.erase(std::find(opt.transports.begin(), opt.transports.end(), "iceoryx"));
    } else {
      std::fprintf(stderr, "%s: iceoryx: started iox-roudi (config and log in %s)\n", kProgram,
                   scratch);
    }
  }

  std::vector<Transport*> ts;
  for (const auto& t : all) {
    if (std::find(opt.transports.begin(), opt.transports.end(), t->key()) != opt.transports.end()) {
      ts.push_back(t.get());
    }
  }
  if (ts.empty()) {
    StopRouDi();
    std::fprintf(stderr, "%s: no transport to run\n", kProgram);
    return 2;
  }

  const CpuPlan cpus = PlanCpus();
  Machine machine = DescribeMachine(cpus);
  const TickClock clock = TickClock::Calibrate();
  absl::StatusOr<SharedMemory> mem = SharedMemory::Create(CellBytes(opt.max_round_trips));
  if (!mem.ok()) {
    StopRouDi();
    std::fprintf(stderr, "%s: %s\n", kProgram, mem.status().ToString().c_str());
    return 1;
  }

  size_t total = 0;
  for (Transport* t : ts) {
    total += t->sized() ? static_cast<size_t>(std::count_if(opt.sizes.begin(), opt.sizes.end(),
                                                            [&](size_t z) { return t->fits(z); }))
                        : 1;
  }
  total *= static_cast<size_t>(opt.reps);
  std::fprintf(stderr,
               "%s: %zu cells (%zu transports, %zu sizes, %d reps), %s; about %.0f s\n",
               kProgram, total, ts.size(), opt.sizes.size(), opt.reps, cpus.label.c_str(),
               static_cast<double>(total) *
                   (absl::ToDoubleSeconds(opt.pingpong + opt.stream) + 0.08));

  Report report(opt, ts);
  const absl::Time t0 = absl::Now();
  int cell_no = 0, failed = 0;
  for (int rep = 0; rep < opt.reps; ++rep) {
    for (size_t si = 0; si < opt.sizes.size(); ++si) {
      const size_t size = opt.sizes[si];
      // Round-robin: each (rep, size) starts at another transport.
      const size_t n = ts.size();
      const size_t first = (static_cast<size_t>(rep) * 7 + si * 3) % n;
      std::fprintf(stderr, "  rep %d/%d, %s: ", rep + 1, opt.reps, SizeName(size).c_str());
      for (size_t k = 0; k < n; ++k) {
        Transport* t = ts[(first + k) % n];
        if ((!t->sized() && si != 0) || !t->fits(size)) continue;
        CellResult r = RunCell(t, size, rep, opt, cpus, clock, &*mem, cell_no++);
        std::fprintf(stderr, "%s%s ", t->key().c_str(), r.ok ? "" : "(FAILED)");
        if (!r.ok) {
          ++failed;
          std::fprintf(stderr, "\n    %s %s: %s\n   ", t->key().c_str(), SizeName(size).c_str(),
                       r.error.c_str());
        }
        report.Add(std::move(r));
      }
      std::fprintf(stderr, "[%.0f s]\n", absl::ToDoubleSeconds(absl::Now() - t0));
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  machine.load_after = LoadAverage();
  StopRouDi();
  std::filesystem::remove_all(scratch);

  report.Summarize();
  const std::string table = report.Table(machine, seconds);
  std::fputs(table.c_str(), stdout);
  std::fflush(stdout);
  const std::string json = report.Json(machine, seconds).dump(1);
  int rc = failed ? 1 : 0;
  if (!opt.json_path.empty() && !WriteFile(opt.json_path, json + "\n")) {
    std::fprintf(stderr, "%s: cannot write %s\n", kProgram, opt.json_path.c_str());
    rc = 1;
  }
  if (!opt.out_dir.empty()) {
    if (!WriteFile(opt.out_dir + "/report.txt", table) ||
        !WriteFile(opt.out_dir + "/results.json", json + "\n")) {
      std::fprintf(stderr, "%s: cannot write into %s\n", kProgram, opt.out_dir.c_str());
      rc = 1;
    }
    std::fprintf(stderr, "%s: %s\n", kProgram, report.Plots(opt.out_dir).c_str());
  }
  if (failed) std::fprintf(stderr, "%s: %d cells failed (see above)\n", kProgram, failed);
  return rc;
}

}  // namespace
}  // namespace hsi::bench::matrix

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the side-by-side benchmark matrix. Every transport (hsi ring in spin, adaptive\n"
      "and block modes with copying and zero-copy calls; the session API, Nic::SendTo/Receive\n"
      "through a private hsid, in the same three modes; loopback TCP with syscalls and with\n"
      "io_uring; Unix stream socket; pipe; Boost.Interprocess message_queue; iceoryx; the bare\n"
      "cache-line floor and the futex ping-pong floor) at every size, between two processes\n"
      "pinned to two CPUs, interleaved round-robin and repeated. Reports round trip\n"
      "p50/p99/p99.9, one-way frames/s and bytes/s, CPU seconds per million frames, medians\n"
      "with min-max, and ratios against loopback TCP.\n"
      "\n"
      "Usage: hsi-bench [--quick] [--out DIR] [--json FILE] [--transports a,b] [--sizes 64,4K]\n"
      "                 [--reps N] [--pingpong_ms MS] [--stream_ms MS] [--list]\n"
      "Exit status: 0 when every cell ran; 1 when a cell failed (the report says which);\n"
      "2 on a bad command line. See docs/benchmarks.md.");
  absl::FlagsUsageConfig uc;
  uc.contains_help_flags = [](absl::string_view f) { return absl::StrContains(f, "matrix"); };
  uc.contains_helpshort_flags = uc.contains_help_flags;
  absl::SetFlagsUsageConfig(uc);
  // --help is a request, not an error: the usage and the flags on stdout,
  // exit 0 (absl's own --help exits 1).
  for (int i = 1; i < argc; ++i) {
    const absl::string_view a = argv[i];
    if (a == "--") break;
    if (a == "-h" || a == "--help" || a == "--helpfull") {
      absl::flags_internal::SetProgramInvocationName("hsi-bench");
      absl::flags_internal::FlagsHelp(std::cout, "matrix", absl::flags_internal::HelpFormat::kHumanReadable,
                                      absl::ProgramUsageMessage());
      return 0;
    }
  }
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "hsi-bench: unexpected argument '%s' (see --help)\n", rest[1]);
    return 2;
  }
  return hsi::bench::matrix::Main(argc, argv);
}
