// run/preload/conn.h: options, libc, the descriptor table, Conn, hsid.
#include "conn.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <unordered_map>

#include "hsi/session.h"
#include "hsi/wire/messages.h"

namespace hsirun {
namespace {

std::vector<uint16_t> ParsePorts(const char* name) {
  std::vector<uint16_t> out;
  const char* v = std::getenv(name);
  if (v == nullptr) return out;
  std::string s(v);
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    const std::string tok = s.substr(i, j - i);
    char* end = nullptr;
    const long p = std::strtol(tok.c_str(), &end, 10);
    if (!tok.empty() && end != nullptr && *end == '\0' && p > 0 && p < 65536) {
      out.push_back(static_cast<uint16_t>(p));
    } else if (!tok.empty()) {
      std::fprintf(stderr, "hsi-run: %s: \"%s\" is not a port (1-65535); ignored\n", name, tok.c_str());
    }
    i = j + 1;
  }
  return out;
}

uint64_t EnvNumber(const char* name, uint64_t def, uint64_t min, uint64_t max) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return def;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (end == nullptr || *end != '\0' || n < min || n > max) {
    std::fprintf(stderr, "hsi-run: %s=%s is not a number in %llu..%llu; using %llu\n", name, v,
                 static_cast<unsigned long long>(min), static_cast<unsigned long long>(max),
                 static_cast<unsigned long long>(def));
    return def;
  }
  return n;
}

Options LoadOptions() {
  Options o;
  const char* d = std::getenv("HSI_RUN_DISABLE");
  o.disabled = d != nullptr && std::strcmp(d, "1") == 0;
  // Resolved now, at load: a program may clear its environment later (nginx
  // workers keep only TZ) and still connect to hsid through its parent's.
  if (const char* s = std::getenv("HSI_RUN_SOCKET"); s != nullptr && s[0] != '\0') {
    o.socket = s;
  } else if (absl::StatusOr<std::string> p = hsi::ResolveSocketPath(""); p.ok()) {
    o.socket = *p;
  }
  o.log = static_cast<int>(EnvNumber("HSI_RUN_LOG", 0, 0, 3));
  o.busy_poll_us = static_cast<uint32_t>(EnvNumber("HSI_RUN_BUSY_POLL_US", 0, 0, 1000000));
  uint64_t kb = EnvNumber("HSI_RUN_RING_KB", 1024, 64, 1 << 20);
  uint64_t cap = 64 * 1024;
  while (cap < kb * 1024) cap <<= 1;  // a power of two
  o.ring_bytes = cap;
  o.pair_timeout_ms = static_cast<uint32_t>(EnvNumber("HSI_RUN_PAIR_TIMEOUT_MS", 1000, 0, hsi::wire::kMaxAwaitMs));
  o.ports = ParsePorts("HSI_RUN_PORTS");
  o.exclude_ports = ParsePorts("HSI_RUN_EXCLUDE_PORTS");
  return o;
}

template <typename F>
void Load(F& f, const char* name) {
  f = reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

Real LoadReal() {
  Real r{};
  Load(r.socket, "socket");
  Load(r.connect, "connect");
  Load(r.listen, "listen");
  Load(r.accept, "accept");
  Load(r.accept4, "accept4");
  Load(r.close, "close");
  Load(r.shutdown, "shutdown");
  Load(r.dup, "dup");
  Load(r.dup2, "dup2");
  Load(r.dup3, "dup3");
  Load(r.fcntl, "fcntl");
  Load(r.ioctl, "ioctl");
  Load(r.setsockopt, "setsockopt");
  Load(r.read, "read");
  Load(r.write, "write");
  Load(r.readv, "readv");
  Load(r.writev, "writev");
  Load(r.recv, "recv");
  Load(r.send, "send");
  Load(r.recvfrom, "recvfrom");
  Load(r.sendto, "sendto");
  Load(r.recvmsg, "recvmsg");
  Load(r.sendmsg, "sendmsg");
  Load(r.recvmmsg, "recvmmsg");
  Load(r.sendmmsg, "sendmmsg");
  Load(r.sendfile, "sendfile");
  Load(r.splice, "splice");
  Load(r.close_range, "close_range");
  Load(r.execve, "execve");
  Load(r.execvpe, "execvpe");
  Load(r.fexecve, "fexecve");
  Load(r.execveat, "execveat");
  Load(r.posix_spawn, "posix_spawn");
  Load(r.posix_spawnp, "posix_spawnp");
  Load(r.posix_spawn_file_actions_adddup2, "posix_spawn_file_actions_adddup2");
  Load(r.posix_spawn_file_actions_addclose, "posix_spawn_file_actions_addclose");
  Load(r.system, "system");
  Load(r.popen, "popen");
  Load(r.epoll_ctl, "epoll_ctl");
  Load(r.epoll_wait, "epoll_wait");
  Load(r.epoll_pwait, "epoll_pwait");
  Load(r.epoll_pwait2, "epoll_pwait2");
  Load(r.poll, "poll");
  Load(r.ppoll, "ppoll");
  Load(r.select, "select");
  Load(r.pselect, "pselect");
  return r;
}

constexpr int kTableSize = 1 << 16;  // descriptors above are never accelerated
std::atomic<Conn*> g_table[kTableSize];
pthread_mutex_t g_table_mu = PTHREAD_MUTEX_INITIALIZER;
std::unordered_map<Conn*, int>* g_local;        // this process's descriptors per Conn
std::atomic<size_t> g_local_count{0};           // g_local->size(), read without the lock
std::unordered_map<int, uint64_t>* g_listeners;  // listener fd -> id
pthread_mutex_t g_broker_mu = PTHREAD_MUTEX_INITIALIZER;
hsi::RunBroker* g_broker = nullptr;
// hsid did not answer: not asked again before this time (CLOCK_MONOTONIC
// ms), so that a missing hsid costs one failed connect per second at most.
uint64_t g_broker_retry_at = 0;
constexpr uint64_t kBrokerRetryMs = 1000;
bool g_broker_logged = false;  // "not reachable" said once per process

// A Conn is shared with the child, but mappings made after the fork would
// be the maker's alone: a connector still waiting to pair pairs now (its
// peer's segments mapped before the fork), waiting for its connect to
// finish if need be (up to the pair timeout).
void PairBeforeFork() {
  if (InLib()) return;
  std::vector<std::pair<int, Conn*>> pending;
  {
    Guard g(&g_table_mu);
    for (auto& [c, n] : *g_local) {
      if (c->state.load() != static_cast<int>(State::kPending)) continue;
      for (int fd = 0; fd < kTableSize; ++fd) {
        if (g_table[fd].load(std::memory_order_relaxed) == c) {
          pending.emplace_back(fd, c);
          break;
        }
      }
    }
  }
  for (auto [fd, c] : pending) {
    pollfd p{fd, POLLOUT, 0};
    (void)::poll(&p, 1, static_cast<int>(Opts().pair_timeout_ms));
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      EnsurePaired(c, fd);
    } else {
      // Pairing later would map the peer's segments in one process only.
      c->forked_pending.store(true);
      Logf(1, "fd %d: still connecting at fork: it cannot move onto rings (docs/hsi-run.md, limits)", fd);
    }
  }
}

// After the fork two processes hold every connection, and neither sees
// the other's epoll sets: from now on their readers arm whenever they empty
// a ring (Conn::eager), and an empty ring is armed now, before the child
// exists, so that "ring empty => armed" holds from the fork on.
void EagerBeforeFork() {
  if (InLib()) return;
  std::vector<std::pair<int, Conn*>> active;
  {
    Guard g(&g_table_mu);
    for (int fd = 0; fd < kTableSize; ++fd) {
      Conn* c = g_table[fd].load(std::memory_order_relaxed);
      if (c == nullptr || c->eager.load(std::memory_order_relaxed)) continue;
      c->eager.store(true, std::memory_order_relaxed);
      if (c->state.load() == static_cast<int>(State::kActive)) active.emplace_back(fd, c);
    }
  }
  LibScope scope;
  for (auto [fd, c] : active) {
    Guard g(&c->rx_mu);
    if (c->end.Readable() == 0) c->end.ArmData(fd);
  }
}

// The pid whose library state this is (InForeignChild).
std::atomic<pid_t> g_pid{0};

void AtforkPrepare() {
  PairBeforeFork();
  EagerBeforeFork();
  pthread_mutex_lock(&g_broker_mu);
  pthread_mutex_lock(&g_table_mu);
}
void AtforkParent() {
  pthread_mutex_unlock(&g_table_mu);
  pthread_mutex_unlock(&g_broker_mu);
}
void AtforkChild() {
  g_pid.store(::getpid(), std::memory_order_relaxed);
  // Every inherited descriptor is one more reference to its Conn.
  for (auto& [c, n] : *g_local) c->refs.fetch_add(n, std::memory_order_relaxed);
  // The parent's hsid connection is the parent's: drop our copy of it (its
  // socket is close-on-exec and closing our copy leaves the parent's open).
  if (g_broker != nullptr) {
    LibScope scope;
    delete g_broker;
    g_broker = nullptr;
  }
  g_broker_retry_at = 0;
  // The child's waits are not the parent's: ids of their own.
  NewWaiterBase();
  // Listeners stay hsid-registered by the parent; this child registers
  // again on its first accept (IsListener answers false).
  g_listeners->clear();
  pthread_mutex_unlock(&g_table_mu);
  pthread_mutex_unlock(&g_broker_mu);
}

__attribute__((constructor)) void Init() {
  g_pid.store(::getpid(), std::memory_order_relaxed);
  (void)R();
  (void)Opts();
  g_local = new std::unordered_map<Conn*, int>();
  g_listeners = new std::unordered_map<int, uint64_t>();
  pthread_atfork(AtforkPrepare, AtforkParent, AtforkChild);
  ResumeAfterExec();
}

}  // namespace

uint64_t NowMs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

void OnActive(int fd) {
  const int one = 1;
  R().setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

hsi::RingGeometry Options::geometry() const {
  hsi::RingGeometry g;
  g.capacity = ring_bytes;
  g.mtu = static_cast<uint32_t>(std::min<uint64_t>(64 * 1024, ring_bytes / 4));
  return g;
}

bool Options::PortAllowed(uint16_t port) const {
  for (uint16_t p : exclude_ports) {
    if (p == port) return false;
  }
  if (ports.empty()) return true;
  for (uint16_t p : ports) {
    if (p == port) return true;
  }
  return false;
}

const Options& Opts() {
  static const Options o = LoadOptions();
  return o;
}

const Real& R() {
  static const Real r = LoadReal();
  return r;
}

void Logf(int level, const char* fmt, ...) {
  if (Opts().log < level) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "hsi-run[%d]: %s\n", static_cast<int>(::getpid()), buf);
}

bool& InLib() {
  static thread_local bool in = false;
  return in;
}

void Lock(pthread_mutex_t* mu) {
  if (pthread_mutex_lock(mu) == EOWNERDEAD) pthread_mutex_consistent(mu);
}

Conn* NewConn(uint32_t side, uint64_t stream_id, const hsi::RingGeometry& g) {
  void* p = ::mmap(nullptr, sizeof(Conn), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  Conn* c = new (p) Conn();
  c->state.store(static_cast<int>(State::kPending));
  c->side = side;
  c->stream_id = stream_id;
  c->refs.store(1);
  c->nonblock.store(false);
  c->shut_wr.store(false);
  c->writes.store(0);
  c->forked_pending.store(false);
  c->eager.store(false);
  c->sleepers.store(0);
  c->end_maybe.store(false);
  c->quiet_reads.store(0);
  c->follow_at_ns.store(0);
  c->follow_pause_us.store(0);
  c->geometry = g;
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  for (pthread_mutex_t* mu : {&c->setup_mu, &c->tx_mu, &c->rx_mu}) pthread_mutex_init(mu, &a);
  pthread_mutexattr_destroy(&a);
  return c;
}

void DestroyConn(Conn* c) {
  LibScope scope;
  if (c->state.load() == static_cast<int>(State::kActive) || c->state.load() == static_cast<int>(State::kPending)) {
    Lock(BrokerMu());
    if (hsi::RunBroker* b = Broker(); b != nullptr && c->stream_id != 0) b->Close(c->stream_id, c->side);
    Unlock(BrokerMu());
  }
  // Not destroyed: the object may hold state another process of a fork
  // made (a BROKEN ring's status lives in that process's heap). Unmapping
  // is all the freeing there is; the memfds go with their last mapping.
  ForgetConn(c);
}

void ForgetConn(Conn* c) {
  // The mappings are this process's; the object is everyone's: leave it.
  c->own_ring.UnmapView();
  c->own_page.UnmapView();
  c->end.UnmapViews();
  ::munmap(c, sizeof(Conn));
}

Conn* Lookup(int fd) {
  if (fd < 0 || fd >= kTableSize) return nullptr;
  return g_table[fd].load(std::memory_order_acquire);
}

void Attach(int fd, Conn* c, bool adopt_ref) {
  if (fd < 0 || fd >= kTableSize) return;
  Guard g(&g_table_mu);
  if (!adopt_ref) c->refs.fetch_add(1, std::memory_order_relaxed);
  ++(*g_local)[c];
  g_local_count.store(g_local->size(), std::memory_order_relaxed);
  g_table[fd].store(c, std::memory_order_release);
}

bool Detach(int fd) {
  if (fd < 0 || fd >= kTableSize) return false;
  Conn* c = nullptr;
  bool last_here = false;
  {
    Guard g(&g_table_mu);
    c = g_table[fd].exchange(nullptr, std::memory_order_acq_rel);
    if (c == nullptr) return false;
    auto it = g_local->find(c);
    if (it != g_local->end() && --it->second <= 0) {
      g_local->erase(it);
      g_local_count.store(g_local->size(), std::memory_order_relaxed);
      last_here = true;
    }
  }
  const int left = c->refs.fetch_sub(1, std::memory_order_acq_rel) - 1;
  if (left <= 0) {
    DestroyConn(c);
  } else if (last_here) {
    ForgetConn(c);
  }
  return true;
}

namespace {
thread_local uint64_t t_waiter_base = 0, t_waiter_seq = 0;
}  // namespace

void NewWaiterBase() {
  uint64_t b = 0;
  if (::getrandom(&b, sizeof(b), 0) != sizeof(b)) {
    // No entropy: an id unique to this thread of this process (pids are
    // not reused while it lives) is enough; only a peer could forge it.
    b = (static_cast<uint64_t>(::getpid()) << 40) ^ (static_cast<uint64_t>(::gettid()) << 16) ^ NowMs();
  }
  t_waiter_base = b | 1;
  t_waiter_seq = 0;
}

uint64_t NextWaiterId() {
  if (t_waiter_base == 0) NewWaiterBase();
  const uint64_t id = t_waiter_base + (++t_waiter_seq << 1);  // odd: never 0
  return id;
}

bool InForeignChild() { return ::getpid() != g_pid.load(std::memory_order_relaxed); }

bool AnyConns() { return g_local_count.load(std::memory_order_relaxed) != 0; }

bool HeldElsewhere(Conn* c) {
  int here = 0;
  {
    Guard g(&g_table_mu);
    auto it = g_local->find(c);
    if (it != g_local->end()) here = it->second;
  }
  return c->refs.load(std::memory_order_acquire) > here;
}

bool IsListener(int fd) {
  Guard g(&g_table_mu);
  return g_listeners->contains(fd);
}

void AddListener(int fd, uint64_t id) {
  Guard g(&g_table_mu);
  (*g_listeners)[fd] = id;
}

void RemoveListener(int fd) {
  uint64_t id = 0;
  {
    Guard g(&g_table_mu);
    auto it = g_listeners->find(fd);
    if (it == g_listeners->end()) return;
    id = it->second;
    g_listeners->erase(it);
  }
  LibScope scope;
  Guard b(BrokerMu());
  if (hsi::RunBroker* br = Broker(); br != nullptr) br->Unlisten(id);
}

pthread_mutex_t* BrokerMu() { return &g_broker_mu; }

hsi::RunBroker* Broker() {
  if (g_broker != nullptr && g_broker->connected()) return g_broker;
  if (g_broker != nullptr) {  // hsid went away: reach the new one, if any
    delete g_broker;
    g_broker = nullptr;
    g_broker_retry_at = 0;
  }
  if (NowMs() < g_broker_retry_at) return nullptr;
  hsi::RunBrokerOptions o;
  o.socket_path = Opts().socket;
  absl::StatusOr<std::unique_ptr<hsi::RunBroker>> b = hsi::RunBroker::Connect(o);
  if (!b.ok()) {
    g_broker_retry_at = NowMs() + kBrokerRetryMs;
    if (!g_broker_logged) {
      Logf(1, "hsid not reachable, connections stay on TCP: %s", std::string(b.status().message()).c_str());
      g_broker_logged = true;
    }
    return nullptr;
  }
  g_broker = b->release();
  // A new hsid (a restart) knows none of this process's listeners: register
  // them again, so that new connections to them can pair.
  std::vector<std::pair<int, uint64_t>> listeners;
  {
    Guard g(&g_table_mu);
    listeners.assign(g_listeners->begin(), g_listeners->end());
  }
  for (auto [fd, id] : listeners) {
    if (absl::Status s = g_broker->Listen(id, fd); !s.ok()) {
      Logf(1, "fd %d: listener not registered again: %s", fd, std::string(s.message()).c_str());
    }
  }
  return g_broker;
}

void ReportFallback(uint32_t reason) {
  LibScope scope;
  Guard b(BrokerMu());
  if (hsi::RunBroker* br = Broker(); br != nullptr) br->Fallback(reason);
}

State EnsurePaired(Conn* c, int fd) {
  State st = static_cast<State>(c->state.load(std::memory_order_acquire));
  if (st != State::kPending) return st;
  Guard g(&c->setup_mu);
  st = static_cast<State>(c->state.load(std::memory_order_acquire));
  if (st != State::kPending) return st;
  LibScope scope;
  uint32_t reason = 0;
  if (c->forked_pending.load()) {
    // Shared by a fork before it could pair: hsid may pair it with the
    // acceptor already, so TCP is no option; reset it as TCP would fail.
    Logf(1, "fd %d: forked while connecting, connection reset", fd);
    c->state.store(static_cast<int>(State::kBroken), std::memory_order_release);
    R().shutdown(fd, SHUT_RDWR);
    return State::kBroken;
  }
  absl::StatusOr<hsi::RunPeer> peer = absl::UnavailableError("hsid is gone");
  // Look without holding hsid's connection across the wait (another thread
  // of this process may be the acceptor), backing off from 20 us to 2 ms;
  // the last ask lets hsid abandon the proposal, so both ends agree on TCP.
  const uint64_t deadline = NowMs() + Opts().pair_timeout_ms;
  useconds_t pause = 20;
  for (;;) {
    const bool last = NowMs() >= deadline;
    {
      Guard b(BrokerMu());
      hsi::RunBroker* br = Broker();
      if (br == nullptr) {
        reason = hsi::wire::kRunFallbackNoHsid;
        break;
      }
      peer = br->Await(c->stream_id, fd, 0, /*poll=*/!last, c->geometry, &reason);
    }
    if (peer.ok() || last || peer.status().code() != absl::StatusCode::kUnavailable) break;
    ::usleep(pause);
    pause = std::min<useconds_t>(pause * 2, 2000);
  }
  absl::Status s = peer.ok() ? c->end.Init(std::move(c->own_ring), std::move(peer->ring), std::move(c->own_page),
                                           std::move(peer->page), c->geometry)
                             : peer.status();
  if (!s.ok() && peer.ok()) {
    // hsid paired us, so the acceptor may be on its ring already: TCP is
    // no longer an option for this connection. Fail it as a reset would.
    Logf(1, "fd %d: paired but unusable, connection reset: %s", fd, std::string(s.message()).c_str());
    c->state.store(static_cast<int>(State::kBroken), std::memory_order_release);
    R().shutdown(fd, SHUT_RDWR);
    return State::kBroken;
  }
  if (!s.ok()) {
    // Nothing was sent in-band and hsid no longer pairs this proposal (or
    // never will): the connection is plain TCP from its first byte.
    Logf(1, "fd %d: connector stays on TCP (%s): %s", fd, hsi::wire::FallbackReasonName(reason),
         std::string(s.message()).c_str());
    c->state.store(static_cast<int>(State::kPlain), std::memory_order_release);
    return State::kPlain;
  }
  Logf(1, "fd %d: connector paired on rings (stream %llu)", fd, static_cast<unsigned long long>(c->stream_id));
  OnActive(fd);
  c->state.store(static_cast<int>(State::kActive), std::memory_order_release);
  return State::kActive;
}

}  // namespace hsirun
