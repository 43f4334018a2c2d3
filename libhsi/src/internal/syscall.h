// internal/syscall.h: errno to absl::Status at the edge.
#ifndef HSI_INTERNAL_SYSCALL_H_
#define HSI_INTERNAL_SYSCALL_H_

#include <cerrno>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace hsi::internal {

// A Status for a failed syscall: `what` says which call on what object.
inline absl::Status ErrnoStatus(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, absl::StrCat(what));
}

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_SYSCALL_H_
