#include "config.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <toml.hpp>

#include "absl/strings/str_cat.h"
#include "protocol.h"
#include "validity_vector.h"

namespace hsi::cf {

bool StructureConfig::Allows(const std::string& lpar) const {
  return std::find(lpars.begin(), lpars.end(), "*") != lpars.end() ||
         std::find(lpars.begin(), lpars.end(), lpar) != lpars.end();
}

namespace {

absl::Status Bad(const std::string& source, const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", key, ": ", what));
}

absl::StatusOr<std::string> Str(const std::string& src, const std::string& key,
                                const toml::value& t, const char* name) {
  if (!t.contains(name)) return Bad(src, key, absl::StrCat("missing key \"", name, "\""));
  const toml::value& v = t.at(name);
  if (!v.is_string()) return Bad(src, absl::StrCat(key, ".", name), "must be a string");
  return v.as_string().str;
}

absl::Status CheckKeys(const std::string& src, const std::string& key, const toml::value& t,
                       std::initializer_list<const char*> known) {
  for (const auto& [k, v] : t.as_table()) {
    if (std::none_of(known.begin(), known.end(), [&](const char* n) { return k == n; })) {
      return Bad(src, key, absl::StrCat("unknown key \"", k, "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StructureConfig> ParseStructure(const std::string& src, const std::string& at,
                                               const toml::value& t) {
  if (!t.is_table()) return Bad(src, at, "must be a table ([[structure]])");
  if (absl::Status s =
          CheckKeys(src, at, t, {"name", "type", "entries", "lpars", "lists", "max_data", "vector", "duplex"});
      !s.ok())
    return s;
  StructureConfig c;
  absl::StatusOr<std::string> name = Str(src, at, t, "name");
  if (!name.ok()) return name.status();
  if (absl::Status s = proto::CheckName("structure name", *name, proto::kMaxName); !s.ok()) {
    return Bad(src, at + ".name", std::string(s.message()));
  }
  c.name = *name;
  absl::StatusOr<std::string> type = Str(src, at, t, "type");
  if (!type.ok()) return type.status();
  if (*type != "lock" && *type != "list" && *type != "cache") {
    return Bad(src, at + ".type", absl::StrCat("\"", *type, "\" is not lock, list or cache"));
  }
  c.type = *type;
  auto integer = [&](const char* key, int64_t lo, int64_t hi, uint32_t* out) -> absl::Status {
    if (!t.contains(key) || !t.at(key).is_integer() || t.at(key).as_integer() < lo ||
        t.at(key).as_integer() > hi) {
      return Bad(src, absl::StrCat(at, ".", key),
                 absl::StrCat("must be an integer ", lo, "..", hi));
    }
    *out = static_cast<uint32_t>(t.at(key).as_integer());
    return absl::OkStatus();
  };
  if (c.type == "list") {
    if (absl::Status s = integer("lists", 1, 65536, &c.lists); !s.ok()) return s;
  } else if (t.contains("lists")) {
    return Bad(src, at + ".lists", "applies to list structures only");
  }
  if (c.type == "cache") {
    if (absl::Status s = integer("vector", 1, kMaxVectorBits, &c.vector); !s.ok()) return s;
  } else if (t.contains("vector")) {
    return Bad(src, at + ".vector", "applies to cache structures only");
  }
  if (c.type != "lock") {
    if (absl::Status s = integer("max_data", 0, proto::kMaxData, &c.max_data); !s.ok()) return s;
  } else if (t.contains("max_data")) {
    return Bad(src, at + ".max_data", "applies to list and cache structures only");
  }
  if (!t.contains("entries") || !t.at("entries").is_integer() || t.at("entries").as_integer() < 1 ||
      t.at("entries").as_integer() > (1 << 24)) {
    return Bad(src, at + ".entries",
               "must be an integer 1..16777216 (lock: resources in use at once; list: entries; "
               "cache: directory entries)");
  }
  c.entries = static_cast<uint32_t>(t.at("entries").as_integer());
  if (!t.contains("lpars") || !t.at("lpars").is_array() || t.at("lpars").as_array().empty()) {
    return Bad(src, at + ".lpars", "must be a non-empty array of LPAR names (\"*\": any)");
  }
  for (const toml::value& e : t.at("lpars").as_array()) {
    if (!e.is_string()) return Bad(src, at + ".lpars", "each entry must be a string");
    const std::string& l = e.as_string().str;
    if (l != "*") {
      if (absl::Status s = proto::CheckName("LPAR name", l, 31); !s.ok()) {
        return Bad(src, at + ".lpars", std::string(s.message()));
      }
    }
    c.lpars.push_back(l);
  }
  if (t.contains("duplex")) {
    if (!t.at("duplex").is_string() ||
        (t.at("duplex").as_string().str != "primary" && t.at("duplex").as_string().str != "secondary"))
      return Bad(src, at + ".duplex", "must be \"primary\" or \"secondary\" (this CF's role)");
    c.duplex = t.at("duplex").as_string().str;
  }
  return c;
}

// [duplex]: the partner CF; required when a structure says `duplex`.
absl::Status ParseDuplex(const std::string& src, const toml::value& root, CfConfig* c) {
  bool any = false;
  for (const StructureConfig& s : c->structures) any = any || !s.duplex.empty();
  if (!root.contains("duplex")) {
    if (any) return Bad(src, "duplex", "missing table [duplex] (partner, address): a structure is duplexed");
    return absl::OkStatus();
  }
  const toml::value& d = root.at("duplex");
  if (!d.is_table()) return Bad(src, "duplex", "must be a table [duplex]");
  if (absl::Status s = CheckKeys(src, "duplex", d, {"partner", "address"}); !s.ok()) return s;
  absl::StatusOr<std::string> partner = Str(src, "duplex", d, "partner");
  if (!partner.ok()) return partner.status();
  if (absl::Status s = proto::CheckName("LPAR name", *partner, 31); !s.ok())
    return Bad(src, "duplex.partner", std::string(s.message()));
  if (*partner == c->lpar) return Bad(src, "duplex.partner", "is this CF's own LPAR");
  absl::StatusOr<std::string> addr = Str(src, "duplex", d, "address");
  if (!addr.ok()) return addr.status();
  absl::StatusOr<Address> a = Address::Parse(*addr);
  if (!a.ok()) return Bad(src, "duplex.address", std::string(a.status().message()));
  c->duplex_partner = *partner;
  c->duplex_address = *a;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CfConfig> ParseConfig(const std::string& text, const std::string& source) {
  toml::value root;
  try {
    std::istringstream in(text);
    root = toml::parse(in, source);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid TOML: ", e.what()));
  }
  CfConfig c;
  c.source = source;
  if (absl::Status s = CheckKeys(source, "top level", root, {"cf", "structure", "duplex"}); !s.ok()) return s;
  if (!root.contains("cf") || !root.at("cf").is_table())
    return Bad(source, "cf", "missing table [cf]");
  const toml::value& cf = root.at("cf");
  if (absl::Status s = CheckKeys(source, "cf", cf, {"lpar", "chpid", "address"}); !s.ok()) return s;
  absl::StatusOr<std::string> lpar = Str(source, "cf", cf, "lpar");
  if (!lpar.ok()) return lpar.status();
  if (absl::Status s = proto::CheckName("LPAR name", *lpar, 31); !s.ok()) {
    return Bad(source, "cf.lpar", std::string(s.message()));
  }
  c.lpar = *lpar;
  absl::StatusOr<std::string> chpid = Str(source, "cf", cf, "chpid");
  if (!chpid.ok()) return chpid.status();
  absl::StatusOr<Chpid> id = Chpid::Parse(*chpid);
  if (!id.ok()) return Bad(source, "cf.chpid", std::string(id.status().message()));
  c.chpid = id->value();
  if (cf.contains("address")) {
    if (!cf.at("address").is_string())
      return Bad(source, "cf.address", "must be a string like \"10.240.0.200\"");
    absl::StatusOr<Address> a = Address::Parse(cf.at("address").as_string().str);
    if (!a.ok()) return Bad(source, "cf.address", std::string(a.status().message()));
    c.address = *a;
  }
  if (!root.contains("structure")) return Bad(source, "structure", "no [[structure]] defined");
  const toml::value& arr = root.at("structure");
  if (!arr.is_array())
    return Bad(source, "structure", "must be an array of tables ([[structure]])");
  for (size_t i = 0; i < arr.as_array().size(); ++i) {
    const std::string at = absl::StrCat("structure[", i, "]");
    absl::StatusOr<StructureConfig> s = ParseStructure(source, at, arr.as_array()[i]);
    if (!s.ok()) return s.status();
    for (const StructureConfig& o : c.structures) {
      if (o.name == s->name)
        return Bad(source, at + ".name", absl::StrCat("structure ", s->name, " is defined twice"));
    }
    c.structures.push_back(std::move(*s));
  }
  if (absl::Status s = ParseDuplex(source, root, &c); !s.ok()) return s;
  return c;
}

absl::StatusOr<CfConfig> LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

}  // namespace hsi::cf
