// The SSI cluster end to end (issue 18, items 1-3): two hsid members in a
// private etcd, guests as network namespaces with hsi-ifd interfaces on
// both members, hsi-relocate and hsictl cluster as real programs, and
// kill -9 of the command, of either hsid and of etcd in the middle of a
// relocation. Skips without root, /dev/net/tun, ip or etcd.
#include <signal.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "cluster_fixture.h"

namespace hsi::ssi_testing {
namespace {

using json = nlohmann::json;

TEST(ClusterConfigTest, BadClusterTableIsAClearErrorAtStart) {
  struct Case {
    std::string table, expect;
  };
  const Case cases[] = {
      {"[cluster]\netcd = \"http://127.0.0.1:1\"\n", "cluster.member: is missing"},
      {"[cluster]\nmember = \"VM 9\"\netcd = \"http://127.0.0.1:1\"\n", "cluster.member"},
      {"[cluster]\nmember = \"VM9\"\n", "cluster.etcd: is missing"},
      {"[cluster]\nmember = \"VM9\"\netcd = \"https://h:1\"\n", "is not an etcd endpoint"},
      {"[cluster]\nmember = \"VM9\"\netcd = \"http://h:1\"\nlease_ttl_s = 1\n", "cluster.lease_ttl_s: must be 2..60"},
      {"[cluster]\nmember = \"VM9\"\netcd = \"http://h:1\"\nwho = 1\n", "cluster.who: unknown key"},
  };
  for (const Case& c : cases) {
    Hsid h(c.table);
    Result r = Shell(absl::StrCat(hsi::testing::HsidPath(), " --socket ", h.dir(), "/x.sock --config ",
                                  h.config_path()));
    EXPECT_EQ(r.status, 2) << c.table << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, c.expect)) << "want '" << c.expect << "' in: " << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, h.config_path())) << r.out;  // names the file
  }
}

TEST_F(ClusterTest, MembersHoldLeasesAndADeadMemberIsSeen) {
  auto m = Members();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_GT(m["VM9"].lease, 0);
  EXPECT_EQ(m["VM9"].socket, vm9_->socket());
  ASSERT_EQ(m["VM2"].chpids.size(), 1u);
  EXPECT_EQ(m["VM2"].chpids[0].id, 0xF1u);
  vm2_->Stop(SIGKILL);
  // The lease (2 s) runs out: VM2 is seen gone.
  EXPECT_TRUE(Eventually([&] { return !Members().contains("VM2"); }, absl::Seconds(10)));
  // A relocation to a dead member is refused, naming it.
  Result r = Relocate("G1 --to VM2");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "member VM2 is not in the cluster")) << r.out;
  ASSERT_TRUE(vm2_->Start()) << vm2_->log();
  EXPECT_TRUE(Eventually([&] { return Members().contains("VM2"); }, absl::Seconds(10))) << vm2_->log();
  ExpectOn(guests_[0], "VM9");  // the restarted VM2 holds G1's re-attached NIC down
  // A SIGTERM'd member revokes its lease: seen gone at once, not after the TTL.
  vm2_->Stop(SIGTERM);
  EXPECT_FALSE(Members().contains("VM2"));
}

TEST_F(ClusterTest, RelocationMovesTheGuestsInterfaceAndNics) {
  Guest& g1 = guests_[0];
  Guest& g2 = guests_[1];
  ExpectOn(g1, "VM9");
  ExpectOn(g2, "VM9");
  ASSERT_TRUE(Eventually([&] { return Ping(g2, g1.hsi0); })) << "same-member HiperSockets";
  Result r = Relocate("G1 --to VM2");
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "hsi0 down")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "hsi1 up")) << r.out;
  ExpectOn(g1, "VM2");
  EXPECT_FALSE(Ping(g2, g1.hsi0)) << "VM9's HiperSockets reached a guest on VM2";
  // The rest of the workload group follows (LGREVACA LIT).
  r = Relocate("--evacuate LIT --to VM2");
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "relocated 1, not moved 0")) << r.out;
  ExpectOn(g2, "VM2");
  EXPECT_TRUE(Eventually([&] { return Ping(g2, g1.hsi1); })) << "VM2's HiperSockets after both moved";
  // hsictl shows where each guest is and the last outcome.
  Result st = Shell(absl::StrCat(HSICTL_PATH, " cluster --json --etcd ", etcd_.endpoints_text(), " --cluster ",
                                 cluster_));
  ASSERT_TRUE(st.ok()) << st.out;
  json j = json::parse(st.out);
  ASSERT_EQ(j["guests"].size(), 2u);
  EXPECT_EQ(j["guests"][0]["member"], "VM2");
  EXPECT_EQ(j["guests"][0]["interface"], "hsi1");
  EXPECT_EQ(j["guests"][0]["last_relocation"]["result"], "relocated");
  EXPECT_EQ(j["members"].size(), 2u);
  EXPECT_TRUE(j["relocations"].empty());
  // Log-on is one member at a time.
  r = Relocate("--logon G1 --to VM9");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(absl::StrContains(r.out, "already logged on to member VM2")) << r.out;
}

TEST_F(ClusterTest, WithoutAutomationTheOldInterfaceStaysUpAndReachesNoOne) {
  Guest& g1 = guests_[0];
  Guest& g2 = guests_[1];
  ASSERT_TRUE(Eventually([&] { return Ping(g2, g1.hsi0); }));
  Result r = Relocate("G1 --to VM2 --no-automation");
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_EQ(Residency("G1"), "VM2");
  // The paper's 5.4.1: hsi0 still looks up in the guest...
  EXPECT_TRUE(LinkUp(g1, "hsi0"));
  EXPECT_FALSE(LinkUp(g1, "hsi1"));
  // ...but VM9 no longer serves its NIC, so it reaches no one.
  EXPECT_TRUE(Eventually([&] { return NicState(*vm9_, g1.hsi0) == 0; }));
  EXPECT_FALSE(Ping(g2, g1.hsi0));
  EXPECT_FALSE(Ping(g1, g2.hsi0));
  // --recover puts the right interface up.
  r = Relocate("--recover G1");
  ASSERT_TRUE(r.ok()) << r.out;
  ExpectOn(g1, "VM2");
}

TEST_F(ClusterTest, RefusalNamesWhatIsMissing) {
  const std::string ns = guests_[0].ns->name();
  struct Case {
    std::string guest, hsi, to, expect;
  };
  const Case cases[] = {
      {"G3", "VM9:F0:hsi5:172.0.9.50/24", "VM2", "guest G3 has no HiperSockets interface for member VM2"},
      {"G4", "VM9:F0:hsi5:172.0.9.51/24,VM2:F1:hsi6:172.1.9.51/24", "VM2",
       "CHPID F1 of member VM2 does not allow LPAR G4"},
      {"G5", "VM9:F0:hsi5:172.0.9.52/24,VM2:F7:hsi6:172.1.9.52/24", "VM2", "member VM2 defines no CHPID F7"},
      {"G5", "", "VM7", "member VM7 is not in the cluster"},
  };
  for (const Case& c : cases) {
    if (!c.hsi.empty()) {
      ASSERT_TRUE(Relocate(absl::StrCat("--define ", c.guest, " --netns ", ns, " --hsi ", c.hsi)).ok());
      ASSERT_TRUE(Relocate(absl::StrCat("--logon ", c.guest, " --to VM9 --no-automation")).ok());
    }
    Result r = Relocate(absl::StrCat(c.guest, " --to ", c.to));
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, "refused")) << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, c.expect)) << "want '" << c.expect << "' in: " << r.out;
    EXPECT_EQ(Residency(c.guest), "VM9");
    auto v = View();
    ASSERT_TRUE(v.outcomes.contains(c.guest));
    EXPECT_EQ(v.outcomes[c.guest].result, "refused");
  }
}

// Runs a relocation of G1 to VM2 that stops itself after `step`; returns
// the stopped process (its log says so) for the test to kill or continue.
std::unique_ptr<Process> StartStopped(ClusterTest* t, const std::vector<std::string>& argv, const std::string& step,
                                      const std::string& log) {
  ::setenv("HSI_RELOCATE_STOP_AFTER", step.c_str(), 1);
  auto p = std::make_unique<Process>(argv, log);
  ::unsetenv("HSI_RELOCATE_STOP_AFTER");
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(p->log(), "stopped after step " + step); }))
      << p->log();
  (void)t;
  return p;
}

TEST_F(ClusterTest, KilledCommandAtEachStepIsRecoveredFromEtcd) {
  Guest& g1 = guests_[0];
  struct Case {
    std::string step, after;  // where the guest must end up
    bool explicit_recover;    // --recover, else the next relocation recovers first
  };
  const Case cases[] = {{"down", "VM9", true}, {"moved", "VM2", true}, {"up", "VM2", false}};
  std::string from = "VM9";
  for (const Case& c : cases) {
    const std::string to = from == "VM9" ? "VM2" : "VM9";
    auto p = StartStopped(this, RelocateArgv("G1", to), c.step, absl::StrCat(vm9_->dir(), "/reloc-", c.step, ".log"));
    EXPECT_TRUE(View().relocations.contains("G1")) << "step " << c.step;
    p->Stop(SIGKILL);
    const std::string expected = c.step == "down" ? from : to;
    if (c.explicit_recover) {
      Result r = Relocate("--recover G1");
      ASSERT_TRUE(r.ok()) << r.out;
      EXPECT_TRUE(absl::StrContains(r.out, "cleared the interrupted relocation")) << r.out;
      ExpectOn(g1, expected);
      from = expected;
    } else {
      // The next relocation finds the record, recovers, then moves.
      const std::string next = expected == "VM9" ? "VM2" : "VM9";
      Result r = Relocate(absl::StrCat("G1 --to ", next));
      ASSERT_TRUE(r.ok()) << r.out;
      EXPECT_TRUE(absl::StrContains(r.out, "recovered: ")) << r.out;
      ExpectOn(g1, next);
      from = next;
    }
    EXPECT_EQ(View().outcomes["G1"].result, c.explicit_recover ? "recovered" : "relocated");
  }
}

TEST_F(ClusterTest, KilledSourceHsidAtEachStepIsRecoveredFromEtcd) {
  Guest& g1 = guests_[0];
  Guest& g2 = guests_[1];
  for (const std::string step : {"down", "moved", "up"}) {
    const std::string from = Residency("G1"), to = from == "VM9" ? "VM2" : "VM9";
    Hsid& source = from == "VM9" ? *vm9_ : *vm2_;
    auto p = StartStopped(this, RelocateArgv("G1", to), step, absl::StrCat(vm9_->dir(), "/reloc-src-", step, ".log"));
    source.Stop(SIGKILL);
    ::kill(p->pid(), SIGCONT);
    // The move needs etcd and a live target, not the source.
    EXPECT_EQ(p->WaitExit(absl::Seconds(20)), 0) << step << ": " << p->log();
    ASSERT_TRUE(source.Start()) << source.log();
    // The hsi-ifds re-attach to the restarted source, which holds G1's NIC
    // down and serves G2's.
    ExpectOn(g1, to);
    ExpectOn(g2, "VM9");
  }
  // G1 is on VM2 after three moves; G2 joins it there over the restarted hsids.
  ASSERT_EQ(Residency("G1"), "VM2");
  Result r = Relocate("G2 --to VM2");
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_TRUE(Eventually([&] { return Ping(g2, g1.hsi1); })) << "VM2's HiperSockets after its hsid restarted";
}

TEST_F(ClusterTest, KilledTargetHsidMidRelocationIsRecoveredFromEtcd) {
  Guest& g1 = guests_[0];
  Guest& g2 = guests_[1];
  ASSERT_TRUE(Relocate("G1 --to VM2").ok());
  // The target member dies after the residency moved.
  auto p = StartStopped(this, RelocateArgv("G2", "VM2"), "moved", vm9_->dir() + "/reloc-b.log");
  vm2_->Stop(SIGKILL);
  ::kill(p->pid(), SIGCONT);
  EXPECT_EQ(p->WaitExit(absl::Seconds(20)), 0) << p->log();
  ASSERT_TRUE(vm2_->Start()) << vm2_->log();
  ExpectOn(g2, "VM2");
  ExpectOn(g1, "VM2");
  EXPECT_TRUE(Eventually([&] { return Ping(g2, g1.hsi1); })) << "VM2's HiperSockets after its hsid restarted\n"
                                                             << g1.ifd1->log() << g2.ifd1->log() << vm2_->log();
}

TEST_F(ClusterTest, KilledEtcdAtEachStepNeverLeavesAWrongInterfaceUp) {
  Guest& g1 = guests_[0];
  for (const std::string step : {"down", "moved", "up"}) {
    const std::string from = Residency("G1"), to = from == "VM9" ? "VM2" : "VM9";
    auto p = StartStopped(this, RelocateArgv("G1", to), step, absl::StrCat(vm9_->dir(), "/reloc-etcd-", step, ".log"));
    etcd_.Kill(0, SIGKILL);
    ::kill(p->pid(), SIGCONT);
    const int st = p->WaitExit(absl::Seconds(30));
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << step << ": " << st << p->log();
    EXPECT_TRUE(absl::StrContains(p->log(), "--recover G1")) << p->log();
    // While etcd is away: never the wrong interface up. Before the move
    // committed both are down; after it, the target's is up.
    const bool committed = step != "down";
    EXPECT_EQ(LinkUp(g1, from == "VM9" ? "hsi0" : "hsi1"), false) << step;
    EXPECT_EQ(LinkUp(g1, to == "VM9" ? "hsi0" : "hsi1"), committed) << step;
    ASSERT_TRUE(etcd_.StartNode(0));
    ASSERT_TRUE(etcd_.WaitReady(absl::Seconds(20)));
    Result r = Relocate("--recover G1");
    ASSERT_TRUE(r.ok()) << r.out;
    ExpectOn(g1, committed ? to : from);
  }
  // The members rejoin (their leases may have expired meanwhile) and the
  // next relocation works.
  EXPECT_TRUE(Eventually([&] { return Members().size() == 2; }, absl::Seconds(15)));
  const std::string to = Residency("G1") == "VM9" ? "VM2" : "VM9";
  Result r = Relocate("G1 --to " + to);
  ASSERT_TRUE(r.ok()) << r.out;
  ExpectOn(g1, to);
}

}  // namespace
}  // namespace hsi::ssi_testing
