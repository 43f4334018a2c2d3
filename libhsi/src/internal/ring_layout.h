// internal/ring_layout.h: the bytes of one side's segment, as shared memory.
//
// One segment per side of a link. Its owner writes everything in it; the peer
// only reads it. Offsets, never pointers. Each group that a different party
// reads in the hot path sits on its own 128-byte block (two cache lines, so
// the adjacent-line prefetcher does not drag a neighbour along).
//
//   0     header        written once at creation (magic, geometry, nonce)
//   128   tail          producer: published tail (observability, drain)
//   256   need_space    producer: sleep flag while waiting for room, 0 awake
//                       (epoch << 1, | 1 if it sleeps on a futex)
//   264   woke_data     producer: the consumer's need_data it last woke
//                       (the futex a sleeping consumer waits on)
//   384   tx counters   producer: frames, bytes, full events, drops, wake-ups
//   512   head          consumer: position up to which frames are released
//   640   need_data     consumer: sleep flag while waiting for data, 0 awake
//                       (epoch << 1, | 1 if it sleeps on a futex)
//   648   woke_space    consumer: the producer's need_space it last woke
//   768   rx counters   consumer: frames, bytes, wake-ups
//   4096  data          `capacity` bytes of frame records
#ifndef HSI_INTERNAL_RING_LAYOUT_H_
#define HSI_INTERNAL_RING_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hsi/ring.h"

namespace hsi::internal {

inline constexpr uint64_t kSegmentMagic = 0x3130495348494836ULL;  // "6HIHSI01"
// 2: the need-wakeup flags say in bit 0 whether the sleeper waits on the
// futex of the waker's woke_data/woke_space word or on its doorbell (1 and
// 2 do not understand each other's sleepers, so they do not link).
inline constexpr uint32_t kLayoutVersion = 2;
inline constexpr size_t kDataOffset = 4096;
inline constexpr size_t kRecordAlign = 16;
inline constexpr size_t kFrameHeaderSize = 16;

using Word = std::atomic<uint64_t>;
static_assert(Word::is_always_lock_free);

struct SegmentHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t data_offset;
  uint64_t capacity;
  uint32_t mtu;
  uint32_t reserved;
  uint64_t nonce;  // odd; XORed into every frame's seq
};

struct alignas(128) TxState {
  Word tail;
};
struct alignas(128) TxWake {
  Word need_space;
  // The consumer's need_data flag this producer last woke (futex sleepers
  // only): the futex word a consumer waiting for data sleeps on.
  Word woke_data;
};
struct alignas(128) TxCounters {
  Word frames, bytes, full_events, drops, wakeups_sent;
};
struct alignas(128) RxState {
  Word head;
};
struct alignas(128) RxWake {
  Word need_data;
  // The producer's need_space flag this consumer last woke (futex sleepers
  // only): the futex word a producer waiting for room sleeps on.
  Word woke_space;
};
struct alignas(128) RxCounters {
  Word frames, bytes, wakeups_sent;
};

struct SegmentLayout {
  alignas(128) SegmentHeader header;
  TxState tx;
  TxWake tx_wake;
  TxCounters tx_counters;
  RxState rx;
  RxWake rx_wake;
  RxCounters rx_counters;
};

static_assert(std::is_standard_layout_v<SegmentLayout>);
static_assert(std::is_trivially_copyable_v<SegmentHeader>);
static_assert(offsetof(SegmentLayout, tx) == 128);
static_assert(offsetof(SegmentLayout, tx_wake) == 256);
static_assert(offsetof(SegmentLayout, tx_counters) == 384);
static_assert(offsetof(SegmentLayout, rx) == 512);
static_assert(offsetof(SegmentLayout, rx_wake) == 640);
static_assert(offsetof(SegmentLayout, rx_counters) == 768);
static_assert(offsetof(SegmentLayout, tx_wake) + offsetof(TxWake, woke_data) == 264);
static_assert(offsetof(SegmentLayout, rx_wake) + offsetof(RxWake, woke_space) == 648);
static_assert(sizeof(TxWake) == 128 && sizeof(RxWake) == 128);
static_assert(sizeof(SegmentLayout) <= kDataOffset);

// The header of one frame record in the data area. `seq` is written last
// (release) by the producer; `meta` packs length (low 32 bits), kind (16) and
// the caller's type (high 16).
struct FrameHeader {
  uint64_t seq;
  uint64_t meta;
};
static_assert(sizeof(FrameHeader) == kFrameHeaderSize);
static_assert(std::atomic_ref<uint64_t>::required_alignment <= 8);

enum FrameKind : uint16_t { kKindData = 0x4446, kKindPad = 0x5041 };  // "FD", "AP"

inline constexpr uint64_t PackMeta(uint32_t len, uint16_t kind, uint16_t type) {
  return uint64_t{len} | (uint64_t{kind} << 32) | (uint64_t{type} << 48);
}
inline constexpr uint64_t RecordSize(uint64_t len) {
  return (kFrameHeaderSize + len + kRecordAlign - 1) & ~uint64_t{kRecordAlign - 1};
}

// The one way to view a mapped segment as a layout.
inline SegmentLayout* LayoutOf(void* base) {
  return static_cast<SegmentLayout*>(base);
}
inline const SegmentLayout* LayoutOf(const void* base) {
  return static_cast<const SegmentLayout*>(base);
}

// ------------------------------------------------------------------------
// The checks of a segment, one copy each: libhsi's ring, its sniffer and
// (to come) hsid use these, not their own.

// The segment header check. `h` is a copy (taken once) of a segment's
// header. Checks magic, layout version, data offset and an odd nonce, and
// the geometry: equal to `*expected` if given, else valid on its own
// (RingGeometry::Validate). `who` names the segment in messages ("producer's",
// "consumer's own"). Returns the header's geometry; kDataLoss saying what is
// wrong ("producer's segment header says capacity 8192, mtu 256, data
// offset 4096; expected ...").
absl::StatusOr<RingGeometry> CheckSegmentHeader(const SegmentHeader& h, const RingGeometry* expected,
                                                absl::string_view who);

// The seal check: `fd` is a memfd whose F_GET_SEALS holds every seal in
// `need` (F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_FUTURE_WRITE, ...). OK, or
// kInvalidArgument naming `who`: "<who>: fd 7 is not a sealable memfd
// (F_GET_SEALS: EINVAL)", "<who>: memfd is not sealed against future-write
// (seals 0x3, needs 0x13)".
absl::Status CheckSeals(int fd, int need, absl::string_view who);

// hsi::ReadRingSegmentCounters (hsi/ring.h), for libhsi's own use.
std::optional<SegmentCounters> ReadSegmentCounters(int fd);

// ------------------------------------------------------------------------
// The record reader: the one piece of code that reads a record of a ring's
// data area, used by the ring's consumer (RingConsumer::TryPeek), the
// sniffer and the ring reader fuzzer. It reads from memory a producer may
// be writing and a hostile one may have filled with anything: every word is
// loaded once, and nothing it returns points outside the ring.
//
// Lapped readers. The sniffer follows the producer without holding it back,
// so the producer may come round the ring and write over a record while the
// sniffer copies it. After its copy the sniffer re-checks the producer's
// sequence, seqlock style: the record's seq word (RecordUnchanged(): a
// record the producer committed over it has changed it) and the producer's
// published tail (more than 3/4 of the ring ahead: a record the producer is
// still writing may cover the bytes). So that these re-reads see what the
// producer stored before the bytes the copy may have caught, the producer
// issues a release fence before it writes any record (ReleaseBeforeWriting()
// in TryReserve) and the reader an acquire fence after its copy (in
// RecordUnchanged()): if the copy saw a byte written after that release
// fence, the re-reads see the tail and the seqs stored before it. This holds
// on any architecture, not only under x86's store order (TSO). The fence is
// free on x86 (it only stops the compiler) and one `dmb ish` per frame on
// ARM. (Zeroing the seq of each record before writing it would catch an
// unfinished record at the same offset without the tail, but it costs a
// spinning consumer one more cache-line transfer per frame: +30 ns on a
// 220 ns round trip, measured.)

struct Record {
  enum Verdict : uint8_t {
    kNotWritten,  // seq is not pos ^ nonce: not written yet, or an older lap
    kData,        // a frame: payload/len/type are valid
    kPad,         // padding to the end of the ring: skip `size` bytes
    kBadPad,      // padding whose length is not what remains to the end
    kBadKind,     // neither data nor padding
    kOverMtu,     // a frame longer than the MTU
    kPastEnd,     // a frame that runs past the end of the ring
  };
  Verdict verdict = kNotWritten;
  uint16_t kind = 0;
  uint16_t type = 0;   // the caller's type (kData)
  uint32_t len = 0;    // the length word as found
  uint64_t seq = 0;    // the seq word as loaded (for RecordUnchanged)
  uint64_t room = 0;   // bytes from the record to the end of the ring
  uint64_t size = 0;   // bytes to the next record (kData, kPad)
  const uint8_t* payload = nullptr;  // kData: inside the ring, `len` bytes

  bool bad() const { return verdict >= kBadPad; }
};

// Reads the record at free-running position `pos` (16-aligned) of the data
// area `data` (`capacity` bytes, a power of two) of a producer whose header
// nonce is `nonce`, accepting frames up to `mtu` bytes. The acquire load of
// seq pairs with the producer's release store of seq in CommitDeferred() /
// TryReserve() (padding): once seq says "written", meta and payload are
// visible.
inline Record ReadRecord(const uint8_t* data, uint64_t capacity, uint64_t pos, uint64_t nonce, uint32_t mtu) {
  Record r;
  const uint64_t off = pos & (capacity - 1);
  const auto* h = reinterpret_cast<const FrameHeader*>(data + off);
  r.seq = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
  if (r.seq != (pos ^ nonce)) return r;
  // Loaded once; everything below works on the local copy.
  const uint64_t meta = __atomic_load_n(&h->meta, __ATOMIC_RELAXED);
  r.len = static_cast<uint32_t>(meta);
  r.kind = static_cast<uint16_t>(meta >> 32);
  r.type = static_cast<uint16_t>(meta >> 48);
  r.room = capacity - off;
  if (r.kind == kKindPad) {
    r.verdict = r.len == r.room - kFrameHeaderSize ? Record::kPad : Record::kBadPad;
    r.size = r.room;
    return r;
  }
  if (r.kind != kKindData) {
    r.verdict = Record::kBadKind;
    return r;
  }
  if (r.len > mtu) {
    r.verdict = Record::kOverMtu;
    return r;
  }
  r.size = RecordSize(r.len);
  if (r.size > r.room) {
    r.verdict = Record::kPastEnd;
    return r;
  }
  r.payload = data + off + kFrameHeaderSize;
  r.verdict = Record::kData;
  return r;
}

// The reader's half: after copying what it needs of `r` (read at `pos`),
// true if the record's seq word still holds what ReadRecord saw. The acquire
// fence orders the copy before the re-load (and before any later load, such
// as the producer's tail); it pairs with ReleaseBeforeWriting().
inline bool RecordUnchanged(const uint8_t* data, uint64_t capacity, uint64_t pos, const Record& r) {
  std::atomic_thread_fence(std::memory_order_acquire);
  const auto* h = reinterpret_cast<const FrameHeader*>(data + (pos & (capacity - 1)));
  return __atomic_load_n(&h->seq, __ATOMIC_RELAXED) == r.seq;
}

// The producer's half, before it writes a record (padding or a frame) over
// bytes a lapped reader may be copying: a release fence, so that a reader
// that sees any later store into the ring also sees every store before
// this call (the tail it published, the seqs of the records before).
inline void ReleaseBeforeWriting() { std::atomic_thread_fence(std::memory_order_release); }

// What is wrong with a bad record (r.bad()) read at `pos` from a ring of
// MTU `mtu`, for a kDataLoss status: "frame at position 4096 has length
// 70000 exceeding MTU 16384". The caller prefixes where ("ring: ",
// "link 10.0.0.1->10.0.0.2: ").
std::string DescribeBadRecord(const Record& r, uint64_t pos, uint32_t mtu);

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_RING_LAYOUT_H_
