// hsi::Address, hsi::Subnet and hsi::Chpid: parse, format, host/network/broadcast, and
// what bad input gets.
#include "hsi/address.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t Ip(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return a << 24 | b << 16 | c << 8 | d; }

TEST(AddressTest, ParsesDottedQuadInHostOrderAndFormatsItBack) {
  absl::StatusOr<Address> a = Address::Parse("10.240.0.7");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->value(), Ip(10, 240, 0, 7));
  EXPECT_EQ(a->ToString(), "10.240.0.7");
  EXPECT_EQ(Address(Ip(255, 255, 255, 255)).ToString(), "255.255.255.255");
  EXPECT_EQ(Address().ToString(), "0.0.0.0");
  EXPECT_EQ(Address::Parse("0.0.0.0").value(), Address());
}

TEST(AddressTest, OrdersAndComparesByValue) {
  EXPECT_LT(Address(Ip(10, 0, 0, 1)), Address(Ip(10, 0, 0, 2)));
  EXPECT_LT(Address(Ip(9, 255, 255, 255)), Address(Ip(10, 0, 0, 0)));
  EXPECT_NE(Address(Ip(10, 0, 0, 1)), Address(Ip(1, 0, 0, 10)));
}

TEST(AddressTest, RejectsMalformedTextNamingIt) {
  for (const char* bad : {"", "10.240.0", "10.240.0.256", "10.240.0.7.1", "a.b.c.d", "10.240..7", "-1.0.0.0",
                          "10.240.0.7/24"}) {
    absl::StatusOr<Address> a = Address::Parse(bad);
    ASSERT_FALSE(a.ok()) << "'" << bad << "' parsed as " << a->ToString();
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    if (*bad != '\0') {
      EXPECT_THAT(a.status().message(), HasSubstr(bad));
    }
  }
}

TEST(SubnetTest, ParsesNetworkPrefixMaskAndBroadcast) {
  absl::StatusOr<Subnet> s = Subnet::Parse("10.240.0.0/24");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->network(), Address(Ip(10, 240, 0, 0)));
  EXPECT_EQ(s->prefix(), 24);
  EXPECT_EQ(s->mask(), 0xFFFFFF00u);
  EXPECT_EQ(s->broadcast(), Address(Ip(10, 240, 0, 255)));
  EXPECT_EQ(s->ToString(), "10.240.0.0/24");

  absl::StatusOr<Subnet> s8 = Subnet::Parse("10.0.0.0/8");
  ASSERT_TRUE(s8.ok()) << s8.status();
  EXPECT_EQ(s8->broadcast(), Address(Ip(10, 255, 255, 255)));
  EXPECT_EQ(s8->ToString(), "10.0.0.0/8");
}

TEST(SubnetTest, ConstructorClearsHostBits) {
  Subnet s(Address(Ip(172, 16, 5, 77)), 20);
  EXPECT_EQ(s.network(), Address(Ip(172, 16, 0, 0)));
  EXPECT_EQ(s.broadcast(), Address(Ip(172, 16, 15, 255)));
  EXPECT_EQ(s.ToString(), "172.16.0.0/20");
}

TEST(SubnetTest, HostsExcludeNetworkAndBroadcast) {
  const Subnet s = Subnet::Parse("10.240.0.0/24").value();
  EXPECT_FALSE(s.IsHost(Address(Ip(10, 240, 0, 0))));
  EXPECT_FALSE(s.IsHost(Address(Ip(10, 240, 0, 255))));
  EXPECT_TRUE(s.IsHost(Address(Ip(10, 240, 0, 1))));
  EXPECT_TRUE(s.IsHost(Address(Ip(10, 240, 0, 254))));
  EXPECT_FALSE(s.IsHost(Address(Ip(10, 240, 1, 1))));
  EXPECT_TRUE(s.Contains(Address(Ip(10, 240, 0, 255))));
  EXPECT_FALSE(s.Contains(Address(Ip(10, 241, 0, 1))));

  // A /30 has exactly two hosts.
  const Subnet p2p = Subnet::Parse("192.168.1.4/30").value();
  int hosts = 0;
  for (uint32_t v = Ip(192, 168, 1, 0); v <= Ip(192, 168, 1, 15); ++v) hosts += p2p.IsHost(Address(v)) ? 1 : 0;
  EXPECT_EQ(hosts, 2);
  EXPECT_TRUE(p2p.IsHost(Address(Ip(192, 168, 1, 5))));
  EXPECT_TRUE(p2p.IsHost(Address(Ip(192, 168, 1, 6))));
}

TEST(SubnetTest, OverlapsWhenEitherContainsTheOther) {
  const Subnet a = Subnet::Parse("10.240.0.0/16").value();
  const Subnet b = Subnet::Parse("10.240.7.0/24").value();
  const Subnet c = Subnet::Parse("10.241.0.0/24").value();
  EXPECT_TRUE(a.Overlaps(b));
  EXPECT_TRUE(b.Overlaps(a));
  EXPECT_FALSE(a.Overlaps(c));
  EXPECT_FALSE(c.Overlaps(b));
}

TEST(SubnetTest, RejectsBadPrefixesHostBitsAndMalformedText) {
  for (const char* bad : {"10.240.0.0", "10.240.0.0/", "10.240.0.0/abc", "10.240.0.0/7", "10.240.0.0/31",
                          "10.240.0.0/32", "10.240.0.1/24", "10.240.0/24", "/24", ""}) {
    absl::StatusOr<Subnet> s = Subnet::Parse(bad);
    ASSERT_FALSE(s.ok()) << "'" << bad << "' parsed as " << s->ToString();
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ChpidTest, ParsesHexInEveryFormToolsAcceptAndWritesTwoUpperCaseDigits) {
  for (const char* text : {"F0", "f0", "0xF0", "0Xf0"}) {
    absl::StatusOr<Chpid> c = Chpid::Parse(text);
    ASSERT_TRUE(c.ok()) << text << ": " << c.status();
    EXPECT_EQ(c->value(), 0xF0) << text;
    EXPECT_EQ(c->ToString(), "F0") << text;
  }
  EXPECT_EQ(Chpid(3).ToString(), "03");
  EXPECT_EQ(Chpid::Parse("3")->ToString(), "03");
  EXPECT_TRUE(Chpid(1) < Chpid(2));
  EXPECT_EQ(Chpid::FromNumber(0xFF)->value(), 0xFF);
}

TEST(ChpidTest, RejectsWhatIsNotAHexByteNamingIt) {
  for (const char* text : {"", "0x", "G1", "100", "F0 ", "-1", "0x1FF"}) {
    absl::StatusOr<Chpid> c = Chpid::Parse(text);
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(c.status().message()), ::testing::HasSubstr(absl::StrCat("'", text, "'")));
  }
  EXPECT_EQ(Chpid::FromNumber(256).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hsi
