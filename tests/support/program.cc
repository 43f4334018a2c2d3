#include "hsi/testing/program.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace hsi::testing {

ShellResult Shell(const std::string& cmd, bool with_stderr) {
  ShellResult r;
  FILE* p = ::popen((cmd + (with_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

bool Have(const std::string& program) { return Shell("command -v " + program + " >/dev/null").ok(); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pid_t SpawnLogged(const std::vector<std::string>& argv, const std::string& log, LogMode mode, int stdout_fd) {
  // Built before fork(): the child only calls async-signal-safe functions.
  std::vector<std::string> args = argv;
  std::vector<char*> a;
  for (std::string& s : args) a.push_back(s.data());
  a.push_back(nullptr);
  const int flags = O_WRONLY | O_CREAT | (mode == LogMode::kAppend ? O_APPEND : O_TRUNC);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the parent died before the flag was set
  const int fd = ::open(log.c_str(), flags, 0644);
  if (fd >= 0) {
    ::dup2(stdout_fd >= 0 ? stdout_fd : fd, 1);
    ::dup2(fd, 2);
  }
  ::execvp(a[0], a.data());
  ::_exit(127);
}

int KillAndReap(pid_t pid, int sig) {
  if (pid <= 0) return -1;
  ::kill(pid, sig);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

int Program::WaitExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (pid_ > 0 && absl::Now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return -1;
}

}  // namespace hsi::testing
