// hsi::PlanWrites and hsi::DeviceNumber: z/VM's write-direction convention
// for every link size and both name orders, the issue's D000-D00F example
// exactly, the naive mode, and what bad input gets.
#include "hsi/isfc_convention.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi {
namespace {

using ::testing::HasSubstr;

std::vector<DeviceNumber> Range(uint16_t first, int n, int stride = 1) {
  std::vector<DeviceNumber> v;
  for (int i = 0; i < n; ++i) v.push_back(DeviceNumber(static_cast<uint16_t>(first + i * stride)));
  return v;
}

std::vector<std::string> Names(const std::vector<DeviceNumber>& v) {
  std::vector<std::string> out;
  for (DeviceNumber d : v) out.push_back(d.ToString());
  return out;
}

TEST(IsfcConventionTest, TheIssueExampleComesOutExactly) {
  const std::vector<DeviceNumber> devs = DeviceNumber::ParseList("D000-D00F").value();
  ASSERT_EQ(devs.size(), 16u);
  const WritePlan p1 = PlanWrites("LPAR1", "LPAR2", devs).value();
  const WritePlan p2 = PlanWrites("LPAR2", "LPAR1", devs).value();
  EXPECT_TRUE(p1.self_lesser);
  EXPECT_FALSE(p2.self_lesser);
  EXPECT_EQ(p1.usable, 14);
  // LPAR1 writes D000 up to D00D; LPAR2 D00F down to D002.
  EXPECT_EQ(Names(p1.self_order), (std::vector<std::string>{"D000", "D001", "D002", "D003", "D004", "D005", "D006",
                                                             "D007", "D008", "D009", "D00A", "D00B", "D00C", "D00D"}));
  EXPECT_EQ(Names(p2.self_order), (std::vector<std::string>{"D00F", "D00E", "D00D", "D00C", "D00B", "D00A", "D009",
                                                             "D008", "D007", "D006", "D005", "D004", "D003", "D002"}));
  // D000-D001 are LPAR1's alone, D00E-D00F LPAR2's.
  for (const DeviceUse& u : p1.devices) {
    const uint16_t v = u.device.value();
    SCOPED_TRACE(u.device.ToString());
    EXPECT_EQ(u.self_rank >= 0, v <= 0xD00D);
    EXPECT_EQ(u.peer_rank >= 0, v >= 0xD002);
    if (v <= 0xD001) {
      EXPECT_THAT(u.why, HasSubstr("LPAR1 only"));
    } else if (v >= 0xD00E) {
      EXPECT_THAT(u.why, HasSubstr("LPAR2 only"));
    } else {
      EXPECT_THAT(u.why, HasSubstr("both"));
    }
  }
}

// Every size 1..16, both name orders, devices given shuffled and not
// contiguous: the lesser writes the lowest `usable` ascending, the greater
// the highest `usable` descending, and the two plans mirror each other.
TEST(IsfcConventionTest, EverySizeAndBothNameOrders) {
  std::mt19937 rng(19);
  for (int n = 1; n <= 16; ++n) {
    const int want_usable = n == 1 ? 1 : (n <= 8 ? n - 1 : n - 2);
    EXPECT_EQ(UsableDevices(n), want_usable) << n;
    std::vector<DeviceNumber> devs = Range(0x0A00, n, 3);
    std::vector<DeviceNumber> shuffled = devs;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    for (bool a_first : {true, false}) {
      const std::string a = a_first ? "ALPHA" : "ZULU", b = a_first ? "ZULU" : "ALPHA";
      SCOPED_TRACE(absl::StrCat(n, " devices, self ", a, ", peer ", b));
      const WritePlan self = PlanWrites(a, b, shuffled).value();
      const WritePlan peer = PlanWrites(b, a, shuffled).value();
      EXPECT_EQ(self.self_lesser, a < b);
      EXPECT_EQ(self.usable, want_usable);
      ASSERT_EQ(self.devices.size(), static_cast<size_t>(n));
      std::vector<DeviceNumber> lesser_order(devs.begin(), devs.begin() + want_usable);
      std::vector<DeviceNumber> greater_order(devs.rbegin(), devs.rbegin() + want_usable);
      EXPECT_EQ(self.self_order, self.self_lesser ? lesser_order : greater_order);
      EXPECT_EQ(self.peer_order, self.self_lesser ? greater_order : lesser_order);
      EXPECT_EQ(peer.self_order, self.peer_order);
      EXPECT_EQ(peer.peer_order, self.self_order);
      int exclusive_self = 0, exclusive_peer = 0, shared = 0;
      for (size_t i = 0; i < self.devices.size(); ++i) {
        EXPECT_EQ(self.devices[i].device, devs[i]) << "ascending";
        EXPECT_EQ(self.devices[i].self_rank, peer.devices[i].peer_rank);
        EXPECT_EQ(self.devices[i].peer_rank, peer.devices[i].self_rank);
        EXPECT_FALSE(self.devices[i].why.empty());
        const bool s = self.devices[i].self_rank >= 0, p = self.devices[i].peer_rank >= 0;
        EXPECT_TRUE(s || p) << "every device has a writer";
        exclusive_self += s && !p;
        exclusive_peer += p && !s;
        shared += s && p;
      }
      EXPECT_EQ(exclusive_self, n - want_usable);
      EXPECT_EQ(exclusive_peer, n - want_usable);
      EXPECT_EQ(shared, n - 2 * (n - want_usable));
    }
  }
}

TEST(IsfcConventionTest, TwoDevicesLeaveOneBulkDeviceEachWay) {
  const WritePlan p = PlanWrites("LPAR1", "LPAR2", DeviceNumber::ParseList("D000-D001").value()).value();
  EXPECT_EQ(Names(p.self_order), std::vector<std::string>{"D000"});
  EXPECT_EQ(Names(p.peer_order), std::vector<std::string>{"D001"});
}

TEST(IsfcConventionTest, NaiveModeWritesEveryDeviceLowestFirstOnBothSides) {
  const std::vector<DeviceNumber> devs = Range(0xD000, 5);
  for (const auto& [s, p] : {std::pair{"LPAR1", "LPAR2"}, std::pair{"LPAR2", "LPAR1"}}) {
    const WritePlan plan = PlanWrites(s, p, devs, IsfcMode::kNaive).value();
    EXPECT_EQ(plan.usable, 5);
    EXPECT_EQ(plan.self_order, devs);
    EXPECT_EQ(plan.peer_order, devs);
    for (const DeviceUse& u : plan.devices) EXPECT_THAT(u.why, HasSubstr("naive"));
  }
}

TEST(IsfcConventionTest, RefusesBadLinks) {
  EXPECT_THAT(PlanWrites("A", "A", Range(1, 2)).status().message(), HasSubstr("same system name"));
  EXPECT_THAT(PlanWrites("", "B", Range(1, 2)).status().message(), HasSubstr("empty"));
  EXPECT_THAT(PlanWrites("A", "B", {}).status().message(), HasSubstr("0 devices"));
  EXPECT_THAT(PlanWrites("A", "B", Range(1, 17)).status().message(), HasSubstr("17 devices"));
  const std::vector<DeviceNumber> dup = {DeviceNumber(0xD000), DeviceNumber(0xD001), DeviceNumber(0xD000)};
  EXPECT_THAT(PlanWrites("A", "B", dup).status().message(), HasSubstr("D000 given twice"));
  EXPECT_EQ(UsableDevices(0), 0);
  EXPECT_EQ(UsableDevices(17), 0);
}

TEST(DeviceNumberTest, ParsesPrintsAndRefuses) {
  EXPECT_EQ(DeviceNumber::Parse("d00f").value(), DeviceNumber(0xD00F));
  EXPECT_EQ(DeviceNumber::Parse("7").value().ToString(), "0007");
  EXPECT_EQ(DeviceNumber(0xABCD).ToString(), "ABCD");
  EXPECT_THAT(DeviceNumber::Parse("D0000").status().message(), HasSubstr("\"D0000\""));
  EXPECT_THAT(DeviceNumber::Parse("XYZ").status().message(), HasSubstr("hex"));
  EXPECT_FALSE(DeviceNumber::Parse("").ok());
  EXPECT_EQ(Names(DeviceNumber::ParseList("D000,D004-D005").value()),
            (std::vector<std::string>{"D000", "D004", "D005"}));
  EXPECT_THAT(DeviceNumber::ParseList("D005-D004").status().message(), HasSubstr("backwards"));
  EXPECT_THAT(DeviceNumber::ParseList("D000,D000").status().message(), HasSubstr("D000 twice"));
}

}  // namespace
}  // namespace hsi
