// tools/hsi-ifd/l3.h: the layer-3 framing of hsi-ifd, as pure functions.
//
// hsi-ifd gives the kernel a TAP device and puts bare IP packets on the
// ring (layer 3, as real HiperSockets). The Ethernet header between the
// kernel and hsi-ifd exists only to carry the next hop:
//
//   * Every interface's MAC is 02:00:<its hsi address, 4 bytes> (locally
//     administered, unicast), so a frame the kernel sends to
//     02:00:0a:f0:00:02 goes to the NIC with address 10.240.0.2. That is
//     the next hop the kernel resolved (for `ip route ... via 10.240.0.2`
//     it is the gateway, not the destination), which is how the real
//     adapter delivers.
//   * IPv4: the kernel asks ARP for the next hop; hsi-ifd answers every
//     request itself, on the device, with 02:00:<target address> (no ARP
//     ever reaches the CHPID). A next hop no NIC has is answered too; its
//     packets are dropped and counted (tx_no_peer) when SendTo says
//     kNotFound.
//   * IPv6: neighbour discovery is ICMPv6, i.e. IP: solicitations go to a
//     multicast address and so to every NIC of the CHPID; the peer's kernel
//     answers with its own MAC, which encodes its hsi address.
//   * Broadcast and multicast destination MACs (first octet's low bit set:
//     ff:ff:ff:ff:ff:ff, 01:00:5e:..., 33:33:...) go to the CHPID's
//     broadcast address, i.e. to every other NIC.
//   * From the ring to the device: only well-formed IPv4/IPv6 packets (the
//     length in the IP header equals the frame's) are written, with an
//     Ethernet header to this interface's MAC (or the IP multicast MAC);
//     anything else is dropped and counted (rx_not_ip).
//
// Thread safety: pure functions on caller-owned buffers.
#ifndef HSI_TOOLS_HSI_IFD_L3_H_
#define HSI_TOOLS_HSI_IFD_L3_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/types/span.h"
#include "hsi/address.h"

namespace hsi::ifd {

inline constexpr size_t kEthHeader = 14;
inline constexpr uint16_t kEtherIpv4 = 0x0800;
inline constexpr uint16_t kEtherArp = 0x0806;
inline constexpr uint16_t kEtherIpv6 = 0x86DD;
using Mac = std::array<uint8_t, 6>;

// 02:00:<a.b.c.d>.
Mac MacOf(Address a);

// What to do with a frame the kernel sent on the device.
struct Outbound {
  enum Kind {
    kUnicast,    // an IP packet for the NIC `next_hop`
    kBroadcast,  // an IP packet for every NIC (broadcast/multicast MAC)
    kArp,        // an ARP packet: see ArpReply()
    kDrop,       // anything else (why: `reason`)
  } kind = kDrop;
  Address next_hop;
  absl::Span<const uint8_t> packet;  // the IP packet, Ethernet header stripped
  const char* reason = "";
};
Outbound Classify(absl::Span<const uint8_t> frame);

// The ARP reply hsi-ifd writes to the device for an ARP request `frame`
// (Ethernet header included), claiming 02:00:<target> for the target
// address. Nothing for anything but a request for an IPv4 address other
// than `self` and the sender's own (gratuitous ARP / address probes).
// Returns the reply's length (42) written to `out`.
std::optional<size_t> ArpReply(absl::Span<const uint8_t> frame, Address self,
                               absl::Span<uint8_t> out);

// Whether `packet` (from the ring) is a well-formed IPv4 or IPv6 packet
// whose header length field matches its length. Returns its ethertype.
std::optional<uint16_t> IpEtherType(absl::Span<const uint8_t> packet);

// Writes the 14-byte Ethernet header for `packet` (IP, from `source`) as
// the device of NIC `self` receives it: to `self`'s MAC, or to the IP
// multicast MAC for a multicast destination, ff:ff:ff:ff:ff:ff for
// 255.255.255.255.
void DeviceHeader(absl::Span<const uint8_t> packet, uint16_t ethertype, Address self,
                  Address source, uint8_t out[kEthHeader]);

// --- layer 2 (hsi-ifd --layer2) ------------------------------------------
//
// Frames on the ring are whole Ethernet frames, as HiperSockets in layer-2
// mode carries them; the kernel runs ARP itself, over the CHPID's
// broadcast. Each interface's MAC is still 02:00:<its hsi address>, so a
// unicast destination MAC names the NIC to deliver to (the adapter's
// forwarding table, known without learning).

// Where a frame the kernel sent (layer 2) goes: kUnicast to `next_hop`
// (destination MAC 02:00:<address>), kBroadcast (group bit set), or kDrop
// (shorter than an Ethernet header, or a unicast MAC that no hsi NIC can
// have). `packet` is the whole frame.
Outbound ClassifyL2(absl::Span<const uint8_t> frame);

// Whether a frame from the ring, from the NIC `source`, may be written to
// the device of NIC `self` (layer 2): at least an Ethernet header, the
// source MAC the sender's own (02:00:<source>: no peer speaks for
// another), the destination this interface's MAC or a group address.
// nullptr if so, else why not.
const char* CheckL2Inbound(absl::Span<const uint8_t> frame, Address self, Address source);

}  // namespace hsi::ifd

#endif  // HSI_TOOLS_HSI_IFD_L3_H_
