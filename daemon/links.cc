#include "links.h"


#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "log.h"

namespace hsid {
namespace {

using hsi::Address;
using hsi::UniqueFd;

constexpr absl::Duration kSetupTimeout = absl::Seconds(5);

// The name a memfd was created with ("" if `fd` is not a memfd).
std::string MemfdName(int fd) {
  char buf[256];
  const ssize_t n = ::readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  absl::string_view v(buf, static_cast<size_t>(n));
  if (!absl::ConsumePrefix(&v, "/memfd:")) return "";
  absl::ConsumeSuffix(&v, " (deleted)");
  return std::string(v);
}

std::pair<uint32_t, uint32_t> PairKey(Address x, Address y) {
  return x < y ? std::make_pair(x.value(), y.value()) : std::make_pair(y.value(), x.value());
}

}  // namespace

// ------------------------------------------------------------ setup

void Links::OnLink(Client& c, const Message& m) {
  const auto req = m.As<wire::LinkRequest>();
  auto fail = [&](absl::Status s) { clients_.ReplyError<wire::LinkReply>(c, m.request_id, s); };
  absl::StatusOr<Nic*> own = nics_.Own(c, req.nic_id);
  if (!own.ok()) return fail(own.status());
  Nic& a = **own;
  const Address peer(req.peer_address);
  const ChpidConfig& ch = config_.chpids.at(a.chpid);
  const std::string where = absl::StrCat("CHPID ", ChpidName(a.chpid), ": link ", a.address.ToString(), "->",
                                         peer.ToString());
  absl::StatusOr<Nic*> b = Peer(a, peer, ch, where);
  if (!b.ok()) return fail(b.status());
  if (auto p = by_pair_.find(PairKey(a.address, peer)); p != by_pair_.end()) {
    wire::LinkReply r = wire::Zeroed<wire::LinkReply>();
    r.link_id = p->second;
    return clients_.Reply(c, m.request_id, r);
  }
  Client* bc = clients_.Find((*b)->client);
  if (bc == nullptr) return fail(absl::UnavailableError(absl::StrCat(where, ": the peer is disconnecting")));
  for (const Client* x : std::initializer_list<const Client*>{&c, bc}) {
    if (absl::Status s = LinkQuota(x->lpar, where); !s.ok()) return fail(s);
  }
  if (c.in_flight >= config_.max_in_flight) {
    fail(absl::ResourceExhaustedError(absl::StrCat(where, ": more than max_in_flight = ", config_.max_in_flight,
                                                   " link setups pending; disconnecting")));
    return clients_.Close(c, "over the in-flight quota");
  }
  const hsi::RingGeometry g{ch.queue_size, ch.mtu};
  if (spares_.Ready(a, g) && spares_.Ready(**b, g)) return OpenFromSpares(c, *bc, a, **b, g, m.request_id);
  absl::StatusOr<NewSegments> segments = MakeSegments(g, a.address, peer, where);
  if (!segments.ok()) return fail(segments.status());
  Open(c, *bc, a, **b, g, std::move(*segments), m.request_id);
}

absl::StatusOr<Nic*> Links::Peer(const Nic& a, Address peer, const ChpidConfig& ch, const std::string& where) {
  if (!a.up) return absl::UnavailableError(absl::StrCat(where, ": NIC ", a.address.ToString(), " is down"));
  if (peer == a.address) return absl::InvalidArgumentError(absl::StrCat(where, ": a NIC cannot link to itself"));
  Nic* b = nics_.At(peer);
  if (b == nullptr || b->chpid != a.chpid) {
    return absl::NotFoundError(absl::StrCat(where, ": no NIC has address ", peer.ToString(), " on CHPID ",
                                            ChpidName(a.chpid), " (subnet ", ch.subnet.ToString(), ")"));
  }
  if (!b->up) return absl::UnavailableError(absl::StrCat(where, ": NIC ", peer.ToString(), " is down"));
  return b;
}

absl::StatusOr<Links::NewSegments> Links::MakeSegments(const hsi::RingGeometry& g, Address a, Address b,
                                                       const std::string& where) {
  absl::StatusOr<UniqueFd> sa = hsi::CreateRingSegment(g, SegmentName(a));
  absl::StatusOr<UniqueFd> sb = hsi::CreateRingSegment(g, SegmentName(b));
  if (!sa.ok() || !sb.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat(where, ": creating ring segments: ",
                                                     (!sa.ok() ? sa.status() : sb.status()).message()));
  }
  // The copies the offers carry, made before any table changes: out of fds
  // fails this request (passing -1 to sendmsg would drop the recipient).
  UniqueFd offer_a(::fcntl(sa->get(), F_DUPFD_CLOEXEC, 0)), offer_b(::fcntl(sb->get(), F_DUPFD_CLOEXEC, 0));
  if (!offer_a.valid() || !offer_b.valid()) {
    return absl::ResourceExhaustedError(absl::StrCat(where, ": duplicating a ring segment fd: ",
                                                     std::strerror(errno)));
  }
  return NewSegments{std::move(*sa), std::move(*sb), std::move(offer_a), std::move(offer_b)};
}

void Links::Open(Client& c, const Client& bc, Nic& a, Nic& b, const hsi::RingGeometry& g, NewSegments s,
                 uint32_t request_id) {
  Link l;
  l.id = next_link_++;
  l.chpid = a.chpid;
  l.a = LinkEnd{a.id, a.address, std::move(s.a), false};
  l.b = LinkEnd{b.id, b.address, std::move(s.b), false};
  l.requester = c.id;
  l.deadline = absl::Now() + kSetupTimeout;
  ++c.in_flight;
  ++setups_pending_;
  a.links.insert(l.id);
  b.links.insert(l.id);
  by_pair_[PairKey(a.address, b.address)] = l.id;
  const uint32_t link_id = l.id;
  const std::string lpar_a = c.lpar, lpar_b = bc.lpar;
  // Messages first, sends after: a failing send only marks a client closing.
  std::vector<std::pair<uint32_t, OutMessage>> out;  // nic id, message
  for (auto [end, other, peer_lpar] : {std::tuple{&l.a, &l.b, &lpar_b}, std::tuple{&l.b, &l.a, &lpar_a}}) {
    wire::LinkOffer o = wire::Zeroed<wire::LinkOffer>();
    o.link_id = l.id;
    o.nic_id = end->nic;
    o.peer_address = other->address.value();
    o.mtu = g.mtu;
    o.capacity = g.capacity;
    wire::SetName(o.peer_lpar, *peer_lpar);
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(end == &l.a ? s.offer_a : s.offer_b));
    out.emplace_back(end->nic, wire::Encode(0, o, std::move(fds)));
  }
  links_.emplace(link_id, std::move(l));
  wire::LinkReply r = wire::Zeroed<wire::LinkReply>();
  r.link_id = link_id;
  clients_.Reply(c, request_id, r);
  for (auto& [nic_id, msg] : out) nics_.Notify(nic_id, std::move(msg));
}

void Links::OpenFromSpares(Client& c, const Client& bc, Nic& a, Nic& b, const hsi::RingGeometry& g,
                           uint32_t request_id) {
  Spares::Taken sa = spares_.Take(a.id), sb = spares_.Take(b.id);
  Link l;
  l.id = next_link_++;
  l.chpid = a.chpid;
  l.state = Link::kReady;
  l.a = LinkEnd{a.id, a.address, std::move(sa.segment), true};
  l.b = LinkEnd{b.id, b.address, std::move(sb.segment), true};
  a.links.insert(l.id);
  b.links.insert(l.id);
  by_pair_[PairKey(a.address, b.address)] = l.id;
  const uint32_t link_id = l.id;
  Link& link = links_.emplace(link_id, std::move(l)).first->second;
  wire::LinkReply r = wire::Zeroed<wire::LinkReply>();
  r.link_id = link_id;
  deferred_offers_.emplace_back(a.id, g);  // new spares for both, whatever happens below
  deferred_offers_.emplace_back(b.id, g);
  // The requester's end first: it waits on its control socket (so no
  // doorbell for it), and its set-up is over once it has this. Then the
  // peer's, which may be asleep on its NIC's doorbell.
  for (auto [end, other, spare, peer_lpar] : {std::tuple{&link.a, &link.b, sa.id, &bc.lpar},
                                              std::tuple{&link.b, &link.a, sb.id, static_cast<const std::string*>(&c.lpar)}}) {
    bool bell_private = false;
    std::vector<UniqueFd> fds = PeerFds(*other, &bell_private);
    if (fds.empty()) {
      if (end == &link.a) clients_.Reply(c, request_id, r);  // the LinkDown that follows names the link
      const std::string t = absl::StrCat("link ", link.a.address.ToString(), "<->", link.b.address.ToString(),
                                         ": hsid is out of file descriptors");
      return Drop(link_id, wire::kDownSetupFailed, t, t, true, true);
    }
    wire::LinkSpareUp u = wire::Zeroed<wire::LinkSpareUp>();
    u.link_id = link_id;
    u.nic_id = end->nic;
    u.spare_id = spare;
    u.peer_address = other->address.value();
    u.capacity = g.capacity;
    u.mtu = g.mtu;
    u.flags = bell_private ? uint32_t{wire::kPeerBellPrivate} : 0;
    wire::SetName(u.peer_lpar, *peer_lpar);
    if (end == &link.a) {
      clients_.Send(c, wire::Encode(0, u, std::move(fds)));
      clients_.Reply(c, request_id, r);
    } else {
      deferred_ups_.push_back(DeferredUp{link_id, end->nic, wire::Encode(0, u, std::move(fds))});
    }
  }
  if (verbose_) Log(absl::StrCat("link ", link_id, " ready (spares)"));
  for (Observer* o : observers_) o->LinkReady(link);
}

void Links::RunDeferred() {
  std::vector<DeferredUp> ups = std::move(deferred_ups_);
  deferred_ups_.clear();
  for (DeferredUp& d : ups) {
    if (links_.contains(d.link_id)) nics_.Notify(d.nic, std::move(d.message));  // else it went meanwhile
  }
  std::vector<std::pair<uint32_t, hsi::RingGeometry>> offers = std::move(deferred_offers_);
  deferred_offers_.clear();
  for (const auto& [nic, g] : offers) {
    if (const Nic* n = nics_.Find(nic)) spares_.Offer(*n, g);
  }
}

std::vector<UniqueFd> Links::PeerFds(const LinkEnd& other, bool* bell_private) {
  Nic& peer = nics_.Get(other.nic);
  std::vector<UniqueFd> fds;
  fds.emplace_back(::fcntl(other.segment.get(), F_DUPFD_CLOEXEC, 0));
  // Each peer gets an open file of its own (flags no one else can change)
  // when hsid may reopen the pipe; else a copy of hsid's.
  absl::StatusOr<UniqueFd> bell = peer.bell.OpenPrivate();
  if (bell.ok() && bell_private != nullptr && peer.bell.kind() == hsi::Doorbell::Kind::kRingEnd) *bell_private = true;
  if (!bell.ok()) bell = peer.bell.Dup();
  fds.push_back(bell.ok() ? std::move(*bell) : UniqueFd());
  if (!fds[0].valid() || !fds[1].valid()) return {};
  return fds;
}

absl::Status Links::LinkQuota(const std::string& lpar, const std::string& where) {
  const LparConfig* pol = config_.FindLpar(lpar);
  if (pol == nullptr || LinksOf(lpar) < pol->max_links) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(where, ": LPAR \"", lpar, "\" has reached its quota max_links = ",
                                                   pol->max_links, " (config ", config_.source, ")"));
}

uint32_t Links::LinksOf(const std::string& lpar) {
  uint32_t n = 0;
  for (const auto& [id, l] : links_) {
    for (const LinkEnd* e : {&l.a, &l.b}) {
      const Nic* nic = nics_.Find(e->nic);
      if (nic == nullptr) continue;
      const Client* c = clients_.FindAny(nic->client);
      if (c != nullptr && c->lpar == lpar) ++n;
    }
  }
  return n;
}

void Links::OnSealed(Client& c, const Message& m) {
  const auto req = m.As<wire::LinkSealed>();
  LinkEnd* end = NoticeEnd(c, "LinkSealed", req.link_id, req.nic_id);
  if (end == nullptr) return;
  Link& l = links_.at(req.link_id);
  if (l.state != Link::kSetup) return;
  const std::string where = absl::StrCat("link ", l.a.address.ToString(), "<->", l.b.address.ToString(),
                                         " on CHPID ", ChpidName(l.chpid));
  if (req.code != 0) {
    const std::string t = absl::StrCat(where, ": setup failed: ", end->address.ToString(),
                                       " could not map its segment (status code ", req.code, ")");
    return Drop(l.id, wire::kDownSetupFailed, t, t, true, true);
  }
  // Invariant 1: the owner must have sealed against new writers before its
  // peer gets the fd.
  if (!hsi::IsSealedAgainstWrites(end->segment.get())) {
    const std::string t = absl::StrCat(where, ": setup failed: ", c.Public(), " reported its segment sealed but it is not");
    Log(absl::StrCat(t, " (", c.Who(), ")"));
    return Drop(l.id, wire::kDownSetupFailed, t, t, true, true);
  }
  end->sealed = true;
  if (l.a.sealed && l.b.sealed) FinishSetup(l);
}

LinkEnd* Links::NoticeEnd(Client& c, absl::string_view msg, uint32_t link_id, uint32_t nic_id) {
  // Out of order: answered and dropped like a malformed message.
  auto violation = [&](const std::string& what) -> LinkEnd* {
    clients_.AnswerAndClose(c, absl::InvalidArgumentError(absl::StrCat("protocol: ", msg, ": ", what)),
                            absl::StrCat("protocol violation: ", msg, ": ", what));
    return nullptr;
  };
  if (link_id == 0 || link_id >= next_link_) return violation(absl::StrCat("link id ", link_id, " was never offered"));
  auto it = links_.find(link_id);
  if (it == links_.end()) return nullptr;  // already torn down
  Link& l = it->second;
  LinkEnd* end = nic_id == 0 ? nullptr : l.a.nic == nic_id ? &l.a : l.b.nic == nic_id ? &l.b : nullptr;
  const Nic* n = end == nullptr ? nullptr : nics_.Find(nic_id);
  if (n == nullptr || n->client != c.id) {
    return violation(absl::StrCat("link ", link_id, " has no end NIC id ", nic_id, " of this client"));
  }
  return end;
}

// An end gave its link up (it could not use the peer's segment, say): the
// link goes, and the other end learns why. The end that closed is not told.
void Links::OnClose(Client& c, const Message& m) {
  const auto req = m.As<wire::LinkClose>();
  const LinkEnd* end = NoticeEnd(c, "LinkClose", req.link_id, req.nic_id);
  if (end == nullptr) return;
  Link& l = links_.at(req.link_id);
  const bool is_a = end == &l.a;
  const std::string why(req.text, strnlen(req.text, sizeof(req.text)));  // validated printable by Decode()
  const std::string t = absl::StrCat("link ", l.a.address.ToString(), "<->", l.b.address.ToString(), " on CHPID ",
                                     ChpidName(l.chpid), ": ", end->address.ToString(), " (", c.Public(),
                                     ") closed it: ", why.empty() ? "no reason given" : why);
  Log(absl::StrCat(t, " [", c.Who(), "]"));
  Drop(l.id, wire::kDownPeerClosed, t, t, !is_a, is_a);  // tell the other end
}

void Links::FinishSetup(Link& l) {
  l.state = Link::kReady;
  l.deadline = absl::InfiniteFuture();
  EndSetup(l);
  std::vector<std::pair<uint32_t, OutMessage>> out;
  for (auto [end, other] : {std::pair{&l.a, &l.b}, std::pair{&l.b, &l.a}}) {
    std::vector<UniqueFd> fds = PeerFds(*other);
    if (fds.empty()) {
      const std::string t = absl::StrCat("link ", l.a.address.ToString(), "<->", l.b.address.ToString(),
                                         ": hsid is out of file descriptors");
      return Drop(l.id, wire::kDownSetupFailed, t, t, true, true);
    }
    wire::LinkPeer p = wire::Zeroed<wire::LinkPeer>();
    p.link_id = l.id;
    p.nic_id = end->nic;
    out.emplace_back(end->nic, wire::Encode(0, p, std::move(fds)));
  }
  if (verbose_) Log(absl::StrCat("link ", l.id, " ready"));
  for (auto& [nic_id, msg] : out) nics_.Notify(nic_id, std::move(msg));
  for (Observer* o : observers_) o->LinkReady(l);
}

// ------------------------------------------------------------ relink

void Links::OnRelink(Client& c, Message& m) {
  const auto req = m.As<wire::RelinkRequest>();
  auto fail = [&](absl::Status s) { clients_.ReplyError<wire::LinkReply>(c, m.request_id, s); };
  absl::StatusOr<Nic*> own = nics_.Own(c, req.nic_id);
  if (!own.ok()) return fail(own.status());
  Nic& n = **own;
  const Address peer(req.peer_address);
  UniqueFd seg = std::move(m.fds[0]);
  // The same checks a new link gets: a relink may only restore a link that
  // could have existed, and counts against the LPAR's quota while it waits.
  auto cit = config_.chpids.find(n.chpid);
  if (cit == config_.chpids.end()) return fail(absl::NotFoundError("relink: the NIC's CHPID is gone"));
  const std::string where = absl::StrCat("CHPID ", ChpidName(n.chpid), ": relink ", n.address.ToString(), "->",
                                         peer.ToString());
  absl::StatusOr<hsi::RingGeometry> geometry = CheckRelink(n, peer, cit->second.subnet, seg, where);
  if (!geometry.ok()) return fail(geometry.status());
  if (auto p = by_pair_.find(PairKey(n.address, peer)); p != by_pair_.end()) {
    return CompleteRelink(c, m.request_id, links_.at(p->second), n, peer, std::move(seg), *geometry);
  }
  if (absl::Status s = LinkQuota(c.lpar, where); !s.ok()) return fail(s);
  AwaitPeer(c, m.request_id, n, peer, std::move(seg));
}

absl::StatusOr<hsi::RingGeometry> Links::CheckRelink(const Nic& n, Address peer, const hsi::Subnet& subnet,
                                                     const UniqueFd& seg, const std::string& where) {
  if (!n.up) return absl::UnavailableError(absl::StrCat(where, ": NIC ", n.address.ToString(), " is down"));
  if (peer == n.address || !subnet.IsHost(peer)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": the peer is not another host address of subnet ",
                                                   subnet.ToString()));
  }
  // The same checks link set-up makes by construction: a sealed ring
  // segment of a valid geometry (at most 1 GiB) and of its size, made by
  // hsid for this NIC's address (not the peer's segment, which the client
  // holds read-only and could hand in as its own).
  absl::StatusOr<hsi::RingGeometry> geometry = hsi::InspectSealedRingSegment(seg.get());
  if (!geometry.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", geometry.status().message()));
  if (const std::string name = MemfdName(seg.get()); name != SegmentName(n.address)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": the segment is \"", name,
                                                   "\", not the one hsid made for ", n.address.ToString()));
  }
  return geometry;
}

void Links::CompleteRelink(Client& c, uint32_t request_id, Link& l, Nic& n, Address peer, UniqueFd seg,
                           const hsi::RingGeometry& geometry) {
  absl::StatusOr<hsi::RingGeometry> other = hsi::InspectSealedRingSegment(l.a.segment.get());
  if (l.state != Link::kRelinkWait || l.b.address != n.address || l.chpid != n.chpid || !other.ok() ||
      other->capacity != geometry.capacity || other->mtu != geometry.mtu) {
    return clients_.ReplyError<wire::LinkReply>(
        c, request_id,
        absl::AlreadyExistsError(absl::StrCat("relink ", n.address.ToString(), "->", peer.ToString(),
                                              ": hsid already has this link")));
  }
  l.b.nic = n.id;
  l.b.segment = std::move(seg);
  l.b.sealed = true;
  l.state = Link::kReady;
  l.deadline = absl::InfiniteFuture();
  n.links.insert(l.id);
  wire::LinkReply r = wire::Zeroed<wire::LinkReply>();
  r.link_id = l.id;
  clients_.Reply(c, request_id, r);
  for (Observer* o : observers_) o->LinkReady(l);
}

void Links::AwaitPeer(Client& c, uint32_t request_id, Nic& n, Address peer, UniqueFd seg) {
  Link l;
  l.id = next_link_++;
  l.chpid = n.chpid;
  l.state = Link::kRelinkWait;
  l.a = LinkEnd{n.id, n.address, std::move(seg), true};
  l.b = LinkEnd{0, peer, UniqueFd(), false};
  l.deadline = absl::Now() + absl::Milliseconds(config_.reclaim_grace_ms);
  n.links.insert(l.id);
  by_pair_[PairKey(n.address, peer)] = l.id;
  wire::LinkReply r = wire::Zeroed<wire::LinkReply>();
  r.link_id = l.id;
  links_.emplace(l.id, std::move(l));
  clients_.Reply(c, request_id, r);
}

// ------------------------------------------------------------ teardown

void Links::SendDown(uint32_t nic_id, uint32_t link_id, uint32_t reason, const std::string& text) {
  wire::LinkDown d = wire::Zeroed<wire::LinkDown>();
  d.link_id = link_id;
  d.nic_id = nic_id;
  d.reason = reason;
  wire::WireStatus w = wire::ToWire(absl::UnavailableError(text));
  std::memcpy(d.text, w.message, sizeof(d.text));
  nics_.Notify(nic_id, wire::Encode(0, d));
}

void Links::EndSetup(Link& l) {
  if (l.requester == 0) return;
  --setups_pending_;
  Client* c = clients_.FindAny(l.requester);
  if (c != nullptr && c->in_flight > 0) --c->in_flight;
  l.requester = 0;
}

void Links::EndSetupsOf(uint64_t client) {
  for (auto& [lid, l] : links_) {
    if (l.requester == client) EndSetup(l);
  }
}

void Links::Drop(uint32_t link_id, uint32_t reason, const std::string& text_for_a, const std::string& text_for_b,
                 bool notify_a, bool notify_b) {
  auto it = links_.find(link_id);
  if (it == links_.end()) return;
  Link& l = it->second;
  EndSetup(l);
  if (notify_a && l.a.nic != 0) SendDown(l.a.nic, link_id, reason, text_for_a);
  if (notify_b && l.b.nic != 0) SendDown(l.b.nic, link_id, reason, text_for_b);
  for (const LinkEnd* e : {&l.a, &l.b}) {
    if (Nic* n = nics_.Find(e->nic)) n->links.erase(link_id);
  }
  if (l.state == Link::kReady) {
    for (Observer* o : observers_) o->LinkGone(l);
  }
  auto p = by_pair_.find(PairKey(l.a.address, l.b.address));
  if (p != by_pair_.end() && p->second == link_id) by_pair_.erase(p);
  if (verbose_) Log(absl::StrCat("link ", link_id, " freed"));
  links_.erase(it);  // closes hsid's segment fds; the memory lives while an end maps it
}

void Links::DropAllOf(const Nic& n, uint32_t reason, const std::string& why) {
  const std::vector<uint32_t> links(n.links.begin(), n.links.end());
  for (uint32_t lid : links) {
    auto lit = links_.find(lid);
    if (lit == links_.end()) continue;
    Link& l = lit->second;
    const bool is_a = l.a.nic == n.id;
    const std::string text = absl::StrCat("link ", (is_a ? l.b.address : l.a.address).ToString(), "->",
                                          n.address.ToString(), " on CHPID ", ChpidName(n.chpid), ": peer ",
                                          n.address.ToString(), " is gone: ", why);
    Drop(lid, reason, text, text, !is_a, is_a);
  }
}

bool Links::AnyDeadline() const {
  for (const auto& [id, l] : links_) {
    if (l.deadline != absl::InfiniteFuture()) return true;
  }
  return false;
}

void Links::Expire(absl::Time now) {
  std::vector<uint32_t> expired;
  for (const auto& [id, l] : links_) {
    if (l.deadline <= now) expired.push_back(id);
  }
  for (uint32_t id : expired) {
    auto it = links_.find(id);
    if (it == links_.end()) continue;
    Link& l = it->second;
    if (l.state == Link::kSetup) {
      const std::string t = absl::StrCat("link ", l.a.address.ToString(), "<->", l.b.address.ToString(),
                                         ": setup timed out (an end did not seal its segment within ",
                                         absl::FormatDuration(kSetupTimeout), ")");
      Drop(id, wire::kDownSetupFailed, t, t, true, true);
    } else if (l.state == Link::kRelinkWait) {
      Drop(id, wire::kDownPeerLost,
           absl::StrCat("peer ", l.b.address.ToString(), " did not re-register within ",
                        absl::FormatDuration(absl::Milliseconds(config_.reclaim_grace_ms)),
                        " after hsid restarted; its LPAR is gone"),
           "", true, false);
    }
  }
}

}  // namespace hsid
