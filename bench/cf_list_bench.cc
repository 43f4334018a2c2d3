// hsi-cf-list-bench: message passing through a CF list structure with list
// transition monitoring (the XCF signalling pattern, issue 20), side by
// side in one run with a Redis list and BLPOP over loopback TCP.
//
// A sender (this process) pushes 16-byte messages carrying their send
// time (TSC) to the tail of a list; a receiver (a forked child, its own
// LPAR and connector) takes them in one of two ways: (1) it monitors list
// 0: it pops until the list is empty, then sleeps until the CF tells it
// the list went from empty to non-empty (Event kTransition, no polling);
// (2) PopWait on list 1 (BLPOP's role): one request that pops, or sleeps
// until the CF hands it the next entry in the note that wakes it. Redis:
// RPUSH by the sender, BLPOP by the receiver on its own connection. Two
// measures per method, interleaved in each repetition:
//   one-way latency  the sender pushes one message and waits for the
//                    receiver to have popped it; latency = pop time - send
//                    time (both TSC, one host);
//   messages/s       the sender pushes N messages back to back; from the
//                    first push to the receiver's last pop.
// Ratios (Redis / CF) within each repetition, median of repetitions.
// docs/benchmarks.md quotes it.
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "hsi/cf.h"
#include "hsi/support/process.h"
#include "hsi/support/tick_clock.h"
#include "hsi/testing/cf_process.h"
#include "hsi/testing/hsid.h"
#include "redis_baseline.h"

namespace {

using hsi::support::TickClock;

constexpr char kHelp[] = R"(Usage: hsi-cf-list-bench [--messages N] [--reps R] [--cf-wait spin|adaptive|block]

Message passing through a coupling facility list structure, the receiver
asleep when the list is empty: with list transition monitoring (woken when
the list goes from empty to non-empty, then it pops) and with PopWait (one
request; woken with the entry itself), side by side with a Redis list and
BLPOP over loopback TCP (if /usr/bin/redis-server exists: a redis-server it
starts).
Starts its own hsid and hsi-cf. For each method and repetition: one-way
latency of N messages sent one at a time (p50, p99) and messages/s of N
sent back to back; ratios Redis / CF within each repetition.
  --messages N   messages per measure (default 5000)
  --reps R       repetitions (default 5)
  --cf-wait MODE how hsi-cf waits for requests (default adaptive: the sender,
                 the receiver and the CF share the CPUs)
)";

// What the receiver (a child) reports to the sender through shared memory.
struct Shared {
  std::atomic<uint64_t> popped{0};     // messages taken so far in this phase
  std::atomic<uint64_t> last_tsc{0};   // TSC of the last pop
  std::atomic<int> phase{0};           // bumped by the sender to start a phase
  std::atomic<int> ready{0};           // the receiver's phase once it waits
  std::atomic<int> failed{0};
  double latency_ns[1 << 17];          // one-way latencies of the latency phase
};

std::string Stamp() {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, TickClock::Now());
  return std::string(buf, 16);
}

uint64_t Unstamp(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 16); }

double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(v.size() * p))];
}
double Median(std::vector<double> v) { return Pct(std::move(v), 0.5); }

// Waits (yielding) until `pred` holds or 30 s passed; false on timeout.
template <typename P>
bool Await(P pred) {
  for (const absl::Time end = absl::Now() + absl::Seconds(30); absl::Now() < end;) {
    if (pred()) return true;
    ::sched_yield();
  }
  return false;
}

// The receiver's loop for one phase of `n` messages: `take` blocks for the
// next message and returns its stamp (0 on error).
template <typename Take>
void Receive(Shared* sh, const TickClock& clock, uint64_t n, bool record, Take take) {
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t stamp = take();
    const uint64_t now = TickClock::Now();
    if (stamp == 0) {
      sh->failed.store(1);
      return;
    }
    if (record && i < (1 << 17)) sh->latency_ns[i] = clock.NsBetween(stamp, now);
    sh->last_tsc.store(now, std::memory_order_relaxed);
    sh->popped.store(i + 1, std::memory_order_release);
  }
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t messages = 5000;
  int reps = 5;
  std::string cf_wait = "adaptive";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if ((a == "--messages" || a == "--reps") && i + 1 < argc) {
      const long v = std::atol(argv[++i]);
      if (v <= 0 || (a == "--messages" && v > (1 << 17))) {
        std::fprintf(stderr, "hsi-cf-list-bench: %s needs a number in 1..%d\n", a.c_str(),
                     a == "--messages" ? (1 << 17) : 1000000);
        return 2;
      }
      if (a == "--messages") {
        messages = static_cast<uint64_t>(v);
      } else {
        reps = static_cast<int>(v);
      }
      continue;
    }
    if (a == "--cf-wait" && i + 1 < argc) {
      cf_wait = argv[++i];
      if (cf_wait != "spin" && cf_wait != "adaptive" && cf_wait != "block") {
        std::fprintf(stderr, "hsi-cf-list-bench: --cf-wait is spin, adaptive or block, not '%s'\n", cf_wait.c_str());
        return 2;
      }
      continue;
    }
    std::fprintf(stderr, "hsi-cf-list-bench: unknown argument '%s' (try --help)\n", a.c_str());
    return 2;
  }

  hsi::testing::Hsid hsid;
  if (!hsid.Start()) {
    std::fprintf(stderr, "hsi-cf-list-bench: hsid did not start:\n%s\n", hsid.log().c_str());
    return 1;
  }
  hsi::testing::CfProcess cf(hsid, R"(
[cf]
lpar = "CF01"
chpid = "F0"
[[structure]]
name = "IXCSIG1"
type = "list"
entries = 200000
lists = 2
max_data = 64
lpars = ["*"]
)",
                             "--wait=" + cf_wait);
  if (!cf.ready()) {
    std::fprintf(stderr, "hsi-cf-list-bench: hsi-cf did not start:\n%s\n", cf.log().c_str());
    return 1;
  }
  hsi::support::Child redis_server;
  const int redis = hsi::bench::StartRedis(&redis_server);
  if (redis < 0) std::printf("(no /usr/bin/redis-server, or it did not listen: the Redis rows are skipped)\n");

  void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  auto* sh = new (mem) Shared();
  const TickClock clock = TickClock::Calibrate();

  // Phases, in this order per repetition: for each method (CF monitoring,
  // CF PopWait, Redis) latency then throughput (the receiver runs the same
  // sequence).
  enum { kMonitor = 0, kPopWait = 1, kRedis = 2 };
  const int methods = redis >= 0 ? 3 : 2;
  auto phase_of = [&](int rep, int method, int kind) { return 1 + (rep * methods + method) * 2 + kind; };

  hsi::support::Child receiver([&]() -> int {
    hsi::cf::CfClientOptions o;
    o.socket_path = hsid.socket();
    o.lpar = "RECV";
    o.cf = cf.address();
    absl::StatusOr<hsi::cf::CfClient> c = hsi::cf::CfClient::Open(std::move(o));
    if (!c.ok()) return 1;
    absl::StatusOr<hsi::cf::Connection> conn = c->Connect("IXCSIG1", "RECV");
    if (!conn.ok() || !c->Monitor(*conn, 0, true).ok()) return 1;
    const int rfd = redis >= 0 ? hsi::bench::ConnectRedis() : -1;
    // Pops until the list is empty, then sleeps for its transition.
    auto monitor_take = [&]() -> uint64_t {
      for (;;) {
        absl::StatusOr<hsi::cf::ListEntry> e = c->Pop(*conn, 0, hsi::cf::ListEnd::kHead);
        if (e.ok()) return Unstamp(e->data);
        if (e.status().code() != absl::StatusCode::kNotFound) return 0;
        absl::StatusOr<hsi::cf::Event> ev = c->NextEvent(hsi::Wait::Block(absl::Now() + absl::Seconds(30)));
        if (!ev.ok()) return 0;
      }
    };
    // One request; if list 1 is empty the entry comes in the wake-up.
    auto popwait_take = [&]() -> uint64_t {
      absl::StatusOr<hsi::cf::ListPop> e =
          c->PopWait(*conn, 1, hsi::cf::ListEnd::kHead, hsi::Wait::Block(absl::Now() + absl::Seconds(30)));
      return e.ok() ? Unstamp(e->entry.data) : 0;
    };
    const std::string blpop = "*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n";
    auto redis_take = [&]() -> uint64_t {
      if (::write(rfd, blpop.data(), blpop.size()) != static_cast<ssize_t>(blpop.size())) return 0;
      // "*2\r\n$1\r\nq\r\n$16\r\n" + 16 bytes + "\r\n": 34 bytes.
      char buf[34];
      size_t got = 0;
      while (got < sizeof buf) {
        const ssize_t n = ::read(rfd, buf + got, sizeof buf - got);
        if (n <= 0) return 0;
        got += static_cast<size_t>(n);
      }
      return Unstamp(std::string(buf + 16, 16));
    };
    for (int rep = 0; rep < reps; ++rep) {
      for (int method = 0; method < methods; ++method) {
        for (int kind = 0; kind < 2; ++kind) {
          const int ph = phase_of(rep, method, kind);
          while (sh->phase.load(std::memory_order_acquire) != ph) ::sched_yield();
          sh->ready.store(ph, std::memory_order_release);
          if (method == kMonitor) {
            Receive(sh, clock, messages, kind == 0, monitor_take);
          } else if (method == kPopWait) {
            Receive(sh, clock, messages, kind == 0, popwait_take);
          } else {
            Receive(sh, clock, messages, kind == 0, redis_take);
          }
          if (sh->failed.load()) return 1;
        }
      }
    }
    return 0;
  });

  hsi::cf::CfClientOptions o;
  o.socket_path = hsid.socket();
  o.lpar = "SEND";
  o.cf = cf.address();
  absl::StatusOr<hsi::cf::CfClient> client = hsi::cf::CfClient::Open(std::move(o));
  if (!client.ok()) {
    std::fprintf(stderr, "hsi-cf-list-bench: %s\n", client.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<hsi::cf::Connection> conn = client->Connect("IXCSIG1", "SEND");
  if (!conn.ok()) {
    std::fprintf(stderr, "hsi-cf-list-bench: %s\n", conn.status().ToString().c_str());
    return 1;
  }
  uint64_t key = 0;
  auto cf_send = [&](uint32_t list) {
    char k[17];
    std::snprintf(k, sizeof k, "%016" PRIx64, key++);
    return client->Push(*conn, list, hsi::cf::ListEnd::kTail, std::string(k, 16), Stamp()).ok();
  };
  auto redis_send = [&] {
    return hsi::bench::RedisCall(redis, "*3\r\n$5\r\nRPUSH\r\n$1\r\nq\r\n$16\r\n" + Stamp() + "\r\n", ':');
  };

  struct Row {
    std::vector<double> p50, p99, rate;
  } rows[3];
  // Redis / CF within each repetition, per CF method.
  std::vector<double> ratio50[2], ratio99[2], ratio_rate[2];
  for (int rep = 0; rep < reps; ++rep) {
    for (int method = 0; method < methods; ++method) {
      auto send = [&] { return method == kRedis ? redis_send() : cf_send(method == kMonitor ? 0 : 1); };
      for (int kind = 0; kind < 2; ++kind) {
        const int ph = phase_of(rep, method, kind);
        sh->popped.store(0);
        sh->phase.store(ph, std::memory_order_release);
        if (!Await([&] { return sh->ready.load(std::memory_order_acquire) == ph; })) {
          std::fprintf(stderr, "hsi-cf-list-bench: the receiver did not start phase %d\n", ph);
          return 1;
        }
        const uint64_t t0 = TickClock::Now();
        for (uint64_t i = 0; i < messages; ++i) {
          if (!send()) {
            std::fprintf(stderr, "hsi-cf-list-bench: a send failed (%s)\n", method == kRedis ? "Redis" : "CF");
            return 1;
          }
          // Latency: one message in flight at a time.
          if (kind == 0 && !Await([&] { return sh->popped.load(std::memory_order_acquire) > i; })) break;
        }
        if (!Await([&] { return sh->popped.load(std::memory_order_acquire) == messages || sh->failed.load(); }) ||
            sh->failed.load()) {
          std::fprintf(stderr, "hsi-cf-list-bench: the receiver failed or stalled in phase %d\n", ph);
          return 1;
        }
        if (kind == 0) {
          std::vector<double> lat(sh->latency_ns, sh->latency_ns + messages);
          rows[method].p50.push_back(Pct(lat, 0.5));
          rows[method].p99.push_back(Pct(lat, 0.99));
        } else {
          const double ns = clock.NsBetween(t0, sh->last_tsc.load());
          rows[method].rate.push_back(static_cast<double>(messages) / (ns / 1e9));
        }
      }
    }
    for (int m = 0; m < 2 && methods == 3; ++m) {
      ratio50[m].push_back(rows[kRedis].p50.back() / rows[m].p50.back());
      ratio99[m].push_back(rows[kRedis].p99.back() / rows[m].p99.back());
      ratio_rate[m].push_back(rows[m].rate.back() / rows[kRedis].rate.back());
    }
  }
  if (receiver.Wait() != 0) {
    std::fprintf(stderr, "hsi-cf-list-bench: the receiver exited with an error\n");
    return 1;
  }
  double load[3] = {0, 0, 0};
  (void)::getloadavg(load, 3);
  std::printf("hsi-cf-list-bench: %" PRIu64 " messages x %d repetitions, load average %.2f; medians over repetitions\n",
              messages, reps, load[0]);
  std::printf("%-52s %12s %12s %14s\n", "method", "one-way p50", "p99", "messages/s");
  const std::string monitor_name = "hsi-cf list + transition monitoring (CF " + cf_wait + ")";
  const std::string popwait_name = "hsi-cf list + PopWait (CF " + cf_wait + ")";
  const char* names[3] = {monitor_name.c_str(), popwait_name.c_str(),
                          "Redis RPUSH + BLPOP (loopback TCP)"};
  for (int m = 0; m < methods; ++m) {
    std::printf("%-52s %9.2f us %9.2f us %14.0f\n", names[m], Median(rows[m].p50) / 1000,
                Median(rows[m].p99) / 1000, Median(rows[m].rate));
  }
  for (int m = 0; m < 2 && methods == 3; ++m) {
    std::printf("Redis / %s within each repetition: one-way p50 %.2fx, p99 %.2fx lower on the CF; "
                "messages/s %.2fx higher on the CF\n",
                m == kMonitor ? "monitoring" : "PopWait", Median(ratio50[m]), Median(ratio99[m]),
                Median(ratio_rate[m]));
  }
  return 0;
}
