// hsi-ping: round trips to a peer NIC, like ping; optionally side by side
// with loopback TCP. See packaging/man/hsi-ping.1; --help says the same.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli.h"
#include "hsi/fd.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/support/cpu.h"
#include "hsi/support/tick_clock.h"
#include "nlohmann/json.hpp"

namespace {

using hsi::tools::Args;
using hsi::tools::kExitFailure;
using hsi::tools::kExitOk;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr char kTool[] = "hsi-ping";
// First word of the control frame that switches a responder to TCP for a
// batch: {kTcpPhase, probes}. Probe sequence numbers never reach it.
constexpr uint64_t kTcpPhase = 0xFFFFFFFFFFFFFF01ULL;

constexpr char kHelp[] = R"(Usage: hsi-ping [OPTIONS] ADDRESS
       hsi-ping --responder [OPTIONS]
       hsi-ping --vs-tcp [OPTIONS] [ADDRESS --tcp-port PORT]

Sends probes to the NIC with ADDRESS on the same CHPID and times each round
trip, like ping. The peer answers with `hsi-ping --responder`. The process
attaches as an LPAR of its own (hsid's built-in configuration lets the uid
that started hsid claim any LPAR name on CHPID F0).

A round trip is timed (with the TSC on x86, calibrated against the system
clock at start; clock_gettime costs too much of an hsi round trip) from
just before the probe is sent until its echo, with the probe's sequence
number, is visible in the link's ring. The echo is read in place
(zero-copy) and compared with the probe after the clock has stopped, as
ping compares its data. An echo that differs is reported and not counted
as answered.

With --vs-tcp the same probes also go over loopback TCP (TCP_NODELAY, plain
blocking sockets), interleaved with the hsi probes in alternating batches of
--batch probes, and both distributions and the ratio TCP/hsi at p50 are
printed. Without ADDRESS, --vs-tcp forks its own responder that answers
both; with ADDRESS it needs the TCP port of a responder started with
--responder --tcp-port PORT (a responder serves one such client at a time).
--vs-tcp sends back to back (-i 0) and defaults to -c 100000.

Options:
  -c, --count COUNT      stop after COUNT probes (default: until interrupted;
                         100000 with --vs-tcp)
  -s, --size SIZE        probe payload bytes, 8..MTU (default 64)
  -i, --interval SECS    pause between probes, 0 for flood (default 1; 0 with --vs-tcp)
  -W, --timeout SECS     how long to wait for each reply (default 1)
  --wait MODE            spin, block or adaptive (default adaptive): how both
                         sides wait for a frame
  -q, --quiet            no per-probe lines, only the summary
  --json                 print the summary as one JSON document
  --responder            answer probes (and TCP probes with --tcp-port) until interrupted
  --vs-tcp               compare with loopback TCP in the same run (see above)
  --tcp-port PORT        responder: also answer TCP on 127.0.0.1:PORT (0: any free port,
                         printed); client: the responder's TCP port
  --batch N              --vs-tcp: probes per alternating batch (default 10000)
  --pin CPU[,CPU]        run on CPU; with a forked responder, the second CPU is
                         the responder's (default: where the scheduler puts them)
  --chpid ID             the CHPID to attach to, hex (default F0)
  --lpar NAME            the LPAR name to claim (default hsi-ping-PID)
  --socket PATH          hsid's control socket (default: $HSI_SOCKET, else the
                         default path; see hsid(8))
  -h, --help             this text

Per probe (unless -q, -i 0 or --vs-tcp): "64 bytes from 10.240.0.2: seq=1
time=0.412 us". Summary: probes sent and answered, loss, wrong echoes (if
any), and the round trip min/avg/max/mdev and p50/p99/p99.9.

Exit status: 0 if every probe was answered, 1 if any was lost or wrong or
on a runtime error, 2 on a usage error.
)";

const std::vector<hsi::tools::Option> kOptions = {
    {{"--count", "-c"}, "COUNT"},   {{"--size", "-s"}, "SIZE"},       {{"--interval", "-i"}, "SECS"},
    {{"--timeout", "-W"}, "SECS"},  {{"--wait"}, "MODE"},             {{"--quiet", "-q"}},
    {{"--json"}},                   {{"--responder"}},                {{"--vs-tcp"}},
    {{"--tcp-port"}, "PORT"},       {{"--batch"}, "N"},               {{"--chpid"}, "ID"},
    {{"--lpar"}, "NAME"},           {{"--socket"}, "PATH"},           {{"--help", "-h"}},
    {{"--pin"}, "CPUS"},
};

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

void InstallSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking call returns EINTR
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

struct Options {
  std::string socket;
  uint32_t chpid = 0xF0;
  std::string lpar;
  uint64_t count = 0;  // 0: unlimited
  size_t size = 64;
  double interval = 1;
  double timeout = 1;
  hsi::WaitMode wait = hsi::WaitMode::kAdaptive;
  bool quiet = false, json = false, responder = false, vs_tcp = false;
  std::optional<uint16_t> tcp_port;
  uint64_t batch = 10000;
  std::optional<hsi::Address> peer;
  std::vector<int> pin;  // this process's CPU, then the forked responder's
};

hsi::Wait MakeWait(hsi::WaitMode m, absl::Time deadline) {
  hsi::Wait w;
  w.mode = m;
  w.deadline = deadline;
  return w;
}

void PutU64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t GetU64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// ---------------------------------------------------------------- TCP

absl::Status SetNoDelay(int fd) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
    return absl::InternalError(absl::StrCat("setsockopt TCP_NODELAY: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<hsi::UniqueFd> TcpListen(uint16_t port, uint16_t* bound) {
  hsi::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(fd.get(), 16) < 0) {
    return absl::UnavailableError(absl::StrCat("TCP listen on 127.0.0.1:", port, ": ", std::strerror(errno)));
  }
  socklen_t len = sizeof(a);
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  *bound = ntohs(a.sin_port);
  return fd;
}

// Connects to 127.0.0.1:port with TCP_NODELAY; a read or write that waits
// longer than `timeout` fails with EAGAIN. `*local_port` is our end's port,
// which the responder uses to tell our connection from others.
absl::StatusOr<hsi::UniqueFd> TcpConnect(uint16_t port, absl::Duration timeout, uint16_t* local_port) {
  hsi::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  const timeval tv = absl::ToTimeval(timeout);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0) {
    return absl::UnavailableError(absl::StrCat("TCP connect to 127.0.0.1:", port, ": ", std::strerror(errno)));
  }
  if (absl::Status s = SetNoDelay(fd.get()); !s.ok()) return s;
  socklen_t len = sizeof(a);
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  *local_port = ntohs(a.sin_port);
  return fd;
}

// Reads or writes exactly `n` bytes (blocking). False on EOF, error or stop.
bool ReadFull(int fd, uint8_t* p, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::recv(fd, p + done, n - done, 0);
    if (r > 0) {
      done += static_cast<size_t>(r);
    } else if (r < 0 && errno == EINTR && !g_stop) {
      continue;
    } else {
      if (r == 0) errno = 0;  // EOF
      return false;
    }
  }
  return true;
}
bool WriteFull(int fd, const uint8_t* p, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::send(fd, p + done, n - done, MSG_NOSIGNAL);
    if (r > 0) {
      done += static_cast<size_t>(r);
    } else if (r < 0 && errno == EINTR && !g_stop) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

// The TCP connection of the client whose local port is `client_port`: the
// current one if it is that client's, else the next accepted one that is
// (connections of other, earlier clients are closed: one --vs-tcp client
// is served at a time).
absl::Status AcceptTcpClient(int listen_fd, uint16_t client_port, hsi::UniqueFd* conn) {
  auto peer_port = [](int fd) -> int {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) < 0) return -1;
    return ntohs(a.sin_port);
  };
  if (conn->valid() && peer_port(conn->get()) == client_port) return absl::OkStatus();
  conn->Reset();
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  for (;;) {
    pollfd p = {listen_fd, POLLIN, 0};
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0 || ::poll(&p, 1, ms) <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("the TCP client (port ", client_port, ") did not connect within 5s"));
    }
    hsi::UniqueFd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return absl::InternalError(absl::StrCat("TCP accept: ", std::strerror(errno)));
    }
    if (peer_port(fd.get()) != client_port) continue;  // not the client asking: close it
    if (absl::Status s = SetNoDelay(fd.get()); !s.ok()) return s;
    // A client that stalls mid-batch must not hold the responder: a read or
    // write that waits 5 s drops the connection, and hsi probes are served on.
    const timeval tv = absl::ToTimeval(absl::Seconds(5));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    *conn = std::move(fd);
    return absl::OkStatus();
  }
}

// ---------------------------------------------------------------- responder

absl::StatusOr<hsi::Session> Connect(const Options& o, const std::string& lpar) {
  hsi::SessionOptions so;
  so.socket_path = o.socket;
  so.lpar = lpar;
  return hsi::Session::Connect(std::move(so));
}

// Answers hsi probes (echo to the sender) and, after a kTcpPhase frame, that
// many TCP probes. `ready` is told "ADDRESS PORT" once serving.
int Respond(const Options& o, const std::string& lpar, hsi::tools::LinePipe* ready) {
  if (!o.pin.empty()) {
    if (absl::Status s = hsi::support::PinToCpu(o.pin[0]); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  // Listen first: once the NIC is attached (and a client can see it), TCP
  // clients can connect too.
  hsi::UniqueFd listen_fd, conn;
  uint16_t port = 0;
  if (o.tcp_port) {
    absl::StatusOr<hsi::UniqueFd> l = TcpListen(*o.tcp_port, &port);
    if (!l.ok()) return hsi::tools::Fail(kTool, l.status().message(), kExitFailure);
    listen_fd = std::move(*l);
  }
  absl::StatusOr<hsi::Session> session = Connect(o, lpar);
  if (!session.ok()) return hsi::tools::Fail(kTool, session.status().message(), kExitFailure);
  absl::StatusOr<hsi::Nic> nic = session->AttachNic(o.chpid);
  if (!nic.ok()) return hsi::tools::Fail(kTool, nic.status().message(), kExitFailure);
  if (ready != nullptr) {
    ready->Write(absl::StrCat(nic->address().ToString(), " ", port));
  } else {
    std::printf("hsi-ping responder: LPAR %s, NIC %s on CHPID %s", lpar.c_str(), nic->address().ToString().c_str(),
                hsi::tools::ChpidText(o.chpid).c_str());
    if (o.tcp_port) std::printf(", TCP 127.0.0.1:%u", port);
    std::printf("\n");
    std::fflush(stdout);
  }
  std::map<hsi::Address, hsi::Link> links;
  uint64_t answered = 0;
  // Reading the clock costs ~90 ns on this VM, as much as a third of a probe's
  // round trip, so the responder does not read it per probe: `until` is
  // renewed only when a wait reaches it (every 100 ms while idle, which is
  // also how often g_stop is looked at).
  absl::Time until = absl::Now() + absl::Milliseconds(100);
  while (!g_stop) {
    // Zero-copy: the probe is echoed straight from the sender's ring into
    // ours, one copy, and released after.
    absl::StatusOr<hsi::FrameView> v = nic->Peek(MakeWait(o.wait, until));
    if (!v.ok()) {
      if (v.status().code() == absl::StatusCode::kDeadlineExceeded) {
        until = absl::Now() + absl::Milliseconds(100);
        continue;
      }
      if (v.status().code() == absl::StatusCode::kUnavailable) {
        // A peer went away (reported once per link), or an admin set this
        // NIC down (reported until it is up again): forget the links, relink
        // on demand, and do not spin on a NIC that is down.
        links.clear();
        absl::SleepFor(absl::Milliseconds(1));
        continue;
      }
      return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
    }
    auto it = links.find(v->source);
    if (it == links.end()) {
      absl::StatusOr<hsi::Link> l = nic->Link(v->source);
      if (!l.ok()) {
        nic->Release();
        continue;
      }
      it = links.emplace(v->source, std::move(*l)).first;
    }
    const absl::Span<const uint8_t> frame = v->payload;
    if (frame.size() >= 24 && GetU64(frame.data()) == kTcpPhase) {
      const uint64_t n = GetU64(frame.data() + 8);
      const uint64_t size = GetU64(frame.data() + 16);
      const uint64_t client_port = frame.size() >= 32 ? GetU64(frame.data() + 24) : 0;
      std::vector<uint8_t> ack(frame.begin(), frame.end());
      nic->Release();
      if (!listen_fd.valid() || client_port == 0 || client_port > 65535) continue;  // not for us: ignore
      if (absl::Status s = AcceptTcpClient(listen_fd.get(), static_cast<uint16_t>(client_port), &conn); !s.ok()) {
        // The client gives up waiting for the ack and reports it; serve on.
        std::fprintf(stderr, "%s: %s\n", kTool, std::string(s.message()).c_str());
        continue;
      }
      (void)it->second.Send(ack, MakeWait(o.wait, absl::Now() + absl::Seconds(1)));
      if (size == 0 || size > (1u << 20)) continue;  // not a probe size of ours
      std::vector<uint8_t> tb(size);
      for (uint64_t i = 0; i < n && !g_stop; ++i) {
        if (!ReadFull(conn.get(), tb.data(), size) || !WriteFull(conn.get(), tb.data(), size)) {
          conn.Reset();
          break;
        }
      }
      continue;
    }
    absl::Status s = it->second.Send(frame, MakeWait(o.wait, until + absl::Seconds(1)));  // >= 1 s from now
    nic->Release();
    if (!s.ok()) {
      links.erase(it);
      continue;
    }
    ++answered;
  }
  if (ready == nullptr) std::printf("hsi-ping responder: answered %lu probes\n", static_cast<unsigned long>(answered));
  return kExitOk;
}

// ---------------------------------------------------------------- client

struct Side {
  std::vector<double> ns;
  uint64_t sent = 0, received = 0;
  uint64_t corrupt = 0;  // answered, but not with the probe's bytes
};

json SideJson(const Side& s) {
  const hsi::tools::Summary m = hsi::tools::Summarize(s.ns);
  return json{{"sent", s.sent},     {"received", s.received}, {"lost", s.sent - s.received - s.corrupt},
              {"wrong", s.corrupt},
              {"min_ns", m.min},    {"avg_ns", m.avg},        {"max_ns", m.max},
              {"mdev_ns", m.mdev},  {"p50_ns", m.p50},        {"p99_ns", m.p99},
              {"p999_ns", m.p999}};
}

void PrintSide(const char* name, const Side& s) {
  const hsi::tools::Summary m = hsi::tools::Summarize(s.ns);
  const double loss = s.sent == 0 ? 0 : 100.0 * static_cast<double>(s.sent - s.received - s.corrupt) / static_cast<double>(s.sent);
  std::printf("%s: %lu probes sent, %lu answered, %.3g%% loss", name, static_cast<unsigned long>(s.sent),
              static_cast<unsigned long>(s.received), loss);
  if (s.corrupt != 0) std::printf(", %lu wrong echoes", static_cast<unsigned long>(s.corrupt));
  std::printf("\n");
  if (s.ns.empty()) return;
  std::printf("%s rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f us\n", name, m.min / 1e3, m.avg / 1e3, m.max / 1e3,
              m.mdev / 1e3);
  std::printf("%s rtt p50/p99/p99.9 = %.3f/%.3f/%.3f us\n", name, m.p50 / 1e3, m.p99 / 1e3, m.p999 / 1e3);
}

int Client(const Options& o) {
  // Fork the responder before this process opens any session.
  hsi::tools::Child responder;
  hsi::tools::LinePipe ready;
  hsi::Address peer;
  uint16_t tcp_port = o.tcp_port.value_or(0);
  const std::string lpar = o.lpar.empty() ? absl::StrCat("hsi-ping-", ::getpid()) : o.lpar;
  // Where the two ends run: where the scheduler puts them unless --pin says.
  // Not pinned by default: pinned to two CPUs, loopback TCP pays a cross-CPU
  // wake-up per hop that it avoids when the scheduler puts both ends on one
  // CPU, so pinning would make TCP look slower than users see it.
  const std::vector<int>& cpus = o.pin;
  std::string placement = "unpinned";
  if (cpus.size() == 2) {
    placement = absl::StrCat("cpu ", cpus[0], " <-> cpu ", cpus[1]);
  } else if (cpus.size() == 1) {
    placement = absl::StrCat("cpu ", cpus[0]);
  }
  if (!o.peer) {
    Options ro = o;
    ro.tcp_port = 0;
    ro.pin.clear();
    if (cpus.size() == 2) ro.pin = {cpus[1]};
    responder = hsi::tools::Child([&] { return Respond(ro, lpar + "-r", &ready); });
    std::optional<std::string> line = ready.ReadLine(absl::Now() + absl::Seconds(10));
    std::vector<std::string> parts;
    if (line) parts = absl::StrSplit(*line, ' ');
    if (parts.size() != 2) return hsi::tools::Fail(kTool, "the forked responder did not start (see above)", kExitFailure);
    absl::StatusOr<hsi::Address> a = hsi::Address::Parse(parts[0]);
    uint32_t port = 0;
    if (!a.ok() || !absl::SimpleAtoi(parts[1], &port)) {
      return hsi::tools::Fail(kTool, absl::StrCat("the forked responder said '", *line, "'"), kExitFailure);
    }
    peer = *a;
    tcp_port = static_cast<uint16_t>(port);
  } else {
    peer = *o.peer;
  }
  if (!cpus.empty()) {
    if (absl::Status s = hsi::support::PinToCpu(cpus[0]); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  absl::StatusOr<hsi::Session> session = Connect(o, lpar);
  if (!session.ok()) return hsi::tools::Fail(kTool, session.status().message(), kExitFailure);
  absl::StatusOr<hsi::Nic> nic = session->AttachNic(o.chpid);
  if (!nic.ok()) return hsi::tools::Fail(kTool, nic.status().message(), kExitFailure);
  if (o.size > nic->info().mtu) {
    return hsi::tools::Fail(kTool, absl::StrCat("-s ", o.size, " exceeds the MTU ", nic->info().mtu, " of CHPID ",
                                                hsi::tools::ChpidText(o.chpid)),
                            hsi::tools::kExitUsage);
  }
  absl::StatusOr<hsi::Link> link = nic->Link(peer);
  if (!link.ok()) return hsi::tools::Fail(kTool, link.status().message(), kExitFailure);
  hsi::UniqueFd tcp;
  uint16_t tcp_local_port = 0;
  if (o.vs_tcp) {
    absl::StatusOr<hsi::UniqueFd> c = TcpConnect(tcp_port, absl::Seconds(o.timeout), &tcp_local_port);
    if (!c.ok()) return hsi::tools::Fail(kTool, c.status().message(), kExitFailure);
    tcp = std::move(*c);
  }
  const bool per_probe = !o.quiet && !o.json && !o.vs_tcp && o.interval > 0;
  if (!o.json) {
    std::printf("HSI-PING %s from %s (LPAR %s) on CHPID %s: %zu bytes per probe, wait %s, %s%s\n",
                peer.ToString().c_str(), nic->address().ToString().c_str(), lpar.c_str(),
                hsi::tools::ChpidText(o.chpid).c_str(), o.size, std::string(hsi::WaitModeName(o.wait)).c_str(),
                placement.c_str(), o.vs_tcp ? ", interleaved with loopback TCP" : "");
    std::fflush(stdout);
  }
  std::vector<uint8_t> out(o.size, 0x5a), in(nic->info().mtu);
  Side hs, ts;
  if (o.count) {
    hs.ns.reserve(o.count);
    if (o.vs_tcp) ts.ns.reserve(o.count);
  }
  const absl::Duration timeout = absl::Seconds(o.timeout);
  // Round trips are timed with the TSC (tick_clock.h): clock_gettime() costs
  // 20 to 150 ns on this VM, much of an hsi round trip.
  const hsi::support::TickClock clock = hsi::support::TickClock::Calibrate(absl::Milliseconds(20));
  const auto started = Clock::now();
  uint64_t seq = 0;
  absl::Status failure;
  auto pause = [&] {
    if (o.interval > 0 && !g_stop) absl::SleepFor(absl::Seconds(o.interval));
  };
  while (!g_stop && failure.ok() && (o.count == 0 || hs.sent < o.count)) {
    const uint64_t n = o.vs_tcp ? std::min(o.batch, o.count - hs.sent) : 1;
    for (uint64_t k = 0; k < n && !g_stop; ++k) {
      ++seq;
      PutU64(out.data(), seq);
      // Read before t0: the clock read is not part of the round trip.
      const absl::Time deadline = absl::Now() + timeout;
      const uint64_t t0 = hsi::support::TickClock::Now();
      absl::Status s = link->Send(out, MakeWait(o.wait, deadline));
      ++hs.sent;
      if (!s.ok()) {
        failure = s;
        break;
      }
      // The echo is peeked in place (zero-copy): the round trip ends when it
      // is visible with our sequence number; its payload is compared with
      // the probe after the clock has stopped, as ping compares its data.
      bool got = false;
      uint64_t t1 = 0;
      for (;;) {
        absl::StatusOr<absl::Span<const uint8_t>> r = link->Peek(MakeWait(o.wait, deadline));
        if (!r.ok()) {
          if (r.status().code() != absl::StatusCode::kDeadlineExceeded) failure = r.status();
          break;
        }
        if (r->size() >= 8 && GetU64(r->data()) == seq) {
          t1 = hsi::support::TickClock::Now();
          got = true;
          if (r->size() != o.size || std::memcmp(r->data() + 8, out.data() + 8, o.size - 8) != 0) {
            got = false;
            ++hs.corrupt;
            if (!o.json) {
              std::printf("wrong echo from %s: seq=%lu came back with %zu bytes that differ from the probe\n",
                          peer.ToString().c_str(), static_cast<unsigned long>(seq), r->size());
            }
          }
          link->Release();
          break;
        }
        link->Release();  // a late answer to an earlier probe: keep waiting
      }
      if (got) {
        const double ns = clock.NsBetween(t0, t1);
        hs.ns.push_back(ns);
        ++hs.received;
        if (per_probe) {
          std::printf("%zu bytes from %s: seq=%lu time=%.3f us\n", o.size, peer.ToString().c_str(),
                      static_cast<unsigned long>(seq), ns / 1e3);
          std::fflush(stdout);
        }
      } else if (failure.ok() && !o.quiet && !o.json) {
        std::printf("no answer from %s: seq=%lu within %s\n", peer.ToString().c_str(), static_cast<unsigned long>(seq),
                    absl::FormatDuration(timeout).c_str());
      }
      pause();
    }
    if (!o.vs_tcp || g_stop || !failure.ok()) continue;
    // The TCP batch: tell the responder, wait for its ack, then n probes.
    std::vector<uint8_t> ctl(32);
    PutU64(ctl.data(), kTcpPhase);
    PutU64(ctl.data() + 8, n);
    PutU64(ctl.data() + 16, o.size);
    PutU64(ctl.data() + 24, tcp_local_port);
    if (absl::Status s = link->Send(ctl, MakeWait(o.wait, absl::Now() + absl::Seconds(5))); !s.ok()) {
      failure = s;
      break;
    }
    for (;;) {
      absl::StatusOr<size_t> r = link->Receive(absl::MakeSpan(in), MakeWait(o.wait, absl::Now() + absl::Seconds(5)));
      if (!r.ok()) {
        failure = absl::Status(r.status().code(), absl::StrCat("waiting for the responder to switch to TCP: ",
                                                               r.status().message()));
        break;
      }
      if (*r >= 8 && GetU64(in.data()) == kTcpPhase) break;
    }
    if (!failure.ok()) break;
    for (uint64_t k = 0; k < n && !g_stop; ++k) {
      PutU64(out.data(), seq + k);
      const uint64_t t0 = hsi::support::TickClock::Now();
      ++ts.sent;
      if (!WriteFull(tcp.get(), out.data(), o.size) || !ReadFull(tcp.get(), in.data(), o.size)) {
        if (g_stop) break;
        if (errno == 0) {
          failure = absl::UnavailableError("loopback TCP: the responder closed the connection");
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
          failure = absl::DeadlineExceededError(
              absl::StrCat("loopback TCP: no answer within ", absl::FormatDuration(timeout)));
        } else {
          failure = absl::UnavailableError(absl::StrCat("loopback TCP: ", std::strerror(errno)));
        }
        break;
      }
      const uint64_t t1 = hsi::support::TickClock::Now();
      if (std::memcmp(in.data(), out.data(), o.size) != 0) {
        ++ts.corrupt;
      } else {
        ts.ns.push_back(clock.NsBetween(t0, t1));
        ++ts.received;
      }
      pause();
    }
  }
  const double elapsed_ms =
      static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count()) / 1e3;
  const hsi::tools::Summary hm = hsi::tools::Summarize(hs.ns), tm = hsi::tools::Summarize(ts.ns);
  const double ratio = hm.p50 > 0 && tm.p50 > 0 ? tm.p50 / hm.p50 : 0;
  if (o.json) {
    json j = {{"peer", peer.ToString()}, {"local", nic->address().ToString()}, {"chpid", hsi::tools::ChpidText(o.chpid)},
              {"size", o.size}, {"wait", std::string(hsi::WaitModeName(o.wait))}, {"cpus", cpus},
              {"clock", hsi::support::TickClock::Name()},
              {"elapsed_ms", elapsed_ms},
              {"hsi", SideJson(hs)}};
    if (o.vs_tcp) {
      j["tcp"] = SideJson(ts);
      j["ratio_tcp_hsi_p50"] = ratio;
    }
    if (!failure.ok()) j["error"] = std::string(failure.message());
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("\n--- %s hsi-ping statistics (time %.0f ms) ---\n", peer.ToString().c_str(), elapsed_ms);
    PrintSide("hsi", hs);
    if (o.vs_tcp) {
      PrintSide("tcp", ts);
      if (ratio > 0) std::printf("ratio tcp/hsi at p50: %.1fx\n", ratio);
    }
  }
  if (!failure.ok()) hsi::tools::Fail(kTool, failure.message(), kExitFailure);
  if (responder.started()) responder.Stop();
  if (!failure.ok() || hs.received == 0 || hs.received < hs.sent || ts.received < ts.sent) return kExitFailure;
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  std::optional<Args> args = hsi::tools::StartTool(argc, argv, kTool, kOptions, kHelp,
                                                   /*allow_positional=*/true, &exit_code);
  if (!args) return exit_code;
  Options o;
  o.responder = args->Has("--responder");
  o.vs_tcp = args->Has("--vs-tcp");
  o.quiet = args->Has("--quiet");
  o.json = args->Has("--json");
  o.socket = args->Get("--socket").value_or("");
  o.lpar = args->Get("--lpar").value_or("");
  if (o.vs_tcp) {
    o.interval = 0;
    o.count = 100000;
  }
  auto usage = [](const absl::Status& s) { return hsi::tools::Usage(kTool, s.message()); };
#define HSI_ARG(name, parse, dst)                            \
  if (std::optional<std::string> v_ = args->Get(name)) {     \
    auto r_ = (parse);                                       \
    if (!r_.ok()) return usage(r_.status());                 \
    dst = *r_;                                               \
  }
  HSI_ARG("--count", hsi::tools::ParseCount("-c/--count", *v_, 1, uint64_t{1} << 40), o.count)
  HSI_ARG("--size", hsi::tools::ParseSize("-s/--size", *v_, 8, 1 << 20), o.size)
  HSI_ARG("--interval", hsi::tools::ParseSeconds("-i/--interval", *v_, 0, 3600), o.interval)
  HSI_ARG("--timeout", hsi::tools::ParseSeconds("-W/--timeout", *v_, 0.001, 3600), o.timeout)
  HSI_ARG("--wait", hsi::tools::ParseWait("--wait", *v_), o.wait)
  HSI_ARG("--batch", hsi::tools::ParseCount("--batch", *v_, 1, 1 << 24), o.batch)
  HSI_ARG("--chpid", hsi::tools::ParseChpid("--chpid", *v_), o.chpid)
  HSI_ARG("--pin", hsi::tools::ParseCpus("--pin", *v_, 2), o.pin)
  if (std::optional<std::string> v = args->Get("--tcp-port")) {
    absl::StatusOr<uint64_t> p = hsi::tools::ParseCount("--tcp-port", *v, 0, 65535);
    if (!p.ok()) return usage(p.status());
    o.tcp_port = static_cast<uint16_t>(*p);
  }
#undef HSI_ARG
  const std::vector<std::string>& pos = args->positional();
  if (pos.size() > 1) return hsi::tools::Usage(kTool, absl::StrCat("unexpected argument '", pos[1], "'"));
  if (!pos.empty()) {
    absl::StatusOr<hsi::Address> a = hsi::tools::ParseAddress("ADDRESS", pos[0]);
    if (!a.ok()) return usage(a.status());
    o.peer = *a;
  }
  if ((o.responder || o.peer) && o.pin.size() > 1) {
    return hsi::tools::Usage(kTool, "--pin takes two CPUs only when hsi-ping forks its own responder (no ADDRESS)");
  }
  InstallSignals();
  if (o.responder) {
    if (o.peer) return hsi::tools::Usage(kTool, "--responder takes no ADDRESS");
    if (o.vs_tcp) return hsi::tools::Usage(kTool, "--responder and --vs-tcp exclude each other");
    return Respond(o, o.lpar.empty() ? absl::StrCat("hsi-ping-", ::getpid()) : o.lpar, nullptr);
  }
  if (!o.peer && !o.vs_tcp) {
    return hsi::tools::Usage(kTool, "give a peer ADDRESS, --responder, or --vs-tcp (which forks its own responder)");
  }
  if (o.peer && o.vs_tcp && !o.tcp_port) {
    return hsi::tools::Usage(kTool, "--vs-tcp with an ADDRESS needs --tcp-port of that responder's TCP listener");
  }
  if (!o.peer && o.tcp_port) return hsi::tools::Usage(kTool, "--tcp-port needs a peer ADDRESS (or --responder)");
  return Client(o);
}
