// tests/ssi/cluster_fixture.h: an SSI cluster for one test: a private etcd,
// two hsid members VM9 (CHPID F0, 172.0.9.0/24) and VM2 (CHPID F1,
// 172.1.9.0/24, open to guests G1..G3 only), and guests G1 and G2, each a
// network namespace with hsi0 (an hsi-ifd on VM9's F0) and hsi1 (on VM2's
// F1), defined in the directory (group LIT) and logged on to VM9. Every
// name carries the test's pid; everything is removed by the destructors.
// Needs root, /dev/net/tun, ip and etcd; SetUp skips with the reason.
#ifndef HSI_TESTS_SSI_CLUSTER_FIXTURE_H_
#define HSI_TESTS_SSI_CLUSTER_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "../ifd/ifd_util.h"
#include "absl/strings/str_cat.h"
#include "etcd_server.h"
#include "gtest/gtest.h"
#include "hsi/admin.h"
#include "hsi/ssi/cluster.h"
#include "hsi/ssi/etcd.h"

namespace hsi::ssi_testing {

using ifd_testing::Eventually;
using ifd_testing::Netns;
using ifd_testing::Process;
using ifd_testing::Result;
using ifd_testing::Shell;
using testing::Hsid;

inline std::string MemberConfig(const std::string& member, const std::string& chpid, const std::string& subnet,
                                const std::string& lpars, const std::string& etcd, const std::string& cluster) {
  return absl::StrCat("[[chpid]]\nid = \"", chpid, "\"\nsubnet = \"", subnet, "\"\nlpars = ", lpars,
                      "\n\n[[lpar]]\nname = \"*\"\nuids = [\"self\"]\n\n[cluster]\nname = \"", cluster,
                      "\"\nmember = \"", member, "\"\netcd = \"", etcd, "\"\n");
}

class ClusterTest : public ::testing::Test {
 protected:
  struct Guest {
    std::string name;
    std::unique_ptr<Netns> ns;
    std::string hsi0, hsi1;  // addresses
    std::unique_ptr<Process> ifd0, ifd1;
  };

  void SetUp() override {
    if (std::string why = ifd_testing::MissingPrerequisite(); !why.empty()) GTEST_SKIP() << why;
    if (std::string why = MissingEtcd(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(etcd_.Start()) << "etcd did not start; see " << etcd_.dir();
    cluster_ = absl::StrCat("t", ::getpid());
    auto c = ssi::EtcdClient::Create({etcd_.endpoints(), absl::Seconds(2)});
    ASSERT_TRUE(c.ok());
    client_.emplace(std::move(*c));
    vm9_ = std::make_unique<Hsid>(
        MemberConfig("VM9", "F0", "172.0.9.0/24", "[\"*\"]", etcd_.endpoints_text(), cluster_));
    vm2_ = std::make_unique<Hsid>(
        MemberConfig("VM2", "F1", "172.1.9.0/24", "[\"G1\", \"G2\", \"G3\"]", etcd_.endpoints_text(), cluster_));
    ASSERT_TRUE(vm9_->Start()) << vm9_->log();
    ASSERT_TRUE(vm2_->Start()) << vm2_->log();
    ASSERT_TRUE(Eventually([&] { return Members().size() == 2; })) << vm9_->log() << vm2_->log();
    for (int i = 0; i < 2; ++i) {
      AddGuest(absl::StrCat("G", i + 1), absl::StrCat("172.0.9.", 100 + i), absl::StrCat("172.1.9.", 100 + i));
    }
  }

  void AddGuest(const std::string& name, const std::string& a0, const std::string& a1) {
    Guest g;
    g.name = name;
    g.ns = std::make_unique<Netns>();
    ASSERT_TRUE(g.ns->made());
    g.hsi0 = a0;
    g.hsi1 = a1;
    const std::string dir = vm9_->dir();
    g.ifd0 = std::make_unique<Process>(
        std::vector<std::string>{HSI_IFD_PATH, "--lpar", name, "--chpid", "F0", "--netns", g.ns->name(), "--ifname",
                                 "hsi0", "--address", a0, "--socket", vm9_->socket()},
        absl::StrCat(dir, "/ifd-", name, "-0.log"));
    g.ifd1 = std::make_unique<Process>(
        std::vector<std::string>{HSI_IFD_PATH, "--lpar", name, "--chpid", "F1", "--netns", g.ns->name(), "--ifname",
                                 "hsi1", "--address", a1, "--socket", vm2_->socket()},
        absl::StrCat(dir, "/ifd-", name, "-1.log"));
    Netns* ns = g.ns.get();
    ASSERT_TRUE(Eventually([&] { return ns->Exec("ip link show hsi0").ok() && ns->Exec("ip link show hsi1").ok(); }))
        << g.ifd0->log() << g.ifd1->log();
    Result def = Relocate(absl::StrCat("--define ", name, " --netns ", ns->name(), " --group LIT --vipa 10.20.7.",
                                       100 + guests_.size(), " --hsi VM9:F0:hsi0:", a0, "/24,VM2:F1:hsi1:", a1, "/24"));
    ASSERT_TRUE(def.ok()) << def.out;
    Result on = Relocate(absl::StrCat("--logon ", name, " --to VM9"));
    ASSERT_TRUE(on.ok()) << on.out;
    guests_.push_back(std::move(g));
  }

  // hsi-relocate with this cluster's etcd.
  Result Relocate(const std::string& args, const std::string& env = "") {
    return Shell(absl::StrCat(env, " ", HSI_RELOCATE_PATH, " --etcd ", etcd_.endpoints_text(), " --cluster ",
                              cluster_, " ", args));
  }
  std::vector<std::string> RelocateArgv(const std::string& guest, const std::string& to) {
    return {HSI_RELOCATE_PATH, "--etcd", etcd_.endpoints_text(), "--cluster", cluster_, guest, "--to", to};
  }

  std::map<std::string, ssi::MemberRecord> Members() {
    auto v = ssi::ReadCluster(*client_, ssi::Keys(cluster_));
    return v.ok() ? v->members : std::map<std::string, ssi::MemberRecord>{};
  }
  ssi::ClusterView View() {
    auto v = ssi::ReadCluster(*client_, ssi::Keys(cluster_));
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : ssi::ClusterView{};
  }
  std::string Residency(const std::string& g) {
    auto kv = client_->Get(ssi::Keys(cluster_).Residency(g));
    return kv.ok() ? kv->value : "";
  }
  // Whether `ifname` in guest `g`'s namespace is administratively up.
  bool LinkUp(const Guest& g, const std::string& ifname) {
    Result r = g.ns->Exec("ip -o link show dev " + ifname);
    return r.ok() && r.out.find(",UP") != std::string::npos;
  }
  // NIC `address` on `hsid`: 1 up, 0 down, -1 not there (or hsid away).
  int NicState(Hsid& hsid, const std::string& address) {
    auto admin = hsi::AdminClient::Connect(hsid.socket());
    if (!admin.ok()) return -1;
    auto nics = admin->ListNics();
    if (!nics.ok()) return -1;
    for (const hsi::NicListing& n : *nics) {
      if (n.address.ToString() == address) return n.up ? 1 : 0;
    }
    return -1;
  }
  bool Ping(const Guest& from, const std::string& to) {
    return from.ns->Exec("ping -c 1 -W 1 " + to).ok();
  }
  // The invariant: `g` is logged on to exactly `member` in etcd,
  // exactly that member's interface is up in its namespace, and only that
  // member's hsid serves its NIC. Waits for the hsids to apply etcd.
  void ExpectOn(const Guest& g, const std::string& member) {
    EXPECT_EQ(Residency(g.name), member);
    EXPECT_EQ(LinkUp(g, "hsi0"), member == "VM9") << g.name << " hsi0";
    EXPECT_EQ(LinkUp(g, "hsi1"), member == "VM2") << g.name << " hsi1";
    EXPECT_TRUE(Eventually([&] {
      return NicState(*vm9_, g.hsi0) == (member == "VM9" ? 1 : 0) &&
             NicState(*vm2_, g.hsi1) == (member == "VM2" ? 1 : 0);
    })) << g.name << ": VM9 NIC " << NicState(*vm9_, g.hsi0) << ", VM2 NIC " << NicState(*vm2_, g.hsi1);
    EXPECT_FALSE(View().relocations.contains(g.name)) << "a relocation record of " << g.name << " is left";
  }

  EtcdServer etcd_;
  std::string cluster_;
  std::optional<ssi::EtcdClient> client_;
  std::unique_ptr<Hsid> vm9_, vm2_;
  // Declared last: the hsi-ifds go first, then the hsids, then etcd.
  std::vector<Guest> guests_;
};

}  // namespace hsi::ssi_testing

#endif  // HSI_TESTS_SSI_CLUSTER_FIXTURE_H_
