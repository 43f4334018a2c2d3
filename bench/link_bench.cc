// hsi-link-bench: link setup through hsid (DESIGN section 7: p50 < 100 us),
// beside its floor, a Unix-socket request/reply with an fd passed each way.
//
// Starts its own hsid (the build's bin/hsid, built-in default config) on a
// temp socket and forks LPAR "bench-b", which attaches one NIC on CHPID F0
// and answers hsid's link offers from a blocking Receive, as an idle server
// would. This process is LPAR "bench-a": each iteration attaches a fresh NIC
// (not timed: hsid hands it its spare segments then, which it maps and
// seals), times Nic::Link(b) (one request and its LinkSpareUp when both NICs
// hold a sealed spare; else request, offers, both ends map and seal, peer
// handover), then detaches (not timed); BM_FirstSendTo times the first
// Nic::SendTo to b instead (the set-up inside it, then the frame). Reports
// p50/p90/p99/max per benchmark run as counters, in microseconds.
//
//   build/bin/hsi-link-bench [--benchmark_repetitions=N] [google benchmark flags]
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <optional>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/hsid.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kChpid = 0xF0;

// Sets p50_us, p90_us, p99_us and max_us of `us` (sorted here) as counters.
void Percentiles(benchmark::State& state, std::vector<double>& us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<size_t>(q * (us.size() - 1) + 0.5))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p90_us"] = at(0.90);
  state.counters["p99_us"] = at(0.99);
  state.counters["max_us"] = us.back();
}

// bench-b: one NIC, answering link offers until its parent goes away.
[[noreturn]] void RunPeer(const std::string& socket, int report_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  absl::StatusOr<hsi::Session> s = hsi::Session::Connect({.socket_path = socket, .lpar = "bench-b"});
  std::optional<hsi::Nic> nic;
  if (s.ok()) {
    absl::StatusOr<hsi::Nic> n = s->AttachNic(kChpid);
    if (n.ok()) nic = std::move(*n);
  }
  const uint32_t addr = nic ? nic->address().value() : 0;
  if (::write(report_fd, &addr, sizeof(addr)) != sizeof(addr) || !nic) ::_exit(1);
  ::close(report_fd);
  uint8_t buf[64];
  for (;;) (void)nic->Receive(absl::MakeSpan(buf), hsi::Wait::Block(absl::Now() + absl::Seconds(1)));
}

// Each iteration attaches a fresh NIC of bench-a (not timed) and times
// `first(nic, b)`, the first call that needs the link to bench-b.
template <typename First>
void TimeFirstCalls(benchmark::State& state, First first) {
  hsi::testing::Hsid hsid;
  if (!hsid.Start()) {
    state.SkipWithError(("hsid did not start: " + hsid.log()).c_str());
    return;
  }
  int p[2];
  if (::pipe(p) != 0) {
    state.SkipWithError("pipe");
    return;
  }
  const pid_t peer = ::fork();
  if (peer == 0) {
    ::close(p[0]);
    RunPeer(hsid.socket(), p[1]);
  }
  ::close(p[1]);
  uint32_t b_addr = 0;
  const bool peer_ok = ::read(p[0], &b_addr, sizeof(b_addr)) == sizeof(b_addr) && b_addr != 0;
  ::close(p[0]);
  auto stop_peer = [&] {
    ::kill(peer, SIGKILL);
    ::waitpid(peer, nullptr, 0);
  };
  if (!peer_ok) {
    stop_peer();
    state.SkipWithError("bench-b could not attach a NIC");
    return;
  }
  absl::StatusOr<hsi::Session> a = hsi::Session::Connect({.socket_path = hsid.socket(), .lpar = "bench-a"});
  if (!a.ok()) {
    stop_peer();
    state.SkipWithError(std::string(a.status().message()).c_str());
    return;
  }
  std::vector<double> us;
  us.reserve(4096);
  for (auto _ : state) {
    absl::StatusOr<hsi::Nic> nic = a->AttachNic(kChpid);
    if (!nic.ok()) {
      state.SkipWithError(std::string(nic.status().message()).c_str());
      break;
    }
    const auto t0 = Clock::now();
    const absl::Status s = first(*nic, hsi::Address(b_addr));
    const auto t1 = Clock::now();
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      break;
    }
    const double d = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(d);
    us.push_back(d * 1e6);
  }
  stop_peer();
  Percentiles(state, us);
}

void BM_LinkSetup(benchmark::State& state) {
  TimeFirstCalls(state, [](hsi::Nic& nic, hsi::Address b) { return nic.Link(b).status(); });
  state.SetLabel("Nic::Link; hsid default config, peer blocked in Receive");
}
BENCHMARK(BM_LinkSetup)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(2000);

// What a user pays for the first frame to a new peer: Nic::SendTo of 64 B,
// the link set up inside it.
void BM_FirstSendTo(benchmark::State& state) {
  static const uint8_t kFrame[64] = {};
  TimeFirstCalls(state, [](hsi::Nic& nic, hsi::Address b) {
    return nic.SendTo(b, absl::MakeConstSpan(kFrame), hsi::Wait::Block(absl::Now() + absl::Seconds(5)));
  });
  state.SetLabel("Nic::SendTo 64 B to a peer not linked yet");
}
BENCHMARK(BM_FirstSendTo)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(2000);

// Sends one 64-byte datagram on `sock` with `fd` attached (SCM_RIGHTS).
bool SendWithFd(int sock, int fd) {
  char body[64] = {};
  struct iovec iov = {body, sizeof(body)};
  alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  return ::sendmsg(sock, &mh, MSG_NOSIGNAL) == sizeof(body);
}
// Receives one such datagram (blocking); returns the fd it carried, or -1.
int ReceiveWithFd(int sock) {
  char body[64];
  struct iovec iov = {body, sizeof(body)};
  alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int))];
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  if (::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) <= 0) return -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

// The floor under link set-up: one request and its reply between two
// processes over a Unix SOCK_SEQPACKET socket, an fd passed each way, the
// server asleep in recvmsg between requests (as hsid sleeps in its loop).
// A set-up that is one round trip through hsid cannot beat this.
void BM_FdPassRoundTrip(benchmark::State& state) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    state.SkipWithError("socketpair");
    return;
  }
  const pid_t server = ::fork();
  if (server == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::close(sv[0]);
    for (;;) {
      const int fd = ReceiveWithFd(sv[1]);
      if (fd < 0 || !SendWithFd(sv[1], fd)) ::_exit(0);
      ::close(fd);
    }
  }
  ::close(sv[1]);
  const int memfd = ::memfd_create("hsi-link-bench", MFD_CLOEXEC);
  std::vector<double> us;
  us.reserve(4096);
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const bool sent = SendWithFd(sv[0], memfd);
    const int back = sent ? ReceiveWithFd(sv[0]) : -1;
    const auto t1 = Clock::now();
    if (back < 0) {
      state.SkipWithError("the echo process did not answer");
      break;
    }
    ::close(back);
    const double d = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(d);
    us.push_back(d * 1e6);
  }
  ::close(sv[0]);
  ::close(memfd);
  ::waitpid(server, nullptr, 0);
  Percentiles(state, us);
  state.SetLabel("floor: Unix seqpacket request/reply, an fd each way");
}
BENCHMARK(BM_FdPassRoundTrip)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(2000);

}  // namespace

BENCHMARK_MAIN();
