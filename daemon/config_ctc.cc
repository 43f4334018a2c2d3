// hsid's config: the [[ctc]] tables (CTC connections, docs/ctc.md) and the
// rules a CTC definition keeps, from the config or from an admin.
#include <algorithm>
#include <string>
#include <toml.hpp>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "config.h"
#include "config_reader.h"
#include "hsi/ctc.h"
#include "hsi/isfc_convention.h"

namespace hsid {
namespace config_internal {

// The [[ctc]] array `v` into `config`: each table defines one connection
// per device of `devices` (LPAR lpars[0]'s numbers) to the same place of
// `peer_devices` (lpars[1]'s; default: the same numbers).
absl::Status ParseCtcs(const Reader& r, const toml::value& v, Config& config) {
  return ForEachTable(r, "ctc", v, [&](const std::string& at, const toml::value& t) -> absl::Status {
    if (!t.is_table()) return r.Error(at, &t, "must be a table ([[ctc]])");
    if (absl::Status s = r.OnlyKeys(at + ".", t, {"lpars", "devices", "peer_devices", "block_size", "recovery_us"});
        !s.ok()) {
      return s;
    }
    const auto& tab = t.as_table();
    auto it = tab.find("lpars");
    if (it == tab.end()) return r.Error(at + ".lpars", &t, "is missing (the two LPARs, [\"LPAR1\", \"LPAR2\"])");
    std::vector<std::string> lpars;
    HSI_ASSIGN(lpars, r.Names(at + ".lpars", it->second));
    if (lpars.size() != 2) return r.Error(at + ".lpars", &it->second, "names exactly two LPARs");
    auto devices = [&](const char* key, std::vector<hsi::DeviceNumber>* out) -> absl::Status {
      auto d = tab.find(key);
      if (d == tab.end()) return r.Error(absl::StrCat(at, ".", key), &t, "is missing (device numbers like \"D000-D00F\")");
      absl::StatusOr<std::string> text = r.String(absl::StrCat(at, ".", key), d->second);
      if (!text.ok()) return text.status();
      absl::StatusOr<std::vector<hsi::DeviceNumber>> list = hsi::DeviceNumber::ParseList(*text);
      if (!list.ok()) return r.Error(absl::StrCat(at, ".", key), &d->second, std::string(list.status().message()));
      *out = std::move(*list);
      return absl::OkStatus();
    };
    std::vector<hsi::DeviceNumber> mine, theirs;
    if (absl::Status s = devices("devices", &mine); !s.ok()) return s;
    if (tab.count("peer_devices") != 0) {
      if (absl::Status s = devices("peer_devices", &theirs); !s.ok()) return s;
      if (theirs.size() != mine.size()) {
        return r.Error(at + ".peer_devices", &t, absl::StrCat("has ", theirs.size(), " devices, devices has ", mine.size()));
      }
    } else {
      theirs = mine;
    }
    CtcConfig base;
    base.lpar_a = lpars[0];
    base.lpar_b = lpars[1];
    if (auto b = tab.find("block_size"); b != tab.end()) {
      uint64_t size = 0;
      HSI_ASSIGN(size, r.Size(at + ".block_size", b->second));
      if (absl::Status s = hsi::CheckCtcBlockSize(static_cast<uint32_t>(std::min<uint64_t>(size, 1u << 31)));
          !s.ok()) {
        return r.Error(at + ".block_size", &b->second, std::string(s.message()));
      }
      base.block_size = static_cast<uint32_t>(size);
    }
    if (auto rec = tab.find("recovery_us"); rec != tab.end()) {
      uint64_t us = 0;
      HSI_ASSIGN(us, r.Integer(at + ".recovery_us", rec->second, 1000000));
      base.recovery_us = static_cast<uint32_t>(us);
    }
    for (size_t i = 0; i < mine.size(); ++i) {
      CtcConfig c = base;
      c.device_a = mine[i].value();
      c.device_b = theirs[i].value();
      if (absl::Status s = ValidateCtc(c, config.ctcs); !s.ok()) return r.Error(at, &t, std::string(s.message()));
      config.ctcs.push_back(std::move(c));
    }
    return absl::OkStatus();
  });
}

}  // namespace config_internal

absl::Status ValidateCtc(const CtcConfig& c, const std::vector<CtcConfig>& ctcs) {
  const std::string where = absl::StrCat("CTC ", c.lpar_a, ":", hsi::DeviceNumber(static_cast<uint16_t>(c.device_a)).ToString(),
                                         "<->", c.lpar_b, ":", hsi::DeviceNumber(static_cast<uint16_t>(c.device_b)).ToString());
  if (c.lpar_a == "*" || c.lpar_b == "*" || c.lpar_a.empty() || c.lpar_b.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": a CTC joins two named LPARs (no \"*\")"));
  }
  if (c.lpar_a == c.lpar_b) return absl::InvalidArgumentError(absl::StrCat(where, ": both ends are one LPAR"));
  if (c.device_a > 0xFFFF || c.device_b > 0xFFFF) return absl::InvalidArgumentError(absl::StrCat(where, ": device number over FFFF"));
  if (absl::Status s = hsi::CheckCtcBlockSize(c.block_size); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
  }
  if (c.recovery_us > 1000000) return absl::InvalidArgumentError(absl::StrCat(where, ": recovery_us over 1000000"));
  for (const CtcConfig& o : ctcs) {
    for (const auto& [lpar, dev] : {std::pair{&c.lpar_a, c.device_a}, std::pair{&c.lpar_b, c.device_b}}) {
      if ((o.lpar_a == *lpar && o.device_a == dev) || (o.lpar_b == *lpar && o.device_b == dev)) {
        return absl::AlreadyExistsError(absl::StrCat(where, ": LPAR ", *lpar, " already has CTC device ",
                                                     hsi::DeviceNumber(static_cast<uint16_t>(dev)).ToString()));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace hsid
