#include "spares.h"

#include <fcntl.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "log.h"

namespace hsid {

using hsi::UniqueFd;

std::string SegmentName(hsi::Address a) { return absl::StrCat("hsi-", a.ToString()); }

void Spares::Offer(const Nic& n, const hsi::RingGeometry& g) {
  NicSpares& ns = by_nic_[n.id];
  Client* c = clients_.Find(n.client);
  while (c != nullptr && !ns.declined && ns.spares.size() < wire::kSparesPerNic) {
    absl::StatusOr<UniqueFd> seg = hsi::CreateRingSegment(g, SegmentName(n.address));
    if (!seg.ok()) return;  // out of fds or memory: links take the offer/seal path
    std::vector<UniqueFd> fds;
    fds.emplace_back(::fcntl(seg->get(), F_DUPFD_CLOEXEC, 0));
    if (!fds[0].valid()) return;
    wire::SpareOffer o = wire::Zeroed<wire::SpareOffer>();
    o.nic_id = n.id;
    o.spare_id = ns.next_id++;
    if (ns.next_id == 0) ns.next_id = 1;
    o.capacity = g.capacity;
    o.mtu = g.mtu;
    ns.spares.push_back(Spare{o.spare_id, std::move(*seg), g, false});
    // No doorbell: the owner seals it on its next call into libhsi (a
    // sleeping Receive wakes on the control socket); until then links to
    // this NIC take the offer/seal path.
    clients_.Send(*c, wire::Encode(0, o, std::move(fds)));
  }
}

void Spares::OnSealed(Client& c, const Message& m) {
  const auto req = m.As<wire::SpareSealed>();
  const Nic* n = nics_.Find(req.nic_id);
  auto it = by_nic_.find(req.nic_id);
  if (n == nullptr || it == by_nic_.end()) return;  // detached meanwhile
  NicSpares& ns = it->second;
  auto violation = [&](const std::string& what) {
    clients_.AnswerAndClose(c, absl::InvalidArgumentError(absl::StrCat("protocol: SpareSealed: ", what)),
                            absl::StrCat("protocol violation: SpareSealed: ", what));
  };
  if (n->client != c.id) return violation(absl::StrCat("NIC id ", req.nic_id, " is not this client's"));
  auto s = std::find_if(ns.spares.begin(), ns.spares.end(), [&](const Spare& x) { return x.id == req.spare_id; });
  if (s == ns.spares.end()) {
    // Dropped for a new geometry, or never offered.
    if (req.spare_id == 0 || req.spare_id >= ns.next_id) {
      violation(absl::StrCat("spare ", req.spare_id, " of NIC ", n->address.ToString(), " was never offered"));
    }
    return;
  }
  if (s->sealed) return violation(absl::StrCat("spare ", req.spare_id, " was reported sealed twice"));
  if (req.code != 0) {  // the owner cannot or will not: no more spares for this NIC
    ns.declined = true;
    ns.spares.erase(s);
    return;
  }
  // Invariant 1: the owner must have sealed against new writers before any
  // peer gets the fd.
  if (!hsi::IsSealedAgainstWrites(s->segment.get())) {
    Log(absl::StrCat(c.Who(), ": reported spare ", req.spare_id, " of NIC ", n->address.ToString(),
                     " sealed but it is not"));
    return violation(absl::StrCat("spare ", req.spare_id, " of NIC ", n->address.ToString(),
                                  " was reported sealed but it is not"));
  }
  s->sealed = true;
}

bool Spares::Ready(const Nic& n, const hsi::RingGeometry& g) {
  auto it = by_nic_.find(n.id);
  if (it == by_nic_.end()) return false;
  std::vector<Spare>& v = it->second.spares;
  const size_t before = v.size();
  std::erase_if(v, [&](const Spare& s) { return s.geometry.capacity != g.capacity || s.geometry.mtu != g.mtu; });
  if (v.size() != before) Offer(n, g);  // the CHPID was redefined: spares of its new geometry
  return std::any_of(v.begin(), v.end(), [](const Spare& s) { return s.sealed; });
}

Spares::Taken Spares::Take(uint32_t nic) {
  std::vector<Spare>& v = by_nic_.at(nic).spares;
  auto s = std::find_if(v.begin(), v.end(), [](const Spare& x) { return x.sealed; });
  Taken t{s->id, std::move(s->segment)};
  v.erase(s);
  return t;
}

}  // namespace hsid
