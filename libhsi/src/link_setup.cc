// link_setup.cc: SessionState setting links up (one, or many under one
// deadline) and broadcasting over them.
//
// A link comes up in one round trip when both NICs hold a sealed spare
// segment (SessionOptions::link_spares, daemon/spares.h): this NIC's
// LinkRequest, and hsid's LinkSpareUp to each end with the other's segment
// and doorbell (session.cc, OnSpareUp), then its LinkReply. Otherwise in
// three steps: the LinkRequest (and LinkReply), a LinkOffer to each end
// with its own segment (each end maps it, seals it and answers LinkSealed),
// then a LinkPeer to each end with the other's segment and doorbell
// (session.cc, OnOffer/OnPeer).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "internal/session_state.h"

namespace hsi::internal {

namespace {
// hsid gives a setup up after 5 s (kSetupTimeout in daemon/server.cc) and
// says so with a LinkDown; this only keeps an entry that never heard of its
// end from counting against max_link_setups for ever.
constexpr absl::Duration kSetupBackstop = absl::Seconds(10);

// Settles `w` as failed with `status`, whose message names the link.
void Fail(SetupWant& w, absl::Status status) {
  w.done = true;
  w.reason = std::string(status.message());
  w.status = std::move(status);
}
// Settles `w` as failed with `reason`, in a status that names the link.
void Fail(SetupWant& w, absl::StatusCode code, const NicState& nic, std::string reason) {
  w.done = true;
  w.status = absl::Status(code, absl::StrCat("link ", nic.info.address.ToString(), "->", w.peer.ToString(), ": ",
                                             reason));
  w.reason = std::move(reason);
}

}  // namespace

SessionState::PendingSetup* SessionState::FindSetup(uint32_t nic_id, Address peer) {
  for (PendingSetup& p : setups_) {
    if (p.nic_id == nic_id && p.peer == peer) return &p;
  }
  return nullptr;
}

size_t SessionState::SetupsInFlight() {
  const absl::Time now = absl::Now();
  std::erase_if(setups_, [&](const PendingSetup& p) { return p.expires <= now; });
  return static_cast<size_t>(
      std::count_if(setups_.begin(), setups_.end(), [](const PendingSetup& p) { return !p.failed; }));
}

void SessionState::SetupUp(uint32_t link_id, uint32_t nic_id) {
  std::erase_if(setups_, [&](const PendingSetup& p) { return p.link_id == link_id && p.nic_id == nic_id; });
}

void SessionState::SetupFailed(uint32_t link_id, uint32_t nic_id, const absl::Status& why) {
  for (PendingSetup& p : setups_) {
    if (p.link_id == link_id && p.nic_id == nic_id && link_id != 0 && !p.failed) {
      p.failed = true;
      p.status = why;
    }
  }
}

void SessionState::OnStrayReply(wire::Message& m) {
  if (m.type != wire::MsgType::kLinkReply) return;  // a late reply to a request that timed out
  auto p = std::find_if(setups_.begin(), setups_.end(),
                        [&](const PendingSetup& x) { return x.request_id != 0 && x.request_id == m.request_id; });
  if (p == setups_.end()) return;
  const auto r = m.As<wire::LinkReply>();
  p->request_id = 0;
  if (absl::Status s = wire::FromWire(r.status); !s.ok()) {
    p->failed = true;
    p->status = std::move(s);
    return;
  }
  p->link_id = r.link_id;
  // hsid answers with the pair's link if it has one, which may be up.
  if (auto it = links_.find(Key(r.link_id, p->nic_id)); it != links_.end() && it->second->state == LinkState::kReady) {
    setups_.erase(p);
  }
}

absl::Status SessionState::StartSetup(NicState& nic, Address peer) {
  wire::LinkRequest req = wire::Zeroed<wire::LinkRequest>();
  req.nic_id = nic.nic_id;
  req.peer_address = peer.value();
  const uint32_t id = ctl_.NextRequestId();
  if (absl::Status s = ctl_.Send(wire::Encode(id, req), absl::Now() + call_timeout()); !s.ok()) return s;
  setups_.push_back(
      PendingSetup{nic.nic_id, nic.info.address, peer, id, 0, absl::Now() + kSetupBackstop, false, absl::OkStatus()});
  return absl::OkStatus();
}

bool SessionState::Settle(NicState& nic, SetupWant& w) {
  if (auto it = nic.by_peer.find(w.peer.value()); it != nic.by_peer.end()) {
    std::shared_ptr<LinkState> l = it->second;
    if (!l->down) {
      w.done = true;
      // Up, maybe made by the peer meanwhile: hsid holds one link per pair.
      std::erase_if(setups_, [&](const PendingSetup& p) { return p.nic_id == nic.nic_id && p.peer == w.peer; });
      w.link = std::move(l);
      return true;
    }
    // A dead link answers once with why; the next call makes a new link.
    nic.by_peer.erase(it);
    nic.ForgetHot();
    Fail(w, l->down_status);
    return true;
  }
  PendingSetup* p = FindSetup(nic.nic_id, w.peer);
  if (p == nullptr || !p->failed) return false;
  Fail(w, p->status);
  setups_.erase(setups_.begin() + (p - setups_.data()));
  return true;
}

template <typename OnReady>
void SessionState::SetUpLinks(NicState& nic, std::vector<SetupWant>& wants, absl::Time deadline, OnReady on_ready) {
  const absl::Time start = absl::Now();
  const bool session_bound = deadline > start + opt_.timeout;
  const absl::Time until = session_bound ? start + opt_.timeout : deadline;
  // Setups that failed while no call waited for them: this call asks anew.
  std::erase_if(setups_, [](const PendingSetup& p) { return p.failed; });
  // Settles what can be settled; the wants whose links are up wait in `up`
  // for on_ready, which notify() runs. True while a want is still open.
  std::vector<SetupWant*> up;
  auto settle_all = [&] {
    bool open = false;
    for (SetupWant& w : wants) {
      if (w.done) continue;
      if (!Settle(nic, w)) {
        open = true;
      } else if (w.link != nullptr) {
        up.push_back(&w);
      }
    }
    return open;
  };
  auto notify = [&] {
    for (SetupWant* w : up) on_ready(*w);  // may pump events; does not touch `up`
    up.clear();
  };
  bool open = settle_all();
  if (absl::Status s = open ? EnsureConnected() : absl::OkStatus(); !s.ok()) {
    for (SetupWant& w : wants) {
      if (!w.done) Fail(w, s);
    }
    return notify();
  }
  const size_t cap = std::max<uint32_t>(opt_.max_link_setups, 1);
  // Spares offered meanwhile wait (SealDeferred) until the requests are out.
  defer_spares_ = true;
  struct Undefer {
    bool& flag;
    ~Undefer() { flag = false; }
  } undefer{defer_spares_};
  for (;;) {
    if (!open) return notify();
    if (!ctl_.connected()) {
      for (SetupWant& w : wants) {
        if (!w.done) Fail(w, absl::StatusCode::kUnavailable, nic, "hsid connection lost during link setup");
      }
      return notify();
    }
    // Every setup not under way yet goes out now, as many as the cap
    // allows; then links already up get their turn (hsid and the peers work
    // on the new ones meanwhile), then all are awaited together.
    for (SetupWant& w : wants) {
      if (w.done || FindSetup(nic.nic_id, w.peer) != nullptr) continue;
      if (SetupsInFlight() >= cap || !StartSetup(nic, w.peer).ok()) break;
    }
    SealDeferred();  // while hsid works on the requests
    notify();
    if (!ctl_.connected()) continue;
    if (PollMs(until) != 0) ctl_.Await(until);
    Pump();
    open = settle_all();
    if (absl::Now() >= until) break;
  }
  notify();
  ExplainTimeout(nic, wants, start, until, session_bound);
}

absl::StatusOr<std::shared_ptr<LinkState>> SessionState::GetLink(NicState& nic, Address peer, absl::Time deadline) {
  if (auto it = nic.by_peer.find(peer.value()); it != nic.by_peer.end() && !it->second->down) return it->second;
  std::vector<SetupWant> wants(1);
  wants[0].peer = peer;
  SetUpLinks(nic, wants, deadline, [](SetupWant&) {});
  if (wants[0].link != nullptr) return std::move(wants[0].link);
  return wants[0].status;
}

void SessionState::ExplainTimeout(NicState& nic, std::vector<SetupWant>& wants, absl::Time start, absl::Time until,
                                  bool session_bound) {
  const size_t cap = std::max<uint32_t>(opt_.max_link_setups, 1);
  const std::string when =
      session_bound    ? absl::StrCat("within SessionOptions::timeout, ", absl::FormatDuration(opt_.timeout))
      : until <= start ? std::string("by the deadline, which had passed")
                       : absl::StrCat("by the deadline, after ",
                                      absl::FormatDuration(absl::Ceil(until - start, absl::Milliseconds(1))));
  for (SetupWant& w : wants) {
    if (w.done) continue;
    const PendingSetup* p = FindSetup(nic.nic_id, w.peer);
    if (!ctl_.connected()) {
      Fail(w, absl::StatusCode::kUnavailable, nic, "hsid connection lost during link setup");
    } else if (p == nullptr) {
      Fail(w, absl::StatusCode::kUnavailable, nic,
           absl::StrCat("link setup not started ", when, ": ", SetupsInFlight(),
                        " link setups of this session are pending (SessionOptions::max_link_setups = ", cap, ")"));
    } else if (p->request_id != 0) {
      Fail(w, absl::StatusCode::kDeadlineExceeded, nic, absl::StrCat("hsid did not answer the link request ", when));
    } else {
      Fail(w, absl::StatusCode::kDeadlineExceeded, nic,
           absl::StrCat("not up ", when, ": the peer has not sealed its end of the link; it does not answer",
                        " hsid's link offer, which hsid withdraws after 5s"));
    }
  }
}

absl::StatusOr<std::vector<Address>> SessionState::Peers(NicState& nic, absl::Time deadline) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  std::vector<Address> out;
  uint32_t cursor = 0;
  do {
    wire::PeersRequest req = wire::Zeroed<wire::PeersRequest>();
    req.nic_id = nic.nic_id;
    req.cursor = cursor;
    wire::PeersReply rep;
    if (absl::Status s = Call(req, {}, &rep, deadline); !s.ok()) return s;
    for (uint32_t i = 0; i < rep.count; ++i) out.emplace_back(rep.addresses[i]);
    cursor = rep.next_cursor;
  } while (cursor != 0);
  return out;
}

absl::Status SessionState::Broadcast(NicState& nic, absl::Span<const uint8_t> payload, const Wait& wait,
                                     uint8_t tag) {
  absl::StatusOr<std::vector<Address>> peers = Peers(nic, wait.deadline);
  if (!peers.ok()) return peers.status();
  std::vector<SetupWant> wants(peers->size());
  for (size_t i = 0; i < wants.size(); ++i) wants[i].peer = (*peers)[i];
  // Peers with a link get the frame first; the others as their links come
  // up, all under the one deadline.
  SetUpLinks(nic, wants, wait.deadline, [&](SetupWant& w) {
    if (absl::Status s = SendOnLink(nic, *w.link, payload, wait, FrameType(kTypeBroadcast, tag)); !s.ok()) Fail(w, std::move(s));
  });
  size_t reached = 0;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::vector<std::pair<std::string, std::vector<Address>>> not_reached;  // by reason, first seen first
  for (const SetupWant& w : wants) {
    if (w.status.ok()) {
      ++reached;
      continue;
    }
    if (code == absl::StatusCode::kOk) code = w.status.code();
    auto g = std::find_if(not_reached.begin(), not_reached.end(), [&](const auto& x) { return x.first == w.reason; });
    if (g == not_reached.end()) g = not_reached.insert(not_reached.end(), {w.reason, {}});
    g->second.push_back(w.peer);
  }
  if (code == absl::StatusCode::kOk) return absl::OkStatus();
  std::string text = absl::StrCat("CHPID ", nic.ChpidText(), ": broadcast from ", nic.info.address.ToString(),
                                  " reached ", reached, " of ", wants.size(), " peers; not reached: ");
  constexpr size_t kListed = 16;  // addresses named per reason
  for (size_t i = 0; i < not_reached.size(); ++i) {
    const auto& [reason, addrs] = not_reached[i];
    if (i > 0) absl::StrAppend(&text, "; ");
    for (size_t k = 0; k < addrs.size() && k < kListed; ++k) {
      absl::StrAppend(&text, k > 0 ? ", " : "", addrs[k].ToString());
    }
    if (addrs.size() > kListed) absl::StrAppend(&text, " and ", addrs.size() - kListed, " more");
    absl::StrAppend(&text, " (", reason, ")");
  }
  return absl::Status(code, text);
}

}  // namespace hsi::internal
