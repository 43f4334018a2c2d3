// daemon/admin.h: runtime administration through the control socket
// (DESIGN.md section 4): define and undefine CHPIDs, set a NIC up or down,
// list CHPIDs, NICs, links and their counters.
//
// Every operation requires an admin (root, or admin_uids/admin_gids in the
// config); anyone else gets kPermissionDenied naming the operation, and not
// the admin lists. A CHPID is defined as the config would define it
// (ValidateChpid) and undefined only while no NIC is attached to it. A NIC
// set down loses its links (each end gets LinkDown "an admin set NIC ...
// down") and its owner gets a NicStateEvent; set up, it may link again.
// Lists come a page (wire::kListPage entries) at a time from a cursor.
// Counters are read from the segments themselves (pread of the counter
// block each owner publishes in its own segment); hsid never maps a ring.
//
// Ownership: Admin keeps nothing; it writes the config's CHPID table and
// Nic::up.
//
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_ADMIN_H_
#define HSI_DAEMON_ADMIN_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "clients.h"
#include "config.h"
#include "hsi/wire/protocol.h"
#include "links.h"
#include "nics.h"

namespace hsid {

class Admin {
 public:
  Admin(Config& config, Clients& clients, Nics& nics, Links& links)
      : config_(config), clients_(clients), nics_(nics), links_(links) {}

  void OnDefineChpid(Client& c, const Message& m);
  void OnUndefineChpid(Client& c, const Message& m);
  void OnSetNic(Client& c, const Message& m);
  // Sets NIC `n` up or down (nothing if it is so already): down drops its
  // links (both ends hear `why_down`); its owner gets a NicStateEvent.
  // Logs `log`. Used by OnSetNic and by the cluster member (cluster.h).
  void SetNicState(Nic& n, bool up, const std::string& log, const std::string& why_down);
  // ListRequest: CHPIDs, NICs, links with counters, or links with stats.
  void OnList(Client& c, const Message& m);
  // OK for an admin client, else kPermissionDenied naming `op` (also CfViews).
  absl::Status CheckAdmin(const Client& c, const char* op) const;

 private:
  // Replies one page of a list: entries cursor.. of `total`, each written
  // by `fill(entry, index)`.
  template <typename Reply, typename Fill>
  void Page(Client& c, const Message& m, size_t total, Fill fill);
  void ListChpids(Client& c, const Message& m);
  void ListNics(Client& c, const Message& m);
  // Links with their state and every counter of each direction, from the
  // sender's and the receiver's segment (kListStats).
  void ListLinks(Client& c, const Message& m);

  Config& config_;
  Clients& clients_;
  Nics& nics_;
  Links& links_;
};

}  // namespace hsid

#endif  // HSI_DAEMON_ADMIN_H_
