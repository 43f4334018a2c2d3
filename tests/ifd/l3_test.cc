// The framing of hsi-ifd (tools/hsi-ifd/l3.h): next hop from the MAC, ARP
// replies made on the device, which frames from a peer count as IP.
#include "l3.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace hsi::ifd {
namespace {

std::vector<uint8_t> Ether(const Mac& dst, uint16_t type, std::vector<uint8_t> payload) {
  std::vector<uint8_t> f(dst.begin(), dst.end());
  const Mac src = MacOf(Address(0x0AF00001));
  f.insert(f.end(), src.begin(), src.end());
  f.push_back(static_cast<uint8_t>(type >> 8));
  f.push_back(static_cast<uint8_t>(type));
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

std::vector<uint8_t> Ipv4(uint16_t total, uint32_t dst = 0x0AF00002) {
  std::vector<uint8_t> p(total, 0);
  p[0] = 0x45;
  p[2] = static_cast<uint8_t>(total >> 8);
  p[3] = static_cast<uint8_t>(total);
  for (int i = 0; i < 4; ++i) p[16 + i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
  return p;
}

TEST(L3, MacEncodesTheHsiAddress) {
  const Mac m = MacOf(*Address::Parse("10.240.0.2"));
  EXPECT_EQ(m, (Mac{0x02, 0x00, 10, 240, 0, 2}));
}

TEST(L3, UnicastGoesToTheNextHopInTheMacNotTheIpDestination) {
  // IP destination 10.20.7.101, next hop 10.240.0.2 (as `via` makes it).
  const auto f = Ether(MacOf(Address(0x0AF00002)), kEtherIpv4, Ipv4(40, 0x0A140765));
  const Outbound o = Classify(f);
  ASSERT_EQ(o.kind, Outbound::kUnicast);
  EXPECT_EQ(o.next_hop, Address(0x0AF00002));
  EXPECT_EQ(o.packet.size(), 40u);
  EXPECT_EQ(o.packet.data(), f.data() + kEthHeader);
}

TEST(L3, BroadcastAndMulticastMacsGoToEveryNic) {
  for (const Mac& dst : {Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Mac{0x01, 0x00, 0x5e, 0, 0, 5},
                         Mac{0x33, 0x33, 0, 0, 0, 1}}) {
    EXPECT_EQ(Classify(Ether(dst, kEtherIpv4, Ipv4(20))).kind, Outbound::kBroadcast);
  }
}

TEST(L3, OtherFramesAreDropped) {
  EXPECT_EQ(Classify(Ether(MacOf(Address(1)), 0x88CC, {1, 2, 3})).kind, Outbound::kDrop);  // LLDP
  EXPECT_EQ(Classify(Ether(Mac{0x52, 0x54, 0, 1, 2, 3}, kEtherIpv4, Ipv4(20))).kind, Outbound::kDrop);
  const uint8_t runt[5] = {};
  EXPECT_EQ(Classify(runt).kind, Outbound::kDrop);
}

std::vector<uint8_t> ArpRequest(uint32_t spa, uint32_t tpa) {
  std::vector<uint8_t> a = {0, 1, 0x08, 0x00, 6, 4, 0, 1};
  const Mac sha = MacOf(Address(spa));
  a.insert(a.end(), sha.begin(), sha.end());
  for (int i = 0; i < 4; ++i) a.push_back(static_cast<uint8_t>(spa >> (24 - 8 * i)));
  a.insert(a.end(), 6, 0);
  for (int i = 0; i < 4; ++i) a.push_back(static_cast<uint8_t>(tpa >> (24 - 8 * i)));
  return Ether(Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kEtherArp, a);
}

TEST(L3, ArpRequestsAreAnsweredWithTheTargetsMac) {
  const auto req = ArpRequest(0x0AF00001, 0x0AF00002);
  ASSERT_EQ(Classify(req).kind, Outbound::kArp);
  uint8_t out[64];
  auto len = ArpReply(req, Address(0x0AF00001), out);
  ASSERT_TRUE(len.has_value());
  ASSERT_EQ(*len, 42u);
  const Mac target = MacOf(Address(0x0AF00002));
  const Mac asker = MacOf(Address(0x0AF00001));
  EXPECT_EQ(std::memcmp(out, asker.data(), 6), 0);       // to the asker
  EXPECT_EQ(std::memcmp(out + 6, target.data(), 6), 0);  // from the target
  EXPECT_EQ(out[12], 0x08);
  EXPECT_EQ(out[13], 0x06);
  EXPECT_EQ(out[14 + 7], 2);                                 // op reply
  EXPECT_EQ(std::memcmp(out + 14 + 8, target.data(), 6), 0);  // sha
  EXPECT_EQ(std::memcmp(out + 14 + 14, req.data() + 14 + 24, 4), 0);  // spa = asked address
}

TEST(L3, GratuitousAndSelfArpGetNoReply) {
  uint8_t out[64];
  EXPECT_FALSE(ArpReply(ArpRequest(0x0AF00001, 0x0AF00001), Address(0x0AF00001), out));
  EXPECT_FALSE(ArpReply(ArpRequest(0x0AF00009, 0x0AF00001), Address(0x0AF00001), out));  // asks for us
  auto reply = ArpRequest(0x0AF00001, 0x0AF00002);
  reply[14 + 7] = 2;  // a reply, not a request
  EXPECT_FALSE(ArpReply(reply, Address(0x0AF00001), out));
}

TEST(L3, OnlyWellFormedIpFromPeers) {
  EXPECT_EQ(IpEtherType(Ipv4(20)), kEtherIpv4);
  EXPECT_EQ(IpEtherType(Ipv4(1500)), kEtherIpv4);
  auto bad = Ipv4(60);
  bad[3] = 59;  // header says 59, frame is 60
  EXPECT_FALSE(IpEtherType(bad));
  bad = Ipv4(20);
  bad[0] = 0x44;  // IHL 16 bytes
  EXPECT_FALSE(IpEtherType(bad));
  std::vector<uint8_t> v6(48, 0);
  v6[0] = 0x60;
  v6[5] = 8;
  EXPECT_EQ(IpEtherType(v6), kEtherIpv6);
  v6[5] = 9;
  EXPECT_FALSE(IpEtherType(v6));
  const uint8_t text[] = {'h', 'e', 'l', 'l', 'o'};
  EXPECT_FALSE(IpEtherType(text));
  EXPECT_FALSE(IpEtherType({}));
}

TEST(L3, DeviceHeaderToSelfOrTheMulticastMac) {
  uint8_t h[kEthHeader];
  DeviceHeader(Ipv4(20, 0x0AF00001), kEtherIpv4, Address(0x0AF00001), Address(0x0AF00002), h);
  EXPECT_EQ(std::memcmp(h, MacOf(Address(0x0AF00001)).data(), 6), 0);
  EXPECT_EQ(std::memcmp(h + 6, MacOf(Address(0x0AF00002)).data(), 6), 0);
  DeviceHeader(Ipv4(20, 0xE0000005), kEtherIpv4, Address(0x0AF00001), Address(0x0AF00002), h);  // 224.0.0.5
  const uint8_t ospf[6] = {0x01, 0x00, 0x5e, 0, 0, 5};
  EXPECT_EQ(std::memcmp(h, ospf, 6), 0);
  std::vector<uint8_t> v6(48, 0);
  v6[0] = 0x60;
  v6[24] = 0xff;
  v6[25] = 0x02;
  v6[39] = 1;  // ff02::1
  DeviceHeader(v6, kEtherIpv6, Address(0x0AF00001), Address(0x0AF00002), h);
  const uint8_t all_nodes[6] = {0x33, 0x33, 0, 0, 0, 1};
  EXPECT_EQ(std::memcmp(h, all_nodes, 6), 0);
  EXPECT_EQ(h[12], 0x86);
}

// Layer 2 (--layer2): whole Ethernet frames, ARP included.
std::vector<uint8_t> EthFrame(const Mac& dst, const Mac& src, uint16_t type, size_t payload) {
  std::vector<uint8_t> f(kEthHeader + payload, 0);
  std::memcpy(f.data(), dst.data(), 6);
  std::memcpy(f.data() + 6, src.data(), 6);
  f[12] = static_cast<uint8_t>(type >> 8);
  f[13] = static_cast<uint8_t>(type);
  return f;
}

TEST(L2, FramesGoWholeToTheNicTheirMacNamesOrToAll) {
  const Address a(0x0AF00001), b(0x0AF00002);
  auto f = EthFrame(MacOf(b), MacOf(a), kEtherArp, 28);  // an ARP reply: unicast, not answered here
  Outbound o = ClassifyL2(f);
  EXPECT_EQ(o.kind, Outbound::kUnicast);
  EXPECT_EQ(o.next_hop, b);
  EXPECT_EQ(o.packet.size(), f.size());  // header and all
  f = EthFrame({0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, MacOf(a), kEtherArp, 28);
  EXPECT_EQ(ClassifyL2(f).kind, Outbound::kBroadcast);
  f = EthFrame({0x02, 0x42, 1, 2, 3, 4}, MacOf(a), kEtherIpv4, 20);
  EXPECT_EQ(ClassifyL2(f).kind, Outbound::kDrop);
  EXPECT_EQ(ClassifyL2(absl::MakeConstSpan(f.data(), 13)).kind, Outbound::kDrop);
}

TEST(L2, OnlyFramesFromThePeersOwnMacToUsOrAGroupReachTheDevice) {
  const Address self(0x0AF00001), peer(0x0AF00002), other(0x0AF00003);
  EXPECT_EQ(CheckL2Inbound(EthFrame(MacOf(self), MacOf(peer), kEtherIpv4, 20), self, peer), nullptr);
  EXPECT_EQ(CheckL2Inbound(EthFrame({0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, MacOf(peer), kEtherArp, 28), self, peer),
            nullptr);
  EXPECT_NE(CheckL2Inbound(EthFrame(MacOf(self), MacOf(other), kEtherIpv4, 20), self, peer), nullptr);  // spoofed
  EXPECT_NE(CheckL2Inbound(EthFrame(MacOf(other), MacOf(peer), kEtherIpv4, 20), self, peer), nullptr);  // not ours
  const auto f = EthFrame(MacOf(self), MacOf(peer), kEtherIpv4, 0);
  EXPECT_NE(CheckL2Inbound(absl::MakeConstSpan(f.data(), 13), self, peer), nullptr);
}

}  // namespace
}  // namespace hsi::ifd
