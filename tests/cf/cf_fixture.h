// tests/cf/cf_fixture.h: the fixture of the hsi-cf end-to-end tests: a
// private hsid, hsi-cf on a policy with two lock structures and a list
// structure, two cache structures (store-in and directory-only), and
// connectors opened on it (CfTest::Open).
//
// Thread safety: gtest's; one test at a time.
#ifndef HSI_TESTS_CF_FIXTURE_H_
#define HSI_TESTS_CF_FIXTURE_H_

#include <memory>
#include <string>

#include "hsi/testing/cf_process.h"
#include "gtest/gtest.h"
#include "hsi/cf.h"
#include "hsi/testing/hsid.h"

namespace hsi::cf {

using ::hsi::testing::CfProcess;
using ::hsi::testing::Hsid;

inline constexpr char kPolicy[] = R"(
[cf]
lpar = "CF01"
chpid = "F0"

[[structure]]
name = "LOCK1"
type = "lock"
entries = 64
lpars = ["DB2A", "DB2B", "DB2C"]

[[structure]]
name = "LOCK2"
type = "lock"
entries = 2
lpars = ["DB2C"]

[[structure]]
name = "IXCSIG1"
type = "list"
entries = 100
lists = 4
max_data = 64
lpars = ["*"]

[[structure]]
name = "GBP1"
type = "cache"
entries = 64
max_data = 64
vector = 128
lpars = ["*"]

[[structure]]
name = "DIR1"
type = "cache"
entries = 8
max_data = 0
vector = 8
lpars = ["*"]
)";

inline absl::Time In(absl::Duration d) { return absl::Now() + d; }

class CfTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(hsid_.Start()) << hsid_.log();
    cf_ = std::make_unique<CfProcess>(hsid_, kPolicy, CfFlag());
    ASSERT_TRUE(cf_->ready()) << cf_->log() << hsid_.log();
  }
  // An extra hsi-cf flag (a fixture for fault injection overrides it).
  virtual std::string CfFlag() const { return ""; }
  absl::StatusOr<CfClient> Open(const std::string& lpar) {
    CfClientOptions o;
    o.socket_path = hsid_.socket();
    o.lpar = lpar;
    o.chpid = 0xF0;
    o.cf = cf_->address();
    return CfClient::Open(std::move(o));
  }
  Hsid hsid_;
  std::unique_ptr<CfProcess> cf_;
};

}  // namespace hsi::cf

#endif  // HSI_TESTS_CF_FIXTURE_H_
