// hsi-lpar-demo: two LPAR processes exchange frames through a running hsid.
//
// Forks LPAR "demo-a" and LPAR "demo-b"; each connects to hsid on its own,
// attaches a NIC to CHPID F0, and then:
//   1. link setup: demo-a makes --setups links to demo-b through hsid
//      (attach a NIC, Link(), detach) and reports the p50/p99 setup time;
//   2. stream: demo-a sends --frames 64-byte frames to demo-b, which checks
//      order and a checksum; any loss fails the run (exit status 1);
//   3. round trip: --round_trips 64-byte ping-pongs with both sides spinning
//      (then a tenth as many with both sides blocking on the doorbell),
//      zero-copy (the echo is peeked in place and compared after the clock
//      stops) and timed with the TSC (support/hsi/support/tick_clock.h);
// and the same round trip over loopback TCP (TCP_NODELAY) between two
// processes of this run, for comparison.
//
// Exit status: 0 if every frame arrived, 1 if any was lost or a step
// failed, 2 on a bad command line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/support/tick_clock.h"

ABSL_FLAG(std::string, socket, "", "hsid socket (default: $HSI_SOCKET, then the default path)");
ABSL_FLAG(uint64_t, frames, 10'000'000, "frames to stream from demo-a to demo-b");
ABSL_FLAG(int, round_trips, 100'000, "64-byte round trips with both sides spinning");
ABSL_FLAG(int, setups, 200, "link setups through hsid to time");

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kFrame = 64;

// A line-oriented pipe from a child to the parent.
struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int p[2];
    if (::pipe(p) == 0) r = p[0], w = p[1];
  }
  void Write(const std::string& s) const {
    std::string l = s + "\n";
    (void)!::write(w, l.data(), l.size());
  }
  std::string Read() {
    std::string line;
    char c;
    while (::read(r, &c, 1) == 1 && c != '\n') line.push_back(c);
    return line;
  }
};

uint64_t Mix(uint64_t i) { return (i + 1) * 0x9E3779B97F4A7C15ULL; }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

absl::Time In(absl::Duration d) { return absl::Now() + d; }

absl::StatusOr<hsi::Session> Connect(const std::string& socket, const std::string& lpar) {
  hsi::SessionOptions o;
  o.socket_path = socket;
  o.lpar = lpar;
  return hsi::Session::Connect(std::move(o));
}

#define DEMO_CHECK(expr, what)                                                        \
  do {                                                                                \
    auto&& s_ = (expr);                                                               \
    if (!s_.ok()) {                                                                   \
      out.Write(absl::StrCat("FAIL ", what, ": ", hsi_status(s_).ToString()));        \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

absl::Status hsi_status(const absl::Status& s) { return s; }
template <typename T>
absl::Status hsi_status(const absl::StatusOr<T>& s) {
  return s.status();
}

int LparB(const std::string& socket, uint64_t frames, int rtts, const Pipe& out) {
  absl::StatusOr<hsi::Session> s = Connect(socket, "demo-b");
  DEMO_CHECK(s, "demo-b connect");
  absl::StatusOr<hsi::Nic> nic = s->AttachNic(0xF0);
  DEMO_CHECK(nic, "demo-b attach");
  out.Write(nic->address().ToString());
  uint8_t buf[kFrame];
  // 1. Link setups: serve hsid until demo-a's "go" frame arrives.
  absl::StatusOr<hsi::Received> r;
  for (;;) {
    r = nic->Receive(absl::MakeSpan(buf), hsi::Wait::Block(In(absl::Seconds(60))));
    if (r.ok()) break;
    if (r.status().code() != absl::StatusCode::kUnavailable) DEMO_CHECK(r, "demo-b wait for go");
  }
  absl::StatusOr<hsi::Link> l = nic->Link(r->source);
  DEMO_CHECK(l, "demo-b link");
  // 2. Stream.
  uint64_t sum = 0, lost = 0, expect = 0;
  for (uint64_t i = 0; i < frames; ++i) {
    absl::StatusOr<size_t> n = l->Receive(absl::MakeSpan(buf), hsi::Wait::Adaptive(In(absl::Seconds(60))));
    DEMO_CHECK(n, "demo-b stream receive");
    uint64_t seq, m;
    std::memcpy(&seq, buf, 8);
    std::memcpy(&m, buf + 8, 8);
    if (seq != expect || m != Mix(seq)) lost += seq > expect ? seq - expect : 1;
    expect = seq + 1;
    sum += m;
  }
  out.Write(absl::StrCat("got ", frames, " ", sum, " ", lost));
  // 3. Echo: spinning, then blocking; zero-copy, straight from A's ring
  // into ours.
  for (int i = 0; i < rtts + rtts / 10; ++i) {
    const hsi::Wait w = i < rtts ? hsi::Wait::Spin(In(absl::Seconds(60))) : hsi::Wait::Block(In(absl::Seconds(60)));
    absl::StatusOr<absl::Span<const uint8_t>> ping = l->Peek(w);
    DEMO_CHECK(ping, "demo-b echo receive");
    DEMO_CHECK(l->Send(*ping, w), "demo-b echo send");
    l->Release();
  }
  out.Write("done");
  // Serve hsid until demo-a is done with the link (it tells us by exiting).
  for (int i = 0; i < 5000; ++i) {
    absl::StatusOr<size_t> n = l->Receive(absl::MakeSpan(buf), hsi::Wait::Block(In(absl::Seconds(1))));
    if (!n.ok() && n.status().code() == absl::StatusCode::kUnavailable) break;
  }
  return 0;
}

int LparA(const std::string& socket, hsi::Address b, uint64_t frames, int rtts, int setups, const Pipe& out) {
  absl::StatusOr<hsi::Session> s = Connect(socket, "demo-a");
  DEMO_CHECK(s, "demo-a connect");
  // 1. Link setups through hsid, each on a fresh NIC.
  std::vector<double> setup_us;
  for (int i = 0; i < setups; ++i) {
    absl::StatusOr<hsi::Nic> extra = s->AttachNic(0xF0);
    DEMO_CHECK(extra, "demo-a attach");
    const auto t0 = Clock::now();
    absl::StatusOr<hsi::Link> l = extra->Link(b);
    const auto t1 = Clock::now();
    DEMO_CHECK(l, "demo-a link setup");
    setup_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  absl::StatusOr<hsi::Nic> nic = s->AttachNic(0xF0);
  DEMO_CHECK(nic, "demo-a attach");
  absl::StatusOr<hsi::Link> l = nic->Link(b);
  DEMO_CHECK(l, "demo-a link");
  uint8_t frame[kFrame] = {};
  DEMO_CHECK(l->Send(frame, hsi::Wait::Block(In(absl::Seconds(10)))), "demo-a go");
  out.Write(absl::StrFormat("setup %d %.1f %.1f", setups, Percentile(setup_us, 0.5), Percentile(setup_us, 0.99)));
  // 2. Stream.
  uint64_t sum = 0;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < frames; ++i) {
    const uint64_t m = Mix(i);
    std::memcpy(frame, &i, 8);
    std::memcpy(frame + 8, &m, 8);
    DEMO_CHECK(l->Send(frame, hsi::Wait::Adaptive(In(absl::Seconds(60)))), "demo-a stream send");
    sum += m;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  out.Write(absl::StrFormat("sent %d %d %.3f", frames, sum, secs));
  // 3. Round trips, timed with the TSC (clock_gettime costs much of an hsi
  // round trip here) until the echo is visible in place (zero-copy); the
  // whole echo is compared after the clock stops.
  std::vector<double> spin_us, block_us;
  const hsi::support::TickClock clock = hsi::support::TickClock::Calibrate(absl::Milliseconds(20));
  for (int i = 0; i < rtts + rtts / 10; ++i) {
    const bool spin = i < rtts;
    const hsi::Wait w = spin ? hsi::Wait::Spin(In(absl::Seconds(60))) : hsi::Wait::Block(In(absl::Seconds(60)));
    std::memcpy(frame, &i, sizeof(i));
    const uint64_t a = hsi::support::TickClock::Now();
    DEMO_CHECK(l->Send(frame, w), "demo-a ping");
    absl::StatusOr<absl::Span<const uint8_t>> echo = l->Peek(w);
    const uint64_t z = hsi::support::TickClock::Now();
    DEMO_CHECK(echo, "demo-a pong");
    const bool same = echo->size() == kFrame && std::memcmp(echo->data(), frame, kFrame) == 0;
    l->Release();
    if (!same) {
      out.Write("FAIL demo-a: echo differs");
      return 1;
    }
    (spin ? spin_us : block_us).push_back(clock.NsBetween(a, z) / 1e3);
  }
  out.Write(absl::StrFormat("rtt %.3f %.3f %.3f %.3f", Percentile(spin_us, 0.5), Percentile(spin_us, 0.99),
                            Percentile(block_us, 0.5), Percentile(block_us, 0.99)));
  return 0;
}

// Loopback TCP round trips of 64 bytes between this process and a child.
bool TcpRoundTrip(int n, double* p50, double* p99) {
  int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(ls, 1) < 0 ||
      ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len) < 0) {
    return false;
  }
  const int one = 1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int c = ::accept(ls, nullptr, nullptr);
    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char b[kFrame];
    for (;;) {
      size_t got = 0;
      while (got < kFrame) {
        ssize_t r = ::read(c, b + got, kFrame - got);
        if (r <= 0) ::_exit(0);
        got += static_cast<size_t>(r);
      }
      if (::write(c, b, kFrame) != static_cast<ssize_t>(kFrame)) ::_exit(0);
    }
  }
  ::close(ls);
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool ok = ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::vector<double> us;
  char b[kFrame] = {};
  const hsi::support::TickClock clock = hsi::support::TickClock::Calibrate(absl::Milliseconds(20));
  for (int i = 0; ok && i < n; ++i) {
    const uint64_t t0 = hsi::support::TickClock::Now();
    ok = ::write(c, b, kFrame) == static_cast<ssize_t>(kFrame);
    size_t got = 0;
    while (ok && got < kFrame) {
      ssize_t r = ::read(c, b + got, kFrame - got);
      ok = r > 0;
      got += ok ? static_cast<size_t>(r) : 0;
    }
    const uint64_t t1 = hsi::support::TickClock::Now();
    us.push_back(clock.NsBetween(t0, t1) / 1e3);
  }
  ::close(c);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  *p50 = Percentile(us, 0.5);
  *p99 = Percentile(us, 0.99);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hsi-lpar-demo: two LPAR processes exchange frames through a running hsid and print the round trip "
      "beside loopback TCP.\nUsage: hsi-lpar-demo [--socket PATH] [--frames N] [--round_trips N] [--setups N]");
  // --help asks for this text: stdout, exit 0 (absl's --help exits 1).
  for (int i = 1; i < argc && absl::string_view(argv[i]) != "--"; ++i) {
    if (absl::string_view(argv[i]) == "--help" || absl::string_view(argv[i]) == "-h") {
      absl::flags_internal::SetProgramInvocationName("hsi-lpar-demo");
      absl::flags_internal::FlagsHelp(std::cout, "lpar_demo", absl::flags_internal::HelpFormat::kHumanReadable,
                                      absl::ProgramUsageMessage());
      return 0;
    }
  }
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "hsi-lpar-demo: unexpected argument '%s' (try --help)\n", rest[1]);
    return 2;
  }
  absl::StatusOr<std::string> socket = hsi::ResolveSocketPath(absl::GetFlag(FLAGS_socket));
  if (!socket.ok()) {
    std::fprintf(stderr, "hsi-lpar-demo: %s\n", std::string(socket.status().message()).c_str());
    return 2;
  }
  const uint64_t frames = absl::GetFlag(FLAGS_frames);
  const int rtts = std::max(1, absl::GetFlag(FLAGS_round_trips));
  const int setups = std::max(0, absl::GetFlag(FLAGS_setups));
  std::printf("hsi-lpar-demo: LPARs demo-a and demo-b on CHPID F0 through hsid at %s\n", socket->c_str());
  std::fflush(stdout);

  Pipe pb, pa;
  pid_t b = ::fork();
  if (b == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::_exit(LparB(*socket, frames, rtts, pb));
  }
  const std::string b_text = pb.Read();
  absl::StatusOr<hsi::Address> b_addr = hsi::Address::Parse(b_text);
  if (!b_addr.ok()) {
    std::fprintf(stderr, "hsi-lpar-demo: %s\n", b_text.c_str());
    ::kill(b, SIGKILL);
    ::waitpid(b, nullptr, 0);
    return 1;
  }
  pid_t a = ::fork();
  if (a == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::_exit(LparA(*socket, *b_addr, frames, rtts, setups, pa));
  }
  int failures = 0;
  auto fail = [&](const std::string& line) {
    std::fprintf(stderr, "hsi-lpar-demo: %s\n", line.c_str());
    ++failures;
  };
  // demo-a: setup, sent, rtt; demo-b: got, done.
  std::string setup = pa.Read(), sent = pa.Read(), got = pb.Read(), rtt = pa.Read(), done = pb.Read();
  int sa = 0, sb = 0;
  ::waitpid(a, &sa, 0);
  ::waitpid(b, &sb, 0);
  std::vector<std::string> f;
  f = absl::StrSplit(setup, ' ');
  if (f.size() == 4 && f[0] == "setup") {
    std::printf("  link setup through hsid (%s links):     p50 %s us, p99 %s us\n", f[1].c_str(), f[2].c_str(),
                f[3].c_str());
  } else {
    fail(setup);
  }
  std::vector<std::string> fs = absl::StrSplit(sent, ' '), fg = absl::StrSplit(got, ' ');
  if (fs.size() == 4 && fs[0] == "sent" && fg.size() == 4 && fg[0] == "got") {
    double secs = 0;
    (void)absl::SimpleAtod(fs[3], &secs);
    const bool same = fs[1] == fg[1] && fs[2] == fg[2] && fg[3] == "0";
    std::printf("  stream of %s x %zu-byte frames a->b:  %s received, %s lost, checksum %s, %.1f M frames/s\n",
                fs[1].c_str(), kFrame, fg[1].c_str(), fg[3].c_str(), fs[2] == fg[2] ? "ok" : "MISMATCH",
                static_cast<double>(frames) / secs / 1e6);
    if (!same) fail("frames were lost or corrupted");
  } else {
    fail(sent.rfind("sent", 0) == 0 ? got : sent);
  }
  double tcp50 = 0, tcp99 = 0;
  const bool tcp_ok = TcpRoundTrip(std::min(rtts, 50'000), &tcp50, &tcp99);
  std::vector<std::string> fr = absl::StrSplit(rtt, ' ');
  if (fr.size() == 5 && fr[0] == "rtt") {
    double spin50 = 0, block50 = 0;
    (void)absl::SimpleAtod(fr[1], &spin50);
    (void)absl::SimpleAtod(fr[3], &block50);
    std::printf("  round trip, 64 B, hsi link, spin:      p50 %8.3f us  p99 %8.3f us  (%d round trips)\n", spin50,
                std::stod(fr[2]), rtts);
    std::printf("  round trip, 64 B, hsi link, block:     p50 %8.3f us  p99 %8.3f us  (%d round trips)\n", block50,
                std::stod(fr[4]), rtts / 10);
    if (tcp_ok) {
      std::printf("  round trip, 64 B, loopback TCP:        p50 %8.3f us  p99 %8.3f us  (%d round trips)\n", tcp50,
                  tcp99, std::min(rtts, 50'000));
      std::printf("  hsi spin round trip is %.0fx lower than loopback TCP (block: %.1fx)\n", tcp50 / spin50,
                  tcp50 / block50);
    }
  } else {
    fail(rtt);
  }
  if (done != "done") fail(done);
  if (!WIFEXITED(sa) || WEXITSTATUS(sa) != 0 || !WIFEXITED(sb) || WEXITSTATUS(sb) != 0) fail("an LPAR process failed");
  std::printf("%s\n", failures == 0 ? "hsi-lpar-demo: OK, no frame lost" : "hsi-lpar-demo: FAILED");
  return failures == 0 ? 0 : 1;
}
