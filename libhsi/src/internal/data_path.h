// internal/data_path.h: what the data path of a NIC (nic.cc) and of a link
// (link.cc) share: the wait loop that sleeps on a NIC's doorbell and hsid's
// socket, and the verdicts of one link's receive side.
//
// Thread safety: none; see hsi/session.h.
#ifndef HSI_INTERNAL_DATA_PATH_H_
#define HSI_INTERNAL_DATA_PATH_H_

#include <poll.h>

#include <algorithm>
#include <atomic>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "hsi/ring.h"
#include "hsi/wait.h"
#include "internal/futex.h"
#include "internal/session_state.h"
#include "internal/spin_wait.h"

namespace hsi::internal {

// A default-constructed or moved-from handle: a caller's mistake, answered
// with a status rather than a crash.
inline absl::Status EmptyHandle(const char* what) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": empty handle (default-constructed or moved from)"));
}

// OK, or why the NIC takes no traffic (detached, or set down by an admin).
inline absl::Status NicUsable(const NicState& n) {
  if (n.detached) return absl::FailedPreconditionError(absl::StrCat(n.Name(), " is detached"));
  if (!n.up) return n.down_status;
  return absl::OkStatus();
}

// What a look at one link's receive side found. kSkip: a status to report
// for this link's next frame (it does not fit the caller's buffer), which
// stays where it is; a round robin moves on past the link.
enum class Took { kFrame, kEmpty, kError, kSkip };

// Peeks at `l`'s next frame; kError with the ring's status if it is BROKEN.
// An empty ring costs no absl::Status: this runs in every spin of a wait.
inline Took PeekLink(LinkState& l, hsi::Frame* f, absl::Status* err) {
  if (l.rx.TryPeek(f)) return Took::kFrame;
  if (l.rx.ok()) return Took::kEmpty;
  *err = l.rx.status();
  return Took::kError;
}

// One sleep of a session's wait on futex words (data_path.h, WaitLoop):
// the words of the rings it armed, hsid's event word, and whether a ring's
// peer has answered already (then it does not sleep) or the set overflowed
// (then it sleeps on the doorbell instead).
struct FutexSleep {
  FutexSet set;
  bool answered = false;
  bool full = false;
  void Add(const FutexWakeup& w) {
    answered = answered || w.answered;
    full = full || !set.Add(w.word, w.value);
  }
  // Whether this kernel has FUTEX_WAITV: learnt from the first ENOSYS.
  // Relaxed: a stale value costs one failed syscall.
  static inline std::atomic<bool> unsupported{false};
};

// Arms (on) or disarms the need-wakeup flag of a ring end (RingProducer or
// RingConsumer): for a sleep on the NIC's doorbell when `fs` is null, else
// for a FUTEX_WAKE on the peer's word, which goes into *fs.
template <typename RingEnd>
void SetWakeup(RingEnd& end, bool on, FutexSleep* fs) {
  if (!on) {
    end.DisarmWakeup();
  } else if (fs != nullptr) {
    fs->Add(end.ArmFutexWakeup());
  } else {
    end.ArmWakeup();
  }
}

// The spin-then-sleep wait (internal/spin_wait.h) of a session's data path:
// it spins on ready() (handling hsid's events every 1024 rounds), then
// sleeps. arm(on, fs) arms (on) or disarms the caller's rings, as
// SetWakeup() says.
//
// How it sleeps (docs/ring.md, "Waking"): first, for up to futex_sleep_for,
// in one FUTEX_WAITV on the "woke" word of every armed ring's peer and on
// hsid's event word (hsid FUTEX_WAKEs it after each event it sends): so a
// sleeping hop costs the peer one FUTEX_WAKE and us one FUTEX_WAITV, as the
// futex ping-pong. A futex cannot see hsid's death (its socket's EOF), so
// after futex_sleep_for the wait goes on in poll() on the NIC's doorbell and
// the control socket together, which sees a frame, an event, a reply or
// hsid's death at once and costs nothing while idle; and whatever the
// waits are like (short deadlines, or woken by frames every time), one
// sleep per futex_sleep_for is such a poll (next_ctl_look_), so a session
// that sleeps notices hsid's death within that time. The doorbell sleep is
// also the way while hsid is away (it ends in time for the next reconnect
// attempt), on a kernel without FUTEX_WAITV, and with more rings than one
// FUTEX_WAITV takes.
// Not a constant only so that a test can stretch it (to show that hsid's
// FUTEX_WAKE, not the end of the futex phase, wakes a sleeper for an event)
// or shrink it; nothing else writes it.
inline absl::Duration futex_sleep_for = absl::Milliseconds(20);

template <typename Ready, typename Arm>
absl::Status SessionState::WaitLoop(NicState& nic, const Wait& wait, Ready ready, Arm arm) {
  if (ready()) return absl::OkStatus();
  // Before each sleep only MaybePump() (one load of hsid's event word; a
  // full Pump() when it moved, while hsid is away, and every
  // kLivenessCalls-th time): anything else hsid sends (a reply to a link
  // request) makes the control socket readable, which ends a doorbell
  // sleep, and is pumped then.
  FutexSleep fs;
  bool futex = false;  // this round sleeps on futex words
  absl::Time futex_until = absl::InfinitePast();
  const bool got = SpinThenSleep<1024>(
      wait, ready, [&] { Pump(); },
      [&] {
        MaybePump();
        const uint64_t* events = ctl_.event_word();
        const absl::Time now = absl::Now();
        if (futex_until == absl::InfinitePast()) futex_until = now + futex_sleep_for;
        futex = events != nullptr && ctl_.connected() && !FutexSleep::unsupported.load(std::memory_order_relaxed) &&
                now < futex_until && now < next_ctl_look_;
        if (futex) {
          fs.set.Clear();
          fs.answered = fs.full = false;
          // The word hsid moved since the last Pump(): FUTEX_WAITV returns
          // at once and the next round pumps.
          fs.full = !fs.set.Add(FutexHalf(events), static_cast<uint32_t>(ctl_.settled_events()));
          arm(true, &fs);
          if (!fs.full) return;
          futex = false;  // too many rings for one FUTEX_WAITV: a new epoch, for the doorbell
        }
        arm(true, nullptr);
      },
      [&](absl::Time deadline) {
        if (futex) {
          if (fs.answered) return absl::Now() < deadline;  // re-check at once
          const absl::Time until = std::min(deadline, futex_until);
          switch (fs.set.WaitUntil(until)) {
            case FutexSet::Woke::kRecheck:
              return true;
            case FutexSet::Woke::kUnsupported:
              FutexSleep::unsupported.store(true, std::memory_order_relaxed);
              return true;  // re-check, then the doorbell
            case FutexSet::Woke::kDeadline:
              return until != deadline;  // the futex phase is over: the doorbell next
          }
        }
        absl::Time until = deadline;
        if (!ctl_.connected() && opt_.reconnect && !closed_) {
          until = std::min(until, next_reconnect_ + absl::Milliseconds(1));
        }
        const int ms = PollMs(until);
        if (ms == 0 && until == deadline) return false;
        struct pollfd p[2] = {{nic.bell->fd(), POLLIN, 0}, {ctl_.connected() ? ctl_.fd() : -1, POLLIN, 0}};
        ::poll(p, 2, ms);
        if (p[1].fd >= 0) next_ctl_look_ = absl::Now() + futex_sleep_for;
        if (p[1].revents != 0) Pump();  // a message, EOF or an error: handle it now
        if (p[0].revents != 0) nic.bell->Drain();
        return true;
      },
      [&] { arm(false, nullptr); });
  return got ? absl::OkStatus() : absl::DeadlineExceededError("");
}

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_DATA_PATH_H_
