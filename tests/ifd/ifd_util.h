// Helpers of the hsi-ifd end-to-end tests (tests/ifd/*_test.cc): shell
// commands, network namespaces and background processes that are always
// removed and reaped, polling, forked children inside a namespace, a
// checked byte pattern, a native-API peer and an IPv4/UDP packet for it to
// send, and the two-namespace fixture IfdTest. Each test
// binary defines HSI_IFD_PATH; hsid comes from hsi::testing.
#ifndef HSI_TESTS_IFD_IFD_UTIL_H_
#define HSI_TESTS_IFD_IFD_UTIL_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/line_pipe.h"
#include "hsi/testing/program.h"

namespace hsi::ifd_testing {

using hsi::testing::Hsid;
using Result = hsi::testing::ShellResult;
using hsi::testing::Eventually;
using hsi::testing::Have;
using hsi::testing::Shell;
// A program run in the background with stdout and stderr to a log file;
// the destructor kills (SIGKILL) and reaps it.
using Process = hsi::testing::Program;

// Why this machine cannot run the tests, or "".
inline std::string MissingPrerequisite() {
  if (::geteuid() != 0) return "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns into a namespace)";
  const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return absl::StrCat("cannot open /dev/net/tun: ", std::strerror(errno));
  ::close(fd);
  for (const char* p : {"ip", "ping"}) {
    if (!Have(p)) return absl::StrCat("'", p, "' is not installed (packaging/setup.sh installs it)");
  }
  return "";
}

// A network namespace with a unique name; deleted by the destructor.
class Netns {
 public:
  Netns() {
    static std::atomic<int> n{0};
    name_ = absl::StrCat("hsiifd-", ::getpid(), "-", n++);
    made_ = Shell("ip netns add " + name_).ok();
    if (made_) Shell("ip -n " + name_ + " link set lo up");
  }
  ~Netns() {
    if (made_ && !Shell("ip netns del " + name_).ok()) std::fprintf(stderr, "could not delete netns %s\n", name_.c_str());
  }
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  bool made() const { return made_; }
  const std::string& name() const { return name_; }
  // `cmd` run inside the namespace.
  Result Exec(const std::string& cmd, bool with_stderr = true) const {
    return Shell("ip netns exec " + name_ + " " + cmd, with_stderr);
  }

 private:
  std::string name_;
  bool made_ = false;
};

// hsi0's receive byte counter in `ns` (what hsi-ifd wrote to the device
// from the ring), 0 if it cannot be read.
inline uint64_t Hsi0RxBytes(const Netns& ns) {
  const Result r = ns.Exec("cat /sys/class/net/hsi0/statistics/rx_bytes");
  return r.ok() ? std::strtoull(r.out.c_str(), nullptr, 10) : 0;
}

// iperf3 counts what each side saw until its end-of-test message: the
// sender what it wrote into its socket, the receiver what it read. What was
// still in the two socket buffers then is in the sender's count only, so a
// stream's receiver may count at most its send buffer plus its receive
// buffer less (the kernel's tcp_wmem and tcp_rmem maximums), never more.
inline uint64_t IperfInFlightBound() {  // per stream
  auto max_of = [](const char* path) -> uint64_t {
    const Result r = Shell(std::string("awk '{print $3}' ") + path, false);
    uint64_t v = 0;
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(r.out), &v) ? v : (uint64_t{8} << 20);
  };
  return max_of("/proc/sys/net/ipv4/tcp_wmem") + max_of("/proc/sys/net/ipv4/tcp_rmem");
}

inline constexpr char kA[] = "10.240.0.1";
inline constexpr char kB[] = "10.240.0.2";

// hsid's config with one CHPID F0 of MFS `mfs` (MTU = MFS - 8K) on
// 10.240.0.0/24, open to the test's uid: the built-in default but for the
// frame size (and a ring that holds 64 frames of the largest size).
inline std::string ConfigWithMfs(const std::string& mfs, const std::string& queue_size) {
  return absl::StrCat("[hsid]\nadmin_uids = [\"self\"]\n\n[[chpid]]\nid = \"F0\"\nmfs = \"", mfs,
                      "\"\nsubnet = \"10.240.0.0/24\"\nqueue_size = \"", queue_size,
                      "\"\n\n[[lpar]]\nname = \"*\"\nuids = [\"self\"]\n");
}

class IfdTest : public ::testing::Test {
 protected:
  // `hsid_config`: TOML for the private hsid; empty = its built-in default
  // (CHPID F0, MFS 16K: MTU 8K).
  explicit IfdTest(std::string hsid_config = "") : hsid_(std::move(hsid_config)) {}

  void SetUp() override {
    const std::string missing = MissingPrerequisite();
    if (!missing.empty()) GTEST_SKIP() << missing;
    ASSERT_TRUE(hsid_.Start()) << hsid_.log();
    a_ = std::make_unique<Netns>();
    b_ = std::make_unique<Netns>();
    ASSERT_TRUE(a_->made() && b_->made()) << "ip netns add failed";
  }

  std::unique_ptr<Process> StartIfd(const Netns& ns, const std::string& lpar, const std::string& address,
                                    std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {HSI_IFD_PATH, "--lpar", lpar,   "--chpid",  "F0",  "--netns",
                                     ns.name(),    "--socket", hsid_.socket(), "--address", address};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(argv, absl::StrCat(hsid_.dir(), "/ifd-", lpar, ".log"));
  }

  // Whether hsi0 in `ns` is up with `address`.
  static bool Up(const Netns& ns, const std::string& address) {
    const Result r = Shell("ip -n " + ns.name() + " -4 addr show dev hsi0");
    return r.ok() && absl::StrContains(r.out, "inet " + address + "/24") && absl::StrContains(r.out, ",UP");
  }
  static bool Exists(const Netns& ns) { return Shell("ip -n " + ns.name() + " link show dev hsi0").ok(); }

  // Both interfaces up (hsi-ifd A in a_, B in b_).
  void StartBoth(std::vector<std::string> extra = {}) {
    ifd_a_ = StartIfd(*a_, "A", kA, extra);
    ifd_b_ = StartIfd(*b_, "B", kB, extra);
    ASSERT_TRUE(Eventually([&] { return Up(*a_, kA) || !ifd_a_->running(); }) && Up(*a_, kA)) << ifd_a_->log();
    ASSERT_TRUE(Eventually([&] { return Up(*b_, kB) || !ifd_b_->running(); }) && Up(*b_, kB)) << ifd_b_->log();
  }

  // Declaration order = reverse destruction order: the hsi-ifd processes
  // die first, then the namespaces go, then hsid.
  Hsid hsid_;
  std::unique_ptr<Netns> a_, b_;
  std::unique_ptr<Process> ifd_a_, ifd_b_;
};

// A native-API peer: this process, through libhsi, as LPAR `lpar` on
// CHPID F0 of the hsid at `socket`. The status says why not.
struct NativePeer {
  hsi::Session session;
  hsi::Nic nic;
};
inline absl::StatusOr<NativePeer> AttachNativePeer(const std::string& socket, const std::string& lpar) {
  hsi::SessionOptions so;
  so.socket_path = socket;
  so.lpar = lpar;
  absl::StatusOr<hsi::Session> session = hsi::Session::Connect(so);
  if (!session.ok()) return session.status();
  absl::StatusOr<hsi::Nic> nic = session->AttachNic(0xF0);
  if (!nic.ok()) return nic.status();
  return NativePeer{std::move(*session), std::move(*nic)};
}

// A well-formed IPv4/UDP packet (header checksum right, UDP checksum 0:
// none) from `src` port 12345 to `dst` port 9 with `payload` bytes of 0x5a.
inline std::vector<uint8_t> UdpPacket(hsi::Address src, hsi::Address dst, size_t payload) {
  std::vector<uint8_t> p(28 + payload, 0x5a);
  const size_t total = p.size();
  const uint8_t header[28] = {0x45, 0, static_cast<uint8_t>(total >> 8), static_cast<uint8_t>(total), 0, 1, 0x40, 0,
                              64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x30, 0x39, 0, 9,
                              static_cast<uint8_t>((total - 20) >> 8), static_cast<uint8_t>(total - 20), 0, 0};
  std::memcpy(p.data(), header, sizeof(header));
  for (int i = 0; i < 4; ++i) {
    p[12 + i] = static_cast<uint8_t>(src.value() >> (24 - 8 * i));
    p[16 + i] = static_cast<uint8_t>(dst.value() >> (24 - 8 * i));
  }
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += uint32_t{p[i]} << 8 | p[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  p[10] = static_cast<uint8_t>(~sum >> 8);
  p[11] = static_cast<uint8_t>(~sum);
  return p;
}

// The bytes of a deterministic pattern, and their FNV-1a hash.
inline uint8_t PatternByte(uint64_t i) { return static_cast<uint8_t>((i * 2654435761u) >> 13); }
inline uint64_t Fnv(uint64_t h, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
inline constexpr uint64_t kFnvBasis = 14695981039346656037ull;

// A forked child in network namespace `ns` running `body`; _exit(body()).
inline pid_t ForkInNetns(const std::string& ns, const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int fd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(126);
    ::_exit(body());
  }
  return pid;
}
inline int Reap(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (absl::Now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    absl::SleepFor(absl::Milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -2;
}



// One TCP connection from `client_ns` to `server_ns`'s `addr`:`port`
// carrying `bytes` (a multiple of 64 KiB) of the pattern: the server
// reports the peer address it saw, then the count and FNV hash of what it
// read to EOF. `error` is empty if every byte arrived in order.
struct TransferResult {
  std::string peer;   // the client's address as the server saw it
  std::string error;  // "" on success
};
inline TransferResult CheckedTcpTransfer(const std::string& server_ns, const std::string& client_ns,
                                         const std::string& addr, int port, uint64_t bytes) {
  TransferResult result;
  hsi::testing::LinePipe report;
  const pid_t server = ForkInNetns(server_ns, [&] {
    const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, addr.c_str(), &a.sin_addr);
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(l, 1) != 0) return 1;
    report.Write("listening");
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    const int c = ::accept(l, reinterpret_cast<sockaddr*>(&peer), &len);
    if (c < 0) return 2;
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof(text));
    report.Write(text);
    uint64_t count = 0, hash = kFnvBasis;
    std::vector<uint8_t> buf(65536);
    for (;;) {
      const ssize_t n = ::read(c, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      hash = Fnv(hash, buf.data(), static_cast<size_t>(n));
      count += static_cast<uint64_t>(n);
    }
    report.Write(absl::StrCat(count, " ", hash));
    return 0;
  });
  if (const std::string l = report.Read(absl::Seconds(10)); l != "listening") {
    Reap(server, absl::ZeroDuration());
    result.error = absl::StrCat("server did not listen: '", l, "'");
    return result;
  }
  const pid_t client = ForkInNetns(client_ns, [&] {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, addr.c_str(), &a.sin_addr);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return 3;
    std::vector<uint8_t> buf(65536);
    for (uint64_t off = 0; off < bytes; off += buf.size()) {
      for (size_t i = 0; i < buf.size(); ++i) buf[i] = PatternByte(off + i);
      for (size_t done = 0; done < buf.size();) {
        const ssize_t w = ::write(s, buf.data() + done, buf.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 4;
        done += static_cast<size_t>(w);
      }
    }
    ::close(s);
    return 0;
  });
  result.peer = report.Read(absl::Seconds(20));
  if (const int c = Reap(client, absl::Seconds(60)); c != 0) {
    result.error += absl::StrCat("client exited ", c, " (3 connect, 4 write failed); ");
  }
  const std::string got = report.Read(absl::Seconds(60));
  if (const int s = Reap(server, absl::Seconds(10)); s != 0) result.error += absl::StrCat("server exited ", s, "; ");
  std::vector<uint8_t> all(65536);
  uint64_t hash = kFnvBasis;
  for (uint64_t off = 0; off < bytes; off += all.size()) {
    for (size_t i = 0; i < all.size(); ++i) all[i] = PatternByte(off + i);
    hash = Fnv(hash, all.data(), all.size());
  }
  if (got != absl::StrCat(bytes, " ", hash)) {
    result.error += absl::StrCat("server saw '", got, "', expected '", bytes, " ", hash, "'");
  }
  return result;
}

}  // namespace hsi::ifd_testing

#endif  // HSI_TESTS_IFD_IFD_UTIL_H_
