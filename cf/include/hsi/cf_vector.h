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
// Thread safety: IsValid may be called from any number of threads at once.
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

  // Whether local buffer `i` is valid. False for i >= bits() (nothing
  // there is valid). Whatever the memory holds, this cannot fault.
  bool IsValid(uint32_t i) const {
    if (i >= bits_) return false;
    const auto* words = static_cast<const uint64_t*>(seg_.data());
    // Acquire: pairs with the CF's release store of the word (VectorWriter::Set).
    // An aligned 8-byte atomic load is a plain load: legal on a read-only mapping.
    return (std::atomic_ref<uint64_t>(const_cast<uint64_t&>(words[i / 64]))
                .load(std::memory_order_acquire) >>
            (i % 64)) &
           1;
  }
  uint32_t bits() const { return bits_; }

 private:
  Segment seg_;
  uint32_t bits_ = 0;
};

static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);

}  // namespace hsi::cf

#endif  // HSI_CF_VECTOR_H_
