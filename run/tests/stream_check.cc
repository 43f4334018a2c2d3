// hsi-run-check: a TCP stream test program for hsi-run (run/tests/
// programs_test.sh runs it under hsi-run, and plain). Every byte is
// generated from a seed, echoed by the server and compared byte by byte on
// the way back, so a byte lost, duplicated or reordered anywhere (ring,
// fork, threads, fallback) fails the run.
//
//   hsi-run-check server --port-file FILE [--conns N]
//       listens on 127.0.0.1:0, writes the port to FILE, echoes N
//       connections (a thread each: read/write until EOF, then
//       shutdown(SHUT_WR) after the last byte), then exits 0.
//   hsi-run-check client --port P --bytes B --mode MODE [--seed S]
//       MODE poll:    non-blocking socket, poll() loop, rotating write/send/
//                     writev/sendmsg and read/recv/readv/recvmsg
//       threads:      blocking socket, one thread sends while another
//                     receives on the same descriptor (MSG_WAITALL too)
//       fork:         a forked child sends everything and closes its copy;
//                     the parent receives
//       epoll:        non-blocking, edge-triggered epoll, EPOLLRDHUP
//       semantics:    select, MSG_PEEK, FIONREAD, MSG_DONTWAIT, EPOLLONESHOT,
//                     sendmmsg/recvmmsg,
//                     one epoll set used by parent and child after fork,
//                     EOF after shutdown, EPIPE after it, socket options
//                     (--bytes is ignored)
//       exec:         the client execs itself mid-stream (bytes in flight
//                     both ways); the new image finishes and checks
//       exec2:        as exec, and the new image execs once more
//       exec-static:  execs the statically linked --exec-path PATH --version
//                     instead (the descriptor must not reach it; the test
//                     reads the reason in the log)
//       fork-exec:    a forked child execs itself, the parent closes its copy
//       exec-plain:   the new image is exec'd without LD_PRELOAD: under
//                     hsi-run the descriptor must be closed there ("OK
//                     closed"), on plain TCP the stream continues
//       fexecve:      as exec, through fexecve (/proc/self/exe opened)
//       execveat:     as exec, through execveat of "exe" relative to an
//                     opened /proc/self
//       spawn, system, popen, vfork (under hsi-run only): mid-stream, the
//                     client hands its descriptor (not close-on-exec) to a
//                     child started by posix_spawn (inherited, then dup2'd
//                     onto the child's stdin by a file action), system(),
//                     popen() or vfork+execv; the child, "hsi-run-check
//                     probe --fd N", must find it closed; then the stream
//                     is finished
//       spawn-threads: as spawn (inherited), 4 threads x 25 spawns at once
//   hsi-run-check probe --fd N
//       prints "closed" and exits 0 if descriptor N is not open, else says
//       what a read on it returned and exits 1
//   hsi-run-check server --port-file FILE --exec-after N [--exec-env NAME=VALUE]
//       one connection; after echoing N bytes the server execs itself (with
//       NAME=VALUE added to the environment) and the new image echoes the
//       rest (the acceptor side of an exec)
//       Wake-up modes, each --rounds R request/response round trips of 1 B
//       to 3000 B (the reader must sleep for nearly every echo; a lost
//       wake-up fails the round after 10 s, naming it; --bytes ignored):
//       et-rounds:    non-blocking, sleeps in epoll edge-triggered
//       block-rounds: blocking read, no poll/select/epoll at all
//       shared-epoll: the parent adds the socket (edge-triggered) to an
//                     epoll set created before a fork; the child sleeps in
//                     that set and reads the echoes, the parent sends
//       many-epoll:   16 connections (server --conns 16) in one level-
//                     triggered epoll set; each round sends on all of them
//                     and waits for every echo
//       two-waiters:  a thread sleeps in poll on connection X while the
//                     main thread sleeps in an epoll set holding X and Y
//                     (server --conns 2); each reads its own connection
//       Prints "OK bytes=B" (or "OK rounds=R") and exits 0, or "FAIL: ..."
//       and exits 1.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

// The byte at stream position `i` for `seed`: a hash, so any position can
// be checked on its own.
uint8_t ByteAt(uint64_t seed, uint64_t i) {
  uint64_t x = (i >> 3) * 0x9E3779B97F4A7C15ull ^ seed;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return static_cast<uint8_t>(x >> (8 * (i & 7)));
}

[[noreturn]] void Fail(const std::string& what) {
  std::printf("FAIL: %s (errno %d: %s)\n", what.c_str(), errno, std::strerror(errno));
  std::fflush(stdout);
  std::_Exit(1);
}

const char* Arg(int argc, char** argv, const char* name, const char* def) {
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  if (def == nullptr) {
    std::fprintf(stderr, "hsi-run-check: %s is required (try --help)\n", name);
    std::exit(2);
  }
  return def;
}

// ------------------------------------------------------------ server

void Echo(int fd) {
  std::vector<char> buf(256 * 1024);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // the peer reset: nothing more to echo
    }
    for (ssize_t off = 0; off < n;) {
      const ssize_t w = ::write(fd, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0) {
        if (errno == EINTR) continue;
        ::close(fd);
        return;
      }
      off += w;
    }
  }
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

// server --exec-after N: one connection; after echoing N bytes or more the
// server execs itself (/proc/self/exe) with --resume-fd FD, and the new
// image echoes the rest (the acceptor's side of an exec).
int ServerExec(int argc, char** argv, int l) {
  const uint64_t after = std::strtoull(Arg(argc, argv, "--exec-after", nullptr), nullptr, 10);
  const int fd = ::accept4(l, nullptr, nullptr, 0);
  if (fd < 0) Fail("accept");
  ::close(l);
  std::vector<char> buf(64 * 1024);
  uint64_t echoed = 0;
  while (echoed < after) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n <= 0) Fail("server: the stream ended before the exec");
    for (ssize_t off = 0; off < n;) {
      const ssize_t w = ::write(fd, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0) Fail("server: write");
      off += w;
    }
    echoed += static_cast<uint64_t>(n);
  }
  const std::string fds = std::to_string(fd);
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--exec-env") == 0) ::putenv(argv[i + 1]);  // NAME=VALUE, for the new image only
  }
  ::execl("/proc/self/exe", argv[0], "server", "--resume-fd", fds.c_str(), static_cast<char*>(nullptr));  // the list form
  Fail("exec");
}

int Server(int argc, char** argv) {
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--resume-fd") == 0) {
      const int fd = std::atoi(argv[i + 1]);
      if (::fcntl(fd, F_GETFD) < 0) Fail("server: descriptor " + std::string(argv[i + 1]) + " did not cross the exec");
      Echo(fd);
      return 0;
    }
  }
  const char* port_file = Arg(argc, argv, "--port-file", nullptr);
  const int conns = std::atoi(Arg(argc, argv, "--conns", "1"));
  const int l = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(l, 64) < 0) Fail("bind/listen");
  socklen_t len = sizeof(a);
  ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  {
    const std::string tmp = std::string(port_file) + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) Fail("port file");
    std::fprintf(f, "%d\n", ntohs(a.sin_port));
    std::fclose(f);
    std::rename(tmp.c_str(), port_file);  // appears whole
  }
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--exec-after") == 0) return ServerExec(argc, argv, l);
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < conns; ++i) {
    const int fd = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) Fail("accept");
    threads.emplace_back(Echo, fd);
  }
  for (std::thread& t : threads) t.join();
  ::close(l);
  return 0;
}

// ------------------------------------------------------------ client

struct Check {
  uint64_t seed, total, got = 0;
  void Take(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (got + i >= total) Fail("more bytes came back than were sent");
      if (p[i] != ByteAt(seed, got + i)) Fail("byte " + std::to_string(got + i) + " differs");
    }
    got += n;
  }
};

// One send of up to `max` bytes at position `pos`, rotating the calls.
ssize_t SendSome(int fd, uint64_t seed, uint64_t pos, size_t max, int round) {
  static thread_local std::vector<uint8_t> buf(1 << 20);
  const size_t sizes[] = {1, 7, 64, 1500, 4096, 65536, 200000, 1 << 20};
  const size_t n = std::min(max, sizes[round % 8]);
  for (size_t i = 0; i < n; ++i) buf[i] = ByteAt(seed, pos + i);
  switch (round % 4) {
    case 0: return ::write(fd, buf.data(), n);
    case 1: return ::send(fd, buf.data(), n, MSG_NOSIGNAL);
    case 2: {
      iovec v[2] = {{buf.data(), n / 2}, {buf.data() + n / 2, n - n / 2}};
      return ::writev(fd, v, 2);
    }
    default: {
      iovec v[1] = {{buf.data(), n}};
      msghdr m{};
      m.msg_iov = v;
      m.msg_iovlen = 1;
      return ::sendmsg(fd, &m, MSG_NOSIGNAL);
    }
  }
}

ssize_t RecvSome(int fd, uint8_t* buf, size_t cap, int round, bool blocking) {
  switch (round % 5) {
    case 0: return ::read(fd, buf, cap);
    case 1: return ::recv(fd, buf, cap, 0);
    case 2: {
      iovec v[2] = {{buf, cap / 3}, {buf + cap / 3, cap - cap / 3}};
      return ::readv(fd, v, 2);
    }
    case 3: {
      iovec v[1] = {{buf, cap}};
      msghdr m{};
      m.msg_iov = v;
      m.msg_iovlen = 1;
      return ::recvmsg(fd, &m, 0);
    }
    default:
      return ::recv(fd, buf, std::min<size_t>(cap, 3000), blocking ? MSG_WAITALL : 0);
  }
}

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0) Fail("connect");
  return fd;
}

// Sends stream positions [from, to); then, if `shut`, shutdown(SHUT_WR).
void SendRange(int fd, uint64_t seed, uint64_t from, uint64_t to, bool shut) {
  uint64_t pos = from;
  for (int round = 0; pos < to; ++round) {
    const ssize_t n = SendSome(fd, seed, pos, to - pos, round);
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail("send");
    }
    pos += static_cast<uint64_t>(n);
  }
  if (shut && ::shutdown(fd, SHUT_WR) < 0) Fail("shutdown");
}

void SendAll(int fd, uint64_t seed, uint64_t total) { SendRange(fd, seed, 0, total, true); }

// Reads (blocking) until `c` has `limit` bytes, or to EOF (limit ~0).
void RecvUpTo(int fd, Check& c, uint64_t limit) {
  std::vector<uint8_t> buf(300000);
  for (int round = 0; c.got < limit; ++round) {
    const ssize_t n = RecvSome(fd, buf.data(), std::min<uint64_t>(buf.size(), limit - c.got), round, true);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail("recv");
    }
    c.Take(buf.data(), static_cast<size_t>(n));
  }
}

void RecvAll(int fd, Check& c) { RecvUpTo(fd, c, ~uint64_t{0}); }

// ------------------------------------------------------------ exec
//
// The exec modes run a client in two images. The first sends `--bytes`/2
// and reads back half of that, so that at the exec bytes are in flight both
// ways (its own not yet echoed, echoes not yet read); then it execs itself
// (/proc/self/exe) with "--resume-fd FD --sent S --got G", and the new
// image sends the rest, reads every echo to EOF and checks each byte from
// position G on. exec: the client execs; fork-exec: a forked child execs
// (execvp) while the parent closes its copy; exec-plain: the new image is
// exec'd without LD_PRELOAD (not under hsi-run): under hsi-run the
// connection must not reach it (the descriptor is closed there: "OK
// closed"), on plain TCP it simply continues.

[[noreturn]] void ExecSelf(int argc, char** argv, int fd, uint64_t sent, uint64_t got, bool fork_child, bool plain,
                          const char* next_mode = nullptr, bool by_fd = false, bool by_dirfd = false) {
  if (::fcntl(fd, F_SETFD, 0) < 0) Fail("clear FD_CLOEXEC");
  std::vector<std::string> args(argv, argv + argc);
  if (next_mode != nullptr) {
    for (size_t i = 2; i + 1 < args.size(); ++i) {
      if (args[i] == "--mode") args[i + 1] = next_mode;
    }
  }
  for (const char* name : {"--resume-fd", "--sent", "--got"}) {
    for (size_t i = 2; i + 1 < args.size(); ++i) {
      if (args[i] == name) args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
    }
  }
  args.insert(args.end(), {"--resume-fd", std::to_string(fd), "--sent", std::to_string(sent), "--got", std::to_string(got)});
  std::vector<char*> av;
  for (std::string& a : args) av.push_back(a.data());
  av.push_back(nullptr);
  std::fflush(stdout);
  if (plain) {
    std::vector<char*> env;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "LD_PRELOAD=", 11) != 0) env.push_back(*e);
    }
    env.push_back(nullptr);
    ::execve("/proc/self/exe", av.data(), env.data());
  } else if (by_fd) {
    const int exe = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (exe < 0) Fail("open /proc/self/exe");
    ::fexecve(exe, av.data(), environ);
  } else if (by_dirfd) {
    const int dir = ::open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) Fail("open /proc/self");
    ::execveat(dir, "exe", av.data(), environ, 0);
  } else if (fork_child) {
    ::execvp("/proc/self/exe", av.data());
  } else {
    ::execv("/proc/self/exe", av.data());
  }
  Fail("exec");
}

// Sends stream positions [sent, total) and shuts down while reading every
// echo to EOF, checks them all, prints "OK bytes=B".
int FinishStream(int fd, Check& c, uint64_t sent) {
  std::thread sender(SendRange, fd, c.seed, sent, c.total, true);
  RecvAll(fd, c);
  sender.join();
  if (c.got != c.total) Fail("got " + std::to_string(c.got) + " of " + std::to_string(c.total) + " bytes back");
  std::printf("OK bytes=%llu\n", static_cast<unsigned long long>(c.total));
  return 0;
}

// The first image of an exec mode.
int ExecFirst(int argc, char** argv, int port, const std::string& mode, Check& c) {
  const int fd = Connect(port);
  const uint64_t sent = c.total / 2, got = sent / 2;
  std::thread sender(SendRange, fd, c.seed, 0, sent, false);
  RecvUpTo(fd, c, got);
  sender.join();
  if (mode == "fork-exec") {
    const pid_t pid = ::fork();
    if (pid < 0) Fail("fork");
    if (pid == 0) ExecSelf(argc, argv, fd, sent, got, true, false);
    ::close(fd);  // the child's exec carries the connection once this copy is gone
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
  }
  if (mode == "exec-static") {
    // A statically linked program (--exec-path, run with --version) cannot
    // load the library: the connection must not reach it.
    const char* path = Arg(argc, argv, "--exec-path", nullptr);
    if (::fcntl(fd, F_SETFD, 0) < 0) Fail("clear FD_CLOEXEC");
    std::fflush(stdout);
    ::execl(path, path, "--version", static_cast<char*>(nullptr));
    Fail("exec");
  }
  ExecSelf(argc, argv, fd, sent, got, false, mode == "exec-plain", nullptr, mode == "fexecve", mode == "execveat");
}

// The new image of an exec mode.
int ExecSecond(int argc, char** argv, const std::string& mode, Check& c) {
  const int fd = std::atoi(Arg(argc, argv, "--resume-fd", nullptr));
  const uint64_t sent = std::strtoull(Arg(argc, argv, "--sent", nullptr), nullptr, 10);
  c.got = std::strtoull(Arg(argc, argv, "--got", nullptr), nullptr, 10);
  if (::fcntl(fd, F_GETFD) < 0) {
    if (mode == "exec-plain" && errno == EBADF) {
      std::printf("OK closed\n");
      return 0;
    }
    Fail("descriptor " + std::to_string(fd) + " did not cross the exec");
  }
  if (mode == "exec2") {
    // Once more: in flight both ways again, then a second exec.
    const uint64_t sent2 = c.total * 3 / 4;
    std::thread sender(SendRange, fd, c.seed, sent, sent2, false);
    RecvUpTo(fd, c, c.total * 5 / 8);
    sender.join();
    ExecSelf(argc, argv, fd, sent2, c.got, false, false, "exec");
  }
  return FinishStream(fd, c, sent);
}

// ------------------------------------------------------------ spawn
//
// The spawn modes (docs/hsi-run.md section 5): with bytes in flight both
// ways, the client hands its connection (not close-on-exec) to a child that
// posix_spawn (glibc execs it without the exec interposers), system(),
// popen() or vfork (the child execs from the parent's memory) starts. Under hsi-run the child must not get a live descriptor:
// its stream is on rings the child cannot read, so a read there returns
// bells as data and its writes reach nobody. The child,
// "hsi-run-check probe --fd N", says whether it found the descriptor; then
// the client finishes the stream on its own copy and checks every byte.

std::string SelfPath() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) Fail("readlink /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

int Probe(int argc, char** argv) {
  const int fd = std::atoi(Arg(argc, argv, "--fd", nullptr));
  if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
    std::printf("closed\n");
    return 0;
  }
  char buf[256];
  const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  std::printf("FAIL: descriptor %d is live in the spawned child: a read returned %zd%s\n", fd, n,
              n > 0 ? " bytes (bells: the stream is on rings)" : (n < 0 && errno == EAGAIN ? " (EAGAIN)" : ""));
  return 1;
}

// The child's exit status `st` of `what` must be 0 ("closed").
void ExpectClosedIn(int st, const std::string& what) {
  if (st == -1) Fail(what);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    errno = 0;
    Fail(what + ": the child found the connection's descriptor live (its line above says what it read)");
  }
}

// posix_spawn()s `self` as "probe" with descriptor `fd` inherited (or, if
// `dup`, dup2'd onto its stdin by a file action); it must find it closed.
void SpawnProbe(std::string self, int fd, bool dup) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (dup && posix_spawn_file_actions_adddup2(&fa, fd, 0) != 0) Fail("posix_spawn_file_actions_adddup2");
  std::string child_fd = dup ? "0" : std::to_string(fd);
  std::string probe = "probe", opt = "--fd";
  char* av[] = {self.data(), probe.data(), opt.data(), child_fd.data(), nullptr};
  pid_t pid = 0;
  if (const int rc = ::posix_spawn(&pid, self.c_str(), &fa, nullptr, av, environ); rc != 0) {
    errno = rc;
    Fail("posix_spawn");
  }
  posix_spawn_file_actions_destroy(&fa);
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) Fail("waitpid");
  ExpectClosedIn(st, dup ? "posix_spawn, dup2 onto the child's stdin" : "posix_spawn");
}

int SpawnMode(int port, const std::string& mode, Check& c) {
  const int fd = Connect(port);
  const uint64_t sent = c.total / 2;
  std::thread sender(SendRange, fd, c.seed, 0, sent, false);
  RecvUpTo(fd, c, sent / 2);
  sender.join();
  if (::fcntl(fd, F_SETFD, 0) < 0) Fail("clear FD_CLOEXEC");
  std::string self = SelfPath();
  const std::string n = std::to_string(fd);
  const std::string cmd = "exec '" + self + "' probe --fd " + n;
  std::fflush(stdout);
  if (mode == "spawn") {
    SpawnProbe(self, fd, false);  // inherited as is
    if (::fcntl(fd, F_GETFD) != 0) Fail("the parent's descriptor flags changed across posix_spawn");
    SpawnProbe(self, fd, true);  // dup2'd onto the child's stdin
  } else if (mode == "spawn-threads") {
    // Spawns of several threads at once: each child must find it closed,
    // though another thread's spawn ends (and restores) meanwhile.
    std::vector<std::thread> spawners;
    for (int t = 0; t < 4; ++t) {
      spawners.emplace_back([&] {
        for (int i = 0; i < 25; ++i) SpawnProbe(self, fd, false);
      });
    }
    for (std::thread& t : spawners) t.join();
  } else if (mode == "vfork") {
    std::string probe = "probe", opt = "--fd", child_fd = n;
    char* av[] = {self.data(), probe.data(), opt.data(), child_fd.data(), nullptr};
    const pid_t pid = ::vfork();
    if (pid == 0) {
      ::execv(av[0], av);
      ::_exit(127);
    }
    if (pid < 0) Fail("vfork");
    int st = 0;
    if (::waitpid(pid, &st, 0) != pid) Fail("waitpid");
    ExpectClosedIn(st, "vfork + execv");
  } else if (mode == "system") {
    ExpectClosedIn(std::system(cmd.c_str()), "system");
  } else {
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) Fail("popen");
    char line[512] = {};
    if (std::fgets(line, sizeof(line), p) == nullptr) line[0] = '\0';
    const int st = ::pclose(p);
    if (std::strcmp(line, "closed\n") != 0) {
      errno = 0;
      Fail(std::string("popen: the child said: ") + line);
    }
    ExpectClosedIn(st, "popen");
  }
  if (::fcntl(fd, F_GETFD) != 0) Fail("the parent's descriptor flags changed across " + mode);
  // The parent's copy is untouched: the rest of the stream, every byte checked.
  return FinishStream(fd, c, sent);
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// A line of checks of the socket calls a program relies on, against the
// echo server; each failure names the call.
void Expect(bool ok, const std::string& what) {
  if (!ok) Fail(what);
}

bool WaitReadable(int fd, int ms) {
  fd_set r;
  FD_ZERO(&r);
  FD_SET(fd, &r);
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  return ::select(fd + 1, &r, nullptr, nullptr, &tv) == 1;
}

int Semantics(int port) {
  const int fd = Connect(port);
  char buf[64] = {};
  // select, MSG_PEEK, FIONREAD, MSG_DONTWAIT.
  Expect(::send(fd, "hello", 5, MSG_NOSIGNAL) == 5, "send hello");
  Expect(WaitReadable(fd, 10000), "select: the echo never became readable");
  ssize_t n = ::recv(fd, buf, 5, MSG_PEEK | MSG_WAITALL);
  Expect(n >= 1 && std::memcmp(buf, "hello", static_cast<size_t>(n)) == 0, "recv MSG_PEEK");
  int avail = 0;
  Expect(::ioctl(fd, FIONREAD, &avail) == 0 && avail >= 1 && avail <= 5, "ioctl FIONREAD: " + std::to_string(avail));
  std::string got;
  while (got.size() < 5) {
    n = ::recv(fd, buf, sizeof(buf), 0);
    Expect(n > 0, "recv hello");
    got.append(buf, static_cast<size_t>(n));
  }
  Expect(got == "hello", "recv after peek: " + got);
  errno = 0;
  Expect(::recv(fd, buf, sizeof(buf), MSG_DONTWAIT) == -1 && errno == EAGAIN, "recv MSG_DONTWAIT on nothing: EAGAIN");
  // EPOLLONESHOT: one event until re-armed.
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{EPOLLIN | EPOLLONESHOT, {}};
  ev.data.fd = fd;
  Expect(::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl ADD");
  Expect(::send(fd, "x", 1, MSG_NOSIGNAL) == 1, "send x");
  epoll_event out{};
  Expect(::epoll_wait(ep, &out, 1, 10000) == 1, "EPOLLONESHOT: first event");
  Expect(::recv(fd, buf, 1, 0) == 1 && buf[0] == 'x', "recv x");
  Expect(::send(fd, "y", 1, MSG_NOSIGNAL) == 1, "send y");
  Expect(WaitReadable(fd, 10000), "y never came back");
  Expect(::epoll_wait(ep, &out, 1, 0) == 0, "EPOLLONESHOT: an event while disarmed");
  Expect(::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0, "epoll_ctl MOD");
  Expect(::epoll_wait(ep, &out, 1, 10000) == 1, "EPOLLONESHOT: no event after re-arming");
  Expect(::recv(fd, buf, 1, 0) == 1 && buf[0] == 'y', "recv y");
  // One epoll set shared by parent and child after fork: the child waits on
  // it and reads what the parent sent.
  ev.events = EPOLLIN;
  Expect(::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0, "epoll_ctl MOD level");
  const pid_t pid = ::fork();
  if (pid == 0) {
    epoll_event e{};
    if (::epoll_wait(ep, &e, 1, 10000) != 1) std::_Exit(3);
    char c = 0;
    std::_Exit(::recv(fd, &c, 1, 0) == 1 && c == 'z' ? 0 : 4);
  }
  Expect(::send(fd, "z", 1, MSG_NOSIGNAL) == 1, "send z");
  int st = 0;
  ::waitpid(pid, &st, 0);
  Expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "shared epoll after fork: child exit " + std::to_string(st));
  // sendmmsg / recvmmsg: the bytes of both messages, in order.
  {
    char a[] = "ab", b[] = "cd";
    iovec va{a, 2}, vb{b, 2};
    mmsghdr out2[2] = {};
    out2[0].msg_hdr.msg_iov = &va;
    out2[0].msg_hdr.msg_iovlen = 1;
    out2[1].msg_hdr.msg_iov = &vb;
    out2[1].msg_hdr.msg_iovlen = 1;
    Expect(::sendmmsg(fd, out2, 2, MSG_NOSIGNAL) == 2, "sendmmsg");
    std::string mm;
    while (mm.size() < 4) {
      char r1[4], r2[4];
      iovec v1{r1, sizeof(r1)}, v2{r2, sizeof(r2)};
      mmsghdr in2[2] = {};
      in2[0].msg_hdr.msg_iov = &v1;
      in2[0].msg_hdr.msg_iovlen = 1;
      in2[1].msg_hdr.msg_iov = &v2;
      in2[1].msg_hdr.msg_iovlen = 1;
      const int k = ::recvmmsg(fd, in2, 2, MSG_WAITFORONE, nullptr);
      Expect(k >= 1, "recvmmsg");
      mm.append(r1, in2[0].msg_len);
      if (k == 2) mm.append(r2, in2[1].msg_len);
    }
    Expect(mm == "abcd", "recvmmsg after sendmmsg: " + mm);
  }
  // shutdown(SHUT_WR): the server echoes the rest and closes; EOF after it.
  Expect(::send(fd, "end", 3, MSG_NOSIGNAL) == 3, "send end");
  Expect(::shutdown(fd, SHUT_WR) == 0, "shutdown");
  got.clear();
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<size_t>(n));
  Expect(n == 0 && got == "end", "EOF after every byte: got '" + got + "'");
  // Writing after shutdown(SHUT_WR): EPIPE, as TCP.
  errno = 0;
  Expect(::send(fd, "late", 4, MSG_NOSIGNAL) == -1 && errno == EPIPE, "send after shutdown: EPIPE");
  // Socket options a program sets are accepted.
  const int one = 1;
  Expect(::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) == 0, "SO_KEEPALIVE");
  Expect(::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0, "TCP_NODELAY");
  int err = -1;
  socklen_t len = sizeof(err);
  Expect(::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0, "SO_ERROR");
  ::close(ep);
  ::close(fd);
  std::printf("OK semantics\n");
  return 0;
}

// ------------------------------------------------------------ wake-ups

// Round `r`'s message: its length (1 B to 3000 B) and bytes.
size_t RoundLen(int r) { return 1 + static_cast<size_t>(r * 7919) % 3000; }
std::vector<uint8_t> RoundMsg(uint64_t seed, int r) {
  std::vector<uint8_t> m(RoundLen(r));
  for (size_t i = 0; i < m.size(); ++i) m[i] = ByteAt(seed + static_cast<uint64_t>(r), i);
  return m;
}

void SendMsg(int fd, const std::vector<uint8_t>& m) {
  for (size_t off = 0; off < m.size();) {
    const ssize_t n = ::send(fd, m.data() + off, m.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;  // a ring of 1 MiB never stays full here
      Fail("send");
    }
    off += static_cast<size_t>(n);
  }
}

// Reads what is there (non-blocking) into `got`; false at EOF.
bool ReadSome(int fd, std::vector<uint8_t>* got, size_t want) {
  uint8_t buf[4096];
  while (got->size() < want) {
    const ssize_t n = ::read(fd, buf, std::min(sizeof(buf), want - got->size()));
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      Fail("read");
    }
    got->insert(got->end(), buf, buf + n);
  }
  return true;
}

// Waits on epoll set `ep` until `fd` gave back all of round `r`'s message.
void AwaitEcho(int ep, int fd, uint64_t seed, int r, const char* what) {
  const std::vector<uint8_t> m = RoundMsg(seed, r);
  std::vector<uint8_t> got;
  for (;;) {
    if (!ReadSome(fd, &got, m.size())) Fail(std::string(what) + ": EOF in round " + std::to_string(r));
    if (got.size() == m.size()) break;
    epoll_event ev{};
    const int k = ::epoll_wait(ep, &ev, 1, 10000);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) Fail(std::string(what) + ": lost wake-up: no event in 10 s in round " + std::to_string(r));
  }
  if (got != m) Fail(std::string(what) + ": round " + std::to_string(r) + " came back different");
}

int WakeRounds(int port, const std::string& mode, int rounds, uint64_t seed) {
  if (mode == "et-rounds") {
    const int fd = Connect(port);
    SetNonBlocking(fd);
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{EPOLLIN | EPOLLET, {}};
    ev.data.fd = fd;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) Fail("epoll_ctl");
    for (int r = 0; r < rounds; ++r) {
      SendMsg(fd, RoundMsg(seed, r));
      AwaitEcho(ep, fd, seed, r, "epoll edge-triggered");
    }
  } else if (mode == "block-rounds") {
    const int fd = Connect(port);
    for (int r = 0; r < rounds; ++r) {
      const std::vector<uint8_t> m = RoundMsg(seed, r);
      SendMsg(fd, m);
      std::vector<uint8_t> got(m.size());
      for (size_t off = 0; off < got.size();) {
        const ssize_t n = ::read(fd, got.data() + off, got.size() - off);  // sleeps in read
        if (n <= 0) Fail("blocking read in round " + std::to_string(r));
        off += static_cast<size_t>(n);
      }
      if (got != m) Fail("blocking read: round " + std::to_string(r) + " came back different");
    }
  } else if (mode == "shared-epoll") {
    const int fd = Connect(port);
    SetNonBlocking(fd);
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    int go[2], ack[2];
    if (::pipe(go) < 0 || ::pipe(ack) < 0) Fail("pipe");
    const pid_t pid = ::fork();
    if (pid < 0) Fail("fork");
    if (pid == 0) {
      // The child sleeps in the set the parent filled after the fork.
      char b = 0;
      for (int r = 0; r < rounds; ++r) {
        if (::read(go[0], &b, 1) != 1) std::_Exit(3);
        AwaitEcho(ep, fd, seed, r, "shared epoll (child)");
        if (::write(ack[1], "a", 1) != 1) std::_Exit(4);
      }
      std::_Exit(0);
    }
    // Edge-triggered: a bell left in the socket does not hide a lost one.
    epoll_event ev{EPOLLIN | EPOLLET, {}};
    ev.data.fd = fd;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) Fail("epoll_ctl");
    char b = 0;
    for (int r = 0; r < rounds; ++r) {
      if (::write(go[1], "g", 1) != 1) Fail("pipe write");
      SendMsg(fd, RoundMsg(seed, r));
      if (::read(ack[0], &b, 1) != 1) break;  // the child failed: its status says how
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) Fail("shared epoll: the child failed, status " + std::to_string(st));
  } else if (mode == "many-epoll") {
    constexpr int kConns = 16;
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    int fds[kConns];
    for (int& fd : fds) {
      fd = Connect(port);
      SetNonBlocking(fd);
      epoll_event ev{EPOLLIN, {}};
      ev.data.fd = fd;
      if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) Fail("epoll_ctl");
    }
    for (int r = 0; r < rounds; ++r) {
      for (int i = 0; i < kConns; ++i) SendMsg(fds[i], RoundMsg(seed + i * 1000003ull, r));
      std::vector<std::vector<uint8_t>> got(kConns);
      int done = 0;
      while (done < kConns) {
        epoll_event evs[kConns];
        const int k = ::epoll_wait(ep, evs, kConns, 10000);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) Fail("many-epoll: lost wake-up: no event in 10 s in round " + std::to_string(r));
        for (int e = 0; e < k; ++e) {
          const int i = static_cast<int>(std::find(fds, fds + kConns, evs[e].data.fd) - fds);
          if (i == kConns) Fail("many-epoll: an event for an unknown descriptor");
          const std::vector<uint8_t> m = RoundMsg(seed + i * 1000003ull, r);
          if (got[i].size() == m.size()) continue;
          if (!ReadSome(fds[i], &got[i], m.size())) Fail("many-epoll: EOF");
          if (got[i].size() == m.size()) {
            if (got[i] != m) Fail("many-epoll: round " + std::to_string(r) + " came back different");
            ++done;
          }
        }
      }
    }
    for (int fd : fds) ::shutdown(fd, SHUT_WR);
  } else if (mode == "two-waiters") {
    // A thread sleeps in poll on X and reads its echoes; the main thread
    // sleeps in an epoll set holding X (edge-triggered, ignored) and Y, and
    // reads Y's. Both sleep on X: the producer must not take the bell that
    // woke the main thread for Y as the poller's wake-up too.
    const int x = Connect(port), y = Connect(port);
    SetNonBlocking(x);
    SetNonBlocking(y);
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ex{EPOLLIN | EPOLLET, {}}, ey{EPOLLIN, {}};
    ex.data.fd = x;
    ey.data.fd = y;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, x, &ex) < 0 || ::epoll_ctl(ep, EPOLL_CTL_ADD, y, &ey) < 0) Fail("epoll_ctl");
    std::atomic<int> x_round{-1};
    std::thread poller([&] {
      for (int r = 0; r < rounds; ++r) {
        while (x_round.load() < r) std::this_thread::yield();  // the main thread sent round r on X
        const std::vector<uint8_t> m = RoundMsg(seed, r);
        std::vector<uint8_t> got;
        for (;;) {
          if (!ReadSome(x, &got, m.size())) Fail("two-waiters: EOF on X");
          if (got.size() == m.size()) break;
          pollfd p{x, POLLIN, 0};
          const int k = ::poll(&p, 1, 10000);
          if (k == 0) Fail("two-waiters: lost wake-up of the poll on X in round " + std::to_string(r));
        }
        if (got != m) Fail("two-waiters: X's round " + std::to_string(r) + " came back different");
      }
    });
    for (int r = 0; r < rounds; ++r) {
      // Y first: its echo is usually the first bell of the main thread's
      // wait, so X's echo is the one that could be taken as already rung.
      SendMsg(y, RoundMsg(seed + 1, r));
      SendMsg(x, RoundMsg(seed, r));
      x_round.store(r);
      const std::vector<uint8_t> m = RoundMsg(seed + 1, r);
      std::vector<uint8_t> got;
      for (;;) {
        if (!ReadSome(y, &got, m.size())) Fail("two-waiters: EOF on Y");
        if (got.size() == m.size()) break;
        epoll_event ev{};
        if (::epoll_wait(ep, &ev, 1, 10000) == 0) Fail("two-waiters: lost wake-up of the epoll set in round " + std::to_string(r));
      }
      if (got != m) Fail("two-waiters: Y's round " + std::to_string(r) + " came back different");
    }
    poller.join();
    ::shutdown(x, SHUT_WR);
    ::shutdown(y, SHUT_WR);
  } else {
    return -1;
  }
  std::printf("OK rounds=%d\n", rounds);
  return 0;
}

int Client(int argc, char** argv) {
  // A write to a connection the peer reset must show as EPIPE, as in most
  // servers, not kill the check.
  ::signal(SIGPIPE, SIG_IGN);
  const int port = std::atoi(Arg(argc, argv, "--port", nullptr));
  const uint64_t total = std::strtoull(Arg(argc, argv, "--bytes", nullptr), nullptr, 10);
  const std::string mode = Arg(argc, argv, "--mode", "poll");
  Check c{std::strtoull(Arg(argc, argv, "--seed", "1"), nullptr, 10), total};
  if (mode == "semantics") return Semantics(port);
  if (mode.size() > 7 && (mode.ends_with("-rounds") || mode.ends_with("-epoll") || mode == "two-waiters")) {
    const int r = WakeRounds(port, mode, std::atoi(Arg(argc, argv, "--rounds", "2000")), c.seed);
    if (r >= 0) return r;
  }
  if (mode == "exec" || mode == "exec2" || mode == "fork-exec" || mode == "exec-plain" || mode == "exec-static" ||
      mode == "fexecve" || mode == "execveat") {
    for (int i = 2; i < argc; ++i) {
      if (std::strcmp(argv[i], "--resume-fd") == 0) return ExecSecond(argc, argv, mode, c);
    }
    return ExecFirst(argc, argv, port, mode, c);
  }
  if (mode == "spawn" || mode == "spawn-threads" || mode == "system" || mode == "popen" || mode == "vfork") {
    return SpawnMode(port, mode, c);
  }
  const int fd = Connect(port);
  if (mode == "threads") {
    std::thread sender(SendAll, fd, c.seed, total);
    RecvAll(fd, c);
    sender.join();
  } else if (mode == "fork") {
    const pid_t pid = ::fork();
    if (pid < 0) Fail("fork");
    if (pid == 0) {
      SendAll(fd, c.seed, total);
      ::close(fd);
      std::_Exit(0);
    }
    RecvAll(fd, c);
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) Fail("the sending child failed");
  } else if (mode == "poll" || mode == "epoll") {
    SetNonBlocking(fd);
    const int ep = mode == "epoll" ? ::epoll_create1(EPOLL_CLOEXEC) : -1;
    if (ep >= 0) {
      epoll_event ev{EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, {}};
      ev.data.fd = fd;
      if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) Fail("epoll_ctl");
    }
    std::vector<uint8_t> buf(300000);
    uint64_t pos = 0;
    bool eof = false, shut = false;
    int round = 0;
    while (!eof) {
      bool progress = false;
      // Edge-triggered: drain both directions until EAGAIN before waiting.
      while (pos < total) {
        const ssize_t n = SendSome(fd, c.seed, pos, total - pos, round++);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          Fail("send");
        }
        pos += static_cast<uint64_t>(n);
        progress = true;
      }
      if (pos == total && !shut) {
        if (::shutdown(fd, SHUT_WR) < 0) Fail("shutdown");
        shut = true;
      }
      for (;;) {
        const ssize_t n = RecvSome(fd, buf.data(), buf.size(), round++, false);
        if (n == 0) {
          eof = true;
          break;
        }
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          Fail("recv");
        }
        c.Take(buf.data(), static_cast<size_t>(n));
        progress = true;
      }
      if (eof || progress) continue;
      if (ep >= 0) {
        epoll_event ev{};
        if (::epoll_wait(ep, &ev, 1, 10000) == 0) Fail("epoll_wait: 10 s without an event");
      } else {
        pollfd p{fd, static_cast<short>(POLLIN | (pos < total ? POLLOUT : 0)), 0};
        if (::poll(&p, 1, 10000) == 0) Fail("poll: 10 s without an event");
      }
    }
  } else {
    std::fprintf(stderr, "hsi-run-check: unknown --mode %s\n", mode.c_str());
    return 2;
  }
  if (c.got != total) Fail("got " + std::to_string(c.got) + " of " + std::to_string(total) + " bytes back");
  std::printf("OK bytes=%llu\n", static_cast<unsigned long long>(total));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::puts("usage: hsi-run-check server --port-file FILE [--conns N | --exec-after BYTES [--exec-env NAME=VALUE]]\n"
              "       hsi-run-check client --port P --bytes B --mode poll|threads|fork|epoll|semantics|\n"
              "                     exec|exec2|fork-exec|exec-plain|exec-static|fexecve|execveat|\n"
              "                     spawn|spawn-threads|system|popen|vfork\n"
              "                     [--exec-path P] [--seed S]\n"
              "       hsi-run-check client --port P --bytes 0 --mode et-rounds|block-rounds|shared-epoll|many-epoll|\n"
              "                     two-waiters\n"
              "                     [--rounds R] [--seed S]\n"
              "       hsi-run-check probe --fd N   (a spawned child: is descriptor N closed?)\n"
              "Echo stream check for hsi-run: every byte generated from the seed, echoed, compared.");
    return 0;
  }
  if (argc >= 2 && std::strcmp(argv[1], "server") == 0) return Server(argc, argv);
  if (argc >= 2 && std::strcmp(argv[1], "client") == 0) return Client(argc, argv);
  if (argc >= 2 && std::strcmp(argv[1], "probe") == 0) return Probe(argc, argv);
  std::fprintf(stderr, "hsi-run-check: server or client? (try --help)\n");
  return 2;
}
