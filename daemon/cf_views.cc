// daemon/cf_views.cc: coupling facilities' structure summaries (cf_views.h).
#include "cf_views.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace hsid {

void CfViews::OnDeclare(Client& c, const Message& m) {
  const auto req = m.As<wire::CfDeclareRequest>();  // validated by Decode()
  auto reply = [&](const absl::Status& s) { clients_.ReplyError<wire::AdminReply>(c, m.request_id, s); };
  if (c.lpar.empty()) return reply(absl::FailedPreconditionError("declare CF structure: claim an LPAR first"));
  const std::string name(req.s.name);
  const auto key = std::make_pair(c.id, name);
  if (req.active == 0) {
    views_.erase(key);
    return reply(absl::OkStatus());
  }
  if (!views_.contains(key)) {
    size_t mine = 0;
    for (auto it = views_.lower_bound({c.id, ""}); it != views_.end() && it->first.first == c.id; ++it) ++mine;
    if (mine >= wire::kMaxCfStructures) {
      return reply(absl::ResourceExhaustedError(absl::StrCat("declare CF structure ", name, ": LPAR \"", c.lpar,
                                                             "\" declared ", wire::kMaxCfStructures,
                                                             " structures already (the most hsid keeps)")));
    }
  }
  views_[key] = View{c.lpar, req.s};
  reply(absl::OkStatus());
}

void CfViews::OnList(Client& c, const Message& m) {
  const auto req = m.As<wire::CfListRequest>();
  if (absl::Status s = admin_.CheckAdmin(c, "list CF structures"); !s.ok()) {
    return clients_.ReplyError<wire::CfListReply>(c, m.request_id, s);
  }
  wire::CfListReply r = wire::Zeroed<wire::CfListReply>();
  size_t i = 0;
  auto it = views_.begin();
  for (; it != views_.end() && i < req.cursor; ++it) ++i;
  for (; it != views_.end() && r.count < wire::kCfListPage; ++it, ++i) {
    wire::WireCfEntry& e = r.entries[r.count++];
    wire::SetName(e.lpar, it->second.lpar);
    e.s = it->second.s;
  }
  r.next_cursor = it != views_.end() ? static_cast<uint32_t>(i) : 0;
  clients_.Reply(c, m.request_id, r);
}

void CfViews::OnClientGone(const Client& c) {
  views_.erase(views_.lower_bound({c.id, ""}), views_.lower_bound({c.id + 1, ""}));
}

}  // namespace hsid
