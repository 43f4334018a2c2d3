// The block format of IP over CTC (tools/hsi-ctcm/block.h): packets go in
// and come out byte for byte, the block size is respected to the byte, and
// the reader refuses every rule a block from a hostile or garbled peer can
// break, naming it, without reading past the block (every truncation and
// every one-byte change of a good block; ASan would see an over-read).
#include "block.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi::ctcm {
namespace {

using ::testing::HasSubstr;

// An IPv4 packet of `size` bytes (>= 20) or an IPv6 packet (>= 40), the
// rest of its bytes a pattern from `seed`.
std::vector<uint8_t> Packet(int version, size_t size, uint8_t seed) {
  std::vector<uint8_t> p(size);
  for (size_t i = 0; i < size; ++i) p[i] = static_cast<uint8_t>(seed + i * 7);
  p[0] = static_cast<uint8_t>(version == 4 ? 0x45 : 0x60);
  return p;
}

std::vector<uint8_t> Bytes(absl::Span<const uint8_t> s) { return {s.begin(), s.end()}; }

void Put32(std::vector<uint8_t>* b, size_t at, uint32_t v) { std::memcpy(b->data() + at, &v, 4); }
void Put16(std::vector<uint8_t>* b, size_t at, uint16_t v) { std::memcpy(b->data() + at, &v, 2); }

// A good block of three packets: IPv4 100 bytes, IPv6 60, IPv4 20.
std::vector<uint8_t> GoodBlock() {
  BlockWriter w(4096);
  w.Add(Packet(4, 100, 1), kProtocolIpv4);
  w.Add(Packet(6, 60, 2), kProtocolIpv6);
  w.Add(Packet(4, 20, 3), kProtocolIpv4);
  return Bytes(w.bytes());
}

TEST(CtcmBlockTest, PacketsComeOutAsTheyWentIn) {
  std::vector<BlockPacket> out;
  const std::vector<uint8_t> block = GoodBlock();
  EXPECT_EQ(block.size(), kBlockHeader + 3 * kPacketHeader + 100 + 60 + 20);
  ASSERT_TRUE(ParseBlock(block, 65535, &out).ok());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].protocol, kProtocolIpv4);
  EXPECT_EQ(Bytes(out[0].bytes), Packet(4, 100, 1));
  EXPECT_EQ(out[1].protocol, kProtocolIpv6);
  EXPECT_EQ(Bytes(out[1].bytes), Packet(6, 60, 2));
  EXPECT_EQ(Bytes(out[2].bytes), Packet(4, 20, 3));
}

TEST(CtcmBlockTest, AWriterFillsTheBlockToTheByteAndStartsAfresh) {
  BlockWriter w(256);
  EXPECT_TRUE(w.bytes().empty());
  EXPECT_TRUE(w.Fits(256 - 16));
  EXPECT_FALSE(w.Fits(256 - 15));
  w.Add(Packet(4, 200, 9), kProtocolIpv4);
  EXPECT_TRUE(w.Fits(256 - 16 - 200 - 8));
  EXPECT_FALSE(w.Fits(256 - 16 - 200 - 7));
  w.Add(Packet(4, 32, 9), kProtocolIpv4);
  EXPECT_EQ(w.bytes().size(), 256u);
  EXPECT_EQ(w.count(), 2u);
  w.Clear();
  EXPECT_EQ(w.count(), 0u);
  EXPECT_TRUE(w.bytes().empty());
  w.Add(Packet(6, 40, 1), kProtocolIpv6);
  std::vector<BlockPacket> out;
  ASSERT_TRUE(ParseBlock(w.bytes(), 65535, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].bytes.size(), 40u);
}

TEST(CtcmBlockTest, TheMtuIsTheBlockLessBothHeadersAtMostAnIpPacket) {
  EXPECT_EQ(MaxPacketForBlock(65536), 65520u);  // hsid's default block
  EXPECT_EQ(MaxPacketForBlock(32768), 32752u);  // ctcm's default buffer: 32760 there
  EXPECT_EQ(MaxPacketForBlock(16 << 20), 65535u);
  EXPECT_EQ(MaxPacketForBlock(64), 48u);
  EXPECT_EQ(MaxPacketForBlock(16), 0u);
}

TEST(CtcmBlockTest, IpProtocolByVersionAndMinimumHeader) {
  EXPECT_EQ(IpProtocol(Packet(4, 20, 0)), kProtocolIpv4);
  EXPECT_EQ(IpProtocol(Packet(4, 19, 0)), std::nullopt);
  EXPECT_EQ(IpProtocol(Packet(6, 40, 0)), kProtocolIpv6);
  EXPECT_EQ(IpProtocol(Packet(6, 39, 0)), std::nullopt);
  std::vector<uint8_t> other = Packet(4, 60, 0);
  other[0] = 0x55;
  EXPECT_EQ(IpProtocol(other), std::nullopt);
  EXPECT_EQ(IpProtocol({}), std::nullopt);
}

// Each rule a block can break, and the words the refusal names it by.
TEST(CtcmBlockTest, EveryBrokenRuleRefusesTheWholeBlockNamingIt) {
  const std::vector<uint8_t> good = GoodBlock();
  struct Case {
    const char* name;
    std::vector<uint8_t> block;
    const char* says;
  };
  std::vector<Case> cases;
  cases.push_back({"short", {1, 2, 3}, "shorter than its 8-byte header"});
  auto with = [&](auto change) {
    std::vector<uint8_t> b = good;
    change(&b);
    return b;
  };
  cases.push_back({"magic", with([](auto* b) { Put32(b, 0, 0x12345678); }), "magic"});
  cases.push_back({"version", with([](auto* b) { Put16(b, 4, 2); }), "version 2"});
  cases.push_back({"no packets", with([](auto* b) { Put16(b, 6, 0); }), "0 packets"});
  cases.push_back({"count too high", with([](auto* b) { Put16(b, 6, 4); }), "packet 4 of 4"});
  cases.push_back({"count too low", with([](auto* b) { Put16(b, 6, 2); }), "bytes after the last of 2"});
  cases.push_back({"length 0", with([](auto* b) { Put32(b, 8, 0); }), "length 0"});
  cases.push_back({"length over max", with([](auto* b) { Put32(b, 8, 0xFFFFFFF0u); }), "length 4294967280"});
  cases.push_back({"past the end", with([](auto* b) { Put32(b, 8 + 8 + 100 + 8 + 60, 5000); }), "run past the block's end"});
  cases.push_back({"reserved", with([](auto* b) { Put16(b, 14, 1); }), "reserved field 1"});
  cases.push_back({"protocol", with([](auto* b) { Put16(b, 12, 0x0806); }), "protocol 0x806"});
  cases.push_back({"mismatch", with([](auto* b) { Put16(b, 12, kProtocolIpv6); }), "not an IP packet of that version"});
  cases.push_back({"not IP", with([](auto* b) { (*b)[16] = 0x55; }), "not an IP packet"});
  cases.push_back({"trailing", with([](auto* b) { b->push_back(0); }), "1 bytes after the last of 3"});
  std::vector<uint8_t> header_cut = good;
  header_cut.resize(8 + 8 + 100 + 4);  // the second packet's header cut
  Put16(&header_cut, 6, 2);
  cases.push_back({"header past the end", header_cut, "its header runs past the block's end"});
  for (const Case& c : cases) {
    std::vector<BlockPacket> out = {BlockPacket{}};
    const absl::Status s = ParseBlock(c.block, 65535, &out);
    EXPECT_TRUE(absl::IsDataLoss(s)) << c.name << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.says)) << c.name;
    EXPECT_TRUE(out.empty()) << c.name << ": a refused block must deliver nothing";
  }
  // The limit is the caller's: a packet over `max_packet` is refused.
  std::vector<BlockPacket> out;
  EXPECT_THAT(std::string(ParseBlock(good, 99, &out).message()), HasSubstr("length 100 (1..99)"));
}

// Whatever a block says, the packets handed out lie inside it.
void ExpectInside(const std::vector<uint8_t>& block, const std::vector<BlockPacket>& out) {
  for (const BlockPacket& p : out) {
    ASSERT_GE(p.bytes.data(), block.data());
    ASSERT_LE(p.bytes.data() + p.bytes.size(), block.data() + block.size());
  }
}

TEST(CtcmBlockTest, NoTruncationOrOneByteChangeReadsPastTheBlock) {
  const std::vector<uint8_t> good = GoodBlock();
  std::vector<BlockPacket> out;
  for (size_t n = 0; n < good.size(); ++n) {
    // A copy of exactly n bytes, so ASan sees any read past it.
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_FALSE(ParseBlock(cut, 65535, &out).ok()) << "a block cut to " << n << " bytes was accepted";
  }
  size_t accepted = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (int v : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
      std::vector<uint8_t> b = good;
      if (b[i] == v) continue;
      b[i] = static_cast<uint8_t>(v);
      if (ParseBlock(b, 65535, &out).ok()) {
        ++accepted;  // a change inside a packet's bytes: still a good block
        ExpectInside(b, out);
        ASSERT_EQ(out.size(), 3u);
      }
    }
  }
  // Changes in the packets' payloads pass (the block format does not
  // checksum IP); none in the headers does.
  EXPECT_GT(accepted, 0u);
}

}  // namespace
}  // namespace hsi::ctcm
