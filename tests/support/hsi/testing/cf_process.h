// hsi/testing/cf_process.h: a running hsi-cf for one test or benchmark.
//
// Header-only: whoever includes it defines HSI_CF_PATH (the hsi-cf to run).
// CfProcess writes the policy beside the test's hsid, starts the build's
// hsi-cf on it (stderr to <dir>/<name>.log), and waits for its "READY ADDR"
// line (a deadline, no sleep). The destructor SIGKILLs and reaps it; it
// also dies with the test (PR_SET_PDEATHSIG).
//
// Thread safety: one thread.
#ifndef HSI_TESTING_CF_PROCESS_H_
#define HSI_TESTING_CF_PROCESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hsi/address.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/program.h"

namespace hsi::testing {

class CfProcess {
 public:
  // `name` names its files (<dir>/<name>.toml, <name>.log): one per CF
  // when a test runs several.
  CfProcess(const Hsid& hsid, const std::string& policy, const std::string& extra_flag = "",
            const std::string& name = "cf")
      : log_(hsid.dir() + "/" + name + ".log") {
    const std::string config = hsid.dir() + "/" + name + ".toml";
    std::ofstream(config) << policy;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return;
    std::vector<std::string> argv = {HSI_CF_PATH, "--config", config, "--socket", hsid.socket()};
    if (!extra_flag.empty()) argv.push_back(extra_flag);
    pid_ = SpawnLogged(argv, log_, LogMode::kTruncate, p[1]);  // stdout: READY ADDRESS
    ::close(p[1]);
    std::string line;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      struct pollfd pf {
        p[0], POLLIN, 0
      };
      if (::poll(&pf, 1, static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()) + 1)) <=
          0)
        break;
      char c;
      if (::read(p[0], &c, 1) != 1) break;
      if (c == '\n') break;
      line += c;
    }
    ::close(p[0]);
    if (line.rfind("READY ", 0) == 0) {
      if (absl::StatusOr<Address> a = Address::Parse(line.substr(6)); a.ok()) address_ = *a;
    }
  }
  ~CfProcess() { Kill(SIGKILL); }
  CfProcess(const CfProcess&) = delete;
  CfProcess& operator=(const CfProcess&) = delete;

  bool ready() const { return address_ != Address(); }
  Address address() const { return address_; }
  pid_t pid() const { return pid_; }
  // Sends `sig` and reaps; the wait status, -1 if not running.
  int Kill(int sig) {
    const int st = KillAndReap(pid_, sig);
    pid_ = -1;
    return st;
  }
  std::string log() const { return ReadFile(log_); }

 private:
  std::string log_;
  pid_t pid_ = -1;
  Address address_;
};

}  // namespace hsi::testing

#endif  // HSI_TESTING_CF_PROCESS_H_
