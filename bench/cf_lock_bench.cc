// hsi-cf-bench: uncontended lock obtain+release, side by side in one run
// (issue 20): a CF lock structure (synchronous Lock + Unlock over the CF
// link, hsi-cf spinning), a process-shared robust pthread mutex in shared
// memory (the floor) and flock(2) on a file. Starts its own hsid and
// hsi-cf, interleaves the three per repetition, prints p50/p99 per method
// and the ratios to the mutex, taken within each repetition (median of
// repetitions). docs/benchmarks.md quotes it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "hsi/testing/cf_process.h"
#include "hsi/cf.h"
#include "hsi/support/process.h"
#include "hsi/support/tick_clock.h"
#include "hsi/testing/hsid.h"
#include "redis_baseline.h"

namespace {

using hsi::bench::RedisCall;
using hsi::bench::StartRedis;
using hsi::support::TickClock;

constexpr char kHelp[] = R"(Usage: hsi-cf-bench [--iterations N] [--reps R] [--no-pin]

Uncontended lock obtain+release, one process, side by side in one run:
a CF lock structure (hsi-cf over an hsi link, synchronous, the CF and
the connector spinning), a process-shared robust pthread mutex in shared memory (the
floor), flock(2) on a file in /tmp, the same lock structure duplexed in
two CFs (a second hsi-cf holding its secondary) and, if /usr/bin/redis-server exists,
Redis SET NX + DEL over loopback TCP (a redis-server it starts). Starts its own hsid and two hsi-cf.
Prints p50 and p99 per method and each method's ratio to the mutex
(within each repetition; the median of the repetitions). Then the
contended hand-off: from one connector's release (a connector that spins
50 us for each reply, then sleeps) to the grant seen by another, sleeping,
connector (a forked child).

The two spinners of the uncontended rows are pinned when two CPUs are
usable: this process (the connector; also the flock, mutex and Redis
client) on the first, hsi-cf (CF01) on the second, so that they never
share one. redis-server is left to the scheduler (pinned beside the
spinning CF it would lose its CPU to it). The hand-off runs unpinned
except for hsi-cf.

Options:
  --iterations N   obtain+release pairs per method per repetition (20000)
  --reps R         interleaved repetitions (5)
  --no-pin         pin nothing
  -h, --help       this text
)";

struct Pct {
  double p50 = 0, p99 = 0;
};

Pct Percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `op` `n` times (after n/10 warm-up runs), `batch` per sample (the
// sample is divided by `batch`: an op shorter than the clock's own cost
// is timed in batches); false if op failed.
bool Time(const TickClock& clock, int n, int batch, const std::function<bool()>& op,
          std::vector<double>* out) {
  for (int i = 0; i < n / 10; ++i) {
    if (!op()) return false;
  }
  out->clear();
  out->reserve(n / batch);
  for (int i = 0; i < n / batch; ++i) {
    const uint64_t t0 = TickClock::Now();
    for (int k = 0; k < batch; ++k) {
      if (!op()) return false;
    }
    out->push_back(clock.NsBetween(t0, TickClock::Now()) / batch);
  }
  return true;
}

// Pins process (or thread) `pid` (0: the caller) to `cpu`; false if refused.
bool PinPid(pid_t pid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(pid, sizeof set, &set) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 20000, reps = 5;
  bool pin = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if (a == "--no-pin") {
      pin = false;
      continue;
    }
    if ((a == "--iterations" || a == "--reps") && i + 1 < argc) {
      const int v = std::atoi(argv[++i]);
      if (v <= 0) {
        std::fprintf(stderr, "hsi-cf-bench: %s needs a positive number\n", a.c_str());
        return 2;
      }
      (a == "--iterations" ? iterations : reps) = v;
      continue;
    }
    std::fprintf(stderr, "hsi-cf-bench: unknown argument '%s' (try --help)\n", a.c_str());
    return 2;
  }

  hsi::testing::Hsid hsid;
  if (!hsid.Start()) {
    std::fprintf(stderr, "hsi-cf-bench: hsid did not start:\n%s\n", hsid.log().c_str());
    return 1;
  }
  // CF02 holds the secondary of LOCKD (duplexed), CF01 its primary and the
  // simplex LOCK1: the simplex and duplexed rows differ in the mirroring only.
  hsi::testing::CfProcess cf02(hsid, R"(
[cf]
lpar = "CF02"
chpid = "F0"
address = "10.240.0.201"
[[structure]]
name = "LOCKD"
type = "lock"
entries = 1024
lpars = ["*"]
duplex = "secondary"
[duplex]
partner = "CF01"
address = "10.240.0.200"
)",
                               "", "cf02");  // adaptive: it shares the 2 cores
  hsi::testing::CfProcess cf(hsid, R"(
[cf]
lpar = "CF01"
chpid = "F0"
address = "10.240.0.200"
[[structure]]
name = "LOCK1"
type = "lock"
entries = 1024
lpars = ["*"]
[[structure]]
name = "LOCKD"
type = "lock"
entries = 1024
lpars = ["*"]
duplex = "primary"
[duplex]
partner = "CF02"
address = "10.240.0.201"
)",
                             "--wait=spin");
  if (!cf.ready()) {
    std::fprintf(stderr, "hsi-cf-bench: hsi-cf did not start:\n%s\n", cf.log().c_str());
    return 1;
  }
  // A connector of LPAR `lpar` to CF01 that spins `spin` for each reply.
  auto open = [&](const char* lpar, absl::Duration spin) {
    hsi::cf::CfClientOptions o;
    o.socket_path = hsid.socket();
    o.lpar = lpar;
    o.cf = cf.address();
    o.spin = spin;
    return hsi::cf::CfClient::Open(std::move(o));
  };
  // The uncontended rows: the CF spins and so does the connector for each
  // reply (z/OS's synchronous request); the hand-off below uses connectors
  // with the default, spin then sleep (CfClientOptions::spin).
  const absl::Duration kSpinThenSleep = hsi::cf::CfClientOptions().spin;
  absl::StatusOr<hsi::cf::CfClient> client = open("BENCH", absl::InfiniteDuration());
  if (!client.ok()) {
    std::fprintf(stderr, "hsi-cf-bench: %s\n", client.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<hsi::cf::Connection> conn = client->Connect("LOCK1", "BENCH1");
  absl::StatusOr<hsi::cf::Connection> dconn = client->Connect("LOCKD", "BENCH1");
  if (!conn.ok() || !dconn.ok()) {
    std::fprintf(stderr, "hsi-cf-bench: %s %s\n", conn.status().ToString().c_str(),
                 dconn.status().ToString().c_str());
    return 1;
  }
  if (cf.log().find("duplexed with CF02") == std::string::npos) {
    std::fprintf(stderr, "hsi-cf-bench: LOCKD is not duplexed:\n%s\n", cf.log().c_str());
    return 1;
  }

  // The robust, process-shared mutex in shared memory.
  void* mem = ::mmap(nullptr, sizeof(pthread_mutex_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  auto* mu = static_cast<pthread_mutex_t*>(mem);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(mu, &attr);
  char path[] = "/tmp/hsi-cf-bench.XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return 1;
  ::unlink(path);

  const TickClock clock = TickClock::Calibrate();
  struct Method {
    const char* name;
    int batch;
    std::function<bool()> op;
    std::vector<double> p50s, p99s, ratio50, ratio99;
  };
  std::vector<Method> m;
  m.push_back({"robust pthread mutex (shared memory) [1]",
               100,
               [&] { return pthread_mutex_lock(mu) == 0 && pthread_mutex_unlock(mu) == 0; },
               {},
               {},
               {},
               {}});
  m.push_back({"flock(2) on a file",
               1,
               [&] { return ::flock(fd, LOCK_EX) == 0 && ::flock(fd, LOCK_UN) == 0; },
               {},
               {},
               {},
               {}});
  // Lock + Unlock of RES1 in the structure of connection `c`.
  auto cf_pair = [&client](const hsi::cf::Connection& c) -> std::function<bool()> {
    return [&client, &c] {
      absl::StatusOr<hsi::cf::LockReply> r = client->Lock(c, "RES1", hsi::cf::LockMode::kExclusive);
      return r.ok() && r->outcome == hsi::cf::LockReply::Outcome::kGranted &&
             client->Unlock(c, "RES1").ok();
    };
  };
  m.push_back({"hsi-cf lock structure (sync, both spin)",
               1,
               cf_pair(*conn),
               {},
               {},
               {},
               {}});
  const size_t duplexed = m.size();
  m.push_back({"hsi-cf lock structure, duplexed in 2 CFs",
               1,
               cf_pair(*dconn),
               {},
               {},
               {},
               {}});
  hsi::support::Child redis_server;
  const int redis = StartRedis(&redis_server);
  if (redis >= 0) {
    const std::string set = "*4\r\n$3\r\nSET\r\n$4\r\nRES1\r\n$1\r\n1\r\n$2\r\nNX\r\n";
    const std::string del = "*2\r\n$3\r\nDEL\r\n$4\r\nRES1\r\n";
    m.push_back(
        {"Redis SET NX + DEL (loopback TCP)",
         1,
         [redis, set, del] { return RedisCall(redis, set, '+') && RedisCall(redis, del, ':'); },
         {},
         {},
         {},
         {}});
  } else {
    std::printf(
        "(no /usr/bin/redis-server, or it did not listen: the Redis baseline is skipped)\n");
  }
  // The first two CPUs we may use: the client's and the servers'.
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  int cpus[2] = {-1, -1};
  if (pin && ::sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; ++c) {
      if (CPU_ISSET(c, &allowed)) cpus[k++] = c;
    }
  }
  std::string placement = "unpinned";
  if (cpus[1] >= 0 && PinPid(cf.pid(), cpus[1]) && PinPid(0, cpus[0])) {
    placement = "pinned: this process on CPU " + std::to_string(cpus[0]) + ", hsi-cf on CPU " +
                std::to_string(cpus[1]) + ", redis-server unpinned";
  }
  std::vector<double> samples;
  for (int r = 0; r < reps; ++r) {
    std::vector<Pct> pct;
    for (Method& x : m) {
      if (!Time(clock, iterations, x.batch, x.op, &samples)) {
        std::fprintf(stderr, "hsi-cf-bench: %s failed\n", x.name);
        return 1;
      }
      pct.push_back(Percentiles(samples));
      x.p50s.push_back(pct.back().p50);
      x.p99s.push_back(pct.back().p99);
    }
    for (size_t k = 0; k < m.size(); ++k) {
      m[k].ratio50.push_back(pct[k].p50 / pct[0].p50);
      m[k].ratio99.push_back(pct[k].p99 / pct[0].p99);
    }
  }
  if (placement != "unpinned") (void)::sched_setaffinity(0, sizeof allowed, &allowed);
  double load[3] = {0, 0, 0};
  (void)::getloadavg(load, 3);
  std::printf(
      "uncontended lock obtain+release, %d x %d per method, clock %s (%.0f ns per timed sample), "
      "load average %.2f, %s\n",
      reps, iterations, TickClock::Name(), clock.overhead_ns(), load[0], placement.c_str());
  std::printf("%-42s %10s %10s %12s %12s\n", "method", "p50 ns", "p99 ns", "p50 / mutex",
              "p99 / mutex");
  for (Method& x : m) {
    std::printf("%-42s %10.1f %10.1f %11.1fx %11.1fx\n", x.name, Median(x.p50s), Median(x.p99s),
                Median(x.ratio50), Median(x.ratio99));
  }
  if (m.size() > duplexed + 1) {  // the issue's target: the CF >= 20x faster than Redis
    std::vector<double> r50, r99;
    for (int r = 0; r < reps; ++r) {
      r50.push_back(m[duplexed + 1].p50s[r] / m[2].p50s[r]);
      r99.push_back(m[duplexed + 1].p99s[r] / m[2].p99s[r]);
    }
    std::printf("Redis / hsi-cf: p50 %.1fx, p99 %.1fx\n", Median(r50), Median(r99));
  }
  {  // duplexing's cost: each update waits for the CF-to-CF round trip
    std::vector<double> d50, d99;
    for (int r = 0; r < reps; ++r) {
      d50.push_back(m[duplexed].p50s[r] / m[2].p50s[r]);
      d99.push_back(m[duplexed].p99s[r] / m[2].p99s[r]);
    }
    std::printf("duplexed / simplex hsi-cf: p50 %.1fx, p99 %.1fx\n", Median(d50), Median(d99));
  }
  std::printf(
      "[1] timed 100 pairs per sample (one pair is below the clock's own cost): its p99 is of "
      "100-pair means\n");

  // Contended hand-off: this process holds HOT exclusive; a child connector
  // asks for it (queued), then sleeps for the grant (Wait::Block). The
  // sample is from just before our Unlock to the child's return from the
  // wait with the grant (TSC, the same counter on both vCPUs here). Then
  // the child releases and we take HOT again for the next round.
  struct Shared {
    std::atomic<uint64_t> granted_at{0};
    std::atomic<int> round{-1};
  };
  void* shm =
      ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shm == MAP_FAILED) return 1;
  auto* sh = new (shm) Shared();
  const int handoffs = std::max(200, iterations / 20);
  hsi::support::LinePipe to_child, to_parent;
  // The releaser: a connector that sleeps after 50 us of spinning (the
  // default), so that it does not hold a CPU the waiter needs.
  absl::StatusOr<hsi::cf::CfClient> hclient = open("BENCH2", kSpinThenSleep);
  absl::StatusOr<hsi::cf::Connection> hconn =
      hclient.ok() ? hclient->Connect("LOCK1", "BENCH2") : hclient.status();
  if (!hconn.ok()) {
    std::fprintf(stderr, "hsi-cf-bench: %s\n", hconn.status().ToString().c_str());
    return 1;
  }
  if (absl::StatusOr<hsi::cf::LockReply> r =
          hclient->Lock(*hconn, "HOT", hsi::cf::LockMode::kExclusive);
      !r.ok() || r->outcome != hsi::cf::LockReply::Outcome::kGranted) {
    std::fprintf(stderr, "hsi-cf-bench: cannot take HOT\n");
    return 1;
  }
  hsi::support::Child waiter([&] {
    absl::StatusOr<hsi::cf::CfClient> w = open("WAITER", kSpinThenSleep);
    if (!w.ok()) return to_parent.Write("ERR open"), 1;
    absl::StatusOr<hsi::cf::Connection> wc = w->Connect("LOCK1", "WAITER1");
    if (!wc.ok()) return to_parent.Write("ERR connect"), 1;
    for (int i = 0; i < handoffs; ++i) {
      if (to_child.Read(absl::Seconds(20)) != "GO") return to_parent.Write("ERR no go"), 1;
      absl::StatusOr<hsi::cf::LockReply> q = w->Lock(*wc, "HOT", hsi::cf::LockMode::kExclusive);
      if (!q.ok() || q->outcome != hsi::cf::LockReply::Outcome::kQueued)
        return to_parent.Write("ERR not queued"), 1;
      to_parent.Write("QUEUED");
      absl::StatusOr<hsi::cf::Event> e =
          w->NextEvent(hsi::Wait::Block(absl::Now() + absl::Seconds(10)));
      const uint64_t t = TickClock::Now();
      if (!e.ok() || e->kind != hsi::cf::Event::Kind::kGranted)
        return to_parent.Write("ERR no grant"), 1;
      sh->granted_at.store(t, std::memory_order_relaxed);
      if (!w->Unlock(*wc, "HOT").ok()) return to_parent.Write("ERR unlock"), 1;
      to_parent.Write("RELEASED");
    }
    return 0;
  });
  std::vector<double> hand;
  for (int i = 0; i < handoffs; ++i) {
    to_child.Write("GO");  // we hold HOT: the waiter's request queues
    if (to_parent.Read(absl::Seconds(20)) != "QUEUED") {
      std::fprintf(stderr, "hsi-cf-bench: the waiter did not queue\n");
      return 1;
    }
    const uint64_t t0 = TickClock::Now();
    if (absl::Status u = hclient->Unlock(*hconn, "HOT"); !u.ok()) {
      std::fprintf(stderr, "hsi-cf-bench: %s\n", u.ToString().c_str());
      return 1;
    }
    if (to_parent.Read(absl::Seconds(20)) != "RELEASED") {
      std::fprintf(stderr, "hsi-cf-bench: the waiter did not release\n");
      return 1;
    }
    hand.push_back(clock.NsBetween(t0, sh->granted_at.load(std::memory_order_relaxed)));
    absl::StatusOr<hsi::cf::LockReply> again =
        hclient->Lock(*hconn, "HOT", hsi::cf::LockMode::kExclusive);
    if (!again.ok() || again->outcome != hsi::cf::LockReply::Outcome::kGranted) {
      std::fprintf(stderr, "hsi-cf-bench: HOT not granted back after the hand-off\n");
      return 1;
    }
  }
  waiter.Wait();
  const Pct hp = Percentiles(hand);
  std::printf(
      "contended hand-off, release -> a sleeping waiter's grant, %d hand-offs: p50 %.1f us, p99 "
      "%.1f us\n",
      handoffs, hp.p50 / 1000, hp.p99 / 1000);
  ::munmap(shm, sizeof(Shared));
  if (redis >= 0) {
    ::close(redis);
    redis_server.Stop();
  }
  pthread_mutex_destroy(mu);
  ::munmap(mem, sizeof(pthread_mutex_t));
  ::close(fd);
  return 0;
}
