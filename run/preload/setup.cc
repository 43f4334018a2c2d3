// libhsi-run.so's set-up path: listen registers with hsid, connect proposes
// (before the SYN), accept claims; close, dup, fcntl, ioctl, setsockopt,
// shutdown and the exec family keep the descriptor table true.
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bitset>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "conn.h"
#include "hsi/wire/messages.h"

namespace hsirun {
namespace {

namespace wire = hsi::wire;

std::mutex g_noaccel_mu;
std::unordered_set<int>* NoAccel() {
  static auto* s = new std::unordered_set<int>();
  return s;
}
bool IsNoAccel(int fd) {
  std::lock_guard<std::mutex> l(g_noaccel_mu);
  return NoAccel()->contains(fd);
}
void SetNoAccel(int fd, bool on) {
  std::lock_guard<std::mutex> l(g_noaccel_mu);
  if (on) {
    NoAccel()->insert(fd);
  } else {
    NoAccel()->erase(fd);
  }
}

std::atomic<uint64_t> g_next_listener{1};

bool IsInetTcp(int fd) {
  int v = 0;
  socklen_t l = sizeof(v);
  if (::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &l) < 0 || v != IPPROTO_TCP) return false;
  l = sizeof(v);
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) < 0) return false;
  return v == AF_INET || v == AF_INET6;
}

uint16_t PortOf(const sockaddr* a) {
  if (a->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(a)->sin_port);
  if (a->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(a)->sin6_port);
  return 0;
}

uint16_t LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t l = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &l) < 0) return 0;
  return PortOf(reinterpret_cast<sockaddr*>(&ss));
}

// Whether `a` is an address of this host in this namespace: loopback, or
// one a socket can be bound to.
bool IsLocal(const sockaddr* a, socklen_t len) {
  if (a->sa_family == AF_INET) {
    const uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr);
    if ((ip >> 24) == 127) return true;
  } else {
    const in6_addr& ip6 = reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&ip6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&ip6) && ip6.s6_addr[12] == 127) return true;
  }
  const int s = R().socket(a->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  sockaddr_storage ss{};
  std::memcpy(&ss, a, std::min<size_t>(len, sizeof(ss)));
  if (ss.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = 0;
  } else {
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = 0;
  }
  const bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&ss), len) == 0;
  R().close(s);
  return ok;
}

// The segment's descriptor is not kept: a program may close any number.
void DropFd(hsi::Segment& s) {
  hsi::UniqueFd fd = s.ReleaseFd();
  if (fd.valid()) R().close(fd.Release());
}

void Fallback(int fd, uint32_t reason, const char* what) {
  Logf(1, "fd %d: stays on TCP (%s)%s%s", fd, wire::FallbackReasonName(reason), what[0] ? ": " : "", what);
  ReportFallback(reason);
}

bool NonBlocking(int fd) { return (R().fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

// Before connect(): propose to hsid, so that the acceptor knows at its
// accept() (before any byte) that this connection is hsi-run's.
void Propose(int fd, const sockaddr* addr, socklen_t len) {
  if (!Opts().PortAllowed(PortOf(addr))) return Fallback(fd, wire::kRunFallbackFiltered, "port filter");
  if (IsNoAccel(fd)) return Fallback(fd, wire::kRunFallbackOption, "a socket option hsi-run cannot carry");
  if (!IsLocal(addr, len)) {
    Logf(2, "fd %d: destination is not local, TCP", fd);
    return;
  }
  if (LocalPort(fd) == 0) {  // bind now, so that hsid knows the 4-tuple before the SYN
    sockaddr_storage any{};
    any.ss_family = addr->sa_family;
    const socklen_t al = addr->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&any), al) < 0) {
      return Fallback(fd, wire::kRunFallbackInternal, std::strerror(errno));
    }
  }
  const hsi::RingGeometry g = Opts().geometry();
  absl::StatusOr<hsi::Segment> ring = hsi::CreateOwnRing(g);
  absl::StatusOr<hsi::Segment> page = hsi::CreateStreamPage();
  if (!ring.ok() || !page.ok()) {
    return Fallback(fd, wire::kRunFallbackInternal,
                    std::string((ring.ok() ? page.status() : ring.status()).message()).c_str());
  }
  uint32_t reason = 0;
  absl::StatusOr<uint64_t> sid = absl::UnavailableError("hsid not reachable");
  {
    Guard b(BrokerMu());
    hsi::RunBroker* br = Broker();
    if (br == nullptr) return;  // logged once by Broker()
    sid = br->Propose(fd, addr, len, *ring, *page, g, &reason);
  }
  if (!sid.ok()) {
    Logf(1, "fd %d: stays on TCP (%s): %s", fd, wire::FallbackReasonName(reason), std::string(sid.status().message()).c_str());
    return;  // counted by hsid
  }
  Conn* c = NewConn(0, *sid, g);
  if (c == nullptr) return Fallback(fd, wire::kRunFallbackInternal, "mmap");
  c->own_ring = std::move(*ring);
  c->own_page = std::move(*page);
  DropFd(c->own_ring);
  DropFd(c->own_page);
  c->nonblock.store(NonBlocking(fd));
  Attach(fd, c, /*adopt_ref=*/true);
  Logf(2, "fd %d: proposed stream %llu", fd, static_cast<unsigned long long>(*sid));
}

// Registers listening socket `fd` with hsid (this process).
void Register(int fd) {
  if (!Opts().PortAllowed(LocalPort(fd)) || IsNoAccel(fd)) return;
  const uint64_t id = g_next_listener.fetch_add(1);
  absl::Status s;
  {
    Guard b(BrokerMu());
    hsi::RunBroker* br = Broker();
    if (br == nullptr) return;
    s = br->Listen(id, fd);
  }
  if (!s.ok()) {
    Logf(1, "fd %d: listener not registered, its connections stay on TCP: %s", fd, std::string(s.message()).c_str());
    return;
  }
  AddListener(fd, id);
  Logf(2, "fd %d: listening under hsi-run (port %u)", fd, LocalPort(fd));
}

// After accept(): claim at hsid; a plain client is no error.
void Claim(int lfd, int fd) {
  if (!IsInetTcp(fd)) return;
  if (!IsListener(lfd)) {
    if (!Opts().PortAllowed(LocalPort(fd)) || IsNoAccel(lfd)) return;
    Register(lfd);  // an inherited listener: register it here
    if (!IsListener(lfd)) return;
  }
  const hsi::RingGeometry g = Opts().geometry();
  absl::StatusOr<hsi::Segment> ring = hsi::CreateOwnRing(g);
  absl::StatusOr<hsi::Segment> page = hsi::CreateStreamPage();
  if (!ring.ok() || !page.ok()) return Fallback(fd, wire::kRunFallbackInternal, "segment");
  uint32_t reason = 0;
  absl::StatusOr<hsi::RunPeer> peer = absl::UnavailableError("hsid not reachable");
  {
    Guard b(BrokerMu());
    hsi::RunBroker* br = Broker();
    if (br == nullptr) return;
    peer = br->Claim(fd, *ring, *page, g, &reason);
  }
  if (!peer.ok()) {
    Logf(reason == wire::kRunFallbackPlainPeer ? 2 : 1, "fd %d: accepted connection stays on TCP (%s): %s", fd,
         wire::FallbackReasonName(reason), std::string(peer.status().message()).c_str());
    return;
  }
  Conn* c = NewConn(1, peer->stream_id, g);
  if (c == nullptr) {
    R().shutdown(fd, SHUT_RDWR);  // paired at hsid: TCP is no longer an option
    return;
  }
  DropFd(*ring);
  DropFd(*page);
  absl::Status s = c->end.Init(std::move(*ring), std::move(peer->ring), std::move(*page), std::move(peer->page), g);
  if (!s.ok()) {
    Logf(1, "fd %d: paired but unusable, connection reset: %s", fd, std::string(s.message()).c_str());
    c->state.store(static_cast<int>(State::kBroken));
    R().shutdown(fd, SHUT_RDWR);
  } else {
    OnActive(fd);
    c->state.store(static_cast<int>(State::kActive));
    Logf(1, "fd %d: accepted connection on rings (stream %llu)", fd, static_cast<unsigned long long>(peer->stream_id));
  }
  c->nonblock.store(NonBlocking(fd));
  Attach(fd, c, /*adopt_ref=*/true);
}

// The last descriptor of an accelerated connection is being closed: read
// the peer's bells still in the socket (readers drain them only when they
// arm, so some may be left), since the kernel answers a close with unread
// bytes with a reset instead of a FIN, and the peer would read ECONNRESET
// after the last ring byte instead of EOF. Every byte on the socket is a
// bell. (A bell that arrives after this still resets: the peer was writing
// to a connection being closed, as a TCP peer would get a reset.)
void DrainBeforeLastClose(int fd) {
  Conn* c = Lookup(fd);
  if (c == nullptr || c->state.load() != static_cast<int>(State::kActive) ||
      c->refs.load(std::memory_order_acquire) != 1) {
    return;
  }
  char buf[512];
  while (::syscall(SYS_recvfrom, fd, buf, sizeof(buf), MSG_DONTWAIT, nullptr, nullptr) > 0) {
  }
}

// A descriptor number the kernel just handed out cannot have a Conn: one
// left means its close went around us (fclose, a raw syscall); forget it.
void Fresh(int fd) {
  if (fd >= 0 && Lookup(fd) != nullptr) Detach(fd);
  if (fd >= 0) SetNoAccel(fd, false);
}

// ---------------------------------------------------------------- exec
// docs/hsi-run.md section 5. The old image hands each accelerated
// connection to the new one through the environment (HSI_RUN_EXEC): ring
// positions and counters. The new image's constructor makes fresh segments
// seeded with them and re-attaches at hsid, which hands them to the peer;
// the peer switches when it runs out of ring data or room.

constexpr char kExecVar[] = "HSI_RUN_EXEC";
constexpr size_t kCarryNumbers = 19;  // the numbers before the fd list (ExecCarry::AppendEntry)

// Why the image that `file` names will not load this library with `envp`
// ("" when it will): then a carried connection would be read as TCP with
// bells in it, so it is not carried (the descriptor is closed in the new
// image instead).
std::string ImageReason(const char* file, bool search, char* const envp[], int depth = 0) {
  if (file == nullptr) return "no file";
  std::string path = file;
  if (search && std::strchr(file, '/') == nullptr) {
    const char* pv = std::getenv("PATH");
    const std::string dirs = pv != nullptr ? pv : "/bin:/usr/bin";
    path.clear();
    for (size_t i = 0; i <= dirs.size();) {
      size_t j = dirs.find(':', i);
      if (j == std::string::npos) j = dirs.size();
      std::string cand = (j > i ? dirs.substr(i, j - i) : ".") + "/" + file;
      if (::access(cand.c_str(), X_OK) == 0) {
        path = cand;
        break;
      }
      i = j + 1;
    }
    if (path.empty()) return std::string(file) + " is not found in PATH";
  }
  if (depth == 0) {
    Dl_info self{};
    if (::dladdr(reinterpret_cast<void*>(&ResumeAfterExec), &self) == 0 || self.dli_fname == nullptr) {
      return "cannot find libhsi-run.so's own path";
    }
    const char* self_base = std::strrchr(self.dli_fname, '/');
    self_base = self_base != nullptr ? self_base + 1 : self.dli_fname;
    bool preloaded = false, disabled = false;
    for (char* const* e = envp; e != nullptr && *e != nullptr; ++e) {
      if (std::strncmp(*e, "HSI_RUN_DISABLE=1", 18) == 0) disabled = true;
      if (std::strncmp(*e, "LD_PRELOAD=", 11) != 0) continue;
      std::string list = *e + 11;
      for (char& ch : list) ch = ch == ' ' ? ':' : ch;
      for (size_t i = 0; i < list.size();) {
        size_t j = list.find(':', i);
        if (j == std::string::npos) j = list.size();
        const std::string tok = list.substr(i, j - i);
        const size_t slash = tok.rfind('/');
        if (tok == self.dli_fname || (slash == std::string::npos ? tok : tok.substr(slash + 1)) == self_base) {
          preloaded = true;
        }
        i = j + 1;
      }
    }
    if (!preloaded) return "the new image's LD_PRELOAD does not name libhsi-run.so";
    if (disabled) return "HSI_RUN_DISABLE=1 in the new image's environment";
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path + ": " + std::strerror(errno);
  if ((st.st_mode & (S_ISUID | S_ISGID)) != 0) return path + " is set-id: the loader ignores LD_PRELOAD";
  const int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f < 0) return path + ": " + std::strerror(errno);
  char buf[4096];
  const ssize_t n = ::pread(f, buf, sizeof(buf), 0);
  if (n >= 2 && buf[0] == '#' && buf[1] == '!' && depth < 2) {
    ::close(f);
    std::string line(buf + 2, static_cast<size_t>(n) - 2);
    line = line.substr(0, line.find('\n'));
    const size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos) return path + ": an empty #! line";
    line = line.substr(b);
    line = line.substr(0, line.find_first_of(" \t"));
    return ImageReason(line.c_str(), false, envp, depth + 1);
  }
  std::string why;
  if (n < static_cast<ssize_t>(sizeof(Elf64_Ehdr)) || std::memcmp(buf, ELFMAG, SELFMAG) != 0) {
    why = path + " is neither an ELF program nor a #! script";
  } else if (buf[EI_CLASS] != ELFCLASS64) {
    why = path + " is not a 64-bit program: it cannot load libhsi-run.so";
  } else {
    Elf64_Ehdr eh;
    std::memcpy(&eh, buf, sizeof(eh));
    bool interp = false;
    for (int i = 0; i < eh.e_phnum && !interp; ++i) {
      Elf64_Phdr ph{};
      if (::pread(f, &ph, sizeof(ph), static_cast<off_t>(eh.e_phoff + uint64_t{eh.e_phentsize} * i)) != sizeof(ph)) break;
      interp = ph.p_type == PT_INTERP;
    }
    if (!interp) why = path + " is statically linked (no ELF interpreter): it does not load libhsi-run.so";
  }
  ::close(f);
  return why;
}

// Waits until `ready()` or the pair timeout, backing off 20 us -> 2 ms.
template <typename F>
bool WaitFor(F ready) {
  const uint64_t deadline = NowMs() + Opts().pair_timeout_ms;
  useconds_t pause = 20;
  while (!ready()) {
    if (NowMs() >= deadline) return false;
    ::usleep(pause);
    pause = std::min<useconds_t>(pause * 2, 2000);
  }
  return true;
}

// The state of `c` (held as `fd`) for a decision that cannot wait for its
// first data call: a connector connected but not paired yet pairs now (the
// peer may be on rings). kPending after it: still connecting.
State Settle(Conn* c, int fd) {
  const State st = static_cast<State>(c->state.load(std::memory_order_acquire));
  if (st != State::kPending) return st;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  return ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0 ? EnsurePaired(c, fd) : st;
}

// Whether a child that gets `fd` (of `c`) would hold a socket whose stream
// is, or may yet be, on rings: kActive, or kPending (pairing may still put
// it on rings). kPlain and kBroken sockets are the kernel's alone. Pairs a
// connected connector first unless `may_pair` is false (a vfork child: it
// must not talk to hsid from the parent's memory).
bool OnRings(Conn* c, int fd, bool may_pair) {
  const State st = may_pair ? Settle(c, fd) : static_cast<State>(c->state.load(std::memory_order_acquire));
  return st == State::kActive || st == State::kPending;
}

// Calls `f(fd, flags)` for each descriptor of this process that is on
// rings (OnRings) and not close-on-exec, in order; allocates nothing.
template <typename F>
void ForEachInheritedOnRings(bool may_pair, F f) {
  for (int fd = 0; fd < 65536; ++fd) {
    Conn* c = Lookup(fd);
    if (c == nullptr) continue;
    const int fl = R().fcntl(fd, F_GETFD);
    if (fl < 0 || (fl & FD_CLOEXEC) != 0 || !OnRings(c, fd, may_pair)) continue;
    f(fd, fl);
  }
}

// One exec: carries what it can, makes the rest close-on-exec; undone (the
// destructor) when the exec fails.
class ExecCarry {
 public:
  ExecCarry(const char* file, bool search, char* const envp[]) {
    std::vector<std::pair<Conn*, std::vector<int>>> conns;  // descriptors that cross the exec
    for (int fd = 0; fd < 65536; ++fd) {
      Conn* c = Lookup(fd);
      if (c == nullptr) continue;
      const int fl = R().fcntl(fd, F_GETFD);
      if (fl < 0 || (fl & FD_CLOEXEC) != 0) continue;
      auto it = std::find_if(conns.begin(), conns.end(), [c](const auto& e) { return e.first == c; });
      if (it == conns.end()) it = conns.insert(conns.end(), {c, {}});
      it->second.push_back(fd);
    }
    std::string reason_all;
    bool looked = false;
    for (auto& [c, fds] : conns) {
      const int fd = fds[0];
      const State st = Settle(c, fd);
      if (st == State::kPlain || st == State::kBroken) continue;  // plain TCP already (or reset)
      if (!looked) {
        reason_all = ImageReason(file, search, envp);
        looked = true;
      }
      std::string why = reason_all;
      if (why.empty() && st == State::kPending) why = "still connecting (not paired)";
      if (why.empty() && !WaitFor([c] { return !HeldElsewhere(c); })) why = "another process (a fork) still holds it";
      if (why.empty() && !WaitFor([c] {
            Guard g(&c->rx_mu);
            return c->end.PeerCaughtUp();
          })) {
        why = "the peer has not read since this connection's last exec";
      }
      if (why.empty()) {
        Lock(&c->tx_mu);
        Lock(&c->rx_mu);
        hsi::StreamCarry k;
        if (absl::Status s = c->end.Export(&k); !s.ok()) {
          why = std::string(s.message());
          Unlock(&c->rx_mu);
          Unlock(&c->tx_mu);
        } else {
          locked_.push_back(c);
          AppendEntry(c, k, fds);
          Logf(1, "fd %d: carried across exec (stream %llu)", fd, static_cast<unsigned long long>(c->stream_id));
        }
      }
      if (!why.empty()) {
        // Not carried: the new image must not see a socket whose stream is
        // on rings it cannot read; it is closed there (docs/hsi-run.md).
        for (int d : fds) {
          const int fl = R().fcntl(d, F_GETFD);
          R().fcntl(d, F_SETFD, fl | FD_CLOEXEC);
          cloexec_.emplace_back(d, fl);
        }
        Logf(0, "fd %d: accelerated connection closed in the new image at exec: %s", fd, why.c_str());
      }
    }
    for (char* const* e = envp; e != nullptr && *e != nullptr; ++e) {
      if (std::strncmp(*e, kExecVar, sizeof(kExecVar) - 1) != 0 || (*e)[sizeof(kExecVar) - 1] != '=') {
        envp_.push_back(*e);
      }
    }
    if (!carried_.empty()) {
      carried_ = std::string(kExecVar) + "=" + carried_;
      envp_.push_back(carried_.data());
    }
    envp_.push_back(nullptr);
  }
  ~ExecCarry() {  // only reached when the exec failed
    const int e = errno;
    for (Conn* c : locked_) {
      c->end.CancelExport();
      Unlock(&c->rx_mu);
      Unlock(&c->tx_mu);
    }
    for (auto [fd, fl] : cloexec_) R().fcntl(fd, F_SETFD, fl);
    errno = e;
  }
  char* const* envp() const { return envp_.data(); }

 private:
  void AppendEntry(Conn* c, const hsi::StreamCarry& k, const std::vector<int>& fds) {
    char buf[1024];
    int n = std::snprintf(buf, sizeof(buf), "%s%llu,%u,%llu,%u,%d", carried_.empty() ? "" : ";",
                          static_cast<unsigned long long>(c->stream_id), c->side,
                          static_cast<unsigned long long>(c->geometry.capacity), c->geometry.mtu,
                          c->shut_wr.load() ? 1 : 0);
    for (uint64_t v : {k.tail, k.head, k.rx_offset, k.bells_drained, k.bells_sent, k.data_arm, k.data_rung,
                       k.space_arm, k.space_rung, k.bytes_out, k.bytes_in, k.gen, k.peer_gen, uint64_t{fds.size()}}) {
      n += std::snprintf(buf + n, sizeof(buf) - n, ",%llu", static_cast<unsigned long long>(v));
    }
    for (int fd : fds) n += std::snprintf(buf + n, sizeof(buf) - n, ",%d", fd);
    carried_ += buf;
  }

  std::vector<Conn*> locked_;
  std::vector<std::pair<int, int>> cloexec_;
  std::string carried_;
  std::vector<char*> envp_;
};

// An exec in a child whose library state is the parent's (docs/hsi-run.md
// section 5): a vfork child shares the parent's memory (Conns, locks, the
// hsid connection) and _Fork or clone children ran no fork handler (their
// descriptors are not counted in Conn::refs). Nothing can be carried from
// there, and the parent keeps its copy: each descriptor on rings that is
// not close-on-exec is made close-on-exec in the child's own descriptor
// table (vfork does not share it), the reason logged; undone if the exec
// fails. Takes none of the library's locks and allocates nothing (a parent
// thread may hold them, or the allocator's); only the log line takes
// stderr's stdio lock, as any fprintf in a vfork child does.
class ForeignChildExec {
 public:
  ForeignChildExec() {
    ForEachInheritedOnRings(/*may_pair=*/false, [this](int fd, int fl) {
      R().fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
      set_[static_cast<size_t>(fd)] = true;
      Logf(0, "fd %d: accelerated connection closed in the new image at exec: exec from a vfork (or _Fork/clone) child, "
           "which shares the parent's state: the parent keeps its copy, so it cannot move", fd);
    });
  }
  ~ForeignChildExec() {  // only reached when the exec failed
    const int e = errno;
    for (size_t fd = 0; fd < set_.size(); ++fd) {
      if (set_[fd]) R().fcntl(static_cast<int>(fd), F_SETFD, R().fcntl(static_cast<int>(fd), F_GETFD) & ~FD_CLOEXEC);
    }
    errno = e;
  }

 private:
  std::bitset<65536> set_;
};

// Runs `exec(envp')` for an exec of `file` (PATH searched if `search`):
// through ExecCarry, or ForeignChildExec in a child whose library state is
// the parent's (InForeignChild).
template <typename F>
int Exec(const char* file, bool search, char* const envp[], F exec) {
  if (InLib() || !AnyConns()) return exec(envp);
  if (InForeignChild()) {
    ForeignChildExec guard;
    return exec(envp);
  }
  ExecCarry carry(file, search, envp);
  return exec(carry.envp());
}

// ---------------------------------------------------------------- spawn
// posix_spawn (and glibc's system() and popen(), which use it) execs the
// child with glibc's internal execve, past the exec interposers, and the
// parent keeps its copy, so a connection cannot move to the child: as the
// exec path does with what it cannot carry, the child must not get a live
// descriptor on rings (it would read bells as data; its writes would reach
// nobody). Each one that is not close-on-exec is made close-on-exec for the
// call (the child's exec closes it), the reason logged per descriptor, and
// its flags are restored when the call returns (system(): when the command
// has ended). Spawns of several threads at once count their marks, so the
// last one out restores (g_spawn_mu). docs/hsi-run.md section 5 says what
// other threads may see meanwhile.
std::mutex g_spawn_mu;
struct SpawnMark {
  int spawns = 0;         // spawns in flight that need it close-on-exec
  int flags = 0;          // F_GETFD before the first
  Conn* conn = nullptr;   // its connection then: a number closed and reused meanwhile is not touched
};
std::unordered_map<int, SpawnMark>* SpawnMarks() {
  static auto* m = new std::unordered_map<int, SpawnMark>();
  return m;
}

class SpawnCloexec {
 public:
  explicit SpawnCloexec(const char* how) {
    if (InLib() || !AnyConns()) return;
    LibScope scope;
    std::lock_guard<std::mutex> l(g_spawn_mu);
    auto note = [&](int fd) {
      fds_.push_back(fd);
      Logf(0, "fd %d: accelerated connection closed in the spawned child (%s): the parent keeps its copy, so it "
           "cannot move", fd, how);
    };
    for (auto& [fd, mark] : *SpawnMarks()) {  // close-on-exec now, for another thread's spawn
      ++mark.spawns;
      note(fd);
    }
    ForEachInheritedOnRings(/*may_pair=*/true, [&](int fd, int fl) {
      R().fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
      (*SpawnMarks())[fd] = SpawnMark{1, fl, Lookup(fd)};
      note(fd);
    });
  }
  ~SpawnCloexec() {
    if (fds_.empty()) return;
    const int e = errno;
    std::lock_guard<std::mutex> l(g_spawn_mu);
    for (int fd : fds_) {
      auto it = SpawnMarks()->find(fd);
      if (it == SpawnMarks()->end() || --it->second.spawns > 0) continue;
      if (Lookup(fd) == it->second.conn) R().fcntl(fd, F_SETFD, it->second.flags);
      SpawnMarks()->erase(it);
    }
    errno = e;
  }

 private:
  std::vector<int> fds_;
};

// One HSI_RUN_EXEC entry: kCarryNumbers numbers, then the descriptors.
struct CarriedConn {
  uint64_t stream_id = 0;
  uint32_t side = 0;
  hsi::RingGeometry geometry;
  bool shut_wr = false;
  hsi::StreamCarry k;
  std::vector<int> fds;
};

absl::StatusOr<CarriedConn> ParseEntry(const std::string& e) {
  std::vector<uint64_t> v;
  for (size_t i = 0; i < e.size();) {
    size_t j = e.find(',', i);
    if (j == std::string::npos) j = e.size();
    const std::string tok = e.substr(i, j - i);
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = std::strtoull(tok.c_str(), &end, 10);
    if (tok.empty() || end == nullptr || *end != '\0' || errno != 0) {
      return absl::InvalidArgumentError(absl::StrCat("\"", tok, "\" is not a number"));
    }
    v.push_back(x);
    i = j + 1;
  }
  if (v.size() < kCarryNumbers || v[kCarryNumbers - 1] == 0 || v.size() != kCarryNumbers + v[kCarryNumbers - 1]) {
    return absl::InvalidArgumentError(absl::StrCat(v.size(), " numbers do not match the format"));
  }
  CarriedConn c;
  c.stream_id = v[0];
  c.side = static_cast<uint32_t>(v[1]);
  c.geometry.capacity = v[2];
  c.geometry.mtu = static_cast<uint32_t>(v[3]);
  c.shut_wr = v[4] != 0;
  hsi::StreamCarry& k = c.k;
  uint64_t* fields[] = {&k.tail, &k.head, &k.rx_offset, &k.bells_drained, &k.bells_sent, &k.data_arm, &k.data_rung,
                        &k.space_arm, &k.space_rung, &k.bytes_out, &k.bytes_in, &k.gen, &k.peer_gen};
  static_assert(5 + std::size(fields) + 1 == kCarryNumbers);
  for (size_t i = 0; i < std::size(fields); ++i) *fields[i] = v[5 + i];
  for (size_t i = kCarryNumbers; i < v.size(); ++i) {
    if (v[i] >= 65536) return absl::InvalidArgumentError(absl::StrCat("descriptor ", v[i], " is out of range"));
    c.fds.push_back(static_cast<int>(v[i]));
  }
  if (c.side > 1) return absl::InvalidArgumentError("side is not 0 or 1");
  if (absl::Status s = c.geometry.Validate(); !s.ok()) return s;
  return c;
}

// Rebuilds one carried connection; on failure it is reset (as TCP fails):
// the peer may be on rings already, so TCP is no option.
void Resume(const CarriedConn& cc) {
  const int fd = cc.fds[0];
  for (int d : cc.fds) {
    if (!IsInetTcp(d)) {
      Logf(0, "%s: descriptor %d is not a TCP socket; entry ignored", kExecVar, d);
      return;
    }
  }
  Conn* c = NewConn(cc.side, cc.stream_id, cc.geometry);
  if (c == nullptr) {
    Logf(0, "fd %d: connection reset after exec: mmap", fd);
    R().shutdown(fd, SHUT_RDWR);
    return;
  }
  absl::Status s;
  uint64_t gen = 0;
  absl::StatusOr<hsi::Segment> ring = hsi::CreateOwnRing(cc.geometry);
  absl::StatusOr<hsi::Segment> page = hsi::CreateStreamPage();
  if (!ring.ok() || !page.ok()) s = ring.ok() ? page.status() : ring.status();
  if (s.ok()) s = hsi::StreamEnd::Seed(*ring, *page, cc.k);
  absl::StatusOr<hsi::RunPeer> peer = absl::UnavailableError("hsid not reachable");
  if (s.ok()) {
    Guard b(BrokerMu());
    if (hsi::RunBroker* br = Broker(); br != nullptr) {
      peer = br->Reattach(cc.stream_id, cc.side, cc.k.peer_gen, fd, *ring, *page, cc.geometry);
    }
    if (!peer.ok()) s = peer.status();
  }
  if (s.ok()) {
    gen = peer->gen;
    DropFd(*ring);
    DropFd(*page);
    s = c->end.Resume(std::move(*ring), std::move(peer->ring), std::move(*page), std::move(peer->page), cc.geometry, cc.k,
                      gen);
  }
  c->shut_wr.store(cc.shut_wr);
  c->nonblock.store(NonBlocking(fd));
  if (!s.ok()) {
    Logf(0, "fd %d: connection reset after exec: %s", fd, std::string(s.message()).c_str());
    c->state.store(static_cast<int>(State::kBroken));
    R().shutdown(fd, SHUT_RDWR);
  } else {
    c->state.store(static_cast<int>(State::kActive));
  }
  Attach(fd, c, /*adopt_ref=*/true);
  for (size_t i = 1; i < cc.fds.size(); ++i) Attach(cc.fds[i], c, false);
  if (s.ok()) {
    // The peer may sleep armed on the old page: wake it, so that it looks
    // at hsid for these segments (its old page says moving).
    c->end.SendBell(fd, MSG_NOSIGNAL);
    Logf(1, "fd %d: carried across exec (stream %llu, generation %llu)", fd,
         static_cast<unsigned long long>(cc.stream_id), static_cast<unsigned long long>(gen));
  }
}

}  // namespace

void ResumeAfterExec() {
  const char* v = std::getenv(kExecVar);
  if (v == nullptr) return;
  const std::string all = v;
  ::unsetenv(kExecVar);  // the program's own children get their own
  LibScope scope;
  for (size_t i = 0; i < all.size();) {
    size_t j = all.find(';', i);
    if (j == std::string::npos) j = all.size();
    absl::StatusOr<CarriedConn> cc = ParseEntry(all.substr(i, j - i));
    if (!cc.ok()) {
      Logf(0, "%s: entry at %zu: %s; ignored", kExecVar, i, std::string(cc.status().message()).c_str());
    } else {
      Resume(*cc);
    }
    i = j + 1;
  }
}

}  // namespace hsirun

using namespace hsirun;  // NOLINT: the interposers below are libc's names

extern "C" {

int socket(int domain, int type, int protocol) {
  const int fd = R().socket(domain, type, protocol);
  if (!InLib()) Fresh(fd);
  return fd;
}

int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (InLib() || Opts().disabled || addr == nullptr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
      Lookup(fd) != nullptr || !IsInetTcp(fd)) {
    return R().connect(fd, addr, len);
  }
  {
    LibScope scope;
    Propose(fd, addr, len);
  }
  const int rc = R().connect(fd, addr, len);
  if (rc < 0 && errno != EINPROGRESS && errno != EINTR && Lookup(fd) != nullptr) {
    const int e = errno;
    Detach(fd);  // tells hsid: the proposal goes
    errno = e;
  }
  return rc;
}

int listen(int fd, int backlog) {
  const int rc = R().listen(fd, backlog);
  if (rc == 0 && !InLib() && !Opts().disabled && !IsListener(fd) && IsInetTcp(fd)) {
    LibScope scope;
    Register(fd);
  }
  return rc;
}

int accept4(int lfd, sockaddr* addr, socklen_t* len, int flags) {
  const int fd = R().accept4(lfd, addr, len, flags);
  if (fd >= 0 && !InLib()) {
    Fresh(fd);
    if (!Opts().disabled) {
      LibScope scope;
      Claim(lfd, fd);
    }
  }
  return fd;
}

int accept(int lfd, sockaddr* addr, socklen_t* len) { return accept4(lfd, addr, len, 0); }

int close(int fd) {
  if (!InLib()) {
    DrainBeforeLastClose(fd);
    ForgetWaitFd(fd);  // before Detach: it marks the Conn eager if a dup keeps it in a set
    Detach(fd);
    RemoveListener(fd);
    SetNoAccel(fd, false);
  }
  return R().close(fd);
}

int close_range(unsigned first, unsigned last, int flags) {
  if (!InLib() && (flags & CLOSE_RANGE_CLOEXEC) == 0) {
    for (unsigned fd = first; fd <= last && fd < 65536; ++fd) {
      DrainBeforeLastClose(static_cast<int>(fd));
      ForgetWaitFd(static_cast<int>(fd));
      Detach(static_cast<int>(fd));
      RemoveListener(static_cast<int>(fd));
    }
  }
  return R().close_range(first, last, flags);
}

int shutdown(int fd, int how) {
  Conn* c = InLib() ? nullptr : Lookup(fd);
  if (c != nullptr && (how == SHUT_WR || how == SHUT_RDWR)) {
    // Every byte written is in the ring already; the FIN goes after the
    // bells (one TCP stream), so the peer reads them all before EOF.
    Guard g(&c->tx_mu);
    c->shut_wr.store(true);
    return R().shutdown(fd, how);
  }
  return R().shutdown(fd, how);
}

int dup(int fd) {
  const int nfd = R().dup(fd);
  if (nfd >= 0 && !InLib()) {
    Fresh(nfd);
    if (Conn* c = Lookup(fd)) Attach(nfd, c, false);
  }
  return nfd;
}

int dup3(int oldfd, int newfd, int flags) {
  if (!InLib() && oldfd != newfd) {
    DrainBeforeLastClose(newfd);
    ForgetWaitFd(newfd);
    Detach(newfd);
    RemoveListener(newfd);
  }
  const int rc = flags == -1 ? R().dup2(oldfd, newfd) : R().dup3(oldfd, newfd, flags);
  if (rc >= 0 && !InLib() && oldfd != newfd) {
    if (Conn* c = Lookup(oldfd)) Attach(rc, c, false);
  }
  return rc;
}

int dup2(int oldfd, int newfd) { return dup3(oldfd, newfd, -1); }

static int FcntlImpl(int fd, int cmd, void* arg) {
  const long iarg = reinterpret_cast<long>(arg);
  switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
      const int nfd = R().fcntl(fd, cmd, static_cast<int>(iarg));
      if (nfd >= 0 && !InLib()) {
        Fresh(nfd);
        if (Conn* c = Lookup(fd)) Attach(nfd, c, false);
      }
      return nfd;
    }
    case F_SETFL: {
      const int rc = R().fcntl(fd, cmd, static_cast<int>(iarg));
      if (rc == 0) {
        if (Conn* c = Lookup(fd)) {
          c->nonblock.store((iarg & O_NONBLOCK) != 0);
          // Signal-driven I/O: it sleeps where the library cannot see.
          if ((iarg & O_ASYNC) != 0) c->eager.store(true, std::memory_order_relaxed);
        }
      }
      return rc;
    }
    case F_GETFD:
    case F_GETFL:
    case F_GETOWN:
    case F_GETSIG:
    case F_GETLEASE:
    case F_GETPIPE_SZ:
    case F_GET_SEALS:
      return R().fcntl(fd, cmd);
    default:
      return R().fcntl(fd, cmd, arg);
  }
}

int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return FcntlImpl(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return FcntlImpl(fd, cmd, arg);
}

int ioctl(int fd, unsigned long req, ...) {
  va_list ap;
  va_start(ap, req);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  Conn* c = InLib() ? nullptr : Lookup(fd);
  if (c != nullptr && c->state.load() == static_cast<int>(State::kActive)) {
    if (req == FIONREAD) {
      Guard g(&c->rx_mu);
      *static_cast<int*>(arg) = static_cast<int>(std::min<size_t>(c->end.Readable(), 1u << 30));
      return 0;
    }
    if (req == FIONBIO) c->nonblock.store(*static_cast<int*>(arg) != 0);
  }
  return R().ioctl(fd, req, arg);
}

int setsockopt(int fd, int level, int name, const void* val, socklen_t len) {
  if (!InLib() && level == IPPROTO_TCP &&
      (name == TCP_FASTOPEN || name == TCP_FASTOPEN_CONNECT || name == TCP_ULP || name == TCP_REPAIR)) {
    // Options a ring cannot carry: a socket that has one stays on TCP (a
    // connection on rings already keeps going on them; docs/hsi-run.md).
    SetNoAccel(fd, true);
  }
  return R().setsockopt(fd, level, name, val, len);
}

int execve(const char* path, char* const argv[], char* const envp[]) {
  return Exec(path, /*search=*/false, envp, [&](char* const* e) { return R().execve(path, argv, e); });
}

int execvpe(const char* file, char* const argv[], char* const envp[]) {
  return Exec(file, /*search=*/true, envp, [&](char* const* e) { return R().execvpe(file, argv, e); });
}

// glibc's fexecve calls execveat (or its internal execve): the image is the
// open file, named for ExecCarry's checks by its /proc/self/fd link.
int fexecve(int fd, char* const argv[], char* const envp[]) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  return Exec(path, /*search=*/false, envp, [&](char* const* e) { return R().fexecve(fd, argv, e); });
}

// execveat(2) (a libc function since glibc 2.34): an exec like execve. The
// image is named for ExecCarry's checks as the kernel finds it: `path`
// itself if absolute or relative to the working directory, the file's
// /proc/self/fd link for AT_EMPTY_PATH with an empty path (fexecve's form),
// else `path` under the directory's link. No allocation (a vfork child may
// call it). A null or over-long path goes to the kernel unchanged, which
// answers it (EFAULT, ENAMETOOLONG).
int execveat(int dirfd, const char* path, char* const argv[], char* const envp[], int flags) {
  char image[PATH_MAX + 32];
  int n = -1;
  if (path != nullptr && path[0] == '\0' && (flags & AT_EMPTY_PATH) != 0) {
    n = std::snprintf(image, sizeof(image), "/proc/self/fd/%d", dirfd);
  } else if (path != nullptr && (path[0] == '/' || dirfd == AT_FDCWD)) {
    n = std::snprintf(image, sizeof(image), "%s", path);
  } else if (path != nullptr) {
    n = std::snprintf(image, sizeof(image), "/proc/self/fd/%d/%s", dirfd, path);
  }
  auto exec = [&](char* const* e) { return R().execveat(dirfd, path, argv, e, flags); };
  if (n < 0 || static_cast<size_t>(n) >= sizeof(image)) return exec(envp);
  return Exec(image, /*search=*/false, envp, exec);
}

int posix_spawn(pid_t* pid, const char* path, const posix_spawn_file_actions_t* fa, const posix_spawnattr_t* attr,
                char* const argv[], char* const envp[]) {
  SpawnCloexec guard("posix_spawn");
  return R().posix_spawn(pid, path, fa, attr, argv, envp);
}

int posix_spawnp(pid_t* pid, const char* file, const posix_spawn_file_actions_t* fa, const posix_spawnattr_t* attr,
                 char* const argv[], char* const envp[]) {
  SpawnCloexec guard("posix_spawnp");
  return R().posix_spawnp(pid, file, fa, attr, argv, envp);
}

// A file action that would dup2 a descriptor on rings into the child (dup2
// clears close-on-exec, so SpawnCloexec cannot keep it out) closes `newfd`
// in the child instead: the exec path's "closed in the new image". Decided
// when the action is added (the program adds it just before the spawn).
int posix_spawn_file_actions_adddup2(posix_spawn_file_actions_t* fa, int fd, int newfd) {
  Conn* c = InLib() || fd < 0 ? nullptr : Lookup(fd);
  if (c != nullptr && OnRings(c, fd, /*may_pair=*/true)) {
    Logf(0, "fd %d: accelerated connection closed as fd %d in the spawned child (posix_spawn file action dup2): the "
         "parent keeps its copy, so it cannot move", fd, newfd);
    return R().posix_spawn_file_actions_addclose(fa, newfd);
  }
  return R().posix_spawn_file_actions_adddup2(fa, fd, newfd);
}

int system(const char* command) {
  SpawnCloexec guard("system");
  return R().system(command);
}

FILE* popen(const char* command, const char* type) {
  SpawnCloexec guard("popen");
  return R().popen(command, type);
}

int execv(const char* path, char* const argv[]) { return execve(path, argv, environ); }
int execvp(const char* file, char* const argv[]) { return execvpe(file, argv, environ); }

// The list forms: glibc's call its internal execve, past the interposers
// above, so they are taken here too. execle's environment follows the
// terminating null pointer.
static int ExecList(const char* file, bool search, bool with_env, const char* arg0, va_list ap) {
  std::vector<char*> argv{const_cast<char*>(arg0)};
  while (argv.back() != nullptr) argv.push_back(va_arg(ap, char*));
  char** envp = with_env ? va_arg(ap, char**) : environ;
  return search ? execvpe(file, argv.data(), envp) : execve(file, argv.data(), envp);
}

#define HSI_EXEC_LIST(name, search, with_env)                      \
  int name(const char* file, const char* arg, ...) {                \
    va_list ap;                                                     \
    va_start(ap, arg);                                              \
    const int rc = ExecList(file, search, with_env, arg, ap);       \
    va_end(ap);                                                     \
    return rc;                                                      \
  }
HSI_EXEC_LIST(execl, false, false)
HSI_EXEC_LIST(execle, false, true)
HSI_EXEC_LIST(execlp, true, false)
#undef HSI_EXEC_LIST

}  // extern "C"
