// hsictl's CTC and ISFC commands as a user runs them: isfc-plan prints the
// issue's D000-D00F example exactly (table and --json), and define-ctc,
// ctcs and undefine-ctc work against a private hsid; bad arguments are
// usage errors (exit 2) that name what is wrong.
#include <sys/wait.h>

#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/ctc_host.h"
#include "hsi/isfc.h"
#include "hsi/testing/ctc_hosts.h"
#include "hsi/testing/hsid.h"
#include "nlohmann/json.hpp"

namespace {

using ::hsi::testing::Hsid;
using ::testing::HasSubstr;
using json = nlohmann::json;

struct Out {
  int code = -1;
  std::string text;  // stdout and stderr
};

// Starts hsictl with `args` (shell words, no user input); Finish() reads it.
FILE* StartHsictl(const std::string& args) {
  const std::string cmd = absl::StrCat(HSI_TOOLS_DIR, "/hsictl ", args, " 2>&1");
  return ::popen(cmd.c_str(), "r");
}

// The exit status and output of an hsictl StartHsictl() started.
Out Finish(FILE* p) {
  Out o;
  if (p == nullptr) return o;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) o.text.append(buf, n);
  const int st = ::pclose(p);
  o.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return o;
}

// Runs hsictl with `args` and returns its exit status and output.
Out Hsictl(const std::string& args) { return Finish(StartHsictl(args)); }

// Runs hsictl expecting it to fail with exit status `code` and `text` in its output.
void ExpectFails(const std::string& args, int code, const std::string& text) {
  const Out o = Hsictl(args);
  EXPECT_EQ(o.code, code) << args << ": " << o.text;
  EXPECT_THAT(o.text, HasSubstr(text)) << args;
}

// Runs two hsictls at once (each side of an ISFC link waits for the other).
std::pair<Out, Out> HsictlBoth(const std::string& a, const std::string& b) {
  FILE* pa = StartHsictl(a);
  FILE* pb = StartHsictl(b);
  Out oa = Finish(pa);
  return {oa, Finish(pb)};
}

TEST(HsictlCtcTest, IsfcPlanPrintsTheIssuesExampleExactly) {
  const Out o = Hsictl("isfc-plan LPAR1 LPAR2 D000-D00F");
  ASSERT_EQ(o.code, 0) << o.text;
  std::vector<std::string> lines = absl::StrSplit(o.text, '\n');
  ASSERT_GE(lines.size(), 19u) << o.text;
  EXPECT_EQ(lines[0], "LPAR1 writes: D000 D001 D002 D003 D004 D005 D006 D007 D008 D009 D00A D00B D00C D00D");
  EXPECT_EQ(lines[1], "LPAR2 writes: D00F D00E D00D D00C D00B D00A D009 D008 D007 D006 D005 D004 D003 D002");
  EXPECT_THAT(lines[3], HasSubstr("D000    LPAR1 "));
  EXPECT_THAT(lines[3], HasSubstr("LPAR1 only"));
  EXPECT_THAT(lines[18], HasSubstr("D00F    LPAR2 "));
  EXPECT_THAT(lines[18], HasSubstr("LPAR2 only"));

  const Out j = Hsictl("isfc-plan LPAR2 LPAR1 D000-D00F --json");
  ASSERT_EQ(j.code, 0) << j.text;
  const json doc = json::parse(j.text);
  EXPECT_EQ(doc["usable"], 14);
  EXPECT_EQ(doc["self_order"][0], "D00F");
  EXPECT_EQ(doc["self_order"][13], "D002");
  EXPECT_EQ(doc["peer_order"][13], "D00D");
  EXPECT_EQ(doc["devices"][0]["writers"], json::array({"LPAR1"}));
  EXPECT_EQ(doc["devices"][5]["writers"], json::array({"LPAR2", "LPAR1"}));

  const Out bad = Hsictl("isfc-plan LPAR1 LPAR1 D000-D001");
  EXPECT_EQ(bad.code, 2) << bad.text;
  EXPECT_THAT(bad.text, HasSubstr("same system name"));
  EXPECT_THAT(Hsictl("isfc-plan LPAR1 LPAR2 D000-D010").text, HasSubstr("17 devices"));
}

TEST(HsictlCtcTest, DefinesListsAndUndefinesCtcsAtHsid) {
  Hsid d;
  ASSERT_TRUE(d.Start()) << d.log();
  const std::string sock = absl::StrCat("--socket ", d.socket(), " ");
  Out o = Hsictl(sock + "define-ctc LPAR1:D000-D003 LPAR2:E000-E003 --recovery-us 500");
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_THAT(o.text, HasSubstr("4 device(s)"));
  o = Hsictl(sock + "ctcs --json");
  ASSERT_EQ(o.code, 0) << o.text;
  json doc = json::parse(o.text);
  ASSERT_EQ(doc["ctcs"].size(), 4u);
  EXPECT_EQ(doc["ctcs"][3]["device_a"], "D003");
  EXPECT_EQ(doc["ctcs"][3]["device_b"], "E003");
  EXPECT_EQ(doc["ctcs"][0]["recovery_us"], 500);
  EXPECT_EQ(doc["ctcs"][0]["state_a"], "closed");
  o = Hsictl(sock + "ctcs");
  EXPECT_THAT(o.text, HasSubstr("LPAR1  D002   LPAR2  E002"));

  ExpectFails(sock + "define-ctc LPAR1:D003 LPAR2:F000", 1, "LPAR LPAR1 already has CTC device D003");
  o = Hsictl(sock + "undefine-ctc LPAR1:D002");
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_EQ(json::parse(Hsictl(sock + "ctcs --json").text)["ctcs"].size(), 3u);

  o = Hsictl(sock + "define-ctc LPAR1:D000-D001 LPAR2:E000");
  EXPECT_EQ(o.code, 2) << o.text;
  EXPECT_THAT(o.text, HasSubstr("same number of devices"));
  EXPECT_EQ(Hsictl(sock + "define-ctc LPAR1 LPAR2:E000").code, 2);
  EXPECT_EQ(Hsictl(sock + "define-ctc LPAR1:D000 LPAR2:E000 --recovery-us x").code, 2);
}

// Two LPARs (this process, two CtcHosts) activate an ISFC link over
// D000-D00F with hsid knowing it: `hsictl isfc` shows the issue's
// assignment on the live link, with the writes each device carried.
TEST(HsictlCtcTest, IsfcShowsALiveLinksDevicesWritersAndCounters) {
  Hsid d(hsi::testing::CtcConfig("devices = \"D000-D00F\""));
  ASSERT_TRUE(d.Start()) << d.log();
  auto h1 = hsi::testing::ConnectCtcHost(d.socket(), "LPAR1").value();
  auto h2 = hsi::testing::ConnectCtcHost(d.socket(), "LPAR2").value();
  std::vector<std::shared_ptr<hsi::CtcDevice>> one, two;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  for (uint16_t i = 0; i < 16; ++i) {
    const hsi::DeviceNumber n(0xD000 + i);
    auto [a, b] = hsi::testing::OpenBothEnds(*h1, n, *h2, n, deadline).value();
    one.push_back(a);
    two.push_back(b);
  }
  auto l1 = hsi::IsfcLink::Activate({.self = "LPAR1", .peer = "LPAR2", .host = h1.get()}, one).value();
  auto l2 = hsi::IsfcLink::Activate({.self = "LPAR2", .peer = "LPAR1", .host = h2.get()}, two).value();
  ASSERT_TRUE(l1->WaitActive(deadline).ok());
  ASSERT_TRUE(l2->WaitActive(deadline).ok());
  ASSERT_TRUE(l1->Send(std::vector<uint8_t>(100, 1), deadline).ok());
  ASSERT_EQ(l2->Receive(deadline).value().size(), 100u);
  ASSERT_TRUE(l1->Flush(deadline).ok());

  const std::string sock = absl::StrCat("--socket ", d.socket(), " ");
  Out o = Hsictl(sock + "isfc");
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_THAT(o.text, HasSubstr("ISFC link LPAR1 <-> LPAR2 (convention, 16 devices, active on both sides)"));
  std::vector<std::string> lines = absl::StrSplit(o.text, '\n');
  ASSERT_GE(lines.size(), 18u) << o.text;
  EXPECT_THAT(lines[2], HasSubstr("D000    D000       LPAR1 "));
  EXPECT_THAT(lines[2], HasSubstr("LPAR1 only"));
  EXPECT_THAT(lines[4], HasSubstr("D002    D002       LPAR1, LPAR2 "));
  EXPECT_THAT(lines[17], HasSubstr("D00F    D00F       LPAR2 "));
  const json doc = json::parse(Hsictl(sock + "isfc --json").text);
  ASSERT_EQ(doc["isfc_links"].size(), 1u);
  const json& devs = doc["isfc_links"][0]["devices"];
  ASSERT_EQ(devs.size(), 16u);
  EXPECT_EQ(devs[0]["self_rank"], 1);
  EXPECT_TRUE(devs[0]["peer_rank"].is_null());
  EXPECT_EQ(devs[15]["peer_rank"], 1);
  EXPECT_EQ(devs[2]["self_rank"], 3);
  EXPECT_EQ(devs[2]["peer_rank"], 14);
  // LPAR1 wrote its hello and one chunk, LPAR2 its hello, each only on
  // devices the convention gives it.
  int self_writes = 0, peer_writes = 0;
  for (const json& dv : devs) {
    if (dv["self_rank"].is_null()) {
      EXPECT_EQ(dv["self"]["writes"], 0) << dv["device"];
    }
    if (dv["peer_rank"].is_null()) {
      EXPECT_EQ(dv["peer"]["writes"], 0) << dv["device"];
    }
    self_writes += dv["self"]["writes"].get<int>();
    peer_writes += dv["peer"]["writes"].get<int>();
  }
  EXPECT_EQ(self_writes, 2);
  EXPECT_EQ(peer_writes, 1);

  // A device that does not lead to the named peer is refused by hsid.
  EXPECT_THAT(h1->DeclareIsfc("LPAR9", hsi::IsfcMode::kConvention, {hsi::DeviceNumber(0xD000)}, true).message(),
              HasSubstr("leads to LPAR LPAR2, not LPAR9"));
}

// z/VM's ACTIVATE / DEACTIVATE ISLINK from outside: hsictl -> hsid -> the
// LPAR's process (its CtcHost takes ISFC commands, IsfcLinks runs them) ->
// the result back to hsictl.
TEST(HsictlCtcTest, ActivatesAddsRemovesAndDeactivatesAnIsfcLinkInTheLparsProcesses) {
  Hsid d(hsi::testing::CtcConfig("devices = \"D000-D007\"\nblock_size = \"4K\""));
  ASSERT_TRUE(d.Start()) << d.log();
  const std::string sock = absl::StrCat("--socket ", d.socket(), " ");
  // Before any process takes commands for LPAR1.
  ExpectFails(sock + "isfc-activate LPAR1 LPAR2 D000-D003", 1, "no process of LPAR \"LPAR1\" takes ISFC commands");

  auto h1 = hsi::testing::ConnectCtcHost(d.socket(), "LPAR1").value();
  auto h2 = hsi::testing::ConnectCtcHost(d.socket(), "LPAR2").value();
  hsi::IsfcLinks links1(h1.get(), "LPAR1"), links2(h2.get(), "LPAR2");
  ASSERT_TRUE(links1.TakeCommands().ok());
  ASSERT_TRUE(links2.TakeCommands().ok());

  auto [a1, a2] = HsictlBoth(sock + "isfc-activate LPAR1 LPAR2 D000-D003", sock + "isfc-activate LPAR2 LPAR1 D000-D003");
  ASSERT_EQ(a1.code, 0) << a1.text;
  ASSERT_EQ(a2.code, 0) << a2.text;
  EXPECT_EQ(a1.text, "ISFC link LPAR1 <-> LPAR2: activated on LPAR1's side D000 D001 D002 D003\n");
  hsi::IsfcLink* l1 = links1.link("LPAR2");
  hsi::IsfcLink* l2 = links2.link("LPAR1");
  ASSERT_TRUE(l1 != nullptr && l2 != nullptr);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  ASSERT_TRUE(l1->WaitActive(deadline).ok());
  ASSERT_TRUE(l1->Send(std::vector<uint8_t>(10000, 3), deadline).ok());
  EXPECT_EQ(l2->Receive(deadline).value(), std::vector<uint8_t>(10000, 3));
  Out o = Hsictl(sock + "isfc");
  EXPECT_THAT(o.text, HasSubstr("ISFC link LPAR1 <-> LPAR2 (convention, 4 devices, active on both sides)")) << o.text;

  // Refusals come back from hsid or from the LPAR's process, named.
  ExpectFails(sock + "isfc-activate LPAR1 LPAR2 D004", 1, "ISFC link LPAR1<->LPAR2 is active already");
  ExpectFails(sock + "isfc-activate LPAR1 LPAR2 E000", 1, "no CTC device E000 is defined for LPAR \"LPAR1\"");
  ExpectFails(sock + "isfc-activate LPAR1 LPAR1 D000", 2, "LPAR and PEER must be two different names");

  auto [b1, b2] = HsictlBoth(sock + "isfc-add LPAR1 LPAR2 D004-D005", sock + "isfc-add LPAR2 LPAR1 D004-D005");
  ASSERT_EQ(b1.code, 0) << b1.text;
  ASSERT_EQ(b2.code, 0) << b2.text;
  EXPECT_EQ(l1->devices().size(), 6u);
  auto [c1, c2] = HsictlBoth(sock + "isfc-remove LPAR1 LPAR2 D000", sock + "isfc-remove LPAR2 LPAR1 D000");
  ASSERT_EQ(c1.code, 0) << c1.text;
  ASSERT_EQ(c2.code, 0) << c2.text;
  EXPECT_EQ(l1->devices().size(), 5u);
  ASSERT_TRUE(l1->Send(std::vector<uint8_t>(20000, 4), deadline).ok());
  EXPECT_EQ(l2->Receive(deadline).value(), std::vector<uint8_t>(20000, 4)) << "the link runs on";

  o = Hsictl(sock + "isfc-deactivate LPAR1 LPAR2");
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_EQ(links1.link("LPAR2"), nullptr);
  ExpectFails(sock + "isfc-deactivate LPAR1 LPAR2", 1, "is not active");
  ASSERT_EQ(Hsictl(sock + "isfc-deactivate LPAR2 LPAR1").code, 0);
  o = Hsictl(sock + "isfc --json");
  const json doc = json::parse(o.text);
  ASSERT_TRUE(doc.contains("isfc_links") && doc["isfc_links"].is_array()) << o.text;
  EXPECT_EQ(doc["isfc_links"].size(), 0u) << o.text;
  // A process that stops taking commands: hsid refuses them again.
  ASSERT_TRUE(h2->StopIsfcCommands().ok());
  ExpectFails(sock + "isfc-deactivate LPAR2 LPAR1", 1, "no process of LPAR \"LPAR2\" takes ISFC commands");
}

TEST(HsictlCtcTest, OnlyAnAdminGivesIsfcCommands) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (CAP_SETUID) to run hsictl as another uid";
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "needs setpriv (util-linux) to run hsictl as nobody";
  Hsid d(hsi::testing::CtcConfig("devices = \"D000\"", /*admin=*/false));
  ASSERT_TRUE(d.Start()) << d.log();
  const Out o = Finish(::popen(absl::StrCat("setpriv --reuid=65534 --regid=65534 --clear-groups ", HSI_TOOLS_DIR,
                                            "/hsictl --socket ", d.socket(), " isfc-activate LPAR1 LPAR2 D000 2>&1")
                                   .c_str(),
                               "r"));
  EXPECT_EQ(o.code, 1) << o.text;
  EXPECT_THAT(o.text, HasSubstr("admin operation ISFC command: uid 65534 is not an admin")) << d.log();
}

}  // namespace
