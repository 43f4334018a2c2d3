// daemon/cf_views.h: what coupling facilities declare about their
// structures (issue 20; wire CfDeclareRequest / CfListRequest; hsictl cfs).
//
// An hsi-cf process (a client that claimed an LPAR) declares one summary per
// structure; hsid keeps the last one per (client, structure), at most
// wire::kMaxCfStructures per client, drops a client's when it goes, and
// lists them to admins. A summary is the CF's claim: hsid checks that it is
// well formed (wire Validate) and shows it, nothing more; it never acts on
// it. Thread safety: none (hsid's one thread).
#ifndef HSID_CF_VIEWS_H_
#define HSID_CF_VIEWS_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "admin.h"
#include "clients.h"
#include "hsi/wire/protocol.h"

namespace hsid {

class CfViews {
 public:
  CfViews(Clients& clients, const Admin& admin) : clients_(clients), admin_(admin) {}
  void OnDeclare(Client& c, const Message& m);
  void OnList(Client& c, const Message& m);
  void OnClientGone(const Client& c);

 private:
  struct View {
    std::string lpar;
    wire::WireCfStructure s;
  };
  Clients& clients_;
  const Admin& admin_;
  std::map<std::pair<uint64_t, std::string>, View> views_;  // (client id, structure) -> last summary
};

}  // namespace hsid

#endif  // HSID_CF_VIEWS_H_
