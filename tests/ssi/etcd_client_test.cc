// hsi::ssi::EtcdClient (ssi/include/hsi/ssi/etcd.h) against a real etcd:
// keys, prefixes, transactions, leases, unreachable endpoints and, in a
// three-node cluster, a node's death. Skips without etcd.
#include "hsi/ssi/etcd.h"

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "etcd_server.h"
#include "gtest/gtest.h"
#include "hsi/ssi/cluster.h"
#include "hsi/testing/program.h"

namespace {

using hsi::ssi::Compare;
using hsi::ssi::EtcdClient;
using hsi::ssi::Op;
using hsi::ssi_testing::EtcdServer;
using hsi::testing::Eventually;

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = hsi::ssi_testing::MissingEtcd(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(etcd_.Start()) << "etcd did not start; see " << etcd_.dir();
    auto c = EtcdClient::Create({etcd_.endpoints(), absl::Seconds(2)});
    ASSERT_TRUE(c.ok()) << c.status();
    client_.emplace(std::move(*c));
  }
  EtcdServer etcd_;
  std::optional<EtcdClient> client_;
};

TEST_F(EtcdClientTest, PutGetRangeDelete) {
  EtcdClient& c = *client_;
  ASSERT_TRUE(c.Put("/t/a/1", "one").ok());
  ASSERT_TRUE(c.Put("/t/a/2", std::string("two\0bytes", 9)).ok());
  ASSERT_TRUE(c.Put("/t/b", "other").ok());
  auto kv = c.Get("/t/a/2");
  ASSERT_TRUE(kv.ok()) << kv.status();
  EXPECT_EQ(kv->value, std::string("two\0bytes", 9));
  EXPECT_GT(kv->create_revision, 0);
  auto r = c.RangePrefix("/t/a/");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].key, "/t/a/1");
  EXPECT_EQ((*r)[1].key, "/t/a/2");
  ASSERT_TRUE(c.Delete("/t/a/1").ok());
  EXPECT_EQ(c.Get("/t/a/1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(c.Delete("/t/never").ok());
}

TEST_F(EtcdClientTest, TxnComparesAtomically) {
  EtcdClient& c = *client_;
  // Create only if absent: the second one must lose.
  auto first = c.Txn({Compare::Absent("/t/res/G")}, {Op::Put("/t/res/G", "VM9")});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(*first);
  auto second = c.Txn({Compare::Absent("/t/res/G")}, {Op::Put("/t/res/G", "VM2")}, {Op::Put("/t/lost", "yes")});
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*second);
  EXPECT_EQ(c.Get("/t/res/G")->value, "VM9");
  EXPECT_EQ(c.Get("/t/lost")->value, "yes");  // the failure ops ran
  // Move only from the value we saw.
  EXPECT_FALSE(*c.Txn({Compare::ValueIs("/t/res/G", "VM2")}, {Op::Put("/t/res/G", "VM7")}));
  EXPECT_TRUE(*c.Txn({Compare::ValueIs("/t/res/G", "VM9"), Compare::Present("/t/lost")},
                     {Op::Put("/t/res/G", "VM2"), Op::Delete("/t/lost")}));
  EXPECT_EQ(c.Get("/t/res/G")->value, "VM2");
  EXPECT_EQ(c.Get("/t/lost").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EtcdClientTest, LeasedKeyGoesWhenTheLeaseExpires) {
  EtcdClient& c = *client_;
  auto lease = c.Grant(2);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(c.Put("/t/member/VM9", "alive", *lease).ok());
  EXPECT_EQ(c.Get("/t/member/VM9")->lease, *lease);
  EXPECT_TRUE(c.KeepAlive(*lease).ok());
  // No more keep-alives: etcd drops the key within the TTL (plus its
  // expiry check interval).
  EXPECT_TRUE(Eventually([&] { return c.Get("/t/member/VM9").status().code() == absl::StatusCode::kNotFound; },
                         absl::Seconds(10)));
  EXPECT_EQ(c.KeepAlive(*lease).code(), absl::StatusCode::kNotFound);
  // A revoked lease takes its key at once.
  auto l2 = c.Grant(30);
  ASSERT_TRUE(l2.ok());
  ASSERT_TRUE(c.Put("/t/member/VM2", "alive", *l2).ok());
  ASSERT_TRUE(c.Revoke(*l2).ok());
  EXPECT_EQ(c.Get("/t/member/VM2").status().code(), absl::StatusCode::kNotFound);
}

TEST(EtcdClientErrors, UnreachableEndpointIsUnavailableAndNamed) {
  const int port = hsi::ssi_testing::FreePort();
  const std::string ep = absl::StrCat("http://127.0.0.1:", port);
  auto c = EtcdClient::Create({{ep}, absl::Milliseconds(300)});
  ASSERT_TRUE(c.ok());
  const absl::Status s = c->Put("/x", "y");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), ep)) << s;
  EXPECT_FALSE(EtcdClient::Create({{}, absl::Seconds(1)}).ok());
}

TEST(EtcdClientErrors, EndpointListsAreChecked) {
  EXPECT_TRUE(hsi::ssi::ParseEndpoints("--etcd", "http://a:1,http://b:2").ok());
  auto bad = hsi::ssi::ParseEndpoints("--etcd", "https://a:1");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "--etcd: 'https://a:1'")) << bad.status();
  EXPECT_FALSE(hsi::ssi::ParseEndpoints("--etcd", "").ok());
  EXPECT_FALSE(hsi::ssi::ParseEndpoints("--etcd", "http://a:1/v3").ok());
}

// Three nodes: with one killed, the client goes on through the others.
TEST(EtcdThreeNodes, ClientSurvivesANodesDeath) {
  if (std::string why = hsi::ssi_testing::MissingEtcd(); !why.empty()) GTEST_SKIP() << why;
  EtcdServer etcd(3);
  ASSERT_TRUE(etcd.Start()) << "etcd cluster did not start; see " << etcd.dir();
  auto c = EtcdClient::Create({etcd.endpoints(), absl::Seconds(1)});
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Put("/t/k", "before").ok());
  etcd.Kill(0, SIGKILL);  // the first endpoint, the one the client prefers
  // Two of three still form a quorum; the write goes through another node.
  EXPECT_TRUE(Eventually([&] { return c->Put("/t/k", "after").ok(); }, absl::Seconds(10)));
  auto kv = c->Get("/t/k");
  ASSERT_TRUE(kv.ok()) << kv.status();
  EXPECT_EQ(kv->value, "after");
  auto won = c->Txn({Compare::ValueIs("/t/k", "after")}, {Op::Put("/t/k", "txn")});
  ASSERT_TRUE(won.ok()) << won.status();
  EXPECT_TRUE(*won);
}

}  // namespace
