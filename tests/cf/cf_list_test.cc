// hsi-cf end to end, continued: list structures and transition
// monitoring, hsid's death, the command line. Every wait is on a
// condition with a deadline.
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cf_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/cf.h"
#include "hsi/testing/child.h"
#include "hsi/testing/line_pipe.h"

namespace hsi::cf {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::LinePipe;
using ::testing::HasSubstr;
using Outcome = LockReply::Outcome;

// hsid is off the data path: with hsid killed, connections go on; after
// it restarts, the CF (re-registered by libhsi) takes new connectors.
TEST_F(CfTest, ConnectionsOutliveHsidAndNewOnesComeAfterItsRestart) {
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok());
  absl::StatusOr<Connection> cb = b->Connect("LOCK1", "DB2B1");
  ASSERT_TRUE(cb.ok());
  ASSERT_NE(hsid_.Stop(SIGKILL), -1);
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<LockReply> r = b->Lock(*cb, absl::StrCat("R", i), LockMode::kExclusive);
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    ASSERT_EQ(r->outcome, Outcome::kGranted);
    ASSERT_TRUE(b->Unlock(*cb, absl::StrCat("R", i)).ok());
  }
  ASSERT_TRUE(hsid_.Start()) << hsid_.log();
  // The CF re-registers from inside its receive loop (each wait ends within
  // 200 ms); a new connector retries until the CF's NIC is back.
  absl::StatusOr<Connection> ca = absl::UnavailableError("not yet");
  absl::StatusOr<CfClient> a = absl::UnavailableError("not yet");
  for (const absl::Time end = In(absl::Seconds(15)); absl::Now() < end && !ca.ok();) {
    a = Open("DB2A");
    if (a.ok()) ca = a->Connect("LOCK1", "DB2A1");
  }
  ASSERT_TRUE(ca.ok()) << ca.status() << "\n" << cf_->log();
  EXPECT_EQ(a->Lock(*ca, "R1", LockMode::kShared)->outcome, Outcome::kGranted);
  EXPECT_EQ(b->Lock(*cb, "R1", LockMode::kExclusive)->outcome, Outcome::kQueued);
}

TEST_F(CfTest, ListOperationsEndToEndAndTheirErrors) {
  absl::StatusOr<CfClient> a = Open("DB2A");
  ASSERT_TRUE(a.ok());
  absl::StatusOr<Connection> c = a->Connect("IXCSIG1", "XCFA");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->list);
  EXPECT_EQ(*a->Push(*c, 0, ListEnd::kTail, "k1", "one"), 1u);
  EXPECT_EQ(*a->Push(*c, 0, ListEnd::kTail, "k2", "two"), 2u);
  EXPECT_EQ(*a->Push(*c, 0, ListEnd::kHead, "k0", "zero"), 3u);
  EXPECT_EQ(a->Read(*c, 0, "k2")->data, "two");
  EXPECT_TRUE(a->Move(*c, 0, 3, "k1", ListEnd::kTail).ok());
  EXPECT_EQ(a->Read(*c, 3, "k1")->data, "one");
  EXPECT_TRUE(a->Delete(*c, 0, "k2").ok());
  EXPECT_EQ(a->Delete(*c, 0, "k2").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(a->Pop(*c, 0, ListEnd::kTail)->key, "k0");
  EXPECT_EQ(a->Pop(*c, 0, ListEnd::kHead).status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<uint32_t> bad = a->Push(*c, 4, ListEnd::kTail, "k", "");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("list structure IXCSIG1: list 4 does not exist (0..3)"));
  EXPECT_THAT(a->Push(*c, 0, ListEnd::kTail, "k", std::string(65, 'd')).status().message(),
              HasSubstr("exceeds max_data 64"));
  absl::StatusOr<LockReply> wrong = a->Lock(*c, "R", LockMode::kShared);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("IXCSIG1 is a list structure"));
}

// The XCF signalling pattern across processes: a child sends messages by
// pushing; the receiver monitors the list and is woken exactly once per
// empty -> non-empty transition, however many messages each burst holds.
TEST_F(CfTest, MonitoringWakesExactlyOncePerTransition) {
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok());
  absl::StatusOr<Connection> cb = b->Connect("IXCSIG1", "XCFB");
  ASSERT_TRUE(cb.ok()) << cb.status();
  ASSERT_EQ(*b->Monitor(*cb, 1, true), 0u);
  LinePipe rep, go;
  constexpr int kRounds = 4, kBurst = 5;
  Child sender([&] {
    CfClientOptions o;
    o.socket_path = hsid_.socket();
    o.lpar = "DB2A";
    o.cf = cf_->address();
    absl::StatusOr<CfClient> a = CfClient::Open(std::move(o));
    if (!a.ok()) return rep.Write("ERR open"), 1;
    absl::StatusOr<Connection> ca = a->Connect("IXCSIG1", "XCFA");
    if (!ca.ok()) return rep.Write("ERR connect"), 1;
    for (int r = 0; r < kRounds; ++r) {
      if (go.Read(absl::Seconds(30)) != "GO") return 2;
      for (int i = 0; i < kBurst; ++i) {
        if (!a->Push(*ca, 1, ListEnd::kTail, absl::StrCat("m", r, ".", i),
                     absl::StrCat("msg ", r, ".", i))
                 .ok()) {
          return rep.Write("ERR push"), 1;
        }
      }
      rep.Write("SENT");
    }
    return 0;
  });
  int transitions = 0, received = 0;
  for (int r = 0; r < kRounds; ++r) {
    go.Write("GO");
    ASSERT_EQ(rep.Read(absl::Seconds(30)), "SENT");
    // Every push of the burst has its reply, so every note the CF would
    // send for it is already in our ring: exactly one is there.
    absl::StatusOr<Event> e = b->NextEvent(Wait::Block(In(absl::Seconds(10))));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->kind, Event::Kind::kTransition);
    EXPECT_EQ(e->list, 1u);
    ++transitions;
    EXPECT_EQ(b->NextEvent(Wait::Never()).status().code(), absl::StatusCode::kDeadlineExceeded)
        << "a second wake-up for one transition in round " << r;
    for (int i = 0; i < kBurst; ++i) {
      absl::StatusOr<ListEntry> m = b->Pop(*cb, 1, ListEnd::kHead);
      ASSERT_TRUE(m.ok()) << m.status();
      EXPECT_EQ(m->data, absl::StrCat("msg ", r, ".", i));  // in order, none lost
      ++received;
    }
    EXPECT_EQ(b->Pop(*cb, 1, ListEnd::kHead).status().code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(sender.Wait(), 0);
  EXPECT_EQ(transitions, kRounds);
  EXPECT_EQ(received, kRounds * kBurst);
}

// PopWait on the wire, from a raw connector: an empty list answers got = 0
// and the next push is handed to the waiter in a kPopNote with the
// request's id (the pusher sees length 0: the entry never showed); a
// non-empty list pops at once with the count left; malformed PopWait and
// PopCancel frames get a clear status, and the CF serves on.
TEST_F(CfTest, PopWaitHandsTheNextEntryInItsWakeUpAndMalformedOnesAreRefused) {
  absl::StatusOr<RawConnector> raw = OpenRaw("DB2C");
  ASSERT_TRUE(raw.ok()) << raw.status();
  proto::Header rh;
  proto::Writer conn({proto::kConnect, 1, 0, 0});
  conn.Str("IXCSIG1").Str("XCFC");
  ASSERT_EQ(raw->Ask(conn, &rh), "OK");
  const uint32_t token = rh.conn;
  auto pop_wait = [&](uint64_t id, uint32_t list, uint8_t end) {
    proto::Writer w({proto::kListPopWait, id, token, 0});
    w.U32(list).U8(end);
    return w;
  };
  // Malformed: a bad end, a missing field, a list out of range, leftovers.
  EXPECT_THAT(raw->Ask(pop_wait(2, 0, 2)), HasSubstr("INVALID_ARGUMENT: list end 2 is not 0"));
  proto::Writer trunc({proto::kListPopWait, 3, token, 0});
  trunc.U32(0);
  EXPECT_THAT(raw->Ask(trunc), HasSubstr("field end"));
  EXPECT_THAT(raw->Ask(pop_wait(4, 9, 0)), HasSubstr("list 9 does not exist (0..3)"));
  proto::Writer extra({proto::kListPopCancel, 5, token, 0});
  extra.U32(0).U8(1);
  EXPECT_THAT(raw->Ask(extra), HasSubstr("left over"));

  // An empty list: the request waits (got 0); a second one of this
  // connection is refused.
  std::vector<uint8_t> buf(16384);
  auto receive = [&]() -> std::vector<uint8_t> {
    absl::StatusOr<size_t> n =
        raw->link.Receive(absl::MakeSpan(buf), Wait::Block(In(absl::Seconds(5))));
    if (!n.ok()) return {};
    return {buf.begin(), buf.begin() + static_cast<ptrdiff_t>(*n)};
  };
  ASSERT_TRUE(raw->link.Send(pop_wait(6, 2, 0).frame(), Wait::Block(In(absl::Seconds(5)))).ok());
  std::vector<uint8_t> f = receive();
  absl::StatusOr<proto::Header> h = proto::ParseHeader(f);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->type, proto::kListPopWait | proto::kReplyBit);
  EXPECT_EQ(h->status, 0u);
  {
    proto::Reader r(f);
    EXPECT_EQ(r.U8("got"), 0);
    EXPECT_EQ(r.U32("left"), 0u);
    EXPECT_TRUE(r.Done().ok());
  }
  EXPECT_THAT(raw->Ask(pop_wait(7, 2, 0)), HasSubstr("ALREADY_EXISTS"));

  // Another connector's push is handed to the waiter.
  absl::StatusOr<CfClient> a = Open("DB2A");
  ASSERT_TRUE(a.ok());
  absl::StatusOr<Connection> ca = a->Connect("IXCSIG1", "XCFA");
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_EQ(*a->Monitor(*ca, 2, true), 0u);
  EXPECT_EQ(*a->Push(*ca, 2, ListEnd::kTail, "k1", "handed"), 0u);  // never in the list
  f = receive();
  h = proto::ParseHeader(f);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->type, proto::kPopNote);
  EXPECT_EQ(h->request_id, 6u);
  EXPECT_EQ(h->conn, token);
  {
    proto::Reader r(f);
    EXPECT_EQ(r.U32("list"), 2u);
    EXPECT_EQ(r.Str("key", proto::kMaxKey), "k1");
    EXPECT_EQ(r.Str("data", proto::kMaxData), "handed");
    EXPECT_TRUE(r.Done().ok());
  }
  // The monitor was not told of an entry that never showed.
  EXPECT_EQ(a->NextEvent(Wait::Never()).status().code(), absl::StatusCode::kDeadlineExceeded);

  // Served: nothing waits now (cancel says 0); a non-empty list pops at
  // once with the count left.
  proto::Writer cancel({proto::kListPopCancel, 8, token, 0});
  cancel.U32(2);
  ASSERT_TRUE(raw->link.Send(cancel.frame(), Wait::Block(In(absl::Seconds(5)))).ok());
  f = receive();
  {
    proto::Reader r(f);
    EXPECT_EQ(r.U8("withdrawn"), 0);
    EXPECT_TRUE(r.Done().ok());
  }
  ASSERT_EQ(*a->Push(*ca, 2, ListEnd::kTail, "k2", "x"), 1u);
  ASSERT_EQ(*a->Push(*ca, 2, ListEnd::kTail, "k3", "y"), 2u);
  ASSERT_TRUE(raw->link.Send(pop_wait(9, 2, 0).frame(), Wait::Block(In(absl::Seconds(5)))).ok());
  f = receive();
  {
    proto::Reader r(f);
    EXPECT_EQ(r.U8("got"), 1);
    EXPECT_EQ(r.U32("left"), 1u);
    EXPECT_EQ(r.Str("key", proto::kMaxKey), "k2");
    EXPECT_EQ(r.Str("data", proto::kMaxData), "x");
    EXPECT_TRUE(r.Done().ok());
  }
  // The CF serves everyone else on, and lost nothing.
  EXPECT_EQ(a->Pop(*ca, 2, ListEnd::kHead)->data, "y");
}

// PopWait through CfClient across processes: a child sends messages; the
// receiver gets each once and in order, in the reply or in its wake-up.
// The sender waits (a condition with a deadline, no sleep) until its push
// is handed to the sleeping receiver (length 0); if the receiver was not
// waiting yet it takes its entry back and tries again, so every round
// but a rare race ends with the receiver asleep and woken by the entry.
TEST_F(CfTest, PopWaitAcrossProcessesDeliversEachMessageOnceInItsWakeUp) {
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok());
  absl::StatusOr<Connection> cb = b->Connect("IXCSIG1", "XCFB");
  ASSERT_TRUE(cb.ok()) << cb.status();
  LinePipe rep, go;
  constexpr int kRounds = 5;
  Child sender([&] {
    absl::StatusOr<CfClient> a = Open("DB2A");
    if (!a.ok()) return rep.Write("ERR open"), 1;
    absl::StatusOr<Connection> ca = a->Connect("IXCSIG1", "XCFA");
    if (!ca.ok()) return rep.Write("ERR connect"), 1;
    for (int r = 0; r < kRounds; ++r) {
      if (go.Read(absl::Seconds(30)) != "GO") return 2;
      std::string how = "ERR deadline";
      for (const absl::Time end = In(absl::Seconds(20)); absl::Now() < end;) {
        absl::StatusOr<uint32_t> len =
            a->Push(*ca, 3, ListEnd::kTail, absl::StrCat("m", r), absl::StrCat("msg ", r));
        if (!len.ok()) return rep.Write("ERR push"), 1;
        if (*len == 0) {
          how = "HANDED";
          break;
        }
        absl::StatusOr<ListEntry> back = a->Pop(*ca, 3, ListEnd::kTail);
        if (back.status().code() == absl::StatusCode::kNotFound) {
          how = "POPPED";  // the receiver's PopWait took it in between
          break;
        }
        if (!back.ok()) return rep.Write("ERR pop"), 1;
      }
      rep.Write(how);
    }
    return 0;
  });
  int handed = 0;
  for (int r = 0; r < kRounds; ++r) {
    go.Write("GO");
    absl::StatusOr<ListPop> m = b->PopWait(*cb, 3, ListEnd::kHead, Wait::Block(In(absl::Seconds(30))));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->entry.data, absl::StrCat("msg ", r));
    EXPECT_EQ(m->left, 0u);
    const std::string how = rep.Read(absl::Seconds(30));
    ASSERT_THAT(how, ::testing::AnyOf("HANDED", "POPPED"));
    handed += how == "HANDED" ? 1 : 0;
  }
  EXPECT_EQ(sender.Wait(), 0);
  EXPECT_GE(handed, 1) << "no round ended with the receiver woken by its entry";
  EXPECT_EQ(b->Pop(*cb, 3, ListEnd::kHead).status().code(), absl::StatusCode::kNotFound);
  // Nothing comes: the deadline passes, the pop is withdrawn at the CF, and
  // a push after it stays in the list (no one waits for it any more).
  absl::StatusOr<ListPop> none = b->PopWait(*cb, 3, ListEnd::kHead, Wait::Block(In(absl::Milliseconds(50))));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kDeadlineExceeded) << none.status();
  EXPECT_THAT(none.status().message(), HasSubstr("withdrawn"));
  absl::StatusOr<CfClient> c = Open("DB2C");
  ASSERT_TRUE(c.ok());
  absl::StatusOr<Connection> cc = c->Connect("IXCSIG1", "XCFC");
  ASSERT_TRUE(cc.ok());
  EXPECT_EQ(*c->Push(*cc, 3, ListEnd::kTail, "late", "kept"), 1u);
  EXPECT_EQ(b->Pop(*cb, 3, ListEnd::kHead)->data, "kept");
}

// The command line: a bad policy is refused with exit 2 naming the file
// and key; --check of a good one exits 0; no hsid is needed for either.
TEST(CfCommandLineTest, BadPoliciesExitTwoNamingTheKeyAndCheckAcceptsAGoodOne) {
  char dir[] = "/tmp/cf-cli-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string d = dir;
  auto run = [&](const std::string& policy, const std::string& flags, std::string* err) {
    std::ofstream(d + "/p.toml") << policy;
    const std::string cmd = absl::StrCat(HSI_CF_PATH, " ", flags, " --config ", d, "/p.toml >", d,
                                         "/out 2>", d, "/err");
    const int st = std::system(cmd.c_str());
    std::ifstream in(d + "/err");
    std::stringstream ss;
    ss << in.rdbuf();
    *err = ss.str();
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  std::string err;
  EXPECT_EQ(
      run("[cf]\nlpar = \"CF01\"\nchpid = \"F0\"\n[[structure]]\nname = \"S\"\ntype = \"queue\"\n",
          "", &err),
      2);
  EXPECT_THAT(err, HasSubstr("p.toml: structure[0].type: \"queue\" is not lock, list or cache"));
  EXPECT_EQ(run("[cf\n", "", &err), 2);
  EXPECT_THAT(err, HasSubstr("not valid TOML"));
  EXPECT_EQ(run(kPolicy, "--check", &err), 0) << err;
  EXPECT_EQ(run(kPolicy, "--bogus", &err), 2);
  EXPECT_THAT(err, HasSubstr("unknown argument '--bogus'"));
  std::system(absl::StrCat("rm -rf ", d).c_str());
}

}  // namespace
}  // namespace hsi::cf
