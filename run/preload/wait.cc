// libhsi-run.so's waits: epoll_wait, epoll_pwait, epoll_pwait2, poll,
// ppoll, select, pselect (and epoll_ctl, to know what an epoll set holds).
//
// A reader does not ask for a bell when it empties its ring (docs/hsi-run.md,
// section 4, "lazy arming"): it arms only just before it sleeps, so data
// that arrives while the program is busy costs no bell, no drain and no
// wake-up. The sleeps are these waits and a blocking read (io.cc). Each wait
// first looks at the rings of the accelerated descriptors it waits on for
// input (an epoll set's are known from epoll_ctl, nested sets included): if
// data waits there it reports them as the kernel would, without sleeping.
// Only when every ring is empty does it arm each of them (StreamEnd::ArmData:
// the arm, a fence, a re-check of the ring), and then sleeps in the kernel:
// from the arm on, the peer's next commit sends a bell, which wakes the
// kernel wait. With busy polling (HSI_RUN_BUSY_POLL_US) the look at the
// rings repeats for the budget before arming.
//
// A connection whose sleepers the library cannot all see arms eagerly, as
// before, when a read empties its ring (Conn::eager): one held by several
// processes (a fork: the other process's epoll sets are not known here), one
// registered EPOLLONESHOT (a report from here would not disarm the kernel's
// registration) or with O_ASYNC (it sleeps in sigwait or a handler).
//
// Thread safety: the epoll registry has its own mutex; ring access takes the
// Conn's receive lock (a try-lock to look; a lock to arm, held only for the
// ring and the drain: a blocking read does not hold it while it sleeps).
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "conn.h"

namespace hsirun {
namespace {

std::mutex g_ep_mu;
// epoll descriptor -> its registrations (descriptor -> event), as made by
// this process (and inherited at fork).
std::map<int, std::map<int, epoll_event>>* Registry() {
  static auto* r = new std::map<int, std::map<int, epoll_event>>();
  return r;
}
// epoll sets registered EPOLLONESHOT in another set: their accelerated
// members arm eagerly (a report from here could not disarm the outer one).
std::set<int>* OneshotSets() {
  static auto* s = new std::set<int>();
  return s;
}
std::atomic<bool> g_ep_used{false};  // any epoll_ctl seen (close's fast path)

uint64_t NowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

Conn* ActiveConn(int fd) {
  Conn* c = Lookup(fd);
  return c != nullptr && c->state.load(std::memory_order_acquire) == static_cast<int>(State::kActive) ? c : nullptr;
}

// Whether ring data waits on `c` (without waiting for its lock: a thread
// that holds it is reading).
bool HasData(Conn* c) {
  if (pthread_mutex_trylock(&c->rx_mu) != 0) return false;
  const bool r = c->end.Readable() > 0;
  Unlock(&c->rx_mu);
  return r;
}

// Arms `c` before wait `waiter` sleeps, counting it among the sleepers;
// true if data came meanwhile (do not sleep). With its waiter id only when
// this wait is its only sleeper and every sleeper is seen (not eager): the
// producer then rings one of this wait's connections, not each.
bool ArmBeforeSleep(Conn* c, int fd, uint64_t waiter) {
  Guard g(&c->rx_mu);  // orders the sleepers count with the arm it decides
  LibScope scope;
  const bool alone = c->sleepers.fetch_add(1, std::memory_order_relaxed) == 0;
  const bool solo = alone && !c->eager.load(std::memory_order_relaxed);
  return !c->end.ArmData(fd, solo ? waiter : 0);
}

void Woke(Conn* c) { c->sleepers.fetch_sub(1, std::memory_order_relaxed); }

void Pause() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

// One accelerated descriptor a wait watches for input, and where to report
// it: `slot` indexes the caller's pollfd array or fd number (poll, select),
// `data` is the epoll registration's data (epoll; for a nested set, the
// data of the outer registration).
struct Watch {
  int fd;
  Conn* c;
  size_t slot;
  epoll_data_t data;
};

// Marks every accelerated member of set `epfd` (and of its nested sets)
// eager. Requires g_ep_mu.
void MarkEagerLocked(int epfd, int depth) {
  auto it = Registry()->find(epfd);
  if (it == Registry()->end() || depth > 4) return;
  for (const auto& [fd, ev] : it->second) {
    if (Registry()->contains(fd)) {
      MarkEagerLocked(fd, depth + 1);
    } else if (Conn* c = Lookup(fd)) {
      c->eager.store(true, std::memory_order_relaxed);
    }
  }
}

// Adds the accelerated input members of epoll set `epfd` to `out`, nested
// sets included (their members are reported with the outer registration's
// data). Requires g_ep_mu.
void CollectEpollLocked(int epfd, size_t slot, const epoll_data_t* outer, int depth, std::vector<Watch>* out) {
  auto it = Registry()->find(epfd);
  if (it == Registry()->end() || depth > 4) return;
  for (const auto& [fd, ev] : it->second) {
    if ((ev.events & EPOLLIN) == 0 || (ev.events & EPOLLONESHOT) != 0) continue;  // ONESHOT: eager
    const epoll_data_t data = outer != nullptr ? *outer : ev.data;
    if (Registry()->contains(fd)) {
      CollectEpollLocked(fd, slot, &data, depth + 1, out);
    } else if (Conn* c = ActiveConn(fd)) {
      out->push_back({fd, c, slot, data});
    }
  }
}

// `fd`, waited on for input at `slot` by poll or select: itself if it is
// accelerated, its members if it is a known epoll set.
void CollectFd(int fd, size_t slot, std::vector<Watch>* out) {
  if (Conn* c = ActiveConn(fd)) {
    out->push_back({fd, c, slot, epoll_data_t{}});
    return;
  }
  if (!g_ep_used.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> l(g_ep_mu);
  if (Registry()->contains(fd)) {
    const epoll_data_t none{};
    CollectEpollLocked(fd, slot, &none, 1, out);
  }
}

// The outcome of looking at (and arming) the watched rings before a wait.
enum class Ready { kNone, kArmed, kRings };

// Looks at the rings of `w` (spinning for the busy-poll budget if
// `may_sleep`), marks the ready ones in `ready` (one flag per Watch), and,
// when none has data and the caller will sleep, arms them all for one new
// waiter id. kRings: at least one is ready (do not sleep); kArmed: all
// armed and counted as sleepers (call Woke() on each after the sleep);
// kNone: none ready and not sleeping (!may_sleep).
Ready LookAndArm(const std::vector<Watch>& w, std::vector<char>* ready, bool may_sleep) {
  ready->assign(w.size(), 0);
  auto look = [&]() {
    bool any = false;
    for (size_t i = 0; i < w.size(); ++i) {
      if (HasData(w[i].c)) (*ready)[i] = any = true;
    }
    return any;
  };
  if (look()) return Ready::kRings;
  if (!may_sleep) return Ready::kNone;
  if (Opts().busy_poll_us > 0) {
    const uint64_t until = NowNs() + uint64_t{Opts().busy_poll_us} * 1000;
    while (NowNs() < until) {
      Pause();
      if (look()) return Ready::kRings;
    }
  }
  bool any = false;
  const uint64_t waiter = NextWaiterId();
  for (size_t i = 0; i < w.size(); ++i) {
    if (ArmBeforeSleep(w[i].c, w[i].fd, waiter)) (*ready)[i] = any = true;
  }
  if (!any) return Ready::kArmed;
  for (const Watch& x : w) Woke(x.c);
  return Ready::kRings;
}

void WokeAll(const std::vector<Watch>& w) {
  for (const Watch& x : w) Woke(x.c);
}

// The kernel reported the end of `w`'s socket, or input with nothing behind
// it: its next empty read looks at the socket (io.cc).
void EndMaybe(const Watch& w) { w.c->end_maybe.store(true, std::memory_order_relaxed); }

// The kernel reported input on `w` but its ring is empty: a bell for data
// already read (readers drain bells only when they arm, so the bell that
// announced data read since is still in the socket), or one that was in
// flight when the wait armed. Drains it; true if the descriptor is not
// readable after all, so that the report is dropped: a program woken for
// input must find some (wrk, iperf3 count an EAGAIN there as an error).
bool Stale(const Watch& w) {
  if (pthread_mutex_trylock(&w.c->rx_mu) != 0) return false;  // a reader is at it
  bool empty;
  {
    LibScope scope;
    empty = w.c->end.DrainStale(w.fd);
  }
  Unlock(&w.c->rx_mu);
  if (!empty) return false;
  pollfd p{w.fd, POLLIN, 0};  // still readable: the peer's FIN, or a new bell
  if (R().poll(&p, 1, 0) == 0) return true;
  EndMaybe(w);
  return false;
}

// The one Watch reported as epoll data `d` (nullptr if none, or several:
// a nested set, left as the kernel said).
const Watch* WatchOf(const std::vector<Watch>& w, epoll_data_t d) {
  const Watch* found = nullptr;
  for (const Watch& x : w) {
    if (x.data.u64 != d.u64) continue;
    if (found != nullptr) return nullptr;
    found = &x;
  }
  return found;
}

// Deadline bookkeeping for a wait that must sleep again after dropping
// stale reports: the time left of `ts` from `start`.
const timespec* Left(const timespec* ts, uint64_t start, timespec* left) {
  if (ts == nullptr) return nullptr;
  const uint64_t total = static_cast<uint64_t>(ts->tv_sec) * 1000000000u + static_cast<uint64_t>(ts->tv_nsec);
  const uint64_t spent = NowNs() - start;
  const uint64_t rest = spent >= total ? 0 : total - spent;
  *left = timespec{static_cast<time_t>(rest / 1000000000u), static_cast<long>(rest % 1000000000u)};
  return left;
}

thread_local std::vector<Watch> t_watch;
thread_local std::vector<char> t_ready;

// ------------------------------------------------------------ epoll

using EpollFn = int (*)(int, epoll_event*, int, const timespec*, const sigset_t*);

// Ring-ready events are reported without asking the kernel; every 8th time
// in a row the kernel is asked too (timeout 0), so that its descriptors (a
// listening socket, a timer) are not starved while rings keep the program
// busy. A kernel event for a descriptor reported from its ring is merged
// into that event.
int EpollWait(int epfd, epoll_event* events, int max, const timespec* ts, const sigset_t* mask, EpollFn real) {
  if (InLib() || max <= 0 || !AnyConns()) return real(epfd, events, max, ts, mask);
  t_watch.clear();
  {
    std::lock_guard<std::mutex> l(g_ep_mu);
    CollectEpollLocked(epfd, 0, nullptr, 0, &t_watch);
  }
  if (t_watch.empty()) return real(epfd, events, max, ts, mask);
  const bool may_sleep = ts == nullptr || ts->tv_sec != 0 || ts->tv_nsec != 0;
  // Drops the kernel's stale reports among events[from, to); returns the
  // new end.
  auto filter = [&](int from, int to) {
    int out = from;
    for (int j = from; j < to; ++j) {
      const Watch* w = WatchOf(t_watch, events[j].data);
      if (w != nullptr && (events[j].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) EndMaybe(*w);
      if (w != nullptr && (events[j].events & EPOLLIN) != 0 &&
          (events[j].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0 && Stale(*w)) {
        events[j].events &= ~static_cast<uint32_t>(EPOLLIN);
        if (events[j].events == 0) continue;
      }
      events[out++] = events[j];
    }
    return out;
  };
  const uint64_t start = NowNs();
  for (;;) {
    const Ready r = LookAndArm(t_watch, &t_ready, may_sleep);
    if (r == Ready::kRings) break;
    timespec left{};
    const int k = real(epfd, events, max, Left(ts, start, &left), mask);
    if (r == Ready::kArmed) WokeAll(t_watch);
    if (k < 0) return k;
    int n = filter(0, k);
    // Woken by one bell for this wait: the other rings it armed may have
    // data that rang none (one bell per wait): report them now.
    for (size_t i = 0; i < t_watch.size() && n < max && r == Ready::kArmed; ++i) {
      bool seen = false;
      for (int j = 0; j < n && !seen; ++j) seen = events[j].data.u64 == t_watch[i].data.u64;
      if (!seen && HasData(t_watch[i].c)) events[n++] = epoll_event{EPOLLIN, t_watch[i].data};
    }
    if (n > 0 || !may_sleep || k == 0) return n;  // k == 0: the timeout
    if (ts != nullptr && NowNs() - start >= static_cast<uint64_t>(ts->tv_sec) * 1000000000u + ts->tv_nsec) return 0;
    // Only stale reports: sleep again (armed anew).
  }
  int n = 0;
  for (size_t i = 0; i < t_watch.size() && n < max; ++i) {
    if (!t_ready[i]) continue;
    bool dup = false;  // two descriptors of one set may share data (nested sets do)
    for (int j = 0; j < n && !dup; ++j) dup = events[j].data.u64 == t_watch[i].data.u64;
    if (!dup) events[n++] = epoll_event{EPOLLIN, t_watch[i].data};
  }
  static thread_local unsigned ring_only = 0;
  if (++ring_only % 8 != 0 || n == max) return n;
  const timespec zero{0, 0};
  const int k = real(epfd, events + n, max - n, &zero, mask);
  if (k <= 0) return n;
  const int end = filter(n, n + k);
  int out = n;
  for (int j = n; j < end; ++j) {
    bool merged = false;
    for (int i = 0; i < n && !merged; ++i) {
      if (events[i].data.u64 == events[j].data.u64) {
        events[i].events |= events[j].events;
        merged = true;
      }
    }
    if (!merged) events[out++] = events[j];
  }
  return out;
}

int RealEpollWait(int epfd, epoll_event* ev, int max, const timespec* ts, const sigset_t*) {
  const int ms = ts == nullptr ? -1 : static_cast<int>(ts->tv_sec * 1000 + ts->tv_nsec / 1000000);
  return R().epoll_wait(epfd, ev, max, ms);
}
int RealEpollPwait(int epfd, epoll_event* ev, int max, const timespec* ts, const sigset_t* mask) {
  const int ms = ts == nullptr ? -1 : static_cast<int>(ts->tv_sec * 1000 + ts->tv_nsec / 1000000);
  return R().epoll_pwait(epfd, ev, max, ms, mask);
}
int RealEpollPwait2(int epfd, epoll_event* ev, int max, const timespec* ts, const sigset_t* mask) {
  return R().epoll_pwait2(epfd, ev, max, ts, mask);
}

// A millisecond timeout as a timespec (nullptr: forever).
const timespec* MsToTs(int ms, timespec* ts) {
  if (ms < 0) return nullptr;
  *ts = timespec{ms / 1000, static_cast<long>(ms % 1000) * 1000000};
  return ts;
}

// ------------------------------------------------------------ poll

using PollFn = int (*)(pollfd*, nfds_t, const timespec*, const sigset_t*);

int PollImpl(pollfd* fds, nfds_t n, const timespec* ts, const sigset_t* mask, PollFn real) {
  if (InLib() || !AnyConns()) return real(fds, n, ts, mask);
  t_watch.clear();
  for (nfds_t i = 0; i < n; ++i) {
    if ((fds[i].events & POLLIN) != 0 && fds[i].fd >= 0) CollectFd(fds[i].fd, i, &t_watch);
  }
  if (t_watch.empty()) return real(fds, n, ts, mask);
  const bool may_sleep = ts == nullptr || ts->tv_sec != 0 || ts->tv_nsec != 0;
  auto count = [&]() {
    int k = 0;
    for (nfds_t i = 0; i < n; ++i) k += fds[i].revents != 0 ? 1 : 0;
    return k;
  };
  // Drops the kernel's stale input reports (not for a ring found ready).
  auto drop_stale = [&]() {
    for (size_t i = 0; i < t_watch.size(); ++i) {
      const Watch& w = t_watch[i];
      pollfd& p = fds[w.slot];
      if (p.fd == w.fd && (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) != 0) EndMaybe(w);
      if (!t_ready[i] && p.fd == w.fd && (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) == 0 &&
          (p.revents & POLLIN) != 0 && Stale(w)) {
        p.revents &= ~POLLIN;
      }
    }
  };
  const uint64_t start = NowNs();
  for (;;) {
    const Ready ready = LookAndArm(t_watch, &t_ready, may_sleep);
    if (ready == Ready::kRings) break;
    timespec left{};
    const int k = real(fds, n, Left(ts, start, &left), mask);
    if (ready == Ready::kArmed) WokeAll(t_watch);
    if (k < 0) return k;
    drop_stale();
    // Rings that had data but rang no bell (one bell per wait).
    for (size_t i = 0; i < t_watch.size() && ready == Ready::kArmed; ++i) {
      if (HasData(t_watch[i].c)) fds[t_watch[i].slot].revents |= POLLIN;
    }
    const int r = count();
    if (r > 0 || !may_sleep || k == 0) return r;  // k == 0: the timeout
    if (ts != nullptr && NowNs() - start >= static_cast<uint64_t>(ts->tv_sec) * 1000000000u + ts->tv_nsec) return 0;
  }
  // Some ring has data: the kernel's view of everything else, at once.
  const timespec zero{0, 0};
  if (real(fds, n, &zero, mask) < 0) return -1;
  drop_stale();
  for (size_t i = 0; i < t_watch.size(); ++i) {
    if (t_ready[i]) fds[t_watch[i].slot].revents |= POLLIN;
  }
  return count();
}

int RealPoll(pollfd* fds, nfds_t n, const timespec* ts, const sigset_t*) {
  const int ms = ts == nullptr ? -1 : static_cast<int>(ts->tv_sec * 1000 + ts->tv_nsec / 1000000);
  return R().poll(fds, n, ms);
}
int RealPpoll(pollfd* fds, nfds_t n, const timespec* ts, const sigset_t* mask) { return R().ppoll(fds, n, ts, mask); }

// ------------------------------------------------------------ select

// `real(zero)`: the kernel's select on the caller's sets, with the caller's
// timeout, or with none (zero) to merge ring readiness into its view.
template <typename RealFn>
int SelectImpl(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, bool may_sleep, RealFn real) {
  if (InLib() || rd == nullptr || !AnyConns()) return real(false);
  t_watch.clear();
  for (int fd = 0; fd < nfds && fd < FD_SETSIZE; ++fd) {
    if (FD_ISSET(fd, rd)) CollectFd(fd, static_cast<size_t>(fd), &t_watch);
  }
  if (t_watch.empty()) return real(false);
  auto count = [&]() {
    int k = 0;
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; ++fd) {
      for (fd_set* s : {rd, wr, ex}) k += s != nullptr && FD_ISSET(fd, s) ? 1 : 0;
    }
    return k;
  };
  // Drops the kernel's stale input reports (not for a ring found ready).
  auto drop_stale = [&]() {
    for (size_t i = 0; i < t_watch.size(); ++i) {
      const Watch& w = t_watch[i];
      if (!t_ready[i] && static_cast<int>(w.slot) == w.fd && FD_ISSET(w.fd, rd) && Stale(w)) FD_CLR(w.fd, rd);
    }
  };
  // The caller's sets, to sleep again with when every report was stale
  // (the kernel rewrites them; Linux's select also counts its timeval down).
  fd_set in[3];
  fd_set* sets[3] = {rd, wr, ex};
  for (int i = 0; i < 3; ++i) {
    if (sets[i] != nullptr) in[i] = *sets[i];
  }
  for (;;) {
    const Ready ready = LookAndArm(t_watch, &t_ready, may_sleep);
    if (ready == Ready::kRings) break;
    const int k = real(false);
    if (ready == Ready::kArmed) WokeAll(t_watch);
    if (k < 0) return k;
    drop_stale();
    for (size_t i = 0; i < t_watch.size() && ready == Ready::kArmed; ++i) {
      if (HasData(t_watch[i].c)) FD_SET(static_cast<int>(t_watch[i].slot), rd);
    }
    const int r = count();
    if (r > 0 || !may_sleep || k == 0) return r;  // k == 0: the timeout
    for (int i = 0; i < 3; ++i) {
      if (sets[i] != nullptr) *sets[i] = in[i];
    }
  }
  if (real(true) < 0) return -1;
  drop_stale();
  for (size_t i = 0; i < t_watch.size(); ++i) {
    if (t_ready[i]) FD_SET(static_cast<int>(t_watch[i].slot), rd);
  }
  return count();
}

}  // namespace

void ForgetWaitFd(int fd) {
  if (!g_ep_used.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> l(g_ep_mu);
  Registry()->erase(fd);
  OneshotSets()->erase(fd);
  for (auto& [epfd, set] : *Registry()) {
    auto it = set.find(fd);
    if (it == set.end()) continue;
    // The kernel keeps a registration while another descriptor of the same
    // file is open (dup): its events go on without this entry, so the
    // connection must keep bells true by itself.
    if (Conn* c = Lookup(fd)) c->eager.store(true, std::memory_order_relaxed);
    set.erase(it);
  }
}

}  // namespace hsirun

using namespace hsirun;  // NOLINT: libc's names below

extern "C" {

int epoll_ctl(int epfd, int op, int fd, epoll_event* ev) {
  const int rc = R().epoll_ctl(epfd, op, fd, ev);
  if (rc != 0 || InLib()) return rc;
  g_ep_used.store(true, std::memory_order_relaxed);
  std::lock_guard<std::mutex> l(g_ep_mu);
  auto& set = (*Registry())[epfd];
  if (op == EPOLL_CTL_DEL) {
    set.erase(fd);
    return rc;
  }
  if (ev == nullptr) return rc;
  set[fd] = *ev;
  const bool oneshot = (ev->events & EPOLLONESHOT) != 0 || OneshotSets()->contains(epfd);
  if (oneshot) {
    if (Conn* c = Lookup(fd)) c->eager.store(true, std::memory_order_relaxed);
    if (Registry()->contains(fd)) {
      OneshotSets()->insert(fd);
      MarkEagerLocked(fd, 0);
    }
  }
  return rc;
}

int epoll_wait(int epfd, epoll_event* events, int max, int timeout) {
  timespec ts{};
  return EpollWait(epfd, events, max, MsToTs(timeout, &ts), nullptr, RealEpollWait);
}

int epoll_pwait(int epfd, epoll_event* events, int max, int timeout, const sigset_t* mask) {
  timespec ts{};
  return EpollWait(epfd, events, max, MsToTs(timeout, &ts), mask, RealEpollPwait);
}

int epoll_pwait2(int epfd, epoll_event* events, int max, const timespec* ts, const sigset_t* mask) {
  return EpollWait(epfd, events, max, ts, mask, RealEpollPwait2);
}

int poll(pollfd* fds, nfds_t n, int timeout) {
  timespec ts{};
  return PollImpl(fds, n, MsToTs(timeout, &ts), nullptr, RealPoll);
}

int __poll_chk(pollfd* fds, nfds_t n, int timeout, size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __builtin_trap();
  return poll(fds, n, timeout);
}

int ppoll(pollfd* fds, nfds_t n, const timespec* ts, const sigset_t* mask) {
  return PollImpl(fds, n, ts, mask, RealPpoll);
}

int __ppoll_chk(pollfd* fds, nfds_t n, const timespec* ts, const sigset_t* mask, size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __builtin_trap();
  return ppoll(fds, n, ts, mask);
}

int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* tv) {
  const bool may_sleep = tv == nullptr || tv->tv_sec != 0 || tv->tv_usec != 0;
  return SelectImpl(nfds, rd, wr, ex, may_sleep, [&](bool zero) {
    timeval z{0, 0};
    return R().select(nfds, rd, wr, ex, zero ? &z : tv);  // Linux updates *tv with the time left
  });
}

int pselect(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, const timespec* ts, const sigset_t* mask) {
  const bool may_sleep = ts == nullptr || ts->tv_sec != 0 || ts->tv_nsec != 0;
  return SelectImpl(nfds, rd, wr, ex, may_sleep, [&](bool zero) {
    const timespec z{0, 0};
    return R().pselect(nfds, rd, wr, ex, zero ? &z : ts, mask);
  });
}

}  // extern "C"
