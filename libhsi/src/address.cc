#include "hsi/address.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace hsi {

absl::StatusOr<Address> Address::Parse(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  if (parts.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address \"", text, "\" is not a dotted quad like 10.240.0.7"));
  }
  uint32_t v = 0;
  for (absl::string_view p : parts) {
    uint32_t octet;
    if (p.empty() || p.size() > 3 || !absl::SimpleAtoi(p, &octet) || octet > 255 ||
        p.find_first_not_of("0123456789") != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "address \"", text, "\": \"", p, "\" is not a number 0..255"));
    }
    v = (v << 8) | octet;
  }
  return Address(v);
}

std::string Address::ToString() const {
  return absl::StrCat(value_ >> 24, ".", (value_ >> 16) & 0xff, ".",
                      (value_ >> 8) & 0xff, ".", value_ & 0xff);
}

Subnet::Subnet(Address address, int prefix) : prefix_(prefix) {
  network_ = Address(address.value() & mask());
}

absl::StatusOr<Subnet> Subnet::Parse(absl::string_view text) {
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(text, '/');
  absl::StatusOr<Address> a = Address::Parse(parts.first);
  if (!a.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("subnet \"", text, "\": ", a.status().message()));
  }
  int prefix;
  if (parts.second.empty() || !absl::SimpleAtoi(parts.second, &prefix) || prefix < 8 || prefix > 30) {
    return absl::InvalidArgumentError(absl::StrCat(
        "subnet \"", text, "\" needs a prefix length 8..30, like 10.240.0.0/24"));
  }
  Subnet s(*a, prefix);
  if (s.network() != *a) {
    return absl::InvalidArgumentError(absl::StrCat(
        "subnet \"", text, "\" has host bits set; did you mean ", s.ToString(), "?"));
  }
  return s;
}

std::string Subnet::ToString() const {
  return absl::StrCat(network_.ToString(), "/", prefix_);
}

absl::StatusOr<Chpid> Chpid::Parse(absl::string_view text) {
  absl::string_view t = text;
  if (absl::StartsWith(t, "0x") || absl::StartsWith(t, "0X")) t.remove_prefix(2);
  uint32_t id = 0;
  if (t.empty() || t.size() > 2 || t.find_first_not_of("0123456789abcdefABCDEF") != absl::string_view::npos ||
      !absl::SimpleHexAtoi(t, &id)) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a hex CHPID 00..FF (like F0)"));
  }
  return Chpid(static_cast<uint8_t>(id));
}

absl::StatusOr<Chpid> Chpid::FromNumber(uint32_t id) {
  if (id > 0xff) return absl::InvalidArgumentError(absl::StrCat("CHPID ", id, " is not in 00..FF"));
  return Chpid(static_cast<uint8_t>(id));
}

std::string Chpid::ToString() const {
  return absl::AsciiStrToUpper(absl::StrCat(absl::Hex(id_, absl::kZeroPad2)));
}

}  // namespace hsi
