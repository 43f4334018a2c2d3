// internal/data_path.h: what the data path of a NIC (nic.cc) and of a link
// (link.cc) share: the wait loop that sleeps on a NIC's doorbell and hsid's
// socket, and the verdicts of one link's receive side.
//
// Thread safety: none; see hsi/session.h.
#ifndef HSI_INTERNAL_DATA_PATH_H_
#define HSI_INTERNAL_DATA_PATH_H_

#include <poll.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "hsi/ring.h"
#include "hsi/wait.h"
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

// Arms (on) or disarms the need-wakeup flag of a ring end (RingProducer or
// RingConsumer) for a sleep on the NIC's doorbell.
template <typename RingEnd>
void SetWakeup(RingEnd& end, bool on) {
  if (on) {
    end.ArmWakeup();
  } else {
    end.DisarmWakeup();
  }
}

// The spin-then-sleep wait (internal/spin_wait.h) of a session's data path:
// it spins on ready() (handling hsid's events every 1024 rounds), then
// sleeps on the NIC's doorbell and the control socket together, so that a
// link-down or hsid's death ends the sleep too. While hsid is away the sleep
// ends in time for the next reconnect attempt.
template <typename Ready, typename Arm>
absl::Status SessionState::WaitLoop(NicState& nic, const Wait& wait, Ready ready, Arm arm) {
  if (ready()) return absl::OkStatus();
  // Before each sleep only MaybePump() (one load of hsid's event word; a
  // full Pump() when it moved, while hsid is away, and every
  // kLivenessCalls-th time): anything else hsid sends (a reply to a link
  // request) makes the control socket readable, which ends the sleep, and
  // is pumped then. So a sleep costs poll() and one read of the doorbell,
  // not a recvmsg() that finds nothing besides.
  const bool got = SpinThenSleep<1024>(
      wait, ready, [&] { Pump(); },
      [&] {
        MaybePump();
        arm(true);
      },
      [&](absl::Time deadline) {
        absl::Time until = deadline;
        if (!ctl_.connected() && opt_.reconnect && !closed_) {
          until = std::min(until, next_reconnect_ + absl::Milliseconds(1));
        }
        const int ms = PollMs(until);
        if (ms == 0 && until == deadline) return false;
        struct pollfd p[2] = {{nic.bell->fd(), POLLIN, 0}, {ctl_.connected() ? ctl_.fd() : -1, POLLIN, 0}};
        ::poll(p, 2, ms);
        if (p[1].revents != 0) Pump();  // a message, EOF or an error: handle it now
        if (p[0].revents != 0) nic.bell->Drain();
        return true;
      },
      [&] { arm(false); });
  return got ? absl::OkStatus() : absl::DeadlineExceededError("");
}

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_DATA_PATH_H_
