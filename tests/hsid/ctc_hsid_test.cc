// CTC devices through hsid (issue 19): [[ctc]] in the config, both ends
// open their devices and write through the half-channels hsid granted,
// hsid lists the connection with each end's counters, the policy refuses
// other LPARs and unknown devices, an admin defines devices at run time,
// a bad [[ctc]] is refused naming where, and a peer's death takes the
// device down at once.
#include <signal.h>

#include <future>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/ctc_host.h"
#include "hsi/isfc.h"
#include "hsi/testing/child.h"
#include "hsi/testing/ctc_hosts.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/line_pipe.h"

namespace hsi {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::ConnectCtcHost;
using ::hsi::testing::OpenBothEnds;
using ::hsi::testing::Hsid;
using ::hsi::testing::LinePipe;
using ::testing::HasSubstr;

// LPAR1's D000-D001 to LPAR2's D100-D101.
std::string Config() {
  return hsi::testing::CtcConfig(
      "devices = \"D000-D001\"\npeer_devices = \"D100-D101\"\nblock_size = \"4K\"\nrecovery_us = 1000");
}

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

std::unique_ptr<CtcHost> Host(const Hsid& d, const std::string& lpar) {
  absl::StatusOr<std::unique_ptr<CtcHost>> h = ConnectCtcHost(d.socket(), lpar);
  EXPECT_TRUE(h.ok()) << h.status();
  return h.ok() ? std::move(*h) : nullptr;
}

// Opens `a` on h1 and `b` on h2 at once (each Open waits for the other end).
std::pair<std::shared_ptr<CtcDevice>, std::shared_ptr<CtcDevice>> OpenBoth(CtcHost& h1, DeviceNumber a, CtcHost& h2,
                                                                          DeviceNumber b) {
  auto p = OpenBothEnds(h1, a, h2, b, Soon());
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return {};
  return *p;
}

class CtcHsidTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(d_.Start()) << d_.log(); }
  Hsid d_{Config()};
};

TEST_F(CtcHsidTest, BothEndsOpenAndWriteThroughTheHalvesHsidGranted) {
  auto h1 = Host(d_, "LPAR1"), h2 = Host(d_, "LPAR2");
  ASSERT_TRUE(h1 && h2);
  auto [d1, d2] = OpenBoth(*h1, DeviceNumber(0xD000), *h2, DeviceNumber(0xD100));
  ASSERT_TRUE(d1 && d2);
  EXPECT_EQ(d1->options().peer_device, DeviceNumber(0xD100));
  EXPECT_EQ(d1->options().peer_lpar, "LPAR2");
  EXPECT_EQ(d2->options().peer_lpar, "LPAR1");
  EXPECT_EQ(d1->options().block_size, 4096u);
  EXPECT_EQ(d1->options().recovery, absl::Milliseconds(1));
  std::thread reader([&] {
    std::vector<uint8_t> got;
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(d2->Read(&got, Soon()).ok());
      ASSERT_EQ(got, std::vector<uint8_t>(100 + i, static_cast<uint8_t>(i)));
    }
  });
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(d1->Write(std::vector<uint8_t>(100 + i, static_cast<uint8_t>(i)), Soon()).ok());
  reader.join();

  auto admin = Host(d_, "");
  absl::StatusOr<std::vector<CtcListing>> list = admin->List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  const CtcListing& c = (*list)[0];
  EXPECT_EQ(c.lpar_a, "LPAR1");
  EXPECT_EQ(c.device_a, DeviceNumber(0xD000));
  EXPECT_EQ(c.device_b, DeviceNumber(0xD100));
  EXPECT_EQ(c.state_a, CtcEndState::kReady);
  EXPECT_EQ(c.state_b, CtcEndState::kReady);
  EXPECT_EQ(c.counters_a.writes, 50u);
  uint64_t bytes = 0;
  for (int i = 0; i < 50; ++i) bytes += 100 + i;
  EXPECT_EQ(c.counters_a.bytes_written, bytes);
  EXPECT_EQ(c.counters_b.bytes_read, bytes);
  EXPECT_EQ(c.counters_b.reads, 50u);
  EXPECT_EQ((*list)[1].state_a, CtcEndState::kClosed);
}

TEST_F(CtcHsidTest, PolicyRefusesOtherLparsAndUnknownDevicesNamingThem) {
  auto h3 = Host(d_, "LPAR3");
  absl::StatusOr<std::shared_ptr<CtcDevice>> r = h3->Open(DeviceNumber(0xD000), Soon());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("D000 is defined for LPAR LPAR1"));
  EXPECT_THAT(r.status().message(), HasSubstr("not for LPAR \"LPAR3\""));
  // LPAR1's number on LPAR2's side is not LPAR2's device.
  auto h2 = Host(d_, "LPAR2");
  r = h2->Open(DeviceNumber(0xD000), Soon());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  r = h2->Open(DeviceNumber(0x0999), Soon());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("no CTC device 0999"));
  // An end whose peer never opens gives up at its deadline, and is closed again.
  r = h2->Open(DeviceNumber(0xD101), absl::Now() + absl::Milliseconds(100));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("LPAR \"LPAR1\" did not open D001"));
}

TEST_F(CtcHsidTest, AnAdminDefinesDevicesAtRunTime) {
  auto admin = Host(d_, "");
  CtcDefinition def{.lpar_a = "LPAR1", .lpar_b = "LPAR2", .device_a = DeviceNumber(0xE000),
                    .device_b = DeviceNumber(0xE000), .count = 4, .recovery = absl::Microseconds(50)};
  ASSERT_TRUE(admin->Define(def).ok());
  absl::Status again = admin->Define(def);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;
  EXPECT_THAT(again.message(), HasSubstr("LPAR LPAR1 already has CTC device E000"));
  CtcDefinition self = def;
  self.lpar_b = "LPAR1";
  self.device_a = DeviceNumber(0xF000);
  EXPECT_THAT(admin->Define(self).message(), HasSubstr("both ends are one LPAR"));
  EXPECT_EQ(admin->List()->size(), 6u);

  auto h1 = Host(d_, "LPAR1"), h2 = Host(d_, "LPAR2");
  auto [d1, d2] = OpenBoth(*h1, DeviceNumber(0xE003), *h2, DeviceNumber(0xE003));
  ASSERT_TRUE(d1 && d2);
  EXPECT_EQ(d1->options().recovery, absl::Microseconds(50));
  // Open: not undefined; closed: undefined.
  EXPECT_EQ(admin->Undefine("LPAR1", DeviceNumber(0xE003)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(admin->Undefine("LPAR1", DeviceNumber(0xE002)).ok());
  EXPECT_EQ(admin->List()->size(), 5u);
}

TEST_F(CtcHsidTest, APeersDeathTakesTheDeviceDownAtOnce) {
  LinePipe ready, done;
  Child peer([&] {
    auto h = ConnectCtcHost(d_.socket(), "LPAR2");
    if (!h.ok()) return ready.Write(h.status().ToString()), 1;
    auto dev = (*h)->Open(DeviceNumber(0xD101), Soon());
    ready.Write(dev.ok() ? "open" : dev.status().ToString());
    done.Read(absl::Seconds(60));  // never answered: killed while waiting
    return 0;
  });
  auto h1 = Host(d_, "LPAR1");
  absl::StatusOr<std::shared_ptr<CtcDevice>> d1 = h1->Open(DeviceNumber(0xD001), Soon());
  ASSERT_TRUE(d1.ok()) << d1.status();
  ASSERT_EQ(ready.Read(absl::Seconds(10)), "open");
  // The kill may land before or during the write: either way hsid's CtcDown
  // must end it with kUnavailable (a missed death would run to the deadline).
  std::thread killer([&] { ::kill(peer.pid(), SIGKILL); });
  const absl::Status w = (*d1)->Write(std::vector<uint8_t>(64, 1), absl::Now() + absl::Seconds(30));
  killer.join();
  peer.Wait();
  EXPECT_EQ(w.code(), absl::StatusCode::kUnavailable) << w;
  EXPECT_THAT(w.message(), HasSubstr("LPAR \"LPAR2\" is gone"));
  EXPECT_EQ((*d1)->status().code(), absl::StatusCode::kUnavailable);
}

// hsid killed and restarted (invariant 4): the open device keeps carrying
// writes throughout; both CtcHosts reconnect and re-register it, so the new
// hsid lists it ready with its counters and tells one end of the other's
// death; and new devices open again.
TEST_F(CtcHsidTest, CtcHostsReconnectAndReRegisterTheirDevicesAfterAnHsidRestart) {
  auto h1 = Host(d_, "LPAR1"), h2 = Host(d_, "LPAR2");
  ASSERT_TRUE(h1 && h2);
  auto [d1, d2] = OpenBoth(*h1, DeviceNumber(0xD000), *h2, DeviceNumber(0xD100));
  ASSERT_TRUE(d1 && d2);
  auto one_write = [](CtcDevice& from, CtcDevice& to, uint8_t tag) {
    std::thread reader([&] {
      std::vector<uint8_t> got;
      ASSERT_TRUE(to.Read(&got, Soon()).ok());
      EXPECT_EQ(got, std::vector<uint8_t>(100, tag));
    });
    EXPECT_TRUE(from.Write(std::vector<uint8_t>(100, tag), Soon()).ok());
    reader.join();
  };
  one_write(*d1, *d2, 1);

  EXPECT_NE(d_.Stop(SIGKILL), -1);
  one_write(*d1, *d2, 2);  // hsid is not on the data path
  EXPECT_EQ(h1->Open(DeviceNumber(0xD001), Soon()).status().code(), absl::StatusCode::kUnavailable)
      << "nothing opens while hsid is gone";
  ASSERT_TRUE(d_.Start()) << d_.log();
  ASSERT_TRUE(h1->WaitConnected(Soon()).ok());
  ASSERT_TRUE(h2->WaitConnected(Soon()).ok());
  one_write(*d2, *d1, 3);

  // The new hsid rebuilt its table from the two ends.
  auto admin = Host(d_, "");
  ASSERT_TRUE(admin);
  absl::StatusOr<std::vector<CtcListing>> list = admin->List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_GE(list->size(), 1u);
  const CtcListing& c = (*list)[0];
  EXPECT_EQ(c.device_a, DeviceNumber(0xD000));
  EXPECT_EQ(c.state_a, CtcEndState::kReady);
  EXPECT_EQ(c.state_b, CtcEndState::kReady);
  EXPECT_EQ(c.counters_a.writes, 2u) << "read from the half LPAR1 handed in again";
  EXPECT_EQ(c.counters_b.writes, 1u);

  // New devices open again.
  auto [e1, e2] = OpenBoth(*h1, DeviceNumber(0xD001), *h2, DeviceNumber(0xD101));
  ASSERT_TRUE(e1 && e2);
  one_write(*e1, *e2, 4);

  // And the new hsid sees an end go: LPAR2's host closes, LPAR1's end of the
  // re-registered D000 is taken down at once (a write runs to its deadline
  // if hsid did not know the connection).
  h2.reset();
  const absl::Status w = d1->Write(std::vector<uint8_t>(64, 5), absl::Now() + absl::Seconds(30));
  EXPECT_EQ(w.code(), absl::StatusCode::kUnavailable) << w;
  EXPECT_THAT(w.message(), HasSubstr("LPAR \"LPAR2\" is gone"));
}

// The other end's process was restarted while hsid was down: only LPAR1
// re-registers D000; when the new LPAR2 opens its end afresh, the old
// connection (whose memory LPAR2 lost) goes down at LPAR1's end, and
// LPAR1 opens D000 again onto the new one.
TEST_F(CtcHsidTest, AnEndOpenedAfreshAfterAnHsidRestartTakesTheOldConnectionDown) {
  auto h1 = Host(d_, "LPAR1"), h2 = Host(d_, "LPAR2");
  ASSERT_TRUE(h1 && h2);
  auto [d1, d2] = OpenBoth(*h1, DeviceNumber(0xD000), *h2, DeviceNumber(0xD100));
  ASSERT_TRUE(d1 && d2);
  EXPECT_NE(d_.Stop(SIGKILL), -1);
  d2.reset();
  h2.reset();  // LPAR2's process goes while nobody can tell hsid
  ASSERT_TRUE(d_.Start()) << d_.log();
  ASSERT_TRUE(h1->WaitConnected(Soon()).ok());
  EXPECT_TRUE(d1->status().ok()) << "re-registered, not down yet";
  auto h2b = Host(d_, "LPAR2");
  ASSERT_TRUE(h2b);
  auto fresh = std::async(std::launch::async, [&] { return h2b->Open(DeviceNumber(0xD100), Soon()); });
  // hsid's CtcDown takes LPAR1's old end down once LPAR2 opened afresh.
  const absl::Time until = Soon();
  while (d1->status().ok() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(d1->status().code(), absl::StatusCode::kUnavailable) << d1->status();
  EXPECT_THAT(d1->status().message(), HasSubstr("opened its end afresh after hsid's restart"));
  absl::StatusOr<std::shared_ptr<CtcDevice>> n1 = h1->Open(DeviceNumber(0xD000), Soon());
  absl::StatusOr<std::shared_ptr<CtcDevice>> n2 = fresh.get();
  ASSERT_TRUE(n1.ok()) << n1.status();
  ASSERT_TRUE(n2.ok()) << n2.status();
  std::thread reader([&] {
    std::vector<uint8_t> got;
    ASSERT_TRUE((*n2)->Read(&got, Soon()).ok());
    EXPECT_EQ(got, std::vector<uint8_t>(10, 7));
  });
  EXPECT_TRUE((*n1)->Write(std::vector<uint8_t>(10, 7), Soon()).ok());
  reader.join();
}

// The whole stack: an ISFC link over two devices hsid granted; LPAR2 closes
// one of them mid-transfer (hsid tells LPAR1 at once), and every message
// still arrives, in order, over the other.
TEST_F(CtcHsidTest, AnIsfcLinkOverGrantedDevicesSurvivesTheLossOfOne) {
  auto h1 = Host(d_, "LPAR1"), h2 = Host(d_, "LPAR2");
  ASSERT_TRUE(h1 && h2);
  std::vector<std::shared_ptr<CtcDevice>> one, two;
  for (uint16_t i = 0; i < 2; ++i) {
    auto [a, b] = OpenBoth(*h1, DeviceNumber(0xD000 + i), *h2, DeviceNumber(0xD100 + i));
    ASSERT_TRUE(a && b);
    one.push_back(a);
    two.push_back(b);
  }
  // Naive mode: both sides write both devices, so losing either leaves one.
  auto l1 = IsfcLink::Activate({.self = "LPAR1", .peer = "LPAR2", .mode = IsfcMode::kNaive}, one);
  auto l2 = IsfcLink::Activate({.self = "LPAR2", .peer = "LPAR1", .mode = IsfcMode::kNaive}, two);
  ASSERT_TRUE(l1.ok() && l2.ok());
  ASSERT_TRUE((*l1)->WaitActive(Soon()).ok());
  ASSERT_TRUE((*l2)->WaitActive(Soon()).ok());
  constexpr int kMessages = 200;
  std::thread sender([&] {
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_TRUE((*l1)->Send(std::vector<uint8_t>(5000 + i, static_cast<uint8_t>(i)), Soon()).ok());
    }
  });
  for (int i = 0; i < kMessages; ++i) {
    if (i == 50) {
      ASSERT_TRUE((*l2)->RemoveDevice(DeviceNumber(0xD101)).ok());
      ASSERT_TRUE(h2->Close(DeviceNumber(0xD101)).ok());  // hsid: CtcDown to LPAR1
    }
    absl::StatusOr<std::vector<uint8_t>> m = (*l2)->Receive(Soon());
    ASSERT_TRUE(m.ok()) << m.status() << " at " << i;
    ASSERT_EQ(*m, std::vector<uint8_t>(5000 + i, static_cast<uint8_t>(i))) << "message " << i;
  }
  sender.join();
  // LPAR1's end of D001 went down because hsid said LPAR2 closed it.
  const absl::Time until = Soon();
  while (one[1]->status().ok() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(one[1]->status().code(), absl::StatusCode::kUnavailable) << one[1]->status();
  EXPECT_THAT(one[1]->status().message(), HasSubstr("closed its end"));
}

TEST(CtcConfigTest, BadCtcSectionsAreRefusedNamingWhere) {
  auto parse = [](const std::string& ctc) {
    return hsid::ParseConfig(absl::StrCat("[[ctc]]\n", ctc), "t.toml", 1000).status();
  };
  EXPECT_THAT(parse("lpars = [\"A\", \"A\"]\ndevices = \"D000\"\n").message(), HasSubstr("both ends are one LPAR"));
  EXPECT_THAT(parse("lpars = [\"A\"]\ndevices = \"D000\"\n").message(), HasSubstr("ctc[0].lpars"));
  EXPECT_THAT(parse("lpars = [\"A\", \"B\"]\ndevices = \"D00G\"\n").message(), HasSubstr("ctc[0].devices"));
  EXPECT_THAT(parse("lpars = [\"A\", \"B\"]\ndevices = \"D000-D001\"\npeer_devices = \"E000\"\n").message(),
              HasSubstr("has 1 devices, devices has 2"));
  EXPECT_THAT(parse("lpars = [\"A\", \"B\"]\ndevices = \"D000\"\nblock_size = 100\n").message(),
              HasSubstr("ctc[0].block_size"));
  EXPECT_THAT(parse("lpars = [\"A\", \"B\"]\ndevices = \"D000\"\ncolour = 1\n").message(), HasSubstr("colour"));
  EXPECT_THAT(hsid::ParseConfig("[[ctc]]\nlpars = [\"A\", \"B\"]\ndevices = \"D000\"\n[[ctc]]\nlpars = [\"A\", \"C\"]\n"
                                "devices = \"D000\"\n",
                                "t.toml", 1000)
                  .status()
                  .message(),
              HasSubstr("LPAR A already has CTC device D000"));
  absl::StatusOr<hsid::Config> ok = hsid::ParseConfig(
      "[[ctc]]\nlpars = [\"A\", \"B\"]\ndevices = \"D000-D00F\"\nrecovery_us = 300\n", "t.toml", 1000);
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->ctcs.size(), 16u);
  EXPECT_EQ(ok->ctcs[15].device_b, 0xD00Fu);
  EXPECT_EQ(ok->ctcs[0].recovery_us, 300u);
}

}  // namespace
}  // namespace hsi
