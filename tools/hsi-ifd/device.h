// tools/hsi-ifd/device.h: the TAP device of hsi-ifd, and the point-to-point
// TUN device of hsi-ctcm (IP over CTC), in a network namespace.
//
// The process enters the namespace (setns on /run/netns/NAME, as `ip netns
// exec` does) before it opens /dev/net/tun, so the device is created where
// it lives and no other namespace ever sees it; every later ioctl also runs
// there. By default the device is not persistent: it disappears with the
// file descriptor, so the process's exit (even kill -9) removes it with its
// addresses and routes, and nothing is left behind on any error path.
// With `persist` (hsi-ifd --persist) it is made persistent (TUNSETPERSIST)
// and outlives the process: a restarted hsi-ifd re-attaches to it by name
// (TUNSETIFF on the existing device), and its addresses, routes and
// neighbour entries are still there, so an open TCP connection only sees
// the packets lost while no one read the device (TCP retransmits them).
// (Entering the namespace does not affect the control socket to hsid: a
// path-named Unix socket is reached through the file system.)
//
// Thread safety: one thread; EnterNetns changes the calling thread's
// namespace (the only thread that touches the device).
#ifndef HSI_TOOLS_HSI_IFD_DEVICE_H_
#define HSI_TOOLS_HSI_IFD_DEVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hsi/address.h"
#include "hsi/fd.h"
#include "l3.h"

namespace hsi::ifd {

// Moves the calling thread into the network namespace NAME (the file
// /run/netns/NAME made by `ip netns add`). kNotFound naming the namespace
// and path if it does not exist, kPermissionDenied without CAP_SYS_ADMIN.
absl::Status EnterNetns(const std::string& name);

class TapDevice {
 public:
  // Creates TAP device `ifname` (IFF_TAP | IFF_NO_PI, non-blocking) in the
  // current network namespace. kAlreadyExists if a device of that name is
  // there (hsi-ifd never takes over a device it did not make), kNotFound
  // if /dev/net/tun is missing, kPermissionDenied without CAP_NET_ADMIN.
  //
  // With `persist`, the device is made persistent, and an existing device
  // of that name is re-attached instead of refused if it is one hsi-ifd
  // left: a persistent TAP device (the kernel says so to TUNSETIFF and
  // TUNGETIFF) with MAC `mac`, which no other process has open (kBusy from
  // the kernel: kAlreadyExists here). Anything else is kAlreadyExists.
  //
  // With `offload` (offload.h), the device is opened with IFF_VNET_HDR:
  // every read returns, and every write must start with, a
  // virtio_net_hdr; and TUNSETOFFLOAD(TUN_F_CSUM) lets the kernel hand
  // over TCP/UDP packets with partial checksums. Errors name the step.
  static absl::StatusOr<TapDevice> Create(const std::string& ifname, bool persist = false,
                                          const Mac& mac = {}, bool offload = false);

  // Whether Create() re-attached to a device an earlier run left.
  bool reattached() const { return reattached_; }

  // Sets the MAC, the MTU, the IPv4 address with its prefix (and the
  // subnet's broadcast) and brings the device up. Errors name the device
  // and the step. On a re-attached device the MAC is already `mac`, and
  // setting an address, prefix or MTU that is already there changes
  // nothing (the kernel keeps the routes).
  absl::Status Configure(const Mac& mac, uint32_t mtu, Address address, const Subnet& subnet);

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }

 private:
  TapDevice(UniqueFd fd, std::string name, bool reattached)
      : fd_(std::move(fd)), name_(std::move(name)), reattached_(reattached) {}
  UniqueFd fd_;
  std::string name_;
  bool reattached_ = false;
};

// A point-to-point TUN device (IFF_TUN | IFF_NO_PI, non-blocking): each
// read() returns one bare IPv4/IPv6 packet, each write() hands one to the
// kernel. Not persistent: it goes with its file descriptor, so the
// process's exit (any exit) removes it with its address and route. Made by
// hsi-ctcm as Linux's ctcm driver makes ctc0.
class PointToPointDevice {
 public:
  // Creates TUN device `ifname` in the current network namespace.
  // kInvalidArgument for a bad name, kAlreadyExists if a device of that
  // name is there (never taken over), kNotFound without /dev/net/tun,
  // kPermissionDenied without CAP_NET_ADMIN.
  static absl::StatusOr<PointToPointDevice> Create(const std::string& ifname);

  // Sets the MTU, the local address with the peer's (as `ip addr add
  // ADDRESS peer PEER dev IFNAME`: a /32 and a route to PEER through the
  // device) and brings the device up. Errors name the device and the step.
  absl::Status Configure(uint32_t mtu, Address address, Address peer);

  // Sets the device's carrier (TUNSETCARRIER): without it the device
  // stays up but `ip link` shows NO-CARRIER, operstate DOWN, the kernel
  // drops what is sent to it and its routes are marked linkdown.
  absl::Status SetCarrier(bool on);
  // Has the kernel skip this device's routes while it has no carrier
  // (net.ipv4.conf.IFNAME.ignore_routes_with_linkdown = 1 in the current
  // namespace), so that another route, if any, takes its traffic and
  // senders get "network unreachable" rather than a silent drop.
  absl::Status IgnoreRoutesWithoutCarrier();

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }

 private:
  PointToPointDevice(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  UniqueFd fd_;
  std::string name_;
};

// kAlreadyExists naming the device if `address` or `peer` is already an
// IPv4 address of an interface in the current network namespace (a second
// interface with the same address would take the other's traffic, or the
// peer's packets would never leave); kInternal if the addresses cannot be
// listed.
absl::Status CheckAddressesFree(Address address, Address peer);

}  // namespace hsi::ifd

#endif  // HSI_TOOLS_HSI_IFD_DEVICE_H_
