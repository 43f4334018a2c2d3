// ctc.cc: one end of a CTC connection over two half-channels (hsi/ctc.h,
// layout and ordering in internal/ctc_layout.h).
#include "hsi/ctc.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <new>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "internal/ctc_layout.h"
#include "internal/futex.h"

namespace hsi {

using internal::CtcHalfCounters;
using internal::CtcHalfHeader;
using internal::CtcHalfState;
using internal::kCtcBufferOffset;

namespace {

constexpr absl::Duration kWaitSlice = absl::Milliseconds(20);
// How long a writer that withdrew waits for a reader that had already
// committed to take its write (a copy of at most block_size bytes).
constexpr absl::Duration kCommittedTake = absl::Seconds(5);

// The shared futex helpers of libhsi (internal/futex.h), on a 32-bit word
// of a half-channel (a memfd both processes map: shared, not PRIVATE).
// A sleep is at most kWaitSlice, so a missed wake costs no more than that.
void FutexWait(const std::atomic<uint32_t>* word, uint32_t seen, absl::Time deadline) {
  internal::FutexWaitUntil(reinterpret_cast<const uint32_t*>(word), seen,
                           std::min(deadline, absl::Now() + kWaitSlice));
}

void FutexWake(const std::atomic<uint32_t>* word) { internal::FutexWake(reinterpret_cast<const uint32_t*>(word)); }

}  // namespace

size_t CtcSegmentSize(uint32_t block_size) {
  const size_t page = 4096;
  return (kCtcBufferOffset + block_size + page - 1) / page * page;
}

absl::Status CheckCtcBlockSize(uint32_t block_size) {
  if (block_size < 64 || block_size > kMaxCtcBlockSize || block_size % 64 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("CTC block size ", block_size, ": want a multiple of 64 in 64..",
                                                   kMaxCtcBlockSize));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> CreateCtcSegment(uint32_t block_size, const std::string& name) {
  if (absl::Status s = CheckCtcBlockSize(block_size); !s.ok()) return s;
  return Segment::CreateMemfd(name, CtcSegmentSize(block_size));
}

absl::StatusOr<CtcPairFds> CreateCtcPairFds(uint32_t block_size) {
  absl::StatusOr<UniqueFd> a = CreateCtcSegment(block_size, "hsi-ctc-a");
  if (!a.ok()) return a.status();
  absl::StatusOr<UniqueFd> b = CreateCtcSegment(block_size, "hsi-ctc-b");
  if (!b.ok()) return b.status();
  CtcPairFds p;
  p.a.peer = UniqueFd(::fcntl(b->get(), F_DUPFD_CLOEXEC, 0));
  p.b.peer = UniqueFd(::fcntl(a->get(), F_DUPFD_CLOEXEC, 0));
  if (!p.a.peer.valid() || !p.b.peer.valid()) return absl::ErrnoToStatus(errno, "dup of a CTC half-channel");
  p.a.own = std::move(*a);
  p.b.own = std::move(*b);
  return p;
}

std::optional<CtcCounters> ReadCtcSegmentCounters(int fd) {
  alignas(64) unsigned char buf[kCtcBufferOffset];
  if (::pread(fd, buf, sizeof(buf), 0) != static_cast<ssize_t>(sizeof(buf))) return std::nullopt;
  CtcHalfHeader h;
  std::memcpy(&h, buf, sizeof(h));
  if (h.magic != internal::kCtcMagic || h.version != internal::kCtcVersion) return std::nullopt;
  uint64_t v[8];
  std::memcpy(v, buf + internal::CtcHalf::kCounters, sizeof(v));
  return CtcCounters{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
}

struct CtcDevice::Impl {
  Segment own, peer;
  CtcOptions opt;
  std::string name;  // "CTC D000"
  CtcHalfState* my = nullptr;
  const CtcHalfState* their = nullptr;
  CtcHalfCounters* ctr = nullptr;
  uint8_t* my_buf = nullptr;
  const uint8_t* their_buf = nullptr;

  // Owner-thread state (mirrors of our own words, and the peer's last
  // values, for the monotonic checks).
  uint64_t write_seq = 0;
  uint64_t done_seq = 0;  // the last peer write we finished
  uint64_t copied = 0;    // a peer write TryCopy() copied, not yet completed
  uint64_t copied_len = 0;
  struct Seen {
    uint64_t withdrawn = 0, write_seq = 0, done_seq = 0;
  } seen;

  std::atomic<bool> interrupted{false};
  std::atomic<bool> is_broken{false};
  mutable std::mutex mu;  // guards broken
  absl::Status broken;

  // The peer's words, loaded once each and checked.
  struct PeerView {
    uint64_t withdrawn, write_seq, done;
    uint64_t done_seq() const { return done >> 1; }
    bool rejected() const { return (done & 1) != 0; }
  };

  absl::Status Broken() const {
    std::lock_guard<std::mutex> l(mu);
    return broken;
  }
  absl::Status Break(std::string what) {
    std::lock_guard<std::mutex> l(mu);
    if (broken.ok()) {
      broken = absl::DataLossError(absl::StrCat(name, ": the peer's half-channel ", what, "; device broken"));
      ctr->broken.store(1, std::memory_order_relaxed);
      is_broken.store(true, std::memory_order_release);
    }
    return broken;
  }

  absl::StatusOr<PeerView> LoadPeer() {
    PeerView v;
    // Acquire pairs with the peer's store of withdrawn, made after it
    // announced that write: withdrawn <= write_seq for an honest peer.
    v.withdrawn = their->withdrawn.load(std::memory_order_acquire);
    // seq_cst: the load half of the Dekker pair with our write_seq store;
    // also an acquire pairing with the peer's seq_cst store of write_seq,
    // made after its buffer and write_len.
    v.write_seq = their->write_seq.load(std::memory_order_seq_cst);
    // seq_cst/acquire pairs with the peer's store of done in Complete() or
    // a rejection: its verdict on our write.
    v.done = their->done.load(std::memory_order_seq_cst);
    if (v.write_seq < seen.write_seq) {
      return Break(absl::StrCat("went back: write_seq ", v.write_seq, " after ", seen.write_seq));
    }
    if (v.withdrawn < seen.withdrawn || v.withdrawn > v.write_seq) {
      return Break(absl::StrCat("is inconsistent: withdrawn ", v.withdrawn, " (was ", seen.withdrawn,
                                ", write_seq ", v.write_seq, ")"));
    }
    if (v.done_seq() < seen.done_seq || v.done_seq() > write_seq) {
      return Break(absl::StrCat("is inconsistent: done ", v.done_seq(), " (was ", seen.done_seq,
                                ", our writes ", write_seq, ")"));
    }
    seen.withdrawn = v.withdrawn;
    seen.write_seq = v.write_seq;
    seen.done_seq = v.done_seq();
    return v;
  }

  bool PeerPending(const PeerView& v) const { return v.write_seq > done_seq && v.write_seq > v.withdrawn; }

  // After any change to our words: bump events and wake the peer if it sleeps.
  void Notify() {
    my->events.fetch_add(1, std::memory_order_seq_cst);
    // seq_cst: Dekker with the peer's waiting store and its events re-load.
    if (their->waiting.load(std::memory_order_seq_cst) != 0) FutexWake(&my->events);
  }

  // Sleeps until the peer's events move from `seen_events`, a slice, or
  // `deadline`.
  void Sleep(uint32_t seen_events, absl::Time deadline) {
    my->waiting.store(1, std::memory_order_seq_cst);
    if (their->events.load(std::memory_order_seq_cst) == seen_events &&
        !interrupted.load(std::memory_order_acquire)) {
      FutexWait(&their->events, seen_events, deadline);
    }
    my->waiting.store(0, std::memory_order_relaxed);
  }

  // Finishes the peer's write `n` without taking it.
  void Reject(uint64_t n) {
    done_seq = n;
    my->done.store(n << 1 | 1, std::memory_order_seq_cst);
  }

  void Recover() {
    const absl::Time t0 = absl::Now();
    if (opt.recovery > absl::ZeroDuration()) absl::SleepFor(opt.recovery);
    ctr->collisions.fetch_add(1, std::memory_order_relaxed);
    ctr->recovery_ns.fetch_add(static_cast<uint64_t>(absl::ToInt64Nanoseconds(absl::Now() - t0)),
                               std::memory_order_relaxed);
  }

  absl::Status Collision(uint64_t n, const char* who) {
    Recover();
    return absl::AbortedError(absl::StrCat(name, ": write collision (write ", n, ", ", who,
                                           "); both writes failed, recovered after ",
                                           absl::FormatDuration(opt.recovery)));
  }

  // The writer's withdrawal of its write `n` at a deadline or interrupt.
  // Returns OK if the reader had committed to take it and did.
  absl::Status Withdraw(uint64_t n, absl::Status why) {
    my->withdrawn.store(n, std::memory_order_seq_cst);
    // seq_cst: Dekker with the reader's taking store and withdrawn load: if
    // we do not see taking == n, the reader will see our withdrawal.
    const uint64_t t = their->taking.load(std::memory_order_seq_cst);
    Notify();
    if (t > write_seq) return Break(absl::StrCat("is inconsistent: taking ", t, " > our writes ", write_seq));
    if (t == n) {
      const absl::Time until = absl::Now() + kCommittedTake;
      for (;;) {
        const uint32_t ev = their->events.load(std::memory_order_acquire);
        absl::StatusOr<PeerView> v = LoadPeer();
        if (!v.ok()) return v.status();
        if (v->done_seq() >= n) {
          if (v->rejected()) break;
          Delivered(n);
          return absl::OkStatus();
        }
        if (absl::Now() >= until) return Break("took a write and never finished it");
        Sleep(ev, until);
      }
    }
    ctr->withdrawn.fetch_add(1, std::memory_order_relaxed);
    return why;
  }

  // Announces the write staged in our buffer and waits for its fate (the
  // rest of Write()).
  absl::Status Start(absl::Time deadline) {
    const uint64_t n = ++write_seq;
    // seq_cst store: releases buffer and length to the peer's acquire of
    // write_seq, and is the store half of the Dekker pair (collisions).
    my->write_seq.store(n, std::memory_order_seq_cst);
    Notify();
    for (;;) {
      const uint32_t ev = their->events.load(std::memory_order_acquire);
      absl::StatusOr<PeerView> v = LoadPeer();
      if (!v.ok()) return v.status();
      if (v->done_seq() >= n) {
        if (v->rejected()) return Collision(n, "the other side saw it");
        Delivered(n);
        return absl::OkStatus();
      }
      if (PeerPending(*v)) {
        // The other side's write is in flight while ours is: a collision.
        // Withdraw ours first, then reject theirs (so that a peer that sees
        // its write finished sees ours gone).
        my->withdrawn.store(n, std::memory_order_seq_cst);
        Reject(v->write_seq);
        Notify();
        return Collision(n, "this side saw it");
      }
      if (is_broken.load(std::memory_order_acquire)) return Broken();
      if (interrupted.load(std::memory_order_acquire)) {
        return Withdraw(n, absl::CancelledError(absl::StrCat(name, ": write interrupted")));
      }
      if (absl::Now() >= deadline) {
        return Withdraw(n, absl::DeadlineExceededError(
                                 absl::StrCat(name, ": the other side did not take the write in time; withdrawn")));
      }
      Sleep(ev, deadline);
    }
  }

  void Delivered(uint64_t) {
    ctr->writes.fetch_add(1, std::memory_order_relaxed);
    ctr->bytes_written.fetch_add(my->write_len.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
};

CtcDevice::CtcDevice() = default;
CtcDevice::~CtcDevice() = default;
CtcDevice::CtcDevice(CtcDevice&&) noexcept = default;
CtcDevice& CtcDevice::operator=(CtcDevice&&) noexcept = default;

absl::StatusOr<CtcDevice> CtcDevice::Open(Segment own, Segment peer, const CtcOptions& options) {
  const std::string name = absl::StrCat("CTC ", options.device.ToString());
  if (absl::Status s = CheckCtcBlockSize(options.block_size); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", s.message()));
  }
  const size_t size = CtcSegmentSize(options.block_size);
  if (own.size() != size || peer.size() != size || !own.writable() || peer.writable()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": half-channels must be ", size,
                                                   " bytes, own writable and peer's read-only"));
  }
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  impl->name = name;
  auto* base = static_cast<uint8_t*>(own.data());
  const auto* pbase = static_cast<const uint8_t*>(peer.data());
  auto* h = new (base + internal::CtcHalf::kHeader) CtcHalfHeader{};
  h->magic = internal::kCtcMagic;
  h->version = internal::kCtcVersion;
  h->block_size = options.block_size;
  h->device = options.device.value();
  // The memfd is zero-filled, which is each atomic's initial value; the
  // objects are begun here (placement new of zeroed atomics).
  impl->my = new (base + internal::CtcHalf::kState) CtcHalfState{};
  impl->ctr = new (base + internal::CtcHalf::kCounters) CtcHalfCounters{};
  impl->my_buf = base + kCtcBufferOffset;
  impl->their = reinterpret_cast<const CtcHalfState*>(pbase + internal::CtcHalf::kState);
  impl->their_buf = pbase + kCtcBufferOffset;
  impl->own = std::move(own);
  impl->peer = std::move(peer);
  CtcDevice d;
  d.impl_ = std::move(impl);
  return d;
}

absl::StatusOr<CtcDevice> CtcDevice::OpenFds(CtcEndFds fds, const CtcOptions& options) {
  const size_t size = CtcSegmentSize(options.block_size);
  absl::StatusOr<Segment> own = Segment::MapOwner(std::move(fds.own), size);
  if (!own.ok()) return own.status();
  absl::StatusOr<Segment> peer = Segment::MapPeer(std::move(fds.peer), size);
  if (!peer.ok()) return peer.status();
  return Open(std::move(*own), std::move(*peer), options);
}

absl::Status CtcDevice::Write(absl::Span<const uint8_t> data, absl::Time deadline) {
  return WriteImpl(data, deadline, /*if_idle=*/false).status();
}

absl::StatusOr<bool> CtcDevice::WriteIfIdle(absl::Span<const uint8_t> data, absl::Time deadline) {
  return WriteImpl(data, deadline, /*if_idle=*/true);
}

absl::StatusOr<bool> CtcDevice::WriteImpl(absl::Span<const uint8_t> data, absl::Time deadline, bool if_idle) {
  Impl& m = *impl_;
  if (m.is_broken.load(std::memory_order_acquire)) return m.Broken();
  if (data.empty() || data.size() > m.opt.block_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(m.name, ": write of ", data.size(), " bytes; the device takes 1..", m.opt.block_size));
  }
  std::memcpy(m.my_buf, data.data(), data.size());
  m.my->write_len.store(data.size(), std::memory_order_relaxed);
  if (if_idle) {
    // Last look before starting, after the copy, so that the window in
    // which both ends find the device idle is as short as it can be.
    absl::StatusOr<Impl::PeerView> v = m.LoadPeer();
    if (!v.ok()) return v.status();
    if (m.PeerPending(*v)) return false;  // busy: nothing started
  }
  const absl::Status st = m.Start(deadline);
  if (!st.ok()) return st;
  return true;
}

absl::Status CtcDevice::WaitIncoming(absl::Time deadline) {
  Impl& m = *impl_;
  for (;;) {
    if (m.is_broken.load(std::memory_order_acquire)) return m.Broken();
    const uint32_t ev = m.their->events.load(std::memory_order_acquire);
    absl::StatusOr<Impl::PeerView> v = m.LoadPeer();
    if (!v.ok()) return v.status();
    if (m.PeerPending(*v)) return absl::OkStatus();
    if (m.interrupted.load(std::memory_order_acquire)) return absl::CancelledError(absl::StrCat(m.name, ": interrupted"));
    if (absl::Now() >= deadline) return absl::DeadlineExceededError(absl::StrCat(m.name, ": nothing to read"));
    m.Sleep(ev, deadline);
  }
}

absl::StatusOr<bool> CtcDevice::TryCopy(std::vector<uint8_t>* out) {
  Impl& m = *impl_;
  if (m.is_broken.load(std::memory_order_acquire)) return m.Broken();
  if (m.copied != 0) return true;  // copied already, not completed
  absl::StatusOr<Impl::PeerView> v = m.LoadPeer();
  if (!v.ok()) return v.status();
  if (!m.PeerPending(*v)) return false;
  const uint64_t n = v->write_seq;
  m.my->taking.store(n, std::memory_order_seq_cst);
  // seq_cst: Dekker with the writer's withdrawn store and taking load.
  const uint64_t w = m.their->withdrawn.load(std::memory_order_seq_cst);
  if (w >= n) {
    m.Reject(n);  // withdrawn as we came: void
    m.Notify();
    return false;
  }
  // Acquire of write_seq (in LoadPeer) pairs with the writer's release:
  // length and buffer are those of write n.
  const uint64_t len = m.their->write_len.load(std::memory_order_relaxed);
  if (len == 0 || len > m.opt.block_size) {
    return m.Break(absl::StrCat("announced a write of ", len, " bytes (block size ", m.opt.block_size, ")"));
  }
  out->resize(len);
  std::memcpy(out->data(), m.their_buf, len);
  m.copied = n;
  m.copied_len = len;
  return true;
}

void CtcDevice::Complete() {
  Impl& m = *impl_;
  if (m.copied == 0) return;
  m.ctr->reads.fetch_add(1, std::memory_order_relaxed);
  m.ctr->bytes_read.fetch_add(m.copied_len, std::memory_order_relaxed);
  m.done_seq = m.copied;
  // Release (seq_cst) pairs with the writer's load of done: its write is taken.
  m.my->done.store(m.copied << 1, std::memory_order_seq_cst);
  m.copied = 0;
  m.Notify();
}

absl::StatusOr<size_t> CtcDevice::Read(std::vector<uint8_t>* out, absl::Time deadline) {
  for (;;) {
    if (absl::Status s = WaitIncoming(deadline); !s.ok()) return s;
    absl::StatusOr<bool> got = TryCopy(out);
    if (!got.ok()) return got.status();
    if (*got) {
      Complete();
      return out->size();
    }
  }
}

bool CtcDevice::PeerBusy() const {
  const Impl& m = *impl_;
  if (m.is_broken.load(std::memory_order_acquire)) return false;
  // Acquire loads pair with the peer's seq_cst stores of write_seq and
  // withdrawn, and ours of done (any thread of ours may ask): a hint only,
  // nothing is indexed by these values.
  const uint64_t withdrawn = m.their->withdrawn.load(std::memory_order_acquire);
  const uint64_t seq = m.their->write_seq.load(std::memory_order_acquire);
  const uint64_t done = m.my->done.load(std::memory_order_acquire) >> 1;
  return seq > done && seq > withdrawn;
}

void CtcDevice::Interrupt() {
  impl_->interrupted.store(true, std::memory_order_release);
  FutexWake(&impl_->their->events);  // where our own thread may sleep
}
void CtcDevice::TakeDown(absl::Status why) {
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    if (impl_->broken.ok()) impl_->broken = std::move(why);
  }
  impl_->is_broken.store(true, std::memory_order_release);
  Interrupt();
}

void CtcDevice::ClearInterrupt() { impl_->interrupted.store(false, std::memory_order_release); }

CtcCounters CtcDevice::counters() const {
  const CtcHalfCounters& c = *impl_->ctr;
  auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  return CtcCounters{ld(c.writes),     ld(c.bytes_written), ld(c.reads),     ld(c.bytes_read),
                     ld(c.collisions), ld(c.recovery_ns),   ld(c.withdrawn), ld(c.broken)};
}

absl::Status CtcDevice::status() const { return impl_->Broken(); }
const CtcOptions& CtcDevice::options() const { return impl_->opt; }

}  // namespace hsi
