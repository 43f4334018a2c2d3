// libhsi-run.so's set-up path: listen registers with hsid, connect proposes
// (before the SYN), accept claims; close, dup, fcntl, ioctl, setsockopt,
// shutdown and the exec family keep the descriptor table true.
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <utility>
#include <vector>

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

// The exec family: a ring's state cannot cross exec yet (docs/hsi-run.md),
// so an accelerated descriptor does not either: it is made close-on-exec
// (restored if the exec fails).
struct ExecGuard {
  std::vector<std::pair<int, int>> changed;
  ExecGuard() {
    for (int fd = 0; fd < 65536; ++fd) {
      if (Lookup(fd) == nullptr) continue;
      const int fl = R().fcntl(fd, F_GETFD);
      if (fl >= 0 && (fl & FD_CLOEXEC) == 0) {
        R().fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        changed.emplace_back(fd, fl);
        Logf(1, "fd %d: accelerated, closed in the new image at exec", fd);
      }
    }
  }
  ~ExecGuard() {  // only reached when the exec failed
    for (auto [fd, fl] : changed) R().fcntl(fd, F_SETFD, fl);
  }
};

}  // namespace
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
  ExecGuard g;
  return R().execve(path, argv, envp);
}

int execvpe(const char* file, char* const argv[], char* const envp[]) {
  ExecGuard g;
  return R().execvpe(file, argv, envp);
}

int execv(const char* path, char* const argv[]) { return execve(path, argv, environ); }
int execvp(const char* file, char* const argv[]) { return execvpe(file, argv, environ); }

}  // extern "C"
