#include "hsi/wait.h"

#include "absl/strings/str_cat.h"

namespace hsi {

absl::string_view WaitModeName(WaitMode mode) {
  switch (mode) {
    case WaitMode::kSpin:
      return "spin";
    case WaitMode::kBlock:
      return "block";
    case WaitMode::kAdaptive:
      return "adaptive";
  }
  return "unknown";
}

absl::StatusOr<WaitMode> ParseWaitMode(absl::string_view text) {
  if (text == "spin") return WaitMode::kSpin;
  if (text == "block") return WaitMode::kBlock;
  if (text == "adaptive") return WaitMode::kAdaptive;
  return absl::InvalidArgumentError(absl::StrCat(
      "wait mode '", text, "' is not one of spin, block, adaptive"));
}

}  // namespace hsi
