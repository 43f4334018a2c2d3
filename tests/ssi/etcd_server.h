// tests/ssi/etcd_server.h: a private etcd (Debian's etcd-server) for one
// test: one node or several, on free loopback ports, with data in a fresh
// temp directory. Each node can be killed and started again on the same
// data. The destructor SIGKILLs and reaps every node it started (by pid)
// and removes the directory, so a failing test leaves no etcd running; a
// node also dies with the test process (PR_SET_PDEATHSIG).
//
// Thread safety: one thread.
#ifndef HSI_TESTS_SSI_ETCD_SERVER_H_
#define HSI_TESTS_SSI_ETCD_SERVER_H_

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "hsi/ssi/etcd.h"
#include "hsi/testing/program.h"

namespace hsi::ssi_testing {

// A free TCP port on 127.0.0.1 (bound and released: another process may
// take it in between, which the caller sees as a failed start).
inline int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

// Why etcd cannot run here, or "".
inline std::string MissingEtcd() {
  if (!hsi::testing::Have("etcd")) {
    return "etcd is not installed (packaging/setup.sh installs etcd-server)";
  }
  return "";
}

class EtcdServer {
 public:
  // `nodes` members (1 or 3), not started.
  explicit EtcdServer(int nodes = 1) {
    char tmpl[] = "/tmp/hsi-etcd-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) dir_ = tmpl;
    for (int i = 0; i < nodes; ++i) {
      Node n;
      n.name = absl::StrCat("n", i);
      n.client_port = FreePort();
      n.peer_port = FreePort();
      nodes_.push_back(n);
    }
  }
  ~EtcdServer() {
    for (size_t i = 0; i < nodes_.size(); ++i) Kill(i, SIGKILL);
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // Starts every node and waits (up to 20 s) until the cluster answers a read.
  bool Start() {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (!StartNode(i)) return false;
    }
    return WaitReady(absl::Seconds(20));
  }
  // Starts node `i` (again) on its data directory.
  bool StartNode(size_t i) {
    Node& n = nodes_[i];
    if (n.pid > 0) return true;
    std::vector<std::string> cluster;
    for (const Node& o : nodes_) cluster.push_back(absl::StrCat(o.name, "=http://127.0.0.1:", o.peer_port));
    const std::string client = absl::StrCat("http://127.0.0.1:", n.client_port);
    const std::string peer = absl::StrCat("http://127.0.0.1:", n.peer_port);
    std::vector<std::string> argv = {"etcd",
                                     "--name", n.name,
                                     "--data-dir", absl::StrCat(dir_, "/", n.name),
                                     "--listen-client-urls", client,
                                     "--advertise-client-urls", client,
                                     "--listen-peer-urls", peer,
                                     "--initial-advertise-peer-urls", peer,
                                     "--initial-cluster", absl::StrJoin(cluster, ","),
                                     "--initial-cluster-token", absl::StrCat("hsi-test-", ::getpid()),
                                     "--log-level", "warn"};
    const std::string log = absl::StrCat(dir_, "/", n.name, ".log");
    const pid_t pid = hsi::testing::SpawnLogged(argv, log, hsi::testing::LogMode::kAppend);
    if (pid < 0) return false;
    n.pid = pid;
    return true;
  }
  // Sends `sig` to node `i` and reaps it.
  void Kill(size_t i, int sig) {
    Node& n = nodes_[i];
    hsi::testing::KillAndReap(n.pid, sig);
    n.pid = -1;
  }
  bool WaitReady(absl::Duration timeout) {
    absl::StatusOr<hsi::ssi::EtcdClient> c = hsi::ssi::EtcdClient::Create({endpoints(), absl::Milliseconds(500)});
    if (!c.ok()) return false;
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (c->Get("/hsi-test-ready").status().code() == absl::StatusCode::kNotFound) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  std::vector<std::string> endpoints() const {
    std::vector<std::string> v;
    for (const Node& n : nodes_) v.push_back(endpoint(&n - nodes_.data()));
    return v;
  }
  std::string endpoint(size_t i) const { return absl::StrCat("http://127.0.0.1:", nodes_[i].client_port); }
  std::string endpoints_text() const { return absl::StrJoin(endpoints(), ","); }
  pid_t pid(size_t i) const { return nodes_[i].pid; }
  const std::string& dir() const { return dir_; }

 private:
  struct Node {
    std::string name;
    int client_port = -1, peer_port = -1;
    pid_t pid = -1;
  };
  std::string dir_;
  std::vector<Node> nodes_;
};

}  // namespace hsi::ssi_testing

#endif  // HSI_TESTS_SSI_ETCD_SERVER_H_
