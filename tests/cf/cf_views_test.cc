// tests/cf/cf_views_test.cc: `hsictl cfs` (docs/cf.md "Watching a CF"):
// a real hsid, the build's hsi-cf on the fixture's policy and connectors;
// what hsictl lists, in text and --json, follows what happens at the CF
// (connectors, a retained lock after a SIGKILL, contention counters); the
// CF's entries go with the CF; hsid refuses a malformed declaration by
// field and keeps serving, and bounds what one client may declare.
#include <signal.h>

#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cf_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/admin.h"
#include "hsi/testing/child.h"
#include "hsi/testing/line_pipe.h"
#include "hsi/testing/program.h"
#include "hsi/testing/raw_client.h"
#include "nlohmann/json.hpp"

namespace hsi::cf {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::LinePipe;
using ::hsi::testing::RawClient;
using ::hsi::testing::Shell;
using ::hsi::testing::ShellResult;
using ::testing::HasSubstr;
using Outcome = LockReply::Outcome;
using json = nlohmann::json;

class CfViewsTest : public CfTest {
 protected:
  ShellResult Hsictl(const std::string& args) {
    return Shell(absl::StrCat(HSICTL_PATH, " --socket ", hsid_.socket(), " ", args), /*with_stderr=*/false);
  }
  // `hsictl cfs --json` parsed; null if hsictl failed.
  json Cfs() {
    const ShellResult r = Hsictl("cfs --json");
    if (!r.ok()) return json();
    return json::parse(r.out);
  }
  // The entry of structure `name` of CF `cf`, or null.
  static json Find(const json& all, const std::string& cf, const std::string& name) {
    if (!all.is_object()) return json();
    for (const json& s : all["cf_structures"]) {
      if (s["cf"] == cf && s["structure"] == name) return s;
    }
    return json();
  }
  // Polls the listing until `ok(listing)` holds (10 s); the last listing.
  template <typename Pred>
  json Until(Pred ok) {
    json j;
    for (const absl::Time end = In(absl::Seconds(10)); absl::Now() < end;) {
      j = Cfs();
      if (ok(j)) return j;
      absl::SleepFor(absl::Milliseconds(50));  // polls a condition; orders nothing
    }
    return j;
  }
};

// A child LPAR DB2A that connects to LOCK1 as DB2A1, holds R1 exclusive,
// says "LOCKED" and waits to be killed.
int Holder(const Hsid& d, Address cf, const LinePipe& rep) {
  CfClientOptions o;
  o.socket_path = d.socket();
  o.lpar = "DB2A";
  o.cf = cf;
  absl::StatusOr<CfClient> c = CfClient::Open(std::move(o));
  if (!c.ok()) return rep.Write(absl::StrCat("ERR ", c.status().ToString())), 1;
  absl::StatusOr<Connection> conn = c->Connect("LOCK1", "DB2A1");
  if (!conn.ok()) return rep.Write(absl::StrCat("ERR ", conn.status().ToString())), 1;
  absl::StatusOr<LockReply> x = c->Lock(*conn, "R1", LockMode::kExclusive, "undo");
  if (!x.ok() || x->outcome != Outcome::kGranted) return rep.Write("ERR lock"), 1;
  rep.Write("LOCKED");
  c->NextEvent(Wait::Block(In(absl::Seconds(60)))).IgnoreError();
  return 0;
}

TEST_F(CfViewsTest, ListsStructuresConnectorsRetainedLocksAndCountersUntilTheCfDies) {
  // At start: every structure of the policy, empty, no connector.
  json j = Until([&](const json& a) { return !Find(a, "CF01", "DIR1").is_null(); });
  ASSERT_TRUE(j.is_object()) << hsid_.log();
  ASSERT_EQ(j["cf_structures"].size(), 5u) << j.dump(2);
  const json lock0 = Find(j, "CF01", "LOCK1");
  EXPECT_EQ(lock0["type"], "lock");
  EXPECT_EQ(lock0["size"], 64);
  EXPECT_EQ(lock0["in_use"], 0);
  EXPECT_EQ(lock0["duplex"], "simplex");
  EXPECT_EQ(lock0["connector_count"], 0);
  EXPECT_EQ(lock0["retained_locks"], 0);
  EXPECT_EQ(Find(j, "CF01", "IXCSIG1")["type"], "list");
  EXPECT_EQ(Find(j, "CF01", "IXCSIG1")["size"], 100);
  EXPECT_EQ(Find(j, "CF01", "GBP1")["type"], "cache");

  // A holder, and a second connector that queues behind it.
  LinePipe rep;
  Child holder([&] { return Holder(hsid_, cf_->address(), rep); });
  ASSERT_EQ(rep.Read(absl::Seconds(30)), "LOCKED");
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok()) << b.status();
  absl::StatusOr<Connection> cb = b->Connect("LOCK1", "DB2B1");
  ASSERT_TRUE(cb.ok()) << cb.status();
  absl::StatusOr<LockReply> q = b->Lock(*cb, "R1", LockMode::kShared);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->outcome, Outcome::kQueued);
  j = Until([&](const json& a) {
    const json l = Find(a, "CF01", "LOCK1");
    return !l.is_null() && l["connector_count"] == 2 && l["queued"] == 1;
  });
  json l = Find(j, "CF01", "LOCK1");
  ASSERT_FALSE(l.is_null()) << j.dump(2);
  EXPECT_EQ(l["connector_count"], 2) << l.dump(2);
  EXPECT_EQ(l["connectors"], json::parse(R"([{"name":"DB2A1","lpar":"DB2A"},{"name":"DB2B1","lpar":"DB2B"}])"));
  EXPECT_EQ(l["in_use"], 1);  // R1: held and queued
  EXPECT_EQ(l["queued"], 1);
  EXPECT_EQ(l["granted_after_wait"], 0);
  EXPECT_EQ(l["requests"], 2);  // DB2A1's lock, DB2B1's lock

  // SIGKILL of the holder: its lock is retained, naming it; the queued
  // request is cancelled (not granted after waiting).
  ::kill(holder.pid(), SIGKILL);
  holder.Wait();
  absl::StatusOr<Event> e = b->NextEvent(Wait::Block(In(absl::Seconds(10))));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->kind, Event::Kind::kCancelled);
  j = Until([&](const json& a) {
    const json x = Find(a, "CF01", "LOCK1");
    return !x.is_null() && x["retained_locks"] == 1 && x["connector_count"] == 1;
  });
  l = Find(j, "CF01", "LOCK1");
  ASSERT_FALSE(l.is_null()) << j.dump(2);
  EXPECT_EQ(l["retained_locks"], 1) << l.dump(2);
  EXPECT_EQ(l["failed_connectors"], json::array({"DB2A1"}));
  EXPECT_EQ(l["connectors"], json::parse(R"([{"name":"DB2B1","lpar":"DB2B"}])"));
  EXPECT_EQ(l["in_use"], 1);

  // A waiter granted after the holder lets go counts as granted after waiting.
  absl::StatusOr<Connection> cb2 = b->Connect("LOCK1", "DB2B2");
  ASSERT_TRUE(cb2.ok()) << cb2.status();
  ASSERT_EQ(b->Lock(*cb, "R9", LockMode::kExclusive)->outcome, Outcome::kGranted);
  ASSERT_EQ(b->Lock(*cb2, "R9", LockMode::kExclusive)->outcome, Outcome::kQueued);
  ASSERT_TRUE(b->Unlock(*cb, "R9").ok());
  e = b->NextEvent(Wait::Block(In(absl::Seconds(10))));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->kind, Event::Kind::kGranted);
  j = Until([&](const json& a) {
    const json x = Find(a, "CF01", "LOCK1");
    return !x.is_null() && x["granted_after_wait"] == 1;
  });
  l = Find(j, "CF01", "LOCK1");
  EXPECT_EQ(l["granted_after_wait"], 1) << l.dump(2);
  EXPECT_EQ(l["queued"], 2);
  EXPECT_EQ(l["in_use"], 2);     // R1 retained, R9 held
  EXPECT_EQ(l["requests"], 5);  // + DB2B1: R9 lock and unlock; DB2B2: R9 lock

  // The text listing says the same.
  const ShellResult text = Hsictl("cfs");
  ASSERT_TRUE(text.ok()) << text.out;
  EXPECT_THAT(text.out, HasSubstr("STRUCTURE"));
  EXPECT_THAT(text.out, HasSubstr("LOCK1"));
  EXPECT_THAT(text.out, HasSubstr("DB2B1@DB2B,DB2B2@DB2B"));
  EXPECT_THAT(text.out, HasSubstr("1 (DB2A1)"));

  // The CF dies: its entries go with its client.
  cf_->Kill(SIGKILL);
  j = Until([&](const json& a) { return a.is_object() && a.contains("cf_structures") && a["cf_structures"].empty(); });
  ASSERT_TRUE(j.is_object());
  EXPECT_TRUE(j["cf_structures"].empty()) << j.dump(2);
  EXPECT_THAT(Hsictl("cfs").out, HasSubstr("no coupling facility declared a structure"));
}

// hsid restarts with empty tables (invariant 4): the CF's session declares
// its structures again, though none changed meanwhile.
TEST_F(CfViewsTest, TheListingComesBackAfterAnHsidRestart) {
  // hsi-cf declares its structures one by one (in name order): wait for
  // the two this test names, not for one and then assert the other.
  json j = Until([&](const json& a) {
    return !Find(a, "CF01", "DIR1").is_null() && !Find(a, "CF01", "LOCK1").is_null();
  });
  ASSERT_FALSE(Find(j, "CF01", "LOCK1").is_null()) << j.dump(2) << hsid_.log();
  ASSERT_NE(hsid_.Stop(SIGKILL), -1);
  ASSERT_TRUE(hsid_.Start()) << hsid_.log();
  j = Until([&](const json& a) { return a.is_object() && a["cf_structures"].size() == 5; });
  ASSERT_TRUE(j.is_object()) << hsid_.log();
  EXPECT_EQ(j["cf_structures"].size(), 5u) << j.dump(2) << cf_->log();
  EXPECT_EQ(Find(j, "CF01", "LOCK1")["type"], "lock");
  // And the CF still serves.
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(b->Connect("LOCK1", "DB2B1").ok());
}

wire::CfDeclareRequest Good(const std::string& name) {
  wire::CfDeclareRequest r = wire::Zeroed<wire::CfDeclareRequest>();
  r.active = 1;
  wire::SetName(r.s.name, name);
  r.s.type = wire::kCfList;
  r.s.size = 10;
  r.s.in_use = 3;
  r.s.connectors = 1;
  wire::SetName(r.s.connector[0], "C1");
  wire::SetName(r.s.connector_lpar[0], "X");
  return r;
}

// What hsid answers a declaration from a raw client: its status.
absl::Status Declare(RawClient& c, const wire::CfDeclareRequest& r, uint32_t id) {
  if (!c.Send(id, r)) return absl::UnavailableError("send");
  std::optional<wire::Message> m = c.Receive();
  if (!m) return absl::UnavailableError("no answer");
  return hsi::testing::ReplyStatus(*m);
}

TEST_F(CfViewsTest, AMalformedDeclarationIsRefusedByFieldAndHsidServesOn) {
  struct Bad {
    void (*spoil)(wire::CfDeclareRequest&);
    const char* says;
  };
  const Bad bad[] = {
      {[](wire::CfDeclareRequest& r) { r.s.in_use = 11; }, "s.in_use exceeds s.size"},
      {[](wire::CfDeclareRequest& r) { r.s.type = 4; }, "s.type is not 1"},
      {[](wire::CfDeclareRequest& r) { r.s.connectors = 2; }, "s.connector[1] is empty"},
      {[](wire::CfDeclareRequest& r) { std::memset(r.s.name, 0, sizeof(r.s.name)); }, "s.name is empty"},
      {[](wire::CfDeclareRequest& r) { r.s.name[0] = 0; }, "s.name has bytes after its NUL"},
      {[](wire::CfDeclareRequest& r) { r.s.partner_up = 1; }, "s.partner_up is set for a simplex structure"},
      {[](wire::CfDeclareRequest& r) { r.s.failed_name[2][0] = 'Z'; }, "s.failed_name[2] is set past the count"},
  };
  for (const Bad& b : bad) {
    RawClient c(hsid_.socket());
    ASSERT_TRUE(hsi::testing::RawClaim(c, "CF99").ok());
    wire::CfDeclareRequest r = Good("S1");
    b.spoil(r);
    const absl::Status st = Declare(c, r, 2);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << b.says << ": " << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr(b.says));
    EXPECT_TRUE(c.WaitEof()) << "hsid keeps a client that sent a malformed message";
  }
  // hsid serves on: a well-formed one from a raw client is listed as its
  // claim, under the LPAR hsid knows; nothing of the malformed ones is.
  RawClient c(hsid_.socket());
  ASSERT_TRUE(hsi::testing::RawClaim(c, "CF99").ok());
  ASSERT_TRUE(Declare(c, Good("S1"), 2).ok());
  json j = Until([&](const json& a) { return !Find(a, "CF99", "S1").is_null(); });
  const json s1 = Find(j, "CF99", "S1");
  ASSERT_FALSE(s1.is_null()) << j.dump(2);
  EXPECT_EQ(s1["type"], "list");
  EXPECT_EQ(s1["in_use"], 3);
  EXPECT_EQ(s1["connectors"], json::parse(R"([{"name":"C1","lpar":"X"}])"));
  size_t of_cf99 = 0;
  for (const json& s : j["cf_structures"]) of_cf99 += s["cf"] == "CF99";
  EXPECT_EQ(of_cf99, 1u) << j.dump(2);
  // Bounded: wire::kMaxCfStructures per client, then kResourceExhausted;
  // an update of one it has still goes.
  for (size_t i = 1; i < wire::kMaxCfStructures; ++i) {
    ASSERT_TRUE(Declare(c, Good(absl::StrCat("S", i + 1)), static_cast<uint32_t>(i + 2)).ok()) << i;
  }
  const absl::Status full = Declare(c, Good("ONEMORE"), 100);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_THAT(std::string(full.message()), HasSubstr("LPAR \"CF99\" declared 64 structures already"));
  EXPECT_TRUE(Declare(c, Good("S1"), 101).ok());
  // Withdrawn, then all gone with the client.
  wire::CfDeclareRequest w = Good("S1");
  w.active = 0;
  ASSERT_TRUE(Declare(c, w, 102).ok());
  j = Cfs();
  EXPECT_TRUE(Find(j, "CF99", "S1").is_null());
  EXPECT_FALSE(Find(j, "CF99", "S2").is_null());
  c.Close();
  j = Until([&](const json& a) { return a.is_object() && Find(a, "CF99", "S2").is_null(); });
  EXPECT_TRUE(Find(j, "CF99", "S2").is_null()) << j.dump(2);
  // A client that claimed no LPAR may not declare.
  RawClient anon(hsid_.socket());
  ASSERT_TRUE(hsi::testing::RawClaim(anon, "").ok());
  EXPECT_EQ(Declare(anon, Good("S1"), 2).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace hsi::cf
