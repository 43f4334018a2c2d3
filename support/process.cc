// hsi/support/process.h
#include "hsi/support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace hsi::support {

Child::Child(const std::function<int()>& body) {
  const pid_t parent = ::getpid();
  std::fflush(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
    const int rc = body();
    std::fflush(nullptr);
    ::_exit(rc);
  }
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    Wait();
  }
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
    pid_ = o.pid_;
    o.pid_ = -1;
  }
  return *this;
}

int Child::Wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

int Child::Stop(absl::Duration grace) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  int status = 0;
  while (absl::Now() < deadline) {
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
    }
    ::usleep(2000);
  }
  ::kill(pid_, SIGKILL);
  return Wait();
}

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

void LinePipe::Write(const std::string& line) const {
  const std::string l = line + "\n";
  (void)!::write(w_, l.data(), l.size());
}

std::optional<std::string> LinePipe::ReadLine(absl::Time deadline) {
  for (;;) {
    if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    int ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    }
    pollfd p = {r_, POLLIN, 0};
    const int pr = ::poll(&p, 1, ms);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return std::nullopt;
    char tmp[4096];
    const ssize_t n = ::read(r_, tmp, sizeof(tmp));
    if (n <= 0) return std::nullopt;
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

std::string LinePipe::Read(absl::Duration timeout) { return ReadLine(absl::Now() + timeout).value_or(""); }

}  // namespace hsi::support
