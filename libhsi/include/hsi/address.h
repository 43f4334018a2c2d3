// hsi/address.h: IPv4-style addresses of NICs, the subnets of CHPIDs, and
// CHPIDs themselves.
//
// An hsi NIC has one address in its CHPID's subnet, as a HiperSockets
// interface has an IP address; the subnet's broadcast address reaches every
// NIC of the CHPID. Addresses are plain values, stored in host byte order.
//
// Thread safety: values; safe to copy and share.
#ifndef HSI_ADDRESS_H_
#define HSI_ADDRESS_H_

#include <compare>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hsi/export.h"

namespace hsi {

class HSI_EXPORT Address {
 public:
  constexpr Address() = default;
  constexpr explicit Address(uint32_t host_order) : value_(host_order) {}
  // Parses dotted quad "10.240.0.7"; kInvalidArgument naming the text.
  static absl::StatusOr<Address> Parse(absl::string_view text);

  constexpr uint32_t value() const { return value_; }
  std::string ToString() const;

  friend constexpr bool operator==(Address a, Address b) { return a.value_ == b.value_; }
  friend constexpr bool operator!=(Address a, Address b) { return a.value_ != b.value_; }
  friend constexpr bool operator<(Address a, Address b) { return a.value_ < b.value_; }
  template <typename H>
  friend H AbslHashValue(H h, Address a) {
    return H::combine(std::move(h), a.value_);
  }

 private:
  uint32_t value_ = 0;
};

// An IPv4 subnet "network/prefix". Usable NIC addresses exclude the network
// and broadcast addresses (prefix <= 30).
class HSI_EXPORT Subnet {
 public:
  Subnet() = default;
  // The network is `address` with the host bits cleared.
  Subnet(Address address, int prefix);
  // Parses "10.240.0.0/24"; kInvalidArgument if malformed, if the prefix
  // is not in 8..30, or if host bits are set.
  static absl::StatusOr<Subnet> Parse(absl::string_view text);

  Address network() const { return network_; }
  int prefix() const { return prefix_; }
  uint32_t mask() const { return prefix_ == 0 ? 0 : ~uint32_t{0} << (32 - prefix_); }
  Address broadcast() const { return Address(network_.value() | ~mask()); }
  bool Contains(Address a) const { return (a.value() & mask()) == network_.value(); }
  // In the subnet and neither the network nor the broadcast address.
  bool IsHost(Address a) const {
    return Contains(a) && a != network_ && a != broadcast();
  }
  bool Overlaps(const Subnet& o) const {
    const uint32_t m = mask() & o.mask();
    return (network_.value() & m) == (o.network_.value() & m);
  }
  std::string ToString() const;

 private:
  Address network_;
  int prefix_ = 32;
};

// A CHPID: the channel path id (00..FF) that names one internal LAN, as on
// the real machine. Written as two upper-case hex digits ("F0") everywhere:
// flags, config files, messages, listings.
class HSI_EXPORT Chpid {
 public:
  constexpr Chpid() = default;
  constexpr explicit Chpid(uint8_t id) : id_(id) {}
  // Parses "F0", "f0" or "0xF0"; kInvalidArgument "'G1' is not a hex CHPID
  // 00..FF (like F0)" otherwise.
  static absl::StatusOr<Chpid> Parse(absl::string_view text);
  // Checks a CHPID that came as a number (a wire field, a public struct's
  // uint32_t): kInvalidArgument above 0xFF.
  static absl::StatusOr<Chpid> FromNumber(uint32_t id);

  constexpr uint8_t value() const { return id_; }
  std::string ToString() const;  // "F0"

  friend constexpr auto operator<=>(Chpid, Chpid) = default;
  template <typename H>
  friend H AbslHashValue(H h, Chpid c) {
    return H::combine(std::move(h), c.id_);
  }

 private:
  uint8_t id_ = 0;
};

}  // namespace hsi

#endif  // HSI_ADDRESS_H_
