#include "hsi/ring.h"

#include <sys/random.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "internal/futex.h"
#include "internal/ring_layout.h"
#include "internal/spin_wait.h"
#include "internal/syscall.h"

namespace hsi {
namespace {

using internal::FrameHeader;
using internal::kDataOffset;
using internal::kFrameHeaderSize;
using internal::kKindData;
using internal::kKindPad;
using internal::kRecordAlign;
using internal::LayoutOf;
using internal::PackMeta;
using internal::Record;
using internal::RecordSize;
using internal::SegmentHeader;
using internal::SegmentLayout;

constexpr uint64_t kMaxCapacity = uint64_t{1} << 30;
constexpr uint32_t kMaxMtu = 1u << 20;

// Checks a mapped segment against the geometry both sides agreed on. The
// header is copied out once; `who` names the segment in errors.
absl::StatusOr<SegmentHeader> CheckHeader(const Segment& seg,
                                          const RingGeometry& g,
                                          const char* who) {
  if (seg.data() == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(who, " segment is not mapped"));
  }
  if (seg.size() != g.segment_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, " segment is ", seg.size(), " bytes, geometry needs ", g.segment_size()));
  }
  SegmentHeader h;
  std::memcpy(&h, seg.data(), sizeof(h));
  if (absl::StatusOr<RingGeometry> checked = internal::CheckSegmentHeader(h, &g, who); !checked.ok()) {
    return checked.status();
  }
  return h;
}

absl::Status CheckRoles(const Segment& own, const Segment& peer,
                        const Doorbell& own_bell, const Doorbell& peer_bell) {
  if (!own.writable()) {
    return absl::InvalidArgumentError("own segment must be mapped with MapOwner");
  }
  if (peer.writable()) {
    return absl::InvalidArgumentError("peer segment must be mapped with MapPeer");
  }
  if (!own_bell.valid() || !peer_bell.valid()) {
    return absl::InvalidArgumentError("ring needs both doorbells");
  }
  return absl::OkStatus();
}

// The need-wakeup flag of one side (need_space or need_data): a new sleep
// epoch, shifted left by one, with bit 0 saying how the sleeper sleeps
// (kSleepsOnFutex: on the futex of the waker's "woke" word; clear: on its
// doorbell, as a NIC or an epoll caller does), then a seq_cst fence that
// pairs with the one in the other side's Publish(): either it sees the
// flag, or we see what it published. Returns the flag's value.
constexpr uint64_t kSleepsOnFutex = 1;
inline uint64_t ArmFlag(internal::Word& flag, uint64_t& epoch, bool futex) {
  const uint64_t v = (++epoch << 1) | (futex ? kSleepsOnFutex : 0);
  flag.store(v, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return v;
}

// The waker's half, after a side published: the seq_cst fence pairs with
// the sleeper's in ArmFlag() (either it sees what we published on its
// re-check, or we see its flag here); then, if it sleeps and was not woken
// for this sleep yet (`last_woken`), one wake-up the way its flag says: for
// a futex sleeper, store the flag's value in `woke` (our own segment; the
// release pairs with the sleeper's acquire load of it in SleepOn(), so if
// it sees its flag there, its re-check sees what we published) and
// FUTEX_WAKE it; else ring its doorbell. The flag is the peer's: a wrong
// value costs only the liar its own wake-up.
inline void WakeIfAsleep(const internal::Word& flag, uint64_t& last_woken, uint64_t& wakeups,
                         internal::Word& wakeups_sent, const Doorbell& bell, internal::Word& woke) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint64_t want = flag.load(std::memory_order_relaxed);
  if (want != 0 && want != last_woken) {
    last_woken = want;
    ++wakeups;
    wakeups_sent.store(wakeups, std::memory_order_relaxed);
    if ((want & kSleepsOnFutex) != 0) {
      woke.store(want, std::memory_order_release);
      internal::FutexWake(internal::FutexHalf(woke));
    } else {
      bell.Ring();
    }
  }
}

// One arming of a futex sleep: a futex flag, then the peer's answer word
// (acquire: pairs with the release store in its WakeIfAsleep()), loaded
// after the flag's fence. SleepOn() sleeps on it; a caller that sleeps
// itself, on many rings' words at once, takes it (ArmFutexWakeup).
inline FutexWakeup ArmFutex(internal::Word& flag, uint64_t& epoch, const internal::Word& peer_woke) {
  const uint64_t armed = ArmFlag(flag, epoch, /*futex=*/true);
  const uint64_t seen = peer_woke.load(std::memory_order_acquire);
  return FutexWakeup{internal::FutexHalf(peer_woke), static_cast<uint32_t>(seen), seen == armed};
}

// Waits as `wait` says until ready(), sleeping on the futex of the peer's
// `peer_woke` word (in its read-only segment) with `flag` armed. Requires
// that ready() was checked once already. Each round: arm (flag value v),
// load peer_woke (acquire: pairs with the release store in the peer's
// WakeIfAsleep()), re-check, then sleep unless the peer answered v already:
// FUTEX_WAIT on the loaded value, so an answer stored after our load makes
// it return at once and one stored after we sleep comes with its wake-up.
// A peer that never answers costs us its own frames (or room) until the
// deadline; one that wakes us or moves its word for nothing costs us a
// re-check each time, never a missed frame; one that stores our flag
// value without reason makes us re-check at once, bounded by the deadline
// (docs/ring.md, "Waking").
template <typename Ready>
void SleepOn(internal::Word& flag, uint64_t& epoch, const internal::Word& peer_woke, const Wait& wait,
             Ready& ready) {
  FutexWakeup w{};
  internal::SpinThenSleep<64>(
      wait, ready, [] {}, [&] { w = ArmFutex(flag, epoch, peer_woke); },
      [&](absl::Time deadline) {
        if (w.answered) return absl::Now() < deadline;  // answered already: re-check
        return internal::FutexWaitUntil(w.word, w.value, deadline);
      },
      [&] { flag.store(0, std::memory_order_relaxed); });
}

inline void StoreRelease(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline void StoreRelaxed(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

}  // namespace

absl::Status RingGeometry::Validate() const {
  if (mtu == 0 || mtu > kMaxMtu) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring mtu ", mtu, " is outside 1..", kMaxMtu));
  }
  if (!std::has_single_bit(capacity) || capacity < 4096 || capacity > kMaxCapacity) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring capacity ", capacity, " is not a power of two in 4096..", kMaxCapacity));
  }
  if (capacity < 2 * RecordSize(mtu)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring capacity ", capacity, " is less than twice the largest record (",
        RecordSize(mtu), " bytes for mtu ", mtu, ")"));
  }
  return absl::OkStatus();
}

size_t RingGeometry::segment_size() const { return kDataOffset + capacity; }

absl::StatusOr<UniqueFd> CreateRingSegment(const RingGeometry& geometry,
                                           absl::string_view name) {
  if (absl::Status s = geometry.Validate(); !s.ok()) return s;
  absl::StatusOr<UniqueFd> fd = Segment::CreateMemfd(name, geometry.segment_size());
  if (!fd.ok()) return fd.status();
  SegmentHeader h{};
  h.magic = internal::kSegmentMagic;
  h.version = internal::kLayoutVersion;
  h.data_offset = kDataOffset;
  h.capacity = geometry.capacity;
  h.mtu = geometry.mtu;
  if (::getrandom(&h.nonce, sizeof(h.nonce), 0) != sizeof(h.nonce)) {
    return internal::ErrnoStatus(errno, "getrandom for ring nonce");
  }
  h.nonce |= 1;  // odd: a zeroed slot can never look like position 0
  // Written before anyone maps it, so no mapping is needed.
  if (::pwrite(fd->get(), &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h))) {
    return internal::ErrnoStatus(errno, "write ring segment header");
  }
  return fd;
}

absl::StatusOr<RingGeometry> InspectSealedRingSegment(int fd) {
  if (absl::Status s = internal::CheckSeals(fd, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE, "segment");
      !s.ok()) {
    return s;
  }
  SegmentHeader h{};
  if (::pread(fd, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h))) {
    return absl::InvalidArgumentError("segment: shorter than a segment header");
  }
  absl::StatusOr<RingGeometry> checked = internal::CheckSegmentHeader(h, nullptr, "handed-in");
  if (!checked.ok()) return absl::InvalidArgumentError(absl::StrCat("segment: ", checked.status().message()));
  const RingGeometry g = *checked;
  struct stat st;
  if (::fstat(fd, &st) < 0) return internal::ErrnoStatus(errno, "segment: fstat");
  if (static_cast<uint64_t>(st.st_size) != g.segment_size()) {
    return absl::InvalidArgumentError(absl::StrCat("segment: ", st.st_size, " bytes where its geometry (capacity ",
                                                   g.capacity, ", mtu ", g.mtu, ") needs ", g.segment_size()));
  }
  return g;
}

bool IsSealedAgainstWrites(int fd) { return internal::CheckSeals(fd, F_SEAL_FUTURE_WRITE, "segment").ok(); }

std::optional<SegmentCounters> ReadRingSegmentCounters(int fd) { return internal::ReadSegmentCounters(fd); }

absl::Status SeedRingPositions(const Segment& own, uint64_t tail, uint64_t head) {
  if (!own.writable() || own.data() == nullptr) return absl::InvalidArgumentError("seed: the segment is not mapped read-write");
  if (tail % kRecordAlign != 0 || head % kRecordAlign != 0) {
    return absl::InvalidArgumentError(absl::StrCat("seed: positions ", tail, "/", head, " are not ", kRecordAlign, "-byte aligned"));
  }
  internal::SegmentLayout* l = LayoutOf(own.data());
  // Relaxed: nobody else has the segment yet; handing it on (SCM_RIGHTS)
  // orders these stores before any peer's loads.
  l->tx.tail.store(tail, std::memory_order_relaxed);
  l->rx.head.store(head, std::memory_order_relaxed);
  return absl::OkStatus();
}

// ---------------------------------------------------------------- producer

absl::StatusOr<RingProducer> RingProducer::Create(const Segment& own,
                                                  const Segment& peer,
                                                  const Doorbell& own_bell,
                                                  const Doorbell& peer_bell,
                                                  const RingGeometry& geometry) {
  if (absl::Status s = geometry.Validate(); !s.ok()) return s;
  if (absl::Status s = CheckRoles(own, peer, own_bell, peer_bell); !s.ok()) return s;
  absl::StatusOr<SegmentHeader> own_h = CheckHeader(own, geometry, "producer's own");
  if (!own_h.ok()) return own_h.status();
  if (absl::StatusOr<SegmentHeader> h = CheckHeader(peer, geometry, "consumer's"); !h.ok()) {
    return h.status();
  }
  RingProducer p;
  p.own_ = LayoutOf(own.data());
  p.peer_ = LayoutOf(static_cast<const void*>(peer.data()));
  p.data_ = static_cast<uint8_t*>(own.data()) + kDataOffset;
  p.own_bell_ = &own_bell;
  p.peer_bell_ = &peer_bell;
  p.geometry_ = geometry;
  p.mask_ = geometry.capacity - 1;
  p.nonce_ = own_h->nonce;
  // Continue from what this side last published (0 for a new segment).
  p.tail_ = p.own_->tx.tail.load(std::memory_order_relaxed);
  p.head_cache_ = p.tail_ > geometry.capacity ? p.tail_ - geometry.capacity : 0;
  return p;
}

void RingProducer::Break(absl::Status status) {
  if (broken_.ok()) broken_ = std::move(status);
}

bool RingProducer::ReloadHead() {
  // Acquire pairs with the consumer's release of head in Publish(): it has
  // finished reading every byte before `head`, so we may overwrite them.
  const uint64_t head = peer_->rx.head.load(std::memory_order_acquire);
  if (head < head_cache_ || head > tail_ || head % kRecordAlign != 0) {
    Break(absl::DataLossError(absl::StrCat(
        "ring: consumer head ", head, " is invalid (previous head ", head_cache_,
        ", producer tail ", tail_, ", alignment ", kRecordAlign, ")")));
    return false;
  }
  head_cache_ = head;
  return true;
}

uint8_t* RingProducer::TryReserve(size_t len) {
  if (!broken_.ok() || len > geometry_.mtu) return nullptr;
  const uint64_t capacity = geometry_.capacity;
  const uint64_t record = RecordSize(len);
  uint64_t off = tail_ & mask_;
  const uint64_t contiguous = capacity - off;
  const uint64_t need = record <= contiguous ? record : contiguous + record;
  if (tail_ + need - head_cache_ > capacity) {
    if (!ReloadHead()) return nullptr;
    if (tail_ + need - head_cache_ > capacity) {
      if (!was_full_) {
        ++full_events_;
        was_full_ = true;
      }
      return nullptr;
    }
  }
  was_full_ = false;
  // A sniffer may still be copying what we are about to write over: its
  // re-checks must see what we published before (ring_layout.h).
  internal::ReleaseBeforeWriting();
  if (record > contiguous) {
    // Pad to the end of the ring so the frame is contiguous at offset 0.
    auto* pad = reinterpret_cast<FrameHeader*>(data_ + off);
    StoreRelaxed(&pad->meta, PackMeta(static_cast<uint32_t>(contiguous - kFrameHeaderSize), kKindPad, 0));
    StoreRelease(&pad->seq, tail_ ^ nonce_);
    tail_ += contiguous;
    off = 0;
  }
  reserved_off_ = off;
  reserved_len_ = len;
  reserved_ = true;
  return data_ + off + kFrameHeaderSize;
}

absl::StatusOr<absl::Span<uint8_t>> RingProducer::Reserve(size_t len, const Wait& wait) {
  if (len > geometry_.mtu) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring: frame length ", len, " exceeds MTU ", geometry_.mtu));
  }
  uint8_t* p = TryReserve(len);
  if (p != nullptr) return absl::Span<uint8_t>(p, len);
  if (!broken_.ok()) return broken_;
  // Frames committed but not yet published must reach a sleeping consumer,
  // or it will never drain the ring we are waiting on.
  Publish();
  auto ready = [&] { return (p = TryReserve(len)) != nullptr || !broken_.ok(); };
  // The arm pairs with the fence in RingConsumer::Publish(): either it sees
  // our flag, or we see its head.
  SleepOn(own_->tx_wake.need_space, sleep_epoch_, peer_->rx_wake.woke_space, wait, ready);
  if (p != nullptr) return absl::Span<uint8_t>(p, len);
  if (!broken_.ok()) return broken_;
  return absl::DeadlineExceededError(absl::StrCat(
      "ring: no room for a ", len, "-byte frame before the deadline (",
      tail_ - head_cache_, " of ", geometry_.capacity, " bytes in use)"));
}

void RingProducer::CommitDeferred(size_t len, uint16_t type) {
  assert(reserved_ && len <= reserved_len_);
  auto* h = reinterpret_cast<FrameHeader*>(data_ + reserved_off_);
  StoreRelaxed(&h->meta, PackMeta(static_cast<uint32_t>(len), kKindData, type));
  // Release pairs with the consumer's acquire of seq in TryPeek(): payload
  // and meta are visible once seq is.
  StoreRelease(&h->seq, tail_ ^ nonce_);
  tail_ += RecordSize(len);
  ++frames_;
  bytes_ += len;
  reserved_ = false;
}

void RingProducer::Publish() {
  own_->tx.tail.store(tail_, std::memory_order_release);
  auto& c = own_->tx_counters;
  // Release: whoever acquires this count sees a tail at least as far (the
  // sniffer reads the count, then the tail, and never counts a frame it
  // will still read as missed).
  c.frames.store(frames_, std::memory_order_release);
  c.bytes.store(bytes_, std::memory_order_relaxed);
  c.full_events.store(full_events_, std::memory_order_relaxed);
  c.drops.store(drops_, std::memory_order_relaxed);
  // A consumer asleep for data learns of our frames.
  WakeIfAsleep(peer_->rx_wake.need_data, last_woken_, wakeups_, c.wakeups_sent, *peer_bell_, own_->tx_wake.woke_data);
}

void RingProducer::ArmWakeup() {
  Publish();  // frames committed but unpublished must reach the consumer
  ArmFlag(own_->tx_wake.need_space, sleep_epoch_, /*futex=*/false);
}

void RingProducer::DisarmWakeup() {
  own_->tx_wake.need_space.store(0, std::memory_order_relaxed);
}

FutexWakeup RingProducer::ArmFutexWakeup() {
  Publish();  // as ArmWakeup()
  return ArmFutex(own_->tx_wake.need_space, sleep_epoch_, peer_->rx_wake.woke_space);
}

bool RingProducer::TrySend(absl::Span<const uint8_t> payload, uint16_t type) {
  uint8_t* p = TryReserve(payload.size());
  if (p == nullptr) return false;
  if (!payload.empty()) std::memcpy(p, payload.data(), payload.size());
  Commit(payload.size(), type);
  return true;
}

absl::Status RingProducer::Send(absl::Span<const uint8_t> payload, const Wait& wait,
                                uint16_t type) {
  absl::StatusOr<absl::Span<uint8_t>> span = Reserve(payload.size(), wait);
  if (!span.ok()) return span.status();
  if (!payload.empty()) std::memcpy(span->data(), payload.data(), payload.size());
  Commit(payload.size(), type);
  return absl::OkStatus();
}

RingCounters RingProducer::counters() const {
  return RingCounters{frames_, bytes_, full_events_, drops_, wakeups_};
}

// ---------------------------------------------------------------- consumer

absl::StatusOr<RingConsumer> RingConsumer::Create(const Segment& own,
                                                  const Segment& peer,
                                                  const Doorbell& own_bell,
                                                  const Doorbell& peer_bell,
                                                  const RingGeometry& geometry) {
  if (absl::Status s = geometry.Validate(); !s.ok()) return s;
  if (absl::Status s = CheckRoles(own, peer, own_bell, peer_bell); !s.ok()) return s;
  if (absl::StatusOr<SegmentHeader> h = CheckHeader(own, geometry, "consumer's own"); !h.ok()) {
    return h.status();
  }
  // The producer's header is read once here; later changes to it are ignored.
  absl::StatusOr<SegmentHeader> peer_h = CheckHeader(peer, geometry, "producer's");
  if (!peer_h.ok()) return peer_h.status();
  RingConsumer c;
  c.own_ = LayoutOf(own.data());
  c.peer_ = LayoutOf(static_cast<const void*>(peer.data()));
  c.data_ = static_cast<const uint8_t*>(peer.data()) + kDataOffset;
  c.own_bell_ = &own_bell;
  c.peer_bell_ = &peer_bell;
  c.geometry_ = geometry;
  c.mask_ = geometry.capacity - 1;
  c.nonce_ = peer_h->nonce;
  c.head_ = c.own_->rx.head.load(std::memory_order_relaxed);
  c.published_head_ = c.head_;
  return c;
}

void RingConsumer::Break(absl::Status status) {
  if (broken_.ok()) broken_ = std::move(status);
}

bool RingConsumer::TryPeek(Frame* frame) {
  if (peek_record_ != 0) {
    *frame = peeked_;
    return true;
  }
  if (!broken_.ok()) return false;
  // At most one padding record precedes a frame.
  for (int round = 0; round < 2; ++round) {
    const Record r = internal::ReadRecord(data_, geometry_.capacity, head_, nonce_, geometry_.mtu);
    if (r.verdict == Record::kNotWritten) return false;  // not written yet
    if (r.verdict == Record::kPad) {
      head_ += r.size;
      Publish();  // hand the padded space back now; it is rare
      continue;
    }
    if (r.verdict != Record::kData) {
      Break(absl::DataLossError(absl::StrCat("ring: ", internal::DescribeBadRecord(r, head_, geometry_.mtu))));
      return false;
    }
    peeked_.payload = absl::Span<const uint8_t>(r.payload, r.len);
    peeked_.type = r.type;
    peek_record_ = r.size;
    *frame = peeked_;
    return true;
  }
  return false;
}

absl::Status RingConsumer::Peek(Frame* frame, const Wait& wait) {
  if (TryPeek(frame)) return absl::OkStatus();
  if (!broken_.ok()) return broken_;
  // Released space must reach a producer that may be waiting for it.
  if (published_head_ != head_) Publish();
  return WaitForFrame(frame, wait);
}

absl::Status RingConsumer::WaitForFrame(Frame* frame, const Wait& wait) {
  bool got = false;
  auto ready = [&] { return (got = TryPeek(frame)) || !broken_.ok(); };
  // The arm pairs with the fence in RingProducer::Publish(): either it sees
  // our flag, or we see its frame.
  SleepOn(own_->rx_wake.need_data, sleep_epoch_, peer_->tx_wake.woke_data, wait, ready);
  if (got) return absl::OkStatus();
  if (!broken_.ok()) return broken_;
  return absl::DeadlineExceededError("ring: no frame arrived before the deadline");
}

void RingConsumer::ArmWakeup() {
  // Space released but not yet published must reach the producer first.
  if (published_head_ != head_) Publish();
  ArmFlag(own_->rx_wake.need_data, sleep_epoch_, /*futex=*/false);
}

void RingConsumer::DisarmWakeup() {
  own_->rx_wake.need_data.store(0, std::memory_order_relaxed);
}

FutexWakeup RingConsumer::ArmFutexWakeup() {
  if (published_head_ != head_) Publish();  // as ArmWakeup()
  return ArmFutex(own_->rx_wake.need_data, sleep_epoch_, peer_->tx_wake.woke_data);
}

void RingConsumer::ReleaseDeferred() {
  assert(peek_record_ != 0);
  head_ += peek_record_;
  ++frames_;
  bytes_ += peeked_.payload.size();
  peek_record_ = 0;
  if (head_ - published_head_ >= geometry_.capacity / 2) Publish();
}

void RingConsumer::Publish() {
  // Release pairs with the producer's acquire in ReloadHead(): we are done
  // reading every byte before head_.
  own_->rx.head.store(head_, std::memory_order_release);
  published_head_ = head_;
  auto& c = own_->rx_counters;
  c.frames.store(frames_, std::memory_order_relaxed);
  c.bytes.store(bytes_, std::memory_order_relaxed);
  // A producer asleep on a full ring learns of the space.
  WakeIfAsleep(peer_->tx_wake.need_space, last_woken_, wakeups_, c.wakeups_sent, *peer_bell_, own_->rx_wake.woke_space);
}

absl::StatusOr<size_t> RingConsumer::TryReceive(absl::Span<uint8_t> buffer, uint16_t* type) {
  Frame f;
  if (!TryPeek(&f)) {
    if (!broken_.ok()) return broken_;
    return absl::Status(absl::StatusCode::kUnavailable, "");
  }
  if (f.payload.size() > buffer.size()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "ring: frame of ", f.payload.size(), " bytes does not fit a ",
        buffer.size(), "-byte buffer"));
  }
  const size_t n = f.payload.size();
  if (n != 0) std::memcpy(buffer.data(), f.payload.data(), n);
  if (type != nullptr) *type = f.type;
  Release();
  return n;
}

absl::StatusOr<size_t> RingConsumer::Receive(absl::Span<uint8_t> buffer, const Wait& wait,
                                             uint16_t* type) {
  Frame f;
  if (absl::Status s = Peek(&f, wait); !s.ok()) return s;
  return TryReceive(buffer, type);
}

RingCounters RingConsumer::counters() const {
  return RingCounters{frames_, bytes_, 0, 0, wakeups_};
}

}  // namespace hsi
