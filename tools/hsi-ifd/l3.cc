// tools/hsi-ifd/l3.cc: see l3.h.
#include "l3.h"

#include <cstring>

namespace hsi::ifd {
namespace {

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
void PutBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void PutBe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

constexpr size_t kArpLength = 28;  // Ethernet/IPv4 ARP

}  // namespace

Mac MacOf(Address a) {
  Mac m{0x02, 0x00, 0, 0, 0, 0};
  PutBe32(&m[2], a.value());
  return m;
}

Outbound Classify(absl::Span<const uint8_t> frame) {
  Outbound o;
  if (frame.size() < kEthHeader) {
    o.reason = "shorter than an Ethernet header";
    return o;
  }
  const uint8_t* dst = frame.data();
  const uint16_t type = Be16(frame.data() + 12);
  if (type == kEtherArp) {
    o.kind = Outbound::kArp;
    return o;
  }
  if (type != kEtherIpv4 && type != kEtherIpv6) {
    o.reason = "neither IPv4, IPv6 nor ARP";
    return o;
  }
  o.packet = frame.subspan(kEthHeader);
  if (dst[0] & 1) {
    o.kind = Outbound::kBroadcast;
  } else if (dst[0] == 0x02 && dst[1] == 0x00) {
    o.kind = Outbound::kUnicast;
    o.next_hop = Address(Be32(dst + 2));
  } else {
    o.reason = "destination MAC is not 02:00:<hsi address>";
  }
  return o;
}

std::optional<size_t> ArpReply(absl::Span<const uint8_t> frame, Address self,
                               absl::Span<uint8_t> out) {
  if (frame.size() < kEthHeader + kArpLength || out.size() < kEthHeader + kArpLength) {
    return std::nullopt;
  }
  const uint8_t* arp = frame.data() + kEthHeader;
  // htype Ethernet, ptype IPv4, hlen 6, plen 4, op request.
  if (Be16(arp) != 1 || Be16(arp + 2) != kEtherIpv4 || arp[4] != 6 || arp[5] != 4 ||
      Be16(arp + 6) != 1) {
    return std::nullopt;
  }
  const uint8_t* sha = arp + 8;
  const uint32_t spa = Be32(arp + 14);
  const uint32_t tpa = Be32(arp + 24);
  if (tpa == 0 || tpa == spa || tpa == self.value()) return std::nullopt;
  const Mac target = MacOf(Address(tpa));
  uint8_t* e = out.data();
  std::memcpy(e, sha, 6);                 // to the asker
  std::memcpy(e + 6, target.data(), 6);   // from the "peer"
  PutBe16(e + 12, kEtherArp);
  uint8_t* r = e + kEthHeader;
  PutBe16(r, 1);
  PutBe16(r + 2, kEtherIpv4);
  r[4] = 6;
  r[5] = 4;
  PutBe16(r + 6, 2);  // reply
  std::memcpy(r + 8, target.data(), 6);
  PutBe32(r + 14, tpa);
  std::memcpy(r + 18, sha, 6);
  PutBe32(r + 24, spa);
  return kEthHeader + kArpLength;
}

std::optional<uint16_t> IpEtherType(absl::Span<const uint8_t> p) {
  if (p.empty()) return std::nullopt;
  switch (p[0] >> 4) {
    case 4: {
      if (p.size() < 20) return std::nullopt;
      const size_t ihl = size_t{p[0] & 0x0Fu} * 4;
      if (ihl < 20 || ihl > p.size() || Be16(p.data() + 2) != p.size()) return std::nullopt;
      return kEtherIpv4;
    }
    case 6:
      // Payload length 0 would be a jumbogram, which no hsi MTU carries.
      if (p.size() <= 40 || size_t{Be16(p.data() + 4)} + 40 != p.size()) return std::nullopt;
      return kEtherIpv6;
    default:
      return std::nullopt;
  }
}

void DeviceHeader(absl::Span<const uint8_t> packet, uint16_t ethertype, Address self,
                  Address source, uint8_t out[kEthHeader]) {
  Mac dst = MacOf(self);
  if (ethertype == kEtherIpv4) {
    const uint32_t d = Be32(packet.data() + 16);
    if ((d >> 28) == 0xE) {  // 224/4: 01:00:5e + the low 23 bits
      dst = {0x01, 0x00, 0x5e, static_cast<uint8_t>((d >> 16) & 0x7F), static_cast<uint8_t>(d >> 8),
             static_cast<uint8_t>(d)};
    } else if (d == 0xFFFFFFFFu) {
      dst = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    }
  } else if (packet[24] == 0xFF) {  // IPv6 ff00::/8: 33:33 + the low 32 bits
    dst = {0x33, 0x33, packet[36], packet[37], packet[38], packet[39]};
  }
  const Mac src = MacOf(source);
  std::memcpy(out, dst.data(), 6);
  std::memcpy(out + 6, src.data(), 6);
  PutBe16(out + 12, ethertype);
}

Outbound ClassifyL2(absl::Span<const uint8_t> frame) {
  Outbound o;
  if (frame.size() < kEthHeader) {
    o.reason = "shorter than an Ethernet header";
    return o;
  }
  const uint8_t* dst = frame.data();
  o.packet = frame;
  if (dst[0] & 1) {
    o.kind = Outbound::kBroadcast;
  } else if (dst[0] == 0x02 && dst[1] == 0x00) {
    o.kind = Outbound::kUnicast;
    o.next_hop = Address(Be32(dst + 2));
  } else {
    o.reason = "destination MAC is not 02:00:<hsi address>";
  }
  return o;
}

const char* CheckL2Inbound(absl::Span<const uint8_t> frame, Address self, Address source) {
  if (frame.size() < kEthHeader) return "shorter than an Ethernet header";
  const Mac from = MacOf(source);
  if (std::memcmp(frame.data() + 6, from.data(), 6) != 0) return "source MAC is not the sender's 02:00:<address>";
  const Mac me = MacOf(self);
  if ((frame[0] & 1) == 0 && std::memcmp(frame.data(), me.data(), 6) != 0) {
    return "destination MAC is neither this interface's nor a group address";
  }
  return nullptr;
}

}  // namespace hsi::ifd
