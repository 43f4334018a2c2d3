// hsi-ifd's checksum offload (tools/hsi-ifd/offload.h) end to end: a
// private hsid with one 64K CHPID (MTU 56K), namespaces made by the test
// (always deleted), hsi-ifd with offload on (its default). Checks that TCP
// crosses the ring with partial checksums and arrives intact, that a
// packet forwarded by the receiver to a peer without offload gets its
// checksum finished (the last kernel verifies it), that hsi-dump's pcap
// carries finished checksums, and that a native peer's hostile offload
// tags are dropped and counted. Needs root and /dev/net/tun; skips and
// says why without them.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "ifd_util.h"
#include "offload.h"

namespace {

using namespace hsi::ifd_testing;  // NOLINT: the helpers of this test family

constexpr char kC[] = "10.240.0.3";

// The value of counter `name` in hsi-ifd's exit summary ("tx_partial 12 "),
// or -1 if the log has none.
int64_t Counter(const std::string& log, const std::string& name) {
  const size_t at = log.rfind(" " + name + " ");
  if (at == std::string::npos) return -1;
  const size_t from = at + name.size() + 2;
  int64_t v = -1;
  const std::string digits = log.substr(from, log.find_first_not_of("0123456789", from) - from);
  return absl::SimpleAtoi(digits, &v) ? v : -1;
}

class IfdOffloadTest : public IfdTest {
 protected:
  IfdOffloadTest() : IfdTest(ConfigWithMfs("64K", "4M")) {}
};

// A -> B over hsi0, both with offload: the packets leave A's kernel without
// their TCP checksum, cross the ring marked partial, and B's kernel takes
// them; every byte arrives in order (FNV hash of 64 MiB).
TEST_F(IfdOffloadTest, TcpCrossesThePartialChecksumPathIntact) {
  StartBoth();
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "offload on (checksum)")) << ifd_a_->log();
  const TransferResult t = CheckedTcpTransfer(b_->name(), a_->name(), kB, 5301, uint64_t{64} << 20);
  EXPECT_EQ(t.error, "");
  EXPECT_EQ(t.peer, kA);
  ASSERT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  ASSERT_EQ(ifd_b_->Stop(SIGTERM), 0) << ifd_b_->log();
  // Most data segments went partial (the SYN's went out finished: A had not
  // yet seen a frame from B).
  EXPECT_GT(Counter(ifd_a_->log(), "tx_partial"), 1000) << ifd_a_->log();
  EXPECT_GT(Counter(ifd_b_->log(), "rx_partial"), 1000) << ifd_b_->log();
  EXPECT_EQ(Counter(ifd_b_->log(), "rx_bad_offload"), 0) << ifd_b_->log();
  EXPECT_EQ(Counter(ifd_a_->log(), "tx_bad_offload"), 0) << ifd_a_->log();
}

// TCP over IPv6 goes partial too (the spot after a 40-byte header): iperf3
// over unique-local addresses, its bytes as both ends count them.
TEST_F(IfdOffloadTest, TcpOverIpv6CrossesPartial) {
  if (!Have("iperf3")) GTEST_SKIP() << "iperf3 is not installed (packaging/setup.sh installs it)";
  StartBoth();
  ASSERT_TRUE(a_->Exec("ip -6 addr add fd00:f0::1/64 dev hsi0 nodad").ok());
  ASSERT_TRUE(b_->Exec("ip -6 addr add fd00:f0::2/64 dev hsi0 nodad").ok());
  Process server({"ip", "netns", "exec", b_->name(), "iperf3", "-s", "-1", "-B", "fd00:f0::2", "-p", "5305"},
                 hsid_.dir() + "/iperf3-v6.log");
  ASSERT_TRUE(Eventually([&] { return b_->Exec("ss -ltnH 'sport = :5305'").out.find("5305") != std::string::npos; }))
      << server.log();
  const Result c = a_->Exec("timeout 60 iperf3 -6 -c fd00:f0::2 -p 5305 -n 32M");
  ASSERT_TRUE(c.ok()) << c.out << ifd_a_->log();
  EXPECT_EQ(server.WaitExit(absl::Seconds(10)), 0) << server.log();
  ASSERT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  ASSERT_EQ(ifd_b_->Stop(SIGTERM), 0) << ifd_b_->log();
  EXPECT_GT(Counter(ifd_a_->log(), "tx_partial"), 500) << ifd_a_->log();  // 32M / 56K
  EXPECT_GT(Counter(ifd_b_->log(), "rx_partial"), 500) << ifd_b_->log();
  EXPECT_EQ(Counter(ifd_b_->log(), "rx_bad_offload"), 0) << ifd_b_->log();
}

// With --offload off on one side nothing goes partial, either way, and the
// transfer is intact: the side with offload finishes every checksum.
TEST_F(IfdOffloadTest, PeerWithOffloadOffGetsFinishedChecksums) {
  ifd_a_ = StartIfd(*a_, "A", kA);
  ifd_b_ = StartIfd(*b_, "B", kB, {"--offload", "off"});
  ASSERT_TRUE(Eventually([&] { return Up(*a_, kA) && Up(*b_, kB); })) << ifd_a_->log() << ifd_b_->log();
  const TransferResult t = CheckedTcpTransfer(b_->name(), a_->name(), kB, 5302, uint64_t{16} << 20);
  EXPECT_EQ(t.error, "");
  ASSERT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  ASSERT_EQ(ifd_b_->Stop(SIGTERM), 0) << ifd_b_->log();
  EXPECT_EQ(Counter(ifd_a_->log(), "tx_partial"), 0) << ifd_a_->log();
  EXPECT_GT(Counter(ifd_a_->log(), "tx_finished"), 100) << ifd_a_->log();
  EXPECT_EQ(Counter(ifd_b_->log(), "rx_bad_offload"), 0) << ifd_b_->log();
  EXPECT_TRUE(absl::StrContains(ifd_b_->log(), "offload off")) << ifd_b_->log();
}

// Routing over offloaded frames: A sends to C (10.20.9.3, on C's loopback)
// via B's hsi address; B (forwarding on) sends it on through hsi0 to C,
// whose hsi-ifd runs --offload off. So A -> B crosses partial, B's kernel
// forwards the packet without finishing it (its hsi0 takes partial
// checksums), B's hsi-ifd must finish it for C, and C's kernel verifies
// every TCP checksum (a wrong one is dropped: the transfer would stall and
// TcpInCsumErrors count).
TEST_F(IfdOffloadTest, ForwardedPartialPacketsAreFinishedForAPeerWithoutOffload) {
  Netns c;
  ASSERT_TRUE(c.made());
  StartBoth();
  auto ifd_c = StartIfd(c, "C", kC, {"--offload", "off"});
  ASSERT_TRUE(Eventually([&] { return Up(c, kC) || !ifd_c->running(); }) && Up(c, kC)) << ifd_c->log();
  ASSERT_TRUE(b_->Exec("sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 "
                       "net.ipv4.conf.hsi0.send_redirects=0").ok());
  ASSERT_TRUE(c.Exec("ip addr add 10.20.9.3/32 dev lo").ok());
  ASSERT_TRUE(a_->Exec(absl::StrCat("ip route add 10.20.9.3/32 via ", kB, " dev hsi0")).ok());
  ASSERT_TRUE(b_->Exec(absl::StrCat("ip route add 10.20.9.3/32 via ", kC, " dev hsi0")).ok());
  // Replies go straight back to A (C has a route to 10.240.0.0/24 on hsi0),
  // so no frame of the transfer comes from B to A: A learns that B takes
  // partial checksums (kTagOffload, offload.h) from a frame of B's, here
  // B's echo reply, before the transfer starts. Without it A finishes every
  // checksum itself and nothing crosses partial (it was left to whatever B
  // happened to send A first: a CI run where nothing came failed).
  const Result ping = a_->Exec(absl::StrCat("ping -c 1 -W 5 ", kB));
  ASSERT_TRUE(ping.ok()) << ping.out << ifd_a_->log() << ifd_b_->log();
  const TransferResult t = CheckedTcpTransfer(c.name(), a_->name(), "10.20.9.3", 5303, uint64_t{16} << 20);
  EXPECT_EQ(t.error, "") << ifd_b_->log();
  EXPECT_EQ(t.peer, kA);
  // nstat prints "TcpInCsumErrors  <count>  <rate>".
  const Result errs = c.Exec("nstat -az TcpInCsumErrors");
  std::vector<std::string> words = absl::StrSplit(errs.out, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
  const auto at = std::find(words.begin(), words.end(), "TcpInCsumErrors");
  ASSERT_TRUE(at != words.end() && at + 1 != words.end()) << errs.out;
  EXPECT_EQ(*(at + 1), "0") << errs.out;
  ASSERT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  ASSERT_EQ(ifd_b_->Stop(SIGTERM), 0) << ifd_b_->log();
  ASSERT_EQ(ifd_c->Stop(SIGTERM), 0) << ifd_c->log();
  EXPECT_GT(Counter(ifd_a_->log(), "tx_partial"), 100) << ifd_a_->log();  // A -> B partial
  EXPECT_GT(Counter(ifd_b_->log(), "rx_partial"), 100) << ifd_b_->log();
  EXPECT_GT(Counter(ifd_b_->log(), "tx_finished"), 100) << ifd_b_->log();  // B -> C finished
  EXPECT_EQ(Counter(ifd_c->log(), "rx_bad_offload"), 0) << ifd_c->log();
}

// hsi-dump of the CHPID while TCP crosses it partial: tshark, told to check
// TCP checksums, finds every one good (hsi-dump finished them).
TEST_F(IfdOffloadTest, DumpCarriesFinishedChecksums) {
  if (!Have("tshark")) GTEST_SKIP() << "tshark is not installed (packaging/setup.sh installs it)";
  StartBoth();
  const std::string pcap = hsid_.dir() + "/offload.pcap";
  Process dump({HSI_DUMP_PATH, "--chpid", "F0", "--socket", hsid_.socket(), "-w", pcap}, hsid_.dir() + "/dump.log");
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(dump.log(), "tapping CHPID F0") || !dump.running(); }))
      << dump.log();
  const TransferResult t = CheckedTcpTransfer(b_->name(), a_->name(), kB, 5304, uint64_t{4} << 20);
  EXPECT_EQ(t.error, "");
  const int status = dump.Stop(SIGINT);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << dump.log();
  ASSERT_EQ(ifd_a_->Stop(SIGTERM), 0);
  EXPECT_GT(Counter(ifd_a_->log(), "tx_partial"), 10) << ifd_a_->log();
  const Result r = Shell("tshark -r " + pcap + " -o tcp.check_checksum:TRUE -Y 'tcp.port == 5304' -T fields "
                         "-e tcp.checksum.status", /*with_stderr=*/false);
  ASSERT_TRUE(r.ok()) << r.out;
  int good = 0, bad = 0;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    good += line == "1" || line == "Good";  // 0 bad, 1 good, 2 unverified
    bad += line == "0" || line == "Bad";
  }
  EXPECT_GT(good, 10) << r.out.substr(0, 2000);
  EXPECT_EQ(bad, 0) << r.out.substr(0, 2000);
}

// A native peer (the test, through libhsi) sends A frames tagged
// checksum-partial that no kernel may be given so: an ICMP echo, a TCP
// packet cut inside its header, a TCP fragment. Each is dropped and
// counted; a well-formed UDP packet so tagged goes through (rx_partial).
TEST_F(IfdOffloadTest, HostileOffloadTagsFromANativePeerAreDroppedAndCounted) {
  StartBoth();
  absl::StatusOr<NativePeer> peer = AttachNativePeer(hsid_.socket(), "native");
  ASSERT_TRUE(peer.ok()) << peer.status();
  hsi::Nic* nic = &peer->nic;
  const hsi::Address self = nic->address();
  // An IPv4 header (20 bytes) from us to A, protocol `proto`, total `len`.
  auto ipv4 = [&](uint8_t proto, size_t len, uint16_t frag) {
    std::vector<uint8_t> p(len, 0);
    p[0] = 0x45;
    p[2] = static_cast<uint8_t>(len >> 8);
    p[3] = static_cast<uint8_t>(len);
    p[6] = static_cast<uint8_t>(frag >> 8);
    p[7] = static_cast<uint8_t>(frag);
    p[8] = 64;
    p[9] = proto;
    const uint32_t s = self.value(), d = hsi::Address::Parse(kA)->value();
    for (int i = 0; i < 4; ++i) {
      p[12 + i] = static_cast<uint8_t>(s >> (24 - 8 * i));
      p[16 + i] = static_cast<uint8_t>(d >> (24 - 8 * i));
    }
    return p;
  };
  std::vector<uint8_t> icmp = ipv4(1, 28, 0);
  icmp[20] = 8;                                  // echo request
  std::vector<uint8_t> cut_tcp = ipv4(6, 30, 0);  // 10 of TCP's 20 header bytes
  std::vector<uint8_t> fragment = ipv4(6, 60, 0x2000);  // MF set
  fragment[32] = 0x50;
  const std::vector<uint8_t> udp = UdpPacket(self, *hsi::Address::Parse(kA), 8);  // 36 bytes
  const auto wait = [] { return hsi::Wait::Adaptive(absl::Now() + absl::Seconds(5)); };
  const hsi::Address a = *hsi::Address::Parse(kA);
  ASSERT_TRUE(nic->SendTo(a, icmp, wait(), hsi::ifd::kTagCsumPartial).ok());
  ASSERT_TRUE(nic->SendTo(a, cut_tcp, wait(), hsi::ifd::kTagCsumPartial).ok());
  ASSERT_TRUE(nic->SendTo(a, fragment, wait(), hsi::ifd::kTagCsumPartial | hsi::ifd::kTagOffload).ok());
  ASSERT_TRUE(nic->SendTo(a, udp, wait(), hsi::ifd::kTagCsumPartial | hsi::ifd::kTagOffload).ok());
  EXPECT_TRUE(Eventually([&] {
    const std::string log = ifd_a_->log();
    return absl::StrContains(log, "dropped a 28-byte frame") && absl::StrContains(log, "dropped a 30-byte frame") &&
           absl::StrContains(log, "dropped a 60-byte frame");
  })) << ifd_a_->log();
  // The interface still works.
  const Result r = a_->Exec(absl::StrCat("ping -c 1 -W 2 ", kB));
  EXPECT_TRUE(r.ok()) << r.out;
  ASSERT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  EXPECT_EQ(Counter(ifd_a_->log(), "rx_bad_offload"), 3) << ifd_a_->log();
  EXPECT_EQ(Counter(ifd_a_->log(), "rx_partial"), 1) << ifd_a_->log();
  EXPECT_FALSE(absl::StrContains(ifd_a_->log(), "dropped a 36-byte frame")) << ifd_a_->log();
}

}  // namespace
