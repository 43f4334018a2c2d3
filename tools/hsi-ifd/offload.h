// tools/hsi-ifd/offload.h: checksum offload between two hsi-ifds (layer 3),
// as pure functions on caller-owned buffers.
//
// With offload on (the default in layer 3; --offload off turns it off) the
// TAP device is opened with IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM): the
// kernel hands each packet over with a virtio_net_hdr (VnetHeader below) and no longer computes
// the TCP/UDP checksum of what it sends (VIRTIO_NET_HDR_F_NEEDS_CSUM: the
// checksum field holds the pseudo-header sum, the rest is ours to finish),
// and takes a packet marked so on a write without verifying it (a forward
// to another device finishes it there, in the kernel).
//
// On the ring a packet stays a bare IP packet; what the receiving kernel
// needs travels in the frame's 8-bit tag (Nic::SendTo, FrameView::tag),
// beside the packet, never in it:
//
//   kTagOffload      set on every frame an hsi-ifd with offload on sends:
//                    "I take kTagCsumPartial frames". A native peer never
//                    sets it, so each pump learns per peer, from the frames
//                    it receives, whom it may send partial checksums to
//                    (and forgets it when that peer's frames come without
//                    the bit, or when a link goes down).
//   kTagCsumPartial  the packet's TCP/UDP checksum field holds only the
//                    pseudo-header sum. The receiver does not trust a
//                    position from the sender: it derives where the
//                    checksum starts and lies from the packet itself
//                    (ChecksumSpot), and drops (and counts) a frame so
//                    marked whose packet has no such spot.
//
// A packet for a peer not known to take partial checksums (a native peer,
// one whose frames have not been seen yet, every broadcast) has its
// checksum finished by the pump before it goes on the ring, so every frame
// a native peer receives is a complete IP packet. hsi-dump finishes the
// checksum of a kTagCsumPartial frame in the copy it writes to its pcap.
//
// TSO/GSO is not enabled: ring frames are at most the CHPID's MTU, which is
// also the device's MTU, so TCP's segments (MSS = MTU - 40) already fill a
// frame and a GSO super-packet could not cross the ring whole
// (docs/hsi-ifd.md, "Offload", says more).
//
// Thread safety: pure functions.
#ifndef HSI_TOOLS_HSI_IFD_OFFLOAD_H_
#define HSI_TOOLS_HSI_IFD_OFFLOAD_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/types/span.h"

namespace hsi::ifd {

inline constexpr uint8_t kTagOffload = 0x01;
inline constexpr uint8_t kTagCsumPartial = 0x02;

// struct VnetHeader of <linux/virtio_net.h> (which C++ cannot include:
// a later struct there has a field named `class`), as a TAP with
// IFF_VNET_HDR reads and writes it: 10 bytes (the default
// TUNSETVNETHDRSZ), 16-bit fields in the host's order (a TAP's default:
// no TUNSETVNETLE/BE).
struct VnetHeader {
  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
static_assert(sizeof(VnetHeader) == 10 && alignof(VnetHeader) == 2);
static_assert(offsetof(VnetHeader, csum_start) == 6 && offsetof(VnetHeader, csum_offset) == 8);
inline constexpr uint8_t kVnetNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
inline constexpr uint8_t kVnetGsoNone = 0;    // VIRTIO_NET_HDR_GSO_NONE

// The one's-complement sum of `data` (16-bit big-endian words, an odd last
// byte padded with zero) added to `sum`, not yet folded.
uint64_t OnesSum(absl::Span<const uint8_t> data, uint64_t sum = 0);
// `sum` folded to 16 bits and complemented: the Internet checksum.
uint16_t FoldComplement(uint64_t sum);

// Where the transport checksum of an IP packet is, as offsets into it.
struct ChecksumSpot {
  size_t start = 0;       // first byte the checksum covers: the TCP/UDP header
  size_t offset = 0;      // the checksum field, from `start` (TCP 16, UDP 6)
  size_t header_end = 0;  // end of the TCP/UDP header
};

// The spot for an IPv4 packet (not a fragment) or an IPv6 packet (no
// extension header) carrying TCP (data offset 20..60, inside the packet)
// or UDP (8-byte header inside the packet); nullopt for anything else.
// `packet` must have passed IpEtherType() (l3.h).
std::optional<ChecksumSpot> TransportChecksum(absl::Span<const uint8_t> packet);

// Finishes a partial checksum in place: the sum of packet[start..) (the
// field itself holds the pseudo-header sum) folded, complemented and
// stored at start + offset (a result of 0 stored as 0xFFFF, as the kernel
// does: UDP's 0 means "no checksum"). Requires start + offset + 2 <=
// packet.size().
void FinishChecksum(absl::Span<uint8_t> packet, size_t start, size_t offset);

// Device -> ring: what to do with an IP packet the kernel gave with `h`
// (its csum_start counts the 14-byte Ethernet header). `to_offload_peer`:
// the frame goes (unicast) to a peer known to take partial checksums.
// Returns the tag to send the packet with, having finished its checksum in
// place unless it goes partial to such a peer; nullopt, with `*why`, for a
// packet to drop (a GSO packet, a checksum position outside the packet).
std::optional<uint8_t> PrepareForRing(const VnetHeader& h, absl::Span<uint8_t> packet, bool to_offload_peer,
                                      const char** why);

// Ring -> device: the vnet header to write before the Ethernet header of
// `packet` (an IP packet from a peer, which passed IpEtherType()) sent with
// `tag`. Returns nullptr, or why the frame must be dropped (a partial
// checksum on a packet without a checksum spot).
const char* HeaderForDevice(absl::Span<const uint8_t> packet, uint8_t tag, VnetHeader* h);

}  // namespace hsi::ifd

#endif  // HSI_TOOLS_HSI_IFD_OFFLOAD_H_
