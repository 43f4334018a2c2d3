// hsi-ifd end to end with real programs (issue 16): a private hsid, two
// network namespaces made by the test (unique names, always deleted), one
// hsi-ifd per namespace on CHPID F0 (16K MFS: MTU 8K), and ping, iperf3 and
// ip run inside the namespaces. Every process the test starts is killed
// and reaped, and every namespace deleted, even when an assertion fails.
// Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for setns) and /dev/net/tun:
// without them each test skips and says why.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <map>
#include <optional>
#include <tuple>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "hsi/admin.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/service_manager.h"
#include "ifd_util.h"
#include "nlohmann/json.hpp"

namespace {

using namespace hsi::ifd_testing;  // NOLINT: the helpers of this test family

TEST_F(IfdTest, DeviceHasTheNicsAddressAndTheChpidsMtu) {
  StartBoth();
  const Result link = Shell("ip -n " + a_->name() + " link show dev hsi0");
  ASSERT_TRUE(link.ok()) << link.out;
  EXPECT_TRUE(absl::StrContains(link.out, "mtu 8192")) << link.out;  // 16K MFS - 8K
  EXPECT_TRUE(absl::StrContains(link.out, "link/ether 02:00:0a:f0:00:01")) << link.out;
  // The device lives only in its namespace.
  EXPECT_FALSE(Shell("ip link show dev hsi0 2>/dev/null | grep -q 02:00:0a:f0:00:01").ok());
  // hsictl shows which NICs are interfaces: the device, its namespace, the layer.
  const Result nics = Shell(absl::StrCat(HSICTL_PATH, " --socket ", hsid_.socket(), " nics --json"));
  ASSERT_TRUE(nics.ok()) << nics.out;
  const nlohmann::json j = nlohmann::json::parse(nics.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object() && j.contains("nics")) << nics.out;
  std::map<std::string, std::string> netns_of;  // NIC address -> interface netns
  for (const auto& n : j["nics"]) {
    ASSERT_TRUE(n["interface"].is_object()) << n.dump();
    EXPECT_EQ(n["interface"]["name"], "hsi0") << n.dump();
    EXPECT_EQ(n["interface"]["layer"], 3) << n.dump();
    netns_of[n["address"].get<std::string>()] = n["interface"]["netns"].get<std::string>();
  }
  EXPECT_EQ(netns_of[kA], a_->name()) << nics.out;
  EXPECT_EQ(netns_of[kB], b_->name()) << nics.out;
  const Result table = Shell(absl::StrCat(HSICTL_PATH, " --socket ", hsid_.socket(), " nics"));
  EXPECT_TRUE(absl::StrContains(table.out, absl::StrCat("hsi0@", a_->name(), " L3"))) << table.out;
}

// The interface's counters (ip -s link) and the NIC's (hsictl stats) agree:
// every packet the device hands hsi-ifd is one frame on the ring (an IP
// packet without its 14-byte Ethernet header), every frame from the ring one
// packet to the device. Quiet links first: no IPv6 (no ND/MLD) and
// permanent neighbours (no ARP), so only the pings move the counters.
// Under systemd (hsi-ifd@.service is Type=notify) hsi-ifd says READY=1
// only once hsi0 is up with its address, so that units ordered after it
// (network.target and what needs the address) find it there; STOPPING=1
// on SIGTERM.
TEST_F(IfdTest, NotifiesReadyOnceHsi0IsUpWithItsAddress) {
  hsi::testing::ServiceManager manager(hsid_.dir() + "/notify");
  ASSERT_TRUE(manager.bound());
  std::unique_ptr<Process> ifd;
  {
    hsi::testing::ScopedEnv env("NOTIFY_SOCKET", hsid_.dir() + "/notify");
    ifd = StartIfd(*a_, "A", kA);
  }
  const std::string ready = manager.Next(absl::Seconds(20));
  std::printf("hsi-ifd told the service manager: %s\n", ready.c_str());
  EXPECT_TRUE(absl::StrContains(ready, "READY=1")) << ifd->log();
  EXPECT_TRUE(absl::StrContains(ready, absl::StrCat("STATUS=hsi0 up: ", kA, "/24 on "))) << ready;
  // At READY the interface is there: no wait.
  EXPECT_TRUE(Up(*a_, kA)) << Shell("ip -n " + a_->name() + " addr").out;
  ASSERT_EQ(::kill(ifd->pid(), SIGTERM), 0);
  EXPECT_TRUE(absl::StrContains(manager.Next(absl::Seconds(20)), "STOPPING=1")) << ifd->log();
  const int status = ifd->WaitExit(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status << "\n" << ifd->log();
}

TEST_F(IfdTest, InterfaceAndNicCountersAgree) {
  StartBoth();
  for (auto [ns, peer, mac] : {std::tuple{a_.get(), kB, "02:00:0a:f0:00:02"}, std::tuple{b_.get(), kA, "02:00:0a:f0:00:01"}}) {
    ASSERT_TRUE(ns->Exec("sysctl -qw net.ipv6.conf.hsi0.disable_ipv6=1").ok());
    ASSERT_TRUE(ns->Exec(absl::StrCat("ip neigh replace ", peer, " lladdr ", mac, " nud permanent dev hsi0")).ok());
  }
  ASSERT_TRUE(a_->Exec(absl::StrCat("ping -c 1 -W 2 ", kB)).ok());  // the link is up
  struct Counters {
    uint64_t dev_tx, dev_tx_bytes, dev_rx, dev_rx_bytes;  // hsi0 in A
    uint64_t nic_tx, nic_tx_bytes, nic_rx, nic_rx_bytes;  // NIC A (hsictl stats)
  };
  auto read = [&]() -> std::optional<Counters> {
    Counters c{};
    auto stat = [&](const char* name, uint64_t* v) {
      const Result r = a_->Exec(absl::StrCat("cat /sys/class/net/hsi0/statistics/", name));
      return r.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(r.out), v);
    };
    if (!stat("tx_packets", &c.dev_tx) || !stat("tx_bytes", &c.dev_tx_bytes) || !stat("rx_packets", &c.dev_rx) ||
        !stat("rx_bytes", &c.dev_rx_bytes)) {
      return std::nullopt;
    }
    const Result st = Shell(absl::StrCat(HSICTL_PATH, " --socket ", hsid_.socket(), " stats --json"));
    const nlohmann::json j = nlohmann::json::parse(st.out, nullptr, /*allow_exceptions=*/false);
    if (!st.ok() || !j.is_object()) return std::nullopt;
    for (const auto& n : j["nics"]) {
      if (n["address"] != kA) continue;
      c.nic_tx = n["tx_frames"];
      c.nic_tx_bytes = n["tx_bytes"];
      c.nic_rx = n["rx_frames"];
      c.nic_rx_bytes = n["rx_bytes"];
      return c;
    }
    return std::nullopt;
  };
  const std::optional<Counters> before = read();
  ASSERT_TRUE(before.has_value());
  constexpr int kPings = 20;
  const Result r = a_->Exec(absl::StrCat("ping -c ", kPings, " -i 0.01 -s 1000 -W 2 ", kB));
  ASSERT_TRUE(r.ok() && absl::StrContains(r.out, absl::StrCat(kPings, " received"))) << r.out;
  // hsi-ifd releases the last reply's frame (the NIC's rx count) just after
  // writing it to the device, so ping may exit first: wait for the count.
  std::optional<Counters> after;
  Eventually([&] {
    after = read();
    return after && after->nic_rx - before->nic_rx >= static_cast<uint64_t>(kPings);
  }, absl::Seconds(2));
  ASSERT_TRUE(after.has_value());
  const uint64_t dev_tx = after->dev_tx - before->dev_tx, dev_rx = after->dev_rx - before->dev_rx;
  const uint64_t nic_tx = after->nic_tx - before->nic_tx, nic_rx = after->nic_rx - before->nic_rx;
  EXPECT_EQ(dev_tx, static_cast<uint64_t>(kPings));
  EXPECT_EQ(nic_tx, dev_tx);
  EXPECT_EQ(nic_rx, dev_rx);
  EXPECT_EQ(dev_rx, static_cast<uint64_t>(kPings));
  // Bytes: the device counts the Ethernet header hsi-ifd strips.
  EXPECT_EQ(after->nic_tx_bytes - before->nic_tx_bytes, after->dev_tx_bytes - before->dev_tx_bytes - 14 * dev_tx);
  EXPECT_EQ(after->nic_rx_bytes - before->nic_rx_bytes, after->dev_rx_bytes - before->dev_rx_bytes - 14 * dev_rx);
  EXPECT_EQ(after->nic_tx_bytes - before->nic_tx_bytes, static_cast<uint64_t>(kPings) * (1000 + 8 + 20));
}

TEST_F(IfdTest, PingBothWays) {
  StartBoth();
  Result r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 2 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ifd_a_->log() << ifd_b_->log();
  r = b_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 2 ", kA));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ifd_a_->log() << ifd_b_->log();
}

TEST_F(IfdTest, PingWithWaitBlock) {
  StartBoth({"--wait", "block"});
  const Result r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 2 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ifd_a_->log() << ifd_b_->log();
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "wait block")) << ifd_a_->log();
}

TEST_F(IfdTest, BroadcastReachesThePeer) {
  StartBoth();
  ASSERT_TRUE(b_->Exec("sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0").ok());
  // To the subnet's broadcast address: ff:ff:ff:ff:ff:ff on the device, the
  // CHPID's broadcast on the ring; B answers by unicast.
  const Result r = a_->Exec("ping -b -c 2 -i 0.2 -W 2 10.240.0.255");
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "from 10.240.0.2")) << r.out << ifd_a_->log() << ifd_b_->log();
  EXPECT_EQ(ifd_a_->Stop(SIGTERM), 0);
  EXPECT_FALSE(absl::StrContains(ifd_a_->log(), "(0 broadcast)")) << ifd_a_->log();
}

TEST_F(IfdTest, Ipv6NeighbourDiscoveryAndPing) {
  StartBoth();
  // The kernel's link-local address from MAC 02:00:0a:f0:00:02 (EUI-64);
  // neighbour discovery crosses the CHPID as IPv6 multicast.
  for (const Netns* ns : {a_.get(), b_.get()}) {
    ASSERT_TRUE(Eventually([&] {
      const Result r = Shell("ip -n " + ns->name() + " -6 addr show dev hsi0");
      return r.ok() && absl::StrContains(r.out, "fe80::") && !absl::StrContains(r.out, "tentative");
    })) << "link-local address of hsi0 in " << ns->name() << " stayed tentative";
  }
  const Result r = a_->Exec("ping -6 -c 3 -i 0.2 -W 2 fe80::aff:fef0:2%hsi0");
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ifd_a_->log() << ifd_b_->log();
}

TEST_F(IfdTest, LargePacketsUpToTheMtuWithoutFragmentation) {
  StartBoth();
  // 6000 + 8 (ICMP) + 20 (IP) fits the 8K MTU: one frame each way.
  Result r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 2 -s 6000 -M do ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out;
  // 8164 + 28 = 8192 exactly fits; one byte more does not (the MTU is real).
  r = a_->Exec(absl::StrCat("ping -c 1 -W 2 -s 8164 -M do ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "1 received")) << r.out;
  r = a_->Exec(absl::StrCat("ping -c 1 -W 2 -s 8165 -M do ", kB));
  EXPECT_FALSE(r.ok()) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "mtu=8192") || absl::StrContains(r.out, "Message too long")) << r.out;
}

TEST_F(IfdTest, TcpTransferWithIperf3BytesChecked) {
  if (!Have("iperf3")) GTEST_SKIP() << "iperf3 is not installed (packaging/setup.sh installs it)";
  StartBoth();
  for (const bool reverse : {false, true}) {
    SCOPED_TRACE(reverse ? "B -> A (-R)" : "A -> B");
    Process server({"ip", "netns", "exec", b_->name(), "iperf3", "-s", "-1", "-B", kB, "-p", "5201"},
                   hsid_.dir() + "/iperf3-server.log");
    ASSERT_TRUE(Eventually([&] { return b_->Exec("ss -ltnH 'sport = :5201'").out.find("5201") != std::string::npos; }))
        << server.log();
    const Result c = a_->Exec(absl::StrCat("timeout 60 iperf3 -J -c ", kB, " -p 5201 -t 2", reverse ? " -R" : ""),
                              /*with_stderr=*/false);
    ASSERT_TRUE(c.ok()) << c.out << ifd_a_->log() << ifd_b_->log();
    const auto j = nlohmann::json::parse(c.out, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << c.out;
    ASSERT_TRUE(j.contains("end") && j["end"].contains("sum_sent") && j["end"].contains("sum_received")) << c.out;
    const uint64_t sent = j["end"]["sum_sent"]["bytes"].get<uint64_t>();
    const uint64_t received = j["end"]["sum_received"]["bytes"].get<uint64_t>();
    const double gbps = j["end"]["sum_received"]["bits_per_second"].get<double>() / 1e9;
    std::printf("iperf3 %s over hsi0 (MTU 8192): sent %llu bytes, received %llu bytes, %.2f Gbit/s\n",
                reverse ? "B->A" : "A->B", static_cast<unsigned long long>(sent),
                static_cast<unsigned long long>(received), gbps);
    // iperf3 stops counting at the end of the interval on both sides, so
    // what was still in the socket buffers (a few MB) is in `sent` only;
    // the exact byte-for-byte check is ExactTcpTransfer below.
    EXPECT_GT(sent, uint64_t{10} << 20);  // more than 10 MiB in 2 s
    EXPECT_LE(received, sent);
    EXPECT_GE(received + 1 * IperfInFlightBound(), sent) << "more went missing than the socket buffers hold";
    EXPECT_EQ(server.WaitExit(absl::Seconds(10)), 0) << server.log();
  }
}

TEST_F(IfdTest, ExactTcpTransfer) {
  StartBoth();
  constexpr uint64_t kBytes = uint64_t{64} << 20;
  hsi::testing::LinePipe report;
  // B: accept one connection, read to EOF, report "count hash".
  const pid_t server = ForkInNetns(b_->name(), [&] {
    const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(5202);
    ::inet_pton(AF_INET, kB, &a.sin_addr);
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(l, 1) != 0) return 1;
    report.Write("listening");
    const int c = ::accept(l, nullptr, nullptr);
    if (c < 0) return 2;
    uint64_t count = 0, hash = kFnvBasis;
    uint8_t buf[65536];
    for (;;) {
      const ssize_t n = ::read(c, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      hash = Fnv(hash, buf, static_cast<size_t>(n));
      count += static_cast<uint64_t>(n);
    }
    report.Write(absl::StrCat(count, " ", hash));
    return 0;
  });
  ASSERT_EQ(report.Read(absl::Seconds(10)), "listening");
  // A: connect through hsi0 and send the pattern.
  const absl::Time start = absl::Now();
  const pid_t client = ForkInNetns(a_->name(), [&] {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(5202);
    ::inet_pton(AF_INET, kB, &a.sin_addr);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return 3;
    std::vector<uint8_t> buf(65536);
    for (uint64_t off = 0; off < kBytes;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), kBytes - off));
      for (size_t i = 0; i < n; ++i) buf[i] = PatternByte(off + i);
      size_t done = 0;
      while (done < n) {
        const ssize_t w = ::write(s, buf.data() + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 4;
        done += static_cast<size_t>(w);
      }
      off += n;
    }
    ::close(s);
    return 0;
  });
  EXPECT_EQ(Reap(client, absl::Seconds(60)), 0) << ifd_a_->log() << ifd_b_->log();
  const std::string got = report.Read(absl::Seconds(60));
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  EXPECT_EQ(Reap(server, absl::Seconds(10)), 0);
  std::vector<uint8_t> all(4096);
  uint64_t hash = kFnvBasis;
  for (uint64_t off = 0; off < kBytes; off += all.size()) {
    for (size_t i = 0; i < all.size(); ++i) all[i] = PatternByte(off + i);
    hash = Fnv(hash, all.data(), all.size());
  }
  EXPECT_EQ(got, absl::StrCat(kBytes, " ", hash)) << "server saw count and hash: " << got;
  std::printf("exact TCP transfer A->B over hsi0: %llu bytes, hash equal, %.2f Gbit/s\n",
              static_cast<unsigned long long>(kBytes), static_cast<double>(kBytes) * 8 / secs / 1e9);
}

TEST_F(IfdTest, RoutedViaPeerDeliversByNextHop) {
  StartBoth();
  // 10.20.7.101 lives on B's loopback; A routes it via B's hsi address, so
  // the packet's destination is not the address of the NIC it must reach.
  ASSERT_TRUE(b_->Exec("ip addr add 10.20.7.101/32 dev lo").ok());
  ASSERT_TRUE(a_->Exec(absl::StrCat("ip route add 10.20.7.101/32 via ", kB, " dev hsi0")).ok());
  Result r = a_->Exec("ping -c 3 -i 0.2 -W 2 10.20.7.101");
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ifd_a_->log() << ifd_b_->log();
  // A next hop no NIC has: nothing arrives, and hsi-ifd counts it.
  ASSERT_TRUE(a_->Exec("ip route add 10.20.7.102/32 via 10.240.0.77 dev hsi0").ok());
  r = a_->Exec("ping -c 1 -W 1 10.20.7.102");
  EXPECT_FALSE(r.ok()) << r.out;
  EXPECT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "no NIC has next hop 10.240.0.77")) << ifd_a_->log();
  EXPECT_FALSE(absl::StrContains(ifd_a_->log(), "tx_no_peer 0 ")) << ifd_a_->log();
}

TEST_F(IfdTest, SigtermRemovesTheDevice) {
  StartBoth();
  EXPECT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  EXPECT_FALSE(Exists(*a_));
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "stopping: removing hsi0")) << ifd_a_->log();
}

TEST_F(IfdTest, Kill9RemovesTheDeviceAndARestartServesAgain) {
  StartBoth();
  ASSERT_TRUE(a_->Exec(absl::StrCat("ping -c 1 -W 2 ", kB)).ok());
  const int status = ifd_a_->Stop(SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  // The device is not persistent: it goes with the process's last fd.
  EXPECT_TRUE(Eventually([&] { return !Exists(*a_); })) << "hsi0 outlived hsi-ifd in " << a_->name();
  // hsid may hold the LPAR's address for a grace period: let it assign one.
  ifd_a_ = std::make_unique<Process>(
      std::vector<std::string>{HSI_IFD_PATH, "--lpar", "A2", "--chpid", "F0", "--netns", a_->name(), "--socket",
                               hsid_.socket()},
      hsid_.dir() + "/ifd-A2.log");
  ASSERT_TRUE(Eventually([&] { return Shell("ip -n " + a_->name() + " -4 addr show dev hsi0 | grep -q 'inet '").ok(); }))
      << ifd_a_->log();
  const Result r = a_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 2 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out << ifd_a_->log() << ifd_b_->log();
}

TEST_F(IfdTest, NonIpFramesFromANativePeerAreDroppedAndCounted) {
  StartBoth();
  absl::StatusOr<NativePeer> peer = AttachNativePeer(hsid_.socket(), "native");
  ASSERT_TRUE(peer.ok()) << peer.status();
  hsi::Nic* nic = &peer->nic;
  const uint8_t garbage[] = {'n', 'o', 't', ' ', 'I', 'P', 0x45, 0};
  const uint8_t short_v4[] = {0x45, 0, 0, 99, 0, 0, 0, 0, 64, 1, 0, 0, 10, 240, 0, 9, 10, 240, 0, 1};  // length 99 != 20
  ASSERT_TRUE(nic->SendTo(*hsi::Address::Parse(kA), garbage, hsi::Wait::Adaptive(absl::Now() + absl::Seconds(5))).ok());
  ASSERT_TRUE(nic->SendTo(*hsi::Address::Parse(kA), short_v4, hsi::Wait::Adaptive(absl::Now() + absl::Seconds(5))).ok());
  // hsi-ifd logs each of the first drops; then the counters at exit.
  EXPECT_TRUE(Eventually([&] {
    const std::string log = ifd_a_->log();
    return absl::StrContains(log, "dropped a 8-byte frame") && absl::StrContains(log, "dropped a 20-byte frame");
  })) << ifd_a_->log();
  // The interface still works.
  const Result r = a_->Exec(absl::StrCat("ping -c 1 -W 2 ", kB));
  EXPECT_TRUE(r.ok()) << r.out;
  EXPECT_EQ(ifd_a_->Stop(SIGTERM), 0);
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "rx_not_ip 2 ")) << ifd_a_->log();
}

// hsi-dump of the CHPID an interface uses: a pcap that tshark decodes down
// to TCP (layer 3: the frames are bare IP packets, written as they are).
TEST_F(IfdTest, DumpOfTheChpidDecodesToTcpInTshark) {
  if (!Have("tshark")) GTEST_SKIP() << "tshark is not installed (packaging/setup.sh installs it)";
  if (!Have("iperf3")) GTEST_SKIP() << "iperf3 is not installed (packaging/setup.sh installs it)";
  StartBoth();
  const std::string pcap = hsid_.dir() + "/ip.pcap";
  Process dump({HSI_DUMP_PATH, "--chpid", "F0", "--socket", hsid_.socket(), "-w", pcap}, hsid_.dir() + "/dump.log");
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(dump.log(), "tapping CHPID F0") || !dump.running(); }))
      << dump.log();
  ASSERT_TRUE(dump.running()) << dump.log();
  Process server({"ip", "netns", "exec", b_->name(), "iperf3", "-s", "-1", "-B", kB, "-p", "5201"},
                 hsid_.dir() + "/iperf3-server.log");
  ASSERT_TRUE(Eventually([&] { return b_->Exec("ss -ltnH 'sport = :5201'").out.find("5201") != std::string::npos; }))
      << server.log();
  const Result c = a_->Exec(absl::StrCat("timeout 60 iperf3 -c ", kB, " -p 5201 -n 1M"));
  ASSERT_TRUE(c.ok()) << c.out;
  EXPECT_EQ(server.WaitExit(absl::Seconds(10)), 0) << server.log();
  const int status = dump.Stop(SIGINT);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << dump.log();
  // tshark finds TCP in it, both ways, with the hsi addresses and port.
  const Result t = Shell("tshark -r " + pcap + " -Y 'tcp.port == 5201' -T fields -e ip.src -e ip.dst -e tcp.flags.syn",
                         /*with_stderr=*/false);
  ASSERT_TRUE(t.ok()) << t.out;
  int a_to_b = 0, b_to_a = 0, syns = 0;
  for (absl::string_view line : absl::StrSplit(t.out, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    ASSERT_EQ(f.size(), 3u) << line;
    a_to_b += f[0] == kA && f[1] == kB;
    b_to_a += f[0] == kB && f[1] == kA;
    syns += f[2] == "1" || f[2] == "True";
  }
  // (The tap may miss frames when a producer laps it; it counts them.)
  EXPECT_GT(a_to_b, 0) << t.out.substr(0, 2000);
  EXPECT_GT(b_to_a, 0) << t.out.substr(0, 2000);
  EXPECT_GE(syns, 1) << "no SYN in the capture";
  // Every frame hsi-dump wrote decodes as IP (none is the UDP wrapping of
  // a non-IP frame).
  const std::string log = dump.log();
  const size_t at = log.find(" frames written to ");
  ASSERT_NE(at, std::string::npos) << log;
  const size_t start = log.rfind("hsi-dump: ", at) + 10;
  const std::string written = log.substr(start, at - start);
  const Result ip = Shell("tshark -r " + pcap + " -Y 'ip or ipv6' -T fields -e frame.number | wc -l", false);
  const Result udp = Shell("tshark -r " + pcap + " -Y 'udp.port == 8192' -T fields -e frame.number | wc -l", false);
  EXPECT_EQ(std::string(absl::StripAsciiWhitespace(ip.out)), written) << log;
  EXPECT_EQ(std::string(absl::StripAsciiWhitespace(udp.out)), "0");
}

// --layer2: Ethernet frames on the ring and the kernel's own ARP over the
// CHPID's broadcast (HiperSockets layer-2 mode); ping, iperf3 and a TCP
// transfer whose every byte is checked; hsi-dump --ethernet decodes it.
TEST_F(IfdTest, Layer2PingArpAndTcp) {
  StartBoth({"--layer2"});
  const Result link = a_->Exec("ip link show dev hsi0");
  EXPECT_TRUE(absl::StrContains(link.out, "mtu 8178")) << link.out;  // 8192 - the Ethernet header
  EXPECT_FALSE(absl::StrContains(link.out, "NOARP")) << link.out;
  std::unique_ptr<Process> dump;
  const std::string pcap = hsid_.dir() + "/l2.pcap";
  if (Have("tshark")) {
    dump = std::make_unique<Process>(
        std::vector<std::string>{HSI_DUMP_PATH, "--chpid", "F0", "--socket", hsid_.socket(), "-w", pcap, "--ethernet"},
        hsid_.dir() + "/dump.log");
    ASSERT_TRUE(Eventually([&] { return absl::StrContains(dump->log(), "tapping CHPID F0") || !dump->running(); }))
        << dump->log();
  }
  Result r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 2 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ifd_a_->log() << ifd_b_->log();
  // B's kernel learned A's MAC from A's ARP request (it crossed the
  // CHPID), and A's from B's reply: real ARP, not hsi-ifd's.
  r = b_->Exec(absl::StrCat("ip neigh show ", kA, " dev hsi0"));
  EXPECT_TRUE(absl::StrContains(r.out, "lladdr 02:00:0a:f0:00:01")) << r.out;
  r = a_->Exec(absl::StrCat("ip neigh show ", kB, " dev hsi0"));
  EXPECT_TRUE(absl::StrContains(r.out, "lladdr 02:00:0a:f0:00:02")) << r.out;
  if (Have("iperf3")) {
    Process server({"ip", "netns", "exec", b_->name(), "iperf3", "-s", "-1", "-B", kB, "-p", "5201"},
                   hsid_.dir() + "/iperf3-server.log");
    ASSERT_TRUE(Eventually([&] { return b_->Exec("ss -ltnH 'sport = :5201'").out.find("5201") != std::string::npos; }))
        << server.log();
    constexpr uint64_t kBytes = uint64_t{64} << 20;
    const Result c = a_->Exec(absl::StrCat("timeout 60 iperf3 -J -c ", kB, " -p 5201 -n ", kBytes), false);
    ASSERT_TRUE(c.ok()) << c.out << ifd_a_->log() << ifd_b_->log();
    const auto j = nlohmann::json::parse(c.out, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << c.out;
    ASSERT_TRUE(j.contains("end") && j["end"].contains("streams") && j["end"]["streams"].size() == 1) << c.out;
    const uint64_t sent = j["end"]["streams"][0]["sender"]["bytes"].get<uint64_t>();
    const uint64_t received = j["end"]["streams"][0]["receiver"]["bytes"].get<uint64_t>();
    // iperf3's receiver may stop counting before the last bytes in flight
    // (see ifd_apps_test); the exact check is the transfer below.
    EXPECT_GE(sent, kBytes);
    EXPECT_LE(received, sent);
    EXPECT_GE(received + 1 * IperfInFlightBound(), sent) << "more went missing than the socket buffers hold";
    std::printf("iperf3 over hsi0 --layer2 (MTU 8178): %llu bytes sent, %llu counted by the receiver, %.2f Gbit/s\n",
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(received),
                j["end"]["sum_received"]["bits_per_second"].get<double>() / 1e9);
    EXPECT_EQ(server.WaitExit(absl::Seconds(10)), 0) << server.log();
  }
  // A TCP transfer with every byte checked, A -> B.
  const TransferResult t = CheckedTcpTransfer(b_->name(), a_->name(), kB, 5202, uint64_t{32} << 20);
  EXPECT_EQ(t.error, "") << ifd_a_->log() << ifd_b_->log();
  EXPECT_EQ(t.peer, kA);
  EXPECT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), " 0 ARP replies")) << ifd_a_->log();
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "rx_not_ours 0 ")) << ifd_a_->log();
  if (dump) {
    ASSERT_EQ(dump->Stop(SIGINT), 0) << dump->log();
    const Result arp = Shell("tshark -r " + pcap + " -Y arp -T fields -e arp.opcode | sort -u", false);
    EXPECT_EQ(arp.out, "1\n2\n") << "ARP requests and replies on the CHPID";
    const Result tcp = Shell("tshark -r " + pcap + " -Y 'eth.src == 02:00:0a:f0:00:01 && tcp' -T fields -e frame.number | wc -l", false);
    EXPECT_NE(std::string(absl::StripAsciiWhitespace(tcp.out)), "0");
  }
}

// In layer 2, a native-API peer's frames that are not Ethernet frames from
// its own MAC to ours are dropped and counted, never written to the device.
TEST_F(IfdTest, Layer2DropsFramesNotFromThePeersOwnMac) {
  StartBoth({"--layer2"});
  absl::StatusOr<NativePeer> peer = AttachNativePeer(hsid_.socket(), "native");
  ASSERT_TRUE(peer.ok()) << peer.status();
  hsi::Nic* nic = &peer->nic;
  std::vector<uint8_t> spoofed(60, 0);
  const uint8_t to_a[6] = {0x02, 0, 10, 240, 0, 1}, from_b[6] = {0x02, 0, 10, 240, 0, 2};
  std::memcpy(spoofed.data(), to_a, 6);
  std::memcpy(spoofed.data() + 6, from_b, 6);  // claims to be B
  spoofed[12] = 0x08;
  const uint8_t tiny[5] = {1, 2, 3, 4, 5};
  const hsi::Wait wait = hsi::Wait::Adaptive(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(nic->SendTo(*hsi::Address::Parse(kA), spoofed, wait).ok());
  ASSERT_TRUE(nic->SendTo(*hsi::Address::Parse(kA), tiny, wait).ok());
  EXPECT_TRUE(Eventually([&] {
    const std::string log = ifd_a_->log();
    return absl::StrContains(log, "source MAC is not the sender's") && absl::StrContains(log, "shorter than an Ethernet");
  })) << ifd_a_->log();
  const Result r = a_->Exec(absl::StrCat("ping -c 1 -W 2 ", kB));
  EXPECT_TRUE(r.ok()) << r.out;
  EXPECT_EQ(ifd_a_->Stop(SIGTERM), 0);
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "rx_not_ours 2 ")) << ifd_a_->log();
}

// --config: the form hsi-ifd@.service runs. The file gives every option;
// one given on the command line as well wins.
TEST_F(IfdTest, ConfigFileGivesTheOptionsAndTheCommandLineWins) {
  StartIfd(*b_, "B", kB).swap(ifd_b_);
  const std::string path = hsid_.dir() + "/a.conf";
  {
    std::ofstream f(path);
    f << "# hsi-ifd@a.service\n"
      << "lpar = \"A\"\nchpid = F0\nnetns = \"" << a_->name() << "\"\nifname = hsi0\n"
      << "address = \"10.240.0.9/24\"   # the command line says otherwise\n"
      << "socket = \"" << hsid_.socket() << "\"\nwait = block\npersist = false\noffload = off\n";
  }
  ifd_a_ = std::make_unique<Process>(std::vector<std::string>{HSI_IFD_PATH, "--config", path, "--address", kA},
                                     hsid_.dir() + "/ifd-A.log");
  ASSERT_TRUE(Eventually([&] { return Up(*a_, kA) || !ifd_a_->running(); }) && Up(*a_, kA)) << ifd_a_->log();
  ASSERT_TRUE(Eventually([&] { return Up(*b_, kB) || !ifd_b_->running(); }) && Up(*b_, kB)) << ifd_b_->log();
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "offload off, wait block (LPAR A,")) << ifd_a_->log();
  const Result r = a_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 2 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out << ifd_a_->log();
  // persist = false: SIGTERM removes the device.
  EXPECT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  EXPECT_FALSE(Exists(*a_));
}

// --- errors: a clear message, non-zero exit, nothing left behind ---------

class IfdErrorTest : public IfdTest {
 protected:
  // Runs hsi-ifd to its exit; returns {exit code, stderr}.
  std::pair<int, std::string> RunIfd(std::vector<std::string> args) {
    std::vector<std::string> argv = {HSI_IFD_PATH, "--socket", hsid_.socket()};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, hsid_.dir() + "/ifd-error.log");
    const int status = p.WaitExit(absl::Seconds(20));
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, p.log()};
  }
  // No NIC is attached (the failed run left nothing in hsid).
  void ExpectNoNics() {
    auto admin = hsi::AdminClient::Connect(hsid_.socket());
    ASSERT_TRUE(admin.ok()) << admin.status();
    auto nics = admin->ListNics();
    ASSERT_TRUE(nics.ok()) << nics.status();
    EXPECT_TRUE(nics->empty()) << nics->size() << " NIC(s) left attached";
  }
};

TEST_F(IfdErrorTest, UsageErrorsExitTwo) {
  auto [code, out] = RunIfd({"--lpar", "A", "--chpid", "F0", "--bogus"});
  EXPECT_EQ(code, 2);
  EXPECT_TRUE(absl::StrContains(out, "--bogus")) << out;
  std::tie(code, out) = RunIfd({"--chpid", "F0"});
  EXPECT_EQ(code, 2);
  EXPECT_TRUE(absl::StrContains(out, "--lpar NAME is required")) << out;
  std::tie(code, out) = RunIfd({"--lpar", "A", "--chpid", "F0", "--wait", "sometimes"});
  EXPECT_EQ(code, 2);
  EXPECT_TRUE(absl::StrContains(out, "--wait")) << out;
  std::tie(code, out) = RunIfd({"--lpar", "A", "--chpid", "F0", "--offload", "maybe"});
  EXPECT_EQ(code, 2);
  EXPECT_TRUE(absl::StrContains(out, "--offload: 'maybe' is not true or false (on or off)")) << out;
  ExpectNoNics();
}

TEST_F(IfdErrorTest, BadConfigFileNamesFileAndLine) {
  const std::string path = hsid_.dir() + "/bad.conf";
  struct Case {
    std::string text, message;
  };
  const std::vector<Case> cases = {
      {"lpar = A\nchpid = F0\nnetns = " + a_->name() + "\nwait = sometimes\n",
       path + ":4: wait: 'sometimes' is not one of spin, block, adaptive"},
      {"lpar = A\nchpid = F0\nchipd = F1\n", path + ":3: unknown key 'chipd'"},
      {"lpar = A\nchpid = XY\n", path + ":2: chpid: 'XY' is not a hex CHPID"},
      {"lpar = A\n", "--chpid ID is required (on the command line or in the config file)"},
      {"lpar = A\nchpid = F0\naddress = 10.240.0.1/40\n", path + ":3: address '10.240.0.1/40': the prefix"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    {
      std::ofstream f(path);
      f << c.text;
    }
    auto [code, out] = RunIfd({"--config", path});
    EXPECT_EQ(code, 2) << out;
    EXPECT_TRUE(absl::StrContains(out, c.message)) << out;
  }
  auto [code, out] = RunIfd({"--config", hsid_.dir() + "/missing.conf"});
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(absl::StrContains(out, "config file " + hsid_.dir() + "/missing.conf: No such file")) << out;
  EXPECT_FALSE(Exists(*a_));
  ExpectNoNics();
}

TEST_F(IfdErrorTest, NamespaceThatDoesNotExist) {
  const std::string ns = absl::StrCat("hsiifd-", ::getpid(), "-nonexistent");
  auto [code, out] = RunIfd({"--lpar", "A", "--chpid", "F0", "--netns", ns});
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(absl::StrContains(out, "network namespace '" + ns + "' does not exist")) << out;
  EXPECT_FALSE(Shell("ip netns list | grep -q " + ns).ok());
  ExpectNoNics();
}

TEST_F(IfdErrorTest, ChpidThatDoesNotExist) {
  auto [code, out] = RunIfd({"--lpar", "A", "--chpid", "F1", "--netns", a_->name()});
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(absl::StrContains(out, "F1")) << out;
  EXPECT_FALSE(Exists(*a_));
  ExpectNoNics();
}

TEST_F(IfdErrorTest, NoHsidAtTheSocket) {
  const std::string socket = hsid_.dir() + "/nobody.sock";
  Process p({HSI_IFD_PATH, "--lpar", "A", "--chpid", "F0", "--netns", a_->name(), "--socket", socket},
            hsid_.dir() + "/ifd-nohsid.log");
  const int status = p.WaitExit(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  EXPECT_TRUE(absl::StrContains(p.log(), socket)) << p.log();
  EXPECT_FALSE(Exists(*a_));
}

TEST_F(IfdErrorTest, AddressOutsideTheSubnet) {
  auto [code, out] = RunIfd({"--lpar", "A", "--chpid", "F0", "--netns", a_->name(), "--address", "192.168.9.9"});
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(absl::StrContains(out, "192.168.9.9")) << out;
  EXPECT_FALSE(Exists(*a_));
  ExpectNoNics();
}

TEST_F(IfdErrorTest, ExistingDeviceIsNotTakenOver) {
  ASSERT_TRUE(Shell("ip -n " + a_->name() + " link add hsi0 type dummy").ok() ||
              Shell("ip -n " + a_->name() + " tuntap add dev hsi0 mode tap").ok());
  auto [code, out] = RunIfd({"--lpar", "A", "--chpid", "F0", "--netns", a_->name()});
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(absl::StrContains(out, "device hsi0 already exists")) << out;
  EXPECT_TRUE(Exists(*a_)) << "hsi-ifd removed a device it did not make";
  ExpectNoNics();
}

}  // namespace
