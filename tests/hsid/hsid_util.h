// Test helpers: a private hsid on a temp socket that is always killed and
// reaped, and forked children that report back through a pipe.
#ifndef HSI_TESTS_HSID_HSID_UTIL_H_
#define HSI_TESTS_HSID_HSID_UTIL_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hsi::testing {

// hsid started from the build tree (HSI_HSID_PATH) on a socket in a fresh
// mkdtemp directory. The destructor kills (SIGKILL) and reaps it and
// removes the directory, so a failing test leaves nothing behind.
class Hsid {
 public:
  // `config` is TOML text; empty means hsid's built-in default.
  explicit Hsid(std::string config = "") : config_(std::move(config)) {
    char tmpl[] = "/tmp/hsid-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ::chmod(dir_.c_str(), 0755);  // other uids (isolation tests) must reach the socket
    socket_ = dir_ + "/hsid.sock";
    if (!config_.empty()) {
      config_path_ = dir_ + "/hsid.toml";
      std::ofstream(config_path_) << config_;
    }
  }
  ~Hsid() {
    Stop(SIGKILL);
    std::string cmd = "rm -rf '" + dir_ + "'";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir_.c_str());
  }
  Hsid(const Hsid&) = delete;
  Hsid& operator=(const Hsid&) = delete;

  // Starts hsid and waits until it accepts connections. False if it exited
  // or did not listen within 10 s (see log()).
  bool Start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int log = ::open((dir_ + "/hsid.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (log >= 0) ::dup2(log, 2);
      if (config_path_.empty()) {
        ::execl(HSI_HSID_PATH, "hsid", "--socket", socket_.c_str(), static_cast<char*>(nullptr));
      } else {
        ::execl(HSI_HSID_PATH, "hsid", "--socket", socket_.c_str(), "--config", config_path_.c_str(),
                static_cast<char*>(nullptr));
      }
      ::_exit(127);
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (Connectable()) return true;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return false;
  }

  // Sends `sig` and reaps hsid; returns its wait status, or -1 if not running.
  int Stop(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

  bool Connectable() const {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", socket_.c_str());
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    // A killed hsid's listening socket lingers while the kernel tears down
    // its io_uring: while this hsid runs, only an answer from its pid counts.
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (ok && pid_ > 0) ok = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid == pid_;
    ::close(fd);
    return ok;
  }

  std::string log() const {
    std::ifstream in(dir_ + "/hsid.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  const std::string& socket() const { return socket_; }
  const std::string& dir() const { return dir_; }
  const std::string& config_path() const { return config_path_; }
  pid_t pid() const { return pid_; }

 private:
  std::string config_;
  std::string dir_;
  std::string socket_;
  std::string config_path_;
  pid_t pid_ = -1;
};

// A pipe for children to report a line of text to the parent.
class Report {
 public:
  Report() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) {
      r_ = p[0];
      w_ = p[1];
    }
  }
  ~Report() {
    if (r_ >= 0) ::close(r_);
    if (w_ >= 0) ::close(w_);
  }
  void Write(const std::string& s) const {
    std::string line = s + "\n";
    (void)!::write(w_, line.data(), line.size());
  }
  // Reads one line (up to `timeout`); empty on timeout or EOF.
  std::string Read(absl::Duration timeout = absl::Seconds(60)) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      pollfd p = {r_, POLLIN, 0};
      // A deadline that has passed still looks once (Read(ZeroDuration())
      // takes a line that is already there).
      const int ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
      if (::poll(&p, 1, ms) <= 0) return "";
      char tmp[4096];
      ssize_t n = ::read(r_, tmp, sizeof(tmp));
      if (n <= 0) return "";
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

 private:
  int r_ = -1, w_ = -1;
  std::string buf_;
};

}  // namespace hsi::testing

#endif  // HSI_TESTS_HSID_HSID_UTIL_H_
