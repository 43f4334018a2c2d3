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
// hsid's policy decides which devices it may open), opens the device (or
// a read and a write device, --ctc READ,WRITE), makes a point-to-point TUN
// device in the namespace with the block size's MTU at once (its carrier
// on only while the channel to the other end is up), and pumps packets
// both ways until SIGINT/SIGTERM: the main thread reads the TUN device,
// the channel thread (channel.h; one per device) writes blocks of packets
// (block.h) on the CTC and takes the other end's. hsid stays off the data
// path.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
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

constexpr char kHelp[] = R"(Usage: hsi-ctcm --lpar NAME --ctc DEVNO[,DEVNO] --address A --peer-address B [OPTIONS]
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
  --ctc READ,WRITE     two devices, as ctcm groups a read and a write
                       subchannel: packets come in only on READ and go out
                       only on WRITE, so no write ever collides. The other
                       LPAR names the two connections the other way round:
                       its READ is the other end of this WRITE (e.g. D000,D001
                       here and D101,D100 there for D000-D001 to D100-D101)
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
  // One device both ways, or two as ctcm groups a read and a write
  // subchannel: devices[0] read only, devices[1] written only.
  std::vector<hsi::DeviceNumber> devices;
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
  const std::vector<std::string> numbers = absl::StrSplit(ctc->value, ',');
  if (numbers.size() > 2) {
    return absl::InvalidArgumentError(absl::StrCat(ctc->what, ": '", ctc->value,
                                                   "' names more than two devices (DEVNO, or READ,WRITE)"));
  }
  for (const std::string& n : numbers) {
    auto device = hsi::DeviceNumber::Parse(n);
    if (!device.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(ctc->what, ": '", n, "' is not a device number (1 to 4 hex digits, e.g. D000)"));
    }
    o.devices.push_back(*device);
  }
  if (o.devices.size() == 2 && o.devices[0] == o.devices[1]) {
    return absl::InvalidArgumentError(absl::StrCat(ctc->what, ": '", ctc->value,
                                                   "': the read and the write device must be two devices"));
  }
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

// The counters of one channel, or of the two of a read and a write device.
hsi::ctcm::ChannelCounters Sum(const std::vector<std::unique_ptr<hsi::ctcm::Channel>>& channels) {
  hsi::ctcm::ChannelCounters t;
  for (const auto& ch : channels) {
    const hsi::ctcm::ChannelCounters& c = ch->counters();
    t.tx_packets += c.tx_packets;
    t.tx_bytes += c.tx_bytes;
    t.tx_blocks += c.tx_blocks;
    t.tx_max_batch = std::max(t.tx_max_batch, c.tx_max_batch);
    t.collisions += c.collisions;
    t.tx_timeout += c.tx_timeout;
    t.tx_channel_down += c.tx_channel_down;
    t.tx_no_channel += c.tx_no_channel;
    t.rx_packets += c.rx_packets;
    t.rx_bytes += c.rx_bytes;
    t.rx_blocks += c.rx_blocks;
    t.rx_bad_block += c.rx_bad_block;
    t.rx_device_error += c.rx_device_error;
    t.channel_downs += c.channel_downs;
  }
  return t;
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

// Main thread: reads the TUN device and offers its packets to `channel`
// until a signal comes on `signals` or a channel of `all` fails.
absl::Status Pump(int signals, hsi::ifd::PointToPointDevice& tun, hsi::ctcm::Channel& channel,
                  const std::vector<std::unique_ptr<hsi::ctcm::Channel>>& all, uint32_t mtu, uint64_t* tx_not_ip) {
  std::vector<uint8_t> buf(mtu + 64);
  std::vector<std::vector<uint8_t>> batch;
  bool room = true;
  for (;;) {
    // signals, the TUN device, then each channel's wake_fd.
    pollfd fds[4] = {{signals, POLLIN, 0}, {tun.fd(), static_cast<short>(room ? POLLIN : 0), 0}};
    for (size_t i = 0; i < all.size(); ++i) fds[2 + i] = {all[i]->wake_fd(), POLLIN, 0};
    if (::poll(fds, static_cast<nfds_t>(2 + all.size()), -1) < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    }
    if (fds[0].revents != 0) {
      signalfd_siginfo si;
      if (::read(signals, &si, sizeof(si)) == sizeof(si)) Log(absl::StrCat("signal ", si.ssi_signo, ": stopping"));
      return absl::OkStatus();
    }
    for (size_t i = 0; i < all.size(); ++i) {
      if (fds[2 + i].revents == 0) continue;
      uint64_t n;
      (void)!::read(all[i]->wake_fd(), &n, sizeof(n));
      if (absl::Status f = all[i]->failure(); !f.ok()) return f;
      if (all[i].get() == &channel) room = true;
    }
    if (!room || fds[1].revents == 0) continue;
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

  // 3. The device(s): hsid says yes or no (policy, unknown device) at
  // once, and the block size; then the other end may take its time. The
  // interface is made without waiting for it (without carrier until it
  // comes), so that a service manager sees this LPAR ready whatever the
  // other LPAR does, and the address is there for programs to bind.
  const bool paired = opts->devices.size() == 2;
  const std::string ctc =
      paired ? absl::StrCat("CTC ", opts->devices[0].ToString(), " (read) and ", opts->devices[1].ToString(),
                            " (write) of LPAR ", opts->lpar)
             : absl::StrCat("CTC ", opts->devices[0].ToString(), " of LPAR ", opts->lpar);
  struct End {
    hsi::DeviceNumber number;
    std::shared_ptr<hsi::CtcDevice> device;
    hsi::CtcOpenAccepted accepted;
  };
  std::vector<End> ends;
  uint32_t largest = hsi::ctcm::kMaxIpPacket;
  for (const hsi::DeviceNumber number : opts->devices) {
    End e{number, nullptr, {}};
    absl::StatusOr<std::shared_ptr<hsi::CtcDevice>> d =
        (*host)->Open(number, absl::Now() + absl::Milliseconds(500), &e.accepted);
    // Once hsid accepted the open, the other end not there in time
    // (kDeadlineExceeded) or going away while we opened (kUnavailable: it
    // closed, or its process died) is for the channel to wait out.
    if (d.ok()) {
      e.device = *d;
    } else if (e.accepted.block_size == 0 ||
               !(absl::IsDeadlineExceeded(d.status()) || absl::IsUnavailable(d.status()))) {
      return hsi::tools::Fail(kTool, d.status().message(), kExitFailure);
    } else {
      Log(absl::StrCat(d.status().message(), "; making ", opts->ifname, " without carrier and waiting for it"));
    }
    const uint32_t block_size = e.accepted.block_size;
    const uint32_t carries = hsi::ctcm::MaxPacketForBlock(block_size);
    const std::string what = absl::StrCat("CTC ", number.ToString(), " of LPAR ", opts->lpar);
    if (carries < hsi::ctcm::kMinMtu) {
      return hsi::tools::Fail(kTool, absl::StrCat(what, ": block size ", block_size, " carries packets of up to ",
                                                  carries, " bytes, under IP's ", hsi::ctcm::kMinMtu),
                              kExitFailure);
    }
    if (opts->mtu && *opts->mtu > carries) {
      return hsi::tools::Fail(kTool, absl::StrCat("--mtu ", *opts->mtu, ": ", what, " has block size ", block_size,
                                                  ", which carries packets of up to ", carries, " bytes"),
                              hsi::tools::kExitUsage);
    }
    largest = std::min(largest, carries);
    ends.push_back(std::move(e));
  }
  const uint32_t mtu = opts->mtu.value_or(largest);

  // 4. The interface, its carrier on only while the channel(s) to the
  // other end are up (set before the device comes up: no moment with a
  // false carrier).
  auto tun = hsi::ifd::PointToPointDevice::Create(opts->ifname);
  if (!tun.ok()) return hsi::tools::Fail(kTool, tun.status().message(), kExitFailure);
  if (auto s = tun->IgnoreRoutesWithoutCarrier(); !s.ok()) {
    Log(absl::StrCat(s.message(), "; its routes stay in use without carrier (packets to them are dropped)"));
  }
  // Which channels are up; the carrier is on while all are. Changed by
  // the channel threads.
  struct Carrier {
    std::mutex mu;
    std::vector<bool> up;
    bool on = false;
  } carrier;
  for (const End& e : ends) carrier.up.push_back(e.device != nullptr);
  carrier.on = std::all_of(carrier.up.begin(), carrier.up.end(), [](bool u) { return u; });
  const bool carrier_at_start = carrier.on;  // read before the channel threads run
  if (auto s = tun->SetCarrier(carrier.on); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  if (auto s = tun->Configure(mtu, opts->address, opts->peer); !s.ok()) {
    return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  hsi::ifd::PointToPointDevice* const dev = &*tun;
  std::vector<std::unique_ptr<hsi::ctcm::Channel>> channels;
  for (size_t i = 0; i < ends.size(); ++i) {
    hsi::ctcm::ChannelOptions co;
    co.host = host->get();
    co.device = ends[i].number;
    co.tun_fd = tun->fd();
    co.block_size = ends[i].accepted.block_size;
    co.queue_bytes = 4 * size_t{co.block_size};
    co.carrier = [dev, &carrier, i](bool up) {
      std::lock_guard<std::mutex> l(carrier.mu);
      carrier.up[i] = up;
      const bool on = std::all_of(carrier.up.begin(), carrier.up.end(), [](bool u) { return u; });
      if (on == carrier.on) return;
      if (absl::Status s = dev->SetCarrier(on); !s.ok()) {
        Log(std::string(s.message()));
        return;
      }
      carrier.on = on;
      Log(absl::StrCat(dev->name(), on ? ": carrier on" : ": no carrier"));
    };
    channels.push_back(std::make_unique<hsi::ctcm::Channel>(co, ends[i].device));
  }
  for (auto& ch : channels) {
    if (auto s = ch->Start(); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  // Packets go out on the last device: the write device of a pair (the
  // read device's channel only delivers what the other end writes on it).
  hsi::ctcm::Channel& out = *channels.back();
  Log(absl::StrFormat("%s up in %s: %s peer %s, MTU %u, on %s (block size %u) to LPAR %s (pid %d)%s", tun->name(),
                      opts->netns.empty() ? "this network namespace" : "netns " + opts->netns,
                      opts->address.ToString(), opts->peer.ToString(), mtu, ctc, ends.back().accepted.block_size,
                      ends.back().accepted.peer_lpar, ::getpid(),
                      carrier_at_start ? "" : ", no carrier until that LPAR opens its end"));
  if (auto s = hsi::support::NotifyReady(absl::StrCat(tun->name(), " up: ", opts->address.ToString(), " peer ",
                                                      opts->peer.ToString(), " on ", ctc));
      !s.ok()) {
    Log(std::string(s.message()));
  }

  // 5. Pump until SIGINT/SIGTERM.
  uint64_t tx_not_ip = 0;
  const absl::Status s = Pump(signals.get(), *tun, out, channels, mtu, &tx_not_ip);
  hsi::support::NotifyStopping().IgnoreError();
  for (auto& ch : channels) ch->Stop();
  Log(Summary(Sum(channels), tx_not_ip));
  if (!s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  Log(absl::StrCat("stopping: removing ", tun->name(), " and closing ", ctc));
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
