// The duplexing keys of the CF policy (cf/config.h, cf/duplex.h): a good
// pair and each kind of bad one, named.
#include "absl/strings/str_cat.h"
#include "config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi::cf {
namespace {

using ::testing::HasSubstr;

constexpr char kHead[] = R"([cf]
lpar = "CF01"
chpid = "F0"
[[structure]]
name = "LOCK1"
type = "lock"
entries = 8
lpars = ["*"]
)";

TEST(CfDuplexConfigTest, ParsesARoleAndItsPartner) {
  absl::StatusOr<CfConfig> c = ParseConfig(
      absl::StrCat(kHead, "duplex = \"primary\"\n[duplex]\npartner = \"CF02\"\naddress = \"10.240.0.201\"\n"),
      "cf.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->structures[0].duplex, "primary");
  EXPECT_EQ(c->duplex_partner, "CF02");
  EXPECT_EQ(c->duplex_address->ToString(), "10.240.0.201");
  absl::StatusOr<CfConfig> simplex = ParseConfig(kHead, "cf.toml");
  ASSERT_TRUE(simplex.ok());
  EXPECT_EQ(simplex->structures[0].duplex, "");
  EXPECT_FALSE(simplex->duplex_address.has_value());
}

TEST(CfDuplexConfigTest, BadDuplexKeysAreNamed) {
  const std::pair<std::string, std::string> bad[] = {
      {"duplex = \"both\"\n[duplex]\npartner = \"CF02\"\naddress = \"10.240.0.201\"\n",
       "structure[0].duplex: must be \"primary\" or \"secondary\""},
      {"duplex = \"primary\"\n", "duplex: missing table [duplex]"},
      {"duplex = \"primary\"\n[duplex]\npartner = \"CF01\"\naddress = \"10.240.0.201\"\n",
       "duplex.partner: is this CF's own LPAR"},
      {"duplex = \"primary\"\n[duplex]\npartner = \"CF02\"\naddress = \"10.240.0\"\n",
       "duplex.address"},
      {"duplex = \"primary\"\n[duplex]\npartner = \"CF02\"\n", "duplex"},
      {"duplex = \"primary\"\n[duplex]\npartner = \"CF02\"\naddress = \"10.240.0.201\"\nport = 1\n",
       "port"},
  };
  for (const auto& [tail, expect] : bad) {
    absl::StatusOr<CfConfig> c = ParseConfig(absl::StrCat(kHead, tail), "cf.toml");
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << tail;
    EXPECT_THAT(c.status().message(), HasSubstr(expect)) << tail;
  }
}

// A cache structure may be duplexed (each CF owns its own half of every
// connector's validity vector: docs/cf.md "Duplexing").
TEST(CfDuplexConfigTest, ACacheStructureMayBeDuplexed) {
  absl::StatusOr<CfConfig> c = ParseConfig(
      R"([cf]
lpar = "CF01"
chpid = "F0"
[[structure]]
name = "GBP0"
type = "cache"
entries = 8
max_data = 0
vector = 8
lpars = ["*"]
duplex = "primary"
[duplex]
partner = "CF02"
address = "10.240.0.201"
)",
      "cf.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->structures[0].duplex, "primary");
}

}  // namespace
}  // namespace hsi::cf
