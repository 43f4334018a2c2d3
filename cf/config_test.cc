// The CF policy parser: a good config and each kind of bad one, named.
#include "config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi::cf {
namespace {

using ::testing::HasSubstr;

TEST(CfConfigTest, ParsesAGoodPolicy) {
  absl::StatusOr<CfConfig> c = ParseConfig(R"(
[cf]
lpar = "CF01"
chpid = "F1"
address = "10.241.0.200"
[[structure]]
name = "LOCK1"
type = "lock"
entries = 128
lpars = ["DB2A", "DB2B"]
)",
                                           "cf.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->lpar, "CF01");
  EXPECT_EQ(c->chpid, 0xF1u);
  EXPECT_EQ(c->address->ToString(), "10.241.0.200");
  ASSERT_EQ(c->structures.size(), 1u);
  EXPECT_EQ(c->structures[0].entries, 128u);
  EXPECT_TRUE(c->structures[0].Allows("DB2B"));
  EXPECT_FALSE(c->structures[0].Allows("DB2C"));
}

struct Bad {
  const char* text;
  const char* expect;
};

class CfConfigBadTest : public ::testing::TestWithParam<Bad> {};

TEST_P(CfConfigBadTest, IsRefusedNamingTheKey) {
  absl::StatusOr<CfConfig> c = ParseConfig(GetParam().text, "cf.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr(GetParam().expect));
  EXPECT_THAT(c.status().message(), HasSubstr("cf.toml"));
}

constexpr char kHead[] = "[cf]\nlpar = \"CF01\"\nchpid = \"F0\"\n";

INSTANTIATE_TEST_SUITE_P(
    Cases, CfConfigBadTest,
    ::testing::Values(
        Bad{"[cf\n", "not valid TOML"}, Bad{"[[structure]]\nname=\"A\"\n", "missing table [cf]"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = \"G1\"\n[[structure]]\n", "cf.chpid"},
        Bad{"[cf]\nlpar = \"CF 01\"\nchpid = \"F0\"\n", "cf.lpar"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = \"F0\"\n", "no [[structure]]"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = \"F0\"\ncolour = 1\n", "unknown key \"colour\""},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"L\"\ntype=\"queue\"\nentries=1\nlpars=[\"*\"]\n",
            "structure[0].type: \"queue\" is not lock, list or cache"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"L\"\ntype=\"cache\"\nentries=1\nlpars=[\"*\"]\n",
            "structure[0].vector: must be an integer 1..1048576"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"L\"\ntype=\"list\"\nentries=1\nlpars=[\"*\"]\nlists=1\n"
            "max_data=8\nvector=8\n",
            "structure[0].vector: applies to cache structures only"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"L\"\ntype=\"lock\"\nentries=0\nlpars=[\"*\"]\n",
            "structure[0].entries"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"L\"\ntype=\"lock\"\nentries=1\nlpars=[\"*\"]\nmax_data="
            "8\n",
            "structure[0].max_data: applies to list and cache structures only"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"L\"\ntype=\"list\"\nentries=1\nlpars=[\"*\"]\nmax_data="
            "8\n",
            "structure[0].lists: must be an integer 1..65536"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"L\"\ntype=\"list\"\nentries=1\nlpars=[\"*\"]\nlists="
            "2\nmax_data=9000\n",
            "structure[0].max_data: must be an integer 0..4096"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"L\"\ntype=\"lock\"\nentries=1\nlpars=[]\n",
            "structure[0].lpars"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"AVERYLONGSTRUCTURENAME\"\ntype=\"lock\"\n",
            "structure[0].name"},
        Bad{"[cf]\nlpar = \"CF01\"\nchpid = "
            "\"F0\"\n[[structure]]\nname=\"L\"\ntype=\"lock\"\nentries=1\nlpars=[\"*\"]\n"
            "[[structure]]\nname=\"L\"\ntype=\"lock\"\nentries=1\nlpars=[\"*\"]\n",
            "structure[1].name: structure L is defined twice"}));

TEST(CfConfigTest, ParsesAListStructure) {
  absl::StatusOr<CfConfig> c = ParseConfig(R"(
[cf]
lpar = "CF01"
chpid = "F0"
[[structure]]
name = "IXCSIG1"
type = "list"
entries = 100
lists = 8
max_data = 512
lpars = ["*"]
)",
                                           "cf.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->structures[0].type, "list");
  EXPECT_EQ(c->structures[0].lists, 8u);
  EXPECT_EQ(c->structures[0].max_data, 512u);
  EXPECT_TRUE(c->structures[0].Allows("ANY"));
}

TEST(CfConfigTest, ParsesStoreInAndDirectoryOnlyCacheStructures) {
  absl::StatusOr<CfConfig> c = ParseConfig(R"(
[cf]
lpar = "CF01"
chpid = "F0"
[[structure]]
name = "GBP0"
type = "cache"
entries = 1000
max_data = 4096
vector = 2048
lpars = ["DB2A"]
[[structure]]
name = "DIR1"
type = "cache"
entries = 10
max_data = 0
vector = 1
lpars = ["*"]
)",
                                           "cf.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->structures[0].type, "cache");
  EXPECT_EQ(c->structures[0].max_data, 4096u);
  EXPECT_EQ(c->structures[0].vector, 2048u);
  EXPECT_EQ(c->structures[1].max_data, 0u);
  EXPECT_EQ(c->structures[1].vector, 1u);
}

TEST(CfConfigTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadConfig("/nonexistent/cf.toml").status().code(), absl::StatusCode::kNotFound);
  (void)kHead;
}

}  // namespace
}  // namespace hsi::cf
