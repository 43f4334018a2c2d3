// tools/hsi-ctcm/block.cc: see block.h.
#include "block.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hsi::ctcm {
namespace {

struct BlockHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t count;
};
struct PacketHeader {
  uint32_t length;
  uint16_t protocol;
  uint16_t reserved;
};
static_assert(sizeof(BlockHeader) == kBlockHeader && std::is_trivially_copyable_v<BlockHeader>);
static_assert(sizeof(PacketHeader) == kPacketHeader && std::is_trivially_copyable_v<PacketHeader>);

}  // namespace

uint32_t MaxPacketForBlock(uint32_t block_size) {
  if (block_size <= kBlockHeader + kPacketHeader) return 0;
  return std::min<uint32_t>(block_size - static_cast<uint32_t>(kBlockHeader + kPacketHeader), kMaxIpPacket);
}

std::optional<uint16_t> IpProtocol(absl::Span<const uint8_t> packet) {
  if (packet.empty()) return std::nullopt;
  const int version = packet[0] >> 4;
  if (version == 4 && packet.size() >= 20) return kProtocolIpv4;
  if (version == 6 && packet.size() >= 40) return kProtocolIpv6;
  return std::nullopt;
}

BlockWriter::BlockWriter(uint32_t block_size) : block_size_(block_size) {
  bytes_.reserve(block_size);
  Clear();
}

void BlockWriter::Clear() {
  bytes_.assign(kBlockHeader, 0);
  count_ = 0;
}

void BlockWriter::Add(absl::Span<const uint8_t> packet, uint16_t protocol) {
  assert(Fits(packet.size()) && count_ < 0xFFFF);
  const PacketHeader h{static_cast<uint32_t>(packet.size()), protocol, 0};
  const size_t at = bytes_.size();
  bytes_.resize(at + kPacketHeader + packet.size());
  std::memcpy(bytes_.data() + at, &h, sizeof(h));
  std::memcpy(bytes_.data() + at + kPacketHeader, packet.data(), packet.size());
  ++count_;
  const BlockHeader b{kBlockMagic, kBlockVersion, static_cast<uint16_t>(count_)};
  std::memcpy(bytes_.data(), &b, sizeof(b));
}

absl::Span<const uint8_t> BlockWriter::bytes() const {
  if (count_ == 0) return {};
  return absl::MakeConstSpan(bytes_);
}

absl::Status ParseBlock(absl::Span<const uint8_t> block, uint32_t max_packet, std::vector<BlockPacket>* out) {
  out->clear();
  auto fail = [out](std::string why) {
    out->clear();
    return absl::DataLossError(std::move(why));
  };
  if (block.size() < kBlockHeader) {
    return fail(absl::StrCat("block of ", block.size(), " bytes: shorter than its ", kBlockHeader, "-byte header"));
  }
  BlockHeader b;
  std::memcpy(&b, block.data(), sizeof(b));
  if (b.magic != kBlockMagic) return fail(absl::StrCat("block magic 0x", absl::Hex(b.magic), ", not an IP-over-CTC block"));
  if (b.version != kBlockVersion) return fail(absl::StrCat("block version ", b.version, " (this end speaks ", kBlockVersion, ")"));
  if (b.count == 0) return fail("block of 0 packets");
  size_t at = kBlockHeader;
  for (uint32_t i = 0; i < b.count; ++i) {
    const std::string which = absl::StrCat("packet ", i + 1, " of ", b.count, " at offset ", at);
    if (block.size() - at < kPacketHeader) {
      return fail(absl::StrCat(which, ": its header runs past the block's end (", block.size(), " bytes)"));
    }
    PacketHeader h;
    std::memcpy(&h, block.data() + at, sizeof(h));
    at += kPacketHeader;
    if (h.length == 0 || h.length > max_packet) {
      return fail(absl::StrCat(which, ": length ", h.length, " (1..", max_packet, ")"));
    }
    if (block.size() - at < h.length) {
      return fail(absl::StrCat(which, ": ", h.length, " bytes run past the block's end (", block.size(), " bytes)"));
    }
    if (h.reserved != 0) return fail(absl::StrCat(which, ": reserved field ", h.reserved, ", not 0"));
    const auto packet = block.subspan(at, h.length);
    const std::optional<uint16_t> ip = IpProtocol(packet);
    if (h.protocol != kProtocolIpv4 && h.protocol != kProtocolIpv6) {
      return fail(absl::StrCat(which, ": protocol 0x", absl::Hex(h.protocol), " (IPv4 0x800 or IPv6 0x86dd)"));
    }
    if (ip != h.protocol) {
      return fail(absl::StrCat(which, ": marked protocol 0x", absl::Hex(h.protocol),
                               " but is not an IP packet of that version"));
    }
    out->push_back(BlockPacket{h.protocol, packet});
    at += h.length;
  }
  if (at != block.size()) {
    return fail(absl::StrCat(block.size() - at, " bytes after the last of ", b.count, " packets"));
  }
  return absl::OkStatus();
}

}  // namespace hsi::ctcm
