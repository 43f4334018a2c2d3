// tools/hsi-ifd/offload.cc: see offload.h.
#include "offload.h"

#include <cstring>

#include "l3.h"

namespace hsi::ifd {
namespace {

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr size_t kTcpChecksumOffset = 16;
constexpr size_t kUdpChecksumOffset = 6;

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

}  // namespace

uint64_t OnesSum(absl::Span<const uint8_t> data, uint64_t sum) {
  // Native-order words: the one's-complement sum is the same in either
  // byte order, swapped (RFC 1071, 2.B), and FoldComplement's result is
  // stored in native order, so no swap is ever needed. 32-bit words into a
  // 64-bit sum: 2^16 = 1 (mod 0xFFFF), so folding gives the 16-bit sum.
  const uint8_t* p = data.data();
  size_t n = data.size();
  for (; n >= 4; p += 4, n -= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    sum += w;
  }
  if (n >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    sum += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    const uint8_t last[2] = {p[0], 0};
    uint16_t w;
    std::memcpy(&w, last, 2);
    sum += w;
  }
  return sum;
}

uint16_t FoldComplement(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::optional<ChecksumSpot> TransportChecksum(absl::Span<const uint8_t> p) {
  size_t l3 = 0;
  uint8_t proto = 0;
  if (p.size() >= 20 && p[0] >> 4 == 4) {
    l3 = size_t{p[0] & 0x0Fu} * 4;
    if (l3 < 20 || (Be16(p.data() + 6) & 0x3FFF) != 0) return std::nullopt;  // MF or an offset: a fragment
    proto = p[9];
  } else if (p.size() >= 40 && p[0] >> 4 == 6) {
    l3 = 40;
    proto = p[6];  // an extension header is not TCP/UDP: no spot
  } else {
    return std::nullopt;
  }
  if (proto == kProtoTcp) {
    if (p.size() < l3 + 20) return std::nullopt;
    const size_t doff = static_cast<size_t>(p[l3 + 12] >> 4) * 4;
    if (doff < 20 || p.size() < l3 + doff) return std::nullopt;
    return ChecksumSpot{l3, kTcpChecksumOffset, l3 + doff};
  }
  if (proto == kProtoUdp) {
    if (p.size() < l3 + 8) return std::nullopt;
    return ChecksumSpot{l3, kUdpChecksumOffset, l3 + 8};
  }
  return std::nullopt;
}

void FinishChecksum(absl::Span<uint8_t> packet, size_t start, size_t offset) {
  uint16_t c = FoldComplement(OnesSum(packet.subspan(start)));
  if (c == 0) c = 0xFFFF;  // as the kernel does (CSUM_MANGLED_0): UDP's 0 means "none"
  std::memcpy(packet.data() + start + offset, &c, 2);
}

std::optional<uint8_t> PrepareForRing(const VnetHeader& h, absl::Span<uint8_t> packet, bool to_offload_peer,
                                      const char** why) {
  if (h.gso_type != kVnetGsoNone) {
    *why = "a GSO packet from the kernel (TSO is not enabled on the device)";
    return std::nullopt;
  }
  if ((h.flags & kVnetNeedsCsum) == 0) return kTagOffload;
  if (h.csum_start < kEthHeader || size_t{h.csum_start} - kEthHeader + h.csum_offset + 2 > packet.size()) {
    *why = "the kernel's checksum position is outside the packet";
    return std::nullopt;
  }
  const size_t start = h.csum_start - kEthHeader;
  if (to_offload_peer) {
    // The receiver derives the spot from the packet: send it partial only
    // where that gives the kernel's.
    if (auto spot = TransportChecksum(packet); spot && spot->start == start && spot->offset == h.csum_offset) {
      return static_cast<uint8_t>(kTagOffload | kTagCsumPartial);
    }
  }
  FinishChecksum(packet, start, h.csum_offset);
  return kTagOffload;
}

const char* HeaderForDevice(absl::Span<const uint8_t> packet, uint8_t tag, VnetHeader* h) {
  *h = VnetHeader{};
  h->gso_type = kVnetGsoNone;
  if ((tag & kTagCsumPartial) == 0) return nullptr;
  const std::optional<ChecksumSpot> spot = TransportChecksum(packet);
  if (!spot) return "marked checksum-partial, but it is not an unfragmented TCP or UDP packet with its header whole";
  h->flags = kVnetNeedsCsum;
  h->csum_start = static_cast<uint16_t>(kEthHeader + spot->start);  // a packet is at most 56K
  h->csum_offset = static_cast<uint16_t>(spot->offset);
  h->hdr_len = static_cast<uint16_t>(kEthHeader + spot->header_end);
  return nullptr;
}

}  // namespace hsi::ifd
