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
// token, connector, LPAR), every request except ListRead, and a
// connector's failure seen by the primary (its locks become retained in
// both).
//
// Establishment: the primary, when it starts, links to the partner and
// sends Hello naming its primary structures; the secondary accepts if it
// holds each as secondary, has no connection to it yet, and has not taken
// over. The secondary serves no connector while its primary lives ("connect
// to the primary": kUnavailable).
//
// Failures: the secondary dies (its link goes down, a mirror is not
// acknowledged within 5 s): the primary goes on simplex. The primary dies:
// the secondary sees the link go down and takes over: every mirrored
// connection fails (its locks become retained, as for a dead connector),
// and a connector that connects again under the same name gets its locks
// back and its old connection token, so the CfClient's Connection values
// stay valid (CfClientOptions::secondary: the client fails over by
// itself). A primary that restarts after its secondary took over finds
// Hello refused and sends its connectors there (kUnavailable naming the
// partner). Re-duplexing a structure into a new secondary (copying it) is
// not done: a structure left simplex stays simplex until both CFs restart.
//
// Thread safety: none; the Server's thread (it is part of the Server).
#ifndef HSI_CF_DUPLEX_H_
#define HSI_CF_DUPLEX_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "hsi/address.h"
#include "hsi/nic.h"
#include "protocol.h"

namespace hsi::cf {

class Server;

class Duplex {
 public:
  // `fault_mirror_after_reply`: a deliberate bug for the tests (hsi-cf
  // --duplex-fault mirror-after-reply): the primary replies first and
  // mirrors each request only when the next one comes.
  Duplex(Server& server, bool fault_mirror_after_reply)
      : server_(server), fault_(fault_mirror_after_reply) {}

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
  // Mirrors a connector's failure seen by the primary (before its notes go).
  void MirrorFail(uint32_t token);
  // After a takeover: the token a connector's connection had at the
  // primary, for a Connect under the same names (0 if none).
  uint32_t ReclaimToken(const std::string& structure, const std::string& connector);
  // For hsictl cfs: (this CF holds the primary, the partner is linked and
  // duplexing on) of a duplexed structure; nullopt for a simplex one.
  std::optional<std::pair<bool, bool>> RoleAndPartner(const std::string& structure) const {
    const Role r = RoleOf(structure);
    if (r == Role::kNone) return std::nullopt;
    return std::make_pair(r == Role::kPrimary, duplexed_);
  }

 private:
  enum class Role { kNone, kPrimary, kSecondary };
  Role RoleOf(const std::string& structure) const;
  // Sends one frame to the partner and waits for its acknowledgement;
  // any failure ends duplexing (simplex, logged).
  void Mirror(absl::Span<const uint8_t> frame, uint64_t id);
  void Break(const std::string& why);
  void TakeOver(const std::string& why);
  void OnPartnerFrame(Address from, absl::Span<const uint8_t> frame);
  absl::Status ApplyMirrored(const proto::Header& h, proto::Reader& r);
  void Ack(Address to, const proto::Header& h, const absl::Status& st);
  bool HoldsSecondaries() const;

  Server& server_;
  const bool fault_;
  bool duplexed_ = false;   // primary: the secondary acknowledges; secondary: a primary leads
  bool took_over_ = false;  // secondary: its primary died, it serves now
  bool moved_ = false;      // primary: the partner took over before this CF started
  hsi::Link partner_;
  uint64_t next_id_ = 1;
  std::vector<uint8_t> buf_;
  std::vector<uint8_t> deferred_;  // the fault's mirror not yet sent
  std::map<std::pair<std::string, std::string>, uint32_t> reclaim_;  // after a takeover
};

}  // namespace hsi::cf

#endif  // HSI_CF_DUPLEX_H_
