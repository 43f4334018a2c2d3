// hsi::IsfcLink over local CTC pairs (both ends in this process, two
// threads per device pair): messages of every size in order both ways,
// writes only where the convention says, ordered delivery while a device
// is lost mid-transfer, the asymmetric load without collisions under the
// convention, a peer naming the wrong system, and a peer that writes a
// broken chunk breaking only the device it came on.
#include "hsi/isfc.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kBlock = 4096;

absl::Time Soon() { return absl::Now() + absl::Seconds(30); }

// `n` device pairs D000.. (side 1) to D100.. (side 2).
struct Devices {
  std::vector<std::shared_ptr<CtcDevice>> one, two;
};
Devices MakeDevices(int n, absl::Duration recovery = absl::Microseconds(200)) {
  Devices d;
  for (int i = 0; i < n; ++i) {
    CtcPairFds fds = CreateCtcPairFds(kBlock).value();
    const DeviceNumber a(static_cast<uint16_t>(0xD000 + i)), b(static_cast<uint16_t>(0xD100 + i));
    d.one.push_back(std::make_shared<CtcDevice>(
        CtcDevice::OpenFds(std::move(fds.a), {.device = a, .peer_device = b, .peer_lpar = "LPAR2",
                                              .block_size = kBlock, .recovery = recovery})
            .value()));
    d.two.push_back(std::make_shared<CtcDevice>(
        CtcDevice::OpenFds(std::move(fds.b), {.device = b, .peer_device = a, .peer_lpar = "LPAR1",
                                              .block_size = kBlock, .recovery = recovery})
            .value()));
  }
  return d;
}

struct Link2 {
  std::unique_ptr<IsfcLink> one, two;
};
Link2 Activate(const Devices& d, IsfcMode mode = IsfcMode::kConvention) {
  Link2 l;
  l.one = IsfcLink::Activate({.self = "LPAR1", .peer = "LPAR2", .mode = mode}, d.one).value();
  l.two = IsfcLink::Activate({.self = "LPAR2", .peer = "LPAR1", .mode = mode}, d.two).value();
  EXPECT_TRUE(l.one->WaitActive(Soon()).ok());
  EXPECT_TRUE(l.two->WaitActive(Soon()).ok());
  return l;
}

std::vector<uint8_t> Message(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) b = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
  return v;
}

TEST(IsfcLinkTest, MessagesOfEverySizeArriveInOrderBothWaysOnTheConventionsDevices) {
  Devices d = MakeDevices(4);
  Link2 l = Activate(d);
  const size_t sizes[] = {1, 31, 4064, 4065, 20000, 100000, 1 << 20};
  std::thread back([&] {
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(l.two->Send(Message(sizes[i % 7], 1000 + i), Soon()).ok());
  });
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(l.one->Send(Message(sizes[i % 7], i), Soon()).ok());
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<std::vector<uint8_t>> m = l.two->Receive(Soon());
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_EQ(*m, Message(sizes[i % 7], i)) << "message " << i;
    absl::StatusOr<std::vector<uint8_t>> r = l.one->Receive(Soon());
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(*r, Message(sizes[i % 7], 1000 + i)) << "message back " << i;
  }
  back.join();
  ASSERT_TRUE(l.one->Flush(Soon()).ok());
  // 4 devices: LPAR1 writes D000-D002, LPAR2 D103-D101 (keys D003-D001).
  for (const IsfcDeviceInfo& i : l.one->devices()) {
    if (i.self_rank < 0) {
      EXPECT_EQ(i.counters.writes, 0u) << i.device.ToString();
    }
    EXPECT_EQ(i.key, i.device);
  }
  EXPECT_EQ(l.one->devices()[3].self_rank, -1);
  EXPECT_EQ(l.two->devices()[0].self_rank, -1);
  EXPECT_EQ(l.two->devices()[0].key, DeviceNumber(0xD000)) << "planned over LPAR1's (the lesser's) numbers";
  EXPECT_EQ(l.two->devices()[0].counters.writes, 0u);
  EXPECT_EQ(l.one->stats().messages_received, 50u);
  EXPECT_EQ(l.two->stats().messages_received, 50u);
  EXPECT_THAT(l.one->Describe(), HasSubstr("LPAR1 only"));
}

TEST(IsfcLinkTest, OrderedDeliveryWhileADeviceIsLostMidTransfer) {
  Devices d = MakeDevices(3);
  Link2 l = Activate(d);
  constexpr int kMessages = 400;
  std::thread sender([&] {
    for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(l.one->Send(Message(9000 + i, i), Soon()).ok());
  });
  for (int i = 0; i < kMessages; ++i) {
    if (i == 100) {
      // Mid-transfer: LPAR1 removes D001, and LPAR2's end of it goes down
      // (as hsid's CtcDown would take it down when LPAR1 closes it).
      ASSERT_TRUE(l.one->RemoveDevice(DeviceNumber(0xD001)).ok());
      d.two[1]->TakeDown(absl::UnavailableError("CTC D101: the other end closed"));
    }
    absl::StatusOr<std::vector<uint8_t>> m = l.two->Receive(Soon());
    ASSERT_TRUE(m.ok()) << m.status() << " at " << i;
    ASSERT_EQ(*m, Message(9000 + i, i)) << "message " << i;
  }
  sender.join();
  EXPECT_EQ(l.one->devices().size(), 2u);
  EXPECT_EQ(l.one->plan().self_order, std::vector<DeviceNumber>{DeviceNumber(0xD000)});
  EXPECT_EQ(l.two->stats().messages_received, static_cast<uint64_t>(kMessages));
  EXPECT_FALSE(l.two->Receive(absl::Now()).ok()) << "nothing extra";
}

TEST(IsfcLinkTest, DevicesAddedWhileTheLinkRunsJoinThePlanAndNothingIsLost) {
  Devices d = MakeDevices(3);
  Devices first{{d.one[0], d.one[1]}, {d.two[0], d.two[1]}};
  Link2 l = Activate(first);
  EXPECT_EQ(l.one->plan().self_order, std::vector<DeviceNumber>{DeviceNumber(0xD000)});
  constexpr int kMessages = 300;
  std::thread sender([&] {
    for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(l.one->Send(Message(7000 + i, i), Soon()).ok());
  });
  for (int i = 0; i < kMessages; ++i) {
    if (i == 100) {  // mid-transfer, both sides add the third device
      ASSERT_TRUE(l.two->AddDevice(d.two[2]).ok());
      ASSERT_TRUE(l.one->AddDevice(d.one[2]).ok());
      EXPECT_EQ(l.one->AddDevice(d.one[2]).code(), absl::StatusCode::kAlreadyExists);
    }
    absl::StatusOr<std::vector<uint8_t>> m = l.two->Receive(Soon());
    ASSERT_TRUE(m.ok()) << m.status() << " at " << i;
    ASSERT_EQ(*m, Message(7000 + i, i)) << "message " << i;
  }
  sender.join();
  // 3 devices: LPAR1 writes D000 then D001, LPAR2 D102 then D101.
  EXPECT_EQ(l.one->plan().self_order, (std::vector<DeviceNumber>{DeviceNumber(0xD000), DeviceNumber(0xD001)}));
  EXPECT_EQ(l.two->plan().self_order, (std::vector<DeviceNumber>{DeviceNumber(0xD002), DeviceNumber(0xD001)}));
  EXPECT_EQ(l.one->devices().size(), 3u);
}

TEST(IsfcLinkTest, AsymmetricLoadHasNoCollisionsUnderTheConventionWithTwoDevices) {
  Devices d = MakeDevices(2);
  Link2 l = Activate(d);
  constexpr int kMessages = 200;
  std::thread acker([&] {
    for (int i = 0; i < kMessages; ++i) {
      absl::StatusOr<std::vector<uint8_t>> m = l.two->Receive(Soon());
      ASSERT_TRUE(m.ok());
      ASSERT_EQ(m->size(), 64u * 1024);
      ASSERT_TRUE(l.two->Send(Message(64, i), Soon()).ok());
    }
  });
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(l.one->Send(Message(64 * 1024, i), Soon()).ok());
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(l.one->Receive(Soon()).value(), Message(64, i));
  acker.join();
  // A write counts once its writer saw it taken: wait for that.
  ASSERT_TRUE(l.one->Flush(Soon()).ok());
  ASSERT_TRUE(l.two->Flush(Soon()).ok());
  uint64_t collisions = 0, d000 = 0, d001 = 0;
  for (const auto& dev : d.one) collisions += dev->counters().collisions;
  for (const auto& dev : d.two) collisions += dev->counters().collisions;
  d000 = d.one[0]->counters().writes;
  d001 = d.two[1]->counters().writes;
  EXPECT_EQ(collisions, 0u);
  EXPECT_EQ(d.one[1]->counters().writes, 0u) << "LPAR1 leaves D001 to LPAR2";
  EXPECT_EQ(d.two[0]->counters().writes, 0u) << "LPAR2 leaves D000 to LPAR1";
  EXPECT_EQ(d000, 1u + kMessages * 17u) << "hello + 17 chunks of a 64 KiB message";
  EXPECT_EQ(d001, 1u + kMessages);
}

// The relocation-like load over 16 devices: LPAR1 streams, LPAR2 answers
// each message with a 64-byte acknowledgement. Under the convention LPAR1
// writes D000-D00D and LPAR2 D00F down to D002, so D002-D00D are written
// by both; LPAR1's bulk keeps them busy. Nothing may collide: LPAR2's
// acknowledgements wait for its reserved D00E/D00F (spilling only after
// IsfcOptions::spill_wait, and then only onto a device LPAR1 is not
// writing), and an end takes the peer's pending write before it writes.
// The hellos cannot collide either (each side's first device is its own
// alone with 16 devices), so the count is zero from activation on.
TEST(IsfcLinkTest, RelocationLikeLoadOverSixteenDevicesHasNoCollisionsUnderTheConvention) {
  Devices d = MakeDevices(16);
  Link2 l = Activate(d);
  constexpr int kMessages = 300;
  constexpr size_t kSize = 256 * 1024;
  std::thread acker([&] {
    for (int i = 0; i < kMessages; ++i) {
      absl::StatusOr<std::vector<uint8_t>> m = l.two->Receive(Soon());
      ASSERT_TRUE(m.ok()) << m.status();
      ASSERT_EQ(*m, Message(kSize, i)) << "message " << i;
      ASSERT_TRUE(l.two->Send(Message(64, i), Soon()).ok());
    }
  });
  std::thread streamer([&] {
    for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(l.one->Send(Message(kSize, i), Soon()).ok());
  });
  for (int i = 0; i < kMessages; ++i) {
    absl::StatusOr<std::vector<uint8_t>> a = l.one->Receive(Soon());
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_EQ(*a, Message(64, i)) << "acknowledgement " << i;
  }
  streamer.join();
  acker.join();
  ASSERT_TRUE(l.one->Flush(Soon()).ok());
  ASSERT_TRUE(l.two->Flush(Soon()).ok());
  uint64_t lpar1_shared = 0, lpar2_writes = 0;
  for (int i = 0; i < 16; ++i) {
    const CtcCounters one = d.one[i]->counters(), two = d.two[i]->counters();
    EXPECT_EQ(one.collisions, 0u) << "LPAR1's end of " << d.one[i]->options().device.ToString();
    EXPECT_EQ(two.collisions, 0u) << "LPAR2's end of " << d.two[i]->options().device.ToString();
    if (i >= 2 && i <= 13) lpar1_shared += one.writes;
    lpar2_writes += two.writes;
  }
  EXPECT_EQ(d.two[0]->counters().writes + d.two[1]->counters().writes, 0u) << "D000-D001 are LPAR1's alone";
  EXPECT_EQ(d.one[14]->counters().writes + d.one[15]->counters().writes, 0u) << "D00E-D00F are LPAR2's alone";
  EXPECT_GT(lpar1_shared, 0u) << "the bulk must have used the devices both sides write, or nothing was tested";
  EXPECT_EQ(lpar2_writes, 1u + kMessages) << "the hello and one chunk per acknowledgement, none resent";
  EXPECT_EQ(l.one->stats().resent_chunks + l.two->stats().resent_chunks, 0u);
}

TEST(IsfcLinkTest, APeerNamingAnotherSystemIsRefused) {
  Devices d = MakeDevices(1);
  auto one = IsfcLink::Activate({.self = "LPAR1", .peer = "LPAR2"}, d.one).value();
  // LPAR2's devices say their peer is LPAR1, so a link naming LPARX is refused at once...
  EXPECT_THAT(IsfcLink::Activate({.self = "LPAR2", .peer = "LPARX"}, d.two).status().message(),
              HasSubstr("leads to LPAR LPAR1"));
  // ...and a hello naming another system fails WaitActive.
  auto two = IsfcLink::Activate({.self = "LPAR2", .peer = "LPAR1", .mode = IsfcMode::kNaive}, d.two).value();
  absl::Status s = one->WaitActive(Soon());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("naive mode"));
  EXPECT_THAT(IsfcLink::Activate({.self = "LPAR1", .peer = "LPAR2"}, {}).status().message(), HasSubstr("0 devices"));
  EXPECT_THAT(one->Send({}, Soon()).message(), HasSubstr("message of 0 bytes"));
}

TEST(IsfcLinkTest, ABrokenChunkBreaksOnlyTheDeviceItCameOn) {
  Devices d = MakeDevices(3);
  auto one = IsfcLink::Activate({.self = "LPAR1", .peer = "LPAR2"}, d.one).value();
  // LPAR2 is hostile on D102 (a device only it writes): a chunk with a bad
  // magic. LPAR1 takes it, judges it and takes the device down; the
  // hostile write itself is never completed.
  std::thread hostile([&] {
    std::vector<uint8_t> junk(100, 0xEE);
    EXPECT_FALSE(d.two[2]->Write(junk, absl::Now() + absl::Milliseconds(200)).ok());
  });
  const absl::Time until = Soon();
  while (d.one[2]->status().ok() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(d.one[2]->status().code(), absl::StatusCode::kDataLoss) << d.one[2]->status();
  EXPECT_THAT(d.one[2]->status().message(), HasSubstr("bad magic"));
  // An honest LPAR2 on the other devices: the link still works.
  Devices honest{{}, {d.two[0], d.two[1]}};
  auto two = IsfcLink::Activate({.self = "LPAR2", .peer = "LPAR1"}, honest.two).value();
  ASSERT_TRUE(one->WaitActive(Soon()).ok());
  ASSERT_TRUE(one->Send(Message(50000, 7), Soon()).ok());
  EXPECT_EQ(two->Receive(Soon()).value(), Message(50000, 7));
  ASSERT_TRUE(two->Send(Message(10, 8), Soon()).ok());
  EXPECT_EQ(one->Receive(Soon()).value(), Message(10, 8));
  int up = 0;
  for (const IsfcDeviceInfo& i : one->devices()) up += i.up;
  EXPECT_EQ(up, 2);
  EXPECT_FALSE(one->devices()[2].up);
  hostile.join();
}

}  // namespace
}  // namespace hsi
