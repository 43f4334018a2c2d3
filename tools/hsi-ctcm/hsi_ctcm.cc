// hsi-ctcm: IP over a CTC device between two LPARs, the part of Linux's
// ctcm driver (ctc0, protocol 0 "Linux") that hsi plays. See
// packaging/man/hsi-ctcm.8; --help says the same.
//
// A program of its own beside hsi-ifd rather than a mode of it: nothing of
// hsi-ifd's pump fits (no CHPID, NIC, next hop, ARP, layer 2 or offload;
// a CTC is one point-to-point channel with one write at a time), and
// hsi_ifd.cc is at the size where a room wants to be two. What they share
// is shared, not copied: the namespace, the device and the config file
// (tools/hsi-ifd: device.h, config.h, settings.h).
//
// One process per interface. It claims the LPAR from hsid (CtcHost, so
// hsid's policy decides which devices it may open), opens the device,
// makes a point-to-point TUN device in the namespace with the block size's
// MTU, and pumps packets both ways until SIGINT/SIGTERM: the main thread
// reads the TUN device, the channel thread (channel.h) writes blocks of
// packets (block.h) on the CTC and takes the other end's. hsid stays off
// the data path.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "block.h"
#include "channel.h"
#include "cli.h"
#include "config.h"
#include "device.h"
#include "hsi/ctc_host.h"
#include "hsi/support/service.h"
#include "settings.h"

namespace {

using hsi::tools::Args;
using hsi::tools::kExitFailure;
using hsi::tools::kExitOk;

constexpr char kTool[] = "hsi-ctcm";

constexpr char kHelp[] = R"(Usage: hsi-ctcm --lpar NAME --ctc DEVNO --address A --peer-address B [OPTIONS]
       hsi-ctcm --config FILE [OPTIONS]

Gives an LPAR (a network namespace, or this one) a point-to-point IP
interface over a CTC device to another LPAR, as Linux's ctcm driver makes
ctc0: claims the LPAR from hsid, opens its CTC device DEVNO through hsid
(its policy says which devices the LPAR may open), creates a TUN device
(default ctc0) in the namespace with address A and peer address B (as `ip
addr add A peer B`) and an MTU that fits the device's block size, brings it
up, and moves packets between the kernel and the CTC until SIGINT or
SIGTERM. Then the device, with its address and route, goes away and the
CTC end is closed. The other LPAR runs hsi-ctcm on its end of the device
(with the addresses the other way round). The interface is made at once,
whether or not the other end has opened its end yet; it has carrier only
while the channel to the other end is up (`ip link`: NO-CARRIER, state
DOWN otherwise; its routes are then skipped, ignore_routes_with_linkdown).
Logs go to stderr.

Packets queued while a write is in flight go in the next write together,
up to the block size (each behind an 8-byte header, after an 8-byte block
header). A block from the other end that breaks the format is dropped
whole and counted (rx_bad_block). A CTC carries one write at a time: an
end first takes the other end's pending write and starts its own only
while the device is idle; after a write collision the LPAR whose name
sorts first redrives first. When the other end goes away (closes the
device, dies) the interface stays but loses its carrier, packets still
queued to it are dropped (tx_no_channel), and the device is opened again;
carrier comes back when the other end does. Each change is logged.

Options:
  --lpar NAME          the LPAR name to claim from hsid (required)
  --ctc DEVNO          this LPAR's CTC device number, hex (required), e.g.
                       D000, as hsid's [[ctc]] or `hsictl define-ctc` made it
  --address A          the interface's IPv4 address (required)
  --peer-address B     the other LPAR's address on the CTC (required)
  --netns NS           the network namespace (as `ip netns add NS` made it;
                       default: this process's)
  --ifname NAME        the device name (default ctc0); it must not exist
  --mtu N              the interface's MTU, 576 up to the largest the
                       device's block size carries (block size - 16, at
                       most 65535; the default)
  --socket PATH        hsid's control socket (default: $HSI_SOCKET, else the
                       default path; see hsid(8))
  --config FILE        read options from FILE, one `key = value` a line
                       (keys: the long options without "--": lpar, ctc,
                       address, peer-address, netns, ifname, mtu, socket;
                       # comments); options on the command line win.
                       hsi-ctcm@NAME.service runs hsi-ctcm --config
                       /etc/hsi/ctcm/NAME.conf (Type=notify: READY=1 once
                       the device is up, before the other end opens)
  -h, --help           this text

On exit it prints the counters: packets and bytes each way, blocks written
and taken, the most packets one block carried, write collisions, and the
drops by reason (tx_not_ip: the kernel sent something that is not an IP
packet; tx_no_channel: no channel up to the other LPAR; tx_timeout: a
write the other end did not take in 2 s; tx_channel_down: a write cut off
as the channel went down; rx_bad_block: a block from the other end broke
the format; rx_device_error: the kernel refused a packet), and how often
the channel went down.

Exit status: 0 after SIGINT/SIGTERM, 1 on a runtime error (hsid refused
the LPAR or the device, no such namespace, the address is taken, no
/dev/net/tun, an unreadable config file, ...), 2 on a usage error or a bad
config file (the message names FILE:LINE).
)";

const std::vector<hsi::tools::Option> kOptions = {
    {{"--lpar"}, "NAME"},   {{"--ctc"}, "DEVNO"},     {{"--address"}, "A"},    {{"--peer-address"}, "B"},
    {{"--netns"}, "NS"},    {{"--ifname"}, "NAME"},   {{"--mtu"}, "N"},        {{"--socket"}, "PATH"},
    {{"--config"}, "FILE"}, {{"--help", "-h"}},
};

// The keys of a config file (tools/hsi-ifd/config.h): the options without "--".
const std::vector<std::string> kConfigKeys = {"lpar", "ctc", "address", "peer-address", "netns",
                                              "ifname", "mtu", "socket"};

void Log(const std::string& line) { std::fprintf(stderr, "%s: %s\n", kTool, line.c_str()); }

struct Options {
  std::string lpar, netns, ifname = "ctc0", socket;
  hsi::DeviceNumber device;
  hsi::Address address, peer;
  std::optional<uint32_t> mtu;
};

// The options from the command line and the config file (--config), the
// command line winning. kInvalidArgument for a usage or config error,
// other codes if the config file cannot be read.
absl::StatusOr<Options> ParseOptions(const Args& args) {
  using hsi::ifd::Lookup;
  Options o;
  if (!args.positional().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", args.positional()[0], "'"));
  }
  hsi::ifd::ConfigFile file;
  if (auto path = args.Get("--config")) {
    auto loaded = hsi::ifd::LoadConfig(*path, kConfigKeys);
    if (!loaded.ok()) return loaded.status();
    file = std::move(*loaded);
  }
  const char* from_config = args.Has("--config") ? " (on the command line or in the config file)" : "";
  auto required = [&](const std::string& key, const char* value) -> absl::StatusOr<hsi::ifd::Setting> {
    auto v = Lookup(args, file, key);
    if (!v) return absl::InvalidArgumentError(absl::StrCat("--", key, " ", value, " is required", from_config));
    if (v->value.empty()) return absl::InvalidArgumentError(absl::StrCat(v->what, ": empty"));
    return *v;
  };
  auto lpar = required("lpar", "NAME");
  if (!lpar.ok()) return lpar.status();
  o.lpar = lpar->value;
  auto ctc = required("ctc", "DEVNO");
  if (!ctc.ok()) return ctc.status();
  auto device = hsi::DeviceNumber::Parse(ctc->value);
  if (!device.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctc->what, ": '", ctc->value, "' is not a device number (1 to 4 hex digits, e.g. D000)"));
  }
  o.device = *device;
  for (auto [key, out] : {std::pair{"address", &o.address}, std::pair{"peer-address", &o.peer}}) {
    auto v = required(key, key == std::string("address") ? "A" : "B");
    if (!v.ok()) return v.status();
    auto a = hsi::tools::ParseAddress(v->what, v->value);
    if (!a.ok()) return a.status();
    *out = *a;
  }
  if (o.address == o.peer) {
    return absl::InvalidArgumentError(
        absl::StrCat("--address and --peer-address are both ", o.address.ToString(), "; the two ends need two"));
  }
  if (auto v = Lookup(args, file, "netns")) {
    if (v->value.empty()) return absl::InvalidArgumentError(absl::StrCat(v->what, " needs a namespace name"));
    o.netns = v->value;
  }
  if (auto v = Lookup(args, file, "ifname")) o.ifname = v->value;
  if (auto v = Lookup(args, file, "mtu")) {
    auto n = hsi::tools::ParseCount(v->what, v->value, hsi::ctcm::kMinMtu, hsi::ctcm::kMaxIpPacket);
    if (!n.ok()) return n.status();
    o.mtu = static_cast<uint32_t>(*n);
  }
  if (auto v = Lookup(args, file, "socket")) o.socket = v->value;
  return o;
}

std::string Summary(const hsi::ctcm::ChannelCounters& c, uint64_t tx_not_ip) {
  return absl::StrFormat(
      "tx %u packets %u bytes in %u blocks (at most %u packets a block), rx %u packets %u bytes in %u blocks, "
      "%u collisions; dropped: tx_not_ip %u tx_no_channel %u tx_timeout %u tx_channel_down %u rx_bad_block %u "
      "rx_device_error %u; channel down %u times",
      c.tx_packets, c.tx_bytes, c.tx_blocks, c.tx_max_batch, c.rx_packets, c.rx_bytes, c.rx_blocks, c.collisions,
      tx_not_ip, c.tx_no_channel, c.tx_timeout, c.tx_channel_down, c.rx_bad_block, c.rx_device_error,
      c.channel_downs);
}

// Main thread: reads the TUN device and offers its packets to the channel
// until a signal comes on `signals` or the channel fails.
absl::Status Pump(int signals, hsi::ifd::PointToPointDevice& tun, hsi::ctcm::Channel& channel, uint32_t mtu,
                  uint64_t* tx_not_ip) {
  std::vector<uint8_t> buf(mtu + 64);
  std::vector<std::vector<uint8_t>> batch;
  bool room = true;
  for (;;) {
    pollfd fds[3] = {{signals, POLLIN, 0}, {channel.wake_fd(), POLLIN, 0}, {tun.fd(), static_cast<short>(room ? POLLIN : 0), 0}};
    if (::poll(fds, 3, -1) < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    if (fds[0].revents != 0) {
      signalfd_siginfo si;
      if (::read(signals, &si, sizeof(si)) == sizeof(si)) Log(absl::StrCat("signal ", si.ssi_signo, ": stopping"));
      return absl::OkStatus();
    }
    if (fds[1].revents != 0) {
      uint64_t n;
      (void)!::read(channel.wake_fd(), &n, sizeof(n));
      if (absl::Status f = channel.failure(); !f.ok()) return f;
      room = true;
    }
    if (!room || fds[2].revents == 0) continue;
    // Up to 64 packets a round, offered at once (one lock, one wake-up).
    for (int i = 0; i < 64; ++i) {
      const ssize_t n = ::read(tun.fd(), buf.data(), buf.size());
      if (n <= 0) break;  // EAGAIN
      const auto packet = absl::MakeConstSpan(buf.data(), static_cast<size_t>(n));
      if (!hsi::ctcm::IpProtocol(packet) || packet.size() > mtu) {
        ++*tx_not_ip;
        continue;
      }
      batch.emplace_back(packet.begin(), packet.end());
    }
    if (!batch.empty()) room = channel.Offer(&batch);
  }
}

int Main(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, kOptions);
  if (!args.ok()) return hsi::tools::Usage(kTool, args.status().message());
  if (args->Has("--help")) {
    std::fputs(kHelp, stdout);
    return kExitOk;
  }
  auto opts = ParseOptions(*args);
  if (!opts.ok()) {
    if (opts.status().code() == absl::StatusCode::kInvalidArgument) {
      return hsi::tools::Usage(kTool, opts.status().message());
    }
    return hsi::tools::Fail(kTool, opts.status().message(), kExitFailure);
  }
  // SIGINT/SIGTERM come through a signalfd, to the main thread's poll():
  // blocked here, before any thread starts, so that no thread takes them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  hsi::UniqueFd signals(::signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK));
  if (signals.get() < 0) return hsi::tools::Fail(kTool, absl::StrCat("signalfd: ", std::strerror(errno)), kExitFailure);

  // 1. The LPAR, from hsid.
  hsi::CtcHostOptions ho;
  ho.socket_path = opts->socket;
  ho.lpar = opts->lpar;
  auto host = hsi::CtcHost::Connect(ho);
  if (!host.ok()) {
    return hsi::tools::Fail(kTool, absl::StrCat("LPAR ", opts->lpar, ": ", host.status().message()), kExitFailure);
  }

  // 2. The namespace, and the addresses free in it.
  if (!opts->netns.empty()) {
    if (auto s = hsi::ifd::EnterNetns(opts->netns); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  if (auto s = hsi::ifd::CheckAddressesFree(opts->address, opts->peer); !s.ok()) {
    return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }

  // 3. The device: hsid says yes or no (policy, unknown device) at once,
  // and its block size; then the other end may take its time. The
  // interface is made without waiting for it (without carrier until it
  // comes), so that a service manager sees this LPAR ready whatever the
  // other LPAR does, and the address is there for programs to bind.
  const std::string ctc = absl::StrCat("CTC ", opts->device.ToString(), " of LPAR ", opts->lpar);
  std::shared_ptr<hsi::CtcDevice> device;
  hsi::CtcOpenAccepted accepted;
  {
    absl::StatusOr<std::shared_ptr<hsi::CtcDevice>> d =
        (*host)->Open(opts->device, absl::Now() + absl::Milliseconds(500), &accepted);
    if (d.ok()) {
      device = *d;
    } else if (!absl::IsDeadlineExceeded(d.status()) || accepted.block_size == 0) {
      return hsi::tools::Fail(kTool, d.status().message(), kExitFailure);
    } else {
      Log(absl::StrCat(d.status().message(), "; making ", opts->ifname, " without carrier and waiting for it"));
    }
  }
  const uint32_t block_size = accepted.block_size;
  const uint32_t largest = hsi::ctcm::MaxPacketForBlock(block_size);
  if (largest < hsi::ctcm::kMinMtu) {
    return hsi::tools::Fail(kTool, absl::StrCat(ctc, ": block size ", block_size, " carries packets of up to ",
                                                largest, " bytes, under IP's ", hsi::ctcm::kMinMtu),
                            kExitFailure);
  }
  if (opts->mtu && *opts->mtu > largest) {
    return hsi::tools::Fail(kTool, absl::StrCat("--mtu ", *opts->mtu, ": ", ctc, " has block size ", block_size,
                                                ", which carries packets of up to ", largest, " bytes"),
                            hsi::tools::kExitUsage);
  }
  const uint32_t mtu = opts->mtu.value_or(largest);

  // 4. The interface, its carrier on only while the channel to the other
  // end is up (set before the device comes up: no moment with a false
  // carrier).
  auto tun = hsi::ifd::PointToPointDevice::Create(opts->ifname);
  if (!tun.ok()) return hsi::tools::Fail(kTool, tun.status().message(), kExitFailure);
  if (auto s = tun->IgnoreRoutesWithoutCarrier(); !s.ok()) {
    Log(absl::StrCat(s.message(), "; its routes stay in use without carrier (packets to them are dropped)"));
  }
  if (auto s = tun->SetCarrier(device != nullptr); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  if (auto s = tun->Configure(mtu, opts->address, opts->peer); !s.ok()) {
    return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  hsi::ctcm::ChannelOptions co;
  co.host = host->get();
  co.device = opts->device;
  co.tun_fd = tun->fd();
  co.block_size = block_size;
  co.queue_bytes = 4 * size_t{block_size};
  hsi::ifd::PointToPointDevice* const dev = &*tun;
  co.carrier = [dev](bool up) {
    if (absl::Status s = dev->SetCarrier(up); !s.ok()) {
      Log(std::string(s.message()));
    } else {
      Log(absl::StrCat(dev->name(), up ? ": carrier on" : ": no carrier"));
    }
  };
  hsi::ctcm::Channel channel(co, device);
  if (auto s = channel.Start(); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  Log(absl::StrFormat("%s up in %s: %s peer %s, MTU %u, on %s (block size %u) to LPAR %s (pid %d)%s", tun->name(),
                      opts->netns.empty() ? "this network namespace" : "netns " + opts->netns,
                      opts->address.ToString(), opts->peer.ToString(), mtu, ctc, block_size, accepted.peer_lpar,
                      ::getpid(), device != nullptr ? "" : ", no carrier until that LPAR opens its end"));
  if (auto s = hsi::support::NotifyReady(absl::StrCat(tun->name(), " up: ", opts->address.ToString(), " peer ",
                                                      opts->peer.ToString(), " on ", ctc));
      !s.ok()) {
    Log(std::string(s.message()));
  }

  // 5. Pump until SIGINT/SIGTERM.
  uint64_t tx_not_ip = 0;
  const absl::Status s = Pump(signals.get(), *tun, channel, mtu, &tx_not_ip);
  hsi::support::NotifyStopping().IgnoreError();
  channel.Stop();
  Log(Summary(channel.counters(), tx_not_ip));
  if (!s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  Log(absl::StrCat("stopping: removing ", tun->name(), " and closing ", ctc));
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
