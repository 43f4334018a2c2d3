#include "validity_vector.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "hsi/ring.h"

namespace hsi::cf {

absl::StatusOr<VectorWriter> VectorWriter::Create(uint32_t bits, const std::string& name) {
  if (bits == 0 || bits > kMaxVectorBits) {
    return absl::InvalidArgumentError(
        absl::StrCat("validity vector of ", bits, " bits: 1..", kMaxVectorBits, " allowed"));
  }
  absl::StatusOr<UniqueFd> fd = Segment::CreateMemfd(name, VectorBytes(bits));
  if (!fd.ok()) return fd.status();
  absl::StatusOr<Segment> seg = Segment::MapOwner(std::move(*fd), VectorBytes(bits));
  if (!seg.ok()) return seg.status();
  VectorWriter w;
  w.seg_ = std::move(*seg);
  w.bits_ = bits;
  return w;
}

namespace {

// Maps `fd` read-only at `at` (MAP_FIXED: atomically replacing what is
// mapped there) for `bytes` bytes; the mapping keeps the memfd alive.
absl::Status MapOver(void* at, int fd, size_t bytes) {
  void* p = ::mmap(at, bytes, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("validity vector: mmap over the old half: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LocalVector::AddSecondary(UniqueFd fd) {
  absl::StatusOr<LocalVector> v = Map(std::move(fd), bits_);
  if (!v.ok()) return v.status();
  second_ = std::move(v->seg_);
  return absl::OkStatus();
}

absl::Status LocalVector::Replace(UniqueFd fd) const {
  absl::StatusOr<LocalVector> v = Map(std::move(fd), bits_);  // checks size and seals
  if (!v.ok()) return v.status();
  // The secondary's half first: until the primary's is replaced too, the
  // AND is at most the fresh vector's bits (all invalid at first).
  if (second_.data() != nullptr) {
    if (absl::Status s = MapOver(second_.data(), v->seg_.fd(), second_.size()); !s.ok()) return s;
  }
  if (absl::Status s = MapOver(seg_.data(), v->seg_.fd(), seg_.size()); !s.ok()) return s;
  single_ = true;
  return absl::OkStatus();
}

absl::Status LocalVector::DropSecondary() const {
  if (second_.data() == nullptr || single_) return absl::OkStatus();
  if (absl::Status s = MapOver(second_.data(), seg_.fd(), second_.size()); !s.ok()) return s;
  single_ = true;
  return absl::OkStatus();
}

absl::StatusOr<LocalVector> LocalVector::Map(UniqueFd fd, uint32_t bits) {
  if (bits == 0 || bits > kMaxVectorBits) {
    return absl::DataLossError(
        absl::StrCat("validity vector of ", bits, " bits: 1..", kMaxVectorBits, " allowed"));
  }
  // Without F_SEAL_FUTURE_WRITE someone else could map it writable; without
  // shrink/grow seals (MapPeer checks those and the size) a shrink would
  // turn our reads into SIGBUS.
  if (!IsSealedAgainstWrites(fd.get())) {
    return absl::DataLossError("validity vector: the memfd is not sealed against writes (F_SEAL_FUTURE_WRITE)");
  }
  absl::StatusOr<Segment> seg = Segment::MapPeer(std::move(fd), VectorBytes(bits));
  if (!seg.ok()) return absl::DataLossError(absl::StrCat("validity vector: ", seg.status().message()));
  LocalVector r;
  r.seg_ = std::move(*seg);
  r.bits_ = bits;
  return r;
}

}  // namespace hsi::cf
