// libhsi-run.so's data path: read/write and every sibling, sendfile,
// splice, FIONREAD. On a descriptor with no Conn, or inside the library,
// each goes straight to libc. Readiness: bells make the kernel socket
// readable (hsi/stream.h); readers ask for them just before they sleep
// (here for a blocking read, wait.cc for poll, select and epoll).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conn.h"

namespace hsirun {
namespace {

size_t Total(const iovec* iov, int n) {
  size_t t = 0;
  for (int i = 0; i < n; ++i) t += iov[i].iov_len;
  return t;
}

// `iov` less its first `skip` bytes, in `out`.
void Advance(const iovec* iov, int n, size_t skip, std::vector<iovec>* out) {
  out->clear();
  for (int i = 0; i < n; ++i) {
    if (skip >= iov[i].iov_len) {
      skip -= iov[i].iov_len;
      continue;
    }
    out->push_back({static_cast<char*>(iov[i].iov_base) + skip, iov[i].iov_len - skip});
    skip = 0;
  }
}

uint64_t NowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

short PollNow(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, 0) == 1 ? p.revents : 0;
}

// The peer may be gone (our socket has its FIN, or is dead): probe the way
// a TCP write does: one counted bell, with the caller's MSG_NOSIGNAL. The
// kernel answers EPIPE/ECONNRESET (and SIGPIPE) once the peer closed.
// Returns 0, or the errno a write must fail with.
int ProbePeer(Conn* c, int fd, bool nosignal) {
  const short rev = PollNow(fd, POLLRDHUP);
  if ((rev & (POLLRDHUP | POLLHUP | POLLERR)) == 0) return 0;
  if (c->end.SendBell(fd, nosignal ? MSG_NOSIGNAL : 0) < 0 && errno != EAGAIN) return errno;
  return 0;
}

// Whether FollowPeer must not ask hsid yet (under rx_mu): the peer's new
// image may take a while to load and re-attach, and a program that comes
// back at once (a non-blocking loop, a full ring) must not ask on every
// call meanwhile. But the bell the new image sends once it re-attached
// must lead to an ask, or a reader that it woke (edge-triggered) would
// sleep again with nothing left to wake it: the old image's bell count is
// final, so a socket that holds more bytes than the bells still owed from
// it holds that bell, and the pause does not apply.
bool Paced(Conn* c, int fd) {
  if (NowNs() >= c->follow_at_ns.load(std::memory_order_relaxed)) return false;
  int queued = 0;
  if (R().ioctl(fd, FIONREAD, &queued) < 0) return false;
  return static_cast<uint64_t>(queued) <= c->end.BellsUndrained();
}

}  // namespace

// FollowPeer's pause between asks at hsid while the peer execs.
constexpr uint32_t kFollowPauseMinUs = 20;
constexpr uint32_t kFollowPauseMaxUs = 2000;

Follow FollowPeer(Conn* c, int fd, bool tx_held, bool at_end) {
  if (!tx_held) Lock(&c->tx_mu);
  Lock(&c->rx_mu);
  LibScope scope;
  Follow f = Follow::kNotYet;
  if (!c->end.PeerMoving()) {
    f = Follow::kSwitched;  // another thread did (or the mark was withdrawn: a failed exec)
  } else if (!at_end && Paced(c, fd)) {
    // Not yet, without asking.
  } else if (HeldElsewhere(c)) {
    // The new segments would be mapped in this process only, while the
    // connection state is shared with a fork (docs/hsi-run.md, limits).
    Logf(0, "fd %d: the peer exec'd while a fork shares this connection: connection reset", fd);
    f = Follow::kBroken;
  } else {
    absl::StatusOr<hsi::RunPeer> p = absl::UnavailableError("hsid not reachable");
    {
      Guard b(BrokerMu());
      if (hsi::RunBroker* br = Broker(); br != nullptr) {
        p = br->Fetch(c->stream_id, c->side, c->end.peer_gen_fetched(), fd, c->geometry);
      }
    }
    if (p.ok()) {
      const uint64_t gen = p->gen;
      absl::Status s = c->end.SwitchPeer(std::move(p->ring), std::move(p->page), gen);
      if (s.ok()) {
        Logf(1, "fd %d: the peer exec'd: on its new segments (generation %llu)", fd, static_cast<unsigned long long>(gen));
        f = Follow::kSwitched;
        c->follow_pause_us.store(0, std::memory_order_relaxed);
        c->follow_at_ns.store(0, std::memory_order_relaxed);
      } else {
        Logf(0, "fd %d: the peer's segments after its exec are unusable, connection reset: %s", fd,
             std::string(s.message()).c_str());
        f = Follow::kBroken;
      }
    } else {
      // Not yet (its new image has not re-attached) or hsid is away: the
      // old ring stays as it is; asked again at the next empty read or
      // full write, once the pause has passed (20 us, doubling to 2 ms).
      const uint32_t pause =
          std::clamp<uint32_t>(c->follow_pause_us.load(std::memory_order_relaxed) * 2, kFollowPauseMinUs, kFollowPauseMaxUs);
      c->follow_pause_us.store(pause, std::memory_order_relaxed);
      c->follow_at_ns.store(NowNs() + uint64_t{pause} * 1000, std::memory_order_relaxed);
      Logf(2, "fd %d: the peer is exec'ing: %s", fd, std::string(p.status().message()).c_str());
    }
  }
  if (f == Follow::kBroken) {
    c->state.store(static_cast<int>(State::kBroken), std::memory_order_release);
    R().shutdown(fd, SHUT_RDWR);
  }
  Unlock(&c->rx_mu);
  if (!tx_held) Unlock(&c->tx_mu);
  return f;
}

ssize_t ConnRead(Conn* c, int fd, const iovec* iov0, int iovcnt0, int flags) {
  const bool peek = (flags & MSG_PEEK) != 0;
  const bool dontwait = (flags & MSG_DONTWAIT) != 0 || c->nonblock.load(std::memory_order_relaxed);
  const bool waitall = (flags & MSG_WAITALL) != 0 && !peek;
  const size_t total = Total(iov0, iovcnt0);
  if (total == 0) return 0;
  if ((flags & MSG_OOB) != 0) {
    errno = EINVAL;  // no urgent data on a ring (TCP says EINVAL when there is none)
    return -1;
  }
  Guard g(&c->rx_mu);
  LibScope scope;
  // kNotYet unless the peer exec'd (its page says moving; FollowPeer).
  auto follow = [&](bool at_end) {
    if (!c->end.PeerMoving()) return Follow::kNotYet;
    Unlock(&c->rx_mu);  // FollowPeer takes tx_mu first
    const Follow f = FollowPeer(c, fd, /*tx_held=*/false, at_end);
    Lock(&c->rx_mu);
    return f;
  };
  const iovec* iov = iov0;
  int iovcnt = iovcnt0;
  std::vector<iovec> rest;
  size_t done = 0;
  for (;;) {
    const ssize_t n = c->end.TryRead(iov, iovcnt, peek, fd);
    if (n < 0) {
      if (done > 0) return static_cast<ssize_t>(done);
      errno = ECONNRESET;
      return -1;
    }
    done += static_cast<size_t>(n);
    if (done == total || (done > 0 && !waitall)) {
      // Lazy arming (docs/hsi-run.md, section 4): a reader that empties its
      // ring does not ask for a bell; it arms just before it sleeps (a wait
      // in wait.cc, or the blocking path below), so data that comes while
      // the program is busy costs no bell. An eager connection (one whose
      // sleepers the library cannot all see) arms now, so that its socket
      // is readable whenever ring data waits.
      if (!peek && c->eager.load(std::memory_order_relaxed) && c->end.Readable() == 0) c->end.ArmData(fd);
      return static_cast<ssize_t>(done);
    }
    if (n > 0) {
      Advance(iov0, iovcnt0, done, &rest);
      iov = rest.data();
      iovcnt = static_cast<int>(rest.size());
      continue;
    }
    // Empty. The peer's image exec'd: continue on its new segments.
    Follow f = follow(false);
    if (f == Follow::kSwitched) continue;
    if (f == Follow::kBroken) {
      if (done > 0) return static_cast<ssize_t>(done);
      errno = ECONNRESET;
      return -1;
    }
    // Busy-poll first if asked (blocking reads only, as SO_BUSY_POLL).
    if (Opts().busy_poll_us > 0 && !dontwait) {
      const uint64_t until = NowNs() + uint64_t{Opts().busy_poll_us} * 1000;
      bool got = false;
      while (!(got = c->end.Readable() > 0) && NowNs() < until) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      }
      if (got) continue;
    }
    // A blocking reader is about to sleep: arm (and drain the bells that
    // announced what it read). A non-blocking one arms if eager; otherwise
    // the wait it sleeps in next arms (wait.cc).
    if (dontwait) {
      if (c->eager.load(std::memory_order_relaxed) && !c->end.ArmData(fd)) continue;  // data came
    } else {
      // A sleeper: waits arm with their own waiter id only while no one
      // else sleeps on the connection (wait.cc); this one asks for a bell
      // on every arm (waiter 0).
      c->sleepers.fetch_add(1, std::memory_order_relaxed);
      if (!c->end.ArmData(fd)) {
        c->sleepers.fetch_sub(1, std::memory_order_relaxed);
        continue;  // data came
      }
    }
    short rev = 0;
    if (dontwait) {
      // The socket's end is looked at only when a wait saw it readable
      // with nothing behind (wait.cc sets end_maybe), or every 64th empty
      // read: a non-blocking reader that finds the ring empty otherwise
      // costs no syscall (it sleeps next in a wait, which sees a FIN).
      if (c->end_maybe.exchange(false, std::memory_order_relaxed) ||
          (c->quiet_reads.fetch_add(1, std::memory_order_relaxed) & 63) == 63) {
        rev = PollNow(fd, POLLRDHUP);
      }
    } else {
      // Blocking: sleep on the socket until a bell (or the peer's FIN)
      // comes, without the receive lock (another thread may read, or arm
      // before its own wait).
      pollfd p{fd, POLLIN | POLLRDHUP, 0};
      Unlock(&c->rx_mu);
      const int r = ::poll(&p, 1, -1);
      Lock(&c->rx_mu);
      c->sleepers.fetch_sub(1, std::memory_order_relaxed);
      if (r < 0 && errno == EINTR) {
        if (done > 0) return static_cast<ssize_t>(done);
        errno = EINTR;
        return -1;
      }
      rev = r > 0 ? p.revents : 0;
    }
    if ((rev & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
      // The peer shut down or died: every frame it committed came before
      // its FIN. Read them, then the socket's own end (bells, then EOF or
      // the error) as TCP would report it. A FIN from the peer's new image
      // (after an exec) follows frames on its new ring: switch first.
      if (c->end.Readable() > 0 || follow(true) == Follow::kSwitched) continue;
      char buf[256];
      for (;;) {
        const ssize_t r = ::syscall(SYS_recvfrom, fd, buf, sizeof(buf), MSG_DONTWAIT, nullptr, nullptr);
        if (r > 0) continue;
        if (r == 0) return static_cast<ssize_t>(done);
        if (errno == EAGAIN) break;
        if (done > 0) return static_cast<ssize_t>(done);
        return -1;
      }
      if (c->end.Readable() > 0) continue;
    }
    if (dontwait) {
      if (done > 0) return static_cast<ssize_t>(done);
      errno = EAGAIN;
      return -1;
    }
  }
}

ssize_t ConnWrite(Conn* c, int fd, const iovec* iov0, int iovcnt0, int flags) {
  const bool nosignal = (flags & MSG_NOSIGNAL) != 0;
  const bool dontwait = (flags & MSG_DONTWAIT) != 0 || c->nonblock.load(std::memory_order_relaxed);
  if ((flags & MSG_OOB) != 0) {
    errno = EOPNOTSUPP;  // urgent data cannot be carried (docs/hsi-run.md, limits)
    return -1;
  }
  Guard g(&c->tx_mu);
  LibScope scope;
  if (c->shut_wr.load()) {
    // As TCP after shutdown(SHUT_WR): EPIPE, and SIGPIPE unless asked not to.
    const char b = 0;
    return ::syscall(SYS_sendto, fd, &b, 1, nosignal ? MSG_NOSIGNAL : 0, nullptr, 0);
  }
  if ((c->writes.fetch_add(1, std::memory_order_relaxed) & 255) == 0) {
    if (int e = ProbePeer(c, fd, nosignal); e != 0) {
      errno = e;
      return -1;
    }
  }
  const size_t total = Total(iov0, iovcnt0);
  const iovec* iov = iov0;
  int iovcnt = iovcnt0;
  std::vector<iovec> rest;
  size_t done = 0;
  while (done < total) {
    const ssize_t n = c->end.TryWrite(iov, iovcnt, fd);
    if (n < 0) {
      if (done > 0) return static_cast<ssize_t>(done);
      errno = ECONNRESET;
      return -1;
    }
    if (n > 0) {
      done += static_cast<size_t>(n);
      if (done < total) {
        Advance(iov0, iovcnt0, done, &rest);
        iov = rest.data();
        iovcnt = static_cast<int>(rest.size());
      }
      continue;
    }
    // Full.
    if (!c->end.ArmSpace(total - done)) continue;
    if (c->end.PeerMoving()) {
      // Its new image frees space in a segment this side does not have yet.
      const Follow f = FollowPeer(c, fd, /*tx_held=*/true);
      if (f == Follow::kSwitched) continue;
      if (f == Follow::kBroken) {
        if (done > 0) return static_cast<ssize_t>(done);
        errno = ECONNRESET;
        return -1;
      }
    }
    if (int e = ProbePeer(c, fd, nosignal); e != 0) {
      if (done > 0) return static_cast<ssize_t>(done);
      errno = e;
      return -1;
    }
    if (dontwait) {
      if (done > 0) return static_cast<ssize_t>(done);
      // The socket's POLLOUT stays true while the ring is full (docs/
      // hsi-run.md, limits): a program may come straight back. Give the
      // reader the CPU first.
      sched_yield();
      errno = EAGAIN;
      return -1;
    }
    c->end.WaitSpace(50);
  }
  return static_cast<ssize_t>(done);
}

// What a data call does with `fd`: nullptr = libc; else the Conn, ready.
// Sets *err (and returns nullptr) when the call must fail with it.
Conn* Route(int fd, int* err) {
  *err = 0;
  if (InLib()) return nullptr;
  Conn* c = Lookup(fd);
  if (c == nullptr) return nullptr;
  State st = static_cast<State>(c->state.load(std::memory_order_acquire));
  if (st == State::kPending) {
    // A connector before its first byte: it must be connected to pair.
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    while (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) {
      if (errno != ENOTCONN) return nullptr;
      int so = 0;
      socklen_t sl = sizeof(so);
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so != 0) {
        errno = so;  // the connect failed: let libc report it
        return nullptr;
      }
      if (c->nonblock.load()) {
        *err = EAGAIN;
        return nullptr;
      }
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
      len = sizeof(ss);
    }
    st = EnsurePaired(c, fd);
  }
  if (st == State::kActive) return c;
  if (st == State::kBroken) *err = ECONNRESET;
  return nullptr;
}

}  // namespace hsirun

using hsirun::Conn;
using hsirun::R;

#define HSI_ROUTE(fd)                       \
  int route_err = 0;                        \
  Conn* c = hsirun::Route((fd), &route_err); \
  if (route_err != 0) {                     \
    errno = route_err;                      \
    return -1;                              \
  }

extern "C" {

ssize_t read(int fd, void* buf, size_t n) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().read(fd, buf, n);
  iovec v{buf, n};
  return hsirun::ConnRead(c, fd, &v, 1, 0);
}

ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  if (n > buflen) __builtin_trap();
  return read(fd, buf, n);
}

ssize_t write(int fd, const void* buf, size_t n) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().write(fd, buf, n);
  iovec v{const_cast<void*>(buf), n};
  return hsirun::ConnWrite(c, fd, &v, 1, 0);
}

ssize_t readv(int fd, const iovec* iov, int n) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().readv(fd, iov, n);
  return hsirun::ConnRead(c, fd, iov, n, 0);
}

ssize_t writev(int fd, const iovec* iov, int n) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().writev(fd, iov, n);
  return hsirun::ConnWrite(c, fd, iov, n, 0);
}

ssize_t recv(int fd, void* buf, size_t n, int flags) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().recv(fd, buf, n, flags);
  iovec v{buf, n};
  return hsirun::ConnRead(c, fd, &v, 1, flags);
}

ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags) {
  if (n > buflen) __builtin_trap();
  return recv(fd, buf, n, flags);
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().send(fd, buf, n, flags);
  iovec v{const_cast<void*>(buf), n};
  return hsirun::ConnWrite(c, fd, &v, 1, flags);
}

ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().recvfrom(fd, buf, n, flags, from, fromlen);
  iovec v{buf, n};
  // A connected TCP socket reports no source address.
  if (fromlen != nullptr) *fromlen = 0;
  return hsirun::ConnRead(c, fd, &v, 1, flags);
}

ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags, sockaddr* from, socklen_t* fromlen) {
  if (n > buflen) __builtin_trap();
  return recvfrom(fd, buf, n, flags, from, fromlen);
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().sendto(fd, buf, n, flags, to, tolen);
  iovec v{const_cast<void*>(buf), n};
  return hsirun::ConnWrite(c, fd, &v, 1, flags);  // TCP ignores the address once connected
}

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().recvmsg(fd, msg, flags);
  msg->msg_namelen = 0;
  msg->msg_controllen = 0;
  msg->msg_flags = 0;
  return hsirun::ConnRead(c, fd, msg->msg_iov, static_cast<int>(msg->msg_iovlen), flags);
}

ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().sendmsg(fd, msg, flags);
  if (msg->msg_controllen != 0) {
    errno = EOPNOTSUPP;  // no ancillary data on TCP that a ring could carry
    return -1;
  }
  return hsirun::ConnWrite(c, fd, msg->msg_iov, static_cast<int>(msg->msg_iovlen), flags);
}

// recvmmsg/sendmmsg: one message at a time through the ring (TCP has no
// message boundaries; what matters is that no bell is read as data).
int recvmmsg(int fd, mmsghdr* v, unsigned n, int flags, timespec* timeout) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().recvmmsg(fd, v, n, flags, timeout);
  unsigned done = 0;
  for (; done < n; ++done) {
    const int f = done == 0 ? (flags & ~MSG_WAITFORONE) : (flags | MSG_DONTWAIT);
    v[done].msg_hdr.msg_namelen = 0;
    v[done].msg_hdr.msg_controllen = 0;
    v[done].msg_hdr.msg_flags = 0;
    const ssize_t r = hsirun::ConnRead(c, fd, v[done].msg_hdr.msg_iov, static_cast<int>(v[done].msg_hdr.msg_iovlen), f);
    if (r <= 0) {
      if (done > 0) break;
      return r == 0 ? 0 : -1;
    }
    v[done].msg_len = static_cast<unsigned>(r);
  }
  return static_cast<int>(done);
}

int sendmmsg(int fd, mmsghdr* v, unsigned n, int flags) {
  HSI_ROUTE(fd);
  if (c == nullptr) return R().sendmmsg(fd, v, n, flags);
  unsigned done = 0;
  for (; done < n; ++done) {
    const ssize_t r = hsirun::ConnWrite(c, fd, v[done].msg_hdr.msg_iov, static_cast<int>(v[done].msg_hdr.msg_iovlen), flags);
    if (r < 0) {
      if (done > 0) break;
      return -1;
    }
    v[done].msg_len = static_cast<unsigned>(r);
  }
  return static_cast<int>(done);
}

ssize_t sendfile(int out, int in, off_t* offset, size_t count) {
  HSI_ROUTE(out);
  if (c == nullptr) return R().sendfile(out, in, offset, count);
  // pread at an explicit position, then move the file's offset (or
  // *offset) by what the ring took, so that a partial send leaves the
  // file position exactly after the bytes sent, as sendfile does.
  off_t pos = offset != nullptr ? *offset : ::lseek(in, 0, SEEK_CUR);
  if (pos < 0) return -1;
  static thread_local char buf[64 * 1024];
  size_t done = 0;
  while (done < count) {
    const ssize_t r = ::pread(in, buf, std::min(sizeof(buf), count - done), pos);
    if (r < 0) {
      if (done > 0) break;
      return -1;
    }
    if (r == 0) break;
    iovec v{buf, static_cast<size_t>(r)};
    const ssize_t w = hsirun::ConnWrite(c, out, &v, 1, 0);
    if (w < 0) {
      if (done > 0) break;
      return -1;
    }
    done += static_cast<size_t>(w);
    pos += w;
    if (w < r) break;
  }
  if (offset != nullptr) {
    *offset = pos;
  } else {
    ::lseek(in, pos, SEEK_SET);
  }
  return static_cast<ssize_t>(done);
}

ssize_t sendfile64(int out, int in, off_t* offset, size_t count) { return sendfile(out, in, offset, count); }

ssize_t splice(int in, loff_t* off_in, int out, loff_t* off_out, size_t len, unsigned flags) {
  int e1 = 0, e2 = 0;
  Conn* cin = hsirun::Route(in, &e1);
  Conn* cout = hsirun::Route(out, &e2);
  if (e1 != 0 || e2 != 0) {
    errno = e1 != 0 ? e1 : e2;
    return -1;
  }
  if (cin == nullptr && cout == nullptr) return R().splice(in, off_in, out, off_out, len, flags);
  // One end is a ring: copy through a buffer. Bytes taken from one side
  // are always handed whole to the other (blocking for room if need be).
  static thread_local char buf[64 * 1024];
  const size_t want = std::min(sizeof(buf), len);
  ssize_t r;
  if (cin != nullptr) {
    iovec v{buf, want};
    r = hsirun::ConnRead(cin, in, &v, 1, (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0);
  } else {
    r = off_in != nullptr ? ::pread(in, buf, want, *off_in) : R().read(in, buf, want);
    if (r > 0 && off_in != nullptr) *off_in += r;
  }
  if (r <= 0) return r;
  size_t put = 0;
  while (put < static_cast<size_t>(r)) {
    ssize_t w;
    if (cout != nullptr) {
      iovec v{buf + put, static_cast<size_t>(r) - put};
      w = hsirun::ConnWrite(cout, out, &v, 1, 0);
      if (w < 0 && errno == EAGAIN) {
        cout->end.WaitSpace(50);
        continue;
      }
    } else {
      w = off_out != nullptr ? ::pwrite(out, buf + put, static_cast<size_t>(r) - put, *off_out)
                             : R().write(out, buf + put, static_cast<size_t>(r) - put);
      if (w > 0 && off_out != nullptr) *off_out += w;
    }
    if (w < 0) return put > 0 ? static_cast<ssize_t>(put) : -1;
    put += static_cast<size_t>(w);
  }
  return r;
}

}  // extern "C"
