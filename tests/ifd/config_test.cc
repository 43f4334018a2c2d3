// hsi-ifd's config file parser (tools/hsi-ifd/config.h): what it accepts,
// and that every error names the file and the line.
#include "config.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi::ifd {
namespace {

using ::testing::HasSubstr;

const std::vector<std::string> kKeys = {"lpar", "chpid", "persist", "address"};

TEST(IfdConfigTest, BareAndQuotedValuesCommentsAndBlankLines) {
  auto c = ParseConfig("# an interface\n\nlpar = \"LPAR 1\"  # quoted: may hold a space\r\n"
                       "  chpid=F0\npersist = true # a switch\naddress = \"10.240.0.1/24\"\n",
                       "/etc/hsi/ifd/x.conf", kKeys);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 4u);
  EXPECT_EQ(c->at("lpar").value, "LPAR 1");
  EXPECT_EQ(c->at("chpid").value, "F0");
  EXPECT_EQ(c->at("persist").value, "true");
  EXPECT_EQ(c->at("address").value, "10.240.0.1/24");
  EXPECT_EQ(c->at("lpar").where, "/etc/hsi/ifd/x.conf:3: lpar");
  EXPECT_EQ(c->at("chpid").where, "/etc/hsi/ifd/x.conf:4: chpid");
}

TEST(IfdConfigTest, EmptyFileIsNoSettings) {
  auto c = ParseConfig("", "f", kKeys);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->empty());
}

TEST(IfdConfigTest, EveryErrorNamesFileAndLine) {
  struct Case {
    std::string text, message;
  };
  const std::vector<Case> cases = {
      {"lpar = A\nchipd = F0\n", "f.conf:2: unknown key 'chipd' (known: lpar, chpid, persist, address)"},
      {"lpar = A\n\nlpar = B\n", "f.conf:3: lpar: given twice (first at f.conf:1: lpar)"},
      {"lpar A\n", "f.conf:1: expected '=' after 'lpar'"},
      {"= A\n", "f.conf:1: expected `key = value`, found '= A'"},
      {"lpar =\n", "f.conf:1: lpar: no value after '='"},
      {"lpar = # none\n", "f.conf:1: lpar: no value after '='"},
      {"lpar = \"A\n", "f.conf:1: lpar: the quoted value has no closing '\"'"},
      {"lpar = \"A\" B\n", "f.conf:1: lpar: unexpected 'B' after the quoted value"},
      {"lpar = A B\n", "f.conf:1: lpar: 'A B' has a space or a quote; quote the whole value"},
      {"lpar = \"A\\\"B\"\n", "f.conf:1: lpar: backslash escapes are not supported"},
      {"chpid = F0\nlpar = A\x01\n", "f.conf:2: control character 0x1 (the file must be text)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto r = ParseConfig(c.text, "f.conf", kKeys);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), c.message);
  }
}

TEST(IfdConfigTest, Switches) {
  for (const char* yes : {"true", "TRUE", "yes", "on", "1"}) EXPECT_TRUE(*ParseSwitch({yes, "f:1: persist"}));
  for (const char* no : {"false", "no", "off", "0"}) EXPECT_FALSE(*ParseSwitch({no, "f:1: persist"}));
  auto bad = ParseSwitch({"maybe", "f:7: persist"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "f:7: persist: 'maybe' is not true or false (on or off)");
}

TEST(IfdConfigTest, MissingFileIsNotFoundNamingThePath) {
  auto r = LoadConfig("/nonexistent/hsi/ifd/x.conf", kKeys);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/nonexistent/hsi/ifd/x.conf"));
}

}  // namespace
}  // namespace hsi::ifd
