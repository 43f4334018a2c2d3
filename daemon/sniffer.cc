#include "sniffer.h"

#include <fcntl.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "log.h"

namespace hsid {

using hsi::UniqueFd;

void Sniffer::OnSniff(Client& c, const Message& m) {
  const auto req = m.As<wire::SniffRequest>();
  auto fail = [&](absl::Status s) {
    Log(absl::StrCat(c.Who(), ": sniffer refused: ", s.message()));
    clients_.ReplyError<wire::SniffReply>(c, m.request_id, s);
  };
  auto cit = config_.chpids.find(req.chpid);
  if (cit == config_.chpids.end()) {
    return fail(absl::NotFoundError(absl::StrCat("sniff CHPID ", ChpidName(req.chpid), ": not defined")));
  }
  const ChpidConfig& ch = cit->second;
  bool allowed = c.admin ||
                 std::find(ch.sniffer_uids.begin(), ch.sniffer_uids.end(), c.uid) != ch.sniffer_uids.end();
  for (uint32_t g : c.gids) {
    allowed |= std::find(ch.sniffer_gids.begin(), ch.sniffer_gids.end(), g) != ch.sniffer_gids.end();
  }
  if (!allowed) {
    return fail(absl::PermissionDeniedError(absl::StrCat(
        "sniff CHPID ", ChpidName(ch.id), ": uid ", c.uid, " is not an admin and not an authorized sniffer of "
        "this CHPID (sniffers/sniffer_gids of [[chpid]] ", ChpidName(ch.id), " in config ", config_.source, ")")));
  }
  if (c.sniff_chpid >= 0 && c.sniff_chpid != static_cast<int>(ch.id)) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "sniff CHPID ", ChpidName(ch.id), ": this connection already taps CHPID ",
        ChpidName(static_cast<uint32_t>(c.sniff_chpid)))));
  }
  c.sniff_chpid = static_cast<int>(ch.id);
  wire::SniffReply r = wire::Zeroed<wire::SniffReply>();
  r.chpid = ch.id;
  r.mtu = ch.mtu;
  r.capacity = ch.queue_size;
  r.subnet = ch.subnet.network().value();
  r.prefix = static_cast<uint32_t>(ch.subnet.prefix());
  Log(absl::StrCat(c.Who(), " opened a sniffer on CHPID ", ChpidName(ch.id)));
  clients_.Reply(c, m.request_id, r);
  for (const auto& [id, l] : links_.all()) {
    if (l.chpid == ch.id && l.state == Link::kReady) Offer(l, &c);
  }
}

void Sniffer::Offer(const Link& l, Client* only) {
  if (l.state != Link::kReady) return;
  std::vector<Client*> to;
  if (only != nullptr) {
    to.push_back(only);
  } else {
    clients_.ForEachLive([&](Client& c) {
      if (c.sniff_chpid == static_cast<int>(l.chpid)) to.push_back(&c);
    });
  }
  if (to.empty()) return;
  // Invariant 1: a sniffer only ever gets segments whose owners sealed them
  // against new writers, so the kernel keeps it read-only.
  for (const LinkEnd* e : {&l.a, &l.b}) {
    if (!hsi::IsSealedAgainstWrites(e->segment.get())) {
      Log(absl::StrCat("link ", l.id, ": segment of ", e->address.ToString(),
                       " is not sealed against writes; not handing it to sniffers"));
      return;
    }
  }
  auto cit = config_.chpids.find(l.chpid);
  if (cit == config_.chpids.end()) return;
  const ChpidConfig& ch = cit->second;
  for (Client* c : to) {
    wire::SniffLink s = wire::Zeroed<wire::SniffLink>();
    s.link_id = l.id;
    s.chpid = l.chpid;
    s.address_a = l.a.address.value();
    s.address_b = l.b.address.value();
    s.mtu = ch.mtu;
    s.flags = only == nullptr ? uint32_t{wire::kSniffNew} : uint32_t{0};
    s.capacity = ch.queue_size;
    std::vector<UniqueFd> fds;
    fds.emplace_back(::fcntl(l.a.segment.get(), F_DUPFD_CLOEXEC, 0));
    fds.emplace_back(::fcntl(l.b.segment.get(), F_DUPFD_CLOEXEC, 0));
    if (!fds[0].valid() || !fds[1].valid()) {
      Log(absl::StrCat("link ", l.id, ": out of file descriptors for a sniffer"));
      continue;
    }
    clients_.Send(*c, wire::Encode(0, s, std::move(fds)));
  }
}

void Sniffer::LinkGone(const Link& l) {
  clients_.ForEachLive([&](Client& c) {
    if (c.sniff_chpid != static_cast<int>(l.chpid)) return;
    wire::SniffLinkGone g = wire::Zeroed<wire::SniffLinkGone>();
    g.link_id = l.id;
    clients_.Send(c, wire::Encode(0, g));
  });
}

}  // namespace hsid
