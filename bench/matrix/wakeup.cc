// bench/matrix/wakeup.cc: the sleeping transports that put hsi's blocking
// path in context: the futex ping-pong (the least a sleeping hop can cost)
// and the ring sleeping on its eventfd doorbell instead of its futex (as it
// did before issue 15, and as an epoll caller still does).
#include <linux/futex.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <ctime>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "harness.h"
#include "hsi/endpoint.h"
#include "hsi/ring.h"
#include "transport.h"

namespace hsi::bench::matrix {
namespace {

absl::Status EchoMismatch(uint64_t want, uint64_t got) {
  return absl::DataLossError(
      absl::StrCat("echo of message ", want, " carries index ", got, " (lost or reordered)"));
}

// The ring of the hsi rows for small frames: 1 MiB, MTU 16K.
constexpr RingGeometry kBellGeometry{uint64_t{1} << 20, 16384};

// ------------------------------------------------ futex floor (blocking)

// The blocking floor: the two processes sleep in FUTEX_WAIT on one shared
// 32-bit word and wake each other with FUTEX_WAKE, nothing else: per hop one
// wake syscall by the sender and one wait syscall by the receiver (the
// least a sleeping hop can cost). A ping stores the next odd value, the
// answer the even value after it; kFutexStop ends the echo.
inline constexpr uint32_t kFutexStop = ~uint32_t{0};

long Futex(std::atomic<uint32_t>* w, int op, uint32_t val, const timespec* ts) {
  return ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), op, val, ts, nullptr, 0);
}

// Sleeps until *w != seen (shared futex: two processes); false after
// kPeerTimeout without a change.
bool FutexAwaitChange(std::atomic<uint32_t>* w, uint32_t seen) {
  const timespec ts = absl::ToTimespec(kPeerTimeout);
  // Acquire pairs with the other side's release store before its wake.
  while (w->load(std::memory_order_acquire) == seen) {
    if (Futex(w, FUTEX_WAIT, seen, &ts) < 0 && errno == ETIMEDOUT) return false;
  }
  return true;
}

void FutexStore(std::atomic<uint32_t>* w, uint32_t v) {
  // Release: the waiter's acquire load sees it (no payload to order).
  w->store(v, std::memory_order_release);
  Futex(w, FUTEX_WAKE, INT_MAX, nullptr);
}

class FutexEnd : public End {
 public:
  explicit FutexEnd(std::atomic<uint32_t>* word) : word_(word) {}
  absl::Status RoundTrip(uint64_t index) override {
    const uint32_t ping = value_ + 1;
    FutexStore(word_, ping);
    if (!FutexAwaitChange(word_, ping)) return Timeout(index);
    value_ = word_->load(std::memory_order_acquire);  // pairs with FutexStore's release
    if (value_ != ping + 1) return absl::DataLossError(absl::StrCat("futex: answer ", value_, " to ping ", ping));
    return absl::OkStatus();
  }
  absl::Status StopEcho() override {
    FutexStore(word_, kFutexStop);
    return absl::OkStatus();
  }
  absl::Status Echo() override {
    for (uint32_t seen = 0;;) {
      if (!FutexAwaitChange(word_, seen)) return Timeout(seen);
      const uint32_t v = word_->load(std::memory_order_acquire);  // pairs with FutexStore
      if (v == kFutexStop) return absl::OkStatus();
      seen = v + 1;
      FutexStore(word_, seen);
    }
  }
  absl::Status Source(const StreamStop&, Tally*) override {
    return absl::UnimplementedError("the futex floor has no stream");
  }
  absl::Status Sink(SinkTimer*, Tally*) override {
    return absl::UnimplementedError("the futex floor has no stream");
  }

 private:
  static absl::Status Timeout(uint64_t at) {
    return absl::DeadlineExceededError(
        absl::StrCat("futex: no answer at ", at, " within ", absl::FormatDuration(kPeerTimeout)));
  }
  std::atomic<uint32_t>* word_;
  uint32_t value_ = 0;
};
static_assert(std::atomic<uint32_t>::is_always_lock_free && sizeof(std::atomic<uint32_t>) == 4);

class FutexLink : public Link {
 public:
  explicit FutexLink(SharedMemory mem) : mem_(std::move(mem)) {}
  absl::StatusOr<std::unique_ptr<End>> Open(Side) override {
    return std::unique_ptr<End>(new FutexEnd(static_cast<std::atomic<uint32_t>*>(mem_.data())));
  }

 private:
  SharedMemory mem_;
};

class FutexTransport : public Transport {
 public:
  std::string key() const override { return "futex"; }
  std::string label() const override { return "futex floor (block)"; }
  bool streams() const override { return false; }
  bool sized() const override { return false; }
  absl::StatusOr<std::unique_ptr<Link>> Prepare(size_t, const std::string&) override {
    absl::StatusOr<SharedMemory> mem = SharedMemory::Create(64);
    if (!mem.ok()) return mem.status();
    return std::unique_ptr<Link>(new FutexLink(std::move(*mem)));
  }
};

// ------------------------------------ hsi ring, sleeping on the doorbell

// The same link and frames as hsi-block-copy, but each side sleeps the way
// the ring did before issue 15 and as an epoll caller still does: arm the
// need-wakeup flag for a doorbell (ArmWakeup), re-check, sleep in poll() on
// its eventfd doorbell, read it; the waker polls the eventfd and writes it.
// Beside `futex` and `hsi-block-copy` it shows what the futex path saved.
class HsiBellEnd : public End {
 public:
  explicit HsiBellEnd(Endpoint ep) : ep_(std::move(ep)), out_(64), in_(64) {}

  absl::Status RoundTrip(uint64_t index) override {
    FillMessage(out_.data(), out_.size(), index);
    if (!ep_.tx().TrySend(out_, kTypeData)) return absl::ResourceExhaustedError("ring full in a ping-pong");
    absl::StatusOr<size_t> n = ReceiveOne();
    if (!n.ok()) return n.status();
    if (IndexOf(in_.data()) != index) return EchoMismatch(index, IndexOf(in_.data()));
    return absl::OkStatus();
  }
  absl::Status StopEcho() override {
    FillMessage(out_.data(), out_.size(), kStopIndex);
    return ep_.tx().TrySend(out_, kTypeData) ? absl::OkStatus() : absl::ResourceExhaustedError("ring full");
  }
  absl::Status Echo() override {
    for (;;) {
      absl::StatusOr<size_t> n = ReceiveOne();
      if (!n.ok()) return n.status();
      if (IndexOf(in_.data()) == kStopIndex) return absl::OkStatus();
      if (!ep_.tx().TrySend(absl::MakeConstSpan(in_.data(), *n), kTypeData)) {
        return absl::ResourceExhaustedError("ring full in a ping-pong");
      }
    }
  }
  absl::Status Source(const StreamStop&, Tally*) override {
    return absl::UnimplementedError("hsi-block-bell has no stream");
  }
  absl::Status Sink(SinkTimer*, Tally*) override { return absl::UnimplementedError("hsi-block-bell has no stream"); }

 private:
  absl::StatusOr<size_t> ReceiveOne() {
    RingConsumer& rx = ep_.rx();
    const absl::Time deadline = absl::Now() + kPeerTimeout;
    for (;;) {
      absl::StatusOr<size_t> n = rx.TryReceive(absl::MakeSpan(in_));
      if (n.ok() || n.status().code() != absl::StatusCode::kUnavailable) return n;
      rx.ArmWakeup();
      n = rx.TryReceive(absl::MakeSpan(in_));
      if (n.ok() || n.status().code() != absl::StatusCode::kUnavailable) {
        rx.DisarmWakeup();
        return n;
      }
      pollfd p = {ep_.fd(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(kPeerTimeout)));
      uint64_t count;
      (void)::read(ep_.fd(), &count, sizeof(count));
      rx.DisarmWakeup();
      if (absl::Now() > deadline) return absl::DeadlineExceededError("hsi-block-bell: no frame");
    }
  }
  Endpoint ep_;
  std::vector<uint8_t> out_, in_;
};

class HsiBellLink : public Link {
 public:
  explicit HsiBellLink(EndpointFdPair fds) : fds_(std::move(fds)) {}
  absl::StatusOr<std::unique_ptr<End>> Open(Side side) override {
    EndpointFds mine = side == Side::kA ? std::move(fds_.a) : std::move(fds_.b);
    fds_ = EndpointFdPair{};
    absl::StatusOr<Endpoint> ep = Endpoint::Open(std::move(mine), kBellGeometry);
    if (!ep.ok()) return ep.status();
    return std::unique_ptr<End>(new HsiBellEnd(std::move(*ep)));
  }

 private:
  EndpointFdPair fds_;
};

class HsiBellTransport : public Transport {
 public:
  std::string key() const override { return "hsi-block-bell"; }
  std::string label() const override { return "hsi block, eventfd bell"; }
  bool streams() const override { return false; }
  bool sized() const override { return false; }
  absl::StatusOr<std::unique_ptr<Link>> Prepare(size_t, const std::string&) override {
    absl::StatusOr<EndpointFdPair> fds = CreateEndpointFds(kBellGeometry);
    if (!fds.ok()) return fds.status();
    return std::unique_ptr<Link>(new HsiBellLink(std::move(*fds)));
  }
};

}  // namespace

std::unique_ptr<Transport> MakeFutexTransport() { return std::make_unique<FutexTransport>(); }
std::unique_ptr<Transport> MakeHsiBellTransport() { return std::make_unique<HsiBellTransport>(); }

}  // namespace hsi::bench::matrix
