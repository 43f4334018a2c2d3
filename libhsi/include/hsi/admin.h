// hsi/admin.h: hsid's admin operations, for hsictl and tests.
//
// An AdminClient is a control connection that claims no LPAR. hsid allows
// the operations below only to admin uids/gids from its config (root
// always); others get kPermissionDenied naming the policy. hsid reads the
// link counters from the ring segments themselves (each end publishes its
// own counters in its own segment; hsid preads them and never maps a ring).
//
// Thread safety: one thread at a time per AdminClient.
#ifndef HSI_ADMIN_H_
#define HSI_ADMIN_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hsi/address.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/export.h"

namespace hsi {

namespace internal {
class SessionState;
}

struct ChpidSpec {
  uint32_t id = 0;                          // 0x00..0xFF
  uint32_t mfs = 16384;                     // 16K, 24K, 40K or 64K
  Subnet subnet;                            // must not overlap another CHPID's
  uint64_t queue_size = uint64_t{1} << 20;  // ring capacity, power of two
  bool drop = false;                        // overflow policy drop (else block)
  std::vector<std::string> lpars = {"*"};   // who may attach (at most 8 names)
};

struct ChpidInfo {
  ChpidSpec spec;
  uint32_t mtu = 0;
  uint32_t nics = 0;
  uint32_t links = 0;
};

struct NicListing {
  uint32_t chpid = 0;
  Address address;
  bool up = true;
  uint32_t links = 0;
  std::string lpar;
  uint32_t pid = 0, uid = 0;
  std::optional<NicInterface> interface;  // if its owner declared one
};

// Where a link is in hsid's set-up state machine.
enum class LinkPhase : uint32_t {
  kSetup = 0,       // hsid offered the segments; not both ends have the peer's yet
  kReady = 1,       // both ends hold each other's segment and doorbell
  kRelinkWait = 2,  // after an hsid restart, one end handed its segment back
                    // and the other has not yet (within reclaim_grace_ms)
};
// "setup", "ready", "relink-wait".
HSI_EXPORT const char* LinkPhaseName(LinkPhase phase);

// One direction of a link with every counter both ends publish: the
// sender's (from its segment) and the receiver's (from its segment).
struct DirectionStats {
  uint64_t frames = 0, bytes = 0;  // sender: committed
  uint64_t full_events = 0;        // sender: times it found the ring full
  uint64_t drops = 0;              // sender: dropped by overflow policy drop
  uint64_t wakeups = 0;            // sender: doorbell writes to the receiver
  uint64_t rx_frames = 0, rx_bytes = 0;  // receiver: released
  uint64_t rx_wakeups = 0;         // receiver: doorbell writes to a sender waiting for room
};

struct LinkStats {
  uint32_t id = 0;
  uint32_t chpid = 0;
  Address a, b;
  LinkPhase state = LinkPhase::kSetup;
  DirectionStats a_to_b, b_to_a;
};

// An hsi-run connection as hsid knows it (hsictl streams): the TCP
// 4-tuple, each end's pid and uid, and the bytes each end's ring carried.
struct StreamListing {
  uint64_t id = 0;
  std::string state;      // "proposed", "paired", "half-closed"
  std::string connector;  // "127.0.0.1:40312"
  std::string acceptor;   // "127.0.0.1:6379"
  uint32_t connector_pid = 0, acceptor_pid = 0, connector_uid = 0, acceptor_uid = 0;
  uint64_t bytes_c_to_a = 0, bytes_a_to_c = 0, age_ms = 0;
};

class HSI_EXPORT AdminClient {
 public:
  // Connects to hsid (socket path as hsi::ResolveSocketPath).
  static absl::StatusOr<AdminClient> Connect(const std::string& socket_path = "");
  AdminClient();
  ~AdminClient();
  AdminClient(AdminClient&&) noexcept;
  AdminClient& operator=(AdminClient&&) noexcept;

  // Whether hsid counts this connection's uid/gid as an admin.
  bool is_admin() const;

  absl::Status DefineChpid(const ChpidSpec& spec);
  // kFailedPrecondition while NICs are attached to it.
  absl::Status UndefineChpid(uint32_t id);
  // Down: every link of the NIC goes down (both ends get a link-down event)
  // and its owner's calls return kUnavailable until it is set up again.
  absl::Status SetNicState(Address address, bool up);

  absl::StatusOr<std::vector<ChpidInfo>> ListChpids();
  absl::StatusOr<std::vector<NicListing>> ListNics();
  // Every link with its state and its full counters (hsictl links, hsictl
  // stats). Counters live in the ring segments, so they cover the links
  // hsid has now; a link that is gone takes its counters with it.
  absl::StatusOr<std::vector<LinkStats>> ListLinks();
  // hsi-run's connections (all for an admin, else those of the caller's
  // uid), and its fallbacks to TCP counted by reason ("no_listener", ...;
  // every reason, zeros included, in the protocol's order).
  absl::StatusOr<std::vector<StreamListing>> ListStreams();
  absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>> ListFallbacks();
  // What each coupling facility declared about its structures
  // (Session::DeclareCfStructure), by CF client then structure name.
  absl::StatusOr<std::vector<CfStructureView>> ListCfs();

 private:
  std::shared_ptr<internal::SessionState> state_;
};

}  // namespace hsi

#endif  // HSI_ADMIN_H_
