// hsi/testing/service_manager.h: the service manager's end of systemd's
// notify protocol (sd_notify(3)), for tests of the daemons' Type=notify
// readiness: a datagram socket at a path, named to the children by
// $NOTIFY_SOCKET (ScopedEnv), and the notifications read one by one.
//
// Thread safety: none; one test thread.
#ifndef HSI_TESTING_SERVICE_MANAGER_H_
#define HSI_TESTING_SERVICE_MANAGER_H_

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>

#include "absl/time/time.h"

namespace hsi::testing {

// The service manager's end of the notify protocol (sd_notify(3)): one
// datagram per notification, at a path in the test's directory.
class ServiceManager {
 public:
  explicit ServiceManager(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path_.c_str());
    ::unlink(path_.c_str());
    bound_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~ServiceManager() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  ServiceManager(const ServiceManager&) = delete;
  ServiceManager& operator=(const ServiceManager&) = delete;
  bool bound() const { return bound_; }
  // The next notification, or "" if none came within `timeout`.
  std::string Next(absl::Duration timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) != 1) return "";
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

// Sets an environment variable for the children this test starts, and
// removes it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) { ::setenv(name, value.c_str(), 1); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

}  // namespace hsi::testing

#endif  // HSI_TESTING_SERVICE_MANAGER_H_
