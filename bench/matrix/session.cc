// bench/matrix/session.cc: the session API as users take it, beside the
// bare ring: hsi::Session through a real hsid (a private one, started on
// first use with its built-in default config: CHPID F0, 16K frames, MTU 8K,
// 1 MiB rings, split pipe doorbells), one NIC per side, Nic::SendTo to send
// and Nic::Receive to receive, both copying, waiting as the row's mode says;
// the "-batch" row streams with Link::SendBatch/ReceiveBatch instead (64
// frames per batch, as the ring's zero-copy stream), its ping-pong as above.
//
// Each side attaches its NIC in its own child under an LPAR name of its
// cell, publishes its address in the cell's shared memory and reads the
// other's; side A then asks hsid for the link (Nic::Link) while side B waits
// in Nic::Receive (which answers hsid's offer) for A's first frame. hsid is
// off the data path from then on.
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "harness.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/hsid.h"
#include "transport.h"

namespace hsi::bench::matrix {
namespace {

constexpr uint32_t kChpid = 0xF0;
// hsid's default CHPID F0: maximum frame size 16K, MTU 8K.
constexpr size_t kDefaultMtu = 8192;

// Where the two sides meet: each publishes its NIC's address (release; the
// other acquires it), 0 until attached.
struct Rendezvous {
  std::atomic<uint32_t> addr[2];
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

absl::StatusOr<uint32_t> AwaitAddress(std::atomic<uint32_t>* slot) {
  const absl::Time deadline = absl::Now() + kPeerTimeout;
  for (;;) {
    // Acquire pairs with the other side's release store of its address.
    const uint32_t a = slot->load(std::memory_order_acquire);
    if (a != 0) return a;
    if (absl::Now() > deadline) return absl::DeadlineExceededError("session: the other side never attached its NIC");
    ::sched_yield();
  }
}

class SessionEnd : public End {
 public:
  SessionEnd(Session session, Nic nic, Address peer, size_t size, WaitMode mode, bool batch)
      : session_(std::move(session)),
        nic_(std::move(nic)),
        peer_(peer),
        size_(size),
        batch_(batch),
        sliding_(mode, kPeerTimeout),
        out_(batch ? kBatch * size : size),
        in_(std::max<size_t>(batch ? kBatch * size : size, 8)) {}

  // The batched stream's link handle (after the hello).
  absl::Status OpenLink() {
    absl::StatusOr<hsi::Link> l = nic_.Link(peer_, Wait::Block(absl::Now() + kPeerTimeout));
    if (!l.ok()) return l.status();
    link_ = std::move(*l);
    return absl::OkStatus();
  }

  // Side B, before the barrier: the first frame from A (it answers hsid's
  // link offer on the way).
  absl::Status AwaitHello() {
    absl::StatusOr<Received> r = nic_.Receive(absl::MakeSpan(in_), Wait::Block(absl::Now() + kPeerTimeout));
    if (!r.ok()) return r.status();
    if (r->source != peer_) return absl::DataLossError("session: hello from an unexpected source");
    return absl::OkStatus();
  }
  absl::Status SendHello() {
    FillMessage(out_.data(), size_, 0);
    return nic_.SendTo(peer_, Out(), Wait::Block(absl::Now() + kPeerTimeout));
  }

  absl::Status RoundTrip(uint64_t index) override {
    FillMessage(out_.data(), size_, index);
    if (absl::Status s = nic_.SendTo(peer_, Out(), sliding_.Next()); !s.ok()) return s;
    absl::StatusOr<Received> r = nic_.Receive(absl::MakeSpan(in_), sliding_.Next());
    if (!r.ok()) return r.status();
    const uint64_t got = IndexOf(in_.data());
    if (r->length != size_ || got != index) {
      return absl::DataLossError(absl::StrCat("session: echo of message ", index, " carries index ", got, ", ",
                                              r->length, " bytes"));
    }
    return absl::OkStatus();
  }
  absl::Status StopEcho() override { return SendIndex(kStopIndex); }
  absl::Status Echo() override {
    for (;;) {
      absl::StatusOr<Received> r = nic_.Receive(absl::MakeSpan(in_), sliding_.Next());
      if (!r.ok()) return r.status();
      if (r->length >= 8 && IndexOf(in_.data()) == kStopIndex) return absl::OkStatus();
      if (absl::Status s = nic_.SendTo(peer_, absl::MakeConstSpan(in_.data(), r->length), sliding_.Next());
          !s.ok()) {
        return s;
      }
    }
  }

  absl::Status Source(const StreamStop& stop, Tally* sent) override {
    if (batch_) return SourceBatched(stop, sent);
    for (uint64_t i = 0; !StopRequested(stop); ++i) {
      FillMessage(out_.data(), size_, i);
      if (absl::Status s = nic_.SendTo(peer_, Out(), sliding_.Next()); !s.ok()) return s;
      ++sent->frames;
      sent->checksum += MessageSum(size_, i);
    }
    return SendIndex(kEndIndex);
  }
  absl::Status Sink(SinkTimer* timer, Tally* got) override {
    if (batch_) return SinkBatched(timer, got);
    for (;;) {
      absl::StatusOr<Received> r = nic_.Receive(absl::MakeSpan(in_), sliding_.Next());
      if (!r.ok()) return r.status();
      const uint64_t index = IndexOf(in_.data());
      if (index == kEndIndex) return absl::OkStatus();
      if (r->length != size_ || index != got->frames) {
        return absl::DataLossError(absl::StrCat("stream: message ", index, " of ", r->length,
                                                " bytes where message ", got->frames, " was due"));
      }
      got->checksum += WordSum(in_.data(), size_);
      ++got->frames;
      timer->Due();
    }
  }

 private:
  // The one message of a ping or a send (out_ holds a batch in the batch row).
  absl::Span<const uint8_t> Out() const { return absl::MakeConstSpan(out_.data(), size_); }
  static constexpr size_t kBatch = 64;  // as the ring's zero-copy stream (StreamBatch)

  // Link::SendBatch of kBatch messages at a time.
  absl::Status SourceBatched(const StreamStop& stop, Tally* sent) {
    std::vector<absl::Span<const uint8_t>> spans(kBatch);
    for (size_t j = 0; j < kBatch; ++j) spans[j] = absl::MakeConstSpan(out_.data() + j * size_, size_);
    for (uint64_t i = 0; !StopRequested(stop); i += kBatch) {
      for (size_t j = 0; j < kBatch; ++j) {
        FillMessage(out_.data() + j * size_, size_, i + j);
        sent->checksum += MessageSum(size_, i + j);
      }
      size_t n = 0;
      if (absl::Status s = link_.SendBatch(spans, sliding_.Next(), &n); !s.ok()) return s;
      sent->frames += n;
    }
    out_.assign(out_.size(), 0);
    const uint64_t end = kEndIndex;
    std::memcpy(out_.data(), &end, 8);
    return link_.Send(Out(), sliding_.Next());
  }
  // Link::ReceiveBatch of up to kBatch messages at a time.
  absl::Status SinkBatched(SinkTimer* timer, Tally* got) {
    std::vector<size_t> lens(kBatch);
    for (;;) {
      absl::StatusOr<size_t> n = link_.ReceiveBatch(absl::MakeSpan(in_), absl::MakeSpan(lens), sliding_.Next());
      if (!n.ok()) return n.status();
      for (size_t j = 0; j < *n; ++j) {
        const uint8_t* p = in_.data() + j * size_;
        const uint64_t index = IndexOf(p);
        if (index == kEndIndex) return absl::OkStatus();
        if (lens[j] != size_ || index != got->frames) {
          return absl::DataLossError(absl::StrCat("stream: message ", index, " of ", lens[j],
                                                  " bytes where message ", got->frames, " was due"));
        }
        got->checksum += WordSum(p, size_);
        ++got->frames;
        timer->Due();
      }
    }
  }

  absl::Status SendIndex(uint64_t index) {
    std::memset(out_.data(), 0, out_.size());
    std::memcpy(out_.data(), &index, 8);
    return nic_.SendTo(peer_, Out(), sliding_.Next());
  }

  Session session_;  // declared first: the NIC goes before its session
  Nic nic_;
  hsi::Link link_;  // the batched stream's
  Address peer_;
  size_t size_;
  bool batch_;
  SlidingWait sliding_;
  std::vector<uint8_t> out_, in_;
};

class SessionLink : public Link {
 public:
  SessionLink(std::string socket, std::string tag, SharedMemory mem, size_t size, WaitMode mode, bool batch)
      : socket_(std::move(socket)),
        tag_(std::move(tag)),
        mem_(std::move(mem)),
        size_(size),
        mode_(mode),
        batch_(batch) {}

  absl::StatusOr<std::unique_ptr<End>> Open(Side side) override {
    const int me = side == Side::kA ? 0 : 1;
    auto* rv = static_cast<Rendezvous*>(mem_.data());
    absl::StatusOr<Session> session =
        Session::Connect({.socket_path = socket_, .lpar = absl::StrCat(tag_, me == 0 ? "-a" : "-b")});
    if (!session.ok()) return session.status();
    absl::StatusOr<Nic> nic = session->AttachNic(kChpid);
    if (!nic.ok()) return nic.status();
    // Release pairs with the other side's acquire in AwaitAddress().
    rv->addr[me].store(nic->address().value(), std::memory_order_release);
    absl::StatusOr<uint32_t> peer = AwaitAddress(&rv->addr[1 - me]);
    if (!peer.ok()) return peer.status();
    auto end =
        std::make_unique<SessionEnd>(std::move(*session), std::move(*nic), Address(*peer), size_, mode_, batch_);
    if (absl::Status s = me == 0 ? end->SendHello() : end->AwaitHello(); !s.ok()) return s;
    if (batch_) {
      if (absl::Status s = end->OpenLink(); !s.ok()) return s;
    }
    return std::unique_ptr<End>(std::move(end));
  }

 private:
  std::string socket_;
  std::string tag_;
  SharedMemory mem_;
  size_t size_;
  WaitMode mode_;
  bool batch_;
};

class SessionTransport : public Transport {
 public:
  SessionTransport(WaitMode mode, bool batch) : mode_(mode), batch_(batch) {}
  std::string key() const override {
    return absl::StrCat("session-", WaitModeName(mode_), batch_ ? "-batch" : "");
  }
  std::string label() const override {
    return batch_ ? absl::StrCat("session ", WaitModeName(mode_), " (Link batch)")
                  : absl::StrCat("session ", WaitModeName(mode_), " (Nic)");
  }
  bool fits(size_t size) const override { return size >= 8 && size <= kDefaultMtu; }
  absl::StatusOr<std::unique_ptr<Link>> Prepare(size_t size, const std::string& tag) override {
    if (!hsid_) {
      hsid_ = std::make_unique<testing::Hsid>();
      if (!hsid_->Start()) {
        start_error_ = absl::StrCat("hsid (", testing::HsidPath(), ") did not start: ", hsid_->log());
      }
    }
    if (!start_error_.empty()) return absl::UnavailableError(start_error_);
    absl::StatusOr<SharedMemory> mem = SharedMemory::Create(sizeof(Rendezvous));
    if (!mem.ok()) return mem.status();
    return std::unique_ptr<Link>(new SessionLink(hsid_->socket(), tag, std::move(*mem), size, mode_, batch_));
  }

 private:
  WaitMode mode_;
  bool batch_;
  // One hsid per transport (per wait mode), started on first use; the
  // destructor kills and reaps it. Children reach it through its socket.
  std::unique_ptr<testing::Hsid> hsid_;
  std::string start_error_;
};

}  // namespace

std::unique_ptr<Transport> MakeSessionTransport(WaitMode mode, bool batch) {
  return std::make_unique<SessionTransport>(mode, batch);
}

}  // namespace hsi::bench::matrix
