// daemon/links.h: links between two NICs of a CHPID, and the state machine
// that sets them up, restores them after an hsid restart and takes them
// down.
//
// A link is made lazily, on the first LinkRequest between two NICs, and is
// freed when either end goes (DESIGN.md section 4). Its states:
//   (ready at once: both NICs held a sealed spare segment, see spares.h)
//   kSetup       hsid made the two sealable ring segments and offered each
//                end its own (LinkOffer); it waits at most 5 s for both
//                ends' LinkSealed. It believes a LinkSealed only after it
//                has seen F_SEAL_FUTURE_WRITE on that segment itself
//                (invariant 1).
//   kReady       each end has been handed the peer's segment and a doorbell
//                of the peer's NIC (LinkPeer). Frames flow without hsid from
//                here on (invariant 4).
//   kRelinkWait  after an hsid restart, one end handed its segment back
//                (RelinkRequest); hsid waits reclaim_grace_ms for the other
//                end's, then the link is ready again without new memory.
// A link that goes sends each end that should know a LinkDown with a reason
// code and a text naming the link and why (invariant 5). Observers (the
// sniffer) learn when a link becomes ready, and when a ready link goes.
// Quotas: max_links per LPAR (both ends'), max_in_flight setups per client
// (over it, the client is dropped).
//
// Ownership: Links owns the Link records and hsid's fd of each segment,
// kept only to check seals, hand the segment on and read counters; hsid
// never maps a ring. It writes Nic::links and Client::in_flight.
//
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_LINKS_H_
#define HSI_DAEMON_LINKS_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clients.h"
#include "config.h"
#include "hsi/address.h"
#include "hsi/fd.h"
#include "hsi/ring.h"
#include "hsi/wire/protocol.h"
#include "nics.h"
#include "spares.h"

namespace hsid {

struct LinkEnd {
  uint32_t nic = 0;  // 0: not (yet) known (relink waiting for the peer)
  hsi::Address address;
  hsi::UniqueFd segment;  // kept to read counters
  bool sealed = false;
};

struct Link {
  enum State : uint32_t {  // on the wire as is (WireLinkStats::state)
    kSetup = wire::kStateSetup,
    kReady = wire::kStateReady,
    kRelinkWait = wire::kStateRelinkWait,
  };
  uint32_t id = 0;
  uint32_t chpid = 0;
  State state = kSetup;
  LinkEnd a, b;
  uint64_t requester = 0;  // client whose in_flight counts this setup
  absl::Time deadline = absl::InfiniteFuture();
};

class Links {
 public:
  class Observer {
   public:
    virtual ~Observer() = default;
    // `l` became ready (set up, or restored by a relink).
    virtual void LinkReady(const Link& l) = 0;
    // `l`, ready until now, is about to be freed.
    virtual void LinkGone(const Link& l) = 0;
  };

  Links(const Config& config, Clients& clients, Nics& nics, bool verbose)
      : config_(config), clients_(clients), nics_(nics), verbose_(verbose), spares_(clients, nics) {}
  void AddObserver(Observer* o) { observers_.push_back(o); }

  // LinkRequest: the link between the client's NIC and a peer address; the
  // existing one's id if there is one, else a new link: ready at once from
  // both NICs' sealed spares (spares.h) if they have them, else in kSetup.
  void OnLink(Client& c, const Message& m);
  // LinkSealed: an end reports its segment sealed (or that it failed).
  void OnSealed(Client& c, const Message& m);
  // LinkClose: an end gave its link up; the other end is told why.
  void OnClose(Client& c, const Message& m);
  // RelinkRequest: an end hands back its segment after an hsid restart.
  void OnRelink(Client& c, Message& m);

  // Frees link `link_id`; sends LinkDown{reason} with text_for_a to end a
  // if notify_a, likewise for b. Nothing if the link is gone already.
  void Drop(uint32_t link_id, uint32_t reason, const std::string& text_for_a, const std::string& text_for_b,
            bool notify_a, bool notify_b);
  // Frees every link of NIC `n`, which is going for `why`: the peer ends
  // get LinkDown{reason} naming n as gone.
  void DropAllOf(const Nic& n, uint32_t reason, const std::string& why);
  // Client `client` is gone: the setups it requested no longer count for it.
  void EndSetupsOf(uint64_t client);
  // Drops the links whose setup or relink deadline has passed.
  void Expire(absl::Time now);
  bool AnyDeadline() const;
  // Links in setup that a live request waits for (the loop spins for them).
  uint32_t setups_pending() const { return setups_pending_; }
  const std::map<uint32_t, Link>& all() const { return links_; }
  // The NICs' spare segments (Policy offers a new NIC its first ones).
  Spares& spares() { return spares_; }
  // What a link made from spares left for after the turn (the server runs
  // it once the requester, whom hsid's answer woke, had the CPU first): the
  // peer's LinkSpareUp (unless the link went meanwhile) and new spares
  // for both NICs.
  bool HasDeferred() const { return !deferred_ups_.empty() || !deferred_offers_.empty(); }
  void RunDeferred();

 private:
  // A new link's two segments, and the copies its offers carry.
  struct NewSegments {
    hsi::UniqueFd a, b, offer_a, offer_b;
  };

  // OnLink's steps: the peer NIC, if `a` may link to it; the segments of a
  // new link; the link recorded and offered to both ends.
  absl::StatusOr<Nic*> Peer(const Nic& a, hsi::Address peer, const ChpidConfig& ch, const std::string& where);
  absl::StatusOr<NewSegments> MakeSegments(const hsi::RingGeometry& g, hsi::Address a, hsi::Address b,
                                           const std::string& where);
  void Open(Client& c, const Client& bc, Nic& a, Nic& b, const hsi::RingGeometry& g, NewSegments s,
            uint32_t request_id);
  // A new link from a sealed spare of each NIC: ready at once; the
  // requester gets LinkSpareUp and its LinkReply now, the peer its
  // LinkSpareUp and both NICs new spares after the turn (RunDeferred).
  void OpenFromSpares(Client& c, const Client& bc, Nic& a, Nic& b, const hsi::RingGeometry& g, uint32_t request_id);
  // What an end gets of the other, `other`, with its LinkPeer or
  // LinkSpareUp: a copy of its segment and a doorbell of its NIC, an open
  // file of the receiver's own where hsid may reopen the pipe (then
  // *bell_private is set). Empty if hsid is out of fds.
  std::vector<hsi::UniqueFd> PeerFds(const LinkEnd& other, bool* bell_private = nullptr);
  // kResourceExhausted if LPAR `lpar` has reached max_links.
  absl::Status LinkQuota(const std::string& lpar, const std::string& where);
  // Links with an end on a NIC of LPAR `lpar`, counted once per such end.
  uint32_t LinksOf(const std::string& lpar);
  // The end with NIC `nic_id` of link `link_id`, named by client `c` in a
  // notice `msg` (LinkSealed, LinkClose). nullptr if the link is already
  // gone (a race, not a fault), or if hsid never offered that link or that
  // end is not the client's: a protocol violation, answered, and the client
  // dropped.
  LinkEnd* NoticeEnd(Client& c, absl::string_view msg, uint32_t link_id, uint32_t nic_id);
  // Both ends sealed: hands each the other's segment and doorbell.
  void FinishSetup(Link& l);
  // OnRelink's steps: the segment handed in, checked (its geometry); the
  // link restored when the other end is waiting already, else recorded
  // to wait for it.
  absl::StatusOr<hsi::RingGeometry> CheckRelink(const Nic& n, hsi::Address peer, const hsi::Subnet& subnet,
                                                const hsi::UniqueFd& seg, const std::string& where);
  void CompleteRelink(Client& c, uint32_t request_id, Link& l, Nic& n, hsi::Address peer, hsi::UniqueFd seg,
                      const hsi::RingGeometry& geometry);
  void AwaitPeer(Client& c, uint32_t request_id, Nic& n, hsi::Address peer, hsi::UniqueFd seg);
  // The setup of `l` is over (done or failed): its requester may ask again.
  void EndSetup(Link& l);
  void SendDown(uint32_t nic_id, uint32_t link_id, uint32_t reason, const std::string& text);

  const Config& config_;
  Clients& clients_;
  Nics& nics_;
  const bool verbose_;
  std::vector<Observer*> observers_;
  uint32_t next_link_ = 1;
  uint32_t setups_pending_ = 0;  // links in setup with a requester (EndSetup not yet run)
  std::map<uint32_t, Link> links_;
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> by_pair_;  // (addr lo, addr hi) -> link id
  Spares spares_;
  struct DeferredUp {
    uint32_t link_id = 0;
    uint32_t nic = 0;
    OutMessage message;
  };
  std::vector<DeferredUp> deferred_ups_;
  std::vector<std::pair<uint32_t, hsi::RingGeometry>> deferred_offers_;  // nic id, geometry
};

}  // namespace hsid

#endif  // HSI_DAEMON_LINKS_H_
