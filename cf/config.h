// cf/config.h: hsi-cf's policy (the CFRM policy's role), from TOML.
//
//   [cf]
//   lpar = "CF01"              # the LPAR name hsi-cf claims at hsid
//   chpid = "F0"               # the CHPID its NIC attaches to (CF links)
//   address = "10.240.0.200"   # optional: the NIC's address (else hsid's choice)
//
//   [[structure]]
//   name = "LOCK1"             # 1..16 of [A-Za-z0-9_.-$#@]
//   type = "lock"              # lock, list or cache
//   entries = 1024             # lock: resources in use at once; list: entries in all
//                              # lists; cache: directory entries
//   lpars = ["DB2A", "DB2B"]   # LPARs that may connect ("*": any)
//   lists = 16                 # list only: list headers (1..65536)
//   max_data = 1024            # list: bytes of data per entry (0..4096); cache:
//                              # likewise, 0 = directory-only (no data kept)
//   vector = 4096              # cache only: local buffers per connector (bits
//                              # of its local validity vector, 1..1048576)
//   duplex = "primary"         # optional: duplexed with [duplex]'s partner, this CF
//                              # holding the "primary" or the "secondary" (cf/duplex.h)
//
//   [duplex]                   # optional: the partner CF of duplexed structures
//   partner = "CF02"           # its LPAR name (hsid must say it owns `address`)
//   address = "10.240.0.201"   # its NIC's address on the same CHPID (the CF-to-CF link)
//
// Thread safety: a value type.
#ifndef HSI_CF_CONFIG_H_
#define HSI_CF_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hsi/address.h"

namespace hsi::cf {

struct StructureConfig {
  std::string name;
  std::string type;  // "lock", "list" or "cache"
  uint32_t entries = 0;
  uint32_t lists = 0;     // list only
  uint32_t max_data = 0;  // list and cache (cache: 0 = directory-only)
  uint32_t vector = 0;    // cache only
  std::vector<std::string> lpars;
  std::string duplex;  // "" (simplex), "primary" or "secondary" (cf/duplex.h)
  bool Allows(const std::string& lpar) const;
};

struct CfConfig {
  std::string lpar;
  uint32_t chpid = 0xF0;
  std::optional<Address> address;
  std::vector<StructureConfig> structures;
  std::string duplex_partner;            // [duplex] partner: the partner CF's LPAR ("": none)
  std::optional<Address> duplex_address;  // [duplex] address: its NIC
  std::string source;  // the file it came from, for messages
};

// Parses TOML `text` (`source` names it in errors). Errors are
// kInvalidArgument naming the file, the key and what is wrong:
// "cf.toml: structure[1].type: \"queue\" is not lock, list or cache".
absl::StatusOr<CfConfig> ParseConfig(const std::string& text, const std::string& source);
absl::StatusOr<CfConfig> LoadConfig(const std::string& path);

}  // namespace hsi::cf

#endif  // HSI_CF_CONFIG_H_
