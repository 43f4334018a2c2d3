// hsi-ssi-stream: the checked TCP traffic of the SSI relocation scenario
// (issue 18, item 5; packaging/ssi-scenario.sh). Not installed.
//
//   hsi-ssi-stream --serve PORT
//       accepts connections until SIGTERM; each is a stream (checks every
//       byte against the pattern) or a request/response loop (echoes), as
//       its first byte says. On SIGTERM prints one JSON line per
//       connection: peer, mode, bytes, verified, gaps (ms, each > 20 ms
//       between two deliveries), max_gap_ms, error.
//   hsi-ssi-stream --send ADDR:PORT [--rr] [--rate BYTES_PER_S]
//       sends the pattern (or 64-byte requests) until SIGTERM, then shuts
//       its side, waits for the server's byte count (stream) and prints one
//       JSON line: sent, acked (the server's count), reset (ECONNRESET or
//       EPIPE seen), error, and for --rr: requests, max_rtt_ms.
//
// The pattern byte at stream offset i is PatternByte(i): a lost, duplicated
// or reordered byte fails the check.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr char kHelp[] = R"(Usage: hsi-ssi-stream --serve PORT
       hsi-ssi-stream --send ADDR:PORT [--rr] [--rate BYTES_PER_S]

Checked TCP traffic for the SSI relocation scenario (packaging/ssi-scenario.sh):
a server that verifies every byte of each stream (or echoes requests) and
reports the longest gap between deliveries, and a sender. Both run until
SIGTERM and then print one JSON line per connection.
)";

std::atomic<bool> g_stop{false};
void OnTerm(int) { g_stop = true; }

inline uint8_t PatternByte(uint64_t i) { return static_cast<uint8_t>((i * 2654435761u) >> 13); }

double NowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct ConnResult {
  std::string peer, mode, error;
  uint64_t bytes = 0;
  bool verified = true;
  std::vector<double> gaps;
  double max_gap = 0;
};

std::mutex g_mu;
std::vector<ConnResult> g_results;

// Reads with a poll timeout so that SIGTERM ends it.
ssize_t ReadSome(int fd, uint8_t* buf, size_t n) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) return -1;
    if (r > 0) return ::read(fd, buf, n);
    if (g_stop) return -2;
  }
}

void Serve(int fd, std::string peer) {
  ConnResult r;
  r.peer = std::move(peer);
  uint8_t mode = 0;
  if (ReadSome(fd, &mode, 1) != 1) {
    r.error = "no mode byte";
  } else {
    r.mode = mode == 'S' ? "stream" : "rr";
    std::vector<uint8_t> buf(65536);
    double last = NowMs();
    for (;;) {
      const ssize_t n = ReadSome(fd, buf.data(), buf.size());
      if (n == -2) break;
      if (n < 0) {
        r.error = std::strerror(errno);
        break;
      }
      if (n == 0) break;
      const double now = NowMs();
      if (now - last > 20) r.gaps.push_back(now - last);
      r.max_gap = std::max(r.max_gap, now - last);
      last = now;
      if (mode == 'S') {
        for (ssize_t i = 0; i < n; ++i) {
          if (buf[i] != PatternByte(r.bytes + i)) r.verified = false;
        }
      } else {
        // Requests are 64 bytes of PatternByte(k) for request k; echoed.
        if (::write(fd, buf.data(), n) != n) r.error = "echo write failed";
      }
      r.bytes += n;
    }
    if (mode == 'S' && r.error.empty()) {
      const uint64_t count = r.bytes;
      if (::write(fd, &count, sizeof(count)) != sizeof(count)) r.error = "count write failed";
    }
  }
  ::close(fd);
  std::lock_guard<std::mutex> l(g_mu);
  g_results.push_back(std::move(r));
}

std::string Json(const ConnResult& r) {
  std::string gaps;
  for (double g : r.gaps) {
    if (!gaps.empty()) gaps += ',';
    gaps += std::to_string(static_cast<int>(g));
  }
  char line[512];
  std::snprintf(line, sizeof(line),
                "{\"peer\":\"%s\",\"mode\":\"%s\",\"bytes\":%llu,\"verified\":%s,\"max_gap_ms\":%.1f,\"error\":\"%s\",",
                r.peer.c_str(), r.mode.c_str(), static_cast<unsigned long long>(r.bytes), r.verified ? "true" : "false",
                r.max_gap, r.error.c_str());
  std::string out = line;
  out += "\"gaps_ms\":[";
  out += gaps;
  out += "]}";
  return out;
}

int ServeMain(int port) {
  const int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(ls, 64) < 0) {
    std::fprintf(stderr, "hsi-ssi-stream: listen on port %d: %s\n", port, std::strerror(errno));
    return 1;
  }
  std::printf("listening %d\n", port);
  std::fflush(stdout);
  std::vector<std::thread> threads;
  while (!g_stop) {
    pollfd p{ls, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    const int fd = ::accept4(ls, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    char text[INET_ADDRSTRLEN] = "";
    ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof(text));
    threads.emplace_back(Serve, fd, std::string(text));
  }
  for (std::thread& t : threads) t.join();
  for (const ConnResult& r : g_results) std::printf("%s\n", Json(r).c_str());
  return 0;
}

int SendMain(const std::string& to, bool rr, uint64_t rate) {
  const size_t colon = to.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (colon == std::string::npos || ::inet_pton(AF_INET, to.substr(0, colon).c_str(), &a.sin_addr) != 1) {
    std::fprintf(stderr, "hsi-ssi-stream: --send '%s': expected ADDR:PORT\n", to.c_str());
    return 2;
  }
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(to.c_str() + colon + 1)));
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0) {
    std::printf("{\"to\":\"%s\",\"error\":\"connect: %s\",\"reset\":false}\n", to.c_str(), std::strerror(errno));
    return 1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const uint8_t mode = rr ? 'R' : 'S';
  std::string error;
  bool reset = false;
  uint64_t sent = 0, acked = 0, requests = 0;
  double max_rtt = 0;
  if (::write(fd, &mode, 1) != 1) error = "mode write failed";
  const size_t chunk = rr ? 64 : 4096;
  std::vector<uint8_t> buf(chunk), back(chunk);
  const double start = NowMs();
  while (!g_stop && error.empty()) {
    for (size_t i = 0; i < chunk; ++i) buf[i] = PatternByte(sent + i);
    const double t0 = NowMs();
    size_t off = 0;
    while (off < chunk) {
      const ssize_t n = ::send(fd, buf.data() + off, chunk - off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        reset = errno == ECONNRESET || errno == EPIPE;
        error = std::strerror(errno);
        break;
      }
      off += n;
    }
    if (!error.empty()) break;
    sent += chunk;
    if (rr) {
      size_t got = 0;
      while (got < chunk) {
        const ssize_t n = ::read(fd, back.data() + got, chunk - got);
        if (n <= 0) {
          if (n < 0 && errno == EINTR) continue;
          reset = n < 0 && errno == ECONNRESET;
          error = n == 0 ? "server closed" : std::strerror(errno);
          break;
        }
        got += n;
      }
      if (!error.empty()) break;
      if (back != buf) error = "echo differs";
      ++requests;
      max_rtt = std::max(max_rtt, NowMs() - t0);
      ::usleep(2000);
    } else {
      // Pace to `rate` bytes/s so that a gap shows as a gap, not as a full buffer.
      const double due = start + 1000.0 * static_cast<double>(sent) / static_cast<double>(rate);
      const double wait = due - NowMs();
      if (wait > 0) ::usleep(static_cast<useconds_t>(wait * 1000));
    }
  }
  if (!rr && error.empty()) {
    ::shutdown(fd, SHUT_WR);
    size_t got = 0;
    uint8_t* p = reinterpret_cast<uint8_t*>(&acked);
    while (got < sizeof(acked)) {
      pollfd pf{fd, POLLIN, 0};
      if (::poll(&pf, 1, 30000) <= 0) {
        error = "no count from the server within 30 s";
        break;
      }
      const ssize_t n = ::read(fd, p + got, sizeof(acked) - got);
      if (n <= 0) {
        reset = n < 0 && errno == ECONNRESET;
        error = n == 0 ? "server closed before its count" : std::strerror(errno);
        break;
      }
      got += n;
    }
  }
  ::close(fd);
  std::printf("{\"to\":\"%s\",\"mode\":\"%s\",\"sent\":%llu,\"acked\":%llu,\"requests\":%llu,\"max_rtt_ms\":%.1f,"
              "\"reset\":%s,\"error\":\"%s\"}\n",
              to.c_str(), rr ? "rr" : "stream", static_cast<unsigned long long>(sent),
              static_cast<unsigned long long>(acked), static_cast<unsigned long long>(requests), max_rtt,
              reset ? "true" : "false", error.c_str());
  return error.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string serve, send;
  bool rr = false;
  uint64_t rate = 1 << 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "hsi-ssi-stream: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (a == "--serve") {
      serve = value();
    } else if (a == "--send") {
      send = value();
    } else if (a == "--rr") {
      rr = true;
    } else if (a == "--rate") {
      rate = std::strtoull(value().c_str(), nullptr, 10);
    } else {
      std::fprintf(stderr, "hsi-ssi-stream: unknown option '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  if (serve.empty() == send.empty() || rate == 0) {
    std::fprintf(stderr, "hsi-ssi-stream: give --serve PORT or --send ADDR:PORT (try --help)\n");
    return 2;
  }
  struct sigaction sa{};
  sa.sa_handler = OnTerm;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  return serve.empty() ? SendMain(send, rr, rate) : ServeMain(std::atoi(serve.c_str()));
}
