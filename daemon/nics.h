// daemon/nics.h: the NICs hsid has attached, and how it tells a NIC's
// owner of an event.
//
// A NIC is one LPAR's attachment to one CHPID, with an address in the
// CHPID's subnet and a doorbell (DESIGN.md section 1). Nics keeps them by id
// and by address. Notify() queues an event on the owner's connection and
// rings the NIC's doorbell, so that a client blocked in Receive wakes and
// reads it; the ring never blocks hsid's thread (see Notify). Nics also
// answers PeersRequest: the addresses of the other NICs up on the asker's
// CHPID.
//
// Ownership: Nics owns the Nic records and hsid's doorbell fds. Policy adds
// and removes NICs (attach, detach, a client gone) and takes their links
// down first; a Nic's `links` is written by Links and `up` by Admin.
//
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_NICS_H_
#define HSI_DAEMON_NICS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "clients.h"
#include "event_loop.h"
#include "hsi/address.h"
#include "hsi/doorbell.h"
#include "hsi/wire/protocol.h"

namespace hsid {

struct Nic {
  uint32_t id = 0;
  uint64_t client = 0;
  uint32_t chpid = 0;
  hsi::Address address;
  hsi::Doorbell bell;
  bool bell_private = false;  // `bell` is hsid's own open file (non-blocking for good)
  bool bell_pending = false;  // an io_uring write to `bell` is in flight
  bool up = true;
  // Non-empty while the SSI cluster holds this NIC down because its LPAR is
  // a guest logged on to another member (cluster.h): why, for refusals.
  std::string cluster_down;
  std::set<uint32_t> links;
  // What the owner declared (NicInterfaceRequest): a network interface of
  // layer 2 or 3 (0: none declared), its device name and namespace.
  uint32_t if_layer = 0;
  std::string if_name, if_netns;
};

class Nics {
 public:
  Nics(Clients& clients, EventLoop& loop) : clients_(clients), loop_(loop) {}

  // Adds `n` under a new id (n.id is set) and its address; returns it.
  // Requires that no NIC has n.address.
  Nic& Add(Nic n);
  // Forgets NIC `id` and frees its address; cancels a doorbell write still
  // pending. Its links must be gone already (Links::DropAllOf).
  void Erase(uint32_t id);

  Nic* Find(uint32_t id) {
    auto it = nics_.find(id);
    return it == nics_.end() ? nullptr : &it->second;
  }
  // NIC `id`, which must exist.
  Nic& Get(uint32_t id) { return nics_.at(id); }
  // The NIC with address `a`, or nullptr.
  Nic* At(hsi::Address a) {
    auto it = by_address_.find(a.value());
    return it == by_address_.end() ? nullptr : &nics_.at(it->second);
  }
  // NIC `nic_id` if client `c` attached it; else kNotFound.
  absl::StatusOr<Nic*> Own(const Client& c, uint32_t nic_id);
  // The NICs client `client` attached: how many, and their ids.
  uint32_t CountOf(uint64_t client) const;
  std::vector<uint32_t> IdsOf(uint64_t client) const;
  const std::map<uint32_t, Nic>& all() const { return nics_; }

  // Sends `m` to the owner of NIC `nic_id` and rings its doorbell; nothing
  // if the NIC or its owner is gone.
  void Notify(uint32_t nic_id, OutMessage m);
  // The loop's EventLoop::Kind::kBell completion for NIC `id`.
  void OnBellWritten(uint32_t id);

  // PeersRequest: the other NICs up on the asker's NIC's CHPID, a page at
  // a time, in address order.
  void OnPeers(Client& c, const Message& m);
  // NicInterfaceRequest: the owner says its NIC is a network interface.
  void OnInterface(Client& c, const Message& m);
  // OwnerRequest: the LPAR owning a NIC that is up on the asker's NIC's
  // CHPID (what PeersRequest lists, with its owner's name).
  void OnOwner(Client& c, const Message& m);

 private:
  Clients& clients_;
  EventLoop& loop_;
  uint32_t next_nic_ = 1;
  std::map<uint32_t, Nic> nics_;
  absl::flat_hash_map<uint32_t, uint32_t> by_address_;  // address -> nic id
};

}  // namespace hsid

#endif  // HSI_DAEMON_NICS_H_
