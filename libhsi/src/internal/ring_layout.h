// internal/ring_layout.h: the bytes of one side's segment, as shared memory.
//
// One segment per side of a link. Its owner writes everything in it; the peer
// only reads it. Offsets, never pointers. Each group that a different party
// reads in the hot path sits on its own 128-byte block (two cache lines, so
// the adjacent-line prefetcher does not drag a neighbour along).
//
//   0     header        written once at creation (magic, geometry, nonce)
//   128   tail          producer: published tail (observability, drain)
//   256   need_space    producer: sleep epoch while waiting for room, 0 awake
//   384   tx counters   producer: frames, bytes, full events, drops, wake-ups
//   512   head          consumer: position up to which frames are released
//   640   need_data     consumer: sleep epoch while waiting for data, 0 awake
//   768   rx counters   consumer: frames, bytes, wake-ups
//   4096  data          `capacity` bytes of frame records
#ifndef HSI_INTERNAL_RING_LAYOUT_H_
#define HSI_INTERNAL_RING_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace hsi::internal {

inline constexpr uint64_t kSegmentMagic = 0x3130495348494836ULL;  // "6HIHSI01"
inline constexpr uint32_t kLayoutVersion = 1;
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
};
struct alignas(128) TxCounters {
  Word frames, bytes, full_events, drops, wakeups_sent;
};
struct alignas(128) RxState {
  Word head;
};
struct alignas(128) RxWake {
  Word need_data;
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

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_RING_LAYOUT_H_
