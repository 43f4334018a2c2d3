// hsi-cf-cache-bench: cache cross-invalidation (issue 20), side by side
// with the hardware floor in one run. A writer connector (this process)
// writes an entry that a reader connector (a forked child) holds
// registered; the reader spins on its local validity vector bit. Samples:
// from the write's completion (WriteEntry returned) to the reader seeing
// its bit invalid, and from the write's start to it; beside them the
// cache-line floor: one process stores a word, the other, spinning, sees
// it. Interleaved per repetition; docs/benchmarks.md quotes it.
#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "harness.h"
#include "hsi/cf.h"
#include "hsi/support/process.h"
#include "hsi/support/tick_clock.h"
#include "hsi/testing/cf_process.h"
#include "hsi/testing/hsid.h"

namespace {

using hsi::support::TickClock;

constexpr char kHelp[] = R"(Usage: hsi-cf-cache-bench [--samples N] [--reps R]

Cache cross-invalidation, side by side in one run: a writer connector
(this process) writes a cache entry that a reader connector (a forked
child) holds registered, while the reader spins on its local validity
vector bit; and the cache-line floor (one process stores a word that the
other, spinning, sees). Starts its own hsid and hsi-cf (--wait=adaptive
unless --cf-wait says otherwise: on two shared vCPUs a spinning CF, a
spinning reader and a writer spinning for its reply are three runnable
processes; the writer yields while it waits for the reader).
Prints p50 and p99 of: write completed -> reader's bit seen invalid
(negative: the reader saw the flip before the writer had its reply, as
the CF flips before it replies), write started -> bit seen invalid, the
write's round trip, and the floor; and the ratio of the second to the
floor within each repetition (median of repetitions).

Options:
  --samples N   samples per method per repetition (2000)
  --reps R      interleaved repetitions (5)
  --cf-wait M   hsi-cf's --wait: spin, adaptive (default) or block
  -h, --help    this text
)";

struct Shared {
  alignas(64) std::atomic<int64_t> ready{-1};  // the reader armed for round i
  alignas(64) std::atomic<int64_t> flag{-1};   // floor: the word the writer stores
  alignas(64) std::atomic<int64_t> seen{-1};   // the reader saw round i ...
  std::atomic<uint64_t> seen_at{0};            // ... at this tick
  std::atomic<int> failed{0};
};

}  // namespace

int main(int argc, char** argv) {
  int samples = 2000, reps = 5;
  std::string wait_mode = "adaptive";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if ((a == "--samples" || a == "--reps") && i + 1 < argc) {
      const int v = std::atoi(argv[++i]);
      if (v <= 0) {
        std::fprintf(stderr, "hsi-cf-cache-bench: %s needs a positive number\n", a.c_str());
        return 2;
      }
      (a == "--samples" ? samples : reps) = v;
      continue;
    }
    if (a == "--cf-wait" && i + 1 < argc) {
      wait_mode = argv[++i];
      if (wait_mode != "spin" && wait_mode != "adaptive" && wait_mode != "block") {
        std::fprintf(stderr, "hsi-cf-cache-bench: --cf-wait: spin, adaptive or block\n");
        return 2;
      }
      continue;
    }
    std::fprintf(stderr, "hsi-cf-cache-bench: unknown argument '%s' (try --help)\n", a.c_str());
    return 2;
  }
  hsi::testing::Hsid hsid;
  if (!hsid.Start()) {
    std::fprintf(stderr, "hsi-cf-cache-bench: hsid did not start:\n%s\n", hsid.log().c_str());
    return 1;
  }
  const std::string wait_flag = absl::StrCat("--wait=", wait_mode);
  hsi::testing::CfProcess cf(hsid, R"(
[cf]
lpar = "CF01"
chpid = "F0"
[[structure]]
name = "GBP1"
type = "cache"
entries = 1024
max_data = 64
vector = 64
lpars = ["*"]
)",
                             wait_flag);
  if (!cf.ready()) {
    std::fprintf(stderr, "hsi-cf-cache-bench: hsi-cf did not start:\n%s\n", cf.log().c_str());
    return 1;
  }
  void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  auto* sh = new (mem) Shared();
  const int64_t rounds = static_cast<int64_t>(samples) * reps;
  constexpr uint32_t kIndex = 5;

  // The reader: per round, first the floor (spin on `flag`), then the
  // cache (register, say ready, spin on its bit).
  hsi::support::Child reader([&] {
    hsi::cf::CfClientOptions o;
    o.socket_path = hsid.socket();
    o.lpar = "READER";
    o.cf = cf.address();
    absl::StatusOr<hsi::cf::CfClient> c = hsi::cf::CfClient::Open(std::move(o));
    absl::StatusOr<hsi::cf::Connection> conn =
        c.ok() ? c->Connect("GBP1", "READER1") : absl::StatusOr<hsi::cf::Connection>(c.status());
    if (!conn.ok()) {
      std::fprintf(stderr, "reader: %s\n", conn.status().ToString().c_str());
      sh->failed.store(1);
      return 1;
    }
    for (int64_t i = 0; i < 2 * rounds; ++i) {
      if (i % 2 == 0) {  // floor
        sh->ready.store(i, std::memory_order_release);
        while (sh->flag.load(std::memory_order_acquire) != i) {
        }
      } else {  // cache
        if (!c->ReadAndRegister(*conn, "PAGE", kIndex).ok()) {
          sh->failed.store(1);
          return 1;
        }
        sh->ready.store(i, std::memory_order_release);
        while (conn->vector->IsValid(kIndex)) {
        }
      }
      sh->seen_at.store(TickClock::Now(), std::memory_order_relaxed);
      sh->seen.store(i, std::memory_order_release);
    }
    return 0;
  });

  hsi::cf::CfClientOptions o;
  o.socket_path = hsid.socket();
  o.lpar = "WRITER";
  o.cf = cf.address();
  absl::StatusOr<hsi::cf::CfClient> w = hsi::cf::CfClient::Open(std::move(o));
  absl::StatusOr<hsi::cf::Connection> wc =
      w.ok() ? w->Connect("GBP1", "WRITER1") : absl::StatusOr<hsi::cf::Connection>(w.status());
  if (!wc.ok()) {
    std::fprintf(stderr, "hsi-cf-cache-bench: %s\n", wc.status().ToString().c_str());
    return 1;
  }
  const TickClock clock = TickClock::Calibrate();
  auto wait_for = [&](const std::atomic<int64_t>& a, int64_t want) {
    const absl::Time until = absl::Now() + absl::Seconds(10);
    while (a.load(std::memory_order_acquire) != want) {
      if (sh->failed.load() != 0 || absl::Now() > until) return false;
      ::sched_yield();  // the reader spins: on two shared vCPUs, let it run
    }
    return true;
  };
  std::vector<double> p50_ratio, p99_ratio;
  std::vector<hsi::bench::Summary> floor_p, done_p, start_p, rtt_p;
  int64_t i = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> floor, done, start, rtt;
    for (int s = 0; s < samples; ++s) {
      // The floor: a store seen by a spinning reader.
      if (!wait_for(sh->ready, i)) return std::fprintf(stderr, "reader stuck (floor)\n"), 1;
      const uint64_t f0 = TickClock::Now();
      sh->flag.store(i, std::memory_order_release);
      if (!wait_for(sh->seen, i)) return std::fprintf(stderr, "reader stuck (floor)\n"), 1;
      floor.push_back(clock.NsBetween(f0, sh->seen_at.load(std::memory_order_relaxed)));
      ++i;
      // The cache: a write cross-invalidates the reader's copy.
      if (!wait_for(sh->ready, i)) return std::fprintf(stderr, "reader stuck (cache)\n"), 1;
      const uint64_t t0 = TickClock::Now();
      absl::StatusOr<uint32_t> n = w->WriteEntry(*wc, "PAGE", "v", false);
      const uint64_t t1 = TickClock::Now();
      if (!n.ok() || *n != 1) {
        std::fprintf(stderr, "hsi-cf-cache-bench: write: %s\n",
                     n.ok() ? "invalidated no copy" : n.status().ToString().c_str());
        return 1;
      }
      if (!wait_for(sh->seen, i)) return std::fprintf(stderr, "reader stuck (cache)\n"), 1;
      const uint64_t seen = sh->seen_at.load(std::memory_order_relaxed);
      // Signed: the reader may see the flip before the writer has its reply.
      const double after_done = seen >= t1 ? clock.NsBetween(t1, seen) : -clock.NsBetween(seen, t1);
      done.push_back(after_done);
      start.push_back(clock.NsBetween(t0, seen));
      rtt.push_back(clock.NsBetween(t0, t1));
      ++i;
    }
    floor_p.push_back(hsi::bench::Summarize(floor));
    done_p.push_back(hsi::bench::Summarize(done));
    start_p.push_back(hsi::bench::Summarize(start));
    rtt_p.push_back(hsi::bench::Summarize(rtt));
    p50_ratio.push_back(start_p.back().p50 / floor_p.back().p50);
    p99_ratio.push_back(start_p.back().p99 / floor_p.back().p99);
  }
  reader.Wait();
  auto med = [](const std::vector<hsi::bench::Summary>& v, bool p99) {
    std::vector<double> x;
    for (const hsi::bench::Summary& p : v) x.push_back(p99 ? p.p99 : p.p50);
    return hsi::bench::Summarize(x).p50;
  };
  std::printf("cache cross-invalidation, %d reps x %d samples, clock %s, hsi-cf --wait=%s\n",
              reps, samples, TickClock::Name(), wait_mode.c_str());
  std::printf("%-52s %10s %10s\n", "measure", "p50 ns", "p99 ns");
  std::printf("%-52s %10.0f %10.0f\n", "cache-line floor: store -> spinning reader sees it",
              med(floor_p, false), med(floor_p, true));
  std::printf("%-52s %10.0f %10.0f\n", "write completed -> reader's bit seen invalid",
              med(done_p, false), med(done_p, true));
  std::printf("%-52s %10.0f %10.0f\n", "write started -> reader's bit seen invalid",
              med(start_p, false), med(start_p, true));
  std::printf("%-52s %10.0f %10.0f\n", "write round trip (WriteEntry)", med(rtt_p, false),
              med(rtt_p, true));
  std::printf("write started -> seen invalid / floor: p50 %.1fx, p99 %.1fx\n", hsi::bench::Summarize(p50_ratio).p50,
              hsi::bench::Summarize(p99_ratio).p50);
  ::munmap(mem, sizeof(Shared));
  return 0;
}
