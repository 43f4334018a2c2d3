#include "validity_vector.h"

#include <fcntl.h>

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
