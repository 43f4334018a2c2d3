// nic.cc: hsi::Nic, the data path of one NIC: sends to any peer (setting
// the link up on first use, broadcast through link_setup.cc), receives from
// every link round robin.
#include "hsi/nic.h"

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "internal/data_path.h"
#include "internal/session_state.h"

namespace hsi {

using internal::EmptyHandle;
using internal::LinkState;
using internal::NicState;
using internal::NicUsable;
using internal::PeekLink;
using internal::Took;

Nic::Nic() = default;
Nic::~Nic() {
  if (session_ && nic_) session_->Detach(*nic_);
}
Nic::Nic(Nic&&) noexcept = default;
Nic& Nic::operator=(Nic&& o) noexcept {
  if (this != &o) {
    if (session_ && nic_) session_->Detach(*nic_);
    session_ = std::move(o.session_);
    nic_ = std::move(o.nic_);
  }
  return *this;
}

const NicInfo& Nic::info() const { return nic_->info; }

absl::Status Nic::DeclareInterface(const NicInterface& iface) {
  if (!session_ || !nic_) return EmptyHandle("Nic::DeclareInterface");
  std::optional<NicInterface> before = nic_->iface;
  nic_->iface = iface;
  absl::Status s = session_->DeclareInterface(*nic_);
  if (s.code() == absl::StatusCode::kInvalidArgument) nic_->iface = std::move(before);
  return s;
}
absl::StatusOr<std::string> Nic::PeerLpar(Address peer) {
  if (!session_ || !nic_) return EmptyHandle("Nic::PeerLpar");
  return session_->PeerLpar(*nic_, peer);
}
absl::Status Nic::GrantMemory(Address peer, uint64_t tag, UniqueFd memfd, const Wait& wait) {
  if (!session_ || !nic_) return EmptyHandle("Nic::GrantMemory");
  return session_->GrantMemory(*nic_, peer, tag, std::move(memfd), wait.deadline);
}
absl::StatusOr<UniqueFd> Nic::TakeMemory(Address from, uint64_t tag, uint64_t* size, const Wait& wait) {
  if (!session_ || !nic_) return EmptyHandle("Nic::TakeMemory");
  return session_->TakeMemory(*nic_, from, tag, size, wait.deadline);
}
int Nic::fd() const { return nic_->bell->fd(); }

namespace {

// One pass over the NIC's links, round robin. True if a frame was copied
// (or peeked) or there is a status to report in *st. take(link, &err)
// returns what it found, and sets err with kError or kSkip.
template <typename Take>
bool TryAny(NicState& n, absl::Status* st, Take take) {
  if (!n.up) {
    *st = n.down_status;
    return true;
  }
  const size_t count = n.active.size();
  size_t idx = n.rr < count ? n.rr : 0;
  for (size_t k = 0; k < count; ++k, idx = idx + 1 == count ? 0 : idx + 1) {
    // By reference: this runs in every spin of a wait, and a shared_ptr copy
    // costs two atomic read-modify-writes. `take` does not change `active`;
    // Forget() does, so it gets a copy.
    const std::shared_ptr<LinkState>& l = n.active[idx];
    // Read `down` before looking at the ring: a frame committed before the
    // peer died is visible by the time we learn of the death.
    const bool down = l->down;
    absl::Status s;
    const Took took = take(l, &s);
    if (took == Took::kFrame || took == Took::kSkip) {
      if (took == Took::kSkip) *st = std::move(s);
      n.rr = idx + 1;
      return true;
    }
    if (took == Took::kEmpty) {
      if (!down) continue;
      *st = l->down_status;  // drained: report once, then forget the link
      n.Forget(std::shared_ptr<LinkState>(l));
      return true;
    }
    *st = absl::Status(s.code(), absl::StrCat(l->Name(), ": ", s.message()));
    n.Forget(std::shared_ptr<LinkState>(l));
    return true;
  }
  return false;
}

// Copies the frame `f` just peeked on `l` into `buffer` (it fits) and
// releases it: what Receive() returns for it.
Received TakePeeked(LinkState& l, const hsi::Frame& f, absl::Span<uint8_t> buffer) {
  const size_t len = f.payload.size();
  if (len != 0) std::memcpy(buffer.data(), f.payload.data(), len);
  Received r{l.peer, len, internal::IsBroadcast(f.type), internal::FrameTag(f.type)};
  l.rx.Release();
  return r;
}

// Arms (on) or disarms every link of the NIC, for its doorbell or, with
// `fs`, for a futex sleep (internal::SetWakeup).
void ArmAll(NicState& n, bool on, internal::FutexSleep* fs = nullptr) {
  for (auto& l : n.active) internal::SetWakeup(l->rx, on, fs);
}

}  // namespace

absl::Status Nic::SendTo(Address to, absl::Span<const uint8_t> payload, const Wait& wait, uint8_t tag) {
  if (!nic_) return EmptyHandle("Nic::SendTo");
  NicState& n = *nic_;
  session_->MaybePump();  // first: it may bring the NIC back up
  // The hot path: the same peer as last time, its link up, room in the
  // ring. No lookup, no shared_ptr copy, no Status but OK.
  if (LinkState* hot = n.hot_link; hot != nullptr && n.hot_peer == to.value() && n.up && !n.detached &&
                                   payload.size() <= n.info.mtu &&
                                   !hot->down && hot->tx.TrySend(payload, internal::FrameType(internal::kTypeUnicast, tag))) {
    return absl::OkStatus();
  }
  if (absl::Status s = NicUsable(n); !s.ok()) return s;
  if (payload.size() > n.info.mtu) {
    return absl::InvalidArgumentError(absl::StrCat("CHPID ", n.ChpidText(), ": frame ", n.info.address.ToString(), "->",
                                                   to.ToString(), " of ", payload.size(), " bytes exceeds the MTU ",
                                                   n.info.mtu, " (MFS ", n.info.mfs / 1024, "K)"));
  }
  if (to == n.info.subnet.broadcast()) return session_->Broadcast(n, payload, wait, tag);
  if (!n.info.subnet.IsHost(to)) {
    return absl::InvalidArgumentError(absl::StrCat("CHPID ", n.ChpidText(), ": ", to.ToString(),
                                                   " is not a NIC address in subnet ", n.info.subnet.ToString()));
  }
  absl::StatusOr<std::shared_ptr<LinkState>> l = session_->GetLink(n, to, wait.deadline);
  if (!l.ok()) return l.status();
  // GetLink() answers from by_peer (or just put the new link there).
  if (auto it = n.by_peer.find(to.value()); it != n.by_peer.end() && it->second == *l) {
    n.hot_link = l->get();
    n.hot_peer = to.value();
  }
  return session_->SendOnLink(n, **l, payload, wait, internal::FrameType(internal::kTypeUnicast, tag));
}

absl::StatusOr<Received> Nic::Receive(absl::Span<uint8_t> buffer, const Wait& wait) {
  if (!nic_) return EmptyHandle("Nic::Receive");
  NicState& n = *nic_;
  session_->MaybePump();  // first: it may bring the NIC back up
  if (absl::Status s = NicUsable(n); !s.ok()) return s;
  if (n.peeked) Release();
  // The hot path: the link whose turn it is (TryAny's round robin starts
  // there too, so fairness is the same) has a frame that fits. One peek, one
  // copy, one release: no wait loop, no status but OK.
  if (const size_t count = n.active.size(); count != 0) {
    const size_t idx = n.rr < count ? n.rr : 0;
    LinkState& l = *n.active[idx];
    hsi::Frame f;
    if (!l.down && l.rx.TryPeek(&f) && f.payload.size() <= buffer.size()) {
      n.rr = idx + 1;
      return TakePeeked(l, f, buffer);
    }
  }
  Received r;
  absl::Status st;
  bool got = false;
  auto take = [&](const std::shared_ptr<LinkState>& lp, absl::Status* err) {
    LinkState& l = *lp;
    hsi::Frame f;
    if (const Took t = PeekLink(l, &f, err); t != Took::kFrame) return t;
    if (f.payload.size() > buffer.size()) {
      // The frame stays for a call with a buffer that fits it (or a Peek);
      // the other links take their turns meanwhile (TryAny moves on).
      *err = absl::ResourceExhaustedError(absl::StrCat(n.Name(), ": frame of ", f.payload.size(), " bytes from ",
                                                       l.peer.ToString(), " does not fit the ", buffer.size(),
                                                       "-byte buffer"));
      return Took::kSkip;
    }
    r = TakePeeked(l, f, buffer);
    got = true;
    return Took::kFrame;
  };
  absl::Status w = session_->WaitLoop(n, wait, [&] { return TryAny(n, &st, take); },
                                      [&](bool on, internal::FutexSleep* fs) { ArmAll(n, on, fs); });
  if (got) return r;
  if (!st.ok()) return st;
  (void)w;
  return n.NoFrame();
}

absl::StatusOr<FrameView> Nic::Peek(const Wait& wait) {
  if (!nic_) return EmptyHandle("Nic::Peek");
  NicState& n = *nic_;
  session_->MaybePump();  // first: it may bring the NIC back up
  if (absl::Status s = NicUsable(n); !s.ok()) return s;
  if (n.peeked) {
    hsi::Frame f;
    if (n.peeked->rx.TryPeek(&f)) return FrameView{n.peeked->peer, f.payload, internal::IsBroadcast(f.type), internal::FrameTag(f.type)};
    n.peeked.reset();
  }
  session_->MaybePump();
  FrameView v;
  absl::Status st;
  bool got = false;
  auto take = [&](const std::shared_ptr<LinkState>& lp, absl::Status* err) {
    hsi::Frame f;
    if (const Took t = PeekLink(*lp, &f, err); t != Took::kFrame) return t;
    v = FrameView{lp->peer, f.payload, internal::IsBroadcast(f.type), internal::FrameTag(f.type)};
    n.peeked = lp;
    got = true;
    return Took::kFrame;
  };
  session_->WaitLoop(n, wait, [&] { return TryAny(n, &st, take); }, [&](bool on, internal::FutexSleep* fs) { ArmAll(n, on, fs); }).IgnoreError();
  if (got) return v;
  if (!st.ok()) return st;
  return n.NoFrame();
}

void Nic::Release() {
  if (nic_ && nic_->peeked) {
    nic_->peeked->rx.Release();
    nic_->peeked.reset();
  }
}

absl::StatusOr<hsi::Link> Nic::Link(Address peer, const Wait& wait) {
  if (!nic_) return EmptyHandle("Nic::Link");
  NicState& n = *nic_;
  session_->MaybePump();  // first: it may bring the NIC back up
  if (absl::Status s = NicUsable(n); !s.ok()) return s;
  if (!n.info.subnet.IsHost(peer)) {
    return absl::InvalidArgumentError(absl::StrCat("CHPID ", n.ChpidText(), ": ", peer.ToString(),
                                                   " is not a NIC address in subnet ", n.info.subnet.ToString()));
  }
  absl::StatusOr<std::shared_ptr<LinkState>> l = session_->GetLink(n, peer, wait.deadline);
  if (!l.ok()) return l.status();
  hsi::Link link;
  link.session_ = session_;
  link.nic_ = nic_;
  link.link_ = std::move(*l);
  return link;
}

bool Nic::PrepareWait(bool drain) {
  if (!nic_) return true;  // Receive() then reports the empty handle
  NicState& n = *nic_;
  // Events bump hsid's event word; replies and hsid's death make the
  // control socket readable, which the Poller pumps for when its poll sees
  // it. So no recvmsg() here when nothing came.
  session_->MaybePump();
  // A doorbell not drained (its poll did not fire) has no rings: a ring
  // would have completed the poll. One that did is drained here.
  if (drain) n.bell->Drain();
  if (!n.up || n.detached) return true;
  ArmAll(n, true);
  for (auto& l : n.active) {
    hsi::Frame f;
    if (l->down || !l->rx.ok() || l->rx.TryPeek(&f)) return true;
  }
  return false;
}

}  // namespace hsi
