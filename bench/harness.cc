#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace hsi::bench {
namespace {

std::string& ProgramName() {
  static std::string* name = new std::string("hsi-bench");
  return *name;
}

absl::Status Errno(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, absl::StrCat(what));
}

// Frame i of a stream: word 0 is i, every other word this pattern.
uint64_t FillWord(uint64_t i) {
  return uint64_t{static_cast<uint8_t>(i * 131 + 7)} * 0x0101010101010101ULL;
}

// The stream checksum of one payload: the sum of its 64-bit words.
uint64_t WordSum(const uint8_t* p, size_t words) {
  uint64_t sum = 0;
  for (size_t w = 0; w < words; ++w) {
    uint64_t x;
    std::memcpy(&x, p + 8 * w, 8);
    sum += x;
  }
  return sum;
}

absl::Status SetNoDelay(int fd) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return Errno(errno, "setsockopt TCP_NODELAY");
  }
  return absl::OkStatus();
}

}  // namespace

// ------------------------------------------------------------------ CPUs

CpuPlan PlanCpus() {
  CpuPlan plan;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) {
    plan.label = absl::StrCat("unpinned: sched_getaffinity failed: ", std::strerror(errno));
    return plan;
  }
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  if (cpus.size() < 2) {
    plan.label = "unpinned: only 1 CPU available, both processes share it";
    return plan;
  }
  plan.self = cpus[0];
  plan.peer = cpus[1];
  plan.label = absl::StrCat("cpu ", plan.self, " <-> cpu ", plan.peer);
  return plan;
}

ScopedPin::ScopedPin(int cpu) {
  CPU_ZERO(&saved_);
  if (cpu < 0) return;
  if (::sched_getaffinity(0, sizeof(saved_), &saved_) != 0) {
    status_ = Errno(errno, "sched_getaffinity");
    return;
  }
  status_ = PinToCpu(cpu);
  restore_ = status_.ok();
}

ScopedPin::~ScopedPin() {
  if (restore_) ::sched_setaffinity(0, sizeof(saved_), &saved_);
}

// ------------------------------------------------------------------ peers

absl::StatusOr<Peer> Peer::Fork(absl::string_view name, int cpu,
                                const std::function<int()>& body) {
  const pid_t parent = ::getpid();
  // Nothing buffered in stdio may be written twice (the child _exit()s
  // without flushing, but be explicit about it).
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return Errno(errno, absl::StrCat("fork ", name));
  if (pid == 0) {
    // Die with the parent, even if it dies before this line.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (cpu >= 0) {
      if (absl::Status s = PinToCpu(cpu); !s.ok()) ::_exit(PeerFailed(name, s));
    }
    ::_exit(body());
  }
  Peer p;
  p.pid_ = pid;
  p.name_ = std::string(name);
  return p;
}

Peer::Peer(Peer&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      name_(std::move(other.name_)),
      wait_status_(other.wait_status_),
      reaped_(other.reaped_) {}

Peer& Peer::operator=(Peer&& other) noexcept {
  if (this != &other) {
    Kill();
    pid_ = std::exchange(other.pid_, -1);
    name_ = std::move(other.name_);
    wait_status_ = other.wait_status_;
    reaped_ = other.reaped_;
  }
  return *this;
}

void Peer::Reap(int wait_status) {
  wait_status_ = wait_status;
  reaped_ = true;
}

bool Peer::Poll() {
  if (pid_ < 0 || reaped_) return true;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) Reap(st);
  if (r < 0 && errno == ECHILD) Reap(W_EXITCODE(255, 0));  // not ours any more
  return reaped_;
}

absl::Status Peer::Join(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Poll()) {
    if (absl::Now() >= deadline) {
      Kill();
      return absl::DeadlineExceededError(absl::StrCat(
          name_, " (pid ", pid_, ") did not exit within ", absl::FormatDuration(timeout),
          "; killed it"));
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return exit_status();
}

void Peer::Kill() {
  if (pid_ < 0 || reaped_) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  pid_t r;
  while ((r = ::waitpid(pid_, &st, 0)) < 0 && errno == EINTR) {
  }
  Reap(r == pid_ ? st : W_EXITCODE(255, 0));
}

absl::Status Peer::exit_status() const {
  if (!reaped_) return absl::FailedPreconditionError(absl::StrCat(name_, " is still running"));
  if (WIFEXITED(wait_status_)) {
    const int code = WEXITSTATUS(wait_status_);
    if (code == 0) return absl::OkStatus();
    return absl::AbortedError(absl::StrCat(name_, " (pid ", pid_, ") exited with status ", code));
  }
  if (WIFSIGNALED(wait_status_)) {
    const int sig = WTERMSIG(wait_status_);
    return absl::AbortedError(absl::StrCat(name_, " (pid ", pid_, ") was killed by signal ", sig,
                                           " (", strsignal(sig), ")"));
  }
  return absl::AbortedError(absl::StrCat(name_, " ended with wait status ", wait_status_));
}

void SetProgramName(absl::string_view name) { ProgramName() = std::string(name); }

int PeerFailed(absl::string_view who, const absl::Status& status) {
  std::fprintf(stderr, "%s: %.*s: %s\n", ProgramName().c_str(), static_cast<int>(who.size()),
               who.data(), status.ToString().c_str());
  return 1;
}

// ---------------------------------------------------------- shared memory

absl::StatusOr<SharedMemory> SharedMemory::Create(size_t bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t size = (std::max<size_t>(bytes, 1) + page - 1) / page * page;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return Errno(errno, absl::StrCat("mmap ", size, " shared bytes"));
  SharedMemory m;
  m.data_ = p;
  m.size_ = size;
  return m;
}

SharedMemory::~SharedMemory() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

// ----------------------------------------------------------- statistics

double Percentile(const std::vector<double>& sorted, double q) {
  const size_t n = sorted.size();
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(n)));
  rank = std::clamp<size_t>(rank, 1, n);
  return sorted[rank - 1];
}

Summary Summarize(std::vector<double> samples) {
  Summary s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.n = samples.size();
  s.min = samples.front();
  s.max = samples.back();
  s.p50 = Percentile(samples, 0.50);
  s.p90 = Percentile(samples, 0.90);
  s.p99 = Percentile(samples, 0.99);
  s.p999 = Percentile(samples, 0.999);
  double sum = 0;
  for (double x : samples) sum += x;
  s.mean = sum / static_cast<double>(s.n);
  return s;
}

// ------------------------------------------- cache-line ping-pong (floor)

bool CacheLinePinger::Slow(uint64_t spins) {
  const auto now = std::chrono::steady_clock::now();
  if (spins == 4096) {
    slow_since_ = now;
    return false;
  }
  return now - slow_since_ > absl::ToChronoNanoseconds(kPeerTimeout);
}

absl::Status CacheLinePong(std::atomic<uint64_t>* word, uint64_t limit, bool pause,
                           absl::Duration timeout) {
  const auto chrono_timeout = absl::ToChronoNanoseconds(timeout);
  for (uint64_t done = 0; limit == 0 || done < limit; ++done) {
    uint64_t v;
    std::chrono::steady_clock::time_point since;
    // Acquire pairs with the release store in CacheLinePinger::RoundTrip().
    for (uint64_t spins = 1; ((v = word->load(std::memory_order_acquire)) & 1) == 0; ++spins) {
      if (pause) CpuRelax();
      if ((spins & 4095) == 0) {
        const auto now = std::chrono::steady_clock::now();
        if (spins == 4096) {
          since = now;
        } else if (now - since > chrono_timeout) {
          return absl::DeadlineExceededError(absl::StrCat(
              "cache-line ping-pong: no ping for ", absl::FormatDuration(timeout), " after ",
              done, " round trips"));
        }
      }
    }
    if (v == kLineStop) return absl::OkStatus();
    // Release pairs with the pinger's acquire load.
    word->store(v + 1, std::memory_order_release);
  }
  return absl::OkStatus();
}

// ------------------------------------------------------ hsi ring helpers

RingPinger::RingPinger(Endpoint* end, size_t size, bool zero_copy)
    : end_(end), size_(size), zero_copy_(zero_copy), out_(size), in_(size) {
  for (size_t i = 0; i < size; ++i) out_[i] = static_cast<uint8_t>(i * 7 + 1);
}

absl::Status RingPinger::Check(absl::Span<const uint8_t> echo) {
  if (echo.size() != size_) {
    return absl::DataLossError(absl::StrCat("ping-pong: echo ", index_, " is ", echo.size(),
                                            " bytes, sent ", size_));
  }
  const size_t k = std::min<size_t>(8, size_);
  if (k != 0 && std::memcmp(echo.data(), &index_, k) != 0) {
    return absl::DataLossError(absl::StrCat("ping-pong: echo ", index_,
                                            " carries another round trip's index"));
  }
  return absl::OkStatus();
}

absl::Status RingPinger::RoundTrip(const Wait& wait) {
  ++index_;
  const size_t k = std::min<size_t>(8, size_);
  if (zero_copy_) {
    absl::StatusOr<absl::Span<uint8_t>> span = end_->tx().Reserve(size_, wait);
    if (!span.ok()) return span.status();
    if (size_ != 0) {
      std::memcpy(span->data(), out_.data(), size_);
      std::memcpy(span->data(), &index_, k);
    }
    end_->tx().Commit(size_, kTypeData);
    Frame f;
    if (absl::Status s = end_->rx().Peek(&f, wait); !s.ok()) return s;
    if (f.type != kTypeData) {
      return absl::DataLossError(absl::StrCat("ping-pong: echo has frame type ", f.type));
    }
    absl::Status s = Check(f.payload);
    end_->rx().Release();
    return s;
  }
  if (k != 0) std::memcpy(out_.data(), &index_, k);
  if (absl::Status s = end_->tx().Send(out_, wait, kTypeData); !s.ok()) return s;
  uint16_t type = 0;
  absl::StatusOr<size_t> n = end_->rx().Receive(absl::MakeSpan(in_), wait, &type);
  if (!n.ok()) return n.status();
  if (type != kTypeData) {
    return absl::DataLossError(absl::StrCat("ping-pong: echo has frame type ", type));
  }
  return Check(absl::MakeConstSpan(in_.data(), *n));
}

absl::Status RingEcho(Endpoint* end, WaitMode mode, bool zero_copy, uint64_t limit) {
  RingProducer& tx = end->tx();
  RingConsumer& rx = end->rx();
  std::vector<uint8_t> buf(rx.geometry().mtu);
  SlidingWait sliding(mode, kPeerTimeout);
  for (uint64_t done = 0; limit == 0 || done < limit; ++done) {
    const Wait& wait = sliding.Next();
    if (zero_copy) {
      Frame f;
      if (absl::Status s = rx.Peek(&f, wait); !s.ok()) return s;
      if (f.type == kTypeStop) {
        rx.Release();
        return absl::OkStatus();
      }
      if (f.type != kTypeData) {
        return absl::DataLossError(absl::StrCat("echo: unexpected frame type 0x",
                                                absl::Hex(f.type), " after ", done, " frames"));
      }
      const size_t n = f.payload.size();
      absl::StatusOr<absl::Span<uint8_t>> span = tx.Reserve(n, wait);
      if (!span.ok()) return span.status();
      if (n != 0) std::memcpy(span->data(), f.payload.data(), n);
      // Commit the answer before releasing: the release is off the
      // critical path of the round trip.
      tx.Commit(n, kTypeData);
      rx.Release();
    } else {
      uint16_t type = 0;
      absl::StatusOr<size_t> n = rx.Receive(absl::MakeSpan(buf), wait, &type);
      if (!n.ok()) return n.status();
      if (type == kTypeStop) return absl::OkStatus();
      if (type != kTypeData) {
        return absl::DataLossError(absl::StrCat("echo: unexpected frame type 0x",
                                                absl::Hex(type), " after ", done, " frames"));
      }
      if (absl::Status s = tx.Send(absl::MakeConstSpan(buf.data(), *n), wait, kTypeData);
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status SendControl(RingProducer* tx, uint16_t type, absl::Span<const uint8_t> payload,
                         const Wait& wait) {
  return tx->Send(payload, wait, type);
}

absl::StatusOr<StreamSource> StreamSource::Create(RingProducer* tx, size_t size) {
  if (size < 8 || size % 8 != 0 || size > tx->mtu()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stream: frame size ", size, " must be a multiple of 8 in 8..", tx->mtu()));
  }
  return StreamSource(tx, size);
}

absl::Status StreamSource::Batch(uint32_t n, const Wait& wait) {
  const size_t words = size_ / 8;
  for (uint32_t k = 0; k < n; ++k) {
    uint8_t* p = tx_->TryReserve(size_);
    if (p == nullptr) {
      if (!tx_->ok()) return tx_->status();
      // Full: Reserve() publishes what we committed so far, then waits.
      absl::StatusOr<absl::Span<uint8_t>> span = tx_->Reserve(size_, wait);
      if (!span.ok()) return span.status();
      p = span->data();
    }
    const uint64_t i = tally_.frames;
    const uint64_t fill = FillWord(i);
    std::memcpy(p, &i, 8);
    for (size_t w = 1; w < words; ++w) std::memcpy(p + 8 * w, &fill, 8);
    tx_->CommitDeferred(size_, kTypeData);
    ++tally_.frames;
    tally_.checksum += i + (words - 1) * fill;
  }
  tx_->Publish();
  return absl::OkStatus();
}

absl::Status StreamSource::End(const Wait& wait) {
  tally_.full_events = tx_->counters().full_events;
  absl::StatusOr<absl::Span<uint8_t>> span = tx_->Reserve(sizeof(uint64_t) * 3, wait);
  if (!span.ok()) return span.status();
  const uint64_t words[3] = {tally_.frames, tally_.checksum, tally_.full_events};
  std::memcpy(span->data(), words, sizeof(words));
  tx_->Commit(sizeof(words), kTypeEnd);
  return absl::OkStatus();
}

absl::Status StreamSink::Take(const Frame& f) {
  if (f.type != kTypeData) {
    return absl::DataLossError(absl::StrCat("stream: frame ", tally_.frames, " has type 0x",
                                            absl::Hex(f.type), ", expected data"));
  }
  if (f.payload.size() != size_) {
    return absl::DataLossError(absl::StrCat("stream: frame ", tally_.frames, " is ",
                                            f.payload.size(), " bytes, expected ", size_));
  }
  uint64_t index;
  std::memcpy(&index, f.payload.data(), 8);
  if (index != tally_.frames) {
    return absl::DataLossError(absl::StrCat("stream: got frame ", index, " where frame ",
                                            tally_.frames, " was due (lost or reordered)"));
  }
  tally_.checksum += WordSum(f.payload.data(), size_ / 8);
  ++tally_.frames;
  return absl::OkStatus();
}

absl::Status StreamSink::Batch(uint32_t n, const Wait& wait) {
  for (uint32_t k = 0; k < n; ++k) {
    Frame f;
    if (!rx_->TryPeek(&f)) {
      if (!rx_->ok()) return rx_->status();
      ++empty_polls_;
      if (absl::Status s = rx_->Peek(&f, wait); !s.ok()) return s;
    }
    if (absl::Status s = Take(f); !s.ok()) return s;
    rx_->ReleaseDeferred();
  }
  rx_->Publish();
  return absl::OkStatus();
}

absl::StatusOr<StreamTally> StreamSink::DrainToEnd(const Wait& wait) {
  for (;;) {
    Frame f;
    if (absl::Status s = rx_->Peek(&f, wait); !s.ok()) return s;
    if (f.type == kTypeEnd) {
      uint64_t words[3];
      if (f.payload.size() != sizeof(words)) {
        return absl::DataLossError(absl::StrCat("stream: end frame is ", f.payload.size(),
                                                " bytes, expected ", sizeof(words)));
      }
      std::memcpy(words, f.payload.data(), sizeof(words));
      rx_->Release();
      StreamTally source{words[0], words[1], words[2]};
      if (source.frames != tally_.frames || source.checksum != tally_.checksum) {
        return absl::DataLossError(absl::StrCat(
            "stream: source sent ", source.frames, " frames (checksum 0x",
            absl::Hex(source.checksum), "), sink received ", tally_.frames,
            " (checksum 0x", absl::Hex(tally_.checksum), ")"));
      }
      return source;
    }
    if (absl::Status s = Take(f); !s.ok()) return s;
    rx_->ReleaseDeferred();
  }
}

uint32_t StreamBatch(const RingGeometry& geometry, size_t size) {
  const uint64_t record = (16 + size + 15) / 16 * 16;
  return static_cast<uint32_t>(std::clamp<uint64_t>(geometry.capacity / (4 * record), 1, 64));
}

// ------------------------------------------------------ loopback TCP

absl::StatusOr<UniqueFd> TcpListenLoopback(uint16_t* port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Errno(errno, "socket");
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Errno(errno, "bind 127.0.0.1:0");
  }
  if (::listen(fd.get(), 4) != 0) return Errno(errno, "listen on 127.0.0.1");
  socklen_t len = sizeof(addr);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Errno(errno, "getsockname");
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

absl::StatusOr<UniqueFd> TcpAccept(int listen_fd, absl::Duration timeout) {
  pollfd pfd{listen_fd, POLLIN, 0};
  int r;
  while ((r = ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)))) < 0 &&
         errno == EINTR) {
  }
  if (r < 0) return Errno(errno, "poll on the TCP listener");
  if (r == 0) {
    return absl::DeadlineExceededError(absl::StrCat(
        "tcp: no connection within ", absl::FormatDuration(timeout)));
  }
  UniqueFd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
  if (!fd.valid()) return Errno(errno, "accept");
  if (absl::Status s = SetNoDelay(fd.get()); !s.ok()) return s;
  return fd;
}

absl::StatusOr<UniqueFd> TcpConnectLoopback(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Errno(errno, "socket");
  if (absl::Status s = SetNoDelay(fd.get()); !s.ok()) return s;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  int r;
  while ((r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr))) != 0 &&
         errno == EINTR) {
  }
  if (r != 0) return Errno(errno, absl::StrCat("connect to 127.0.0.1:", port));
  return fd;
}

absl::Status SendAll(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::send(fd, p + done, n - done, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, absl::StrCat("tcp send after ", done, " of ", n, " bytes"));
    }
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status RecvAll(int fd, void* data, size_t n) {
  auto* p = static_cast<uint8_t*>(data);
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::recv(fd, p + done, n - done, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, absl::StrCat("tcp recv after ", done, " of ", n, " bytes"));
    }
    if (r == 0) {
      return absl::UnavailableError(absl::StrCat("tcp: connection closed by the peer after ",
                                                 done, " of ", n, " bytes"));
    }
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status TcpEcho(int fd, size_t size, uint64_t limit) {
  if (size == 0) return absl::InvalidArgumentError("tcp echo: message size must be at least 1");
  std::vector<uint8_t> buf(size);
  for (uint64_t done = 0; limit == 0 || done < limit; ++done) {
    // The first byte separately: EOF before it is a clean end.
    ssize_t r;
    while ((r = ::recv(fd, buf.data(), size, 0)) < 0 && errno == EINTR) {
    }
    if (r == 0) return absl::OkStatus();
    if (r < 0) return Errno(errno, "tcp echo: recv");
    if (static_cast<size_t>(r) < size) {
      if (absl::Status s = RecvAll(fd, buf.data() + r, size - static_cast<size_t>(r)); !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = SendAll(fd, buf.data(), size); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace hsi::bench
