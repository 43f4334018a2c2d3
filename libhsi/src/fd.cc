#include "hsi/fd.h"

#include <unistd.h>

namespace hsi {

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace hsi
