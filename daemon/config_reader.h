// What hsid's config parser shares between its files (config.cc: [hsid],
// [[chpid]], [[lpar]]; config_cluster.cc: [cluster]; config_ctc.cc:
// [[ctc]]): a Reader that turns TOML values into typed values or errors
// naming the file, the key and the line. Nothing outside the config
// parser includes this; the parser's contract is config.h.
#ifndef HSI_DAEMON_CONFIG_READER_H_
#define HSI_DAEMON_CONFIG_READER_H_

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <toml.hpp>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config.h"
#include "hsi/address.h"

namespace hsid::config_internal {

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

// The [cluster] table `t` into `config.cluster` (config_cluster.cc).
absl::Status ParseCluster(const Reader& r, const toml::value& t, Config& config);

// The [[ctc]] array `v` into `config.ctcs` (config_ctc.cc).
absl::Status ParseCtcs(const Reader& r, const toml::value& v, Config& config);

}  // namespace hsid::config_internal

#endif  // HSI_DAEMON_CONFIG_READER_H_
