// tools/hsi-ctcm/channel.cc: see channel.h.
#include "channel.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "block.h"

namespace hsi::ctcm {
namespace {

void Log(const std::string& line) { std::fprintf(stderr, "hsi-ctcm: %s\n", line.c_str()); }

// The first few of each kind of event, then every 1000th: a flood of bad
// blocks cannot flood the log.
bool Rarely(uint64_t count) { return count <= 5 || count % 1000 == 0; }

// How long one Open() waits for the other end before it looks whether the
// channel is stopping (and opens again).
constexpr absl::Duration kOpenSlice = absl::Seconds(1);

}  // namespace

Channel::Channel(ChannelOptions options, std::shared_ptr<CtcDevice> device)
    : o_(std::move(options)), max_packet_(MaxPacketForBlock(o_.block_size)), device_(std::move(device)) {}

Channel::~Channel() { Stop(); }

absl::Status Channel::Start() {
  wake_ = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (wake_.get() < 0) return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void Channel::Wake() {
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

bool Channel::Offer(std::vector<std::vector<uint8_t>>* packets) {
  std::lock_guard<std::mutex> l(mu_);
  if (device_ == nullptr) {
    tx_no_channel_ += packets->size();
  } else {
    for (auto& p : *packets) {
      queued_bytes_ += p.size();
      queue_.push_back(std::move(p));
    }
    // Out of WaitIncoming() to write; never during a write (waiting_ is
    // set only around the wait).
    if (waiting_ && !packets->empty()) {
      device_->Interrupt();
      waiting_ = false;
    }
  }
  packets->clear();
  full_ = queued_bytes_ >= o_.queue_bytes;
  return !full_;
}

absl::Status Channel::failure() const {
  std::lock_guard<std::mutex> l(mu_);
  return failure_;
}

void Channel::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    if (device_ != nullptr) device_->Interrupt();
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> l(mu_);
  c_.tx_no_channel = tx_no_channel_;
}

void Channel::Run() {
  // Signals are the main thread's (it polls a signalfd).
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);

  BlockWriter block(o_.block_size);
  std::vector<uint8_t> in;
  in.reserve(o_.block_size);
  const std::string self = o_.host->lpar();
  for (;;) {
    std::shared_ptr<CtcDevice> dev;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_ || !failure_.ok()) break;
      dev = device_;
      if (dev != nullptr) {
        // Under mu_, as every Interrupt() but Stop's is: one that comes
        // after this is for a wait this thread has not begun.
        dev->ClearInterrupt();
        bool took = false;
        while (!queue_.empty() && block.Fits(queue_.front().size()) && block.count() < 0xFFFF) {
          const std::vector<uint8_t>& p = queue_.front();
          // The main thread offers IP packets only (IpProtocol checked).
          block.Add(p, *IpProtocol(p));
          queued_bytes_ -= p.size();
          queue_.pop_front();
          took = true;
        }
        if (took && full_ && queued_bytes_ < o_.queue_bytes) {
          full_ = false;
          Wake();
        }
        waiting_ = block.count() == 0;
      }
    }
    if (dev == nullptr) {
      Reopen(absl::OkStatus());
      continue;
    }
    const std::string peer = dev->options().peer_lpar;
    if (block.count() == 0) {
      // Nothing to send: wait for the other end's write (or an Offer()).
      const absl::Status w = dev->WaitIncoming(absl::InfiniteFuture());
      {
        std::lock_guard<std::mutex> l(mu_);
        waiting_ = false;
      }
      if (absl::IsCancelled(w)) continue;
      if (!w.ok()) {
        Reopen(w);
        continue;
      }
    }
    // The device is busy while the other end's write is pending: take it
    // first (rule 1).
    absl::StatusOr<bool> got = dev->TryCopy(&in);
    if (!got.ok()) {
      Reopen(got.status());
      continue;
    }
    if (*got) {
      dev->Complete();
      Deliver(in, peer);
      continue;
    }
    if (block.count() == 0) continue;  // woken, but the write was withdrawn
    const absl::StatusOr<bool> started =
        dev->WriteIfIdle(block.bytes(), absl::Now() + o_.write_timeout);
    if (started.ok() && !*started) continue;  // the other end's write came first: take it
    const absl::Status s = started.status();
    if (s.ok()) {
      ++c_.tx_blocks;
      c_.tx_packets += block.count();
      c_.tx_bytes += block.bytes().size() - kBlockHeader - kPacketHeader * block.count();
      c_.tx_max_batch = std::max<uint64_t>(c_.tx_max_batch, block.count());
      block.Clear();
    } else if (absl::IsAborted(s)) {
      // A collision; both ends slept the recovery delay (rule 2).
      ++c_.collisions;
      if (self > peer) {
        const absl::Status w = dev->WaitIncoming(absl::Now() + dev->options().recovery);
        if (!w.ok() && !absl::IsDeadlineExceeded(w) && !absl::IsCancelled(w)) Reopen(w);
      }
    } else if (absl::IsDeadlineExceeded(s)) {
      c_.tx_timeout += block.count();
      if (Rarely(c_.tx_timeout)) {
        Log(absl::StrCat("CTC ", o_.device.ToString(), ": LPAR \"", peer, "\" did not take a write of ",
                         block.count(), " packets in ", absl::FormatDuration(o_.write_timeout),
                         "; dropped (", c_.tx_timeout, " packets so far)"));
      }
      block.Clear();
    } else if (absl::IsCancelled(s)) {
      // Stop(): the loop ends.
    } else {
      c_.tx_channel_down += block.count();
      block.Clear();
      Reopen(s);
    }
  }
}

void Channel::Deliver(const std::vector<uint8_t>& block, const std::string& from) {
  if (absl::Status s = ParseBlock(block, max_packet_, &packets_); !s.ok()) {
    if (Rarely(++c_.rx_bad_block)) {
      Log(absl::StrCat("CTC ", o_.device.ToString(), ": dropped a block of ", block.size(), " bytes from LPAR \"",
                       from, "\": ", s.message(), " (", c_.rx_bad_block, " so far)"));
    }
    return;
  }
  ++c_.rx_blocks;
  for (const BlockPacket& p : packets_) {
    const ssize_t n = ::write(o_.tun_fd, p.bytes.data(), p.bytes.size());
    if (n == static_cast<ssize_t>(p.bytes.size())) {
      ++c_.rx_packets;
      c_.rx_bytes += p.bytes.size();
    } else if (Rarely(++c_.rx_device_error)) {
      Log(absl::StrCat("write of a ", p.bytes.size(), "-byte packet to the device failed: ",
                       n < 0 ? std::strerror(errno) : "short write", " (", c_.rx_device_error, " so far)"));
    }
  }
}

void Channel::Reopen(const absl::Status& why) {
  std::shared_ptr<CtcDevice> old;
  {
    std::lock_guard<std::mutex> l(mu_);
    old = std::move(device_);
    device_ = nullptr;
    tx_no_channel_ += queue_.size();
    queue_.clear();
    queued_bytes_ = 0;
    if (full_) {
      full_ = false;
      Wake();
    }
    if (stopping_) return;
  }
  const std::string name = absl::StrCat("CTC ", o_.device.ToString());
  if (old != nullptr) {
    ++c_.channel_downs;
    Log(absl::StrCat(name, " went down: ", why.message(), "; opening it again, waiting for the other end"));
    if (o_.carrier) o_.carrier(false);
    (void)o_.host->Close(o_.device);  // kNotFound if hsid took it down already
  }
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) return;
    }
    absl::StatusOr<std::shared_ptr<CtcDevice>> d = o_.host->Open(o_.device, absl::Now() + kOpenSlice);
    if (d.ok()) {
      if ((*d)->options().block_size != o_.block_size) {
        // The device was defined anew with another block size: the
        // interface's MTU no longer fits it.
        (void)o_.host->Close(o_.device);
        std::lock_guard<std::mutex> l(mu_);
        failure_ = absl::FailedPreconditionError(absl::StrCat(
            name, " now has block size ", (*d)->options().block_size, ", not ", o_.block_size, " as at the start"));
        Wake();
        return;
      }
      Log(absl::StrCat(name, c_.channel_downs == 0 ? " up" : " up again", " to LPAR \"",
                       (*d)->options().peer_lpar, "\""));
      {
        std::lock_guard<std::mutex> l(mu_);
        device_ = std::move(*d);
      }
      if (o_.carrier) o_.carrier(true);
      return;
    }
    const absl::Status& s = d.status();
    if (absl::IsDeadlineExceeded(s)) continue;
    if (absl::IsUnavailable(s) || absl::IsAlreadyExists(s)) {
      // hsid is gone (the host reconnects), the other end went while we
      // opened, or hsid has not yet seen our close: a moment, then again.
      (void)o_.host->WaitConnected(absl::Now() + kOpenSlice);
      absl::SleepFor(absl::Milliseconds(50));
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    failure_ = absl::Status(s.code(), absl::StrCat(name, ": ", s.message()));
    Wake();
    return;
  }
}

}  // namespace hsi::ctcm
