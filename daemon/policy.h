// daemon/policy.h: who may be what, and where: LPAR names, NICs and their
// addresses, and what hsid holds for its clients across a restart.
//
// Policy applies the config's [[lpar]] and [[chpid]] rules (DESIGN.md
// invariant 3):
// - ClaimRequest: a connection claims an LPAR name if the policy lets its
//   uid or one of its gids claim it and no live connection has it. The
//   claim is also the hello (clients.h); an empty name claims nothing (an
//   admin tool, a sniffer).
// - AttachRequest: a claimed LPAR attaches a NIC to a CHPID that allows it,
//   within its max_nics, with its doorbell (the ring end of a split
//   doorbell, so that peers can ring it but not read it). The address is
//   the LPAR's static one for that CHPID (its first NIC there), the one
//   asked for (not another LPAR's static one), or the first free host
//   address of the subnet.
// - DetachRequest, and a client gone: the NIC goes and its links go down.
// Refusals say what rule refused and where it is configured; who else may
// claim a name, or holds an address, is told only to admins and to the
// same uid.
//
// Across a restart (reclaim.h): Policy loads the previous hsid's state
// file, holds its names and addresses for their owners for
// reclaim_grace_ms, and rewrites the file after a change, at most once per
// loop turn. If the previous hsid died (its socket was stale), dynamic
// addresses are handed out only after 400 ms: attaches asking for one wait
// (answered late, in order) while the old clients re-register theirs.
//
// Ownership: Policy decides and records; the records are the Clients'
// (Client::lpar, which only Policy writes) and the Nics'. It adds and
// removes NICs, taking their links down first.
//
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_POLICY_H_
#define HSI_DAEMON_POLICY_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients.h"
#include "config.h"
#include "hsi/address.h"
#include "hsi/doorbell.h"
#include "hsi/fd.h"
#include "hsi/wire/protocol.h"
#include "links.h"
#include "nics.h"
#include "reclaim.h"

namespace hsid {

class Policy {
 public:
  Policy(const Config& config, Clients& clients, Nics& nics, Links& links)
      : config_(config), clients_(clients), nics_(nics), links_(links) {}

  // At start: loads the state file `state_path` (if any) and holds what it
  // names; `stale`: the previous hsid died, so hold back dynamic addresses
  // while its clients re-register.
  void Start(const std::string& state_path, bool stale);

  void OnClaim(Client& c, const Message& m);
  // May keep `m` (its doorbell fd) to answer it later (see above).
  void OnAttach(Client& c, Message& m);
  void OnDetach(Client& c, const Message& m);
  // Client `c` is gone for `why`: its LPAR name and NICs are free, its
  // links go down. Returns whether it had NICs.
  bool OnClientGone(const Client& c, const std::string& why);

  // Timer work: drops the holds once the grace is over; answers the
  // attaches that waited for the recovery window.
  void ExpireHolds(absl::Time now);
  void RetryDeferred(absl::Time now);
  bool NeedsTimer() const { return !deferred_.empty() || holds_.active(); }
  // Rewrites the state file if anything it records changed. Once per turn.
  void SaveStateIfChanged();

 private:
  // What OnAttach's first step found: the LPAR's policy and the CHPID.
  struct Attachable {
    const LparConfig* lpar;
    const ChpidConfig* chpid;
  };
  // A NIC's doorbell as hsid keeps it.
  struct NicBell {
    hsi::Doorbell bell;
    bool is_private;  // hsid's own open file of the pipe
  };

  // OK if `c` may claim `name` now; else why not.
  absl::Status MayClaim(const Client& c, const std::string& name);
  // OnAttach's steps: may `c` attach to CHPID `chpid`; the doorbell it
  // handed in; the address; the NIC recorded and the client answered.
  absl::StatusOr<Attachable> MayAttach(const Client& c, uint32_t chpid);
  static absl::StatusOr<NicBell> AdoptDoorbell(hsi::UniqueFd fd);
  absl::StatusOr<hsi::Address> ChooseAddress(const Client& c, const LparConfig& policy, const ChpidConfig& ch,
                                             uint32_t asked);
  // The static, asked-for or first free address, before the checks every
  // address gets (held for someone else, in use).
  absl::StatusOr<hsi::Address> CandidateAddress(const Client& c, const LparConfig& policy, const ChpidConfig& ch,
                                                uint32_t asked, const std::string& chname);
  // The LPAR other than `lpar` whose static address on CHPID `chpid` is `a`.
  const LparConfig* ReservedByOther(const std::string& lpar, uint32_t chpid, hsi::Address a) const;
  void Record(Client& c, const ChpidConfig& ch, hsi::Address addr, NicBell bell, uint32_t request_id);
  // Removes NIC `nic_id`: its links go down with `reason` and `why`.
  void RemoveNic(uint32_t nic_id, uint32_t reason, const std::string& why);

  const Config& config_;
  Clients& clients_;
  Nics& nics_;
  Links& links_;
  absl::Time recovery_until_ = absl::InfinitePast();
  std::vector<std::pair<uint64_t, Message>> deferred_;  // attaches waiting for recovery
  // Names and addresses of the previous hsid's clients, held for them
  // (reclaim.h), and whether the state file needs writing.
  ReclaimHolds holds_;
  StateFile state_file_;
  bool state_dirty_ = false;
};

}  // namespace hsid

#endif  // HSI_DAEMON_POLICY_H_
