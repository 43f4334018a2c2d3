// tools/hsi-ifd/device.h: the TAP device of hsi-ifd, in a network namespace.
//
// The process enters the namespace (setns on /run/netns/NAME, as `ip netns
// exec` does) before it opens /dev/net/tun, so the device is created where
// it lives and no other namespace ever sees it; every later ioctl also runs
// there. The device is not persistent: it disappears with the file
// descriptor, so the process's exit (even kill -9) removes it with its
// addresses and routes, and nothing is left behind on any error path.
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
  static absl::StatusOr<TapDevice> Create(const std::string& ifname);

  // Sets the MAC, the MTU, the IPv4 address with its prefix (and the
  // subnet's broadcast) and brings the device up. Errors name the device
  // and the step.
  absl::Status Configure(const Mac& mac, uint32_t mtu, Address address, const Subnet& subnet);

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }

 private:
  TapDevice(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  UniqueFd fd_;
  std::string name_;
};

}  // namespace hsi::ifd

#endif  // HSI_TOOLS_HSI_IFD_DEVICE_H_
