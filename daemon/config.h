// daemon/config.h: hsid's configuration: CHPIDs, LPAR policy, admins.
//
// Read from TOML (toml11) at start; a built-in default (kDefaultConfig)
// makes plain `hsid` a usable host: one CHPID F0 with 16K frames, open to
// the uid that started hsid. Every error names the file, the key and what
// is wrong, with the line when the TOML parser knows it.
//
// Thread safety: plain values; hsid is single-threaded.
#ifndef HSI_DAEMON_CONFIG_H_
#define HSI_DAEMON_CONFIG_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hsi/address.h"

namespace hsid {

struct ChpidConfig {
  uint32_t id = 0;          // 0x00..0xFF
  uint32_t mfs = 16384;     // maximum frame size
  uint32_t mtu = 8192;      // mfs - 8K, as on the real machine
  hsi::Subnet subnet;
  uint64_t queue_size = uint64_t{1} << 20;  // ring capacity in bytes
  bool drop = false;        // overflow policy: false = block
  std::vector<std::string> lpars = {"*"};  // who may attach; "*" = any
  // Who may open the Network Traffic Analyzer (hsi-dump) on this CHPID,
  // besides admins: uids (`sniffers`) and gids (`sniffer_gids`).
  std::vector<uint32_t> sniffer_uids;
  std::vector<uint32_t> sniffer_gids;

  bool Allows(const std::string& lpar) const;
};

struct LparConfig {
  std::string name;  // "*" matches any name not listed
  std::vector<uint32_t> uids;
  std::vector<uint32_t> gids;
  uint32_t max_nics = 16;
  uint32_t max_links = 1024;
  std::map<uint32_t, hsi::Address> addresses;  // static address per CHPID
};

// [cluster]: this hsid is member `member` of SSI cluster `name`, whose
// state is in etcd (cluster.h). Absent: a lone hsid, no etcd at all.
struct ClusterConfig {
  bool enabled = false;
  std::string name = "ssi";
  std::string member;
  std::vector<std::string> etcd;  // endpoints, http://HOST:PORT
  uint32_t lease_ttl_s = 2;       // a dead member is seen within this (etcd's minimum is 2)
  uint32_t poll_ms = 100;         // how often the member reads the cluster state
};

// One CTC connection (issue 19): device `device_a` of LPAR `lpar_a` to
// `device_b` of `lpar_b`, as an IOCDS defines a FICON CTC for two LPARs.
// Only those two LPARs may open it, each its own end.
struct CtcConfig {
  std::string lpar_a, lpar_b;
  uint32_t device_a = 0, device_b = 0;  // 0x0000..0xFFFF
  uint32_t block_size = 65536;          // largest single write (hsi::kDefaultCtcBlockSize)
  uint32_t recovery_us = 200;           // collision recovery delay (hsi::kDefaultCtcRecovery)
};

struct Config {
  std::string source;  // the file, or "<built-in default>"
  std::vector<uint32_t> admin_uids;  // root is always an admin as well
  std::vector<uint32_t> admin_gids;
  uint32_t max_in_flight = 64;  // link setups a client may have pending
  // A new connection must send its ClaimRequest (the hello) within this or
  // it is answered and closed, so half-open connections cannot pile up.
  uint32_t hello_timeout_ms = 5000;
  // Connections one uid may hold that have not yet claimed (successfully
  // sent their hello); more are refused at once. Keeps one uid's flood of
  // half-open connections from using up hsid's fds for everyone.
  uint32_t max_unclaimed_per_uid = 64;
  // Connections one uid may hold in all (claimed or not), and all uids
  // together: one tenant cannot use up hsid's fds (issue 13).
  uint32_t max_connections_per_uid = 256;
  uint32_t max_connections = 4096;
  // Bytes of replies and events queued for clients that do not read their
  // sockets: per uid and for all clients (besides 1 MiB per connection). A
  // client whose message would pass a cap is dropped, named in the log.
  uint64_t max_queued_bytes_per_uid = uint64_t{16} << 20;
  uint64_t max_queued_bytes = uint64_t{128} << 20;
  // After hsid restarts (it finds its stale socket and the state file
  // beside it): how long the LPAR names, addresses and links the previous
  // hsid had are held for their owners to reclaim.
  uint32_t reclaim_grace_ms = 10000;
  // hsi-run (transparent TCP, daemon/streams.h): the uids whose processes
  // may have their TCP connections paired on rings ("self" by default), and
  // those of them that may be paired with each other across uids (a pair of
  // different uids needs both listed). A refusal is a fallback to TCP.
  std::vector<uint32_t> run_uids;
  std::vector<uint32_t> run_cross_uids;
  std::map<uint32_t, ChpidConfig> chpids;
  std::vector<LparConfig> lpars;
  ClusterConfig cluster;
  std::vector<CtcConfig> ctcs;

  // The policy entry for `name`: the exact one, else "*", else nullptr.
  const LparConfig* FindLpar(const std::string& name) const;
};

extern const char kDefaultConfig[];

// Parses TOML `text`; `source` names it in errors; "self" in uid lists
// means `self_uid`. kInvalidArgument: "config SOURCE: KEY: what (line N)".
absl::StatusOr<Config> ParseConfig(const std::string& text,
                                   const std::string& source, uint32_t self_uid);
// Reads and parses `path`; the built-in default if `path` is empty.
absl::StatusOr<Config> LoadConfig(const std::string& path, uint32_t self_uid);

// Checks a CHPID definition (from the config or an admin) against the
// rules and the other CHPIDs: geometry, unique id, non-overlapping subnet.
absl::Status ValidateChpid(const ChpidConfig& c, const Config& config);

// Checks a CTC connection (from the config or an admin) against the rules
// and the connections in `ctcs`: two distinct LPAR names (not "*"), no
// device number an LPAR already has, the block size, recovery <= 1 s.
absl::Status ValidateCtc(const CtcConfig& c, const std::vector<CtcConfig>& ctcs);

std::string ChpidName(uint32_t id);  // "F0"
std::string JoinIds(const std::vector<uint32_t>& ids);  // "[0, 1000]"

}  // namespace hsid

#endif  // HSI_DAEMON_CONFIG_H_
