// cf/duplex.h: duplexing of structures in two CFs (System-Managed
// Duplexing's role; docs/cf.md "Duplexing").
//
// A structure defined `duplex = "primary"` in one CF's policy and
// `duplex = "secondary"` in its partner's ([duplex] partner, address) is
// held in both. The primary is the single sequencer: connectors talk to it
// only; every request on the structure that succeeds there is mirrored to
// the secondary over the CF-to-CF link (an hsi link between the two CFs'
// NICs) in the primary's order, and the connector's reply (with the notes
// the request caused) is sent only after the secondary acknowledged it.
// The secondary applies each mirrored request to its own copy with the
// same code (the structures are deterministic, and the connection tokens
// are the primary's), so both copies stay equal. Mirrored: Connect (the
// token, connector, LPAR), every request except the reads that change
// nothing (ListRead, CacheChanged, CacheStats), and a connector's failure
// seen by the primary (its locks become retained in both), and the
// put-back of an entry whose PopNote could not be sent (PutBack).
//
// Cache structures: each CF owns one half of every connector's validity
// vector (hsi/cf_vector.h: a bit is valid if valid in both); the
// secondary grants its half when it applies the Connect, and the Connect
// reply names it. A secondary that takes over first clears its half of
// every vector (every local copy invalid, before anything is served),
// then ends the connections (the entries, changed data included, stay);
// connectors get fresh vectors when they connect again. A primary that
// ends duplexing tells each cache connector (DuplexEndNote) to drop the
// secondary's frozen half.
//
// Establishment: the primary, when it starts, links to the partner and
// sends Hello naming its primary structures; the secondary accepts if it
// holds each as secondary and has not taken over, and discards what it
// holds of them; the primary then copies each (below; empty at the first
// start). The secondary serves no connector while its primary lives
// ("connect to the primary": kUnavailable).
//
// Copy (re-duplexing): a primary running simplex (its secondary died, was
// dropped, or was not there at start) looks for the partner's NIC once a
// second (Retry: Nic::PeerLpar), sends Hello when it is up (answered
// through Serve; a refusal or no answer backs off up to 60 s), and once
// accepted copies each named structure between two requests (it is single
// threaded: the copy is consistent, and every later update is mirrored
// behind it on the same link): kDuplexCopyConn (connections), then
// kDuplexCopyLock or kDuplexCopyList (the whole state, in order), then
// kDuplexCopyEnd (the count, the counters), each acknowledged. Only then
// are the structures duplexed again. The secondary validates every copy
// frame; a bad one ends the copy (not duplexed, mirrors refused; the
// primary stays simplex and sends a Drop). A structure whose copy was not
// ended is never taken over (Serve: "lost unless the primary serves it").
// A dropped secondary that answers a Hello again is re-duplexed: the
// Hello discards its out-of-date copy first. A cache structure is named
// only while empty and unconnected (its connectors would need the new
// secondary's half of their vectors first: not done): else it stays
// simplex (simplex_), logged once.
//
// Failures: the secondary dies (its link goes down, a mirror is not
// acknowledged within 5 s): the primary goes on simplex (until Retry re-duplexes); if the link is
// still up (a stalled secondary) it sends DuplexDrop behind the last
// mirror, and the secondary, reading in order (draining what a dead
// primary committed before it decides), never takes over after it. The primary dies:
// the secondary sees the link go down and takes over: every mirrored
// connection ends until its connector connects again under the same name
// and gets its old connection token back, so the CfClient's Connection
// values stay valid (CfClientOptions::secondary: the client fails over by
// itself). Meanwhile a live connector's lock connection is suspended (its
// locks and queued requests kept, notes for it held for its return; failed
// with its locks retained if it is not back within 10 s), a dead one's
// fails at once (retained); a live connector's list connection keeps its
// monitors (noted again on return for each monitored list with entries)
// and a cache connection its castout locks, on the same terms (a dead
// one's monitors end, its castout locks are released); waiting pops and
// cache registrations end at once (see above). A primary that restarts
// after its secondary took over finds Hello refused and sends its connectors there (kUnavailable
// naming the partner). Making such a primary the survivor's new secondary is not done: the survivor
// serves simplex until both CFs restart.
//
// Thread safety: none; the Server's thread (it is part of the Server).
#ifndef HSI_CF_DUPLEX_H_
#define HSI_CF_DUPLEX_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cache_structure.h"
#include "hsi/address.h"
#include "hsi/nic.h"
#include "list_structure.h"
#include "lock_structure.h"
#include "protocol.h"

namespace hsi::cf {

class Server;

// A frame the Server holds while a request on a duplexed structure is
// applied (sent once the secondary acknowledged it); `popped`: it is the
// PopNote handing that entry to a waiting pop (put back if it cannot go).
struct HeldFrame {
  Address to;
  std::vector<uint8_t> frame;
  std::optional<Transition> popped;
};

class Duplex {
 public:
  // Deliberate bugs for the tests (hsi-cf --duplex-fault):
  // `fault_mirror_after_reply`: the primary replies first and mirrors each
  // request only when the next one comes; `fault_keep_vectors`: a
  // secondary taking over leaves its half of the cache connectors'
  // vectors as it was (their copies stay valid).
  Duplex(Server& server, bool fault_mirror_after_reply, bool fault_keep_vectors)
      : server_(server), fault_(fault_mirror_after_reply), fault_keep_vectors_(fault_keep_vectors) {}

  // The primary's establishment (Hello), waiting up to `wait` for the
  // partner's link. Logs what came of it; never fails the CF (a missing
  // partner means simplex).
  void Establish(absl::Duration wait);
  // One frame from `from`: true if duplexing handled it (a partner's frame,
  // a request on a duplexed structure, a secondary's refusal); false: the
  // Server handles it as usual.
  bool Serve(Address from, absl::Span<const uint8_t> frame);
  // Called when the NIC reports a link down: the secondary takes over if
  // it was its primary's; the primary goes simplex if it was its partner's.
  void CheckPartner();
  // The primary running simplex (its secondary died, was dropped, or was
  // not there at start): at most once a second asks hsid whether the
  // partner's NIC is up (Nic::PeerLpar); if it is, sends Hello (not
  // waited for: its answer comes through Serve, and then the copy is
  // made). A refused or unanswered Hello backs off (1 s, 2 s, 4 s ... 60 s);
  // a partner that is not there is asked for again each second. Called by
  // the Server's loop between requests.
  void Retry(absl::Time now);
  // Mirrors a connector's failure seen by the primary (before its notes go).
  void MirrorFail(uint32_t token);
  // The PopNote of `t` to connection `t.conn` of a duplexed structure could not
  // be sent (`why`): the primary puts the entry back at the head of its
  // list, mirrors that (kDuplexPutBack, so the secondary's copy holds it
  // too) and then sends what the push caused (a transition, the next
  // waiter's PopNote). False, doing nothing, when the structure is not
  // duplexed from this CF (the Server's simplex put-back then).
  bool PutBack(const Transition& t, const absl::Status& why);
  // After a takeover: the token a connector's connection had at the
  // primary, for a Connect under the same names (0 if none).
  uint32_t ReclaimToken(const std::string& structure, const std::string& connector);
  // After a takeover, lock connections whose connectors live are
  // suspended: a note for one (a grant of its queued request, a
  // cancellation) is held here, and Returned(token) hands them over when
  // the connector connects again (the connection is live from then on).
  // Expire fails those not back within the grace (their locks retained).
  void HoldNote(const Note& n);
  std::vector<Note> Returned(uint32_t token);
  bool Suspended(uint32_t token) const { return suspended_.contains(token); }
  void Expire(absl::Time now);
  // For hsictl cfs: (this CF holds the primary, the partner is linked and
  // duplexing on) of a duplexed structure; nullopt for a simplex one.
  std::optional<std::pair<bool, bool>> RoleAndPartner(const std::string& structure) const {
    const Role r = RoleOf(structure);
    if (r == Role::kNone) return std::nullopt;
    return std::make_pair(r == Role::kPrimary,
                          duplexed_ && (r == Role::kPrimary ? !simplex_.contains(structure)
                                                            : current_.contains(structure)));
  }

 private:
  enum class Role { kNone, kPrimary, kSecondary };
  Role RoleOf(const std::string& structure) const;
  // Sends one frame to the partner and waits for its acknowledgement;
  // any failure ends duplexing (simplex, logged).
  void Mirror(absl::Span<const uint8_t> frame, uint64_t id);
  // The fault's (fault_) mirror of the last request, sent now if there is one.
  void FlushDeferred();
  // Sends frames held while a request was applied, once it is mirrored: a
  // PopNote through Server::SendPopNote (put back if it cannot go).
  void SendHeld(std::vector<HeldFrame> held);
  void Break(const std::string& why);
  bool HoldsPrimaries() const;
  // The primary structures to name in a Hello: all but a cache structure
  // with entries or connections (not copied: it stays simplex, logged once).
  std::vector<std::string> Candidates();
  // What came of a Hello naming `names` (`st`: the secondary's answer):
  // on OK, the copy of each, then duplexed; else simplex, and Retry backs off.
  void OnHelloAnswer(const std::vector<std::string>& names, const absl::Status& st, bool again);
  void Backoff(absl::Time now);
  // Sends `frame` (request `id`) to the partner and waits (kAckTimeout)
  // for its answer: OK or the secondary's refusal, or the link's failure.
  absl::Status Exchange(absl::Span<const uint8_t> frame, uint64_t id);
  // Copy (primary): structure `name`'s connections and whole state in
  // frames of at most proto::kMaxFrame, then its end (kDuplexCopyEnd).
  absl::Status Copy(const std::string& name, size_t* frames, size_t* items);
  // Items [0, n) of one kind in as many frames as they need; `size(i)`
  // bounds item i's bytes, `put(i, w)` writes it.
  template <typename SizeFn, typename PutFn>
  absl::Status SendItems(uint8_t type, const std::string& name, size_t n, SizeFn size, PutFn put,
                         size_t* frames);
  // Copy (secondary): one copy frame, validated and applied.
  absl::Status ApplyCopy(const proto::Header& h, proto::Reader& r);
  // The secondary's copy of `name` goes (its connections, entries, locks).
  void Discard(const std::string& name);
  void TakeOver(const std::string& why);
  void OnPartnerFrame(Address from, absl::Span<const uint8_t> frame);
  absl::Status ApplyMirrored(const proto::Header& h, proto::Reader& r);
  void Ack(Address to, const proto::Header& h, const absl::Status& st);
  bool HoldsSecondaries() const;

  Server& server_;
  const bool fault_;
  const bool fault_keep_vectors_;
  bool duplexed_ = false;   // primary: the secondary acknowledges; secondary: a primary leads
  bool took_over_ = false;  // secondary: its primary died, it serves now
  bool moved_ = false;      // primary: the partner took over before this CF started
  bool dropped_ = false;    // secondary: the primary ended duplexing (kDuplexDrop): never take over
  hsi::Link partner_;
  // Primary: structures served simplex although duplexed_ (caches not
  // copied at a re-duplex); those said so in the log; the pending Hello
  // (0: none) with its names and deadline; when Retry may try next.
  std::set<std::string> simplex_;
  std::set<std::string> said_simplex_;
  uint64_t hello_id_ = 0;
  std::vector<std::string> hello_names_;
  absl::Time hello_deadline_;
  absl::Time next_retry_ = absl::InfinitePast();
  absl::Duration backoff_ = absl::Seconds(1);
  bool partner_seen_ = false;  // Retry: the partner's NIC was up at the last look
  // Secondary: structures whose copy is complete and mirrored to (taken
  // over if the primary dies), and those whose copy is under way (items
  // received so far).
  std::set<std::string> current_;
  std::map<std::string, uint64_t> copying_;
  uint64_t next_id_ = 1;
  std::vector<uint8_t> buf_;
  std::vector<uint8_t> deferred_;  // the fault's mirror not yet sent
  std::map<std::pair<std::string, std::string>, uint32_t> reclaim_;  // after a takeover
  // A connection kept after a takeover for its connector's return: one of
  // lock (its locks and queued requests), cache (its castout locks) or
  // list (its monitors).
  struct Suspension {
    LockStructure* lock = nullptr;
    absl::Time until;
    std::vector<Note> notes;
    CacheStructure* cache = nullptr;
    ListStructure* list = nullptr;
  };
  std::map<uint32_t, Suspension> suspended_;  // after a takeover: token -> its suspension
};

}  // namespace hsi::cf

#endif  // HSI_CF_DUPLEX_H_
