#include "hsi/testing/hsid.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "hsi/testing/program.h"

namespace hsi::testing {

const char* HsidPath() { return HSI_HSID_PATH; }

Hsid::Hsid(std::string config) : config_(std::move(config)) {
  char tmpl[] = "/tmp/hsid-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  dir_ = tmpl;
  ::chmod(dir_.c_str(), 0755);  // other uids (isolation tests) must reach the socket
  socket_ = dir_ + "/hsid.sock";
  if (!config_.empty()) {
    config_path_ = dir_ + "/hsid.toml";
    std::ofstream(config_path_) << config_;
  }
}

Hsid::~Hsid() {
  Stop(SIGKILL);
  std::string cmd = "rm -rf '" + dir_ + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir_.c_str());
}

bool Hsid::Start() {
  std::vector<std::string> argv = {HsidPath(), "--socket", socket_};
  if (!config_path_.empty()) argv.insert(argv.end(), {"--config", config_path_});
  pid_ = SpawnLogged(argv, dir_ + "/hsid.log", LogMode::kAppend);
  if (pid_ < 0) return false;
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

int Hsid::Stop(int sig) {
  const int status = KillAndReap(pid_, sig);
  pid_ = -1;
  return status;
}

bool Hsid::Connectable() const {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", socket_.c_str());
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (ok && pid_ > 0) ok = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid == pid_;
  ::close(fd);
  return ok;
}

std::string Hsid::log() const { return ReadFile(dir_ + "/hsid.log"); }

}  // namespace hsi::testing
