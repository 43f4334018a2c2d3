// hsi/cf_vector.h: a connector's local validity vector for a coupling
// facility cache structure, mapped read-only (docs/cf.md).
//
// Layout: an array of 64-bit words (host byte order; one host); bit i of
// the vector is bit (i % 64) of word i / 64; 1 while local buffer i holds
// a valid copy of the entry registered there. No header, no pointers:
// every bit pattern is a legal vector. Only the CF writes it (invariant 1;
// the writer's side is cf/validity_vector.h).
//
// Memory ordering: the CF flips a bit with a release store of its word and
// replies to the write that caused the flip only after it; IsValid loads
// the word with acquire (pairs with that release). A test that happens
// after a write completed sees its flip.
//
// Duplexed cache structures (docs/cf.md "Duplexing"): the vector has two
// halves of the same layout, one written by the primary CF and one by the
// secondary (each CF owns its own memfd: one writer per byte); a bit is
// valid only if it is valid in both. Both CFs flip before the write's
// reply, so a write sees its flip in either half; when the primary dies,
// the secondary clears its half before it serves anyone, so a connector
// that has not yet noticed the death sees every copy invalid (the
// primary's frozen half alone could say valid for a copy the survivor has
// since overwritten). The halves are replaced in place (mmap MAP_FIXED
// over the same addresses: a reader in another thread sees the old or the
// new memory, never a hole) when the client fails over (both by the
// survivor's fresh vector) or duplexing ends (the secondary's by the
// primary's).
//
// Thread safety: IsValid may be called from any number of threads at once,
// also while the client's thread calls Replace or DropSecondary.
#ifndef HSI_CF_VECTOR_H_
#define HSI_CF_VECTOR_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "hsi/fd.h"
#include "hsi/segment.h"

namespace hsi::cf {

inline constexpr uint32_t kMaxVectorBits = 1u << 20;  // local buffers per connector, at most
// Bytes of a vector of `bits` bits: whole 64-byte cache lines of 64-bit words.
inline size_t VectorBytes(uint32_t bits) { return ((static_cast<size_t>(bits) + 511) / 512) * 64; }

class LocalVector {
 public:
  // Maps `fd` read-only after checking that it is a memfd of exactly
  // VectorBytes(bits) bytes sealed against shrink, grow and future writes
  // (so it can neither vanish under a read nor be written by anyone but
  // the CF); kDataLoss naming what is wrong otherwise.
  static absl::StatusOr<LocalVector> Map(UniqueFd fd, uint32_t bits);
  LocalVector() = default;

  // Duplexing: adds the secondary CF's half (checked as Map checks it);
  // before the vector is shared (CfClient::Connect).
  absl::Status AddSecondary(UniqueFd fd);
  // Maps `fd` (checked as Map checks it; the same number of bits) over
  // both halves in place: the survivor's fresh vector after a failover.
  // The object is unchanged (const): only the memory behind its mapping.
  absl::Status Replace(UniqueFd fd) const;
  // Maps the primary's half over the secondary's in place (duplexing
  // ended); nothing if there is no secondary half or it was replaced.
  absl::Status DropSecondary() const;

  // Whether local buffer `i` is valid. False for i >= bits() (nothing
  // there is valid). Whatever the memory holds, this cannot fault.
  bool IsValid(uint32_t i) const {
    if (i >= bits_) return false;
    // Acquire: pairs with the CF's release store of the word (VectorWriter::Set).
    // An aligned 8-byte atomic load is a plain load: legal on a read-only mapping.
    uint64_t w = Word(seg_.data(), i);
    if (second_.data() != nullptr) w &= Word(second_.data(), i);
    return (w >> (i % 64)) & 1;
  }
  uint32_t bits() const { return bits_; }
  bool duplexed() const { return second_.data() != nullptr; }

 private:
  static uint64_t Word(void* data, uint32_t i) {
    auto* words = static_cast<uint64_t*>(data);
    return std::atomic_ref<uint64_t>(words[i / 64]).load(std::memory_order_acquire);
  }
  Segment seg_;
  Segment second_;  // the secondary CF's half; unmapped (null) if simplex
  uint32_t bits_ = 0;
  mutable bool single_ = false;  // both halves map one memory (Replace/DropSecondary done)
};

static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);

}  // namespace hsi::cf

#endif  // HSI_CF_VECTOR_H_
