#include "config.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <toml.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "hsi/ctc.h"
#include "hsi/isfc_convention.h"
#include "hsi/ring.h"
#include "hsi/ssi/cluster.h"
#include "hsi/ssi/etcd.h"

namespace hsid {

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

// Builds errors that name the file, the key and the line.
class Reader {
 public:
  Reader(std::string source, uint32_t self) : source_(std::move(source)), self_(self) {}

  absl::Status Error(const std::string& key, const toml::value* v, const std::string& what) const {
    std::string line;
    if (v != nullptr && v->location().line() > 0) line = absl::StrCat(" (line ", v->location().line(), ")");
    return absl::InvalidArgumentError(absl::StrCat("config ", source_, ": ", key, ": ", what, line));
  }

  absl::Status OnlyKeys(const std::string& where, const toml::value& table,
                        std::initializer_list<const char*> keys) const {
    for (const auto& [key, v] : table.as_table()) {
      const std::string& k = key;  // clang 14 cannot capture a structured binding
      if (std::find_if(keys.begin(), keys.end(), [&](const char* x) { return k == x; }) == keys.end()) {
        return Error(absl::StrCat(where, k), &v,
                     absl::StrCat("unknown key (known: ", absl::StrJoin(keys, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> String(const std::string& key, const toml::value& v) const {
    if (!v.is_string()) return Error(key, &v, "must be a string");
    return v.as_string().str;
  }

  absl::StatusOr<uint64_t> Integer(const std::string& key, const toml::value& v, uint64_t max) const {
    if (!v.is_integer()) return Error(key, &v, "must be an integer");
    const int64_t i = v.as_integer();
    if (i < 0 || static_cast<uint64_t>(i) > max) {
      return Error(key, &v, absl::StrCat(i, " is outside 0..", max));
    }
    return static_cast<uint64_t>(i);
  }

  // An integer, or a string with a K/M/G suffix (powers of 1024).
  absl::StatusOr<uint64_t> Size(const std::string& key, const toml::value& v) const {
    if (v.is_integer()) return Integer(key, v, uint64_t{1} << 40);
    if (!v.is_string()) return Error(key, &v, "must be a size like 16384 or \"16K\"");
    std::string s = absl::AsciiStrToUpper(v.as_string().str);
    uint64_t mult = 1;
    if (!s.empty() && (s.back() == 'K' || s.back() == 'M' || s.back() == 'G')) {
      mult = s.back() == 'K' ? 1024 : s.back() == 'M' ? 1024 * 1024 : 1024 * 1024 * 1024;
      s.pop_back();
    }
    uint64_t n;
    if (!absl::SimpleAtoi(s, &n) || n > (uint64_t{1} << 40) / mult) {
      return Error(key, &v, absl::StrCat("\"", v.as_string().str, "\" is not a size like 16384, \"16K\" or \"1M\""));
    }
    return n * mult;
  }

  // A list of uids/gids: integers or "self".
  absl::StatusOr<std::vector<uint32_t>> Ids(const std::string& key, const toml::value& v) const {
    if (!v.is_array()) return Error(key, &v, "must be an array of ids (integers or \"self\")");
    std::vector<uint32_t> out;
    for (const toml::value& e : v.as_array()) {
      if (e.is_string() && e.as_string().str == "self") {
        out.push_back(self_);
      } else if (e.is_integer() && e.as_integer() >= 0 && e.as_integer() < 0xffffffffLL) {
        out.push_back(static_cast<uint32_t>(e.as_integer()));
      } else {
        return Error(key, &e, "each entry must be a non-negative integer id or \"self\"");
      }
    }
    return out;
  }

  absl::StatusOr<std::vector<std::string>> Names(const std::string& key, const toml::value& v) const {
    if (!v.is_array()) return Error(key, &v, "must be an array of LPAR names");
    std::vector<std::string> out;
    for (const toml::value& e : v.as_array()) {
      if (!e.is_string()) return Error(key, &e, "each entry must be a string");
      if (absl::Status s = CheckName(key, e, e.as_string().str); !s.ok()) return s;
      out.push_back(e.as_string().str);
    }
    return out;
  }

  absl::Status CheckName(const std::string& key, const toml::value& v, const std::string& name) const {
    if (name.empty() || name.size() > 31) return Error(key, &v, "an LPAR name has 1..31 characters");
    for (char c : name) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.' && c != '*') {
        return Error(key, &v, absl::StrCat("\"", name, "\" may only use letters, digits, _ . - (or \"*\" for any)"));
      }
    }
    if (name.find('*') != std::string::npos && name != "*") {
      return Error(key, &v, absl::StrCat("\"", name, "\": \"*\" stands alone (any LPAR)"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint32_t> ChpidId(const std::string& key, const toml::value& v) const {
    absl::StatusOr<std::string> s = String(key, v);
    if (!s.ok()) return s.status();
    absl::StatusOr<hsi::Chpid> id = hsi::Chpid::Parse(*s);
    if (!id.ok()) return Error(key, &v, std::string(id.status().message()));
    return uint32_t{id->value()};
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  uint32_t self_;
};

#define HSI_ASSIGN(lhs, expr)            \
  do {                                   \
    auto r_ = (expr);                    \
    if (!r_.ok()) return r_.status();    \
    lhs = std::move(*r_);                \
  } while (0)

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

// The [cluster] table `t` into `config.cluster`.
absl::Status ParseCluster(const Reader& r, const toml::value& t, Config& config) {
  if (!t.is_table()) return r.Error("cluster", &t, "must be a table");
  if (absl::Status s = r.OnlyKeys("cluster.", t, {"name", "member", "etcd", "lease_ttl_s", "poll_ms"}); !s.ok()) {
    return s;
  }
  ClusterConfig& c = config.cluster;
  c.enabled = true;
  const auto& tab = t.as_table();
  if (auto i = tab.find("name"); i != tab.end()) {
    HSI_ASSIGN(c.name, r.String("cluster.name", i->second));
    if (absl::Status s = hsi::ssi::CheckName("the cluster name", c.name); !s.ok()) {
      return r.Error("cluster.name", &i->second, std::string(s.message()));
    }
  }
  auto i = tab.find("member");
  if (i == tab.end()) return r.Error("cluster.member", &t, "is missing (this hsid's member name, like \"VM9\")");
  HSI_ASSIGN(c.member, r.String("cluster.member", i->second));
  if (absl::Status s = hsi::ssi::CheckName("the member name", c.member); !s.ok()) {
    return r.Error("cluster.member", &i->second, std::string(s.message()));
  }
  i = tab.find("etcd");
  if (i == tab.end()) return r.Error("cluster.etcd", &t, "is missing (etcd endpoints, like \"http://127.0.0.1:2379\")");
  std::string endpoints;
  if (i->second.is_array()) {
    for (const toml::value& e : i->second.as_array()) {
      std::string one;
      HSI_ASSIGN(one, r.String("cluster.etcd[]", e));
      absl::StrAppend(&endpoints, endpoints.empty() ? "" : ",", one);
    }
  } else {
    HSI_ASSIGN(endpoints, r.String("cluster.etcd", i->second));
  }
  absl::StatusOr<std::vector<std::string>> eps = hsi::ssi::ParseEndpoints("cluster.etcd", endpoints);
  if (!eps.ok()) return r.Error("cluster.etcd", &i->second, std::string(eps.status().message()));
  c.etcd = *eps;
  if ((i = tab.find("lease_ttl_s")) != tab.end()) {
    uint64_t v = 0;
    HSI_ASSIGN(v, r.Integer("cluster.lease_ttl_s", i->second, 60));
    if (v < 2) return r.Error("cluster.lease_ttl_s", &i->second, "must be 2..60 (etcd grants no lease under 2 s)");
    c.lease_ttl_s = static_cast<uint32_t>(v);
  }
  if ((i = tab.find("poll_ms")) != tab.end()) {
    uint64_t v = 0;
    HSI_ASSIGN(v, r.Integer("cluster.poll_ms", i->second, 10000));
    if (v < 10) return r.Error("cluster.poll_ms", &i->second, "must be 10..10000");
    c.poll_ms = static_cast<uint32_t>(v);
  }
  return absl::OkStatus();
}

// Calls `each(at, t)` for every table `t` of the array of tables `v` under
// `key` ("chpid": [[chpid]]), `at` naming it ("chpid[0]"); stops at the
// first error.
template <typename Each>
absl::Status ForEachTable(const Reader& r, const char* key, const toml::value& v, Each each) {
  if (!v.is_array()) return r.Error(key, &v, absl::StrCat("must be an array of tables ([[", key, "]])"));
  size_t i = 0;
  for (const toml::value& t : v.as_array()) {
    if (absl::Status s = each(absl::StrCat(key, "[", i++, "]"), t); !s.ok()) return s;
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

}  // namespace

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
    if (absl::Status s = ParseCluster(r, it->second, config); !s.ok()) return s;
  }
  if (auto it = tab.find("ctc"); it != tab.end()) {
    if (absl::Status s = ParseCtcs(r, it->second, config); !s.ok()) return s;
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
