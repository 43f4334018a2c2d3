// internal/ctc_layout.h: the shared-memory layout of one CTC half-channel
// (hsi/ctc.h). One owner writes every byte of it; the peer maps it
// read-only and checks every word it loads from it.
//
//   offset    0  CtcHalfHeader   identity, written once by the owner at Open
//   offset   64  CtcHalfState    the owner's write and completion words
//   offset  128  CtcHalfCounters the owner's counters (hsid preads them)
//   offset  256  write buffer    block_size bytes
//
// Memory ordering (the pairs, by field):
//   write_len, buffer -> write_seq    the owner stores the data and the length,
//     then write_seq (seq_cst, a release); the peer loads write_seq (acquire)
//     before it reads length and data.
//   withdrawn -> write_seq   an owner withdraws write n only after announcing
//     it, so a peer that loads withdrawn (acquire) first and write_seq
//     second sees withdrawn <= write_seq; anything else is a corrupt half.
//   done       one word (number and verdict): no pairing needed between two.
//   write_seq (store) ; peer's write_seq/done_seq (load), all seq_cst: the
//     Dekker pair that makes at least one of two overlapping writes see the
//     other (collision detection), and taking/withdrawn the same for a
//     withdrawal racing a take.
//   events: fetch_add seq_cst after every change; the waiter's `waiting`
//     store and its re-check are seq_cst, so a waker that loads waiting == 0
//     ran its change before the waiter's re-check.
//
// Thread safety: layout only.
#ifndef HSI_INTERNAL_CTC_LAYOUT_H_
#define HSI_INTERNAL_CTC_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace hsi::internal {

inline constexpr uint64_t kCtcMagic = 0x3130435443495348ull;  // "HSICTC01"
inline constexpr uint32_t kCtcVersion = 1;

struct alignas(64) CtcHalfHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t block_size;
  uint32_t device;  // the owner's device number
  uint32_t reserved[11];
};

struct alignas(64) CtcHalfState {
  std::atomic<uint64_t> write_seq;  // own writes announced
  std::atomic<uint64_t> write_len;  // length of write `write_seq`
  std::atomic<uint64_t> withdrawn;  // last own write taken back
  std::atomic<uint64_t> taking;     // peer write being taken
  // The last peer write finished: its number << 1, | 1 if it was finished
  // WITHOUT being taken (rejected in a collision, or voided because the
  // peer withdrew it). One word, so the writer sees number and verdict at once.
  std::atomic<uint64_t> done;
  uint64_t reserved;
  std::atomic<uint32_t> events;     // futex word, bumped after each change
  std::atomic<uint32_t> waiting;    // 1 while the owner may sleep on the peer's events
};

struct alignas(64) CtcHalfCounters {
  std::atomic<uint64_t> writes, bytes_written, reads, bytes_read, collisions, recovery_ns, withdrawn, broken;
  uint64_t reserved[8];
};

inline constexpr size_t kCtcBufferOffset = 256;

static_assert(std::is_standard_layout_v<CtcHalfHeader> && std::is_trivially_copyable_v<CtcHalfHeader>);
static_assert(std::is_standard_layout_v<CtcHalfState> && std::is_standard_layout_v<CtcHalfCounters>);
static_assert(sizeof(CtcHalfHeader) == 64 && alignof(CtcHalfHeader) == 64);
static_assert(sizeof(CtcHalfState) == 64 && alignof(CtcHalfState) == 64);
static_assert(sizeof(CtcHalfCounters) == 128);
static_assert(offsetof(CtcHalfState, events) == 48 && offsetof(CtcHalfState, waiting) == 52);
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint64_t>) == 8 && sizeof(std::atomic<uint32_t>) == 4);

// The three blocks of a mapped half-channel.
struct CtcHalf {
  static constexpr size_t kHeader = 0, kState = 64, kCounters = 128;
  static_assert(kCounters + sizeof(CtcHalfCounters) <= kCtcBufferOffset);
};

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_CTC_LAYOUT_H_
