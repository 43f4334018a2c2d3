// tools/hsi-relocate/relocate.h: live guest relocation between the members
// of an SSI cluster of hsids (issue 18), as z/VM's VMRELO plus the paper's
// LGREVACB exec and lgr_hsi.sh script in one.
//
// The state is etcd's (hsi/ssi/cluster.h); what this adds is the guest's
// side: its HiperSockets interfaces (hsi-ifd devices in its network
// namespace), set up or down with iproute2 ("ifup"/"ifdown").
//
// Relocate(G, TO), with automation (the default):
//   0. an interrupted relocation of G (a record left by a killed command)
//      is recovered first (Recover);
//   1. eligibility: TO is a live member (holds its lease); for each
//      HiperSockets interface of G, G has one for TO, on a CHPID that TO
//      defines and whose policy lets LPAR G attach. Otherwise a refusal
//      naming every missing piece (kFailedPrecondition), recorded as the
//      outcome;
//   2. relocations/G is created (only if absent: one at a time);
//   3. step "down": G's interface of its current member goes down (OSPF
//      withdraws that HiperSockets route; traffic to the VIPA takes
//      trk1/trk2);
//   4. step "moved": one etcd transaction moves residency/G from FROM to TO
//      if it still says FROM and TO still holds its lease. FROM's hsid then
//      holds G's NICs down, TO's raises them (daemon/cluster.h);
//   5. step "up": G's interface of TO comes up (OSPF announces it);
//   6. the outcome is written and relocations/G deleted.
// Without automation (the paper's section 5.4.1) steps 3 and 5 are skipped:
// the old interface stays up, announced by OSPF, and reaches no one.
//
// Failure: whatever step fails or is killed, Recover(G) (run by hand, or by
// the next relocation of G) makes the interfaces agree with residency/G:
// the interface of the member G is logged on to up, every other one down;
// so G is on exactly one member with exactly that member's interface up.
// If etcd is out of reach mid-way, the command leaves the source interface
// down (never a wrong one up) and says to run --recover.
//
// Thread safety: one thread.
#ifndef HSI_TOOLS_RELOCATE_H_
#define HSI_TOOLS_RELOCATE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hsi/ssi/cluster.h"
#include "hsi/ssi/etcd.h"

namespace hsi::relocate {

struct Context {
  ssi::EtcdClient* etcd;
  ssi::Keys keys;
  bool automation = true;
  // Fault tests: after this step ("down", "moved", "up") stop the process
  // (SIGSTOP) so that a test can kill it there (HSI_RELOCATE_STOP_AFTER).
  std::string stop_after;
  bool verbose = true;  // print each step on stdout
};

// Sets `ifname` in network namespace `netns` up or down (ip -n NETNS link
// set dev IF up|down). kUnavailable with ip's message if it fails.
absl::Status SetLink(const std::string& netns, const std::string& ifname, bool up);
// Whether `ifname` in `netns` is administratively up; kNotFound if absent.
absl::StatusOr<bool> LinkIsUp(const std::string& netns, const std::string& ifname);

// Adds or replaces G's directory entry.
absl::Status Define(Context& ctx, const ssi::GuestRecord& g);
// Logs G on to `member` (only if G is logged on nowhere and the member is
// live), then sets its interfaces to match.
absl::Status Logon(Context& ctx, const std::string& guest, const std::string& member);
// Logs G off: residency deleted, every interface down.
absl::Status Logoff(Context& ctx, const std::string& guest);

// What is missing for G to relocate to `to` (empty: eligible).
std::vector<std::string> Ineligible(const ssi::ClusterView& v, const std::string& guest, const std::string& to);

// Relocates G to `to` as above. The outcome is also written to etcd.
absl::StatusOr<ssi::Outcome> Relocate(Context& ctx, const std::string& guest, const std::string& to);
// Makes G's interfaces agree with its residency and clears a relocation
// record; returns what it did, for people.
absl::StatusOr<std::string> Recover(Context& ctx, const std::string& guest);
// Relocates every guest of workload group `group` not on `to` to `to`, one
// at a time; returns each outcome (failures included).
absl::StatusOr<std::vector<ssi::Outcome>> Evacuate(Context& ctx, const std::string& group, const std::string& to);

}  // namespace hsi::relocate

#endif  // HSI_TOOLS_RELOCATE_H_
