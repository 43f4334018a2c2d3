// hsi/isfc_convention.h: CTC device numbers and z/VM's write-direction
// convention for the devices of an ISFC logical link.
//
// A CTC connection joins two LPARs; each end is known by a device number
// (hex 0000..FFFF, "D000"). z/VM joins 1 to 16 of them into one ISFC
// logical link and, to avoid write collisions (both ends writing the same
// connection at once), designates devices for one direction:
//   - the member with the lexicographically lesser system name writes from
//     the lowest device number up, the greater one from the highest down;
//   - with 2 to 8 devices each side writes at most one fewer than
//     configured, with 9 to 16 at most two fewer, leaving those to the
//     other side alone (with 1 device both sides write it).
// Example: D000-D00F between LPAR1 and LPAR2: LPAR1 writes D000 up to D00D,
// LPAR2 D00F down to D002; D000-D001 are LPAR1's alone, D00E-D00F LPAR2's.
//
// PlanWrites() is that rule as a pure function. Names compare as bytes
// (std::string order), as z/VM compares its (upper-case) system names. Both
// ends must plan over the same numbers: an ISFC link (hsi/isfc.h) plans
// over the device numbers of the end with the lesser name, so that the two
// ends agree even where the two sides number a connection differently.
//
// kNaive is the mode without the convention, for comparison only: both
// ends write every device, from the lowest free one up.
//
// Thread safety: plain values and pure functions.
#ifndef HSI_ISFC_CONVENTION_H_
#define HSI_ISFC_CONVENTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "hsi/export.h"

namespace hsi {

// A CTC device number: printed as four upper-case hex digits ("D000").
class HSI_EXPORT DeviceNumber {
 public:
  constexpr DeviceNumber() = default;
  constexpr explicit DeviceNumber(uint16_t v) : value_(v) {}
  // Parses 1 to 4 hex digits ("d000", "D000", "0x" not accepted);
  // kInvalidArgument naming the text.
  static absl::StatusOr<DeviceNumber> Parse(absl::string_view text);
  // Parses a list of numbers and ranges, "D000-D00F" or "D000,D004-D005";
  // in the order given, duplicates refused. kInvalidArgument naming the text.
  static absl::StatusOr<std::vector<DeviceNumber>> ParseList(absl::string_view text);

  constexpr uint16_t value() const { return value_; }
  std::string ToString() const;
  friend constexpr auto operator<=>(DeviceNumber a, DeviceNumber b) = default;

 private:
  uint16_t value_ = 0;
};

inline constexpr int kMaxIsfcDevices = 16;

enum class IsfcMode : uint32_t { kConvention = 0, kNaive = 1 };

// The devices one side may write under the convention, of `n` configured
// (1..16): n for 1, n-1 for 2..8, n-2 for 9..16. 0 for n outside 1..16.
HSI_EXPORT int UsableDevices(int n);

// One device of a plan: who writes it, and at which place in each side's
// order (0 = tried first); -1 = that side does not write it.
struct DeviceUse {
  DeviceNumber device;
  int self_rank = -1;
  int peer_rank = -1;
  // One line for people: "LPAR1 only: LPAR2 writes at most 14 of 16, from
  // D00F down" and the like.
  std::string why;
};

struct WritePlan {
  IsfcMode mode = IsfcMode::kConvention;
  bool self_lesser = false;       // self's name sorts before the peer's
  int usable = 0;                 // devices each side may write
  std::vector<DeviceUse> devices; // ascending by device number
  std::vector<DeviceNumber> self_order;  // the order this side tries them
  std::vector<DeviceNumber> peer_order;  // the order the peer tries them
};

// The plan for the link between system `self` and system `peer` over
// `devices` (1..16 distinct numbers, any order). kInvalidArgument if the
// names are empty or equal, or the devices are 0, more than 16 or repeated
// (the message names which).
HSI_EXPORT absl::StatusOr<WritePlan> PlanWrites(absl::string_view self, absl::string_view peer,
                                               absl::Span<const DeviceNumber> devices,
                                               IsfcMode mode = IsfcMode::kConvention);

}  // namespace hsi

#endif  // HSI_ISFC_CONVENTION_H_
