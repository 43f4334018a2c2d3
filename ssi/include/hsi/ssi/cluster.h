// hsi/ssi/cluster.h: what an SSI cluster of hsids keeps in etcd, and where.
//
// One source of truth for the key layout and the records, shared by hsid's
// cluster member (daemon/cluster.h), hsi-relocate and hsictl. Under
// "/hsi/CLUSTER/":
//
//   members/M       MemberRecord (JSON), on member M's lease: a member
//                   whose hsid dies loses its key when the lease expires
//   guests/G        GuestRecord (JSON): the directory entry of guest G
//   residency/G     the member G is logged on to (plain text); absent:
//                   logged off. Changed only by transactions that compare
//                   the old value, so G is logged on to one member at a time
//   relocations/G   Relocation (JSON) while a relocation of G is under way
//                   (created only if absent: one at a time per guest)
//   outcomes/G      Outcome (JSON) of G's last relocation
//
// A guest is a network namespace with its processes; on each member it may
// have one HiperSockets interface (an hsi-ifd of LPAR name G on that
// member's CHPID). Its LPAR name on every member is its guest name.
//
// Thread safety: plain values and free functions.
#ifndef HSI_SSI_CLUSTER_H_
#define HSI_SSI_CLUSTER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hsi/ssi/etcd.h"

namespace hsi::ssi {

// Names of clusters, members and guests: 1..31 of [A-Za-z0-9_.-] (as LPAR
// names). kInvalidArgument naming `what`.
absl::Status CheckName(absl::string_view what, absl::string_view name);

class Keys {
 public:
  explicit Keys(const std::string& cluster) : root_("/hsi/" + cluster + "/") {}
  std::string Members() const { return root_ + "members/"; }
  std::string Member(const std::string& m) const { return Members() + m; }
  std::string Guests() const { return root_ + "guests/"; }
  std::string Guest(const std::string& g) const { return Guests() + g; }
  std::string Residencies() const { return root_ + "residency/"; }
  std::string Residency(const std::string& g) const { return Residencies() + g; }
  std::string Relocations() const { return root_ + "relocations/"; }
  std::string Relocation(const std::string& g) const { return Relocations() + g; }
  std::string Outcomes() const { return root_ + "outcomes/"; }
  std::string Outcome(const std::string& g) const { return Outcomes() + g; }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

struct MemberChpid {
  uint32_t id = 0;                  // 00..FF
  std::string subnet;               // "172.0.9.0/24"
  std::vector<std::string> lpars;   // who may attach ("*": any)
  bool Allows(const std::string& lpar) const;
};

struct MemberRecord {
  std::string name;
  std::string socket;  // the member's hsid control socket
  int64_t pid = 0;
  int64_t started_ms = 0;  // unix ms
  std::vector<MemberChpid> chpids;
  int64_t lease = 0;  // from etcd (not in the JSON)
};

struct HsiInterface {
  std::string member;  // the member whose CHPID this interface is on
  uint32_t chpid = 0;
  std::string ifname;   // in the guest's namespace (hsi0, hsi1)
  std::string address;  // A/LEN
};

struct GuestRecord {
  std::string name;
  std::string group;  // workload group (--evacuate GROUP)
  std::string netns;  // the guest's network namespace
  std::string vipa;   // informational: its VIPA
  std::vector<HsiInterface> hsi;
  // The interface on member `m`, or nullptr.
  const HsiInterface* On(const std::string& m) const;
};

struct Relocation {
  std::string guest, from, to;
  std::string step;  // "down" (source interface down), "moved" (residency moved), "up"
  int64_t pid = 0;   // of the hsi-relocate doing it
  int64_t started_ms = 0;
};

struct Outcome {
  std::string guest, from, to;
  std::string result;  // "relocated", "refused", "failed", "recovered"
  std::string message;
  int64_t finished_ms = 0, duration_ms = 0;
};

std::string ToJson(const MemberRecord& r);
std::string ToJson(const GuestRecord& r);
std::string ToJson(const Relocation& r);
std::string ToJson(const Outcome& r);
// kInvalidArgument naming `key` if the text is not such a record.
absl::StatusOr<MemberRecord> ParseMember(const std::string& key, const std::string& text);
absl::StatusOr<GuestRecord> ParseGuest(const std::string& key, const std::string& text);
absl::StatusOr<Relocation> ParseRelocation(const std::string& key, const std::string& text);
absl::StatusOr<Outcome> ParseOutcome(const std::string& key, const std::string& text);

// Everything under /hsi/CLUSTER/, read in one range (one revision).
struct ClusterView {
  int64_t revision_hint = 0;  // highest mod_revision seen
  std::map<std::string, MemberRecord> members;
  std::map<std::string, GuestRecord> guests;
  std::map<std::string, std::string> residency;  // guest -> member
  std::map<std::string, Relocation> relocations;
  std::map<std::string, Outcome> outcomes;
  std::vector<std::string> bad;  // records that did not parse, with why
  int64_t residency_mod(const std::string& g) const;
  std::map<std::string, int64_t> residency_mods;
};
absl::StatusOr<ClusterView> ReadCluster(EtcdClient& etcd, const Keys& keys);

int64_t NowMs();

}  // namespace hsi::ssi

#endif  // HSI_SSI_CLUSTER_H_
