#include "admin.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "hsi/address.h"
#include "hsi/fd.h"
#include "log.h"

namespace hsid {
namespace {

using hsi::Address;
using hsi::UniqueFd;

// One direction's figures: the sender's from its segment `from`, the
// receiver's from its segment `to` (an invalid fd reads as zeros).
wire::WireDirStats Stats(const UniqueFd& from, const UniqueFd& to) {
  wire::WireDirStats d{};
  // Each owner publishes its counters in its own segment; hsid reads them
  // through the layout (libhsi's ReadSegmentCounters), it maps no ring.
  if (std::optional<hsi::SegmentCounters> c =
          from.valid() ? hsi::ReadRingSegmentCounters(from.get()) : std::nullopt) {
    d.frames = c->tx.frames;
    d.bytes = c->tx.bytes;
    d.full_events = c->tx.full_events;
    d.drops = c->tx.drops;
    d.wakeups_sent = c->tx.wakeups_sent;
  }
  if (std::optional<hsi::SegmentCounters> c =
          to.valid() ? hsi::ReadRingSegmentCounters(to.get()) : std::nullopt) {
    d.rx_frames = c->rx.frames;
    d.rx_bytes = c->rx.bytes;
    d.rx_wakeups_sent = c->rx.wakeups_sent;
  }
  return d;
}

}  // namespace

absl::Status Admin::CheckAdmin(const Client& c, const char* op) const {
  if (c.admin) return absl::OkStatus();
  // The admin lists are not the asker's to read.
  return absl::PermissionDeniedError(absl::StrCat("admin operation ", op, ": uid ", c.uid,
                                                  " is not an admin (root, or admin_uids/admin_gids in config ",
                                                  config_.source, ")"));
}

// ------------------------------------------------------------ changes

void Admin::OnDefineChpid(Client& c, const Message& m) {
  if (absl::Status s = CheckAdmin(c, "define CHPID"); !s.ok()) {
    return clients_.ReplyError<wire::AdminReply>(c, m.request_id, s);
  }
  const auto req = m.As<wire::DefineChpidRequest>();
  ChpidConfig ch;
  ch.id = req.chpid;
  ch.mfs = req.mfs;
  ch.mtu = req.mfs - 8192;
  ch.subnet = hsi::Subnet(Address(req.subnet), static_cast<int>(req.prefix));
  ch.queue_size = req.capacity;
  ch.drop = req.overflow == wire::kOverflowDrop;
  ch.lpars.clear();
  for (uint32_t i = 0; i < req.lpar_count; ++i) ch.lpars.push_back(wire::NameOf(req.lpars[i]));
  if (ch.subnet.network().value() != req.subnet || req.prefix < 8 || req.prefix > 30) {
    return clients_.ReplyError<wire::AdminReply>(c, m.request_id, absl::InvalidArgumentError(absl::StrCat(
        "define CHPID ", ChpidName(ch.id), ": subnet ", Address(req.subnet).ToString(), "/", req.prefix,
        " must have a prefix 8..30 and no host bits")));
  }
  if (absl::Status s = ValidateChpid(ch, config_); !s.ok()) {
    return clients_.ReplyError<wire::AdminReply>(c, m.request_id, s);
  }
  Log(absl::StrCat(c.Who(), " defined CHPID ", ChpidName(ch.id), " subnet ", ch.subnet.ToString()));
  config_.chpids[ch.id] = std::move(ch);
  clients_.Reply(c, m.request_id, wire::Zeroed<wire::AdminReply>());
}

void Admin::OnUndefineChpid(Client& c, const Message& m) {
  if (absl::Status s = CheckAdmin(c, "undefine CHPID"); !s.ok()) {
    return clients_.ReplyError<wire::AdminReply>(c, m.request_id, s);
  }
  const auto req = m.As<wire::UndefineChpidRequest>();
  if (!config_.chpids.contains(req.chpid)) {
    return clients_.ReplyError<wire::AdminReply>(c, m.request_id, absl::NotFoundError(absl::StrCat(
        "undefine CHPID ", ChpidName(req.chpid), ": not defined")));
  }
  std::vector<std::string> users;
  for (const auto& [id, n] : nics_.all()) {
    if (n.chpid == req.chpid) users.push_back(n.address.ToString());
  }
  if (!users.empty()) {
    return clients_.ReplyError<wire::AdminReply>(c, m.request_id, absl::FailedPreconditionError(absl::StrCat(
        "undefine CHPID ", ChpidName(req.chpid), ": NICs ", absl::StrJoin(users, ", "),
        " are attached; they must detach first")));
  }
  config_.chpids.erase(req.chpid);
  Log(absl::StrCat(c.Who(), " undefined CHPID ", ChpidName(req.chpid)));
  clients_.Reply(c, m.request_id, wire::Zeroed<wire::AdminReply>());
}

void Admin::OnSetNic(Client& c, const Message& m) {
  if (absl::Status s = CheckAdmin(c, "set NIC state"); !s.ok()) {
    return clients_.ReplyError<wire::AdminReply>(c, m.request_id, s);
  }
  const auto req = m.As<wire::SetNicRequest>();
  Nic* n = nics_.At(Address(req.address));
  if (n == nullptr) {
    return clients_.ReplyError<wire::AdminReply>(c, m.request_id, absl::NotFoundError(absl::StrCat(
        "set NIC state: no NIC has address ", Address(req.address).ToString())));
  }
  const bool up = req.up != 0;
  if (up && !n->cluster_down.empty()) {
    // The cluster, not an admin, holds it down: its guest is not logged on
    // to this member (cluster.h).
    return clients_.ReplyError<wire::AdminReply>(c, m.request_id, absl::FailedPreconditionError(absl::StrCat(
        "set NIC ", n->address.ToString(), " up: ", n->cluster_down)));
  }
  SetNicState(*n, up, absl::StrCat(c.Who(), " set NIC ", n->address.ToString(), up ? " up" : " down"),
              absl::StrCat("an admin set NIC ", n->address.ToString(), " down"));
  clients_.Reply(c, m.request_id, wire::Zeroed<wire::AdminReply>());
}

void Admin::SetNicState(Nic& n, bool up, const std::string& log, const std::string& why_down) {
  if (n.up == up) return;
  n.up = up;
  if (!up) {
    const std::vector<uint32_t> links(n.links.begin(), n.links.end());
    for (uint32_t lid : links) {
      const std::string t = absl::StrCat("link on NIC ", n.address.ToString(), " closed: ", why_down);
      links_.Drop(lid, wire::kDownNicDown, t, t, true, true);
    }
  }
  wire::NicStateEvent e = wire::Zeroed<wire::NicStateEvent>();
  e.nic_id = n.id;
  e.up = up ? 1 : 0;
  nics_.Notify(n.id, wire::Encode(0, e));
  Log(log);
}

// ------------------------------------------------------------ lists

template <typename Reply, typename Fill>
void Admin::Page(Client& c, const Message& m, size_t total, Fill fill) {
  const auto req = m.As<wire::ListRequest>();
  Reply r = wire::Zeroed<Reply>();
  size_t i = req.cursor;
  for (; i < total && r.count < wire::kListPage; ++i) fill(r.entries[r.count++], i);
  r.next_cursor = i < total ? static_cast<uint32_t>(i) : 0;
  clients_.Reply(c, m.request_id, r);
}

void Admin::ListChpids(Client& c, const Message& m) {
  std::vector<const ChpidConfig*> v;
  for (const auto& [id, ch] : config_.chpids) v.push_back(&ch);
  Page<wire::ListChpidsReply>(c, m, v.size(), [&](wire::WireChpid& e, size_t k) {
    const ChpidConfig& ch = *v[k];
    e.chpid = ch.id;
    e.mfs = ch.mfs;
    e.mtu = ch.mtu;
    e.subnet = ch.subnet.network().value();
    e.prefix = static_cast<uint32_t>(ch.subnet.prefix());
    e.overflow = ch.drop ? wire::kOverflowDrop : wire::kOverflowBlock;
    e.capacity = ch.queue_size;
    for (const auto& [nid, n] : nics_.all()) e.nics += n.chpid == ch.id;
    for (const auto& [lid, l] : links_.all()) e.links += l.chpid == ch.id;
  });
}

void Admin::ListNics(Client& c, const Message& m) {
  std::vector<const Nic*> v;
  for (const auto& [id, n] : nics_.all()) v.push_back(&n);
  Page<wire::ListNicsReply>(c, m, v.size(), [&](wire::WireNic& e, size_t k) {
    const Nic& n = *v[k];
    e.chpid = n.chpid;
    e.address = n.address.value();
    e.up = n.up ? 1 : 0;
    e.links = static_cast<uint32_t>(n.links.size());
    if (const Client* oc = clients_.Find(n.client)) {
      wire::SetName(e.lpar, oc->lpar);
      e.pid = oc->pid;
      e.uid = oc->uid;
    }
    e.if_layer = n.if_layer;
    std::memcpy(e.if_name, n.if_name.data(), std::min(n.if_name.size(), sizeof(e.if_name) - 1));
    std::memcpy(e.if_netns, n.if_netns.data(), std::min(n.if_netns.size(), sizeof(e.if_netns) - 1));
  });
}

void Admin::ListLinks(Client& c, const Message& m) {
  std::vector<const Link*> v;
  for (const auto& [id, l] : links_.all()) v.push_back(&l);
  Page<wire::ListStatsReply>(c, m, v.size(), [&](wire::WireLinkStats& e, size_t k) {
    const Link& l = *v[k];
    e.link_id = l.id;
    e.chpid = l.chpid;
    e.address_a = l.a.address.value();
    e.address_b = l.b.address.value();
    e.state = static_cast<uint32_t>(l.state);
    // Counters are read from the segments themselves: each owner
    // publishes its own in its segment (hsid never maps a ring).
    e.a_to_b = Stats(l.a.segment, l.b.segment);
    e.b_to_a = Stats(l.b.segment, l.a.segment);
  });
}

void Admin::OnList(Client& c, const Message& m) {
  const auto req = m.As<wire::ListRequest>();
  if (absl::Status s = CheckAdmin(c, "list"); !s.ok()) {
    switch (req.what) {
      case wire::kListChpids: return clients_.ReplyError<wire::ListChpidsReply>(c, m.request_id, s);
      case wire::kListNics: return clients_.ReplyError<wire::ListNicsReply>(c, m.request_id, s);
      default: return clients_.ReplyError<wire::ListStatsReply>(c, m.request_id, s);
    }
  }
  switch (req.what) {
    case wire::kListChpids: return ListChpids(c, m);
    case wire::kListNics: return ListNics(c, m);
    default: return ListLinks(c, m);  // kListStats (Decode admits no other)
  }
}

}  // namespace hsid
