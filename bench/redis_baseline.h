// bench/redis_baseline.h: the Redis baseline of the coupling-facility
// benchmarks (hsi-cf-bench's SET NX + DEL, hsi-cf-list-bench's RPUSH +
// BLPOP): a redis-server (Debian's) the benchmark starts on a free loopback
// port, and a blocking RESP call over a TCP_NODELAY connection to it.
#ifndef HSI_BENCH_REDIS_BASELINE_H_
#define HSI_BENCH_REDIS_BASELINE_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/time/clock.h"
#include "hsi/support/process.h"

namespace hsi::bench {

// The redis-server's loopback address once StartRedis succeeded.
inline sockaddr_in& RedisAddress() {
  static sockaddr_in a{};
  return a;
}

// A new TCP_NODELAY connection to the server StartRedis started; -1 if none.
inline int ConnectRedis() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&RedisAddress()), sizeof(sockaddr_in)) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// A loopback TCP connection to a redis-server this benchmark starts (the
// issue's other baseline: SET NX + DEL). -1 if there is none.
inline int StartRedis(hsi::support::Child* server) {
  if (::access("/usr/bin/redis-server", X_OK) != 0) return -1;
  // A free port: bind port 0, read it, close (redis binds it next).
  int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(probe);
    return -1;
  }
  ::close(probe);
  const std::string port = std::to_string(ntohs(a.sin_port));
  *server = hsi::support::Child([&] {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::execl("/usr/bin/redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no", nullptr);
    return 127;
  });
  // Connect until it listens (a condition with a deadline).
  RedisAddress() = a;
  for (const absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end;) {
    if (const int fd = ConnectRedis(); fd >= 0) return fd;
  }
  return -1;
}

// Sends `cmd` and reads one reply line; true if it starts with `expect`.
inline bool RedisCall(int fd, const std::string& cmd, char expect) {
  if (::write(fd, cmd.data(), cmd.size()) != static_cast<ssize_t>(cmd.size())) return false;
  char buf[64];
  size_t got = 0;
  while (got < 2 || buf[got - 1] != '\n') {
    const ssize_t n = ::read(fd, buf + got, sizeof buf - got);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
    if (got == sizeof buf) return false;
  }
  return buf[0] == expect;
}

}  // namespace hsi::bench

#endif  // HSI_BENCH_REDIS_BASELINE_H_
