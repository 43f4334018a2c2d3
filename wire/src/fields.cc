// hsi/wire/fields.h: the field checks and helpers of every message.
#include "hsi/wire/fields.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hsi::wire {

// A text field: NUL-terminated inside, no control characters, zero padding.
absl::Status CheckText(const char* text, size_t size, const char* field) {
  size_t n = 0;
  while (n < size && text[n] != '\0') {
    const auto c = static_cast<unsigned char>(text[n]);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " has a control character 0x", absl::Hex(c), " at offset ", n));
    }
    ++n;
  }
  if (n == size) return absl::InvalidArgumentError(absl::StrCat(field, " is not NUL-terminated"));
  for (size_t i = n; i < size; ++i) {
    if (text[i] != '\0') {
      return absl::InvalidArgumentError(absl::StrCat(field, " has bytes after its NUL"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDeviceName(const char* text, size_t size, const char* field, bool allow_empty) {
  if (absl::Status s = CheckText(text, size, field); !s.ok()) return s;
  const size_t n = strnlen(text, size);
  if (n == 0 && !allow_empty) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  for (size_t i = 0; i < n; ++i) {
    if (text[i] == '/' || text[i] == ' ') {
      return absl::InvalidArgumentError(absl::StrCat(field, " has '", std::string(1, text[i]), "' at offset ", i));
    }
  }
  if (n == 1 && text[0] == '.') return absl::InvalidArgumentError(absl::StrCat(field, " is '.'"));
  if (n == 2 && text[0] == '.' && text[1] == '.') return absl::InvalidArgumentError(absl::StrCat(field, " is '..'"));
  return absl::OkStatus();
}

absl::Status CheckStatusCode(uint32_t code, const char* field, bool allow_ok) {
  if (code > kMaxStatusCode || (code == 0 && !allow_ok)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", code, allow_ok ? " is not a status code" : " is not an error status code"));
  }
  return absl::OkStatus();
}

absl::Status CheckStatus(const WireStatus& s, const char* field) {
  if (s.code > kMaxStatusCode) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".code ", s.code, " is not a status code"));
  }
  if (s.reserved != 0) return absl::InvalidArgumentError(absl::StrCat(field, ".reserved is not 0"));
  return CheckText(s.message, kTextLen, "status message");
}

absl::Status CheckBool(uint32_t v, const char* field) {
  if (v > 1) return absl::InvalidArgumentError(absl::StrCat(field, " is ", v, ", not 0 or 1"));
  return absl::OkStatus();
}

absl::Status CheckZero(uint32_t v, const char* field) {
  if (v != 0) return absl::InvalidArgumentError(absl::StrCat(field, " is ", v, ", must be 0"));
  return absl::OkStatus();
}

absl::Status CheckFlags(uint32_t v, uint32_t known, const char* field) {
  if (v & ~known) {
    return absl::InvalidArgumentError(absl::StrCat(field, " 0x", absl::Hex(v), " has unknown bits"));
  }
  return absl::OkStatus();
}

absl::Status CheckChpid(uint32_t v) {
  if (v > 0xff) return absl::InvalidArgumentError(absl::StrCat("chpid ", v, " is not in 00..FF"));
  return absl::OkStatus();
}

absl::Status CheckPrefix(uint32_t v) {
  if (v > 32) return absl::InvalidArgumentError(absl::StrCat("prefix ", v, " exceeds 32"));
  return absl::OkStatus();
}

absl::Status CheckCount(uint32_t count, size_t limit, const char* field) {
  if (count > limit) return absl::InvalidArgumentError(absl::StrCat(field, " ", count, " exceeds ", limit));
  return absl::OkStatus();
}

absl::Status ValidateName(const char (&name)[kNameLen], const char* field, bool allow_empty) {
  size_t n = 0;
  while (n < kNameLen && name[n] != '\0') {
    const char c = name[n];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == '*';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " has character 0x", absl::Hex(static_cast<unsigned char>(c)),
          " at offset ", n, " (allowed: letters, digits, _ . - *)"));
    }
    ++n;
  }
  if (n == kNameLen) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is not NUL-terminated within ", kNameLen, " bytes"));
  }
  if (n == 0 && !allow_empty) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  for (size_t i = n; i < kNameLen; ++i) {
    if (name[i] != '\0') return absl::InvalidArgumentError(absl::StrCat(field, " has bytes after its NUL"));
  }
  return absl::OkStatus();
}

std::string NameOf(const char (&name)[kNameLen]) {
  return std::string(name, strnlen(name, kNameLen));
}

void SetName(char (&dst)[kNameLen], absl::string_view name) {
  std::memset(dst, 0, kNameLen);
  std::memcpy(dst, name.data(), std::min(name.size(), kNameLen - 1));
}

WireStatus ToWire(const absl::Status& status) {
  WireStatus w;
  std::memset(&w, 0, sizeof(w));
  w.code = static_cast<uint32_t>(status.code());
  absl::string_view msg = status.message();
  size_t n = 0;
  for (char c : msg) {
    if (n == kTextLen - 1) break;
    const auto u = static_cast<unsigned char>(c);
    w.message[n++] = (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  return w;
}

absl::Status FromWire(const WireStatus& wire) {
  if (wire.code == 0) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(wire.code),
                      absl::string_view(wire.message, strnlen(wire.message, kTextLen)));
}

}  // namespace hsi::wire
