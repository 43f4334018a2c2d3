// daemon/grants.h: memory grants between the owners of two NICs on one
// CHPID (MemGrantRequest/MemTakeRequest, hsi/wire/messages.h): how a
// coupling facility hands a connector its local validity vector
// (docs/cf.md), memory the CF alone writes and the connector maps
// read-only.
//
// The granter made the memfd, mapped it and sealed it against new writers;
// hsid checks that the granter owns its NIC, that the peer NIC is on the
// same CHPID, and that the fd is a memfd of 1..kMaxGrantBytes sealed
// F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE (invariant 1: nobody
// can map it writable again, nor shrink it under a reader's mapping). Only
// the client that owned the peer NIC when the grant was made can take it
// (invariant 3: fds travel by SCM_RIGHTS to the two ends only), once.
// Grants made by or for a client that goes are dropped; one client keeps
// at most kMaxGrantsPerClient untaken grants to another.
//
// Ownership: Grants owns the fds it holds; clients are referred to by id.
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_GRANTS_H_
#define HSI_DAEMON_GRANTS_H_

#include <cstdint>
#include <map>
#include <tuple>

#include "clients.h"
#include "hsi/fd.h"
#include "nics.h"

namespace hsid {

class Grants {
 public:
  Grants(Clients& clients, Nics& nics) : clients_(clients), nics_(nics) {}

  void OnGrant(Client& c, Message& m);
  void OnTake(Client& c, Message& m);
  void OnClientGone(const Client& c);
  size_t size() const { return grants_.size(); }

 private:
  struct Grant {
    uint64_t from_client = 0;
    uint64_t to_client = 0;
    uint64_t size = 0;
    hsi::UniqueFd fd;
  };
  // (chpid, granter's address, peer's address, tag)
  using Key = std::tuple<uint32_t, uint32_t, uint32_t, uint64_t>;
  Clients& clients_;
  Nics& nics_;
  std::map<Key, Grant> grants_;
};

}  // namespace hsid

#endif  // HSI_DAEMON_GRANTS_H_
