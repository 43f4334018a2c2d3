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

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hsi/cf.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/cf_process.h"
#include "hsi/testing/hsid.h"
#include "protocol.h"

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

// An LPAR with a NIC on CHPID F0 and a link to the CF that speaks raw
// frames (a hostile connector), or just holds a NIC (memory grants).
struct RawConnector {
  Session session;
  Nic nic;
  hsi::Link link;
  // Sends `frame` and returns the CF's answer: "OK" (the reply's header in
  // *reply) or "CODE: message"; a transport failure as its status.
  std::string Ask(absl::Span<const uint8_t> frame, proto::Header* reply = nullptr) {
    if (absl::Status st = link.Send(frame, Wait::Block(In(absl::Seconds(5)))); !st.ok())
      return st.ToString();
    std::vector<uint8_t> buf(16384);
    absl::StatusOr<size_t> n = link.Receive(absl::MakeSpan(buf), Wait::Block(In(absl::Seconds(5))));
    if (!n.ok()) return n.status().ToString();
    buf.resize(*n);
    absl::StatusOr<proto::Header> h = proto::ParseHeader(buf);
    if (!h.ok()) return "bad reply header";
    if (reply != nullptr) *reply = *h;
    if (h->status == 0) return "OK";
    proto::Reader r(buf);
    return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(h->status)), ": ",
                        r.Str("message", 1024));
  }
  std::string Ask(const proto::Writer& w, proto::Header* reply = nullptr) {
    return Ask(w.frame(), reply);
  }
};

// LPAR `lpar` of `hsid` with a NIC on CHPID F0 and a raw link to the CF at `cf`.
inline absl::StatusOr<RawConnector> OpenRawConnector(const Hsid& hsid, const std::string& lpar,
                                                     Address cf) {
  SessionOptions so;
  so.socket_path = hsid.socket();
  so.lpar = lpar;
  RawConnector c;
  absl::StatusOr<Session> s = Session::Connect(std::move(so));
  if (!s.ok()) return s.status();
  c.session = std::move(*s);
  absl::StatusOr<Nic> nic = c.session.AttachNic(0xF0);
  if (!nic.ok()) return nic.status();
  c.nic = std::move(*nic);
  absl::StatusOr<hsi::Link> link = c.nic.Link(cf, Wait::Adaptive(In(absl::Seconds(5))));
  if (!link.ok()) return link.status();
  c.link = std::move(*link);
  return c;
}

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
  absl::StatusOr<RawConnector> OpenRaw(const std::string& lpar) {
    return OpenRawConnector(hsid_, lpar, cf_->address());
  }
  Hsid hsid_;
  std::unique_ptr<CfProcess> cf_;
};

}  // namespace hsi::cf

#endif  // HSI_TESTS_CF_FIXTURE_H_
