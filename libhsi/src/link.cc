// link.cc: hsi::Link, the data path of one link (a handle on a ring pair
// that Nic::Link() set up), and SessionState::SendOnLink, the one send that
// Nic::SendTo, broadcast and Link::Send end in.
#include "hsi/nic.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "internal/data_path.h"
#include "internal/session_state.h"

namespace hsi {

namespace internal {

absl::Status SessionState::SendOnLink(NicState& nic, LinkState& l, absl::Span<const uint8_t> payload,
                                      const Wait& wait, uint16_t type) {
  if (!l.down && l.tx.TrySend(payload, type)) return absl::OkStatus();
  if (payload.size() > l.geometry.mtu) {
    return absl::InvalidArgumentError(absl::StrCat("CHPID ", nic.ChpidText(), ": ", l.Name(), ": frame of ",
                                                   payload.size(), " bytes exceeds the MTU ", l.geometry.mtu));
  }
  if (l.down) return l.down_status;
  if (!l.tx.ok()) return l.tx.status();
  if (l.drop) {
    l.tx.RecordDrop();
    l.tx.Publish();
    return absl::ResourceExhaustedError(absl::StrCat("CHPID ", nic.ChpidText(), ": ", l.Name(),
                                                     ": ring full, frame dropped (overflow policy drop; counted)"));
  }
  bool sent = false;
  absl::Status w = WaitLoop(
      nic, wait,
      [&] {
        if (l.down || !l.tx.ok()) return true;
        sent = l.tx.TrySend(payload, type);
        return sent;
      },
      [&](bool on, FutexSleep* fs) { SetWakeup(l.tx, on, fs); });
  if (sent) return absl::OkStatus();
  if (l.down) return l.down_status;
  if (!l.tx.ok()) return l.tx.status();
  (void)w;
  return absl::DeadlineExceededError(absl::StrCat("CHPID ", nic.ChpidText(), ": ", l.Name(),
                                                  ": no room in the ring before the deadline"));
}

namespace {

// Waits as `wait` says until `l` has a frame and peeks it into *f: OK then;
// else the ring's BROKEN status, the link's down status once it is drained,
// the NIC's status if it is down or detached, or kDeadlineExceeded.
absl::Status WaitForLinkFrame(SessionState& session, NicState& nic, LinkState& l, const Wait& wait, hsi::Frame* f) {
  absl::Status st;
  bool got = false;
  auto ready = [&] {
    const bool down = l.down;  // before the ring: see TryAny
    if (const Took t = PeekLink(l, f, &st); t != Took::kEmpty) {
      got = t == Took::kFrame;
      return true;
    }
    if (down) {
      st = l.down_status;
      return true;
    }
    if (!nic.up || nic.detached) {
      st = NicUsable(nic);
      return true;
    }
    return false;
  };
  if (!ready()) {
    session.WaitLoop(nic, wait, ready, [&](bool on, FutexSleep* fs) { SetWakeup(l.rx, on, fs); }).IgnoreError();
  }
  if (got) return absl::OkStatus();
  if (!st.ok()) return st;
  return l.NoFrame();
}

// OK if the frame fits `buffer`; else kResourceExhausted naming both sizes
// (the frame stays at the head of the link for a later call).
absl::Status Fits(const LinkState& l, const hsi::Frame& f, absl::Span<uint8_t> buffer) {
  if (f.payload.size() <= buffer.size()) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(l.Name(), ": frame of ", f.payload.size(),
                                                   " bytes does not fit the ", buffer.size(), "-byte buffer"));
}

}  // namespace
}  // namespace internal

// ------------------------------------------------------------------ Link

using internal::EmptyHandle;
using internal::LinkState;
using internal::Fits;
using internal::WaitForLinkFrame;

Link::Link() = default;
Link::~Link() = default;
Link::Link(Link&&) noexcept = default;
Link& Link::operator=(Link&&) noexcept = default;

Address Link::local() const { return link_ ? link_->local : Address(); }
Address Link::peer() const { return link_ ? link_->peer : Address(); }
absl::Status Link::status() const {
  if (!link_) return EmptyHandle("Link::status");
  session_->MaybePump();  // a link-down hsid already sent is seen here
  if (link_->down) return link_->down_status;
  if (!link_->rx.ok()) return link_->rx.status();
  return link_->tx.status();
}
RingCounters Link::tx_counters() const { return link_->tx.counters(); }
RingCounters Link::rx_counters() const { return link_->rx.counters(); }

absl::Status Link::Send(absl::Span<const uint8_t> payload, const Wait& wait) {
  if (!link_) return EmptyHandle("Link::Send");
  session_->MaybePump();
  // SendOnLink's first step is the try-send; a full ring, a down link or an
  // oversize frame is sorted out there, once.
  return session_->SendOnLink(*nic_, *link_, payload, wait, internal::kTypeUnicast);
}

absl::StatusOr<size_t> Link::Receive(absl::Span<uint8_t> buffer, const Wait& wait) {
  if (!link_) return EmptyHandle("Link::Receive");
  session_->MaybePump();
  LinkState& l = *link_;
  l.peeked = false;  // a copying receive consumes a peeked frame
  hsi::Frame f;
  if (absl::Status s = WaitForLinkFrame(*session_, *nic_, l, wait, &f); !s.ok()) return s;
  if (absl::Status s = Fits(l, f, buffer); !s.ok()) return s;  // it stays
  return l.rx.TryReceive(buffer);  // the frame just peeked
}

absl::Status Link::SendBatch(absl::Span<const absl::Span<const uint8_t>> frames, const Wait& wait, size_t* sent) {
  if (sent != nullptr) *sent = 0;
  if (!link_) return EmptyHandle("Link::SendBatch");
  session_->MaybePump();
  LinkState& l = *link_;
  size_t n = 0;
  absl::Status st;
  for (const absl::Span<const uint8_t> f : frames) {
    if (uint8_t* p = l.down ? nullptr : l.tx.TryReserve(f.size()); p != nullptr) {
      if (!f.empty()) std::memcpy(p, f.data(), f.size());
      l.tx.CommitDeferred(f.size(), internal::kTypeUnicast);
      ++n;
      continue;
    }
    // Full, too long, down or broken: what is committed goes out first,
    // then the one send that waits (and says what went wrong).
    l.tx.Publish();
    st = session_->SendOnLink(*nic_, l, f, wait, internal::kTypeUnicast);
    if (!st.ok()) break;
    ++n;
  }
  l.tx.Publish();
  if (sent != nullptr) *sent = n;
  return st;
}

absl::StatusOr<size_t> Link::ReceiveBatch(absl::Span<uint8_t> buffer, absl::Span<size_t> lengths, const Wait& wait) {
  if (!link_) return EmptyHandle("Link::ReceiveBatch");
  if (lengths.empty()) return absl::InvalidArgumentError("Link::ReceiveBatch: no room for a length");
  session_->MaybePump();
  LinkState& l = *link_;
  l.peeked = false;  // a copying receive consumes a peeked frame
  hsi::Frame f;
  if (absl::Status s = WaitForLinkFrame(*session_, *nic_, l, wait, &f); !s.ok()) return s;
  if (absl::Status s = Fits(l, f, buffer); !s.ok()) return s;  // it stays
  size_t n = 0, off = 0;
  do {
    if (f.payload.size() > buffer.size() - off) break;  // it stays for the next call
    if (!f.payload.empty()) std::memcpy(buffer.data() + off, f.payload.data(), f.payload.size());
    lengths[n++] = f.payload.size();
    off += f.payload.size();
    l.rx.ReleaseDeferred();
  } while (n < lengths.size() && l.rx.TryPeek(&f));
  l.rx.Publish();  // the freed space, and a producer waiting for it, once
  return n;
}

absl::StatusOr<absl::Span<const uint8_t>> Link::Peek(const Wait& wait) {
  if (!link_) return EmptyHandle("Link::Peek");
  session_->MaybePump();
  LinkState& l = *link_;
  hsi::Frame f;
  if (absl::Status s = WaitForLinkFrame(*session_, *nic_, l, wait, &f); !s.ok()) return s;
  l.peeked = true;
  return f.payload;
}

void Link::Release() {
  if (link_ && link_->peeked) {
    link_->rx.Release();
    link_->peeked = false;
  }
}

}  // namespace hsi
