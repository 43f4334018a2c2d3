// cf/validity_vector.h: a connector's local validity vector for one cache
// structure (docs/cf.md, "The cache structure"): the shared memory the CF
// writes and the connector only reads (invariant 1).
//
// Layout: a memfd of VectorBytes(bits) bytes, an array of little-endian
// 64-bit words; bit i of the vector is bit (i % 64) of word i / 64;
// 1 = the connector's local buffer i holds a valid copy of the entry it
// registered there, 0 = invalid (never registered, or cross-invalidated by
// another connector's write). Offsets only, no pointers, no header: every
// bit pattern is a legal vector, so whatever the memory holds, reading it
// cannot crash or mislead the reader beyond "valid or not".
//
// Creation and grant: the CF creates the memfd (Segment::CreateMemfd:
// sealed F_SEAL_SHRINK | F_SEAL_GROW), maps it read-write and seals it
// F_SEAL_FUTURE_WRITE | F_SEAL_SEAL (Segment::MapOwner), then hands it to
// the connector's NIC through hsid (Nic::GrantMemory: hsid checks the
// seals and that the connector's NIC is on the CF's CHPID). The connector
// takes it (Nic::TakeMemory) and maps it with LocalVector::Map, which
// checks the size and the three seals again: it never maps memory that
// could shrink under it (a SIGBUS) or that anyone but the CF could write.
//
// Memory ordering: only the CF writes (one thread). It flips a bit with a
// relaxed load of the word and a RELEASE store of the new word, and sends
// the writer's reply only after every flip of a cross-invalidation: the
// write completes after the bits are flipped. The connector tests a bit
// (LocalVector::IsValid) with an ACQUIRE load (pairs with that release store): a test that
// happens after a write's completion (in happens-before: the writer told
// the reader by any synchronizing means) sees the bit invalid. The DB2
// pattern is to copy the local buffer first and test the bit after: a true
// answer means the copy was current when the bit was read.
//
// Thread safety: VectorWriter: one thread (the CF's). LocalVector: any
// number of threads may call IsValid at once.
#ifndef HSI_CF_VALIDITY_VECTOR_H_
#define HSI_CF_VALIDITY_VECTOR_H_

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "hsi/cf_vector.h"
#include "hsi/fd.h"
#include "hsi/segment.h"

namespace hsi::cf {

// kMaxVectorBits, VectorBytes and the reader (LocalVector) are in hsi/cf_vector.h.
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(sizeof(uint64_t) == 8 && alignof(uint64_t) == 8);

// The CF's side.
class VectorWriter {
 public:
  // Creates the memfd for `bits` bits (1..kMaxVectorBits), all 0, mapped
  // read-write and sealed against other writers.
  static absl::StatusOr<VectorWriter> Create(uint32_t bits, const std::string& name);
  VectorWriter() = default;

  // Requires i < bits() (the CF checks a connector's index first).
  void Set(uint32_t i, bool valid) {
    assert(i < bits_);
    auto* words = static_cast<uint64_t*>(seg_.data());
    std::atomic_ref<uint64_t> w(words[i / 64]);
    const uint64_t bit = uint64_t{1} << (i % 64);
    const uint64_t old = w.load(std::memory_order_relaxed);  // we are its only writer
    // Release: pairs with LocalVector::IsValid's acquire.
    w.store(valid ? (old | bit) : (old & ~bit), std::memory_order_release);
  }
  // Every bit invalid (a duplex secondary taking over: docs/cf.md), each
  // word with a release store as Set's.
  void Clear() {
    auto* words = static_cast<uint64_t*>(seg_.data());
    for (size_t i = 0; i < (static_cast<size_t>(bits_) + 63) / 64; ++i)
      std::atomic_ref<uint64_t>(words[i]).store(0, std::memory_order_release);
  }
  // Reads back (the CF's own memory; for tests and the CF's checks).
  bool Get(uint32_t i) const {
    const auto* words = static_cast<const uint64_t*>(seg_.data());
    return (std::atomic_ref<uint64_t>(const_cast<uint64_t&>(words[i / 64])).load(std::memory_order_relaxed) >>
            (i % 64)) & 1;
  }
  uint32_t bits() const { return bits_; }
  // A new fd of the memfd, to grant to the connector.
  absl::StatusOr<UniqueFd> DupFd() const { return seg_.DupFd(); }

 private:
  Segment seg_;
  uint32_t bits_ = 0;
};

}  // namespace hsi::cf

#endif  // HSI_CF_VALIDITY_VECTOR_H_
