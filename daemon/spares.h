// daemon/spares.h: spare ring segments, so that a link is set up in one
// round trip through hsid (issue 15, item 3).
//
// For every NIC hsid keeps up to wire::kSparesPerNic ring segments that it
// made (memfds of the CHPID's geometry, named for the NIC's address) and
// offered to the NIC's owner (SpareOffer, sent before the AttachReply and
// again after each use). The owner maps each one as its own and seals it
// (Segment::MapOwner: F_SEAL_FUTURE_WRITE | F_SEAL_SEAL), and says so
// (SpareSealed). hsid believes that only after it has seen
// F_SEAL_FUTURE_WRITE on its own fd of the segment (invariant 1), and only
// then counts the spare as sealed. A LinkRequest between two NICs that both
// hold a sealed spare of the CHPID's current geometry takes one of each
// (Links::OnLink): the link is ready at once, and neither end has to
// answer anything, so the requester waits for one round trip to hsid and
// the peer may be asleep.
//
// hsid creates and grants all this memory as before; only the time at which
// the owner seals its own segment moves ahead. A NIC whose owner declines a
// spare or cannot seal it (SpareSealed with an error code) gets no more: its
// links take the offer/seal path. One that says it sealed a segment it did
// not seal is dropped as a protocol violator.
//
// Ownership: Spares owns hsid's fd of each spare until Take() hands it to a
// link. Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_SPARES_H_
#define HSI_DAEMON_SPARES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "clients.h"
#include "hsi/address.h"
#include "hsi/fd.h"
#include "hsi/ring.h"
#include "hsi/wire/protocol.h"
#include "nics.h"

namespace hsid {

// The memfd name of a NIC's ring segments ("hsi-10.240.0.1"), which hsid
// gives every segment it makes for that NIC: a relink must hand in one of
// its own.
std::string SegmentName(hsi::Address a);

class Spares {
 public:
  Spares(Clients& clients, Nics& nics) : clients_(clients), nics_(nics) {}

  // One sealed spare handed to a link: its id (the owner's name for it) and
  // hsid's fd of the segment.
  struct Taken {
    uint32_t id = 0;
    hsi::UniqueFd segment;
  };

  // Tops NIC `n` up to kSparesPerNic spares of geometry `g` (offered, not
  // yet sealed ones count), sending each new one to its owner. Nothing if
  // the owner declined spares; a segment hsid cannot make (out of fds or
  // memory) is simply not offered.
  void Offer(const Nic& n, const hsi::RingGeometry& g);
  // SpareSealed from client `c`.
  void OnSealed(Client& c, const Message& m);
  // Whether NIC `n` holds a sealed spare of geometry `g`. Spares of
  // another geometry (the CHPID was redefined) are dropped here, and new
  // ones offered.
  bool Ready(const Nic& n, const hsi::RingGeometry& g);
  // Takes a sealed spare of NIC `nic` (Ready() must have said true).
  Taken Take(uint32_t nic);
  // NIC `nic` is gone: its spares go with it.
  void Forget(uint32_t nic) { by_nic_.erase(nic); }

 private:
  struct Spare {
    uint32_t id = 0;
    hsi::UniqueFd segment;
    hsi::RingGeometry geometry;
    bool sealed = false;
  };
  struct NicSpares {
    uint32_t next_id = 1;
    bool declined = false;
    std::vector<Spare> spares;
  };

  Clients& clients_;
  Nics& nics_;
  absl::flat_hash_map<uint32_t, NicSpares> by_nic_;
};

}  // namespace hsid

#endif  // HSI_DAEMON_SPARES_H_
