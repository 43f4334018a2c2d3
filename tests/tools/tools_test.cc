// The tools against a private hsid: JSON output that agrees with the frames
// a test sent, hsi-dump's pcap read back by tshark, refusals for non-admin
// uids, and usage errors (exit 2 with a message naming the option).
#include <fcntl.h>
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "hsi/testing/child.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/line_pipe.h"
#include "nlohmann/json.hpp"

namespace hsi {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::Hsid;
using ::hsi::testing::LinePipe;
using ::testing::HasSubstr;
using json = nlohmann::json;

std::string Tool(const std::string& name) { return std::string(HSI_TOOLS_DIR) + "/" + name; }

struct Result {
  int code = -1;  // exit status, 128+signal, or -1 if it did not finish in time
  std::string out, err;
};

// A tool run as a subprocess with its stdout and stderr captured. The
// destructor kills and reaps it if nobody finished it.
class Proc {
 public:
  Proc(const std::vector<std::string>& argv, const std::function<void()>& in_child = {}) {
    int o[2], e[2];
    if (::pipe2(o, O_CLOEXEC) != 0 || ::pipe2(e, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(o[1], 1);
      ::dup2(e[1], 2);
      if (in_child) in_child();
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      std::fprintf(stderr, "exec %s failed\n", args[0]);
      ::_exit(127);
    }
    ::close(o[1]);
    ::close(e[1]);
    out_fd_ = o[0];
    err_fd_ = e[0];
  }
  ~Proc() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
  }
  pid_t pid() const { return pid_; }
  void Signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Collects output until both pipes close, then reaps; kills at `timeout`.
  Result Finish(absl::Duration timeout = absl::Seconds(60)) {
    Result r;
    const absl::Time deadline = absl::Now() + timeout;
    bool timed_out = false;
    while (out_fd_ >= 0 || err_fd_ >= 0) {
      pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
      const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (ms <= 0) {
        timed_out = true;
        break;
      }
      if (::poll(p, 2, ms) < 0 && errno != EINTR) break;
      for (int i = 0; i < 2; ++i) {
        int& fd = i == 0 ? out_fd_ : err_fd_;
        if (fd < 0 || p[i].revents == 0) continue;
        char buf[65536];
        const ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n <= 0) {
          ::close(fd);
          fd = -1;
        } else {
          (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
        }
      }
    }
    if (timed_out) ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    r.code = timed_out ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
};

Result RunTool(const std::vector<std::string>& argv, absl::Duration timeout = absl::Seconds(60),
           const std::function<void()>& in_child = {}) {
  Proc p(argv, in_child);
  return p.Finish(timeout);
}

std::string Describe(const Result& r) {
  return absl::StrCat("exit ", r.code, "\nstdout:\n", r.out, "\nstderr:\n", r.err);
}

// A copy of tool `name` that uid 65534 can run wherever the build tree
// lies (a checkout in /root, mode 0700, is out of its reach): the tools are
// linked statically against libhsi, so the binary alone runs. The copies
// live in one directory for the whole test program, removed at exit.
std::string NobodyTool(const std::string& name) {
  struct Dir {
    std::string path;
    Dir() {
      char tmpl[] = "/tmp/hsi-tools-XXXXXX";
      path = ::mkdtemp(tmpl);
      ::chmod(path.c_str(), 0755);
    }
    ~Dir() {
      const std::string cmd = "rm -rf '" + path + "'";
      if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", path.c_str());
    }
  };
  static Dir dir;
  const std::string copy = dir.path + "/" + name;
  if (::access(copy.c_str(), X_OK) != 0) {
    const std::string cmd = "cp '" + Tool(name) + "' '" + copy + "' && chmod 0755 '" + copy + "'";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not copy %s\n", name.c_str());
  }
  return copy;
}

void BecomeNobody() {
  if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
      ::setresuid(65534, 65534, 65534) != 0) {
    std::fprintf(stderr, "setresuid failed\n");
    ::_exit(99);
  }
}

bool WaitForLog(const Hsid& d, const std::string& text, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (d.log().find(text) != std::string::npos) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

// Two LPARs: "tx" sends `frames` frames of `size` bytes to "rx", which
// receives them all; both stay attached until the test says "exit".
class TwoLpars {
 public:
  TwoLpars(const Hsid& d, int frames, size_t size) {
    rx_ = std::make_unique<Child>([&, frames] {
      SessionOptions o;
      o.socket_path = d.socket();
      o.lpar = "rx";
      absl::StatusOr<Session> s = Session::Connect(o);
      if (!s.ok()) return rep_rx_.Write("FAIL " + s.status().ToString()), 1;
      absl::StatusOr<Nic> n = s->AttachNic(0xF0);
      if (!n.ok()) return rep_rx_.Write("FAIL " + n.status().ToString()), 1;
      rep_rx_.Write(n->address().ToString());
      std::vector<uint8_t> buf(n->info().mtu);
      int got = 0;
      while (got < frames) {
        absl::StatusOr<Received> r = n->Receive(absl::MakeSpan(buf), Wait::Block(absl::Now() + absl::Seconds(30)));
        if (!r.ok()) return rep_rx_.Write("FAIL " + r.status().ToString()), 1;
        ++got;
      }
      rep_rx_.Write(absl::StrCat("got ", got));
      (void)rep_rx_stop_.Read(absl::Seconds(120));
      return 0;
    });
    rx_address_ = rep_rx_.Read(absl::Seconds(20));
    tx_ = std::make_unique<Child>([&, frames, size] {
      SessionOptions o;
      o.socket_path = d.socket();
      o.lpar = "tx";
      absl::StatusOr<Session> s = Session::Connect(o);
      if (!s.ok()) return rep_tx_.Write("FAIL " + s.status().ToString()), 1;
      absl::StatusOr<Nic> n = s->AttachNic(0xF0);
      if (!n.ok()) return rep_tx_.Write("FAIL " + n.status().ToString()), 1;
      absl::StatusOr<Address> to = Address::Parse(rx_address_);
      if (!to.ok()) return rep_tx_.Write("FAIL no peer"), 1;
      std::vector<uint8_t> payload(size, 7);
      for (int i = 0; i < frames; ++i) {
        absl::Status st = n->SendTo(*to, payload, Wait::Block(absl::Now() + absl::Seconds(30)));
        if (!st.ok()) return rep_tx_.Write("FAIL " + st.ToString()), 1;
      }
      rep_tx_.Write(n->address().ToString());
      (void)rep_tx_stop_.Read(absl::Seconds(120));
      return 0;
    });
    tx_address_ = rep_tx_.Read(absl::Seconds(30));
    rx_done_ = rep_rx_.Read(absl::Seconds(30));
  }
  ~TwoLpars() {
    rep_tx_stop_.Write("exit");
    rep_rx_stop_.Write("exit");
    tx_->Wait();
    rx_->Wait();
  }
  const std::string& rx() const { return rx_address_; }
  const std::string& tx() const { return tx_address_; }
  const std::string& rx_done() const { return rx_done_; }

 private:
  LinePipe rep_rx_, rep_tx_, rep_rx_stop_, rep_tx_stop_;
  std::unique_ptr<Child> rx_, tx_;
  std::string rx_address_, tx_address_, rx_done_;
};

class ToolsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(hsid_.Start()) << hsid_.log(); }
  std::vector<std::string> Cmd(const std::string& tool, std::vector<std::string> args, bool as_nobody = false) {
    std::vector<std::string> v = {as_nobody ? NobodyTool(tool) : Tool(tool), "--socket", hsid_.socket()};
    v.insert(v.end(), args.begin(), args.end());
    return v;
  }
  Hsid hsid_;
};

TEST_F(ToolsTest, HsictlJsonAgreesWithTheFramesSent) {
  constexpr int kFrames = 1000;
  constexpr size_t kSize = 100;
  TwoLpars lpars(hsid_, kFrames, kSize);
  ASSERT_THAT(lpars.tx(), ::testing::Not(HasSubstr("FAIL")));
  ASSERT_EQ(lpars.rx_done(), absl::StrCat("got ", kFrames));

  Result nics = RunTool(Cmd("hsictl", {"nics", "--json"}));
  ASSERT_EQ(nics.code, 0) << Describe(nics);
  json jn = json::parse(nics.out);
  ASSERT_EQ(jn["nics"].size(), 2u) << nics.out;
  std::set<std::string> seen;
  for (const auto& n : jn["nics"]) {
    seen.insert(n["address"].get<std::string>());
    EXPECT_EQ(n["chpid"], "F0");
    EXPECT_EQ(n["up"], true);
    EXPECT_EQ(n["links"], 1);
  }
  EXPECT_EQ(seen, (std::set<std::string>{lpars.tx(), lpars.rx()}));

  Result stats = RunTool(Cmd("hsictl", {"stats", "--json"}));
  ASSERT_EQ(stats.code, 0) << Describe(stats);
  json js = json::parse(stats.out);
  ASSERT_EQ(js["links"].size(), 1u) << stats.out;
  const json& l = js["links"][0];
  const bool tx_is_a = l["a"] == lpars.tx();
  const json& fwd = tx_is_a ? l["a_to_b"] : l["b_to_a"];
  const json& back = tx_is_a ? l["b_to_a"] : l["a_to_b"];
  EXPECT_EQ(fwd["frames"], kFrames);
  EXPECT_EQ(fwd["bytes"], kFrames * kSize);
  EXPECT_EQ(fwd["rx_frames"], kFrames);
  EXPECT_EQ(fwd["rx_bytes"], kFrames * kSize);
  EXPECT_EQ(fwd["drops"], 0);
  EXPECT_EQ(back["frames"], 0);
  for (const auto& n : js["nics"]) {
    if (n["address"] == lpars.tx()) {
      EXPECT_EQ(n["tx_frames"], kFrames);
      EXPECT_EQ(n["tx_bytes"], kFrames * kSize);
      EXPECT_EQ(n["rx_frames"], 0);
    } else {
      EXPECT_EQ(n["address"], lpars.rx());
      EXPECT_EQ(n["rx_frames"], kFrames);
      EXPECT_EQ(n["tx_frames"], 0);
    }
  }

  // The same in a table for people, and a NIC taken down and up again.
  Result table = RunTool(Cmd("hsictl", {"stats"}));
  ASSERT_EQ(table.code, 0) << Describe(table);
  EXPECT_THAT(table.out, HasSubstr(absl::StrCat(" ", kFrames * kSize, " ")));
  Result down = RunTool(Cmd("hsictl", {"down", "F0:" + lpars.rx()}));
  ASSERT_EQ(down.code, 0) << Describe(down);
  json after = json::parse(RunTool(Cmd("hsictl", {"nics", "--json"})).out);
  for (const auto& n : after["nics"]) EXPECT_EQ(n["up"], n["address"] != lpars.rx()) << after.dump();
  Result wrong = RunTool(Cmd("hsictl", {"up", "F1:" + lpars.rx()}));
  EXPECT_EQ(wrong.code, 1) << Describe(wrong);
  EXPECT_THAT(wrong.err, HasSubstr("is on CHPID F0, not F1"));
  Result up = RunTool(Cmd("hsictl", {"up", lpars.rx()}));
  ASSERT_EQ(up.code, 0) << Describe(up);
}

TEST_F(ToolsTest, HsiDumpPcapHasTheFrameCountItReported) {
  if (::access("/usr/bin/tshark", X_OK) != 0) GTEST_SKIP() << "needs tshark (packaging/setup.sh installs it)";
  const std::string pcap = hsid_.dir() + "/f.pcap";
  Proc dump(Cmd("hsi-dump", {"--chpid", "F0", "-w", pcap, "--duration", "60"}));
  ASSERT_TRUE(WaitForLog(hsid_, "opened a sniffer on CHPID F0", absl::Seconds(10))) << hsid_.log();
  Result perf = RunTool(Cmd("hsi-perf", {"-t", "0.5", "-s", "2000", "--json"}), absl::Seconds(60));
  ASSERT_EQ(perf.code, 0) << Describe(perf);
  json jp = json::parse(perf.out);
  EXPECT_GT(jp["received"]["frames"].get<uint64_t>(), 0u);
  EXPECT_EQ(jp["received"]["frames"], jp["sent"]["frames"]);
  EXPECT_EQ(jp["lost"], 0);
  // hsi-perf's links were offered to the tap when they came up, before any
  // frame: on SIGINT the tap handles what hsid sent it and reads what is
  // left in the rings, so every frame is accounted for without a wait.
  ASSERT_TRUE(WaitForLog(hsid_, "hsi-perf-", absl::Seconds(1)));
  dump.Signal(SIGINT);
  Result d = dump.Finish(absl::Seconds(20));
  ASSERT_EQ(d.code, 0) << Describe(d);
  // "hsi-dump: N frames written to FILE, M missed ..."
  const size_t at = d.err.find(" frames written to ");
  ASSERT_NE(at, std::string::npos) << d.err;
  const size_t start = d.err.rfind("hsi-dump: ", at) + 10;
  uint64_t reported = 0, missed = 0;
  ASSERT_TRUE(absl::SimpleAtoi(d.err.substr(start, at - start), &reported)) << d.err;
  const size_t comma = d.err.find(", ", at);
  ASSERT_TRUE(absl::SimpleAtoi(d.err.substr(comma + 2, d.err.find(' ', comma + 2) - comma - 2), &missed)) << d.err;
  EXPECT_GT(reported, 0u);
  // Every frame on the wire was either captured or counted missed: data
  // frames plus the HELLO, END and RESULT control frames of hsi-perf.
  EXPECT_EQ(reported + missed, jp["sent"]["frames"].get<uint64_t>() + 3) << d.err;
  Result t = RunTool({"/usr/bin/tshark", "-r", pcap, "-T", "fields", "-e", "ip.src", "-e", "udp.length"},
                 absl::Seconds(120));
  ASSERT_EQ(t.code, 0) << Describe(t);
  std::vector<std::string> lines = absl::StrSplit(t.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), reported);
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.back(), HasSubstr("10.240.0."));  // the NIC addresses show as IPv4 source
}

TEST_F(ToolsTest, HsiPingVsTcpPrintsBothDistributionsAndTheRatio) {
  Result r = RunTool(Cmd("hsi-ping", {"--vs-tcp", "-c", "2000", "-s", "64", "--wait", "spin", "--json"}),
                 absl::Seconds(120));
  ASSERT_EQ(r.code, 0) << Describe(r);
  json j = json::parse(r.out);
  EXPECT_EQ(j["hsi"]["received"], 2000);
  EXPECT_EQ(j["tcp"]["received"], 2000);
  EXPECT_GT(j["hsi"]["p50_ns"].get<double>(), 0);
  EXPECT_LE(j["hsi"]["p50_ns"].get<double>(), j["hsi"]["p99_ns"].get<double>());
  // The ratio is what the two distributions say (how large it is is a
  // benchmark's business: docs/benchmarks.md, not a test's).
  const double hsi_p50 = j["hsi"]["p50_ns"].get<double>(), tcp_p50 = j["tcp"]["p50_ns"].get<double>();
  EXPECT_GT(tcp_p50, 0);
  EXPECT_NEAR(j["ratio_tcp_hsi_p50"].get<double>(), tcp_p50 / hsi_p50, 0.01 * tcp_p50 / hsi_p50) << r.out;
  Result text = RunTool(Cmd("hsi-ping", {"--vs-tcp", "-c", "500", "-s", "64"}), absl::Seconds(120));
  ASSERT_EQ(text.code, 0) << Describe(text);
  EXPECT_THAT(text.out, HasSubstr("hsi rtt min/avg/max/mdev = "));
  EXPECT_THAT(text.out, HasSubstr("tcp rtt p50/p99/p99.9 = "));
  EXPECT_THAT(text.out, HasSubstr("ratio tcp/hsi at p50: "));
}

// A port nobody listens on right now (the kernel's pick for an ephemeral bind).
uint16_t FreeTcpPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST_F(ToolsTest, HsiPingResponderServesOneVsTcpClientAfterAnother) {
  // The responder once kept the first client's TCP connection, and the
  // second client waited forever for its first TCP echo.
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  Proc responder(Cmd("hsi-ping", {"--responder", "--lpar", "resp", "--tcp-port", std::to_string(port)}));
  ASSERT_TRUE(WaitForLog(hsid_, "attached 10.240.0.1", absl::Seconds(10))) << hsid_.log();
  for (int client = 1; client <= 2; ++client) {
    Result r = RunTool(Cmd("hsi-ping", {"--vs-tcp", "-c", "1000", "--batch", "250", "--json", "10.240.0.1",
                                        "--tcp-port", std::to_string(port)}),
                       absl::Seconds(60));
    ASSERT_EQ(r.code, 0) << "client " << client << ": " << Describe(r);
    json j = json::parse(r.out);
    EXPECT_EQ(j["hsi"]["received"], 1000) << "client " << client;
    EXPECT_EQ(j["tcp"]["received"], 1000) << "client " << client;
    EXPECT_EQ(j["hsi"]["wrong"], 0) << "client " << client;
  }
}

TEST_F(ToolsTest, HsiPingReportsEchoesThatDifferFromTheProbe) {
  // A responder that answers with the probe's sequence number but changes
  // its last byte: the round trip completes, the comparison after the clock
  // stops must catch it.
  LinePipe rep;
  Child bad([&] {
    SessionOptions o;
    o.socket_path = hsid_.socket();
    o.lpar = "bad";
    absl::StatusOr<Session> s = Session::Connect(o);
    if (!s.ok()) return rep.Write("FAIL " + s.status().ToString()), 1;
    absl::StatusOr<Nic> n = s->AttachNic(0xF0);
    if (!n.ok()) return rep.Write("FAIL " + n.status().ToString()), 1;
    rep.Write(n->address().ToString());
    std::vector<uint8_t> buf(n->info().mtu);
    for (;;) {
      absl::StatusOr<Received> r = n->Receive(absl::MakeSpan(buf), Wait::Block(absl::Now() + absl::Seconds(30)));
      if (!r.ok() && r.status().code() == absl::StatusCode::kUnavailable) continue;  // a pinger left
      if (!r.ok()) return 1;
      buf[r->length - 1] ^= 0xFF;
      (void)n->SendTo(r->source, absl::MakeConstSpan(buf.data(), r->length), Wait::Block(absl::Now() + absl::Seconds(5)));
    }
  });
  const std::string addr = rep.Read(absl::Seconds(20));
  ASSERT_THAT(addr, HasSubstr("10.240.0.")) << addr;
  Result r = RunTool(Cmd("hsi-ping", {"-c", "3", "-i", "0.01", addr}));
  EXPECT_EQ(r.code, 1) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("wrong echo from ", addr, ": seq=3")));
  EXPECT_THAT(r.out, HasSubstr("hsi: 3 probes sent, 0 answered, 0% loss, 3 wrong echoes")) << r.out;
  Result j = RunTool(Cmd("hsi-ping", {"-c", "2", "-i", "0", "--json", addr}));
  EXPECT_EQ(j.code, 1) << Describe(j);
  ASSERT_TRUE(json::accept(j.out)) << Describe(j);
  json doc = json::parse(j.out);
  EXPECT_EQ(doc["hsi"]["wrong"], 2);
  EXPECT_EQ(doc["hsi"]["received"], 0);
  EXPECT_EQ(doc["hsi"]["lost"], 0);
}

TEST_F(ToolsTest, HsiPingAgainstAResponderAndPerClientServer) {
  Proc responder(Cmd("hsi-ping", {"--responder", "--lpar", "resp"}));
  ASSERT_TRUE(WaitForLog(hsid_, "attached 10.240.0.1", absl::Seconds(10))) << hsid_.log();
  Result r = RunTool(Cmd("hsi-ping", {"-c", "3", "-i", "0.01", "10.240.0.1"}));
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("64 bytes from 10.240.0.1: seq=3 time="));
  EXPECT_THAT(r.out, HasSubstr("hsi: 3 probes sent, 3 answered, 0% loss"));
  Result none = RunTool(Cmd("hsi-ping", {"-c", "1", "-W", "0.2", "10.240.0.99"}));
  EXPECT_EQ(none.code, 1) << Describe(none);
  EXPECT_THAT(none.err, HasSubstr("10.240.0.99"));

  // The server's address is whatever hsid assigned it (the probe above may
  // have held and freed one): read it from hsid's log line for its LPAR.
  Proc server(Cmd("hsi-perf", {"--server", "--lpar", "perfsrv"}));
  std::string server_addr;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10); server_addr.empty() && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(5))) {
    for (absl::string_view line : absl::StrSplit(hsid_.log(), '\n')) {
      const size_t at = line.find(" attached ");
      if (line.find("LPAR \"perfsrv") == absl::string_view::npos || at == absl::string_view::npos) continue;
      absl::string_view rest = line.substr(at + 10);
      server_addr = std::string(rest.substr(0, rest.find(' ')));
    }
  }
  ASSERT_FALSE(server_addr.empty()) << hsid_.log();
  Result c = RunTool(Cmd("hsi-perf", {"--client", server_addr, "-t", "0.5", "--bidir", "--json"}));
  ASSERT_EQ(c.code, 0) << Describe(c);
  json j = json::parse(c.out);
  EXPECT_GT(j["sent"]["frames"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["lost"], 0) << c.out;
}

TEST_F(ToolsTest, NonAdminIsRefusedWithAClearMessage) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (CAP_SETUID) to run the tools as another uid";
  Result def = RunTool(Cmd("hsictl", {"define-chpid", "F1", "--mfs", "16K", "--subnet", "10.241.0.0/24"}, true),
                   absl::Seconds(30), BecomeNobody);
  EXPECT_EQ(def.code, 1) << Describe(def);
  EXPECT_THAT(def.err, HasSubstr("admin operation define CHPID: uid 65534 is not an admin"));
  Result dump = RunTool(Cmd("hsi-dump", {"--chpid", "F0", "--duration", "1"}, true), absl::Seconds(30), BecomeNobody);
  EXPECT_EQ(dump.code, 1) << Describe(dump);
  EXPECT_THAT(dump.err, HasSubstr("sniff CHPID F0: uid 65534 is not an admin"));
  EXPECT_THAT(dump.err, HasSubstr("not an authorized sniffer"));
  // Root (an admin) may.
  Result ok = RunTool(Cmd("hsictl", {"define-chpid", "F1", "--mfs", "24K", "--subnet", "10.241.0.0/24", "--overflow",
                                 "drop", "--lpars", "a,b"}));
  ASSERT_EQ(ok.code, 0) << Describe(ok);
  json j = json::parse(RunTool(Cmd("hsictl", {"chpids", "--json"})).out);
  ASSERT_EQ(j["chpids"].size(), 2u);
  EXPECT_EQ(j["chpids"][1]["chpid"], "F1");
  EXPECT_EQ(j["chpids"][1]["mtu"], 16384);
  EXPECT_EQ(j["chpids"][1]["overflow"], "drop");
  EXPECT_EQ(RunTool(Cmd("hsictl", {"undefine-chpid", "F1"})).code, 0);
}

TEST(ToolsPolicyTest, AConfiguredSnifferUidMayTapButNotAdminister) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (CAP_SETUID) to run the tools as another uid";
  Hsid d(R"toml(
[hsid]
admin_uids = [0]

[[chpid]]
id = "F0"
subnet = "10.240.0.0/24"
sniffers = [65534]

[[lpar]]
name = "*"
uids = [0]
)toml");
  ASSERT_TRUE(d.Start()) << d.log();
  Result tap = RunTool({NobodyTool("hsi-dump"), "--socket", d.socket(), "--chpid", "F0", "--duration", "0.3", "--json"},
                   absl::Seconds(30), BecomeNobody);
  EXPECT_EQ(tap.code, 0) << Describe(tap);
  EXPECT_THAT(tap.out, HasSubstr("\"summary\""));
  Result nics = RunTool({NobodyTool("hsictl"), "--socket", d.socket(), "nics"}, absl::Seconds(30), BecomeNobody);
  EXPECT_EQ(nics.code, 1) << Describe(nics);
  EXPECT_THAT(nics.err, HasSubstr("not an admin"));
}

TEST(ToolsUsageTest, BadFlagsExitTwoNamingTheFlag) {
  struct Case {
    std::vector<std::string> argv;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"hsictl", "--bogus", "nics"}, "unknown option '--bogus'"},
      {{"hsictl"}, "no command given"},
      {{"hsictl", "frobnicate"}, "unknown command 'frobnicate'"},
      {{"hsictl", "define-chpid", "F1", "--mfs", "20K", "--subnet", "10.1.0.0/24"}, "--mfs: '20K' is not one of 16K"},
      {{"hsictl", "define-chpid", "XYZ", "--mfs", "16K", "--subnet", "10.1.0.0/24"}, "not a hex CHPID"},
      {{"hsictl", "define-chpid", "F1", "--mfs", "16K", "--subnet", "10.1.0.0/24", "--overflow", "maybe"},
       "--overflow: 'maybe' is not one of block, drop"},
      {{"hsictl", "define-chpid", "F1", "--mfs", "16K", "--subnet", "10.1.0.0/24", "--queue", "3000"},
       "--queue"},
      {{"hsictl", "nics", "--mfs", "16K"}, "option --mfs applies to define-chpid only"},
      {{"hsictl", "down", "not-an-address"}, "is not ADDRESS or CHPID:ADDRESS"},
      {{"hsictl", "--socket"}, "option --socket needs a value"},
      {{"hsi-ping", "--bogus"}, "unknown option '--bogus'"},
      {{"hsi-ping", "--pin", "x", "10.240.0.1"}, "--pin: 'x' is not a CPU number"},
      {{"hsi-ping", "--pin", "0,0,0", "--vs-tcp"}, "--pin: give one or two CPUs"},
      {{"hsi-ping", "--pin", "0,0", "10.240.0.1"}, "--pin takes two CPUs only when hsi-ping forks its own responder"},
      {{"hsi-ping", "-s", "abc", "10.240.0.1"}, "-s/--size: 'abc'"},
      {{"hsi-ping", "--wait", "fast", "10.240.0.1"}, "--wait: 'fast' is not one of spin, block, adaptive"},
      {{"hsi-ping", "-c", "0", "10.240.0.1"}, "-c/--count: '0'"},
      {{"hsi-ping", "-i", "-1", "10.240.0.1"}, "-i/--interval: '-1'"},
      {{"hsi-ping", "10.240.0"}, "ADDRESS: '10.240.0' is not an IPv4 address"},
      {{"hsi-ping"}, "give a peer ADDRESS, --responder, or --vs-tcp"},
      {{"hsi-perf", "-P", "0"}, "-P/--parallel: '0'"},
      {{"hsi-perf", "--wait", "nap"}, "--wait: 'nap'"},
      {{"hsi-perf", "--server", "--client", "10.240.0.1"}, "exclude each other"},
      {{"hsi-perf", "-s", "4"}, "-s/--size: '4'"},
      {{"hsi-dump"}, "--chpid ID is required"},
      {{"hsi-dump", "--chpid", "G7"}, "--chpid: 'G7' is not a hex CHPID"},
      {{"hsi-dump", "--chpid", "F0", "-c", "x"}, "-c/--count: 'x'"},
      {{"hsi-dump", "--chpid", "F0", "--host", "nowhere"}, "--host: 'nowhere'"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = c.argv;
    argv[0] = Tool(argv[0]);
    Result r = RunTool(argv, absl::Seconds(20));
    EXPECT_EQ(r.code, 2) << absl::StrJoin(c.argv, " ") << "\n" << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(c.message)) << absl::StrJoin(c.argv, " ");
    EXPECT_THAT(r.err, HasSubstr("--help")) << absl::StrJoin(c.argv, " ");
  }
  for (const char* t : {"hsictl", "hsi-ping", "hsi-perf", "hsi-dump"}) {
    Result h = RunTool({Tool(t), "--help"});
    EXPECT_EQ(h.code, 0) << t;
    EXPECT_THAT(h.out, HasSubstr("Exit status")) << t;
  }
  // hsid unreachable is a runtime failure (1), not a usage error.
  Result r = RunTool({Tool("hsictl"), "--socket", "/nonexistent/hsid.sock", "nics"});
  EXPECT_EQ(r.code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("hsid is not reachable at /nonexistent/hsid.sock"));
}

}  // namespace
}  // namespace hsi
