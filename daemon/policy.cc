#include "policy.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "log.h"

namespace hsid {
namespace {

using hsi::Address;
using hsi::UniqueFd;

constexpr absl::Duration kRecoveryWindow = absl::Milliseconds(400);

}  // namespace

// ------------------------------------------------------------ restart

void Policy::Start(const std::string& state_path, bool stale) {
  if (absl::StatusOr<HeldState> held = state_file_.Open(state_path); held.ok()) {
    if (!held->lpars.empty() || !held->nics.empty()) {
      const absl::Duration grace = absl::Milliseconds(config_.reclaim_grace_ms);
      Log(absl::StrCat("holding ", held->lpars.size(), " LPAR names and ", held->nics.size(),
                       " NIC addresses of the previous hsid for their owners for up to ",
                       absl::FormatDuration(grace), " (", state_path, ")"));
      holds_.Hold(std::move(*held), absl::Now() + grace);
    }
  } else {
    Log(absl::StrCat("ignoring the state file: ", held.status().message()));
  }
  state_dirty_ = true;  // the file describes this hsid's (empty) tables from now on
  if (stale) {
    // The previous hsid died without cleaning up: its clients will
    // re-register their NICs with their old addresses. Hold back dynamic
    // address assignment briefly so that a newcomer does not take one.
    recovery_until_ = absl::Now() + kRecoveryWindow;
    Log(absl::StrCat("found a stale socket: assigning new addresses only after ",
                     absl::FormatDuration(kRecoveryWindow), " while clients re-register"));
  }
}

void Policy::ExpireHolds(absl::Time now) {
  if (!holds_.active()) return;
  holds_.Expire(now);
  if (!holds_.active()) Log("the previous hsid's names and addresses are no longer held");
}

void Policy::RetryDeferred(absl::Time now) {
  if (deferred_.empty() || now < recovery_until_) return;
  std::vector<std::pair<uint64_t, Message>> todo = std::move(deferred_);
  deferred_.clear();
  for (auto& [cid, m] : todo) {
    if (Client* c = clients_.Find(cid)) OnAttach(*c, m);
  }
}

void Policy::SaveStateIfChanged() {
  if (!state_dirty_ || !state_file_.fd_ok()) return;
  state_dirty_ = false;
  HeldState st;
  clients_.ForEachLive([&](Client& c) {
    if (!c.lpar.empty()) st.lpars[c.lpar] = c.uid;
  });
  for (const auto& [id, n] : nics_.all()) {
    const Client* c = clients_.Find(n.client);
    if (c != nullptr && !c->lpar.empty()) st.nics[{n.chpid, n.address.value()}] = c->lpar;
  }
  if (absl::Status s = state_file_.Save(st); !s.ok()) Log(absl::StrCat("state file: ", s.message()));
}

// ------------------------------------------------------------ claim

void Policy::OnClaim(Client& c, const Message& m) {
  const auto req = m.As<wire::ClaimRequest>();
  const std::string name = wire::NameOf(req.lpar);
  if (absl::Status s = MayClaim(c, name); !s.ok()) {
    Log(absl::StrCat(c.Who(), ": claim refused: ", s.message()));
    return clients_.ReplyError<wire::ClaimReply>(c, m.request_id, s);
  }
  // The event page goes with the reply (a second, named claim of a
  // nameless connection gets a new one).
  absl::StatusOr<UniqueFd> page = c.events.Create();
  if (!page.ok()) {
    return clients_.ReplyError<wire::ClaimReply>(
        c, m.request_id,
        absl::ResourceExhaustedError(absl::StrCat("claim: hsid cannot make the event page: ", page.status().message())));
  }
  if (!name.empty()) {
    c.lpar = name;
    holds_.ReleaseName(name);
    state_dirty_ = true;
    Log(absl::StrCat(c.Who(), (req.flags & wire::kClaimReclaim) ? " reclaimed" : " claimed"));
  }
  clients_.Hello(c);
  wire::ClaimReply r = wire::Zeroed<wire::ClaimReply>();
  r.uid = c.uid;
  r.is_admin = c.admin ? 1 : 0;
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(*page));
  clients_.Send(c, wire::Encode(m.request_id, r, std::move(fds)));
}

absl::Status Policy::MayClaim(const Client& c, const std::string& name) {
  if (!c.lpar.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("this connection already claimed LPAR \"", c.lpar, "\""));
  }
  if (name.empty()) return absl::OkStatus();
  if (name == "*") return absl::InvalidArgumentError("\"*\" is not an LPAR name");
  const LparConfig* policy = config_.FindLpar(name);
  if (policy == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("LPAR \"", name, "\": not defined (no [[lpar]] named \"", name,
                                                    "\" or \"*\" in config ", config_.source, ")"));
  }
  bool allowed = std::find(policy->uids.begin(), policy->uids.end(), c.uid) != policy->uids.end();
  for (uint32_t g : c.gids) {
    allowed |= std::find(policy->gids.begin(), policy->gids.end(), g) != policy->gids.end();
  }
  if (!allowed) {
    // Who else may claim it is the policy's business: admins see the lists.
    return absl::PermissionDeniedError(absl::StrCat(
        "LPAR \"", name, "\": uid ", c.uid, " (gid ", c.gid, ") may not claim it",
        c.admin ? absl::StrCat(": not in allowed uids ", JoinIds(policy->uids), " or gids ", JoinIds(policy->gids))
                : std::string(),
        " (policy [[lpar]] name = \"", policy->name, "\" in config ", config_.source, ")"));
  }
  if (std::optional<uint32_t> holder = holds_.NameHeldFromOthers(name, c.uid)) {
    return absl::UnavailableError(absl::StrCat(
        "LPAR \"", name, "\" is ", holds_.Why(c.admin ? absl::StrCat("uid ", *holder) : "its previous owner")));
  }
  if (const Client* other = clients_.Claimant(name)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "LPAR \"", name, "\" is already claimed by ",
        c.admin || c.uid == other->uid ? absl::StrCat("pid ", other->pid, " (uid ", other->uid, ")")
                                       : std::string("another process")));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ attach

void Policy::OnAttach(Client& c, Message& m) {
  const auto req = m.As<wire::AttachRequest>();
  auto fail = [&](absl::Status s) { clients_.ReplyError<wire::AttachReply>(c, m.request_id, s); };
  absl::StatusOr<Attachable> to = MayAttach(c, req.chpid);
  if (!to.ok()) return fail(to.status());
  const LparConfig& policy = *to->lpar;
  const ChpidConfig& ch = *to->chpid;
  const bool is_static = policy.name == c.lpar && policy.addresses.contains(ch.id) &&
                         nics_.At(policy.addresses.at(ch.id)) == nullptr;
  if (req.address == 0 && !is_static && absl::Now() < recovery_until_) {
    deferred_.emplace_back(c.id, std::move(m));  // answered by RetryDeferred()
    return;
  }
  absl::StatusOr<NicBell> bell = AdoptDoorbell(std::move(m.fds[0]));
  if (!bell.ok()) return fail(bell.status());
  absl::StatusOr<Address> addr = ChooseAddress(c, policy, ch, req.address);
  if (!addr.ok()) return fail(addr.status());
  Record(c, ch, *addr, std::move(*bell), m.request_id);
}

absl::StatusOr<Policy::Attachable> Policy::MayAttach(const Client& c, uint32_t chpid) {
  if (c.lpar.empty()) return absl::FailedPreconditionError("attach: claim an LPAR first");
  const LparConfig* policy = config_.FindLpar(c.lpar);
  if (policy == nullptr) return absl::PermissionDeniedError("attach: the LPAR's policy was removed");
  auto cit = config_.chpids.find(chpid);
  if (cit == config_.chpids.end()) {
    std::vector<std::string> ids;
    for (const auto& [id, ch] : config_.chpids) ids.push_back(ChpidName(id));
    return absl::NotFoundError(absl::StrCat("CHPID ", ChpidName(chpid), " is not defined (defined: ",
                                            ids.empty() ? "none" : absl::StrJoin(ids, ", "), ")"));
  }
  const ChpidConfig& ch = cit->second;
  if (!ch.Allows(c.lpar)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "CHPID ", ChpidName(ch.id), ": LPAR \"", c.lpar, "\" is not in its allowed LPARs",
        c.admin ? absl::StrCat(" [", absl::StrJoin(ch.lpars, ", "), "]") : std::string(), " (config ", config_.source,
        ")"));
  }
  if (nics_.CountOf(c.id) >= policy->max_nics) {
    return absl::ResourceExhaustedError(absl::StrCat("LPAR \"", c.lpar, "\": NIC quota max_nics = ",
                                                     policy->max_nics, " reached (config ", config_.source, ")"));
  }
  return Attachable{policy, &ch};
}

absl::StatusOr<Policy::NicBell> Policy::AdoptDoorbell(UniqueFd fd) {
  // The NIC's doorbell is the ring end (the write end of a pipe) of the
  // client's split doorbell: hsid and the NIC's peers can ring it, and none
  // of them can read the rings (an eventfd would let any peer consume them).
  absl::StatusOr<hsi::Doorbell> bell = hsi::Doorbell::Adopt(std::move(fd));
  if (!bell.ok()) return absl::InvalidArgumentError(absl::StrCat("attach: NIC doorbell: ", bell.status().message()));
  if (bell->kind() != hsi::Doorbell::Kind::kRingEnd) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attach: NIC doorbell: fd is ", bell->kind() == hsi::Doorbell::Kind::kEventfd ? "an eventfd" : "a pipe's read end",
        "; it must be the ring end of a split doorbell (the write end of a pipe), so that the NIC's peers can ring "
        "it but not read it"));
  }
  // hsid's own open file of that pipe, non-blocking for good: no client can
  // change its flags. Needs root or the client's uid; else hsid rings the
  // shared file through io_uring (Nics::Notify).
  bool bell_private = false;
  if (absl::StatusOr<UniqueFd> own = bell->OpenPrivate(); own.ok()) {
    if (absl::StatusOr<hsi::Doorbell> b = hsi::Doorbell::Adopt(std::move(*own)); b.ok()) {
      bell = std::move(b);
      bell_private = true;
    }
  }
  return NicBell{std::move(*bell), bell_private};
}

const LparConfig* Policy::ReservedByOther(const std::string& lpar, uint32_t chpid, Address a) const {
  for (const LparConfig& l : config_.lpars) {
    auto s = l.addresses.find(chpid);
    if (l.name != lpar && s != l.addresses.end() && s->second == a) return &l;
  }
  return nullptr;
}

absl::StatusOr<Address> Policy::ChooseAddress(const Client& c, const LparConfig& policy, const ChpidConfig& ch,
                                              uint32_t asked) {
  const std::string chname = absl::StrCat("CHPID ", ChpidName(ch.id));
  absl::StatusOr<Address> addr = CandidateAddress(c, policy, ch, asked, chname);
  if (!addr.ok()) return addr;
  if (std::optional<std::string> held_for = holds_.AddressHeldFromOthers(ch.id, *addr, c.lpar)) {
    return absl::UnavailableError(absl::StrCat(chname, ": address ", addr->ToString(), " is ",
                                               holds_.Why(absl::StrCat("LPAR \"", *held_for, "\""))));
  }
  if (const Nic* other = nics_.At(*addr)) {
    const Client* oc = clients_.Find(other->client);
    return absl::AlreadyExistsError(absl::StrCat(chname, ": address ", addr->ToString(), " is in use by ",
                                                 oc == nullptr                 ? "another client"
                                                 : c.admin || c.uid == oc->uid ? oc->Who()
                                                                               : oc->Public()));
  }
  return addr;
}

absl::StatusOr<Address> Policy::CandidateAddress(const Client& c, const LparConfig& policy, const ChpidConfig& ch,
                                                 uint32_t asked, const std::string& chname) {
  // The address: static from the policy, the one asked for, or the first free.
  auto fixed = policy.addresses.find(ch.id);
  // The static address goes to the LPAR's first NIC on the CHPID; more
  // NICs of the same LPAR there get assigned addresses.
  const Nic* holder = fixed != policy.addresses.end() ? nics_.At(fixed->second) : nullptr;
  const bool own_static_taken = holder != nullptr && holder->client == c.id;
  if (fixed != policy.addresses.end() && policy.name == c.lpar && !own_static_taken) {
    const Address addr = fixed->second;
    if (asked != 0 && asked != addr.value()) {
      return absl::InvalidArgumentError(absl::StrCat(chname, ": LPAR \"", c.lpar, "\" has the static address ",
                                                     addr.ToString(), ", not ", Address(asked).ToString()));
    }
    // The CHPID may have been redefined at run time with another subnet.
    if (!ch.subnet.IsHost(addr)) {
      return absl::FailedPreconditionError(absl::StrCat(
          chname, ": LPAR \"", c.lpar, "\"'s static address ", addr.ToString(), " is not a host address of subnet ",
          ch.subnet.ToString(), " (config ", config_.source, ")"));
    }
    return addr;
  }
  if (asked != 0) {
    const Address addr(asked);
    if (!ch.subnet.IsHost(addr)) {
      return absl::InvalidArgumentError(absl::StrCat(chname, ": address ", addr.ToString(),
                                                     " is not a host address of subnet ", ch.subnet.ToString()));
    }
    if (const LparConfig* o = ReservedByOther(c.lpar, ch.id, addr)) {
      return absl::PermissionDeniedError(absl::StrCat(chname, ": address ", addr.ToString(), " is LPAR \"", o->name,
                                                      "\"'s static address"));
    }
    return addr;
  }
  const uint32_t first = ch.subnet.network().value() + 1, last = ch.subnet.broadcast().value() - 1;
  for (uint32_t v = first; v <= last; ++v) {
    if (nics_.At(Address(v)) == nullptr && ReservedByOther(c.lpar, ch.id, Address(v)) == nullptr &&
        !holds_.AddressHeld(ch.id, Address(v))) {
      return Address(v);
    }
  }
  return absl::ResourceExhaustedError(absl::StrCat(chname, ": no free address in ", ch.subnet.ToString()));
}

void Policy::Record(Client& c, const ChpidConfig& ch, Address addr, NicBell bell, uint32_t request_id) {
  Nic n;
  n.client = c.id;
  n.chpid = ch.id;
  n.address = addr;
  n.bell = std::move(bell.bell);
  n.bell_private = bell.is_private;
  const Nic& added = nics_.Add(std::move(n));
  holds_.ReleaseAddress(ch.id, addr);
  state_dirty_ = true;
  wire::AttachReply r = wire::Zeroed<wire::AttachReply>();
  r.nic_id = added.id;
  r.address = addr.value();
  r.subnet = ch.subnet.network().value();
  r.prefix = static_cast<uint32_t>(ch.subnet.prefix());
  r.capacity = ch.queue_size;
  r.mtu = ch.mtu;
  r.mfs = ch.mfs;
  r.overflow = ch.drop ? wire::kOverflowDrop : wire::kOverflowBlock;
  Log(absl::StrCat(c.Who(), " attached ", addr.ToString(), " to CHPID ", ChpidName(ch.id)));
  // Before the reply, so that the owner has sealed them by the time it asks
  // for its first link (spares.h).
  links_.spares().Offer(added, hsi::RingGeometry{ch.queue_size, ch.mtu});
  clients_.Reply(c, request_id, r);
}

// ------------------------------------------------------------ detach

void Policy::OnDetach(Client& c, const Message& m) {
  const auto req = m.As<wire::DetachRequest>();
  absl::StatusOr<Nic*> nic = nics_.Own(c, req.nic_id);
  if (!nic.ok()) return clients_.ReplyError<wire::DetachReply>(c, m.request_id, nic.status());
  RemoveNic(req.nic_id, wire::kDownPeerDetached, "it was detached");
  clients_.Reply(c, m.request_id, wire::Zeroed<wire::DetachReply>());
}

bool Policy::OnClientGone(const Client& c, const std::string& why) {
  state_dirty_ |= !c.lpar.empty();
  const std::vector<uint32_t> mine = nics_.IdsOf(c.id);
  for (uint32_t nic : mine) {
    RemoveNic(nic, wire::kDownPeerGone, absl::StrCat("its LPAR \"", c.lpar, "\" disconnected (", why, ")"));
  }
  return !mine.empty();
}

void Policy::RemoveNic(uint32_t nic_id, uint32_t reason, const std::string& why) {
  const Nic* n = nics_.Find(nic_id);
  if (n == nullptr) return;
  links_.DropAllOf(*n, reason, why);
  links_.spares().Forget(nic_id);
  nics_.Erase(nic_id);
  state_dirty_ = true;
}

}  // namespace hsid
