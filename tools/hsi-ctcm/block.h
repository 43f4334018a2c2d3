// tools/hsi-ctcm/block.h: the block format of IP over CTC (hsi-ctcm): how
// several IP packets travel in one CTC write, and the one reader of it.
//
// Linux's ctcm packs the packets queued while a write is in flight into
// the next write: a 2-byte block length, then each packet behind a 6-byte
// header (length, protocol), so a 32 KiB buffer carries an IP packet of up
// to 32760 bytes. hsi-ctcm does the same with wider fields (a CTC's block
// may be up to 16 MiB here). All fields in host byte order (both ends are
// on one host), every record starts where the last one ended:
//
//   block header   8 bytes  magic "hCTC" (kBlockMagic), version 1 (u16),
//                           packet count (u16, >= 1)
//   packet header  8 bytes  length of the packet (u32), protocol (u16:
//                           0x0800 IPv4 or 0x86DD IPv6), reserved (u16, 0)
//   packet         length bytes, a whole IPv4/IPv6 packet
//   ... count packets in all; the block ends with the last one
//
// So a block of B bytes carries one packet of up to B - 16 bytes
// (MaxPacketForBlock), and the interface's MTU is that, capped at 65535
// (an IP packet's largest size): 65520 with hsid's default 64 KiB block,
// 32752 with a 32 KiB one (ctcm's 32760 less our wider headers).
//
// The block comes from the other LPAR's memory: ParseBlock checks all of
// it before anything of it is used (invariant 2), and a block that breaks
// any rule is refused whole, never half delivered.
//
// Thread safety: BlockWriter is a value type for one thread; ParseBlock is
// a pure function.
#ifndef HSI_TOOLS_HSI_CTCM_BLOCK_H_
#define HSI_TOOLS_HSI_CTCM_BLOCK_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace hsi::ctcm {

inline constexpr uint32_t kBlockMagic = 0x43544368;  // "hCTC" in memory on little-endian
inline constexpr uint16_t kBlockVersion = 1;
inline constexpr size_t kBlockHeader = 8;
inline constexpr size_t kPacketHeader = 8;
inline constexpr uint16_t kProtocolIpv4 = 0x0800;
inline constexpr uint16_t kProtocolIpv6 = 0x86DD;
inline constexpr uint32_t kMaxIpPacket = 65535;
// The smallest MTU IP over CTC accepts (IPv4's minimum reassembly size).
inline constexpr uint32_t kMinMtu = 576;

// The largest packet one block of `block_size` bytes carries, capped at
// kMaxIpPacket; 0 if not even the headers fit.
uint32_t MaxPacketForBlock(uint32_t block_size);

// The protocol of an IP packet by its version nibble: kProtocolIpv4 for a
// 4 with at least a 20-byte header, kProtocolIpv6 for a 6 with at least
// 40 bytes; nullopt otherwise.
std::optional<uint16_t> IpProtocol(absl::Span<const uint8_t> packet);

// Packs packets into one block of at most `block_size` bytes.
class BlockWriter {
 public:
  explicit BlockWriter(uint32_t block_size);
  // Whether a packet of `length` bytes still fits.
  bool Fits(size_t length) const { return bytes_.size() + kPacketHeader + length <= block_size_; }
  // Appends `packet` of `protocol`. Requires Fits(packet.size()) and
  // count() < 65535.
  void Add(absl::Span<const uint8_t> packet, uint16_t protocol);
  // The block as it stands (header with the count so far); empty if no
  // packet was added.
  absl::Span<const uint8_t> bytes() const;
  uint32_t count() const { return count_; }
  void Clear();

 private:
  uint32_t block_size_;
  uint32_t count_ = 0;
  std::vector<uint8_t> bytes_;
};

// One packet of a parsed block: a view into the block's bytes.
struct BlockPacket {
  uint16_t protocol = 0;
  absl::Span<const uint8_t> bytes;
};

// Checks `block` whole and fills `out` with its packets (views into
// `block`): OK, or kDataLoss naming the first rule it breaks (too short
// for its header, bad magic or version, no packets, a packet header or
// packet past the end, a length of 0 or over `max_packet`, an unknown
// protocol or one the packet's version nibble contradicts, a reserved
// field not 0, bytes left after the last packet). On an error `out` is
// empty.
absl::Status ParseBlock(absl::Span<const uint8_t> block, uint32_t max_packet, std::vector<BlockPacket>* out);

}  // namespace hsi::ctcm

#endif  // HSI_TOOLS_HSI_CTCM_BLOCK_H_
