// hsi/wait.h: how a blocking call waits, and until when.
//
// Every blocking call in libhsi takes a Wait. `spin` busy-polls (lowest
// latency, burns a core); `block` sleeps on the doorbell at once
// (no CPU while idle, a syscall per wake-up); `adaptive` (the default) spins
// for `spin_for` and then sleeps. Every wait ends at `deadline`, including
// the waits for hsid and for a peer while a link is set up (hsi/nic.h); the
// call then returns kDeadlineExceeded.
#ifndef HSI_WAIT_H_
#define HSI_WAIT_H_

#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsi/export.h"

namespace hsi {

enum class WaitMode { kSpin, kBlock, kAdaptive };

struct Wait {
  WaitMode mode = WaitMode::kAdaptive;
  absl::Time deadline = absl::InfiniteFuture();
  // adaptive only: how long to spin before sleeping.
  absl::Duration spin_for = absl::Microseconds(50);

  static Wait Spin(absl::Time deadline = absl::InfiniteFuture()) {
    return Wait{WaitMode::kSpin, deadline};
  }
  static Wait Block(absl::Time deadline = absl::InfiniteFuture()) {
    return Wait{WaitMode::kBlock, deadline};
  }
  static Wait Adaptive(absl::Time deadline = absl::InfiniteFuture()) {
    return Wait{WaitMode::kAdaptive, deadline};
  }
  // A Wait that never sleeps or spins: try once.
  static Wait Never() { return Wait{WaitMode::kSpin, absl::InfinitePast()}; }
};

// "spin", "block" or "adaptive".
HSI_EXPORT absl::string_view WaitModeName(WaitMode mode);
// Parses "spin", "block" or "adaptive"; kInvalidArgument otherwise.
HSI_EXPORT absl::StatusOr<WaitMode> ParseWaitMode(absl::string_view text);

}  // namespace hsi

#endif  // HSI_WAIT_H_
