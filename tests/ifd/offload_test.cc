// hsi-ifd's checksum offload as pure functions (tools/hsi-ifd/offload.h):
// the checksum it finishes equals the Internet checksum computed the
// textbook way, the spot it derives from a packet, and what it refuses
// from a peer or from the kernel.
#include "offload.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "l3.h"

namespace hsi::ifd {
namespace {

// RFC 1071 the slow way: big-endian 16-bit words, an odd byte padded.
uint16_t ReferenceChecksum(const std::vector<uint8_t>& d, size_t from) {
  uint32_t sum = 0;
  for (size_t i = from; i < d.size(); i += 2) {
    sum += uint32_t{d[i]} << 8 | (i + 1 < d.size() ? d[i + 1] : 0);
    sum = (sum & 0xFFFF) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum & 0xFFFF);
}

// An IPv4 packet of `total` bytes carrying `proto` with a 20-byte header,
// its payload random.
std::vector<uint8_t> Ipv4(uint8_t proto, size_t total, uint32_t seed = 1) {
  std::vector<uint8_t> p(total);
  std::mt19937 rng(seed);
  for (auto& b : p) b = static_cast<uint8_t>(rng());
  p[0] = 0x45;
  p[2] = static_cast<uint8_t>(total >> 8);
  p[3] = static_cast<uint8_t>(total);
  p[6] = p[7] = 0;
  p[9] = proto;
  if (proto == 6 && total >= 40) p[32] = 0x50;  // TCP data offset 20
  return p;
}

TEST(Offload, FinishedChecksumIsTheInternetChecksumForEveryLengthAndStart) {
  for (size_t total : {41u, 42u, 43u, 1500u, 1501u, 57344u}) {
    std::vector<uint8_t> p = Ipv4(6, total, static_cast<uint32_t>(total));
    p[36] = 0x12;  // the "pseudo-header sum" the kernel left in the field
    p[37] = 0x34;
    std::vector<uint8_t> expect = p;
    uint16_t c = ReferenceChecksum(expect, 20);
    if (c == 0) c = 0xFFFF;
    expect[36] = static_cast<uint8_t>(c >> 8);
    expect[37] = static_cast<uint8_t>(c);
    FinishChecksum(absl::MakeSpan(p), 20, 16);
    EXPECT_EQ(p, expect) << total << " bytes";
    // The receiver verifies segment + pseudo-header: the segment alone then
    // checks to the pseudo-header sum the field held (so both give 0).
    EXPECT_EQ(ReferenceChecksum(p, 20), 0x1234) << total;
  }
}

TEST(Offload, SpotOfTcpAndUdpOverIpv4AndIpv6) {
  auto tcp = TransportChecksum(Ipv4(6, 60));
  ASSERT_TRUE(tcp.has_value());
  EXPECT_EQ(tcp->start, 20u);
  EXPECT_EQ(tcp->offset, 16u);
  EXPECT_EQ(tcp->header_end, 40u);
  auto udp = TransportChecksum(Ipv4(17, 28));
  ASSERT_TRUE(udp.has_value());
  EXPECT_EQ(udp->offset, 6u);
  EXPECT_EQ(udp->header_end, 28u);
  std::vector<uint8_t> v6(40 + 32, 0);
  v6[0] = 0x60;
  v6[5] = 32;
  v6[6] = 6;
  v6[40 + 12] = 0x80;  // data offset 32
  auto t6 = TransportChecksum(v6);
  ASSERT_TRUE(t6.has_value());
  EXPECT_EQ(t6->start, 40u);
  EXPECT_EQ(t6->header_end, 72u);
}

TEST(Offload, NoSpotForWhatTheKernelMustNotBeToldIsPartial) {
  EXPECT_FALSE(TransportChecksum(Ipv4(1, 28)));   // ICMP
  EXPECT_FALSE(TransportChecksum(Ipv4(6, 30)));   // TCP cut inside its header
  EXPECT_FALSE(TransportChecksum(Ipv4(17, 27)));  // UDP likewise
  std::vector<uint8_t> frag = Ipv4(6, 60);
  frag[6] = 0x20;  // more fragments
  EXPECT_FALSE(TransportChecksum(frag));
  frag[6] = 0;
  frag[7] = 1;  // an offset
  EXPECT_FALSE(TransportChecksum(frag));
  std::vector<uint8_t> doff = Ipv4(6, 60);
  doff[32] = 0xF0;  // data offset 60 > the 40 bytes there
  EXPECT_FALSE(TransportChecksum(doff));
  std::vector<uint8_t> v6(80, 0);
  v6[0] = 0x60;
  v6[6] = 0;  // hop-by-hop options first
  EXPECT_FALSE(TransportChecksum(v6));
}

TEST(Offload, PeerFrameMarkedPartialGetsAHeaderInsideThePacketOrIsRefused) {
  VnetHeader h;
  const std::vector<uint8_t> tcp = Ipv4(6, 1000);
  EXPECT_EQ(HeaderForDevice(tcp, kTagOffload | kTagCsumPartial, &h), nullptr);
  EXPECT_EQ(h.flags, kVnetNeedsCsum);
  EXPECT_EQ(h.gso_type, kVnetGsoNone);
  EXPECT_EQ(h.csum_start, kEthHeader + 20);
  EXPECT_EQ(h.csum_offset, 16);
  EXPECT_EQ(h.hdr_len, kEthHeader + 40);
  // Not partial: an empty header.
  EXPECT_EQ(HeaderForDevice(tcp, kTagOffload, &h), nullptr);
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(h.csum_start, 0);
  EXPECT_NE(HeaderForDevice(Ipv4(1, 64), kTagCsumPartial, &h), nullptr);
}

TEST(Offload, KernelPacketGoesPartialOnlyToAnOffloadPeerWhereTheSpotAgrees) {
  VnetHeader h;
  h.flags = kVnetNeedsCsum;
  h.csum_start = kEthHeader + 20;
  h.csum_offset = 16;
  const char* why = "";
  std::vector<uint8_t> p = Ipv4(6, 500);
  const std::vector<uint8_t> before = p;
  EXPECT_EQ(PrepareForRing(h, absl::MakeSpan(p), true, &why), kTagOffload | kTagCsumPartial);
  EXPECT_EQ(p, before);  // left partial
  EXPECT_EQ(PrepareForRing(h, absl::MakeSpan(p), false, &why), kTagOffload);
  EXPECT_NE(p, before);  // finished: the field changed, and checks as above
  EXPECT_EQ(ReferenceChecksum(p, 20), uint16_t{before[36]} << 8 | before[37]);
  // A position the receiver would not derive: finished, not partial.
  p = before;
  h.csum_offset = 6;
  EXPECT_EQ(PrepareForRing(h, absl::MakeSpan(p), true, &why), kTagOffload);
  // Outside the packet, or GSO: dropped, with a reason.
  h.csum_start = 600;
  EXPECT_FALSE(PrepareForRing(h, absl::MakeSpan(p), true, &why));
  EXPECT_STRNE(why, "");
  h = VnetHeader{};
  h.gso_type = 1;  // VIRTIO_NET_HDR_GSO_TCPV4
  EXPECT_FALSE(PrepareForRing(h, absl::MakeSpan(p), true, &why));
  // No checksum to do: sent as it is.
  h = VnetHeader{};
  EXPECT_EQ(PrepareForRing(h, absl::MakeSpan(p), true, &why), kTagOffload);
}

}  // namespace
}  // namespace hsi::ifd
