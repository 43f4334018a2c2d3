#include "hsi/testing/line_pipe.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "absl/time/clock.h"

namespace hsi::testing {

LinePipe::LinePipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) == 0) {
    r_ = p[0];
    w_ = p[1];
  }
}

LinePipe::~LinePipe() {
  if (r_ >= 0) ::close(r_);
  CloseWrite();
}

void LinePipe::CloseWrite() {
  if (w_ >= 0) ::close(w_);
  w_ = -1;
}

void LinePipe::Write(const std::string& s) const {
  std::string line = s + "\n";
  (void)!::write(w_, line.data(), line.size());
}

std::string LinePipe::Read(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    pollfd p = {r_, POLLIN, 0};
    const int ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    if (::poll(&p, 1, ms) <= 0) return "";
    char tmp[4096];
    ssize_t n = ::read(r_, tmp, sizeof(tmp));
    if (n <= 0) return "";
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

}  // namespace hsi::testing
