// The CF message format: round trip, and every malformed frame named.
#include "protocol.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi::cf::proto {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> Frame(const Writer& w) { return {w.frame().begin(), w.frame().end()}; }

TEST(CfProtocolTest, RoundTripsEveryFieldKind) {
  Writer w(Header{kLock, 42, 7, 0});
  w.U8(1).Str("RES").U32(0xdeadbeef);
  std::vector<uint8_t> f = Frame(w);
  absl::StatusOr<Header> h = ParseHeader(f);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->type, kLock);
  EXPECT_EQ(h->request_id, 42u);
  EXPECT_EQ(h->conn, 7u);
  Reader r(f);
  EXPECT_EQ(r.U8("mode"), 1);
  EXPECT_EQ(r.Str("resource", kMaxResource), "RES");
  EXPECT_EQ(r.U32("x"), 0xdeadbeefu);
  EXPECT_TRUE(r.Done().ok());
}

TEST(CfProtocolTest, ShortBadMagicBadVersionAndFlagsAreRefused) {
  std::vector<uint8_t> f = Frame(Writer(Header{kLock, 1, 1, 0}));
  EXPECT_THAT(ParseHeader(absl::MakeConstSpan(f.data(), 10)).status().message(),
              HasSubstr("shorter than"));
  std::vector<uint8_t> m = f;
  m[0] ^= 1;
  EXPECT_THAT(ParseHeader(m).status().message(), HasSubstr("magic"));
  std::vector<uint8_t> v = f;
  v[4] = 9;
  EXPECT_THAT(ParseHeader(v).status().message(), HasSubstr("version 9"));
  std::vector<uint8_t> fl = f;
  fl[6] = 1;
  EXPECT_THAT(ParseHeader(fl).status().message(), HasSubstr("flags"));
}

TEST(CfProtocolTest, TruncatedOverlongAndLeftoverFieldsNameTheField) {
  Writer w(Header{kLock, 1, 1, 0});
  w.U8(0).Str("RES").Str("");
  std::vector<uint8_t> f = Frame(w);
  {
    Reader r(absl::MakeConstSpan(f.data(), f.size() - 3));
    r.U8("mode");
    r.Str("resource", kMaxResource);
    EXPECT_THAT(r.Done().message(), HasSubstr("field resource"));
  }
  {
    Reader r(f);
    r.U8("mode");
    r.Str("resource", 2);
    EXPECT_THAT(r.Done().message(), HasSubstr("resource at offset 25 is 3 bytes, at most 2"));
  }
  {
    Reader r(f);
    r.U8("mode");
    EXPECT_THAT(r.Done().message(), HasSubstr("left over"));
  }
}

TEST(CfProtocolTest, NamesAreCheckedForLengthAndCharacters) {
  EXPECT_TRUE(CheckName("n", "DB2$A#1@x.y-z_", 16).ok());
  EXPECT_FALSE(CheckName("n", "", 16).ok());
  EXPECT_FALSE(CheckName("n", "ABCDEFGHIJKLMNOPQ", 16).ok());
  EXPECT_THAT(CheckName("connector name", std::string("A\0B", 3), 16).message(),
              HasSubstr("connector name"));
}

}  // namespace
}  // namespace hsi::cf::proto
