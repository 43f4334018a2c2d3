// hsi-dump: the Network Traffic Analyzer, a read-only tap on a CHPID.
// See packaging/man/hsi-dump.8; --help says the same.
#include <arpa/inet.h>
#include <signal.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli.h"
#include "hsi/sniffer.h"
#include "l3.h"
#include "offload.h"
#include "nlohmann/json.hpp"

namespace {

using hsi::tools::Args;
using hsi::tools::kExitFailure;
using hsi::tools::kExitOk;
using json = nlohmann::ordered_json;

constexpr char kTool[] = "hsi-dump";

constexpr char kHelp[] = R"help(Usage: hsi-dump --chpid ID [--host ADDRESS] [-c COUNT] [-w FILE [--ethernet]]
                [--json] [--duration SECS] [--socket PATH]

The Network Traffic Analyzer: a read-only tap on every link of one CHPID,
current and future. Only an admin uid (hsid's admin_uids/admin_gids, or
root) or a uid/gid the CHPID authorizes (`sniffers = [uids]`,
`sniffer_gids = [gids]` in its [[chpid]] table) may open it. hsid hands the
tap the links' ring segments sealed against writing, so it can neither alter
nor slow traffic: it reads each direction behind the producer and counts
the frames it missed when the producer came round the ring before it read
them.

Prints one line per frame (time, source, destination, length, type), or
writes them to a pcap file. The summary (frames captured, missed, written)
goes to stderr when the tap stops: at -c COUNT, after --duration, or on
SIGINT/SIGTERM.

Options:
  --chpid ID          the CHPID to tap, hex (like F0); required
  --host ADDRESS      only frames from or to ADDRESS
  -c, --count COUNT   stop after COUNT frames (after the filter)
  -w, --write FILE    write a pcap file instead of printing lines; "-" for stdout.
                      Link type 101 (LINKTYPE_RAW), nanosecond timestamps;
                      tshark and Wireshark open it as is. A frame that is a
                      well-formed IPv4 or IPv6 packet (the layer-3 frames of
                      hsi-ifd) is written as it is, so tshark decodes it down
                      to TCP (a checksum hsi-ifd's offload left partial is
                      written finished); any other frame (the native API's) becomes an
                      IPv4/UDP datagram from the source to the destination
                      NIC address (UDP ports 8192 -> 8192, the hsi payload as
                      UDP payload)
  --ethernet          with -w: link type 1 (LINKTYPE_ETHERNET), every frame
                      written as it is: for a CHPID whose frames are Ethernet
                      frames (hsi-ifd --layer2)
  --json              print each frame as a JSON line, and the summary as a last
                      JSON line {"summary": ...} on stdout
  --duration SECS     stop after SECS seconds
  --socket PATH       hsid's control socket (see hsid(8))
  -h, --help          this text

Frame lines: "12:34:56.123456789 10.240.0.2 > 10.240.0.3: length 64, unicast
(link 4)". A broadcast frame shows once per link it travelled on, with the
CHPID's broadcast address as destination. Times are when the tap copied the
frame, not when it was sent.

Exit status: 0 success, 1 failure (refused by hsid, CHPID not defined, hsid
unreachable, file not writable), 2 usage error.
)help";

const std::vector<hsi::tools::Option> kOptions = {
    {{"--chpid"}, "ID"}, {{"--host"}, "ADDRESS"}, {{"--count", "-c"}, "COUNT"}, {{"--write", "-w"}, "FILE"},
    {{"--json"}},        {{"--duration"}, "SECS"}, {{"--socket"}, "PATH"},      {{"--ethernet"}},
    {{"--help", "-h"}},
};

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

constexpr uint16_t kUdpPort = 8192;
constexpr uint32_t kLinktypeRaw = 101;
constexpr uint32_t kLinktypeEthernet = 1;

// pcap, nanosecond variant (magic 0xa1b23c4d), in host byte order.
class PcapWriter {
 public:
  // `ethernet`: LINKTYPE_ETHERNET and every frame as it is; else
  // LINKTYPE_RAW, IP packets as they are and other frames wrapped.
  absl::Status Open(const std::string& path, bool ethernet) {
    ethernet_ = ethernet;
    f_ = path == "-" ? stdout : std::fopen(path.c_str(), "wb");
    if (f_ == nullptr) return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
    struct {
      uint32_t magic;
      uint16_t major, minor;
      int32_t zone;
      uint32_t sigfigs, snaplen, network;
    } h = {0xa1b23c4d, 2, 4, 0, 0, 65535, ethernet ? kLinktypeEthernet : kLinktypeRaw};
    return Put(&h, sizeof(h));
  }
  absl::Status Write(const hsi::CapturedFrame& f, uint16_t ip_id) {
    const size_t len = f.payload.size();
    if (ethernet_ || hsi::ifd::IpEtherType(f.payload).has_value()) {
      const int64_t ns = absl::ToUnixNanos(f.time);
      const uint32_t rec[4] = {static_cast<uint32_t>(ns / 1000000000), static_cast<uint32_t>(ns % 1000000000),
                               static_cast<uint32_t>(len), static_cast<uint32_t>(len)};
      if (absl::Status s = Put(rec, sizeof(rec)); !s.ok()) return s;
      if (!ethernet_ && (f.tag & hsi::ifd::kTagCsumPartial) != 0) {
        // Between two hsi-ifds with offload on, the TCP/UDP checksum was
        // left to the receiving kernel (offload.h): the pcap gets the
        // packet as that kernel sees it, checksum finished.
        if (const auto spot = hsi::ifd::TransportChecksum(f.payload)) {
          scratch_.assign(f.payload.begin(), f.payload.end());
          hsi::ifd::FinishChecksum(absl::MakeSpan(scratch_), spot->start, spot->offset);
          return Put(scratch_.data(), len);
        }
      }
      return Put(f.payload.data(), len);
    }
    const size_t total = 20 + 8 + len;  // at most 20 + 8 + 56K: fits IPv4's 16-bit length
    uint8_t hdr[28] = {};
    hdr[0] = 0x45;
    hdr[2] = static_cast<uint8_t>(total >> 8);
    hdr[3] = static_cast<uint8_t>(total);
    hdr[4] = static_cast<uint8_t>(ip_id >> 8);
    hdr[5] = static_cast<uint8_t>(ip_id);
    hdr[6] = 0x40;  // don't fragment
    hdr[8] = 64;    // TTL
    hdr[9] = 17;    // UDP
    const uint32_t src = htonl(f.source.value()), dst = htonl(f.destination.value());
    std::memcpy(hdr + 12, &src, 4);
    std::memcpy(hdr + 16, &dst, 4);
    const uint16_t csum = hsi::ifd::FoldComplement(hsi::ifd::OnesSum(absl::MakeConstSpan(hdr, 20)));
    std::memcpy(hdr + 10, &csum, 2);  // native order, as OnesSum summed
    const size_t udp_len = 8 + len;
    hdr[20] = hdr[22] = static_cast<uint8_t>(kUdpPort >> 8);
    hdr[21] = hdr[23] = static_cast<uint8_t>(kUdpPort & 0xff);
    hdr[24] = static_cast<uint8_t>(udp_len >> 8);
    hdr[25] = static_cast<uint8_t>(udp_len);  // UDP checksum 0: none (allowed over IPv4)
    const int64_t ns = absl::ToUnixNanos(f.time);
    const uint32_t rec[4] = {static_cast<uint32_t>(ns / 1000000000), static_cast<uint32_t>(ns % 1000000000),
                             static_cast<uint32_t>(total), static_cast<uint32_t>(total)};
    if (absl::Status s = Put(rec, sizeof(rec)); !s.ok()) return s;
    if (absl::Status s = Put(hdr, sizeof(hdr)); !s.ok()) return s;
    return Put(f.payload.data(), len);
  }
  absl::Status Close() {
    if (f_ == nullptr) return absl::OkStatus();
    const bool ok = std::fflush(f_) == 0 && (f_ == stdout || std::fclose(f_) == 0);
    f_ = nullptr;
    return ok ? absl::OkStatus() : absl::UnavailableError(absl::StrCat("writing the pcap file: ", std::strerror(errno)));
  }

 private:
  absl::Status Put(const void* p, size_t n) {
    if (n != 0 && std::fwrite(p, 1, n, f_) != n) {
      return absl::UnavailableError(absl::StrCat("writing the pcap file: ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }
  std::FILE* f_ = nullptr;
  bool ethernet_ = false;
  std::vector<uint8_t> scratch_;  // a packet whose checksum Write() finishes
};

const char* TypeName(const hsi::CapturedFrame& f) {
  return f.broadcast ? "broadcast" : (f.type & 0xFF) == 0 ? "unicast" : "other";
}

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  std::optional<Args> args = hsi::tools::StartTool(argc, argv, kTool, kOptions, kHelp,
                                                   /*allow_positional=*/false, &exit_code);
  if (!args) return exit_code;
  std::optional<std::string> chpid_text = args->Get("--chpid");
  if (!chpid_text) return hsi::tools::Usage(kTool, "--chpid ID is required (the CHPID to tap, like F0)");
  absl::StatusOr<uint32_t> chpid = hsi::tools::ParseChpid("--chpid", *chpid_text);
  if (!chpid.ok()) return hsi::tools::Usage(kTool, chpid.status().message());
  std::optional<hsi::Address> host;
  if (std::optional<std::string> h = args->Get("--host")) {
    absl::StatusOr<hsi::Address> a = hsi::tools::ParseAddress("--host", *h);
    if (!a.ok()) return hsi::tools::Usage(kTool, a.status().message());
    host = *a;
  }
  uint64_t count = 0;
  if (std::optional<std::string> c = args->Get("--count")) {
    absl::StatusOr<uint64_t> v = hsi::tools::ParseCount("-c/--count", *c, 1, uint64_t{1} << 48);
    if (!v.ok()) return hsi::tools::Usage(kTool, v.status().message());
    count = *v;
  }
  absl::Time until = absl::InfiniteFuture();
  if (std::optional<std::string> d = args->Get("--duration")) {
    absl::StatusOr<double> v = hsi::tools::ParseSeconds("--duration", *d, 0.01, 1e7);
    if (!v.ok()) return hsi::tools::Usage(kTool, v.status().message());
    until = absl::Now() + absl::Seconds(*v);
  }
  const bool as_json = args->Has("--json");
  const std::optional<std::string> out_path = args->Get("--write");
  const bool ethernet = args->Has("--ethernet");
  if (ethernet && !out_path) return hsi::tools::Usage(kTool, "--ethernet is about the pcap file: it needs -w FILE");
  if (out_path && *out_path == "-" && as_json) {
    return hsi::tools::Usage(kTool, "-w - (pcap on stdout) and --json both want stdout; choose one");
  }

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  hsi::SnifferOptions so;
  so.socket_path = args->Get("--socket").value_or("");
  so.chpid = *chpid;
  absl::StatusOr<hsi::Sniffer> sniffer = hsi::Sniffer::Open(so);
  if (!sniffer.ok()) return hsi::tools::Fail(kTool, sniffer.status().message(), kExitFailure);
  PcapWriter pcap;
  if (out_path) {
    if (absl::Status s = pcap.Open(*out_path, ethernet); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  std::fprintf(stderr, "hsi-dump: tapping CHPID %s (subnet %s, MTU %u)%s%s\n",
               hsi::tools::ChpidText(sniffer->chpid()).c_str(), sniffer->subnet().ToString().c_str(),
               sniffer->mtu(), host ? absl::StrCat(", host ", host->ToString()).c_str() : "",
               out_path ? absl::StrCat(", writing ", *out_path).c_str() : "");
  uint64_t shown = 0;
  absl::Status failure;
  const absl::TimeZone tz = absl::LocalTimeZone();
  auto on_frame = [&](const hsi::CapturedFrame& f) {
          if (!failure.ok() || (count != 0 && shown >= count)) return;
          if (host && f.source != *host && f.destination != *host) return;
          ++shown;
          if (out_path) {
            failure = pcap.Write(f, static_cast<uint16_t>(shown));
          } else if (as_json) {
            std::printf("%s\n", json{{"time", absl::FormatTime("%Y-%m-%dT%H:%M:%E9S%Ez", f.time, tz)},
                                     {"source", f.source.ToString()},
                                     {"destination", f.destination.ToString()},
                                     {"length", f.payload.size()},
                                     {"type", TypeName(f)},
                                     {"link", f.link_id}}
                                    .dump()
                                    .c_str());
          } else {
            std::printf("%s %s > %s: length %zu, %s (link %u)\n", absl::FormatTime("%H:%M:%E9S", f.time, tz).c_str(),
                        f.source.ToString().c_str(), f.destination.ToString().c_str(), f.payload.size(), TypeName(f),
                        f.link_id);
          }
  };
  while (!g_stop && failure.ok() && (count == 0 || shown < count) && absl::Now() < until) {
    absl::StatusOr<size_t> n = sniffer->Poll(on_frame, std::min(until, absl::Now() + absl::Milliseconds(200)));
    if (!n.ok()) failure = n.status();
  }
  // Stopped by a signal or the clock: read what is already in the rings.
  while (failure.ok() && (count == 0 || shown < count)) {
    absl::StatusOr<size_t> n = sniffer->Poll(on_frame, absl::InfinitePast());
    if (!n.ok() || *n == 0) break;
  }
  if (absl::Status s = pcap.Close(); !s.ok() && failure.ok()) failure = s;
  std::fflush(stdout);
  const uint64_t missed = sniffer->missed();
  if (as_json) {
    std::printf("%s\n", json{{"summary",
                              {{"chpid", hsi::tools::ChpidText(sniffer->chpid())},
                               {"frames", shown},
                               {"captured", sniffer->captured()},
                               {"missed", missed}}}}
                            .dump()
                            .c_str());
  }
  std::fprintf(stderr, "hsi-dump: %lu frames %s, %lu missed (the producer came round the ring first)\n",
               static_cast<unsigned long>(shown),
               out_path ? absl::StrCat("written to ", *out_path).c_str() : "shown",
               static_cast<unsigned long>(missed));
  for (const hsi::TapDirection& d : sniffer->directions()) {
    if (!d.status.ok()) std::fprintf(stderr, "hsi-dump: %s\n", std::string(d.status.message()).c_str());
  }
  if (!failure.ok()) return hsi::tools::Fail(kTool, failure.message(), kExitFailure);
  return kExitOk;
}
