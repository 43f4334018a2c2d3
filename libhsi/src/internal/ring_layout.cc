#include "internal/ring_layout.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hsi::internal {

absl::StatusOr<RingGeometry> CheckSegmentHeader(const SegmentHeader& h, const RingGeometry* expected,
                                                absl::string_view who) {
  if (h.magic != kSegmentMagic || h.version != kLayoutVersion) {
    return absl::DataLossError(absl::StrCat(who, " segment is not an hsi ring segment of layout version ",
                                            kLayoutVersion, " (magic 0x", absl::Hex(h.magic), ", version ", h.version,
                                            ")"));
  }
  const RingGeometry g{h.capacity, h.mtu};
  if (expected != nullptr) {
    if (h.data_offset != kDataOffset || h.capacity != expected->capacity || h.mtu != expected->mtu) {
      return absl::DataLossError(absl::StrCat(who, " segment header says capacity ", h.capacity, ", mtu ", h.mtu,
                                              ", data offset ", h.data_offset, "; expected ", expected->capacity,
                                              ", ", expected->mtu, ", ", kDataOffset));
    }
  } else {
    if (h.data_offset != kDataOffset) {
      return absl::DataLossError(
          absl::StrCat(who, " segment header says data offset ", h.data_offset, "; expected ", kDataOffset));
    }
    if (absl::Status s = g.Validate(); !s.ok()) {
      return absl::DataLossError(absl::StrCat(who, " segment header: ", s.message()));
    }
  }
  if ((h.nonce & 1) == 0) return absl::DataLossError(absl::StrCat(who, " segment header has an even nonce"));
  return g;
}

namespace {

std::string SealNames(int seals) {
  static constexpr struct {
    int bit;
    const char* name;
  } kSeals[] = {{F_SEAL_SEAL, "seal"},
                {F_SEAL_SHRINK, "shrink"},
                {F_SEAL_GROW, "grow"},
                {F_SEAL_WRITE, "write"},
                {F_SEAL_FUTURE_WRITE, "future-write"}};
  std::vector<const char*> names;
  for (const auto& s : kSeals) {
    if ((seals & s.bit) != 0) names.push_back(s.name);
  }
  return absl::StrJoin(names, " and ");
}

}  // namespace

absl::Status CheckSeals(int fd, int need, absl::string_view who) {
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": fd ", fd, " is not a sealable memfd (F_GET_SEALS: ",
                                                   errno == EINVAL ? "EINVAL" : std::strerror(errno), ")"));
  }
  if ((seals & need) != need) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": memfd is not sealed against ", SealNames(need & ~seals),
                                                   " (seals 0x", absl::Hex(seals), ", needs 0x", absl::Hex(need),
                                                   ")"));
  }
  return absl::OkStatus();
}

std::optional<SegmentCounters> ReadSegmentCounters(int fd) {
  // The control pages as bytes: a pread copy is no place for atomics, so
  // each word is copied out at its field's offset.
  alignas(SegmentLayout) unsigned char buf[sizeof(SegmentLayout)];
  if (::pread(fd, buf, sizeof(buf), 0) != static_cast<ssize_t>(sizeof(buf))) return std::nullopt;
  auto word = [&](size_t offset) {
    uint64_t v;
    std::memcpy(&v, buf + offset, sizeof(v));
    return v;
  };
  constexpr size_t kTx = offsetof(SegmentLayout, tx_counters);
  constexpr size_t kRx = offsetof(SegmentLayout, rx_counters);
  SegmentCounters c;
  c.tx.frames = word(kTx + offsetof(TxCounters, frames));
  c.tx.bytes = word(kTx + offsetof(TxCounters, bytes));
  c.tx.full_events = word(kTx + offsetof(TxCounters, full_events));
  c.tx.drops = word(kTx + offsetof(TxCounters, drops));
  c.tx.wakeups_sent = word(kTx + offsetof(TxCounters, wakeups_sent));
  c.rx.frames = word(kRx + offsetof(RxCounters, frames));
  c.rx.bytes = word(kRx + offsetof(RxCounters, bytes));
  c.rx.wakeups_sent = word(kRx + offsetof(RxCounters, wakeups_sent));
  return c;
}

std::string DescribeBadRecord(const Record& r, uint64_t pos, uint32_t mtu) {
  switch (r.verdict) {
    case Record::kBadPad:
      return absl::StrCat("padding record at position ", pos, " claims ", r.len, " bytes, but ",
                          r.room - kFrameHeaderSize, " remain to the end of the ring");
    case Record::kBadKind:
      return absl::StrCat("frame at position ", pos, " has unknown kind 0x", absl::Hex(r.kind));
    case Record::kOverMtu:
      return absl::StrCat("frame at position ", pos, " has length ", r.len, " exceeding MTU ", mtu);
    case Record::kPastEnd:
      return absl::StrCat("frame at position ", pos, " of length ", r.len, " runs past the end of the ring (",
                          r.room, " bytes left)");
    case Record::kNotWritten:
    case Record::kData:
    case Record::kPad:
      break;
  }
  return absl::StrCat("record at position ", pos, " is not bad");
}

}  // namespace hsi::internal
