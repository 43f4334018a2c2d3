// hsid as an SSI cluster member (daemon/cluster.h) with libhsi clients, no
// network namespaces: a guest's NIC is served only by the member it is
// logged on to, an admin cannot raise it elsewhere, an LPAR that is no
// guest is served as by a lone hsid, and a member's lease follows its
// hsid. Needs etcd only (skips without it); runs under ASan and TSan too
// (label "sanitize"): the member's etcd thread hands its view to the event
// loop through a mutex and an eventfd.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "etcd_server.h"
#include "gtest/gtest.h"
#include "hsi/admin.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/ssi/cluster.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/program.h"

namespace hsi::ssi_testing {
namespace {

using hsi::testing::Eventually;

std::string Config(const std::string& member, const std::string& chpid, const std::string& subnet,
                   const std::string& etcd, const std::string& cluster) {
  return absl::StrCat("[[chpid]]\nid = \"", chpid, "\"\nsubnet = \"", subnet,
                      "\"\n\n[[lpar]]\nname = \"*\"\nuids = [\"self\"]\n\n[cluster]\nname = \"", cluster,
                      "\"\nmember = \"", member, "\"\netcd = \"", etcd, "\"\n");
}

// NIC `a` on the hsid at `socket`: 1 up, 0 down, -1 absent.
int NicState(const std::string& socket, hsi::Address a) {
  auto admin = hsi::AdminClient::Connect(socket);
  if (!admin.ok()) return -1;
  auto nics = admin->ListNics();
  if (!nics.ok()) return -1;
  for (const hsi::NicListing& n : *nics) {
    if (n.address == a) return n.up ? 1 : 0;
  }
  return -1;
}

TEST(SsiMemberTest, GuestNicIsServedOnlyWhereItIsLoggedOn) {
  if (std::string why = MissingEtcd(); !why.empty()) GTEST_SKIP() << why;
  EtcdServer etcd;
  ASSERT_TRUE(etcd.Start()) << etcd.dir();
  const std::string cluster = absl::StrCat("m", ::getpid());
  const ssi::Keys keys(cluster);
  auto c = ssi::EtcdClient::Create({etcd.endpoints(), absl::Seconds(2)});
  ASSERT_TRUE(c.ok());
  ssi::GuestRecord g{"G", "LIT", "nsg", "10.20.7.100",
                     {{"VM9", 0xF0, "hsi0", "10.1.0.10/24"}, {"VM2", 0xF1, "hsi1", "10.2.0.10/24"}}};
  ASSERT_TRUE(c->Put(keys.Guest("G"), ssi::ToJson(g)).ok());
  ASSERT_TRUE(c->Put(keys.Residency("G"), "VM9").ok());

  testing::Hsid vm9(Config("VM9", "F0", "10.1.0.0/24", etcd.endpoints_text(), cluster));
  testing::Hsid vm2(Config("VM2", "F1", "10.2.0.0/24", etcd.endpoints_text(), cluster));
  ASSERT_TRUE(vm9.Start()) << vm9.log();
  ASSERT_TRUE(vm2.Start()) << vm2.log();

  auto g9 = hsi::Session::Connect({.socket_path = vm9.socket(), .lpar = "G"});
  auto g2 = hsi::Session::Connect({.socket_path = vm2.socket(), .lpar = "G"});
  auto p = hsi::Session::Connect({.socket_path = vm9.socket(), .lpar = "P"});  // not a guest
  ASSERT_TRUE(g9.ok() && g2.ok() && p.ok());
  auto nic_g9 = g9->AttachNic(0xF0);
  auto nic_g2 = g2->AttachNic(0xF1);
  auto nic_p = p->AttachNic(0xF0);
  ASSERT_TRUE(nic_g9.ok() && nic_g2.ok() && nic_p.ok()) << nic_g9.status() << nic_g2.status() << nic_p.status();
  const hsi::Address a9 = nic_g9->address(), a2 = nic_g2->address(), ap = nic_p->address();
  EXPECT_TRUE(Eventually([&] {
    return NicState(vm9.socket(), a9) == 1 && NicState(vm2.socket(), a2) == 0 && NicState(vm9.socket(), ap) == 1;
  })) << vm9.log() << vm2.log();

  // P reaches G on VM9, where G is logged on.
  const uint8_t frame[] = {1, 2, 3, 4};
  std::atomic<bool> got{false};
  std::thread receiver([&] {
    uint8_t buf[64];
    auto r = nic_g9->Receive(absl::MakeSpan(buf), hsi::Wait::Block(absl::Now() + absl::Seconds(10)));
    got = r.ok() && r->length == sizeof(frame) && r->source == ap;
  });
  EXPECT_TRUE(nic_p->SendTo(a9, frame, hsi::Wait::Block(absl::Now() + absl::Seconds(10))).ok());
  receiver.join();
  EXPECT_TRUE(got);

  // G logs on to VM2 instead (one transaction): VM9 holds its NIC down, VM2 raises it.
  auto moved = c->Txn({ssi::Compare::ValueIs(keys.Residency("G"), "VM9")}, {ssi::Op::Put(keys.Residency("G"), "VM2")});
  ASSERT_TRUE(moved.ok() && *moved);
  EXPECT_TRUE(Eventually([&] { return NicState(vm9.socket(), a9) == 0 && NicState(vm2.socket(), a2) == 1; }))
      << vm9.log() << vm2.log();
  EXPECT_TRUE(absl::StrContains(vm9.log(), "guest G is logged on to member VM2, not VM9")) << vm9.log();
  EXPECT_FALSE(nic_p->SendTo(a9, frame, hsi::Wait::Block(absl::Now() + absl::Milliseconds(500))).ok());
  EXPECT_EQ(NicState(vm9.socket(), ap), 1) << "an LPAR that is no guest stays served";
  // An admin cannot bring it up on the wrong member.
  auto admin = hsi::AdminClient::Connect(vm9.socket());
  ASSERT_TRUE(admin.ok());
  const absl::Status up = admin->SetNicState(a9, true);
  EXPECT_EQ(up.code(), absl::StatusCode::kFailedPrecondition) << up;
  EXPECT_TRUE(absl::StrContains(up.message(), "logged on to member VM2")) << up;

  // Members hold leases; one stopped by SIGTERM is gone at once.
  EXPECT_TRUE(c->Get(keys.Member("VM2")).ok());
  const int st = vm2.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st << vm2.log();
  EXPECT_EQ(c->Get(keys.Member("VM2")).status().code(), absl::StatusCode::kNotFound) << vm2.log();
}

TEST(SsiMemberTest, MemberWithoutEtcdServesNoNicUntilEtcdAnswers) {
  if (std::string why = MissingEtcd(); !why.empty()) GTEST_SKIP() << why;
  EtcdServer etcd;  // not started yet
  const std::string cluster = absl::StrCat("n", ::getpid());
  testing::Hsid vm9(Config("VM9", "F0", "10.1.0.0/24", etcd.endpoints_text(), cluster));
  ASSERT_TRUE(vm9.Start()) << vm9.log();
  auto p = hsi::Session::Connect({.socket_path = vm9.socket(), .lpar = "P"});
  ASSERT_TRUE(p.ok());
  auto nic = p->AttachNic(0xF0);
  ASSERT_TRUE(nic.ok());
  // It cannot know whether P is a guest logged on elsewhere.
  EXPECT_TRUE(Eventually([&] { return NicState(vm9.socket(), nic->address()) == 0; }));
  ASSERT_TRUE(etcd.Start());
  EXPECT_TRUE(Eventually([&] { return NicState(vm9.socket(), nic->address()) == 1; }, absl::Seconds(15)))
      << vm9.log();
}

}  // namespace
}  // namespace hsi::ssi_testing
