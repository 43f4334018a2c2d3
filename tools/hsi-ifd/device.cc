// tools/hsi-ifd/device.cc: see device.h.
#include "device.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"

namespace hsi::ifd {
namespace {

absl::Status Errno(int err, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENODEV:
      return absl::NotFoundError(msg);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(msg);
    case EEXIST:
    case EBUSY:
      return absl::AlreadyExistsError(msg);
    default:
      return absl::InternalError(msg);
  }
}

void SetIpv4(sockaddr* sa, uint32_t host_order) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(host_order);
  std::memcpy(sa, &in, sizeof(in));
}

}  // namespace

absl::Status EnterNetns(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("--netns '", name, "' is not a namespace name (as `ip netns list` shows them)"));
  }
  const std::string path = "/run/netns/" + name;
  UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (ns.get() < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat("network namespace '", name, "' does not exist (no ",
                                              path, "; create it with `ip netns add ", name, "`)"));
    }
    return Errno(err, absl::StrCat("network namespace '", name, "': open ", path));
  }
  if (::setns(ns.get(), CLONE_NEWNET) != 0) {
    return Errno(errno, absl::StrCat("network namespace '", name, "': setns ", path));
  }
  return absl::OkStatus();
}

namespace {

// The MAC of device `ifname` in the current namespace, if it exists.
std::optional<Mac> DeviceMac(const std::string& ifname) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return std::nullopt;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  if (::ioctl(sock.get(), SIOCGIFHWADDR, &ifr) != 0) return std::nullopt;
  Mac mac;
  std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, mac.size());
  return mac;
}

}  // namespace

absl::StatusOr<TapDevice> TapDevice::Create(const std::string& ifname, bool persist, const Mac& mac,
                                            bool offload) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ || ifname.find_first_of("/ \t\n:") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ifname '", ifname, "' is not a device name (1..", IFNAMSIZ - 1,
                     " characters, no '/', ':' or spaces)"));
  }
  // TUNSETIFF on the name of an existing TAP device would attach to it:
  // refuse any existing name, so that we only ever remove what we made;
  // with `persist`, re-attach only to what an earlier run left (our MAC).
  bool reattach = false;
  if (::if_nametoindex(ifname.c_str()) != 0) {
    if (!persist) {
      return absl::AlreadyExistsError(
          absl::StrCat("device ", ifname, " already exists in this network namespace"));
    }
    if (DeviceMac(ifname) != mac) {
      return absl::AlreadyExistsError(absl::StrCat(
          "device ", ifname, " already exists in this network namespace and is not one hsi-ifd --persist left "
          "for this address (its MAC is not 02:00:<address>)"));
    }
    reattach = true;
  }
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return Errno(errno, "cannot open /dev/net/tun (TUN/TAP support)");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  // IFF_TUN_EXCL: creating, fail if the name appeared meanwhile.
  ifr.ifr_flags =
      static_cast<short>(IFF_TAP | IFF_NO_PI | (reattach ? 0 : IFF_TUN_EXCL) | (offload ? IFF_VNET_HDR : 0));
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    const int err = errno;
    if (reattach) {
      // EINVAL: not a TAP device (or other flags); EBUSY: another process
      // has it open.
      return absl::AlreadyExistsError(absl::StrCat(
          "device ", ifname, " exists but cannot be re-attached (TUNSETIFF: ", std::strerror(err),
          err == EBUSY ? ": another process has it open" : ": not a TAP device made by hsi-ifd", ")"));
    }
    return Errno(err, absl::StrCat("cannot create TAP device ", ifname, " (TUNSETIFF)"));
  }
  if (reattach) {
    ifreq got{};
    if (::ioctl(fd.get(), TUNGETIFF, &got) != 0 || (got.ifr_flags & IFF_PERSIST) == 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("device ", ifname, " exists but is not a persistent TAP device: not re-attached"));
    }
  }
  // Always: a re-attached device keeps the offloads an earlier run set,
  // and without a vnet header nothing may come partial.
  if (::ioctl(fd.get(), TUNSETOFFLOAD, static_cast<unsigned long>(offload ? TUN_F_CSUM : 0)) != 0) {
    return Errno(errno, absl::StrCat("device ", ifname, ": TUNSETOFFLOAD(", offload ? "TUN_F_CSUM" : "0", ")"));
  }
  if (persist && !reattach && ::ioctl(fd.get(), TUNSETPERSIST, 1) != 0) {
    return Errno(errno, absl::StrCat("device ", ifname, ": TUNSETPERSIST"));
  }
  return TapDevice(std::move(fd), ifname, reattach);
}

absl::Status TapDevice::Configure(const Mac& mac, uint32_t mtu, Address address, const Subnet& subnet) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return Errno(errno, "socket(AF_INET) for device ioctls");
  auto req = [&]() {
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name_.data(), name_.size());
    return ifr;
  };
  auto step = [&](unsigned long op, ifreq* ifr, const std::string& what) -> absl::Status {
    if (::ioctl(sock.get(), op, ifr) != 0) return Errno(errno, absl::StrCat("device ", name_, ": ", what));
    return absl::OkStatus();
  };
  ifreq ifr = req();
  if (!reattached_) {  // a re-attached device has it (Create checked)
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    std::memcpy(ifr.ifr_hwaddr.sa_data, mac.data(), mac.size());
    if (auto s = step(SIOCSIFHWADDR, &ifr, "set MAC"); !s.ok()) return s;
    ifr = req();
  }
  ifr.ifr_mtu = static_cast<int>(mtu);
  if (auto s = step(SIOCSIFMTU, &ifr, absl::StrCat("set MTU ", mtu)); !s.ok()) return s;
  ifr = req();
  SetIpv4(&ifr.ifr_addr, address.value());
  if (auto s = step(SIOCSIFADDR, &ifr, absl::StrCat("set address ", address.ToString())); !s.ok()) return s;
  ifr = req();
  SetIpv4(&ifr.ifr_netmask, subnet.mask());
  if (auto s = step(SIOCSIFNETMASK, &ifr, absl::StrCat("set prefix /", subnet.prefix())); !s.ok()) return s;
  ifr = req();
  SetIpv4(&ifr.ifr_broadaddr, subnet.broadcast().value());
  if (auto s = step(SIOCSIFBRDADDR, &ifr, "set broadcast address"); !s.ok()) return s;
  ifr = req();
  if (auto s = step(SIOCGIFFLAGS, &ifr, "read flags"); !s.ok()) return s;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  return step(SIOCSIFFLAGS, &ifr, "bring up");
}

}  // namespace hsi::ifd
