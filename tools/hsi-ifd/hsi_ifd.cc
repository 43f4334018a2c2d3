// hsi-ifd: an LPAR's IP network interface on a CHPID (layer 3), the part
// of Linux's qeth driver that hsi plays. See packaging/man/hsi-ifd.8;
// --help says the same.
//
// One process per interface, one thread: it attaches a NIC through hsid,
// makes a TAP device in the LPAR's network namespace (device.h) with the
// NIC's address and the CHPID's MTU, and pumps packets both ways until
// SIGINT/SIGTERM. Frames on the ring are bare IP packets; the next hop is
// carried between the kernel and this program by the destination MAC
// 02:00:<hsi address> (l3.h says how, ARP included). hsid stays off the
// data path: packets go device -> Nic::SendTo -> peer's ring, and peer's
// ring -> Nic::Peek (in place) -> writev to the device.
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <unordered_set>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli.h"
#include "config.h"
#include "device.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/support/service.h"
#include "l3.h"
#include "offload.h"
#include "settings.h"

namespace {

using hsi::tools::Args;
using hsi::tools::kExitFailure;
using hsi::tools::kExitOk;

constexpr char kTool[] = "hsi-ifd";

constexpr char kHelp[] = R"(Usage: hsi-ifd --lpar NAME --chpid ID [OPTIONS]
       hsi-ifd --config FILE [OPTIONS]

Gives an LPAR (a network namespace, or this one) an IP network interface on
a HiperSockets CHPID, as Linux's qeth driver does in layer-3 mode: attaches
a NIC to the CHPID through hsid under the LPAR's name, creates a TAP device
(default hsi0) in the namespace with the NIC's address and prefix and the
CHPID's MTU (MFS - 8K), brings it up, and moves packets between the kernel
and the CHPID's rings until SIGINT or SIGTERM. Then the device, with its
addresses and routes, and the NIC go away. Logs go to stderr.

Layer 3: frames on the ring are bare IPv4/IPv6 packets, delivered by next
hop. Each interface's MAC is 02:00:<its hsi address>; the program answers
the kernel's ARP requests on the device itself with 02:00:<asked address>
(no ARP reaches the CHPID), so a packet routed `via 10.240.0.2 dev hsi0`
goes to the NIC with address 10.240.0.2 whatever its destination. IPv6
neighbour discovery crosses the CHPID as the IP multicast it is. Broadcast
and multicast go to every other NIC of the CHPID. A frame from a peer that
is not a well-formed IP packet is dropped and counted, never written to
the device.

Options:
  --lpar NAME          the LPAR name to claim from hsid (required)
  --chpid ID           the CHPID, hex (required), e.g. F0
  --netns NS           the network namespace (as `ip netns add NS` made it;
                       default: this process's)
  --ifname NAME        the device name (default hsi0); it must not exist
  --address A[/LEN]    ask for this address (hsid's static address for the
                       LPAR wins; default: one hsid assigns); LEN, if given,
                       must be the CHPID's prefix
  --socket PATH        hsid's control socket (default: $HSI_SOCKET, else the
                       default path; see hsid(8))
  --wait MODE          spin, block or adaptive (default adaptive): how the
                       pump waits for packets (also --wait-mode)
  --layer2             layer-2 mode (HiperSockets layer 2): whole Ethernet
                       frames on the ring, the kernel's own ARP over the
                       CHPID's broadcast, device MTU = CHPID MTU - 14; a
                       unicast goes to the NIC whose MAC 02:00:<address> it
                       is sent to; a frame from a peer is written to the
                       device only from that peer's MAC to ours or a group
                       address (else dropped, rx_not_ours)
  --offload on|off     checksum offload (default on; layer 3 only): the
                       kernel hands TCP/UDP packets over without their
                       checksum (IFF_VNET_HDR, TUN_F_CSUM); to a peer that
                       is an hsi-ifd with offload on they cross the ring
                       marked so in the frame's tag, and its kernel takes
                       them unverified (and finishes the checksum only if
                       it forwards them); for any other peer, and every
                       broadcast, this program finishes the checksum first.
                       On the ring every frame stays a bare IP packet
                       (docs/hsi-ifd.md, "Offload")
  --persist            make the device persistent: it outlives this
                       program (kill -9 and SIGTERM alike) with its
                       addresses and routes, and a restarted hsi-ifd with
                       the same --ifname and address re-attaches to it, so
                       open TCP connections survive the restart (TCP resends
                       what was lost meanwhile). Remove it with
                       `ip link del NAME`
  --config FILE        read options from FILE, one `key = value` a line
                       (keys: the long options without "--": lpar, chpid,
                       netns, ifname, address, socket, wait, offload,
                       persist, layer2; a
                       switch takes true or false; # comments); options on
                       the command line win. hsi-ifd@NAME.service runs
                       hsi-ifd --config /etc/hsi/ifd/NAME.conf
  -h, --help           this text

On exit it prints the counters: packets and bytes each way, and the drops
by reason (tx_no_peer: no NIC has the next hop; tx_error: the ring refused;
tx_not_ip: the kernel sent something else; rx_not_ip: a peer sent
something that is not an IP packet; rx_not_ours: with --layer2, a frame
not from the peer's own MAC to ours or a group address; rx_bad_offload: a
frame marked checksum-partial whose packet has no TCP/UDP checksum to
finish, or that came while offload is off; tx_bad_offload: a packet the
kernel handed over with offload metadata this program cannot honour), and
the offload counters (tx_partial: sent with the checksum left to the
peer's kernel; tx_finished: checksum finished here; rx_partial).

Exit status: 0 after SIGINT/SIGTERM, 1 on a runtime error (hsid refused,
no such CHPID or namespace, no /dev/net/tun, an unreadable config file,
...), 2 on a usage error or a bad config file (the message names FILE:LINE).
)";

const std::vector<hsi::tools::Option> kOptions = {
    {{"--lpar"}, "NAME"},    {{"--chpid"}, "ID"},    {{"--netns"}, "NS"},
    {{"--ifname"}, "NAME"},  {{"--address"}, "A"},   {{"--socket"}, "PATH"},
    {{"--wait", "--wait-mode"}, "MODE"},             {{"--offload"}, "on|off"},
    {{"--persist"}},         {{"--layer2"}},
    {{"--config"}, "FILE"},  {{"--help", "-h"}},
};

// The keys of a config file (config.h): the options without "--".
const std::vector<std::string> kConfigKeys = {"lpar", "chpid",   "netns",   "ifname", "address",
                                              "socket", "wait", "offload", "persist", "layer2"};

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

void InstallSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll() returns EINTR
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

void Log(const std::string& line) { std::fprintf(stderr, "%s: %s\n", kTool, line.c_str()); }

struct Options {
  std::string lpar, netns, ifname = "hsi0", socket;
  uint32_t chpid = 0;
  std::optional<hsi::Address> address;
  std::optional<int> prefix;
  hsi::WaitMode wait = hsi::WaitMode::kAdaptive;
  bool persist = false;
  bool layer2 = false;
  bool offload = true;  // layer 3 only
};

struct Counters {
  uint64_t tx_packets = 0, tx_bytes = 0, tx_broadcasts = 0, arp_replies = 0;
  uint64_t tx_no_peer = 0, tx_error = 0, tx_not_ip = 0;
  uint64_t rx_packets = 0, rx_bytes = 0, rx_not_ip = 0, rx_not_ours = 0, rx_device_error = 0, peers_gone = 0;
  uint64_t tx_partial = 0, tx_finished = 0, tx_bad_offload = 0, rx_partial = 0, rx_bad_offload = 0;
};

std::string Summary(const Counters& c) {
  return absl::StrFormat(
      "tx %u packets %u bytes (%u broadcast), rx %u packets %u bytes, %u ARP replies; "
      "dropped: tx_no_peer %u tx_error %u tx_not_ip %u rx_not_ip %u rx_not_ours %u rx_device_error %u; "
      "peers gone %u; offload: tx_partial %u tx_finished %u rx_partial %u; dropped: tx_bad_offload %u "
      "rx_bad_offload %u",
      c.tx_packets, c.tx_bytes, c.tx_broadcasts, c.rx_packets, c.rx_bytes, c.arp_replies,
      c.tx_no_peer, c.tx_error, c.tx_not_ip, c.rx_not_ip, c.rx_not_ours, c.rx_device_error, c.peers_gone,
      c.tx_partial, c.tx_finished, c.rx_partial, c.tx_bad_offload, c.rx_bad_offload);
}

// Logs the first few of each kind of event, then every 1000th, so that a
// flood of bad frames cannot flood the log.
bool Rarely(uint64_t count) { return count <= 5 || count % 1000 == 0; }

class Pump {
 public:
  // `offload`: the device has a vnet header (offload.h); layer 3 only.
  Pump(hsi::Session* session, hsi::Nic* nic, hsi::ifd::TapDevice* tap, hsi::WaitMode wait, bool layer2,
       bool offload)
      : session_(session), nic_(nic), tap_(tap), wait_(wait), layer2_(layer2), offload_(offload),
        vnet_(offload ? sizeof(hsi::ifd::VnetHeader) : 0),
        // Room for a frame of the device's MTU plus its vnet and Ethernet
        // headers, and some slack: the kernel never sends more than
        // vnet + MTU + 14.
        buffer_(nic->info().mtu + hsi::ifd::kEthHeader + vnet_ + 64) {}

  // Runs until g_stop; an error only if the pump cannot go on.
  //
  // The two sources cost differently to look at: the ring is a few loads
  // (Nic::Peek with Wait::Never()), the device a read() system call. So
  // the device is read only when it may have something: after poll() said
  // it is readable, while the last read found a packet, on every idle
  // spin round (spin, or adaptive within 50 us of the last packet), and,
  // so that a ring that never runs dry cannot starve it, on every
  // kDeviceEvery-th busy round (up to 64 frames from the ring each). An
  // idle spin round also yields the CPU (sched_yield), which paces the
  // spin: a round costs two system calls and gives way to any runnable
  // thread, so its read() takes no CPU from the programs whose packets we
  // carry. (Reading the device only on every 16th idle round, as this
  // pump did, left the answer to a packet we had just written to the
  // device waiting for up to 16 yields, each a context switch on a busy
  // host: sockperf's p50 over hsi0 was ~2x what it is with a read per
  // round; docs/benchmarks.md, "The pump's spin".) A pump with nothing to
  // do sleeps in one poll() on the device, the NIC's doorbell and hsid's
  // socket (Sleep).
  absl::Status Run() {
    absl::Time last_work = absl::Now();
    bool spinning = false;  // the last round found nothing and did not sleep
    uint32_t round = 0;
    while (!g_stop) {
      bool worked = false;
      if (device_ready_ || spinning || ++round % kDeviceEvery == 0) worked = FromDevice();
      worked |= FromRing();
      spinning = false;
      if (worked) {
        last_work = absl::Now();
        continue;
      }
      if (wait_ == hsi::WaitMode::kSpin ||
          (wait_ == hsi::WaitMode::kAdaptive && absl::Now() - last_work < kSpinFor)) {
        // An idle spin round gives way to any runnable thread on this CPU
        // (the programs whose packets we carry, on a host with few CPUs)
        // and comes straight back when there is none.
        ::sched_yield();
        spinning = true;
        continue;
      }
      if (auto s = Sleep(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  const Counters& counters() const { return c_; }

 private:
  // Device -> ring: up to a batch of packets per call.
  bool FromDevice() {
    bool worked = false;
    for (int i = 0; i < 64; ++i) {
      const ssize_t n = ::read(tap_->fd(), buffer_.data(), buffer_.size());
      if (n < 0) {  // EAGAIN (or EINTR: the loop checks g_stop)
        device_ready_ = false;
        return worked;
      }
      worked = true;
      if (static_cast<size_t>(n) < vnet_) continue;  // the kernel always writes the vnet header
      const auto frame = absl::MakeConstSpan(buffer_.data() + vnet_, static_cast<size_t>(n) - vnet_);
      // Layer 2: the whole frame goes on the ring; the kernel does ARP.
      const hsi::ifd::Outbound o = layer2_ ? hsi::ifd::ClassifyL2(frame) : hsi::ifd::Classify(frame);
      switch (o.kind) {
        case hsi::ifd::Outbound::kArp: {
          uint8_t reply[64];
          if (auto len = hsi::ifd::ArpReply(frame, nic_->address(), absl::MakeSpan(reply))) {
            hsi::ifd::VnetHeader none{};
            none.gso_type = hsi::ifd::kVnetGsoNone;
            iovec iov[2] = {{&none, vnet_}, {reply, *len}};
            if (::writev(tap_->fd(), iov, 2) == static_cast<ssize_t>(vnet_ + *len)) ++c_.arp_replies;
          }
          break;
        }
        case hsi::ifd::Outbound::kDrop:
          if (Rarely(++c_.tx_not_ip)) Log(absl::StrCat("dropped a frame from the kernel: ", o.reason));
          break;
        case hsi::ifd::Outbound::kUnicast:
        case hsi::ifd::Outbound::kBroadcast:
          Send(o);
          break;
      }
    }
    return worked;
  }

  void Send(const hsi::ifd::Outbound& o) {
    const bool broadcast = o.kind == hsi::ifd::Outbound::kBroadcast;
    const hsi::Address to = broadcast ? nic_->broadcast() : o.next_hop;
    // A bounded wait: under policy block a full ring waits for the peer to
    // drain it, but two pumps that both wait for each other's room must not
    // stall for long; a packet that cannot go in time is dropped (IP
    // tolerates loss; TCP resends). The same bound covers a link's setup.
    // A broadcast waits at most 1 ms: it goes to every NIC of the CHPID,
    // and one peer that does not answer link offers (hung, or whose link
    // broke and which never pumps its session) would otherwise stall every
    // other peer's packets for the whole bound on each ND, MLD or OSPF
    // multicast. Its link setups go on meanwhile (libhsi keeps them), so
    // a peer that does answer gets the next broadcast; IP protocols that
    // multicast repeat themselves.
    hsi::Wait wait{wait_ == hsi::WaitMode::kSpin ? hsi::WaitMode::kAdaptive : wait_,
                   absl::Now() + (broadcast ? absl::Milliseconds(1) : absl::Milliseconds(200))};
    uint8_t tag = 0;
    if (offload_) {
      // The packet lies in buffer_ behind the vnet header: ours to change.
      hsi::ifd::VnetHeader h;
      std::memcpy(&h, buffer_.data(), sizeof(h));
      const auto packet = absl::MakeSpan(buffer_.data() + (o.packet.data() - buffer_.data()), o.packet.size());
      const bool partial_ok = !broadcast && offload_peers_.count(to.value()) != 0;
      const char* why = "";
      const std::optional<uint8_t> t = hsi::ifd::PrepareForRing(h, packet, partial_ok, &why);
      if (!t) {
        if (Rarely(++c_.tx_bad_offload)) Log(absl::StrCat("dropped a packet from the kernel: ", why));
        return;
      }
      tag = *t;
    }
    const absl::Status s = nic_->SendTo(to, o.packet, wait, tag);
    if (s.ok()) {
      ++c_.tx_packets;
      c_.tx_bytes += o.packet.size();
      if (broadcast) ++c_.tx_broadcasts;
      if (tag & hsi::ifd::kTagCsumPartial) {
        ++c_.tx_partial;
      } else if (offload_ && (buffer_[0] & hsi::ifd::kVnetNeedsCsum)) {
        ++c_.tx_finished;
      }
      return;
    }
    // A peer that went away may come back as anything: learn it again.
    if (s.code() == absl::StatusCode::kUnavailable) offload_peers_.erase(to.value());
    if (s.code() == absl::StatusCode::kNotFound) {
      if (Rarely(++c_.tx_no_peer)) Log(absl::StrCat("no NIC has next hop ", to.ToString(), ": ", s.message()));
      return;
    }
    if (Rarely(++c_.tx_error)) Log(absl::StrCat("send to ", to.ToString(), " failed: ", s.ToString()));
  }

  // Ring -> device: up to a batch of frames, each written from the peer's
  // segment in place (Peek) behind a 14-byte Ethernet header.
  bool FromRing() {
    bool worked = false;
    for (int i = 0; i < 64; ++i) {
      absl::StatusOr<hsi::FrameView> f = nic_->Peek(hsi::Wait::Never());
      if (!f.ok()) {
        if (f.status().code() == absl::StatusCode::kDeadlineExceeded) break;
        // kUnavailable once per peer that went away (or this NIC set
        // down), kDataLoss for a peer that broke its ring (that link is
        // BROKEN, the others go on).
        ++c_.peers_gone;
        Log(f.status().ToString());
        // Which peer is not said: learn them all again from their frames.
        offload_peers_.clear();
        unavailable_in_a_row_++;
        return unavailable_in_a_row_ < 3;
      }
      unavailable_in_a_row_ = 0;
      worked = true;
      const auto packet = f->payload;
      if (layer2_) {
        ToDeviceL2(*f);
      } else if (auto type = hsi::ifd::IpEtherType(packet)) {
        ToDevice(*f, *type);
      } else if (Rarely(++c_.rx_not_ip)) {
        Log(absl::StrCat("dropped a ", packet.size(), "-byte frame from ", f->source.ToString(),
                         ": not an IPv4/IPv6 packet (", c_.rx_not_ip, " so far)"));
      }
      nic_->Release();
    }
    return worked;
  }

  // Layer 3: an IP packet from the ring goes to the device behind its
  // vnet header (with offload) and an Ethernet header, from the peer's
  // segment in place.
  void ToDevice(const hsi::FrameView& f, uint16_t ethertype) {
    const auto packet = f.payload;
    hsi::ifd::VnetHeader vnet{};
    if (offload_) {
      if (f.tag & hsi::ifd::kTagOffload) {
        offload_peers_.insert(f.source.value());
      } else if (!offload_peers_.empty()) {
        offload_peers_.erase(f.source.value());
      }
      if (const char* why = hsi::ifd::HeaderForDevice(packet, f.tag, &vnet)) {
        if (Rarely(++c_.rx_bad_offload)) {
          Log(absl::StrCat("dropped a ", packet.size(), "-byte frame from ", f.source.ToString(), ": ", why, " (",
                           c_.rx_bad_offload, " so far)"));
        }
        return;
      }
    } else if (f.tag & hsi::ifd::kTagCsumPartial) {
      // Nobody should send us this: we never said we take it.
      if (Rarely(++c_.rx_bad_offload)) {
        Log(absl::StrCat("dropped a ", packet.size(), "-byte frame from ", f.source.ToString(),
                         ": marked checksum-partial, but offload is off here (", c_.rx_bad_offload, " so far)"));
      }
      return;
    }
    uint8_t header[hsi::ifd::kEthHeader];
    hsi::ifd::DeviceHeader(packet, ethertype, nic_->address(), f.source, header);
    iovec iov[3] = {{&vnet, vnet_}, {header, sizeof(header)}, {const_cast<uint8_t*>(packet.data()), packet.size()}};
    const ssize_t n = ::writev(tap_->fd(), iov, 3);
    if (n == static_cast<ssize_t>(vnet_ + sizeof(header) + packet.size())) {
      ++c_.rx_packets;
      c_.rx_bytes += packet.size();
      if (vnet.flags & hsi::ifd::kVnetNeedsCsum) ++c_.rx_partial;
    } else if (Rarely(++c_.rx_device_error)) {
      Log(absl::StrCat("write of ", packet.size(), " bytes from ", f.source.ToString(), " to ", tap_->name(),
                       " failed: ", n < 0 ? std::strerror(errno) : "short write"));
    }
  }

  // Layer 2: a frame from the ring goes to the device as it is, if it is
  // an Ethernet frame from its sender's MAC to ours or a group address.
  void ToDeviceL2(const hsi::FrameView& f) {
    if (const char* why = hsi::ifd::CheckL2Inbound(f.payload, nic_->address(), f.source)) {
      if (Rarely(++c_.rx_not_ours)) {
        Log(absl::StrCat("dropped a ", f.payload.size(), "-byte frame from ", f.source.ToString(), ": ", why, " (",
                         c_.rx_not_ours, " so far)"));
      }
      return;
    }
    const ssize_t n = ::write(tap_->fd(), f.payload.data(), f.payload.size());
    if (n == static_cast<ssize_t>(f.payload.size())) {
      ++c_.rx_packets;
      c_.rx_bytes += f.payload.size();
    } else if (Rarely(++c_.rx_device_error)) {
      Log(absl::StrCat("write of ", f.payload.size(), " bytes from ", f.source.ToString(), " to ", tap_->name(),
                       " failed: ", n < 0 ? std::strerror(errno) : "short write"));
    }
  }

  // Sleeps until the device, the NIC's doorbell or hsid's control socket
  // has something (or the session is due to reconnect to hsid).
  absl::Status Sleep() {
    if (nic_->PrepareWait() && unavailable_in_a_row_ < 3) return absl::OkStatus();
    pollfd fds[3] = {{tap_->fd(), POLLIN, 0}, {nic_->fd(), POLLIN, 0}, {session_->fd(), POLLIN, 0}};
    const nfds_t n = session_->fd() >= 0 ? 3 : 2;
    int timeout = -1;
    const absl::Time next = session_->next_poll();
    if (next != absl::InfiniteFuture()) {
      timeout = static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(next - absl::Now()) + 1, 0, 1000));
    }
    // A NIC that keeps saying kUnavailable (set down by an admin) must not
    // make the pump spin: look again in a while.
    if (unavailable_in_a_row_ >= 3) timeout = timeout < 0 ? 100 : std::min(timeout, 100);
    const int r = ::poll(fds, n, timeout);
    if (r < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    if (r != 0) device_ready_ = r < 0 || fds[0].revents != 0;  // EINTR: look anyway
    if (r == 0 && unavailable_in_a_row_ >= 3) unavailable_in_a_row_ = 0;
    if (n == 3 && (fds[2].revents != 0) ) {
      if (auto s = session_->Poll(); !s.ok()) Log(absl::StrCat("hsid: ", s.ToString()));
    } else if (r == 0 && next != absl::InfiniteFuture()) {
      if (auto s = session_->Poll(); !s.ok()) Log(absl::StrCat("hsid: ", s.ToString()));
    }
    return absl::OkStatus();
  }

  hsi::Session* session_;
  hsi::Nic* nic_;
  hsi::ifd::TapDevice* tap_;
  hsi::WaitMode wait_;
  bool layer2_;
  bool offload_;
  size_t vnet_;  // bytes of vnet header before each packet on the device: 0 or 10
  // Peers whose last frame said they take checksum-partial frames.
  std::unordered_set<uint32_t> offload_peers_;
  std::vector<uint8_t> buffer_;
  // The device may have a packet: poll() said so, or the last read() got
  // one (a batch may have left more). Cleared by a read() that finds none.
  bool device_ready_ = true;
  // A ring that keeps the pump busy lets it read the device on every
  // this-many-th round at least (Run).
  static constexpr uint32_t kDeviceEvery = 16;
  // --wait adaptive spins this long after the last packet before it sleeps
  // (Run). 20, 50 and 200 us gave the same sockperf p50 within the noise
  // on the 2-vCPU VM (docs/hsi-ifd.md, "The last pass"): a ping-pong's
  // round trip over hsi0 is shorter than each.
  static constexpr absl::Duration kSpinFor = absl::Microseconds(50);
  Counters c_;
  int unavailable_in_a_row_ = 0;
};

using hsi::ifd::Lookup;
using hsi::ifd::Switch;

// The options from the command line and the config file (--config), the
// command line winning. kInvalidArgument for a usage or config error,
// other codes if the config file cannot be read.
absl::StatusOr<Options> ParseOptions(const Args& args) {
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
  auto lpar = Lookup(args, file, "lpar");
  if (!lpar) return absl::InvalidArgumentError(absl::StrCat("--lpar NAME is required", from_config));
  if (lpar->value.empty()) return absl::InvalidArgumentError(absl::StrCat(lpar->what, ": the LPAR name is empty"));
  o.lpar = lpar->value;
  auto chpid = Lookup(args, file, "chpid");
  if (!chpid) return absl::InvalidArgumentError(absl::StrCat("--chpid ID is required", from_config));
  auto id = hsi::tools::ParseChpid(chpid->what, chpid->value);
  if (!id.ok()) return id.status();
  o.chpid = *id;
  if (auto v = Lookup(args, file, "netns")) {
    if (v->value.empty()) return absl::InvalidArgumentError(absl::StrCat(v->what, " needs a namespace name"));
    o.netns = v->value;
  }
  if (auto v = Lookup(args, file, "ifname")) o.ifname = v->value;
  auto persist = Switch(args, file, "persist");
  if (!persist.ok()) return persist.status();
  o.persist = *persist;
  auto layer2 = Switch(args, file, "layer2");
  if (!layer2.ok()) return layer2.status();
  o.layer2 = *layer2;
  if (auto v = Lookup(args, file, "offload")) {
    auto on = hsi::ifd::ParseSwitch({v->value, v->what});
    if (!on.ok()) return on.status();
    o.offload = *on;
  }
  if (auto v = Lookup(args, file, "socket")) o.socket = v->value;
  if (auto v = Lookup(args, file, "wait")) {
    auto w = hsi::tools::ParseWait(v->what, v->value);
    if (!w.ok()) return w.status();
    o.wait = *w;
  }
  if (auto v = Lookup(args, file, "address")) {
    std::vector<std::string> parts = absl::StrSplit(v->value, absl::MaxSplits('/', 1));
    auto a = hsi::tools::ParseAddress(v->what, parts[0]);
    if (!a.ok()) return a.status();
    o.address = *a;
    if (parts.size() == 2) {
      int len = 0;
      if (!absl::SimpleAtoi(parts[1], &len) || len < 8 || len > 30) {
        return absl::InvalidArgumentError(
            absl::StrCat(v->what, " '", v->value, "': the prefix length must be 8..30"));
      }
      o.prefix = len;
    }
  }
  return o;
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
  InstallSignals();

  // 1. The NIC: hsid says yes or no before anything is made.
  hsi::SessionOptions so;
  so.socket_path = opts->socket;
  so.lpar = opts->lpar;
  auto session = hsi::Session::Connect(so);
  if (!session.ok()) return hsi::tools::Fail(kTool, absl::StrCat("LPAR ", opts->lpar, ": ", session.status().message()), kExitFailure);
  auto nic = session->AttachNic(opts->chpid, opts->address);
  if (!nic.ok()) return hsi::tools::Fail(kTool, nic.status().message(), kExitFailure);
  const hsi::NicInfo& info = nic->info();
  const std::string where = absl::StrCat("CHPID ", hsi::tools::ChpidText(info.chpid), " (subnet ",
                                         info.subnet.ToString(), ", MTU ", info.mtu, ")");
  if (opts->address && *opts->address != info.address) {
    Log(absl::StrCat("hsid gave ", info.address.ToString(), " (the LPAR's static address), not ",
                     opts->address->ToString()));
  }
  if (opts->prefix && *opts->prefix != info.subnet.prefix()) {
    return hsi::tools::Fail(kTool,
                            absl::StrCat("--address prefix /", *opts->prefix, " is not the prefix of ", where),
                            kExitFailure);
  }

  // 2. The device, made inside the namespace (device.h says why).
  if (!opts->netns.empty()) {
    if (auto s = hsi::ifd::EnterNetns(opts->netns); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  const hsi::ifd::Mac mac = hsi::ifd::MacOf(info.address);
  // Offload is for layer 3: in layer 2 the frames are the kernel's own.
  const bool offload = opts->offload && !opts->layer2;
  auto tap = hsi::ifd::TapDevice::Create(opts->ifname, opts->persist, mac, offload);
  if (!tap.ok()) return hsi::tools::Fail(kTool, tap.status().message(), kExitFailure);
  // Layer 3 puts the IP packet on the ring, layer 2 the Ethernet frame:
  // the device's MTU is what fits the CHPID's MTU.
  const uint32_t mtu = opts->layer2 ? info.mtu - static_cast<uint32_t>(hsi::ifd::kEthHeader) : info.mtu;
  if (auto s = tap->Configure(mac, mtu, info.address, info.subnet); !s.ok()) {
    return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  // hsictl nics shows which NIC is this interface.
  if (auto s = nic->DeclareInterface({opts->layer2 ? 2 : 3, tap->name(), opts->netns}); !s.ok()) {
    return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  Log(absl::StrFormat("%s %s in %s: %s/%d on %s, layer %d, MTU %u, MAC %02x:%02x:%02x:%02x:%02x:%02x, "
                      "offload %s, wait %s (LPAR %s, pid %d)",
                      tap->name(),
                      tap->reattached() ? "re-attached (persistent), up" : opts->persist ? "up (persistent)" : "up", opts->netns.empty() ? "this network namespace" : "netns " + opts->netns,
                      info.address.ToString(), info.subnet.prefix(), where, opts->layer2 ? 2 : 3, mtu, mac[0], mac[1], mac[2], mac[3],
                      mac[4], mac[5], offload ? "on (checksum)" : "off", hsi::WaitModeName(opts->wait), opts->lpar,
                      ::getpid()));

  // Units ordered after this one (Type=notify) find the interface up
  // with its address from here on.
  if (auto s = hsi::support::NotifyReady(absl::StrCat(tap->name(), " up: ", info.address.ToString(), "/",
                                                      info.subnet.prefix(), " on ", where));
      !s.ok()) {
    Log(std::string(s.message()));
  }

  // 3. Pump until SIGINT/SIGTERM.
  Pump pump(&*session, &*nic, &*tap, opts->wait, opts->layer2, offload);
  const absl::Status s = pump.Run();
  hsi::support::NotifyStopping().IgnoreError();
  Log(Summary(pump.counters()));
  if (!s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  if (opts->persist) {
    Log(absl::StrCat("stopping: keeping ", tap->name(), " (persistent; `ip link del ", tap->name(),
                     "` removes it) and detaching from ", where));
  } else {
    Log(absl::StrCat("stopping: removing ", tap->name(), " and detaching from ", where));
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
