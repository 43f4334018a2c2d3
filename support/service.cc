// service.cc: hsi/support/service.h over libsystemd's sd_notify.
#include "hsi/support/service.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace hsi::support {
namespace {

// A STATUS= value is one line.
std::string OneLine(std::string_view s) {
  std::string line(s);
  std::replace(line.begin(), line.end(), '\n', ' ');
  return line;
}

absl::Status Send(const std::string& state) {
  // 0: nothing to tell (no $NOTIFY_SOCKET); > 0: sent; < 0: -errno.
  const int r = sd_notify(/*unset_environment=*/0, state.c_str());
  if (r >= 0) return absl::OkStatus();
  const char* where = std::getenv("NOTIFY_SOCKET");
  return absl::UnavailableError(absl::StrCat("sd_notify(\"", OneLine(state), "\") to the service manager at ",
                                             where != nullptr ? where : "?", ": ", std::strerror(-r)));
}

}  // namespace

absl::Status NotifyReady(std::string_view status) {
  return Send(absl::StrCat("READY=1\nSTATUS=", OneLine(status)));
}
absl::Status NotifyStopping() { return Send("STOPPING=1"); }

}  // namespace hsi::support
