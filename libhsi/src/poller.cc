#include "hsi/poller.h"

#include <liburing.h>
#include <poll.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "internal/session_state.h"
#include "internal/syscall.h"

namespace hsi {

struct HSI_LOCAL Poller::State {
  struct Entry {
    Nic* nic = nullptr;
    bool pending = false;  // a poll is in the ring
    // The doorbell may hold rings: new, or its poll completed since the
    // last drain. A pending poll that has not completed saw none.
    bool fired = true;
  };
  io_uring ring{};
  bool ring_ok = false;
  std::vector<Entry> entries;  // index = user_data; removed entries keep nic == nullptr
  uint32_t generation = 0;     // Wait() calls, to tell their control polls apart
  // Adds this Wait()'s polls of the NICs' sessions' control sockets to the
  // ring (their tags to *ctl_polls, the sessions to *sessions, by slot);
  // lowers *until to the next reconnect of a session whose hsid is away.
  absl::Status PollSessions(absl::Time* until, std::vector<uint64_t>* ctl_polls,
                            std::vector<internal::SessionState*>* sessions);
  ~State() {
    if (ring_ok) io_uring_queue_exit(&ring);
  }
};

Poller::Poller() = default;
Poller::~Poller() = default;
Poller::Poller(Poller&&) noexcept = default;
Poller& Poller::operator=(Poller&&) noexcept = default;

absl::StatusOr<Poller> Poller::Create(unsigned entries) {
  auto s = std::make_unique<State>();
  int r = io_uring_queue_init(std::max(entries, 8u), &s->ring, 0);
  if (r < 0) return internal::ErrnoStatus(-r, "poller: io_uring_queue_init");
  s->ring_ok = true;
  Poller p;
  p.state_ = std::move(s);
  return p;
}

absl::Status Poller::Add(Nic* nic) {
  if (!state_) return absl::FailedPreconditionError("poller: not created");
  for (const auto& e : state_->entries) {
    if (e.nic == nic) return absl::AlreadyExistsError("poller: NIC already registered");
  }
  state_->entries.push_back({nic, false, true});
  return absl::OkStatus();
}

void Poller::Remove(Nic* nic) {
  if (!state_) return;
  for (size_t i = 0; i < state_->entries.size(); ++i) {
    auto& e = state_->entries[i];
    if (e.nic != nic) continue;
    if (e.pending) {
      io_uring_sqe* sqe = io_uring_get_sqe(&state_->ring);
      if (sqe != nullptr) {
        io_uring_prep_poll_remove(sqe, i);
        io_uring_sqe_set_data64(sqe, UINT64_MAX);
        io_uring_submit(&state_->ring);
      }
    }
    e.nic = nullptr;  // the slot is reused only after its poll completed
  }
}

namespace {

// user_data of a control-socket poll: the high bit, the Wait() call's
// generation and the session's slot. Doorbell polls use the entry index.
constexpr uint64_t kCtlTag = uint64_t{1} << 63;
uint64_t CtlData(uint32_t generation, uint32_t slot) {
  return kCtlTag | (uint64_t{generation & 0x7fffffff} << 32) | slot;
}

io_uring_sqe* GetSqe(io_uring& ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  if (sqe == nullptr) {
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

}  // namespace

absl::Status Poller::State::PollSessions(absl::Time* until, std::vector<uint64_t>* ctl_polls,
                                         std::vector<internal::SessionState*>* sessions_out) {
  // The sessions behind the NICs: their control sockets are polled for this
  // Wait() only (a poll would hold the socket open after the session closed
  // it, and hsid would not see that client go), and a session that waits to
  // reconnect bounds the sleep.
  std::vector<internal::SessionState*>& sessions = *sessions_out;
  sessions.clear();
  for (const auto& e : entries) {
    if (e.nic == nullptr || e.nic->session_ == nullptr) continue;
    internal::SessionState* ss = e.nic->session_.get();
    if (std::find(sessions.begin(), sessions.end(), ss) != sessions.end()) continue;
    sessions.push_back(ss);
  }
  const uint32_t gen = ++generation;
  for (size_t k = 0; k < sessions.size(); ++k) {
    if (!sessions[k]->connected()) {
      *until = std::min(*until, sessions[k]->reconnect_at());
      continue;
    }
    io_uring_sqe* sqe = GetSqe(ring);
    if (sqe == nullptr) return absl::ResourceExhaustedError("poller: io_uring submission queue full");
    io_uring_prep_poll_add(sqe, sessions[k]->ctl_fd(), POLLIN);
    ctl_polls->push_back(CtlData(gen, static_cast<uint32_t>(k)));
    io_uring_sqe_set_data64(sqe, ctl_polls->back());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Nic*>> Poller::Wait(absl::Time deadline) {
  std::vector<Nic*> ready;
  if (!state_) return absl::FailedPreconditionError("poller: not created");
  io_uring& ring = state_->ring;
  for (;;) {
    for (auto& e : state_->entries) {
      if (e.nic == nullptr) continue;
      const bool drain = e.fired;
      e.fired = false;
      if (e.nic->PrepareWait(drain)) ready.push_back(e.nic);
    }
    if (!ready.empty()) return ready;
    for (size_t i = 0; i < state_->entries.size(); ++i) {
      auto& e = state_->entries[i];
      if (e.nic == nullptr || e.pending) continue;
      io_uring_sqe* sqe = GetSqe(ring);
      if (sqe == nullptr) return absl::ResourceExhaustedError("poller: io_uring submission queue full");
      io_uring_prep_poll_add(sqe, e.nic->fd(), POLLIN);
      io_uring_sqe_set_data64(sqe, i);
      e.pending = true;
    }
    absl::Time until = deadline;
    std::vector<uint64_t> ctl_polls;
    std::vector<internal::SessionState*> sessions;
    if (absl::Status s = state_->PollSessions(&until, &ctl_polls, &sessions); !s.ok()) return s;
    const uint32_t gen = state_->generation;
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts{};
    __kernel_timespec* tsp = nullptr;
    if (until != absl::InfiniteFuture()) {
      const absl::Duration left = std::max(until - absl::Now(), absl::ZeroDuration());
      ts.tv_sec = absl::ToInt64Seconds(left);
      ts.tv_nsec = absl::ToInt64Nanoseconds(left - absl::Seconds(ts.tv_sec));
      tsp = &ts;
    }
    int r = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, tsp, nullptr);
    if (r < 0 && r != -ETIME && r != -EINTR) return internal::ErrnoStatus(-r, "poller: io_uring wait");
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      const uint64_t d = io_uring_cqe_get_data64(cqe);
      if ((d & kCtlTag) != 0) {
        if (d != UINT64_MAX) {
          auto it = std::find(ctl_polls.begin(), ctl_polls.end(), d);
          if (it != ctl_polls.end()) {  // this call's: done, nothing to cancel
            ctl_polls.erase(it);
            // A message, EOF or an error: handled now, so the next
            // PrepareWait() (which pumps only when the event word moved)
            // does not find the socket readable again.
            const uint32_t slot = static_cast<uint32_t>(d);
            if (d == CtlData(gen, slot) && slot < sessions.size()) sessions[slot]->Pump();
          }
        }
        continue;  // an earlier call's, cancelled or late
      }
      if (d >= state_->entries.size()) continue;
      auto& e = state_->entries[d];
      e.pending = false;
      e.fired = true;
      if (e.nic != nullptr) ready.push_back(e.nic);
    }
    io_uring_cq_advance(&ring, seen);
    for (uint64_t d : ctl_polls) {  // still armed: cancel
      io_uring_sqe* sqe = GetSqe(ring);
      if (sqe == nullptr) break;
      io_uring_prep_poll_remove(sqe, d);
      io_uring_sqe_set_data64(sqe, UINT64_MAX);
    }
    if (!ctl_polls.empty()) io_uring_submit(&ring);
    if (!ready.empty() || absl::Now() >= deadline) return ready;
    // A control event or a reconnect due: the next pass pumps each session
    // (PrepareWait) and looks again.
  }
}

}  // namespace hsi
