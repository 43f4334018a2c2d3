// tools/hsi-ifd/device.cc: see device.h.
#include "device.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
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

// kInvalidArgument unless `ifname` can name a network device.
absl::Status CheckIfname(const std::string& ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ || ifname.find_first_of("/ \t\n:") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ifname '", ifname, "' is not a device name (1..", IFNAMSIZ - 1,
                     " characters, no '/', ':' or spaces)"));
  }
  return absl::OkStatus();
}

// An ioctl socket and an ifreq for `name`, for the Configure() calls.
class DeviceIoctls {
 public:
  explicit DeviceIoctls(const std::string& name) : name_(name), sock_(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {}
  absl::Status status() const {
    return sock_.get() < 0 ? Errno(errno, "socket(AF_INET) for device ioctls") : absl::OkStatus();
  }
  ifreq Request() const {
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name_.data(), name_.size());
    return ifr;
  }
  absl::Status Step(unsigned long op, ifreq* ifr, const std::string& what) const {
    if (::ioctl(sock_.get(), op, ifr) != 0) return Errno(errno, absl::StrCat("device ", name_, ": ", what));
    return absl::OkStatus();
  }
  // SIOCSIFADDR-like calls: `op` with IPv4 address `value` in the request.
  absl::Status SetIpv4(unsigned long op, uint32_t value, const std::string& what) const {
    ifreq ifr = Request();
    hsi::ifd::SetIpv4(&ifr.ifr_addr, value);
    return Step(op, &ifr, what);
  }
  absl::Status BringUp() const {
    ifreq ifr = Request();
    if (auto s = Step(SIOCGIFFLAGS, &ifr, "read flags"); !s.ok()) return s;
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    return Step(SIOCSIFFLAGS, &ifr, "bring up");
  }

 private:
  const std::string& name_;
  UniqueFd sock_;
};

}  // namespace

absl::StatusOr<TapDevice> TapDevice::Create(const std::string& ifname, bool persist, const Mac& mac,
                                            bool offload) {
  if (auto s = CheckIfname(ifname); !s.ok()) return s;
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
  const DeviceIoctls dev(name_);
  if (auto s = dev.status(); !s.ok()) return s;
  ifreq ifr = dev.Request();
  if (!reattached_) {  // a re-attached device has it (Create checked)
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    std::memcpy(ifr.ifr_hwaddr.sa_data, mac.data(), mac.size());
    if (auto s = dev.Step(SIOCSIFHWADDR, &ifr, "set MAC"); !s.ok()) return s;
  }
  ifr = dev.Request();
  ifr.ifr_mtu = static_cast<int>(mtu);
  if (auto s = dev.Step(SIOCSIFMTU, &ifr, absl::StrCat("set MTU ", mtu)); !s.ok()) return s;
  if (auto s = dev.SetIpv4(SIOCSIFADDR, address.value(), absl::StrCat("set address ", address.ToString())); !s.ok()) {
    return s;
  }
  if (auto s = dev.SetIpv4(SIOCSIFNETMASK, subnet.mask(), absl::StrCat("set prefix /", subnet.prefix())); !s.ok()) {
    return s;
  }
  if (auto s = dev.SetIpv4(SIOCSIFBRDADDR, subnet.broadcast().value(), "set broadcast address"); !s.ok()) return s;
  return dev.BringUp();
}

absl::StatusOr<PointToPointDevice> PointToPointDevice::Create(const std::string& ifname) {
  if (auto s = CheckIfname(ifname); !s.ok()) return s;
  if (::if_nametoindex(ifname.c_str()) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("device ", ifname, " already exists in this network namespace"));
  }
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return Errno(errno, "cannot open /dev/net/tun (TUN/TAP support)");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  // IFF_TUN_EXCL: fail if the name appeared meanwhile (never attach to
  // someone else's device).
  ifr.ifr_flags = static_cast<short>(IFF_TUN | IFF_NO_PI | IFF_TUN_EXCL);
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    return Errno(errno, absl::StrCat("cannot create TUN device ", ifname, " (TUNSETIFF)"));
  }
  return PointToPointDevice(std::move(fd), ifname);
}

absl::Status PointToPointDevice::Configure(uint32_t mtu, Address address, Address peer) {
  const DeviceIoctls dev(name_);
  if (auto s = dev.status(); !s.ok()) return s;
  ifreq ifr = dev.Request();
  ifr.ifr_mtu = static_cast<int>(mtu);
  if (auto s = dev.Step(SIOCSIFMTU, &ifr, absl::StrCat("set MTU ", mtu)); !s.ok()) return s;
  if (auto s = dev.SetIpv4(SIOCSIFADDR, address.value(), absl::StrCat("set address ", address.ToString())); !s.ok()) {
    return s;
  }
  // On a point-to-point device the kernel makes the address a /32 with
  // the peer as its other end, and a route to the peer through it.
  if (auto s = dev.SetIpv4(SIOCSIFDSTADDR, peer.value(), absl::StrCat("set peer address ", peer.ToString()));
      !s.ok()) {
    return s;
  }
  return dev.BringUp();
}

absl::Status PointToPointDevice::SetCarrier(bool on) {
  int carrier = on ? 1 : 0;
  if (::ioctl(fd_.get(), TUNSETCARRIER, &carrier) != 0) {
    return Errno(errno, absl::StrCat("cannot set the carrier of ", name_, on ? " on" : " off", " (TUNSETCARRIER)"));
  }
  return absl::OkStatus();
}

absl::Status PointToPointDevice::IgnoreRoutesWithoutCarrier() {
  // /proc/sys/net is the namespace of the process that opens it.
  const std::string path = absl::StrCat("/proc/sys/net/ipv4/conf/", name_, "/ignore_routes_with_linkdown");
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd.get() < 0 || ::write(fd.get(), "1\n", 2) != 2) return Errno(errno, absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status CheckAddressesFree(Address address, Address peer) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return Errno(errno, "getifaddrs (the namespace's addresses)");
  absl::Status result = absl::OkStatus();
  for (const ifaddrs* i = list; i != nullptr && result.ok(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    sockaddr_in in;
    std::memcpy(&in, i->ifa_addr, sizeof(in));
    const uint32_t a = ntohl(in.sin_addr.s_addr);
    if (a == address.value()) {
      result = absl::AlreadyExistsError(absl::StrCat("address ", address.ToString(), " is already on device ",
                                                     i->ifa_name, " in this network namespace"));
    } else if (a == peer.value()) {
      result = absl::AlreadyExistsError(absl::StrCat("peer address ", peer.ToString(), " is an address of device ",
                                                     i->ifa_name, " in this network namespace: packets to it "
                                                     "would never leave"));
    }
  }
  ::freeifaddrs(list);
  return result;
}

}  // namespace hsi::ifd
