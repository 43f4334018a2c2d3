// tools/hsi-ifd/config.h: hsi-ifd's config file (hsi-ifd --config FILE),
// the form systemd's hsi-ifd@.service reads from /etc/hsi/ifd/NAME.conf.
//
// One setting per line, `key = value`, where the keys are the long option
// names without their dashes (lpar, chpid, netns, ifname, address, socket,
// wait, persist, layer2) and the value is a bare word or a "double-quoted"
// string (so a file that quotes every string is also valid TOML). A switch
// takes true or false. `#` starts a comment (outside quotes); blank lines
// are ignored. A key may appear once. Options given on the command line
// win over the file.
//
// Every error names the file and the line: "/etc/hsi/ifd/hsi0.conf:3:
// unknown key 'chipd' (known: ...)".
//
// Thread safety: pure functions.
#ifndef HSI_TOOLS_HSI_IFD_CONFIG_H_
#define HSI_TOOLS_HSI_IFD_CONFIG_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hsi::ifd {

struct ConfigValue {
  std::string value;  // unquoted
  std::string where;  // "FILE:LINE: key", for messages about the value
};
using ConfigFile = std::map<std::string, ConfigValue>;

// Parses `text`, read from `source` (a path, for messages), accepting only
// `keys`. kInvalidArgument naming source:line on a syntax error, an
// unknown or repeated key, or an unterminated quote.
absl::StatusOr<ConfigFile> ParseConfig(const std::string& text, const std::string& source,
                                       const std::vector<std::string>& keys);

// Reads `path` and parses it as ParseConfig does. kNotFound / kPermissionDenied
// / kUnavailable (naming the path and the system's reason) if it cannot be
// read; files over 64 KiB are refused (kInvalidArgument).
absl::StatusOr<ConfigFile> LoadConfig(const std::string& path, const std::vector<std::string>& keys);

// "true"/"false" (also yes/no, on/off, 1/0) as a switch's value; kInvalidArgument
// naming `v.where` otherwise.
absl::StatusOr<bool> ParseSwitch(const ConfigValue& v);

}  // namespace hsi::ifd

#endif  // HSI_TOOLS_HSI_IFD_CONFIG_H_
