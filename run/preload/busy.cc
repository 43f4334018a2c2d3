// libhsi-run.so's busy polling (HSI_RUN_BUSY_POLL_US > 0), as SO_BUSY_POLL
// and Onload's spinning: a program waiting for data spins on its rings for
// the budget before it sleeps, and no bell is sent while it spins.
//
// Without busy polling a reader arms (asks for a bell) whenever it empties a
// ring, so the kernel socket is readable whenever data waits and poll,
// select and epoll need no help. With it, a reader arms only just before it
// would sleep, so the waits a program sleeps in are interposed here: epoll
// (epoll_wait, epoll_pwait: the registered descriptors are tracked by
// epoll_ctl), poll, ppoll, select and pselect each spin on the rings of the
// accelerated descriptors they wait on (reporting readable ones as the
// kernel would), then arm those rings and sleep in the kernel. A program
// that sleeps any other way (io_uring, signalfd) must not use busy polling
// (docs/hsi-run.md, limits). Every interposer here is pass-through when
// busy polling is off.
//
// Thread safety: the epoll registry has its own mutex; ring access takes the
// Conn's receive lock (try-lock while spinning: a reader thread owns it).
#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

#include <map>
#include <mutex>

#include "conn.h"

namespace hsirun {
namespace {

std::mutex g_ep_mu;
std::map<int, std::map<int, epoll_event>>* Registry() {
  static auto* r = new std::map<int, std::map<int, epoll_event>>();
  return r;
}

uint64_t NowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

bool Spinning() { return Opts().busy_poll_us > 0 && !InLib(); }

Conn* ActiveConn(int fd) {
  Conn* c = Lookup(fd);
  return c != nullptr && c->state.load(std::memory_order_acquire) == static_cast<int>(State::kActive) ? c : nullptr;
}

// Whether ring data waits on `c` (without waiting for its lock).
bool HasData(Conn* c) {
  if (pthread_mutex_trylock(&c->rx_mu) != 0) return false;
  const bool r = c->end.Readable() > 0;
  Unlock(&c->rx_mu);
  return r;
}

// Arms `c` before a sleep; true if data came meanwhile (do not sleep).
bool ArmBeforeSleep(Conn* c, int fd) {
  Guard g(&c->rx_mu);
  LibScope scope;
  return !c->end.ArmData(fd);
}

void Pause() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

// The descriptors of epoll set `epfd` that wait for input, with their data.
std::vector<std::pair<int, epoll_event>> Readers(int epfd) {
  std::vector<std::pair<int, epoll_event>> out;
  std::lock_guard<std::mutex> l(g_ep_mu);
  auto it = Registry()->find(epfd);
  if (it == Registry()->end()) return out;
  for (const auto& [fd, ev] : it->second) {
    // EPOLLONESHOT: reporting from here would not disarm the kernel's
    // registration, so those are left to the kernel.
    if ((ev.events & EPOLLIN) != 0 && (ev.events & EPOLLONESHOT) == 0) out.emplace_back(fd, ev);
  }
  return out;
}

using EpollFn = int (*)(int, epoll_event*, int, int, const sigset_t*);

int EpollWait(int epfd, epoll_event* events, int max, int timeout, const sigset_t* mask, EpollFn real) {
  if (!Spinning() || max <= 0) return real(epfd, events, max, timeout, mask);
  const auto readers = Readers(epfd);
  auto ring_events = [&]() {
    int n = 0;
    for (const auto& [fd, ev] : readers) {
      Conn* c = ActiveConn(fd);
      if (c != nullptr && n < max && HasData(c)) events[n++] = epoll_event{EPOLLIN, ev.data};
    }
    return n;
  };
  const uint64_t until = NowNs() + uint64_t{Opts().busy_poll_us} * 1000;
  for (;;) {
    const int n = real(epfd, events, max, 0, mask);
    if (n != 0) return n;
    if (const int r = ring_events(); r > 0) return r;
    if (timeout == 0 || NowNs() >= until) break;
    Pause();
  }
  if (timeout == 0) return 0;
  int n = 0;
  for (const auto& [fd, ev] : readers) {
    Conn* c = ActiveConn(fd);
    if (c != nullptr && ArmBeforeSleep(c, fd) && n < max) events[n++] = epoll_event{EPOLLIN, ev.data};
  }
  if (n > 0) return n;
  return real(epfd, events, max, timeout, mask);
}

int RealEpollWait(int epfd, epoll_event* ev, int max, int timeout, const sigset_t*) {
  return R().epoll_wait(epfd, ev, max, timeout);
}
int RealEpollPwait(int epfd, epoll_event* ev, int max, int timeout, const sigset_t* mask) {
  return R().epoll_pwait(epfd, ev, max, timeout, mask);
}

// poll and ppoll: spin, then arm and sleep. Returns -2 to mean "call the
// kernel with the caller's timeout".
int PollSpin(pollfd* fds, nfds_t n, bool may_wait) {
  auto ring_ready = [&]() {
    int ready = 0;
    for (nfds_t i = 0; i < n; ++i) {
      Conn* c = (fds[i].events & POLLIN) != 0 ? ActiveConn(fds[i].fd) : nullptr;
      if (c != nullptr && HasData(c)) {
        fds[i].revents = POLLIN;
        ++ready;
      } else {
        fds[i].revents = 0;
      }
    }
    return ready;
  };
  const uint64_t until = NowNs() + uint64_t{Opts().busy_poll_us} * 1000;
  for (;;) {
    const int k = R().poll(fds, n, 0);
    if (k != 0) return k;
    if (const int r = ring_ready(); r > 0) return r;
    if (!may_wait || NowNs() >= until) break;
    Pause();
  }
  if (!may_wait) return 0;
  for (nfds_t i = 0; i < n; ++i) {
    Conn* c = (fds[i].events & POLLIN) != 0 ? ActiveConn(fds[i].fd) : nullptr;
    if (c != nullptr && ArmBeforeSleep(c, fds[i].fd)) return ring_ready();
  }
  return -2;
}

}  // namespace
}  // namespace hsirun

using namespace hsirun;  // NOLINT: libc's names below

extern "C" {

int epoll_ctl(int epfd, int op, int fd, epoll_event* ev) {
  const int rc = R().epoll_ctl(epfd, op, fd, ev);
  if (rc == 0 && Opts().busy_poll_us > 0) {
    std::lock_guard<std::mutex> l(g_ep_mu);
    auto& set = (*Registry())[epfd];
    if (op == EPOLL_CTL_DEL) {
      set.erase(fd);
    } else if (ev != nullptr) {
      set[fd] = *ev;
    }
  }
  return rc;
}

int epoll_wait(int epfd, epoll_event* events, int max, int timeout) {
  return EpollWait(epfd, events, max, timeout, nullptr, RealEpollWait);
}

int epoll_pwait(int epfd, epoll_event* events, int max, int timeout, const sigset_t* mask) {
  return EpollWait(epfd, events, max, timeout, mask, RealEpollPwait);
}

int poll(pollfd* fds, nfds_t n, int timeout) {
  if (!Spinning()) return R().poll(fds, n, timeout);
  const int r = PollSpin(fds, n, timeout != 0);
  return r == -2 ? R().poll(fds, n, timeout) : r;
}

int ppoll(pollfd* fds, nfds_t n, const timespec* ts, const sigset_t* mask) {
  if (!Spinning()) return R().ppoll(fds, n, ts, mask);
  const bool may_wait = ts == nullptr || ts->tv_sec != 0 || ts->tv_nsec != 0;
  const int r = PollSpin(fds, n, may_wait);
  return r == -2 ? R().ppoll(fds, n, ts, mask) : r;
}

int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* tv) {
  if (Spinning() && rd != nullptr) {
    // Arm the accelerated readers before the kernel sleeps; one with data
    // is reported at once (busy spinning is left to epoll and poll).
    fd_set ready;
    FD_ZERO(&ready);
    bool any = false;
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; ++fd) {
      if (!FD_ISSET(fd, rd)) continue;
      Conn* c = ActiveConn(fd);
      if (c != nullptr && ArmBeforeSleep(c, fd)) {
        FD_SET(fd, &ready);
        any = true;
      }
    }
    if (any) {
      *rd = ready;
      if (wr != nullptr) FD_ZERO(wr);
      if (ex != nullptr) FD_ZERO(ex);
      int count = 0;
      for (int fd = 0; fd < nfds && fd < FD_SETSIZE; ++fd) count += FD_ISSET(fd, &ready) ? 1 : 0;
      return count;
    }
  }
  return R().select(nfds, rd, wr, ex, tv);
}

}  // extern "C"
