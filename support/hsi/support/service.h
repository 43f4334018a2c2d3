// hsi/support/service.h: tells the service manager what state a daemon is
// in (systemd's Type=notify protocol, sd_notify(3)), so that units ordered
// after hsid, hsi-ifd or hsi-cf start only once it serves (hsid: its
// control socket listens; hsi-ifd: the interface is up with its address;
// hsi-cf: its structures are served), and `systemctl status` shows a line
// of what it does.
//
// Without $NOTIFY_SOCKET (not started by systemd, or Type=simple) every
// call does nothing. A failure to send is logged once by the caller's
// choice (the return value) and never fatal: the daemon serves on either
// way.
//
// Thread safety: free functions; sd_notify is thread-safe.
#ifndef HSI_SUPPORT_SERVICE_H_
#define HSI_SUPPORT_SERVICE_H_

#include <string_view>

#include "absl/status/status.h"

namespace hsi::support {

// READY=1 with a STATUS= line: the daemon serves now.
absl::Status NotifyReady(std::string_view status);
// STOPPING=1: the daemon has begun to shut down.
absl::Status NotifyStopping();

}  // namespace hsi::support

#endif  // HSI_SUPPORT_SERVICE_H_
