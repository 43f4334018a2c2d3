#include "config.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <toml.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config_reader.h"
#include "hsi/ring.h"

namespace hsid {

using config_internal::ForEachTable;
using config_internal::Reader;

const char kDefaultConfig[] = R"toml(# hsid built-in default configuration.
# One HiperSockets CHPID F0 with 16K frames (MTU 8K), open to the uid that
# started hsid ("self").

[hsid]
admin_uids = ["self"]        # root is always an admin too
admin_gids = []
max_in_flight = 64           # link setups one client may have pending
hello_timeout_ms = 5000      # a new connection must send its ClaimRequest within this
max_unclaimed_per_uid = 64   # connections one uid may hold before their ClaimRequest
max_connections_per_uid = 256  # connections one uid may hold in all (root too)
max_connections = 4096       # connections hsid serves in all
max_queued_bytes_per_uid = "16M"  # replies and events queued for one uid's unread sockets
max_queued_bytes = "128M"    # ... for all clients together
reclaim_grace_ms = 10000     # after a restart, how long LPAR names and addresses wait for their owners
run_uids = ["self"]          # hsi-run: whose TCP connections may move onto rings
run_cross_uids = []          # ... and which of them may be paired across uids

[[chpid]]
id = "F0"
mfs = "16K"                  # 16K, 24K, 40K or 64K; MTU = MFS - 8K
subnet = "10.240.0.0/24"
queue_size = "1M"            # ring capacity per direction of a link
overflow = "block"           # or "drop" (counted on the sender)
lpars = ["*"]
sniffers = []                # uids that may run hsi-dump here (admins always may)

[[lpar]]
name = "*"                   # any LPAR name
uids = ["self"]
gids = []
max_nics = 16
max_links = 1024
)toml";

bool ChpidConfig::Allows(const std::string& lpar) const {
  return std::find(lpars.begin(), lpars.end(), "*") != lpars.end() ||
         std::find(lpars.begin(), lpars.end(), lpar) != lpars.end();
}

const LparConfig* Config::FindLpar(const std::string& name) const {
  const LparConfig* wildcard = nullptr;
  for (const LparConfig& l : lpars) {
    if (l.name == name) return &l;
    if (l.name == "*") wildcard = &l;
  }
  return wildcard;
}

std::string ChpidName(uint32_t id) {
  // Every CHPID hsid holds or accepts is 00..FF (the wire and the config check).
  return hsi::Chpid(static_cast<uint8_t>(id)).ToString();
}

std::string JoinIds(const std::vector<uint32_t>& ids) {
  return absl::StrCat("[", absl::StrJoin(ids, ", "), "]");
}

namespace {


absl::StatusOr<ChpidConfig> ParseChpid(const Reader& r, const std::string& at, const toml::value& t) {
  if (!t.is_table()) return r.Error(at, &t, "must be a table ([[chpid]])");
  if (absl::Status s = r.OnlyKeys(at + ".", t, {"id", "mfs", "subnet", "queue_size", "overflow", "lpars", "sniffers", "sniffer_gids"}); !s.ok()) {
    return s;
  }
  ChpidConfig c;
  const auto& tab = t.as_table();
  auto it = tab.find("id");
  if (it == tab.end()) return r.Error(at + ".id", &t, "is missing (a hex CHPID like \"F0\")");
  HSI_ASSIGN(c.id, r.ChpidId(at + ".id", it->second));
  if ((it = tab.find("mfs")) != tab.end()) {
    uint64_t mfs;
    HSI_ASSIGN(mfs, r.Size(at + ".mfs", it->second));
    if (mfs != 16384 && mfs != 24576 && mfs != 40960 && mfs != 65536) {
      return r.Error(at + ".mfs", &it->second, absl::StrCat(mfs, " is not one of 16K, 24K, 40K, 64K"));
    }
    c.mfs = static_cast<uint32_t>(mfs);
  }
  c.mtu = c.mfs - 8192;
  if ((it = tab.find("subnet")) == tab.end()) return r.Error(at + ".subnet", &t, "is missing (like \"10.240.0.0/24\")");
  std::string subnet;
  HSI_ASSIGN(subnet, r.String(at + ".subnet", it->second));
  absl::StatusOr<hsi::Subnet> sn = hsi::Subnet::Parse(subnet);
  if (!sn.ok()) return r.Error(at + ".subnet", &it->second, std::string(sn.status().message()));
  c.subnet = *sn;
  if ((it = tab.find("queue_size")) != tab.end()) {
    HSI_ASSIGN(c.queue_size, r.Size(at + ".queue_size", it->second));
    if (absl::Status s = hsi::RingGeometry{c.queue_size, c.mtu}.Validate(); !s.ok()) {
      return r.Error(at + ".queue_size", &it->second, std::string(s.message()));
    }
  }
  if ((it = tab.find("overflow")) != tab.end()) {
    std::string o;
    HSI_ASSIGN(o, r.String(at + ".overflow", it->second));
    if (o != "block" && o != "drop") {
      return r.Error(at + ".overflow", &it->second, absl::StrCat("\"", o, "\" is not \"block\" or \"drop\""));
    }
    c.drop = o == "drop";
  }
  if ((it = tab.find("lpars")) != tab.end()) HSI_ASSIGN(c.lpars, r.Names(at + ".lpars", it->second));
  if ((it = tab.find("sniffers")) != tab.end()) HSI_ASSIGN(c.sniffer_uids, r.Ids(at + ".sniffers", it->second));
  if ((it = tab.find("sniffer_gids")) != tab.end()) {
    HSI_ASSIGN(c.sniffer_gids, r.Ids(at + ".sniffer_gids", it->second));
  }
  return c;
}

absl::StatusOr<LparConfig> ParseLpar(const Reader& r, const std::string& at, const toml::value& t) {
  if (!t.is_table()) return r.Error(at, &t, "must be a table ([[lpar]])");
  if (absl::Status s = r.OnlyKeys(at + ".", t, {"name", "uids", "gids", "max_nics", "max_links", "addresses"}); !s.ok()) {
    return s;
  }
  LparConfig l;
  const auto& tab = t.as_table();
  auto it = tab.find("name");
  if (it == tab.end()) return r.Error(at + ".name", &t, "is missing");
  HSI_ASSIGN(l.name, r.String(at + ".name", it->second));
  if (absl::Status s = r.CheckName(at + ".name", it->second, l.name); !s.ok()) return s;
  if ((it = tab.find("uids")) != tab.end()) HSI_ASSIGN(l.uids, r.Ids(at + ".uids", it->second));
  if ((it = tab.find("gids")) != tab.end()) HSI_ASSIGN(l.gids, r.Ids(at + ".gids", it->second));
  if ((it = tab.find("max_nics")) != tab.end()) HSI_ASSIGN(l.max_nics, r.Integer(at + ".max_nics", it->second, 4096));
  if ((it = tab.find("max_links")) != tab.end()) HSI_ASSIGN(l.max_links, r.Integer(at + ".max_links", it->second, 1 << 20));
  if ((it = tab.find("addresses")) != tab.end()) {
    if (!it->second.is_table()) return r.Error(at + ".addresses", &it->second, "must be a table CHPID = \"address\"");
    for (const auto& [k, v] : it->second.as_table()) {
      const std::string key = absl::StrCat(at, ".addresses.", k);
      uint32_t id;
      if (k.empty() || k.size() > 2 || !absl::SimpleHexAtoi(k, &id)) return r.Error(key, &v, "key must be a hex CHPID");
      std::string a;
      HSI_ASSIGN(a, r.String(key, v));
      absl::StatusOr<hsi::Address> addr = hsi::Address::Parse(a);
      if (!addr.ok()) return r.Error(key, &v, std::string(addr.status().message()));
      l.addresses[id] = *addr;
    }
  }
  return l;
}

}  // namespace

absl::Status ValidateChpid(const ChpidConfig& c, const Config& config) {
  if (c.id > 0xff) return absl::InvalidArgumentError(absl::StrCat("CHPID id ", c.id, " is not in 00..FF"));
  if (absl::Status s = hsi::RingGeometry{c.queue_size, c.mtu}.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("CHPID ", ChpidName(c.id), ": queue size: ", s.message()));
  }
  for (const auto& [id, other] : config.chpids) {
    if (id == c.id) {
      return absl::AlreadyExistsError(absl::StrCat("CHPID ", ChpidName(c.id), " is already defined"));
    }
    if (other.subnet.Overlaps(c.subnet)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CHPID ", ChpidName(c.id), ": subnet ", c.subnet.ToString(), " overlaps CHPID ",
          ChpidName(id), "'s ", other.subnet.ToString()));
    }
  }
  return absl::OkStatus();
}

// toml11 3.7.1 (Debian 12) reads past the end of its buffer on some invalid
// UTF-8 inside strings (found by tests/fuzz/config_parser_fuzz). TOML must be
// valid UTF-8 without control characters other than tab, LF and CR, so we
// check that ourselves before toml11 sees the text.
absl::Status CheckTomlText(const std::string& text, const std::string& source) {
  size_t line = 1;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    }
    bool ok = len != 0 && i + len <= text.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // No overlong forms, surrogates or code points past U+10FFFF.
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= kMin[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config ", source, ": line ", line, ": not valid UTF-8 (byte 0x", absl::Hex(c), ")"));
    }
    if ((cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config ", source, ": line ", line, ": control character 0x", absl::Hex(cp),
          " is not allowed in TOML"));
    }
    if (cp == '\n') ++line;
    i += len;
  }
  return absl::OkStatus();
}

namespace {

// The [hsid] table `h` into `config`.
absl::Status ParseHsid(const Reader& r, const toml::value& h, Config& config) {
  if (!h.is_table()) return r.Error("hsid", &h, "must be a table");
  if (absl::Status s = r.OnlyKeys("hsid.", h, {"admin_uids", "admin_gids", "max_in_flight", "hello_timeout_ms",
                                                   "max_unclaimed_per_uid", "max_connections_per_uid",
                                                   "max_connections", "max_queued_bytes_per_uid",
                                                   "max_queued_bytes", "reclaim_grace_ms", "run_uids", "run_cross_uids"});
      !s.ok()) {
    return s;
  }
  const auto& ht = h.as_table();
  if (auto i = ht.find("admin_uids"); i != ht.end()) HSI_ASSIGN(config.admin_uids, r.Ids("hsid.admin_uids", i->second));
  if (auto i = ht.find("admin_gids"); i != ht.end()) HSI_ASSIGN(config.admin_gids, r.Ids("hsid.admin_gids", i->second));
  if (auto i = ht.find("run_uids"); i != ht.end()) HSI_ASSIGN(config.run_uids, r.Ids("hsid.run_uids", i->second));
  if (auto i = ht.find("run_cross_uids"); i != ht.end()) {
    HSI_ASSIGN(config.run_cross_uids, r.Ids("hsid.run_cross_uids", i->second));
  }
  // Limits: each a positive integer up to its maximum (sizes also "16M").
  struct Limit {
    const char* key;
    uint64_t* value;
    uint64_t max;
    bool size;
  };
  uint64_t in_flight = config.max_in_flight, hello = config.hello_timeout_ms,
           unclaimed = config.max_unclaimed_per_uid, conns_uid = config.max_connections_per_uid,
           conns = config.max_connections, grace = config.reclaim_grace_ms;
  const Limit limits[] = {
      {"max_in_flight", &in_flight, 4096, false},
      {"hello_timeout_ms", &hello, 3600 * 1000, false},
      {"max_unclaimed_per_uid", &unclaimed, 65536, false},
      {"max_connections_per_uid", &conns_uid, 1 << 20, false},
      {"max_connections", &conns, 1 << 20, false},
      {"max_queued_bytes_per_uid", &config.max_queued_bytes_per_uid, uint64_t{1} << 40, true},
      {"max_queued_bytes", &config.max_queued_bytes, uint64_t{1} << 40, true},
      {"reclaim_grace_ms", &grace, 3600 * 1000, false},
  };
  for (const Limit& l : limits) {
    auto i = ht.find(l.key);
    if (i == ht.end()) continue;
    const std::string key = absl::StrCat("hsid.", l.key);
    HSI_ASSIGN(*l.value, l.size ? r.Size(key, i->second) : r.Integer(key, i->second, l.max));
    if (*l.value == 0) return r.Error(key, &i->second, "must be at least 1");
    if (*l.value > l.max) return r.Error(key, &i->second, absl::StrCat("must be at most ", l.max));
  }
  config.max_in_flight = static_cast<uint32_t>(in_flight);
  config.hello_timeout_ms = static_cast<uint32_t>(hello);
  config.max_unclaimed_per_uid = static_cast<uint32_t>(unclaimed);
  config.max_connections_per_uid = static_cast<uint32_t>(conns_uid);
  config.max_connections = static_cast<uint32_t>(conns);
  config.reclaim_grace_ms = static_cast<uint32_t>(grace);
  if (config.max_queued_bytes < config.max_queued_bytes_per_uid) {
    auto i = ht.find("max_queued_bytes");
    return r.Error("hsid.max_queued_bytes", i == ht.end() ? nullptr : &i->second,
                   absl::StrCat(config.max_queued_bytes, " must be at least max_queued_bytes_per_uid (",
                                config.max_queued_bytes_per_uid, ")"));
  }
  return absl::OkStatus();
}

// The [[chpid]] array `v` into `config`.
absl::Status ParseChpids(const Reader& r, const toml::value& v, Config& config) {
  return ForEachTable(r, "chpid", v, [&](const std::string& at, const toml::value& t) -> absl::Status {
    ChpidConfig c;
    HSI_ASSIGN(c, ParseChpid(r, at, t));
    if (absl::Status s = ValidateChpid(c, config); !s.ok()) return r.Error(at, &t, std::string(s.message()));
    config.chpids[c.id] = std::move(c);
    return absl::OkStatus();
  });
}

// The [[lpar]] array `v` into `config` (after its CHPIDs).
absl::Status ParseLpars(const Reader& r, const toml::value& v, Config& config) {
  return ForEachTable(r, "lpar", v, [&](const std::string& at, const toml::value& t) -> absl::Status {
    LparConfig l;
    HSI_ASSIGN(l, ParseLpar(r, at, t));
    for (const LparConfig& o : config.lpars) {
      if (o.name == l.name) return r.Error(at + ".name", &t, absl::StrCat("LPAR \"", l.name, "\" is defined twice"));
    }
    for (const auto& [chpid, addr] : l.addresses) {
      auto c = config.chpids.find(chpid);
      if (c == config.chpids.end()) {
        return r.Error(absl::StrCat(at, ".addresses.", ChpidName(chpid)), &t, "no such CHPID is defined");
      }
      if (!c->second.subnet.IsHost(addr)) {
        return r.Error(absl::StrCat(at, ".addresses.", ChpidName(chpid)), &t,
                       absl::StrCat(addr.ToString(), " is not a host address of subnet ",
                                    c->second.subnet.ToString()));
      }
      for (const LparConfig& o : config.lpars) {
        auto a = o.addresses.find(chpid);
        if (a != o.addresses.end() && a->second == addr) {
          return r.Error(absl::StrCat(at, ".addresses.", ChpidName(chpid)), &t,
                         absl::StrCat(addr.ToString(), " is already LPAR \"", o.name, "\"'s"));
        }
      }
    }
    config.lpars.push_back(std::move(l));
    return absl::OkStatus();
  });
}

}  // namespace

absl::StatusOr<Config> ParseConfig(const std::string& text, const std::string& source, uint32_t self_uid) {
  Reader r(source, self_uid);
  if (absl::Status s = CheckTomlText(text, source); !s.ok()) return s;
  toml::value root;
  try {
    std::istringstream in(text);
    root = toml::parse(in, source);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config ", source, ": TOML syntax error: ", e.what()));
  }
  Config config;
  config.run_uids = {self_uid};  // [hsid] run_uids absent: the uid that started hsid
  config.source = source;
  if (absl::Status s = r.OnlyKeys("", root, {"hsid", "chpid", "lpar", "cluster", "ctc"}); !s.ok()) return s;
  const auto& tab = root.as_table();
  if (auto it = tab.find("hsid"); it != tab.end()) {
    if (absl::Status s = ParseHsid(r, it->second, config); !s.ok()) return s;
  }
  if (auto it = tab.find("chpid"); it != tab.end()) {
    if (absl::Status s = ParseChpids(r, it->second, config); !s.ok()) return s;
  }
  if (auto it = tab.find("lpar"); it != tab.end()) {
    if (absl::Status s = ParseLpars(r, it->second, config); !s.ok()) return s;
  }
  if (auto it = tab.find("cluster"); it != tab.end()) {
    if (absl::Status s = config_internal::ParseCluster(r, it->second, config); !s.ok()) return s;
  }
  if (auto it = tab.find("ctc"); it != tab.end()) {
    if (absl::Status s = config_internal::ParseCtcs(r, it->second, config); !s.ok()) return s;
  }
  return config;
}

absl::StatusOr<Config> LoadConfig(const std::string& path, uint32_t self_uid) {
  if (path.empty()) return ParseConfig(kDefaultConfig, "<built-in default>", self_uid);
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("config ", path, ": cannot open: ", std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path, self_uid);
}

}  // namespace hsid
