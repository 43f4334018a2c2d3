// internal/syscall.h: errno to absl::Status at the edge.
#ifndef HSI_INTERNAL_SYSCALL_H_
#define HSI_INTERNAL_SYSCALL_H_

#include <fcntl.h>

#include <cerrno>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "hsi/fd.h"

namespace hsi::internal {

// A Status for a failed syscall: `what` says which call on what object.
inline absl::Status ErrnoStatus(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, absl::StrCat(what));
}

// A close-on-exec duplicate of `fd` (another fd for the same open file).
inline absl::StatusOr<UniqueFd> DupFd(const UniqueFd& fd, absl::string_view what) {
  const int d = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
  if (d < 0) return ErrnoStatus(errno, absl::StrCat(what, ": dup"));
  return UniqueFd(d);
}

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_SYSCALL_H_
