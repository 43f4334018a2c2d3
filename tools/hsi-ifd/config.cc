// tools/hsi-ifd/config.cc: see config.h.
#include "config.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace hsi::ifd {
namespace {

bool KeyChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }

}  // namespace

absl::StatusOr<ConfigFile> ParseConfig(const std::string& text, const std::string& source,
                                       const std::vector<std::string>& keys) {
  ConfigFile out;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    const std::string at = absl::StrCat(source, ":", number, ": ");
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    for (const char c : line) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return absl::InvalidArgumentError(absl::StrCat(at, "control character 0x", absl::Hex(static_cast<unsigned char>(c)),
                                                       " (the file must be text)"));
      }
    }
    absl::string_view rest = absl::StripLeadingAsciiWhitespace(line);
    if (rest.empty() || rest[0] == '#') continue;
    size_t k = 0;
    while (k < rest.size() && KeyChar(rest[k])) ++k;
    const std::string key(rest.substr(0, k));
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(at, "expected `key = value`, found '", rest, "'"));
    }
    rest = absl::StripLeadingAsciiWhitespace(rest.substr(k));
    if (rest.empty() || rest[0] != '=') {
      return absl::InvalidArgumentError(absl::StrCat(at, "expected '=' after '", key, "'"));
    }
    rest = absl::StripLeadingAsciiWhitespace(rest.substr(1));
    std::string value;
    if (!rest.empty() && rest[0] == '"') {
      const size_t close = rest.find('"', 1);
      if (close == absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat(at, key, ": the quoted value has no closing '\"'"));
      }
      value = std::string(rest.substr(1, close - 1));
      if (value.find('\\') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(at, key, ": backslash escapes are not supported"));
      }
      rest = absl::StripLeadingAsciiWhitespace(rest.substr(close + 1));
      if (!rest.empty() && rest[0] != '#') {
        return absl::InvalidArgumentError(absl::StrCat(at, key, ": unexpected '", rest, "' after the quoted value"));
      }
    } else {
      const size_t hash = rest.find('#');
      value = std::string(absl::StripTrailingAsciiWhitespace(rest.substr(0, hash)));
      if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(at, key, ": no value after '='"));
      if (value.find_first_of(" \t\"") != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, key, ": '", value, "' has a space or a quote; quote the whole value"));
      }
    }
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, "unknown key '", key, "' (known: ", absl::StrJoin(keys, ", "), ")"));
    }
    if (auto it = out.find(key); it != out.end()) {
      return absl::InvalidArgumentError(absl::StrCat(at, key, ": given twice (first at ", it->second.where, ")"));
    }
    out[key] = ConfigValue{value, absl::StrCat(source, ":", number, ": ", key)};
  }
  return out;
}

absl::StatusOr<ConfigFile> LoadConfig(const std::string& path, const std::vector<std::string>& keys) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string msg = absl::StrCat("config file ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
    return absl::UnavailableError(msg);
  }
  constexpr size_t kMax = 64 * 1024;
  std::string text(kMax + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) return absl::UnavailableError(absl::StrCat("config file ", path, ": read error"));
  if (text.size() > kMax) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": larger than ", kMax, " bytes"));
  }
  return ParseConfig(text, path, keys);
}

absl::StatusOr<bool> ParseSwitch(const ConfigValue& v) {
  const std::string s = absl::AsciiStrToLower(v.value);
  if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
  if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  return absl::InvalidArgumentError(absl::StrCat(v.where, ": '", v.value, "' is not true or false (on or off)"));
}

}  // namespace hsi::ifd
