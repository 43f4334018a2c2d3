// hsi-ctcm, IP over CTC (issue 19, item 4), end to end: two network
// namespaces with ctc0 on the two ends of a CTC device of the test's hsid;
// ping both ways (also a 60000-byte ping in one packet), byte-checked TCP
// both ways, packets queued behind a write batched into one block, a raw
// CtcHost peer's garbled blocks dropped and counted while the interface
// goes on answering, and clear errors that leave nothing behind. Real
// programs, namespaces made and always deleted, everything started killed
// and reaped even when an assertion fails. Skips with the reason without
// root or /dev/net/tun.
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "block.h"
#include "gtest/gtest.h"
#include "hsi/ctc_host.h"
#include "hsi/testing/ctc_hosts.h"
#include "hsi/testing/service_manager.h"
#include "ifd_util.h"

namespace {

using namespace hsi::ifd_testing;  // NOLINT: the helpers of this test family

constexpr char kA[] = "10.241.0.1";  // LPAR1's ctc0, on D000
constexpr char kB[] = "10.241.0.2";  // LPAR2's ctc0, on D100

// The value after "KEY " in hsi-ctcm's exit summary (its drop counters),
// or -1.
long Counter(const std::string& log, const std::string& key) {
  const size_t at = log.rfind(key + " ");
  if (at == std::string::npos) return -1;
  const std::string rest = log.substr(at + key.size() + 1);
  long v = -1;
  return absl::SimpleAtoi(rest.substr(0, rest.find_first_of(" ;\n")), &v) ? v : -1;
}

// The traffic counters of hsi-ctcm's exit summary; `ok` false if it has none.
struct Traffic {
  bool ok = false;
  unsigned long tx_packets = 0, tx_bytes = 0, tx_blocks = 0, max_batch = 0;
  unsigned long rx_packets = 0, rx_bytes = 0, rx_blocks = 0, collisions = 0;
};
Traffic TrafficOf(const std::string& log) {
  Traffic t;
  const size_t at = log.rfind("hsi-ctcm: tx ");
  if (at == std::string::npos) return t;
  t.ok = std::sscanf(log.c_str() + at,
                     "hsi-ctcm: tx %lu packets %lu bytes in %lu blocks (at most %lu packets a block), "
                     "rx %lu packets %lu bytes in %lu blocks, %lu collisions",
                     &t.tx_packets, &t.tx_bytes, &t.tx_blocks, &t.max_batch, &t.rx_packets, &t.rx_bytes,
                     &t.rx_blocks, &t.collisions) == 8;
  return t;
}

class CtcmTest : public ::testing::Test {
 protected:
  // LPAR1's D000-D001 to LPAR2's D100-D101, hsid's default block (64 KiB),
  // and the TOML lines `extra` for them.
  explicit CtcmTest(const std::string& extra = "")
      : hsid_(hsi::testing::CtcConfig("devices = \"D000-D001\"\npeer_devices = \"D100-D101\"\n" + extra)) {}

  void SetUp() override {
    const std::string missing = MissingPrerequisite();
    if (!missing.empty()) GTEST_SKIP() << missing;
    ASSERT_TRUE(hsid_.Start()) << hsid_.log();
    a_ = std::make_unique<Netns>();
    b_ = std::make_unique<Netns>();
    ASSERT_TRUE(a_->made() && b_->made()) << "ip netns add failed";
  }

  std::vector<std::string> Argv(const Netns& ns, const std::string& lpar, const std::string& device,
                                const std::string& address, const std::string& peer,
                                std::vector<std::string> extra = {}) const {
    std::vector<std::string> argv = {HSI_CTCM_PATH, "--lpar",  lpar,      "--ctc",          device,
                                     "--netns",     ns.name(), "--socket", hsid_.socket(), "--address",
                                     address,       "--peer-address", peer};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  std::unique_ptr<Process> Start(const Netns& ns, const std::string& lpar, const std::string& device,
                                 const std::string& address, const std::string& peer,
                                 std::vector<std::string> extra = {}) {
    return std::make_unique<Process>(Argv(ns, lpar, device, address, peer, std::move(extra)),
                                     absl::StrCat(hsid_.dir(), "/ctcm-", lpar, ".log"));
  }

  // Whether ctc0 in `ns` is up, point-to-point, with `address` peer `peer`.
  static bool Up(const Netns& ns, const std::string& address, const std::string& peer) {
    const Result r = Shell("ip -n " + ns.name() + " -4 addr show dev ctc0");
    return r.ok() && absl::StrContains(r.out, "inet " + address + " peer " + peer + "/32") &&
           absl::StrContains(r.out, "POINTOPOINT") && absl::StrContains(r.out, ",UP");
  }
  static bool Exists(const Netns& ns) { return Shell("ip -n " + ns.name() + " link show dev ctc0").ok(); }
  // ctc0's carrier in `ns` as `ip -o link` shows it: 1 with carrier, 0
  // with NO-CARRIER and operstate DOWN (the device itself up), -1 for
  // anything else (no device, or the two signs disagree).
  static int Carrier(const Netns& ns) {
    const Result r = Shell("ip -n " + ns.name() + " -o link show dev ctc0");
    if (!r.ok() || !absl::StrContains(r.out, ",UP")) return -1;
    const bool no_carrier = absl::StrContains(r.out, "NO-CARRIER");
    const bool down = absl::StrContains(r.out, "state DOWN");
    if (no_carrier && down) return 0;
    if (!no_carrier && !down) return 1;
    return -1;
  }
  // Whether the kernel of `ns` has a usable route to `to` (`ip route get`).
  static bool Routes(const Netns& ns, const std::string& to) {
    return Shell("ip -n " + ns.name() + " route get " + to).ok();
  }

  void StartBoth(std::vector<std::string> extra = {}) {
    ctcm_a_ = Start(*a_, "LPAR1", "D000", kA, kB, extra);
    ctcm_b_ = Start(*b_, "LPAR2", "D100", kB, kA, extra);
    ASSERT_TRUE(Eventually([&] { return Up(*a_, kA, kB) || !ctcm_a_->running(); }) && Up(*a_, kA, kB))
        << ctcm_a_->log();
    ASSERT_TRUE(Eventually([&] { return Up(*b_, kB, kA) || !ctcm_b_->running(); }) && Up(*b_, kB, kA))
        << ctcm_b_->log();
  }

  // SIGTERM: exit status 0, the device gone; the log with the summary.
  std::string StopCleanly(std::unique_ptr<Process>& p, const Netns& ns) {
    const int status = p->Stop(SIGTERM);
    const std::string log = p->log();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << log;
    EXPECT_TRUE(absl::StrContains(log, "stopping: removing ctc0")) << log;
    EXPECT_FALSE(Exists(ns)) << "ctc0 left behind in " << ns.name();
    return log;
  }

  // Byte-checked TCP both ways at once (A -> B on `port`, B -> A on
  // port + 1, `bytes` each), both transfers asserted whole; then both
  // hsi-ctcm stopped cleanly. Their logs, with the traffic each counted.
  struct BothWays {
    std::string la, lb;
    Traffic ta, tb;
  };
  BothWays BothWaysAtOnceThenStop(int port, uint64_t bytes) {
    TransferResult ab, ba;
    std::thread t([&] { ba = CheckedTcpTransfer(a_->name(), b_->name(), kA, port, bytes); });
    ab = CheckedTcpTransfer(b_->name(), a_->name(), kB, port + 1, bytes);
    t.join();
    EXPECT_EQ(ab.error, "") << ctcm_a_->log() << ctcm_b_->log();
    EXPECT_EQ(ba.error, "") << ctcm_a_->log() << ctcm_b_->log();
    BothWays w;
    w.la = StopCleanly(ctcm_a_, *a_);
    w.lb = StopCleanly(ctcm_b_, *b_);
    w.ta = TrafficOf(w.la);
    w.tb = TrafficOf(w.lb);
    return w;
  }

  // Declaration order = reverse destruction order: the programs die
  // first, then the namespaces go, then hsid.
  Hsid hsid_;
  std::unique_ptr<Netns> a_, b_;
  std::unique_ptr<Process> ctcm_a_, ctcm_b_;
};

TEST_F(CtcmTest, PingAndByteCheckedTcpBothWays) {
  StartBoth();
  // The MTU is the 64 KiB block less the block's and the packet's headers.
  const Result link = a_->Exec("ip link show dev ctc0");
  EXPECT_TRUE(absl::StrContains(link.out, "mtu 65520")) << link.out;
  EXPECT_TRUE(absl::StrContains(link.out, "POINTOPOINT")) << link.out;

  Result r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 5 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ctcm_a_->log() << ctcm_b_->log();
  r = b_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 5 ", kA));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out;
  // 60000 + 28 bytes in one IP packet (DF set, no fragmentation): one block.
  r = a_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 5 -s 60000 -M do ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "60008 bytes from " + std::string(kB))) << r.out;

  TransferResult t = CheckedTcpTransfer(b_->name(), a_->name(), kB, 5201, 32ull << 20);
  EXPECT_EQ(t.error, "") << ctcm_a_->log() << ctcm_b_->log();
  EXPECT_EQ(t.peer, kA);
  t = CheckedTcpTransfer(a_->name(), b_->name(), kA, 5202, 32ull << 20);
  EXPECT_EQ(t.error, "") << ctcm_a_->log() << ctcm_b_->log();
  EXPECT_EQ(t.peer, kB);

  const std::string la = StopCleanly(ctcm_a_, *a_);
  const std::string lb = StopCleanly(ctcm_b_, *b_);
  const Traffic ta = TrafficOf(la), tb = TrafficOf(lb);
  ASSERT_TRUE(ta.ok && tb.ok) << la << lb;
  // Each end sent at least its 32 MiB of TCP payload, and what one sent
  // the other received: nothing lost on the CTC, nothing made up.
  EXPECT_GT(ta.tx_bytes, 32ul << 20) << la;
  EXPECT_GT(tb.tx_bytes, 32ul << 20) << lb;
  EXPECT_EQ(ta.tx_packets, tb.rx_packets) << la << lb;
  EXPECT_EQ(ta.tx_bytes, tb.rx_bytes) << la << lb;
  EXPECT_EQ(tb.tx_packets, ta.rx_packets) << la << lb;
  EXPECT_EQ(ta.tx_blocks, tb.rx_blocks) << la << lb;
  for (const std::string* log : {&la, &lb}) {
    EXPECT_EQ(Counter(*log, "rx_bad_block"), 0) << *log;
    EXPECT_EQ(Counter(*log, "tx_not_ip"), 0) << *log;
    EXPECT_EQ(Counter(*log, "tx_timeout"), 0) << *log;
    EXPECT_EQ(Counter(*log, "rx_device_error"), 0) << *log;
  }
}

TEST_F(CtcmTest, StreamsBothWaysAtOnceLoseNothing) {
  // Data both ways at once: both ends write all the time on the one
  // device. Each takes the other's pending write before it starts its own,
  // so collisions are rare (0 in most runs); one that happens fails both
  // writes, each end counts it, and both are redriven. Every byte arrives
  // in order.
  StartBoth({"--mtu", "9000"});
  const auto [la, lb, ta, tb] = BothWaysAtOnceThenStop(5205, 32ull << 20);
  ASSERT_TRUE(ta.ok && tb.ok) << la << lb;
  EXPECT_EQ(ta.collisions, tb.collisions) << la << lb;
  EXPECT_EQ(ta.tx_bytes, tb.rx_bytes) << la << lb;
  EXPECT_EQ(tb.tx_bytes, ta.rx_bytes) << la << lb;
  std::printf("collisions: %lu in %lu + %lu writes\n", ta.collisions, ta.tx_blocks, tb.tx_blocks);
}

TEST_F(CtcmTest, AReadAndAWriteDeviceNeverCollide) {
  // As ctcm groups a read and a write subchannel: LPAR1 reads D000 and
  // writes D001, LPAR2 reads D101 (D001's other end) and writes D100.
  // Each device is written from one end only: data both ways at once
  // meets no collision at all.
  ctcm_a_ = Start(*a_, "LPAR1", "D000,D001", kA, kB, {"--mtu", "9000"});
  ctcm_b_ = Start(*b_, "LPAR2", "D101,D100", kB, kA, {"--mtu", "9000"});
  ASSERT_TRUE(Eventually([&] { return (Carrier(*a_) == 1 && Carrier(*b_) == 1) || !ctcm_a_->running() ||
                                      !ctcm_b_->running(); }))
      << ctcm_a_->log() << ctcm_b_->log();
  ASSERT_TRUE(Up(*a_, kA, kB) && Up(*b_, kB, kA)) << ctcm_a_->log() << ctcm_b_->log();
  EXPECT_TRUE(absl::StrContains(ctcm_a_->log(), "CTC D000 (read) and D001 (write) of LPAR LPAR1")) << ctcm_a_->log();
  Result r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 5 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ctcm_a_->log() << ctcm_b_->log();
  r = b_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 5 ", kA));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ctcm_a_->log() << ctcm_b_->log();
  const auto [la, lb, ta, tb] = BothWaysAtOnceThenStop(5207, 16ull << 20);
  ASSERT_TRUE(ta.ok && tb.ok) << la << lb;
  EXPECT_EQ(ta.collisions, 0ul) << la;
  EXPECT_EQ(tb.collisions, 0ul) << lb;
  EXPECT_GT(ta.tx_bytes, 16ul << 20) << la;
  EXPECT_GT(tb.tx_bytes, 16ul << 20) << lb;
  EXPECT_EQ(ta.tx_bytes, tb.rx_bytes) << la << lb;
  EXPECT_EQ(tb.tx_bytes, ta.rx_bytes) << la << lb;
  EXPECT_EQ(ta.tx_blocks, tb.rx_blocks) << la << lb;
  EXPECT_EQ(tb.tx_blocks, ta.rx_blocks) << la << lb;
  for (const std::string* log : {&la, &lb}) {
    EXPECT_EQ(Counter(*log, "rx_bad_block"), 0) << *log;
    EXPECT_EQ(Counter(*log, "tx_timeout"), 0) << *log;
  }
}

TEST_F(CtcmTest, AReadAndAWriteDeviceHaveCarrierOnlyWhileBothAreUp) {
  ctcm_a_ = Start(*a_, "LPAR1", "D000,D001", kA, kB);
  ctcm_b_ = Start(*b_, "LPAR2", "D101,D100", kB, kA);
  ASSERT_TRUE(Eventually([&] { return Carrier(*a_) == 1 && Carrier(*b_) == 1; }))
      << ctcm_a_->log() << ctcm_b_->log();
  // B's death takes both devices down: no carrier on A until B is back
  // on both.
  ctcm_b_->Stop(SIGKILL);
  ASSERT_TRUE(Eventually([&] { return Carrier(*a_) == 0; })) << ctcm_a_->log();
  ctcm_b_ = Start(*b_, "LPAR2", "D101,D100", kB, kA);
  ASSERT_TRUE(Eventually([&] { return Carrier(*a_) == 1 && Carrier(*b_) == 1; }))
      << ctcm_a_->log() << ctcm_b_->log();
  const Result r = a_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 5 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out << ctcm_a_->log() << ctcm_b_->log();
  const std::string la = StopCleanly(ctcm_a_, *a_);
  // Each device at least once (a device may also go down once at the
  // start, when one end's first open gives up as the other's arrives).
  EXPECT_GE(Counter(la, "down"), 2) << la;
  StopCleanly(ctcm_b_, *b_);
}

TEST_F(CtcmTest, PacketsQueuedBehindAWriteGoInOneBlock) {
  // At MTU 1500, a TCP stream hands the device many packets while one
  // write waits for the other end to take it; they go in the next write
  // together.
  StartBoth({"--mtu", "1500"});
  const Result link = a_->Exec("ip link show dev ctc0");
  EXPECT_TRUE(absl::StrContains(link.out, "mtu 1500")) << link.out;
  const TransferResult t = CheckedTcpTransfer(b_->name(), a_->name(), kB, 5203, 16ull << 20);
  EXPECT_EQ(t.error, "") << ctcm_a_->log() << ctcm_b_->log();
  const std::string la = StopCleanly(ctcm_a_, *a_);
  StopCleanly(ctcm_b_, *b_);
  const Traffic ta = TrafficOf(la);
  ASSERT_TRUE(ta.ok) << la;
  EXPECT_GT(ta.max_batch, 1ul) << la;
  EXPECT_GT(ta.tx_packets, ta.tx_blocks) << la;
  EXPECT_GT(ta.tx_packets, (16ul << 20) / 1500) << la;  // every segment of the 16 MiB went this way
}

TEST_F(CtcmTest, NoCarrierWhileTheOtherEndIsAway) {
  StartBoth();
  EXPECT_EQ(Carrier(*a_), 1);
  Result r = a_->Exec(absl::StrCat("ping -c 1 -W 5 ", kB));
  ASSERT_TRUE(r.ok()) << r.out << ctcm_a_->log() << ctcm_b_->log();
  // kill -9: hsid tells A's end at once (CtcDown); A keeps ctc0, up, but
  // without carrier, and its kernel no longer routes to B over it.
  ctcm_b_->Stop(SIGKILL);
  ASSERT_TRUE(Eventually([&] { return Carrier(*a_) == 0; })) << Shell("ip -n " + a_->name() + " link").out
                                                               << ctcm_a_->log();
  EXPECT_TRUE(absl::StrContains(ctcm_a_->log(), "CTC D000 went down")) << ctcm_a_->log();
  EXPECT_TRUE(absl::StrContains(ctcm_a_->log(), "ctc0: no carrier")) << ctcm_a_->log();
  EXPECT_TRUE(Up(*a_, kA, kB));
  EXPECT_FALSE(Routes(*a_, kB)) << Shell("ip -n " + a_->name() + " route").out;
  r = a_->Exec(absl::StrCat("ping -c 1 -W 1 ", kB));
  EXPECT_FALSE(r.ok()) << r.out;
  // B again: A's end opens the device again, carrier comes back, the two talk.
  ctcm_b_ = Start(*b_, "LPAR2", "D100", kB, kA);
  ASSERT_TRUE(Eventually([&] { return Up(*b_, kB, kA) || !ctcm_b_->running(); }) && Up(*b_, kB, kA))
      << ctcm_b_->log();
  ASSERT_TRUE(Eventually([&] { return Carrier(*a_) == 1 && Carrier(*b_) == 1; }))
      << ctcm_a_->log() << ctcm_b_->log();
  EXPECT_TRUE(absl::StrContains(ctcm_a_->log(), "CTC D000 up again")) << ctcm_a_->log();
  EXPECT_TRUE(absl::StrContains(ctcm_a_->log(), "ctc0: carrier on")) << ctcm_a_->log();
  EXPECT_TRUE(Routes(*a_, kB));
  r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 5 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ctcm_a_->log() << ctcm_b_->log();
  const std::string la = StopCleanly(ctcm_a_, *a_);
  EXPECT_GE(Counter(la, "down"), 1) << la;  // once more if a first open gave up as the other arrived
  StopCleanly(ctcm_b_, *b_);
}

TEST_F(CtcmTest, MadeAtOnceWithoutCarrierUntilTheOtherEndOpens) {
  // The other end has never opened: ctc0 is there at once, up with its
  // address, without carrier (a service manager sees it ready whatever
  // the other LPAR does).
  ctcm_a_ = Start(*a_, "LPAR1", "D000", kA, kB);
  ASSERT_TRUE(Eventually([&] { return Up(*a_, kA, kB) || !ctcm_a_->running(); }) && Up(*a_, kA, kB))
      << ctcm_a_->log();
  EXPECT_EQ(Carrier(*a_), 0) << Shell("ip -n " + a_->name() + " link").out << ctcm_a_->log();
  EXPECT_TRUE(absl::StrContains(a_->Exec("ip link show dev ctc0").out, "mtu 65520"));
  EXPECT_FALSE(Routes(*a_, kB)) << Shell("ip -n " + a_->name() + " route").out;
  ctcm_b_ = Start(*b_, "LPAR2", "D100", kB, kA);
  ASSERT_TRUE(Eventually([&] { return Carrier(*a_) == 1 && Carrier(*b_) == 1; }))
      << ctcm_a_->log() << ctcm_b_->log();
  EXPECT_TRUE(absl::StrContains(ctcm_a_->log(), "CTC D000 up to LPAR \"LPAR2\"")) << ctcm_a_->log();
  const Result r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 5 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ctcm_a_->log() << ctcm_b_->log();
  StopCleanly(ctcm_a_, *a_);
  StopCleanly(ctcm_b_, *b_);
}

// Under systemd (hsi-ctcm@.service is Type=notify, ExecStart hsi-ctcm
// --config /etc/hsi/ctcm/NAME.conf) hsi-ctcm says READY=1 once ctc0 is
// made, up with its address: at once, without waiting for the other LPAR
// (which never comes here), and STOPPING=1 at SIGTERM. The test plays the
// service manager; the config file is in the form of the unit's example.
TEST_F(CtcmTest, NotifiesReadyOnceCtc0IsMadeWithoutWaitingForTheOtherEnd) {
  const std::string conf = absl::StrCat(hsid_.dir(), "/lpar1-ctc0.conf");
  {
    std::ofstream f(conf);
    f << "# hsi-ctcm@lpar1-ctc0.service\n"
      << "lpar = \"LPAR1\"\nctc = \"D000\"\nnetns = \"" << a_->name() << "\"\nifname = \"ctc0\"\n"
      << "address = \"" << kA << "\"\npeer-address = \"" << kB << "\"\nsocket = \"" << hsid_.socket() << "\"\n";
  }
  hsi::testing::ServiceManager manager(hsid_.dir() + "/notify");
  ASSERT_TRUE(manager.bound());
  {
    hsi::testing::ScopedEnv env("NOTIFY_SOCKET", hsid_.dir() + "/notify");
    ctcm_a_ = std::make_unique<Process>(std::vector<std::string>{HSI_CTCM_PATH, "--config", conf},
                                        absl::StrCat(hsid_.dir(), "/ctcm-LPAR1.log"));
  }
  const std::string ready = manager.Next(absl::Seconds(20));
  std::printf("hsi-ctcm told the service manager: %s\n", ready.c_str());
  EXPECT_TRUE(absl::StrContains(ready, "READY=1")) << ctcm_a_->log();
  EXPECT_TRUE(absl::StrContains(ready, absl::StrCat("STATUS=ctc0 up: ", kA, " peer ", kB, " on CTC D000"))) << ready;
  // At READY the interface is there, without carrier: no wait.
  EXPECT_TRUE(Up(*a_, kA, kB)) << Shell("ip -n " + a_->name() + " addr").out;
  EXPECT_EQ(Carrier(*a_), 0) << Shell("ip -n " + a_->name() + " link").out;
  ASSERT_EQ(::kill(ctcm_a_->pid(), SIGTERM), 0);
  EXPECT_TRUE(absl::StrContains(manager.Next(absl::Seconds(20)), "STOPPING=1")) << ctcm_a_->log();
  const int status = ctcm_a_->WaitExit(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status << "\n" << ctcm_a_->log();
  EXPECT_FALSE(Exists(*a_)) << "ctc0 left behind";
}

TEST_F(CtcmTest, StopsCleanlyBeforeTheOtherEndEverCame) {
  ctcm_a_ = Start(*a_, "LPAR1", "D000", kA, kB);
  ASSERT_TRUE(Eventually([&] { return Up(*a_, kA, kB) || !ctcm_a_->running(); }) && Up(*a_, kA, kB))
      << ctcm_a_->log();
  StopCleanly(ctcm_a_, *a_);
}

TEST_F(CtcmTest, Kill9OfHsidStopsNoPacket) {
  StartBoth();
  // hsid is off the data path (invariant 4): the channel goes on while it
  // is gone, and after its restart the ends re-register, unseen by IP.
  ASSERT_TRUE(WIFSIGNALED(hsid_.Stop(SIGKILL)));
  Result r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 5 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ctcm_a_->log();
  const TransferResult t = CheckedTcpTransfer(b_->name(), a_->name(), kB, 5204, 4ull << 20);
  EXPECT_EQ(t.error, "") << ctcm_a_->log() << ctcm_b_->log();
  ASSERT_TRUE(hsid_.Start()) << hsid_.log();
  r = b_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 5 ", kA));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ctcm_b_->log();
  // Neither channel went down (B's goes once A stops, so look first).
  EXPECT_FALSE(absl::StrContains(ctcm_b_->log(), "went down")) << ctcm_b_->log();
  const std::string la = StopCleanly(ctcm_a_, *a_);
  EXPECT_EQ(Counter(la, "down"), 0) << la;
  StopCleanly(ctcm_b_, *b_);
}

// An IPv4 ICMP echo request from `src` to `dst` (id 0x4854, seq `seq`,
// 32 bytes of data), checksums right.
std::vector<uint8_t> EchoRequest(const std::string& src, const std::string& dst, uint16_t seq) {
  std::vector<uint8_t> p(20 + 8 + 32, 0);
  auto checksum = [&](size_t from, size_t len) {
    uint32_t sum = 0;
    for (size_t i = from; i < from + len; i += 2) sum += uint32_t{p[i]} << 8 | p[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
  };
  p[0] = 0x45;
  p[3] = static_cast<uint8_t>(p.size());
  p[8] = 64;
  p[9] = 1;  // ICMP
  ::inet_pton(AF_INET, src.c_str(), p.data() + 12);
  ::inet_pton(AF_INET, dst.c_str(), p.data() + 16);
  const uint16_t hc = checksum(0, 20);
  p[10] = static_cast<uint8_t>(hc >> 8);
  p[11] = static_cast<uint8_t>(hc);
  p[20] = 8;  // echo request
  p[24] = 0x48;
  p[25] = 0x54;
  p[26] = static_cast<uint8_t>(seq >> 8);
  p[27] = static_cast<uint8_t>(seq);
  for (size_t i = 28; i < p.size(); ++i) p[i] = static_cast<uint8_t>(i);
  const uint16_t ic = checksum(20, p.size() - 20);
  p[22] = static_cast<uint8_t>(ic >> 8);
  p[23] = static_cast<uint8_t>(ic);
  return p;
}

// The seq of an echo reply from `src` with id 0x4854, or -1.
int EchoReplySeq(absl::Span<const uint8_t> p, const std::string& src) {
  in_addr a{};
  ::inet_pton(AF_INET, src.c_str(), &a);
  if (p.size() < 28 || p[0] != 0x45 || p[9] != 1 || std::memcmp(p.data() + 12, &a, 4) != 0) return -1;
  if (p[20] != 0 || p[24] != 0x48 || p[25] != 0x54) return -1;
  return p[26] << 8 | p[27];
}

// A raw end of a CTC: writes as hsi-ctcm does (the other end's pending
// write taken first, then only if idle, again after a collision) and keeps
// what it took meanwhile.
struct RawEnd {
  std::shared_ptr<hsi::CtcDevice> dev;
  std::vector<std::vector<uint8_t>> taken;

  absl::Status Write(const std::vector<uint8_t>& block, absl::Time deadline) {
    std::vector<uint8_t> in;
    while (absl::Now() < deadline) {
      absl::StatusOr<bool> got = dev->TryCopy(&in);
      if (!got.ok()) return got.status();
      if (*got) {
        dev->Complete();
        taken.push_back(in);
        continue;
      }
      absl::StatusOr<bool> started = dev->WriteIfIdle(block, deadline);
      if (started.ok() && *started) return absl::OkStatus();
      if (!started.ok() && !absl::IsAborted(started.status())) return started.status();
    }
    return absl::DeadlineExceededError("raw end: write not taken");
  }
  // Waits for the echo replies of seqs `want` from `src` among the blocks
  // hsi-ctcm writes; whether all came by `deadline`.
  bool AwaitReplies(std::vector<int> want, const std::string& src, absl::Time deadline) {
    std::vector<uint8_t> in;
    std::vector<hsi::ctcm::BlockPacket> packets;
    size_t looked = 0;
    for (;;) {
      for (; looked < taken.size(); ++looked) {
        if (!hsi::ctcm::ParseBlock(taken[looked], 65535, &packets).ok()) continue;
        for (const auto& p : packets) std::erase(want, EchoReplySeq(p.bytes, src));
      }
      if (want.empty()) return true;
      absl::StatusOr<size_t> n = dev->Read(&in, deadline);
      if (!n.ok()) return false;
      taken.push_back(in);
    }
  }
};

// A raw end and hsi-ctcm collide on purpose: the raw end writes without
// taking hsi-ctcm's pending write (as a naive end would). The device's
// recovery delay is 300 ms, so each side's window is wide on a loaded host.
class CtcmCollisionTest : public CtcmTest {
 protected:
  CtcmCollisionTest() : CtcmTest("recovery_us = 300000") {}

  // One UDP datagram from `ns` to `to`:9, through its ctc0.
  static void SendUdp(const Netns& ns, const std::string& to) {
    const pid_t pid = ForkInNetns(ns.name(), [&] {
      const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(9);
      ::inet_pton(AF_INET, to.c_str(), &a.sin_addr);
      const char msg[] = "collide";
      return ::sendto(fd, msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == sizeof(msg) ? 0 : 1;
    });
    ASSERT_EQ(Reap(pid, absl::Seconds(10)), 0);
  }
  // Whether a block the raw end takes by `deadline` carries that datagram
  // (UDP to port 9 from `from`).
  static bool TakesTheDatagram(hsi::CtcDevice& dev, const std::string& from, absl::Time deadline) {
    std::vector<uint8_t> in;
    std::vector<hsi::ctcm::BlockPacket> packets;
    in_addr src{};
    ::inet_pton(AF_INET, from.c_str(), &src);
    while (dev.Read(&in, deadline).ok()) {
      if (!hsi::ctcm::ParseBlock(in, 65535, &packets).ok()) continue;
      for (const auto& p : packets) {
        const auto b = p.bytes;
        if (b.size() >= 28 && b[0] == 0x45 && b[9] == 17 && std::memcmp(b.data() + 12, &src, 4) == 0 &&
            b[22] == 0 && b[23] == 9) {
          return true;
        }
      }
    }
    return false;
  }
  // A good block of one UDP datagram from `src` to `dst`.
  static std::vector<uint8_t> UdpBlock(const std::string& src, const std::string& dst) {
    hsi::ctcm::BlockWriter w(65536);
    w.Add(UdpPacket(*hsi::Address::Parse(src), *hsi::Address::Parse(dst), 16), hsi::ctcm::kProtocolIpv4);
    return {w.bytes().begin(), w.bytes().end()};
  }
};

TEST_F(CtcmCollisionTest, TheLparThatSortsFirstRedrivesAtOnce) {
  // hsi-ctcm is LPAR1: after the collision it writes again at once.
  ctcm_a_ = Start(*a_, "LPAR1", "D000", kA, kB);
  auto host = hsi::testing::ConnectCtcHost(hsid_.socket(), "LPAR2");
  ASSERT_TRUE(host.ok()) << host.status();
  auto dev = (*host)->Open(hsi::DeviceNumber(0xD100), absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(dev.ok()) << dev.status() << ctcm_a_->log();
  ASSERT_TRUE(Eventually([&] { return Up(*a_, kA, kB) || !ctcm_a_->running(); }) && Up(*a_, kA, kB));
  SendUdp(*a_, kB);
  ASSERT_TRUE(Eventually([&] { return (*dev)->PeerBusy(); })) << "hsi-ctcm's write never came" << ctcm_a_->log();
  const absl::Status s = (*dev)->Write(UdpBlock(kB, kA), absl::Now() + absl::Seconds(10));
  EXPECT_TRUE(absl::IsAborted(s)) << s;
  EXPECT_TRUE(TakesTheDatagram(**dev, kA, absl::Now() + absl::Seconds(10))) << ctcm_a_->log();
  const std::string log = StopCleanly(ctcm_a_, *a_);
  const Traffic t = TrafficOf(log);
  ASSERT_TRUE(t.ok) << log;
  EXPECT_EQ(t.collisions, 1ul) << log;
  EXPECT_EQ(t.rx_blocks, 0ul) << log;  // the raw end's write failed, as it must
}

TEST_F(CtcmCollisionTest, TheOtherLparTakesTheRedriveFirst) {
  // hsi-ctcm is LPAR2: after the collision it waits for LPAR1's redrive,
  // takes it, and only then writes its own again.
  ctcm_b_ = Start(*b_, "LPAR2", "D100", kB, kA);
  auto host = hsi::testing::ConnectCtcHost(hsid_.socket(), "LPAR1");
  ASSERT_TRUE(host.ok()) << host.status();
  auto dev = (*host)->Open(hsi::DeviceNumber(0xD000), absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(dev.ok()) << dev.status() << ctcm_b_->log();
  ASSERT_TRUE(Eventually([&] { return Up(*b_, kB, kA) || !ctcm_b_->running(); }) && Up(*b_, kB, kA));
  SendUdp(*b_, kA);
  ASSERT_TRUE(Eventually([&] { return (*dev)->PeerBusy(); })) << "hsi-ctcm's write never came" << ctcm_b_->log();
  const std::vector<uint8_t> block = UdpBlock(kA, kB);
  absl::Status s = (*dev)->Write(block, absl::Now() + absl::Seconds(10));
  EXPECT_TRUE(absl::IsAborted(s)) << s;
  // Our redrive, at once and again without looking: hsi-ctcm keeps off it.
  s = (*dev)->Write(block, absl::Now() + absl::Seconds(10));
  EXPECT_TRUE(s.ok()) << s << ctcm_b_->log();
  EXPECT_TRUE(TakesTheDatagram(**dev, kB, absl::Now() + absl::Seconds(10))) << ctcm_b_->log();
  const std::string log = StopCleanly(ctcm_b_, *b_);
  const Traffic t = TrafficOf(log);
  ASSERT_TRUE(t.ok) << log;
  EXPECT_EQ(t.collisions, 1ul) << log;
  EXPECT_EQ(t.rx_blocks, 1ul) << log;  // our redrive
}

TEST_F(CtcmTest, GarbledBlocksAreDroppedAndCountedAndTheInterfaceGoesOn) {
  ctcm_a_ = Start(*a_, "LPAR1", "D000", kA, kB);
  absl::StatusOr<std::unique_ptr<hsi::CtcHost>> host = hsi::testing::ConnectCtcHost(hsid_.socket(), "LPAR2");
  ASSERT_TRUE(host.ok()) << host.status();
  absl::StatusOr<std::shared_ptr<hsi::CtcDevice>> dev = (*host)->Open(hsi::DeviceNumber(0xD100), absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(dev.ok()) << dev.status() << ctcm_a_->log();
  ASSERT_TRUE(Eventually([&] { return Up(*a_, kA, kB) || !ctcm_a_->running(); }) && Up(*a_, kA, kB))
      << ctcm_a_->log();
  RawEnd raw{*dev, {}};

  // A good block of two echo requests to A, and garbled ones.
  hsi::ctcm::BlockWriter w(65536);
  w.Add(EchoRequest(kB, kA, 1), hsi::ctcm::kProtocolIpv4);
  w.Add(EchoRequest(kB, kA, 2), hsi::ctcm::kProtocolIpv4);
  const std::vector<uint8_t> good(w.bytes().begin(), w.bytes().end());
  auto garbled = [&](size_t at, std::vector<uint8_t> bytes) {
    std::vector<uint8_t> b = good;
    std::copy(bytes.begin(), bytes.end(), b.begin() + static_cast<ptrdiff_t>(at));
    return b;
  };
  std::vector<std::vector<uint8_t>> bad = {
      {1, 2, 3},                                    // shorter than a header
      garbled(0, {0xde, 0xad, 0xbe, 0xef}),         // magic
      garbled(6, {3, 0}),                           // 3 packets said, 2 there
      garbled(8, {0xf0, 0xff, 0xff, 0xff}),         // a length past everything
      garbled(12, {0xdd, 0x86}),                    // IPv6 said (0x86dd), IPv4 there
      garbled(6, {0, 0}),                           // 0 packets
  };
  std::vector<uint8_t> trailing = good;
  trailing.insert(trailing.end(), {0, 0, 0, 0, 0});
  bad.push_back(trailing);  // bytes after the last packet
  // The good block's packets in the byte order of a big-endian peer.
  std::vector<uint8_t> swapped = good;
  std::swap(swapped[8], swapped[11]);
  std::swap(swapped[9], swapped[10]);
  bad.push_back(swapped);

  for (size_t i = 0; i < bad.size(); ++i) {
    ASSERT_TRUE(raw.Write(bad[i], absl::Now() + absl::Seconds(20)).ok()) << "bad block " << i << ctcm_a_->log();
  }
  // The interface goes on: the good block's two echo requests are
  // answered (A's kernel to B: through ctc0, in hsi-ctcm's blocks).
  ASSERT_TRUE(raw.Write(good, absl::Now() + absl::Seconds(20)).ok()) << ctcm_a_->log();
  EXPECT_TRUE(raw.AwaitReplies({1, 2}, kA, absl::Now() + absl::Seconds(20))) << ctcm_a_->log();
  ASSERT_TRUE(ctcm_a_->running()) << ctcm_a_->log();

  const std::string log = StopCleanly(ctcm_a_, *a_);
  EXPECT_EQ(Counter(log, "rx_bad_block"), static_cast<long>(bad.size())) << log;
  EXPECT_TRUE(absl::StrContains(log, "dropped a block of 3 bytes from LPAR \"LPAR2\": block of 3 bytes: shorter"))
      << log;
  EXPECT_TRUE(absl::StrContains(log, "packet 3 of 3 at offset 144: its header runs past the block's end")) << log;
  EXPECT_TRUE(absl::StrContains(log, "marked protocol 0x86dd but is not an IP packet of that version")) << log;
  const Traffic t = TrafficOf(log);
  ASSERT_TRUE(t.ok) << log;
  EXPECT_EQ(t.rx_blocks, 1ul) << log;   // the good one, and only it
  EXPECT_EQ(t.rx_packets, 2ul) << log;  // its two echo requests
}

TEST_F(CtcmTest, ClearErrorsLeaveNothingBehind) {
  struct Case {
    std::vector<std::string> argv;
    int exit;
    const char* says;
  };
  ASSERT_TRUE(a_->Exec("ip addr add 10.241.0.9/32 dev lo").ok());
  const std::vector<Case> cases = {
      {{HSI_CTCM_PATH, "--lpar", "LPAR1", "--address", kA, "--peer-address", kB}, 2, "--ctc DEVNO is required"},
      {Argv(*a_, "LPAR1", "D0G0", kA, kB), 2, "'D0G0' is not a device number"},
      {Argv(*a_, "LPAR1", "D000,D0G1", kA, kB), 2, "'D0G1' is not a device number"},
      {Argv(*a_, "LPAR1", "D000,D000", kA, kB), 2, "the read and the write device must be two devices"},
      {Argv(*a_, "LPAR1", "D000,D001,D002", kA, kB), 2, "names more than two devices"},
      {Argv(*a_, "LPAR1", "D000,D00F", kA, kB), 1, "D00F"},
      {Argv(*a_, "LPAR1", "D000", kA, kA), 2, "both 10.241.0.1"},
      {Argv(*a_, "LPAR1", "D000", kA, kB, {"--mtu", "100"}), 2, "--mtu"},
      {Argv(*a_, "LPAR1", "D000", kA, kB, {"--bogus"}), 2, "--bogus"},
      {Argv(*a_, "LPAR1", "D00F", kA, kB), 1, "D00F"},
      {Argv(*a_, "LPAR1", "D000", "10.241.0.9", kB), 1, "address 10.241.0.9 is already on device lo"},
      {Argv(*a_, "LPAR1", "D000", kA, "10.241.0.9"), 1, "peer address 10.241.0.9 is an address of device lo"},
  };
  for (const Case& c : cases) {
    Process p(c.argv, absl::StrCat(hsid_.dir(), "/ctcm-error.log"));
    const int status = p.WaitExit(absl::Seconds(20));
    const std::string log = p.log();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == c.exit) << status << ": " << log;
    EXPECT_TRUE(absl::StrContains(log, c.says)) << log;
    EXPECT_FALSE(Exists(*a_)) << log;
  }
  // A config file with a misspelt key: refused naming the file and line.
  const std::string conf = absl::StrCat(hsid_.dir(), "/ctcm.conf");
  {
    std::ofstream f(conf);
    f << "lpar = LPAR1\nctc = D000\nadress = 10.241.0.1\n";
  }
  {
    Process p({HSI_CTCM_PATH, "--config", conf}, absl::StrCat(hsid_.dir(), "/ctcm-error.log"));
    const int status = p.WaitExit(absl::Seconds(20));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << status;
    EXPECT_TRUE(absl::StrContains(p.log(), conf + ":3: unknown key 'adress'")) << p.log();
  }
  // A namespace that is not there.
  Process p({HSI_CTCM_PATH, "--lpar", "LPAR1", "--ctc", "D000", "--netns", "hsi-no-such-ns", "--socket",
             hsid_.socket(), "--address", kA, "--peer-address", kB},
            absl::StrCat(hsid_.dir(), "/ctcm-error.log"));
  const int status = p.WaitExit(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  EXPECT_TRUE(absl::StrContains(p.log(), "network namespace 'hsi-no-such-ns' does not exist")) << p.log();
}

}  // namespace
