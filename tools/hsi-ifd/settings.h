// tools/hsi-ifd/settings.h: an option's value from the command line or
// else the config file (config.h), as hsi-ifd and hsi-ctcm read them: the
// config keys are the long options without their "--".
//
// Header-only: it needs tools/common's Args, which hsi_ifd_core does not
// link; the programs that include it do.
//
// Thread safety: pure functions.
#ifndef HSI_TOOLS_HSI_IFD_SETTINGS_H_
#define HSI_TOOLS_HSI_IFD_SETTINGS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "cli.h"
#include "config.h"

namespace hsi::ifd {

// A value and the name its errors use: "--chpid" or "FILE:LINE: chpid".
struct Setting {
  std::string value, what;
};

// `--KEY VALUE` from `args`, else `KEY = VALUE` from `file`, else nullopt.
inline std::optional<Setting> Lookup(const tools::Args& args, const ConfigFile& file, const std::string& key) {
  if (auto v = args.Get("--" + key)) return Setting{*v, "--" + key};
  if (auto it = file.find(key); it != file.end()) return Setting{it->second.value, it->second.where};
  return std::nullopt;
}

// Switch `--KEY` given, else `KEY = true|false` from `file`, else false.
inline absl::StatusOr<bool> Switch(const tools::Args& args, const ConfigFile& file, const std::string& key) {
  if (args.Has("--" + key)) return true;
  if (auto it = file.find(key); it != file.end()) return ParseSwitch(it->second);
  return false;
}

}  // namespace hsi::ifd

#endif  // HSI_TOOLS_HSI_IFD_SETTINGS_H_
