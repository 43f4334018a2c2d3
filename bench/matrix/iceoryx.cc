// bench/matrix/iceoryx.cc: iceoryx (Eclipse iceoryx 2.x, Debian's package)
// as an hsi-bench transport, and the iox-roudi broker it needs.
//
// Built only when CMake finds iceoryx_posh (HSI_BENCH_HAVE_ICEORYX); the
// stubs in transports.cc stand in otherwise.
//
// Each side is its own iceoryx runtime (one per child process, registered
// with RouDi under a name made of the side and the pid) with an untyped
// publisher and subscriber: A publishes on "<tag>/ab" and subscribes to
// "<tag>/ba", B the reverse. Lossless settings: the publisher waits for a
// slow subscriber (WAIT_FOR_CONSUMER) and the subscriber's queue blocks its
// producer (BLOCK_PRODUCER). Receivers busy-poll take() as iceoryx's own
// iceperf does: this is iceoryx's lowest-latency mode, the one compared with
// hsi spin.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"
#include "transport.h"

namespace hsi::bench::matrix {
namespace {

constexpr const char* kRouDiSocket = "/tmp/roudi";  // IOX_UDS_SOCKET_PATH_PREFIX + "roudi"

// Subscriber queue depth for `size`-byte samples: about 4 MiB, 4..256.
uint64_t QueueFor(size_t size) {
  return std::clamp<uint64_t>((uint64_t{4} << 20) / size, 4, iox::MAX_SUBSCRIBER_QUEUE_CAPACITY);
}

iox::capro::IdString_t Id(const std::string& s) {
  return iox::capro::IdString_t(iox::cxx::TruncateToCapacity, s.c_str());
}

class IceoryxEnd : public End {
 public:
  static absl::StatusOr<std::unique_ptr<End>> Create(Side side, size_t size,
                                                     const std::string& tag) {
    // iceoryx logs to stdout, which this child shares with hsi-bench's
    // table: send it to stderr, warnings and worse only.
    ::dup2(2, 1);
    iox::log::LogManager::GetLogManager().SetDefaultLogLevel(
        iox::log::LogLevel::kWarn, iox::log::LogLevelOutput::kHideLogLevel);
    const std::string name =
        absl::StrCat("hsi-bench-", side == Side::kA ? "a-" : "b-", ::getpid());
    iox::runtime::PoshRuntime::initRuntime(
        iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name.c_str()));
    std::unique_ptr<IceoryxEnd> e(new IceoryxEnd(size));
    const std::string out = side == Side::kA ? "ab" : "ba";
    const std::string in = side == Side::kA ? "ba" : "ab";
    iox::popo::PublisherOptions po;
    po.historyCapacity = 0;
    po.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
    iox::popo::SubscriberOptions so;
    so.queueCapacity = QueueFor(size);
    so.historyRequest = 0;
    so.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
    e->pub_ = std::make_unique<iox::popo::UntypedPublisher>(
        iox::capro::ServiceDescription{Id("hsi-bench"), Id(tag), Id(out)}, po);
    e->sub_ = std::make_unique<iox::popo::UntypedSubscriber>(
        iox::capro::ServiceDescription{Id("hsi-bench"), Id(tag), Id(in)}, so);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (e->sub_->getSubscriptionState() != iox::SubscribeState::SUBSCRIBED ||
           !e->pub_->hasSubscribers()) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError("iceoryx: no subscription within 10 s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return std::unique_ptr<End>(std::move(e));
  }

  ~IceoryxEnd() override {
    sub_.reset();
    pub_.reset();
  }

  bool wants_exit() const override { return true; }

  absl::Status RoundTrip(uint64_t index) override {
    absl::StatusOr<void*> p = Loan();
    if (!p.ok()) return p.status();
    std::memcpy(*p, out_.data(), size_);
    std::memcpy(*p, &index, 8);
    pub_->publish(*p);
    absl::StatusOr<const void*> d = Take();
    if (!d.ok()) return d.status();
    const uint64_t got = IndexOf(static_cast<const uint8_t*>(*d));
    sub_->release(*d);
    if (got != index) {
      return absl::DataLossError(absl::StrCat("iceoryx: echo of ", index, " carries ", got));
    }
    return absl::OkStatus();
  }
  absl::Status StopEcho() override { return PublishIndex(kStopIndex); }
  absl::Status Echo() override {
    for (;;) {
      absl::StatusOr<const void*> d = Take();
      if (!d.ok()) return d.status();
      if (IndexOf(static_cast<const uint8_t*>(*d)) == kStopIndex) {
        sub_->release(*d);
        return absl::OkStatus();
      }
      absl::StatusOr<void*> p = Loan();
      if (!p.ok()) return p.status();
      std::memcpy(*p, *d, size_);
      pub_->publish(*p);
      sub_->release(*d);
    }
  }
  absl::Status Source(const StreamStop& stop, Tally* sent) override {
    for (uint64_t i = 0; !StopRequested(stop); ++i) {
      absl::StatusOr<void*> p = Loan();
      if (!p.ok()) return p.status();
      FillMessage(static_cast<uint8_t*>(*p), size_, i);
      pub_->publish(*p);
      ++sent->frames;
      sent->checksum += MessageSum(size_, i);
    }
    return PublishIndex(kEndIndex);
  }
  absl::Status Sink(SinkTimer* timer, Tally* got) override {
    for (;;) {
      absl::StatusOr<const void*> d = Take();
      if (!d.ok()) return d.status();
      const auto* m = static_cast<const uint8_t*>(*d);
      const uint64_t index = IndexOf(m);
      if (index == kEndIndex) {
        sub_->release(*d);
        return absl::OkStatus();
      }
      if (index != got->frames) {
        sub_->release(*d);
        return absl::DataLossError(absl::StrCat("iceoryx stream: sample ", index,
                                                " where ", got->frames, " was due"));
      }
      got->checksum += WordSum(m, size_);
      ++got->frames;
      sub_->release(*d);
      timer->Due();
    }
  }

 private:
  explicit IceoryxEnd(size_t size) : size_(size), out_(size) { FillMessage(out_.data(), size, 0); }

  // Loans a chunk, retrying while the pool is exhausted (the subscriber
  // still holds them), up to kPeerTimeout.
  absl::StatusOr<void*> Loan() {
    std::chrono::steady_clock::time_point since{};
    for (uint64_t tries = 1;; ++tries) {
      auto r = pub_->loan(static_cast<uint32_t>(size_));
      if (!r.has_error()) return r.value();
      if ((tries & 1023) == 0) {
        const auto now = std::chrono::steady_clock::now();
        if (tries == 1024) {
          since = now;
        } else if (now - since > absl::ToChronoNanoseconds(kPeerTimeout)) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "iceoryx: no chunk of ", size_, " bytes to loan (error ",
              static_cast<int>(r.get_error()), ")"));
        }
      }
    }
  }
  // Busy-polls take() up to kPeerTimeout.
  absl::StatusOr<const void*> Take() {
    std::chrono::steady_clock::time_point since{};
    for (uint64_t tries = 1;; ++tries) {
      auto r = sub_->take();
      if (!r.has_error()) return r.value();
      if (r.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE) {
        return absl::InternalError(absl::StrCat("iceoryx take: error ",
                                                static_cast<int>(r.get_error())));
      }
      if ((tries & 4095) == 0) {
        const auto now = std::chrono::steady_clock::now();
        if (tries == 4096) {
          since = now;
        } else if (now - since > absl::ToChronoNanoseconds(kPeerTimeout)) {
          return absl::DeadlineExceededError("iceoryx: nothing received for 10 s (peer gone?)");
        }
      }
    }
  }
  absl::Status PublishIndex(uint64_t index) {
    absl::StatusOr<void*> p = Loan();
    if (!p.ok()) return p.status();
    FillMessage(static_cast<uint8_t*>(*p), size_, index);
    pub_->publish(*p);
    return absl::OkStatus();
  }

  size_t size_;
  std::vector<uint8_t> out_;
  std::unique_ptr<iox::popo::UntypedPublisher> pub_;
  std::unique_ptr<iox::popo::UntypedSubscriber> sub_;
};

class IceoryxLink : public Link {
 public:
  IceoryxLink(size_t size, std::string tag) : size_(size), tag_(std::move(tag)) {}
  absl::StatusOr<std::unique_ptr<End>> Open(Side side) override {
    return IceoryxEnd::Create(side, size_, tag_);
  }

 private:
  size_t size_;
  std::string tag_;
};

class IceoryxTransport : public Transport {
 public:
  std::string key() const override { return "iceoryx"; }
  std::string label() const override { return "iceoryx busy-poll"; }
  absl::StatusOr<std::unique_ptr<Link>> Prepare(size_t size, const std::string& tag) override {
    return std::unique_ptr<Link>(new IceoryxLink(size, tag));
  }
};

pid_t roudi_pid = -1;

}  // namespace

bool IceoryxCompiledIn() { return true; }

std::unique_ptr<Transport> MakeIceoryxTransport() { return std::make_unique<IceoryxTransport>(); }

absl::Status StartRouDi(const std::vector<size_t>& sizes, const std::string& dir) {
  if (roudi_pid > 0) return absl::OkStatus();
  // One mempool per message size: room for a full subscriber queue, the
  // chunks in flight and the chunk header.
  const std::string config = absl::StrCat(dir, "/roudi.toml");
  const std::string log = absl::StrCat(dir, "/roudi.log");
  {
    std::ofstream f(config);
    f << "# written by hsi-bench\n[general]\nversion = 1\n\n[[segment]]\n";
    std::set<size_t> pools;
    for (size_t s : sizes) pools.insert((s + 64 + 7) / 8 * 8);
    for (size_t p : pools) {
      f << "\n[[segment.mempool]]\nsize = " << p << "\ncount = " << QueueFor(p) + 64 << "\n";
    }
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", config));
  }
  struct stat before {};
  const bool had_socket = ::stat(kRouDiSocket, &before) == 0;
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return absl::ErrnoToStatus(errno, "fork for iox-roudi");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execlp("iox-roudi", "iox-roudi", "-c", config.c_str(), "-l", "warning", nullptr);
    std::fprintf(stderr, "exec iox-roudi: %s\n", std::strerror(errno));
    ::_exit(127);
  }
  roudi_pid = pid;
  // Ready once it has (re)made its socket.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) {
      roudi_pid = -1;
      std::string text;
      std::ifstream in(log);
      std::getline(in, text, '\0');
      return absl::UnavailableError(absl::StrCat(
          "iox-roudi exited at once (", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
          "; another RouDi running?): ", text));
    }
    struct stat now {};
    if (::stat(kRouDiSocket, &now) == 0 &&
        (!had_socket || now.st_ino != before.st_ino || now.st_mtim.tv_sec != before.st_mtim.tv_sec ||
         now.st_mtim.tv_nsec != before.st_mtim.tv_nsec)) {
      absl::SleepFor(absl::Milliseconds(50));
      return absl::OkStatus();
    }
    if (absl::Now() > deadline) {
      StopRouDi();
      return absl::DeadlineExceededError(
          absl::StrCat("iox-roudi did not create ", kRouDiSocket, " within 10 s; see ", log));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

void StopRouDi() {
  if (roudi_pid <= 0) return;
  ::kill(roudi_pid, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  int st = 0;
  while (::waitpid(roudi_pid, &st, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      ::kill(roudi_pid, SIGKILL);
      ::waitpid(roudi_pid, &st, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  roudi_pid = -1;
}

}  // namespace hsi::bench::matrix
