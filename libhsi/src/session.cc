#include "hsi/session.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "hsi/nic.h"
#include "internal/session_state.h"
#include "internal/syscall.h"

namespace hsi {

using internal::LinkState;
using internal::NicState;
using internal::SessionState;

absl::StatusOr<std::string> ResolveSocketPath(absl::string_view explicit_path) {
  if (!explicit_path.empty()) return std::string(explicit_path);
  if (const char* env = std::getenv("HSI_SOCKET"); env != nullptr && env[0] != '\0') return std::string(env);
  if (::geteuid() == 0) return std::string("/run/hsi/hsid.sock");
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && xdg[0] != '\0') {
    return absl::StrCat(xdg, "/hsi/hsid.sock");
  }
  return absl::FailedPreconditionError(
      "no hsid socket: pass a socket path, or set HSI_SOCKET, or XDG_RUNTIME_DIR (for non-root users)");
}

namespace internal {

std::string NicState::ChpidText() const {
  return Chpid(static_cast<uint8_t>(info.chpid)).ToString();
}

void NicState::Forget(const std::shared_ptr<LinkState>& l) {
  active.erase(std::remove(active.begin(), active.end(), l), active.end());
  auto it = by_peer.find(l->peer.value());
  if (it != by_peer.end() && it->second == l) by_peer.erase(it);
  ForgetHot();
  if (peeked == l) peeked.reset();
}

SessionState::~SessionState() { Close(); }

void SessionState::Close() {
  closed_ = true;
  ctl_.Close();
}

absl::Status SessionState::Open(bool reclaim) {
  wire::ClaimRequest req = wire::Zeroed<wire::ClaimRequest>();
  wire::SetName(req.lpar, opt_.lpar);
  req.flags = reclaim ? uint32_t{wire::kClaimReclaim} : uint32_t{0};
  absl::StatusOr<wire::ClaimReply> rep = ctl_.Open(req);
  if (!rep.ok()) return rep.status();
  is_admin_ = rep->is_admin != 0;
  ever_connected_ = true;
  return absl::OkStatus();
}

void SessionState::OnLost(const absl::Status& why) {
  next_reconnect_ = absl::Now();
  // hsid forgot the spares it offered; the next one offers new ones.
  for (auto& nic : nics_) nic->spares.clear();
  orphan_spares_.clear();
  deferred_spares_.clear();
  backoff_ = absl::Milliseconds(10);
  // Out of fds locally is the caller's to fix, not hsid's: keep the code.
  auto lost = [&](const std::string& link_name) {
    return absl::Status(
        why.code() == absl::StatusCode::kResourceExhausted ? why.code() : absl::StatusCode::kUnavailable,
        absl::StrCat(link_name, ": hsid connection lost during link setup", why.message().empty() ? "" : ": ",
                     why.message()));
  };
  // Links in setup cannot complete without hsid; links that are up stay up.
  for (auto it = links_.begin(); it != links_.end();) {
    auto next = std::next(it);
    if (it->second->state == LinkState::kSetup) {
      it->second->down = true;
      it->second->down_status = lost(it->second->Name());
      links_.erase(it);
    }
    it = next;
  }
  // hsid dropped the pending setups with the connection; a call waiting for
  // one learns why (the next call asks the new connection afresh).
  for (PendingSetup& p : setups_) {
    if (p.failed) continue;
    p.failed = true;
    p.status = lost(absl::StrCat("link ", p.local.ToString(), "->", p.peer.ToString()));
  }
}

void SessionState::Pump() {
  if (ctl_.connected()) {
    ctl_.Pump();
    if (!defer_spares_ && !deferred_spares_.empty()) SealDeferred();
    return;
  }
  if (!closed_ && opt_.reconnect && ever_connected_ && !in_reconnect_ && absl::Now() >= next_reconnect_) {
    Reconnect();
  }
}

absl::Status SessionState::EnsureConnected() {
  if (!ctl_.connected()) Pump();
  if (!ctl_.connected()) {
    return absl::UnavailableError(absl::StrCat("hsid at ", path(), " is not reachable (reconnecting with backoff)"));
  }
  return absl::OkStatus();
}

void SessionState::Reconnect() {
  in_reconnect_ = true;
  ctl_.set_timeout(absl::Milliseconds(500));
  absl::Status s = Open(/*reclaim=*/true);
  if (s.ok()) {
    // hsid rebuilds its tables from us: the NICs with their addresses, then
    // every live link, each end handing in its own (sealed) segment.
    links_.clear();
    for (auto& nic : nics_) {
      if (!Reattach(*nic, &s)) break;
    }
    for (const auto& [name, req] : cf_declared_) {
      wire::AdminReply rep;
      if (!s.ok() || !ctl_.connected()) break;
      s = Call(req, {}, &rep);
    }
    if (!ctl_.connected() && s.ok()) s = absl::UnavailableError("hsid connection lost while re-registering");
  }
  ctl_.set_timeout(opt_.timeout);
  in_reconnect_ = false;
  if (!s.ok()) {
    ctl_.Close();
    next_reconnect_ = absl::Now() + backoff_;
    backoff_ = std::min(backoff_ * 2, absl::Milliseconds(100));
  }
}

bool SessionState::Reattach(NicState& nic, absl::Status* s) {
  wire::AttachRequest req = wire::Zeroed<wire::AttachRequest>();
  req.chpid = nic.info.chpid;
  req.address = nic.info.address.value();
  std::vector<UniqueFd> fds;
  absl::StatusOr<UniqueFd> bell = internal::DupFd(nic.bell_ring_end, "NIC doorbell");
  if (!bell.ok()) {
    *s = bell.status();
    return false;
  }
  fds.push_back(std::move(*bell));
  wire::AttachReply rep;
  in_attach_ = true;
  absl::Status a = Call(req, std::move(fds), &rep);
  in_attach_ = false;
  if (!ctl_.connected()) {
    *s = a;
    return false;
  }
  if (!a.ok()) {
    orphan_spares_.clear();
    nic.up = false;
    nic.down_status =
        absl::UnavailableError(absl::StrCat(nic.Name(), ": could not re-attach after hsid restarted: ", a.message()));
    // hsid ids start at 1: the old id may now be another NIC's, whose
    // events must not land here.
    nic.nic_id = 0;
    return true;
  }
  nic.nic_id = rep.nic_id;
  // A fresh attach is up unless the new hsid says otherwise (a
  // NicStateEvent follows if it holds the NIC down): a down state the old
  // hsid set must not outlive it.
  nic.up = true;
  nic.down_status = absl::OkStatus();
  // The restarted hsid may have another definition of the CHPID (a new
  // config). Links up now keep the geometry they were made with; new ones
  // get the CHPID's current one, so NicInfo follows hsid.
  nic.info.subnet = Subnet(Address(rep.subnet), static_cast<int>(rep.prefix));
  nic.info.mfs = rep.mfs;
  nic.info.mtu = rep.mtu;
  nic.info.geometry = RingGeometry{rep.capacity, rep.mtu};
  nic.info.drop = rep.overflow == wire::kOverflowDrop;
  AdoptSpares(nic);
  // hsid lost what the owner declared with its tables.
  if (absl::Status d = DeclareInterface(nic); !d.ok() && !ctl_.connected()) {
    *s = d;
    return false;
  }
  Relink(nic);
  return ctl_.connected();
}

void SessionState::Relink(NicState& nic) {
  for (const auto& l : nic.active) {
    if (l->down) continue;
    wire::RelinkRequest rr = wire::Zeroed<wire::RelinkRequest>();
    rr.nic_id = nic.nic_id;
    rr.peer_address = l->peer.value();
    std::vector<UniqueFd> segfd;
    absl::StatusOr<UniqueFd> seg = l->own.DupFd();
    if (!seg.ok()) continue;
    segfd.push_back(std::move(*seg));
    wire::LinkReply lr;
    absl::Status r = Call(rr, std::move(segfd), &lr);
    if (!ctl_.connected()) return;
    if (!r.ok()) {
      l->down = true;
      l->down_status = absl::UnavailableError(absl::StrCat(l->Name(), ": lost in an hsid restart: ", r.message()));
      continue;
    }
    l->link_id = lr.link_id;
    links_[Key(lr.link_id, nic.nic_id)] = l;
  }
}

NicState* SessionState::NicById(uint32_t nic_id) {
  for (auto& n : nics_) {
    if (n->nic_id == nic_id && !n->detached) return n.get();
  }
  return nullptr;
}

void SessionState::OnEvent(wire::Message& m) {
  switch (m.type) {
    case wire::MsgType::kLinkOffer: return OnOffer(m);
    case wire::MsgType::kLinkPeer: return OnPeer(m);
    case wire::MsgType::kLinkDown: return OnDown(m);
    case wire::MsgType::kNicStateEvent: return OnNicState(m);
    case wire::MsgType::kSpareOffer: return OnSpareOffer(m);
    case wire::MsgType::kLinkSpareUp: return OnSpareUp(m);
    default: return;
  }
}

void SessionState::OnOffer(wire::Message& m) {
  const auto o = m.As<wire::LinkOffer>();
  wire::LinkSealed sealed = wire::Zeroed<wire::LinkSealed>();
  sealed.link_id = o.link_id;
  sealed.nic_id = o.nic_id;
  NicState* nic = NicById(o.nic_id);
  const RingGeometry g{o.capacity, o.mtu};
  absl::Status s;
  auto l = std::make_shared<LinkState>();
  if (nic == nullptr) {
    s = absl::NotFoundError("no such NIC");
  } else if (g.capacity != nic->info.geometry.capacity || g.mtu != nic->info.geometry.mtu) {
    s = absl::InvalidArgumentError("geometry differs from the CHPID's");
  } else {
    absl::StatusOr<Segment> own = Segment::MapOwner(std::move(m.fds[0]), g.segment_size());
    if (own.ok()) {
      l->own = std::move(*own);
    } else {
      s = own.status();
    }
  }
  sealed.code = static_cast<uint32_t>(s.code());
  if (s.ok()) {
    l->link_id = o.link_id;
    l->chpid = nic->info.chpid;
    l->local = nic->info.address;
    l->peer = Address(o.peer_address);
    l->peer_lpar = wire::NameOf(o.peer_lpar);
    l->geometry = g;
    l->drop = nic->info.drop;
    l->own_bell = nic->bell;
    links_[Key(o.link_id, o.nic_id)] = l;
  }
  // A failed send loses the connection; OnLost() says why.
  ctl_.Send(wire::Encode(0, sealed), absl::Now() + opt_.timeout).IgnoreError();
}

void SessionState::OnPeer(wire::Message& m) {
  const auto p = m.As<wire::LinkPeer>();
  auto it = links_.find(Key(p.link_id, p.nic_id));
  if (it == links_.end() || it->second->state != LinkState::kSetup) return;
  Activate(it, p.link_id, p.nic_id, std::move(m.fds[0]), std::move(m.fds[1]), /*bell_private=*/false);
}

void SessionState::GiveUp(LinkMap::iterator it, uint32_t link_id, uint32_t nic_id, const absl::Status& s) {
  std::shared_ptr<LinkState> l = it->second;
  l->down = true;
  l->down_status = absl::DataLossError(absl::StrCat(l->Name(), ": the peer's segment or doorbell is unusable: ",
                                                    s.message()));
  SetupFailed(link_id, nic_id, l->down_status);
  links_.erase(it);
  wire::LinkClose close = wire::Zeroed<wire::LinkClose>();
  close.link_id = link_id;
  close.nic_id = nic_id;
  const wire::WireStatus w = wire::ToWire(l->down_status);
  close.code = w.code;
  std::memcpy(close.text, w.message, sizeof(close.text));
  ctl_.Send(wire::Encode(0, close), absl::Now() + opt_.timeout).IgnoreError();
}

void SessionState::Activate(LinkMap::iterator it, uint32_t link_id, uint32_t nic_id, UniqueFd peer_segment,
                            UniqueFd peer_bell, bool bell_private) {
  std::shared_ptr<LinkState> l = it->second;
  NicState* nic = NicById(nic_id);
  if (nic == nullptr) return GiveUp(it, link_id, nic_id, absl::NotFoundError("NIC detached"));
  absl::StatusOr<Segment> peer = Segment::MapPeer(std::move(peer_segment), l->geometry.segment_size());
  if (!peer.ok()) return GiveUp(it, link_id, nic_id, peer.status());
  absl::StatusOr<Doorbell> bell = Doorbell::Adopt(std::move(peer_bell));
  if (!bell.ok()) return GiveUp(it, link_id, nic_id, bell.status());
  l->peer_segment = std::move(*peer);
  l->peer_bell = std::move(*bell);
  // Ring the peer through a file of our own where the uid allows: no other
  // holder can make it blocking, so a ring is a write without an fcntl.
  if (!bell_private || !l->peer_bell.AssumePrivate()) l->peer_bell.MakePrivate();
  absl::StatusOr<RingProducer> tx = RingProducer::Create(l->own, l->peer_segment, *l->own_bell, l->peer_bell, l->geometry);
  if (!tx.ok()) return GiveUp(it, link_id, nic_id, tx.status());
  absl::StatusOr<RingConsumer> rx = RingConsumer::Create(l->own, l->peer_segment, *l->own_bell, l->peer_bell, l->geometry);
  if (!rx.ok()) return GiveUp(it, link_id, nic_id, rx.status());
  l->tx = std::move(*tx);
  l->rx = std::move(*rx);
  l->state = LinkState::kReady;
  SetupUp(link_id, nic_id);
  // A previous link to this peer that died stays in `active` until drained.
  nic->active.push_back(l);
  nic->by_peer[l->peer.value()] = l;
  nic->ForgetHot();
}

void SessionState::OnSpareOffer(wire::Message& m) {
  NicState* nic = in_attach_ ? nullptr : NicById(m.As<wire::SpareOffer>().nic_id);
  if (nic == nullptr) {
    // Sent before the AttachReply that names the NIC. More than an attach
    // brings are not kept (hsid sends no more).
    if (orphan_spares_.size() < wire::kSparesPerNic) orphan_spares_.push_back(std::move(m));
  } else if (defer_spares_) {
    deferred_spares_.push_back(std::move(m));  // at most kSparesPerNic per NIC: hsid sends no more
  } else {
    SealSpare(*nic, m);
  }
}

void SessionState::SealDeferred() {
  std::vector<wire::Message> offers = std::move(deferred_spares_);
  deferred_spares_.clear();
  for (wire::Message& m : offers) {
    if (NicState* nic = NicById(m.As<wire::SpareOffer>().nic_id)) SealSpare(*nic, m);
  }
}

void SessionState::AdoptSpares(NicState& nic) {
  for (wire::Message& m : orphan_spares_) {
    if (m.As<wire::SpareOffer>().nic_id == nic.nic_id) SealSpare(nic, m);
  }
  orphan_spares_.clear();
}

void SessionState::SealSpare(NicState& nic, wire::Message& m) {
  const auto o = m.As<wire::SpareOffer>();
  const RingGeometry g{o.capacity, o.mtu};
  absl::Status s;
  if (!opt_.link_spares) {
    s = absl::FailedPreconditionError("this session holds no spares (SessionOptions::link_spares)");
  } else if (g.capacity != nic.info.geometry.capacity || g.mtu != nic.info.geometry.mtu) {
    s = absl::InvalidArgumentError("geometry differs from the CHPID's");
  } else {
    // Maps it as our own and seals it against every other writer.
    absl::StatusOr<Segment> own = Segment::MapOwner(std::move(m.fds[0]), g.segment_size());
    if (own.ok()) {
      // Fault its header page in now, not in the set-up that uses it.
      (void)*static_cast<const volatile uint8_t*>(own->data());
      nic.spares.push_back(NicState::Spare{o.spare_id, g, std::move(*own)});
    } else {
      s = own.status();
    }
  }
  wire::SpareSealed sealed = wire::Zeroed<wire::SpareSealed>();
  sealed.nic_id = o.nic_id;
  sealed.spare_id = o.spare_id;
  sealed.code = static_cast<uint32_t>(s.code());
  // A failed send loses the connection; OnLost() says why.
  ctl_.Send(wire::Encode(0, sealed), absl::Now() + opt_.timeout).IgnoreError();
}

void SessionState::OnSpareUp(wire::Message& m) {
  const auto u = m.As<wire::LinkSpareUp>();
  NicState* nic = NicById(u.nic_id);
  const RingGeometry g{u.capacity, u.mtu};
  auto l = std::make_shared<LinkState>();
  l->link_id = u.link_id;
  l->peer = Address(u.peer_address);
  l->peer_lpar = wire::NameOf(u.peer_lpar);
  l->geometry = g;
  absl::Status s;
  if (nic == nullptr) {
    s = absl::NotFoundError("NIC detached");
  } else {
    l->chpid = nic->info.chpid;
    l->local = nic->info.address;
    l->drop = nic->info.drop;
    l->own_bell = nic->bell;
    auto sp = std::find_if(nic->spares.begin(), nic->spares.end(),
                           [&](const NicState::Spare& x) { return x.id == u.spare_id; });
    if (sp == nic->spares.end()) {
      s = absl::NotFoundError(absl::StrCat("hsid named spare segment ", u.spare_id, ", which this NIC does not hold"));
    } else if (sp->geometry.capacity != g.capacity || sp->geometry.mtu != g.mtu) {
      s = absl::InvalidArgumentError("geometry differs from the spare segment's");
    } else {
      l->own = std::move(sp->segment);
      nic->spares.erase(sp);
    }
  }
  auto it = links_.insert_or_assign(Key(u.link_id, u.nic_id), l).first;
  if (!s.ok()) return GiveUp(it, u.link_id, u.nic_id, s);
  Activate(it, u.link_id, u.nic_id, std::move(m.fds[0]), std::move(m.fds[1]), (u.flags & wire::kPeerBellPrivate) != 0);
}

void SessionState::OnDown(const wire::Message& m) {
  const auto d = m.As<wire::LinkDown>();
  const absl::Status why = absl::UnavailableError(absl::string_view(d.text, strnlen(d.text, sizeof(d.text))));
  SetupFailed(d.link_id, d.nic_id, why);
  auto it = links_.find(Key(d.link_id, d.nic_id));
  if (it == links_.end()) return;
  it->second->down = true;
  it->second->down_status = why;
  links_.erase(it);
}

void SessionState::OnNicState(const wire::Message& m) {
  const auto e = m.As<wire::NicStateEvent>();
  NicState* nic = NicById(e.nic_id);
  if (nic == nullptr) return;
  nic->up = e.up != 0;
  nic->down_status = nic->up ? absl::OkStatus()
                             : absl::UnavailableError(absl::StrCat(nic->Name(), " was set down by an admin"));
}

absl::StatusOr<std::shared_ptr<NicState>> SessionState::Attach(uint32_t chpid, std::optional<Address> address) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // The NIC's doorbell is split (a pipe): hsid and the peers get only its
  // ring end, so no peer can consume our wake-ups (docs/ring.md).
  auto nic = std::make_shared<NicState>();
  absl::StatusOr<Doorbell> bell = Doorbell::CreateSplit(&nic->bell_ring_end);
  if (!bell.ok()) return bell.status();
  nic->bell = std::make_shared<Doorbell>(std::move(*bell));
  absl::StatusOr<UniqueFd> dup = internal::DupFd(nic->bell_ring_end, "NIC doorbell");
  if (!dup.ok()) return dup.status();
  wire::AttachRequest req = wire::Zeroed<wire::AttachRequest>();
  req.chpid = chpid;
  req.address = address ? address->value() : 0;
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(*dup));
  wire::AttachReply rep;
  in_attach_ = true;
  absl::Status called = Call(req, std::move(fds), &rep);
  in_attach_ = false;
  if (!called.ok()) {
    orphan_spares_.clear();
    return called;
  }
  nic->nic_id = rep.nic_id;
  nic->info.chpid = chpid;
  nic->info.address = Address(rep.address);
  nic->info.subnet = Subnet(Address(rep.subnet), static_cast<int>(rep.prefix));
  nic->info.mfs = rep.mfs;
  nic->info.mtu = rep.mtu;
  nic->info.geometry = RingGeometry{rep.capacity, rep.mtu};
  nic->info.drop = rep.overflow == wire::kOverflowDrop;
  nics_.push_back(nic);
  AdoptSpares(*nic);
  return nic;
}

absl::Status SessionState::DeclareInterface(NicState& nic) {
  if (!nic.iface) return absl::OkStatus();
  const NicInterface& i = *nic.iface;
  const std::string what = absl::StrCat(nic.Name(), ": interface ", i.name);
  if (i.name.size() >= wire::kIfNameLen) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the name is longer than ", wire::kIfNameLen - 1,
                                                   " characters"));
  }
  if (i.netns.size() >= wire::kNameLen) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": netns ", i.netns, " is longer than ",
                                                   wire::kNameLen - 1, " characters"));
  }
  wire::NicInterfaceRequest req = wire::Zeroed<wire::NicInterfaceRequest>();
  req.nic_id = nic.nic_id;
  req.layer = static_cast<uint32_t>(std::max(i.layer, 0));
  std::memcpy(req.ifname, i.name.data(), i.name.size());
  std::memcpy(req.netns, i.netns.data(), i.netns.size());
  // The same checks hsid makes, so that a bad name is refused here, by name.
  if (absl::Status s = req.Validate(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", s.message()));
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  wire::NicInterfaceReply rep;
  return Call(req, {}, &rep);
}

absl::StatusOr<std::string> SessionState::PeerLpar(NicState& nic, Address peer) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  wire::OwnerRequest req = wire::Zeroed<wire::OwnerRequest>();
  req.nic_id = nic.nic_id;
  req.address = peer.value();
  wire::OwnerReply rep;
  if (absl::Status s = Call(req, {}, &rep); !s.ok()) return s;
  return wire::NameOf(rep.lpar);
}

absl::Status SessionState::GrantMemory(NicState& nic, Address peer, uint64_t tag, UniqueFd memfd,
                                       absl::Time deadline) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  wire::MemGrantRequest req = wire::Zeroed<wire::MemGrantRequest>();
  req.nic_id = nic.nic_id;
  req.peer_address = peer.value();
  req.tag = tag;
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(memfd));
  wire::MemGrantReply rep;
  return Call(req, std::move(fds), &rep, deadline);
}

absl::StatusOr<UniqueFd> SessionState::TakeMemory(NicState& nic, Address from, uint64_t tag, uint64_t* size,
                                                  absl::Time deadline) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  wire::MemTakeRequest req = wire::Zeroed<wire::MemTakeRequest>();
  req.nic_id = nic.nic_id;
  req.from_address = from.value();
  req.tag = tag;
  wire::Message m;
  absl::Status s = ctl_.CallRaw(wire::kTypeOf<wire::MemTakeRequest>, &req, sizeof(req), {},
                                wire::kTypeOf<wire::MemTakeReply>, &m, deadline);
  if (!s.ok()) return s;
  if (m.fds.size() != 1) return absl::InternalError(absl::StrCat(nic.Name(), ": memory grant came without its fd"));
  *size = m.As<wire::MemTakeReply>().size;
  return std::move(m.fds[0]);
}

void SessionState::Detach(NicState& nic) {
  if (nic.detached) return;
  if (ctl_.connected()) {
    wire::DetachRequest req = wire::Zeroed<wire::DetachRequest>();
    req.nic_id = nic.nic_id;
    wire::DetachReply rep;
    (void)Call(req, {}, &rep);
  }
  nic.detached = true;
  for (auto& l : nic.active) {
    if (!l->down) {
      l->down = true;
      l->down_status = absl::FailedPreconditionError(absl::StrCat(l->Name(), ": NIC ", l->local.ToString(), " was detached"));
    }
  }
  for (auto it = links_.begin(); it != links_.end();) {
    auto next = std::next(it);
    if ((it->first & 0xffffffffu) == nic.nic_id) links_.erase(it);
    it = next;
  }
  std::erase_if(setups_, [&](const PendingSetup& p) { return p.nic_id == nic.nic_id; });
  nics_.erase(std::remove_if(nics_.begin(), nics_.end(), [&](const auto& n) { return n.get() == &nic; }), nics_.end());
}

}  // namespace internal

// ------------------------------------------------------------------ Session

Session::Session() = default;
Session::~Session() {
  if (state_) state_->Close();
}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&& o) noexcept {
  if (this != &o) {
    if (state_) state_->Close();
    state_ = std::move(o.state_);
  }
  return *this;
}

absl::StatusOr<Session> Session::Connect(SessionOptions options) {
  if (options.lpar.empty()) return absl::InvalidArgumentError("session: an LPAR name is required");
  char name[wire::kNameLen] = {};
  if (options.lpar.size() >= wire::kNameLen) {
    return absl::InvalidArgumentError(absl::StrCat("LPAR name \"", options.lpar, "\" is longer than 31 characters"));
  }
  std::memcpy(name, options.lpar.data(), options.lpar.size());
  if (absl::Status s = wire::ValidateName(name, "LPAR name", false); !s.ok() || options.lpar == "*") {
    return absl::InvalidArgumentError(absl::StrCat("LPAR name \"", options.lpar, "\": ",
                                                   s.ok() ? "\"*\" is reserved" : s.message()));
  }
  absl::StatusOr<std::string> path = ResolveSocketPath(options.socket_path);
  if (!path.ok()) return path.status();
  auto state = std::make_shared<SessionState>(std::move(options), *path);
  if (absl::Status s = state->Open(false); !s.ok()) return s;
  return Session(std::move(state));
}

absl::StatusOr<Nic> Session::AttachNic(uint32_t chpid, std::optional<Address> address) {
  if (!state_) return absl::FailedPreconditionError("session: not connected");
  if (chpid > 0xff) return absl::InvalidArgumentError(absl::StrCat("CHPID ", chpid, " is not in 00..FF"));
  absl::StatusOr<std::shared_ptr<NicState>> n = state_->Attach(chpid, address);
  if (!n.ok()) return n.status();
  Nic nic;
  nic.session_ = state_;
  nic.nic_ = std::move(*n);
  return nic;
}

absl::Status Session::Poll() {
  if (!state_) return absl::FailedPreconditionError("session: not connected");
  state_->Pump();
  return state_->connected() ? absl::OkStatus()
                             : absl::UnavailableError(absl::StrCat("hsid at ", state_->path(), " is not reachable"));
}

bool Session::connected() const { return state_ && state_->connected(); }
int Session::fd() const { return state_ ? state_->ctl_fd() : -1; }
absl::Time Session::next_poll() const { return state_ ? state_->reconnect_at() : absl::InfiniteFuture(); }
const std::string& Session::lpar() const { return state_->options().lpar; }
const std::string& Session::socket_path() const { return state_->path(); }

}  // namespace hsi

namespace hsi {

absl::Status Session::DeclareCfStructure(const CfStructureView& v, bool withdraw) {
  if (!state_) return absl::FailedPreconditionError("declare CF structure: the Session is empty");
  const auto& kTypes = wire::kCfTypeNames;
  const auto& kRoles = wire::kCfRoleNames;
  const std::string what = absl::StrCat("declare CF structure \"", absl::CHexEscape(v.name), "\"");
  wire::CfDeclareRequest req = wire::Zeroed<wire::CfDeclareRequest>();
  req.active = withdraw ? 0 : 1;
  wire::WireCfStructure& s = req.s;
  auto set = [&](char (&dst)[wire::kNameLen], const std::string& src, const char* field) -> absl::Status {
    if (src.size() >= wire::kNameLen) return absl::InvalidArgumentError(absl::StrCat(what, ": ", field, " longer than 31"));
    std::memcpy(dst, src.data(), src.size());
    return absl::OkStatus();
  };
  if (absl::Status st = set(s.name, v.name, "name"); !st.ok()) return st;
  if (!withdraw) {
    s.type = static_cast<uint32_t>(std::find(std::begin(kTypes) + 1, std::end(kTypes), v.type) - std::begin(kTypes));
    if (s.type > wire::kCfCache) return absl::InvalidArgumentError(absl::StrCat(what, ": type \"", v.type, "\""));
    s.duplex_role = static_cast<uint32_t>(std::find(std::begin(kRoles), std::end(kRoles), v.duplex) - std::begin(kRoles));
    if (s.duplex_role > wire::kCfSecondary) return absl::InvalidArgumentError(absl::StrCat(what, ": duplex \"", v.duplex, "\""));
    s.partner_up = v.partner_up ? 1 : 0;
    s.size = v.size;
    s.in_use = v.in_use;
    s.connectors = static_cast<uint32_t>(v.connectors.size());
    for (size_t i = 0; i < v.connectors.size() && i < wire::kCfConnectorsShown; ++i) {
      if (absl::Status st = set(s.connector[i], v.connectors[i].first, "connector"); !st.ok()) return st;
      if (absl::Status st = set(s.connector_lpar[i], v.connectors[i].second, "connector LPAR"); !st.ok()) return st;
    }
    s.retained = v.retained;
    s.failed = static_cast<uint32_t>(v.failed.size());
    for (size_t i = 0; i < v.failed.size() && i < wire::kCfFailedShown; ++i) {
      if (absl::Status st = set(s.failed_name[i], v.failed[i], "failed connector"); !st.ok()) return st;
    }
    s.requests = v.requests;
    s.queued = v.queued;
    s.granted_after_wait = v.granted_after_wait;
    s.refused = v.refused;
  }
  if (absl::Status st = req.Validate(); !st.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", st.message()));
  // Kept first: a reconnect declares it even if this call finds hsid away.
  if (withdraw) {
    state_->cf_declared_.erase(v.name);
  } else {
    state_->cf_declared_[v.name] = req;
  }
  if (absl::Status st = state_->EnsureConnected(); !st.ok()) return st;
  wire::AdminReply rep;
  absl::Status st = state_->Call(req, {}, &rep);
  if (st.code() == absl::StatusCode::kResourceExhausted) state_->cf_declared_.erase(v.name);  // hsid keeps no more
  return st;
}

}  // namespace hsi
