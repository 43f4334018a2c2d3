// hsi-cf end to end: a real hsid, the real hsi-cf, connectors in this
// process and in forked children: lock structures, hostile and flooding
// connectors, the CF's death (cf_list_test.cc: lists, hsid, the CLI). Every wait is on a condition
// with a deadline (a reply, an event, a line from a child).
#include "hsi/cf.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "cf_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/child.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/line_pipe.h"
#include "protocol.h"

namespace hsi::cf {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::LinePipe;
using ::testing::HasSubstr;
using Outcome = LockReply::Outcome;

TEST_F(CfTest, ConnectLockUnlockDisconnect) {
  absl::StatusOr<CfClient> a = Open("DB2A");
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<Connection> c = a->Connect("LOCK1", "DB2A1");
  ASSERT_TRUE(c.ok()) << c.status() << cf_->log();
  EXPECT_EQ(c->entries, 64u);
  EXPECT_EQ(c->returned_locks, 0u);
  absl::StatusOr<LockReply> r = a->Lock(*c, "TS1.PAGE7", LockMode::kExclusive, "log-rba-1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, Outcome::kGranted);
  EXPECT_TRUE(a->Unlock(*c, "TS1.PAGE7").ok());
  absl::Status again = a->Unlock(*c, "TS1.PAGE7");
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(again.message(), HasSubstr("DB2A1 holds no lock on TS1.PAGE7"));
  EXPECT_TRUE(a->Disconnect(*c).ok());
  // The token is gone with the connection.
  EXPECT_EQ(a->Lock(*c, "X", LockMode::kShared).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(CfTest, PolicyRefusesUnknownStructuresOtherLparsAndDuplicateNames) {
  absl::StatusOr<CfClient> a = Open("DB2A");
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<Connection> none = a->Connect("NOSUCH", "DB2A1");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("no structure NOSUCH"));
  absl::StatusOr<Connection> denied = a->Connect("LOCK2", "DB2A1");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status().message(), HasSubstr("LPAR DB2A may not connect to structure LOCK2"));
  absl::StatusOr<CfClient> other = Open("PAYROLL");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->Connect("LOCK1", "PAY1").status().code(), absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(a->Connect("LOCK1", "DB2A1").ok());
  absl::StatusOr<Connection> dup = a->Connect("LOCK1", "DB2A1");
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(a->Connect("LOCK1", "BAD NAME").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CfTest, ContentionNamesTheHolderAndTheGrantArrivesOnFd) {
  absl::StatusOr<CfClient> a = Open("DB2A");
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<Connection> ca = a->Connect("LOCK1", "DB2A1");
  absl::StatusOr<Connection> cb = b->Connect("LOCK1", "DB2B1");
  ASSERT_TRUE(ca.ok() && cb.ok());
  ASSERT_EQ(a->Lock(*ca, "R", LockMode::kExclusive)->outcome, Outcome::kGranted);
  absl::StatusOr<LockReply> q = b->Lock(*cb, "R", LockMode::kShared);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->outcome, Outcome::kQueued);
  ASSERT_EQ(q->holders.size(), 1u);
  EXPECT_EQ(q->holders[0].connector, "DB2A1");
  EXPECT_EQ(q->holders[0].mode, LockMode::kExclusive);
  EXPECT_FALSE(q->holders[0].retained);
  // Nothing yet: no event before the release.
  EXPECT_EQ(b->NextEvent(Wait::Never()).status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_FALSE(b->PrepareWait());
  ASSERT_TRUE(a->Unlock(*ca, "R").ok());
  struct pollfd p {
    b->fd(), POLLIN, 0
  };
  ASSERT_EQ(::poll(&p, 1, 10000), 1) << "the grant did not ring B's doorbell";
  absl::StatusOr<Event> e = b->NextEvent(Wait::Never());
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->kind, Event::Kind::kGranted);
  EXPECT_EQ(e->request, q->request);
  EXPECT_EQ(e->resource, "R");
  EXPECT_EQ(e->conn, cb->token);
  // B holds it now: A queues behind B, and LockAndWait sees the grant.
  EXPECT_EQ(a->Lock(*ca, "R", LockMode::kExclusive)->outcome, Outcome::kQueued);
  EXPECT_TRUE(b->Unlock(*cb, "R").ok());
  absl::StatusOr<Event> ea = a->NextEvent(Wait::Block(In(absl::Seconds(10))));
  ASSERT_TRUE(ea.ok()) << ea.status();
  EXPECT_EQ(ea->kind, Event::Kind::kGranted);
  EXPECT_TRUE(a->Disconnect(*ca).ok());  // releases R
  EXPECT_TRUE(
      b->LockAndWait(*cb, "R", LockMode::kExclusive, Wait::Block(In(absl::Seconds(10)))).ok());
}

// Asynchronous requests: each returns at once; replies (and a queued
// lock's later grant) come as events on fd(), matched by request id.
TEST_F(CfTest, AsynchronousRequestsCompleteAsEventsOnFd) {
  absl::StatusOr<CfClient> a = Open("DB2A");
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<Connection> ca = a->Connect("LOCK1", "DB2A1");
  absl::StatusOr<Connection> cb = b->Connect("LOCK1", "DB2B1");
  ASSERT_TRUE(ca.ok() && cb.ok());
  ASSERT_EQ(b->Lock(*cb, "HOT", LockMode::kExclusive)->outcome, Outcome::kGranted);
  absl::StatusOr<uint64_t> r1 = a->LockAsync(*ca, "COLD1", LockMode::kShared);
  absl::StatusOr<uint64_t> r2 = a->LockAsync(*ca, "HOT", LockMode::kShared);
  absl::StatusOr<uint64_t> r3 = a->UnlockAsync(*ca, "NOTHELD");
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
  absl::flat_hash_map<uint64_t, Event> got;
  while (got.size() < 3) {
    if (!a->PrepareWait()) {
      struct pollfd p {
        a->fd(), POLLIN, 0
      };
      ASSERT_EQ(::poll(&p, 1, 10000), 1) << "no reply rang the doorbell; have " << got.size();
    }
    absl::StatusOr<Event> e = a->NextEvent(Wait::Never());
    if (e.status().code() == absl::StatusCode::kDeadlineExceeded) continue;
    ASSERT_TRUE(e.ok()) << e.status();
    ASSERT_EQ(e->kind, Event::Kind::kReply);
    got[e->request] = *e;
  }
  ASSERT_TRUE(got.contains(*r1) && got.contains(*r2) && got.contains(*r3));
  EXPECT_TRUE(got[*r1].status.ok());
  EXPECT_EQ(got[*r1].lock.outcome, Outcome::kGranted);
  EXPECT_EQ(got[*r2].lock.outcome, Outcome::kQueued);
  ASSERT_EQ(got[*r2].lock.holders.size(), 1u);
  EXPECT_EQ(got[*r2].lock.holders[0].connector, "DB2B1");
  EXPECT_EQ(got[*r3].status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got[*r3].status.message(), HasSubstr("NOTHELD"));
  // The queued one completes when B lets go.
  ASSERT_TRUE(b->Unlock(*cb, "HOT").ok());
  absl::StatusOr<Event> g = a->NextEvent(Wait::Block(In(absl::Seconds(10))));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->kind, Event::Kind::kGranted);
  EXPECT_EQ(g->request, *r2);
}

// A child LPAR that connects as `connector`, locks what `body` says, says
// "LOCKED" and waits to be killed.
int Holder(const Hsid& d, Address cf, const std::string& connector, const LinePipe& rep) {
  CfClientOptions o;
  o.socket_path = d.socket();
  o.lpar = "DB2A";
  o.cf = cf;
  absl::StatusOr<CfClient> c = CfClient::Open(std::move(o));
  if (!c.ok()) {
    rep.Write(absl::StrCat("ERR ", c.status().ToString()));
    return 1;
  }
  absl::StatusOr<Connection> conn = c->Connect("LOCK1", connector);
  if (!conn.ok()) {
    rep.Write(absl::StrCat("ERR ", conn.status().ToString()));
    return 1;
  }
  absl::StatusOr<LockReply> x = c->Lock(*conn, "R1", LockMode::kExclusive, "undo-42");
  absl::StatusOr<LockReply> s = c->Lock(*conn, "R2", LockMode::kShared, "undo-43");
  if (!x.ok() || !s.ok() || x->outcome != Outcome::kGranted || s->outcome != Outcome::kGranted) {
    rep.Write("ERR lock");
    return 1;
  }
  rep.Write(absl::StrCat("LOCKED ", conn->returned_locks));
  // Until killed: wait for nothing (the CF sends no event to a holder).
  c->NextEvent(Wait::Block(In(absl::Seconds(60)))).IgnoreError();
  return 0;
}

TEST_F(CfTest, SigkillOfTheHolderLeavesRetainedLocksNamingItUntilAPeerRecovers) {
  LinePipe rep;
  Child holder([&] { return Holder(hsid_, cf_->address(), "DB2A1", rep); });
  ASSERT_EQ(rep.Read(absl::Seconds(30)), "LOCKED 0");
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok()) << b.status();
  absl::StatusOr<Connection> cb = b->Connect("LOCK1", "DB2B1");
  ASSERT_TRUE(cb.ok()) << cb.status();
  absl::StatusOr<LockReply> q = b->Lock(*cb, "R1", LockMode::kShared);
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->outcome, Outcome::kQueued);
  ASSERT_EQ(q->holders.size(), 1u);
  EXPECT_EQ(q->holders[0].connector, "DB2A1");

  ::kill(holder.pid(), SIGKILL);
  holder.Wait();
  // The queued request is told at once that the holder failed, naming it.
  absl::StatusOr<Event> e = b->NextEvent(Wait::Block(In(absl::Seconds(10))));
  ASSERT_TRUE(e.ok()) << e.status() << cf_->log();
  EXPECT_EQ(e->kind, Event::Kind::kCancelled);
  EXPECT_EQ(e->request, q->request);
  EXPECT_EQ(e->failed, "DB2A1");
  // New requests that conflict are refused naming the failed connector.
  absl::StatusOr<LockReply> r = b->Lock(*cb, "R1", LockMode::kShared);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, Outcome::kRetained);
  ASSERT_EQ(r->holders.size(), 1u);
  EXPECT_EQ(r->holders[0].connector, "DB2A1");
  EXPECT_TRUE(r->holders[0].retained);
  absl::Status w = b->LockAndWait(*cb, "R2", LockMode::kExclusive, Wait::Never());
  EXPECT_EQ(w.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(w.message(), HasSubstr("retained by failed connector(s) DB2A1"));
  // A retained shared lock does not stop shared requests.
  EXPECT_EQ(b->Lock(*cb, "R2", LockMode::kShared)->outcome, Outcome::kGranted);
  ASSERT_TRUE(b->Unlock(*cb, "R2").ok());

  // Peer recovery: the retained locks and their record data, then free.
  absl::StatusOr<std::vector<RetainedLock>> got = b->Recover(*cb, "DB2A1");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].resource, "R1");
  EXPECT_EQ((*got)[0].mode, LockMode::kExclusive);
  EXPECT_EQ((*got)[0].record, "undo-42");
  EXPECT_EQ((*got)[1].resource, "R2");
  EXPECT_EQ((*got)[1].record, "undo-43");
  EXPECT_EQ(b->Lock(*cb, "R1", LockMode::kExclusive)->outcome, Outcome::kGranted);
  EXPECT_EQ(b->Recover(*cb, "DB2A1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(cf_->log(), HasSubstr("connector DB2A1 (LPAR DB2A"));
}

TEST_F(CfTest, TheRestartedConnectorGetsItsRetainedLocksBack) {
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok()) << b.status();
  absl::StatusOr<Connection> cb = b->Connect("LOCK1", "DB2B1");
  ASSERT_TRUE(cb.ok()) << cb.status();
  {
    LinePipe rep;
    Child first([&] { return Holder(hsid_, cf_->address(), "DB2A1", rep); });
    ASSERT_EQ(rep.Read(absl::Seconds(30)), "LOCKED 0");
    ASSERT_EQ(b->Lock(*cb, "R1", LockMode::kExclusive)->outcome, Outcome::kQueued);
    ::kill(first.pid(), SIGKILL);
    first.Wait();
    absl::StatusOr<Event> e = b->NextEvent(Wait::Block(In(absl::Seconds(10))));
    ASSERT_TRUE(e.ok()) << e.status();
    ASSERT_EQ(e->kind, Event::Kind::kCancelled);
  }
  // The same connector name, restarted in a new process: R1 and R2 are its
  // own again (it re-locks them: granted at once, as held).
  LinePipe rep;
  Child second([&] { return Holder(hsid_, cf_->address(), "DB2A1", rep); });
  ASSERT_EQ(rep.Read(absl::Seconds(30)), "LOCKED 2");
  absl::StatusOr<LockReply> q = b->Lock(*cb, "R1", LockMode::kShared);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->outcome, Outcome::kQueued);  // held by a live connector now
  ASSERT_EQ(q->holders.size(), 1u);
  EXPECT_FALSE(q->holders[0].retained);
  EXPECT_EQ(b->Recover(*cb, "DB2A1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CfTest, MalformedRequestsGetAClearStatusAndTheCfServesOn) {
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok());
  absl::StatusOr<Connection> cb = b->Connect("LOCK1", "DB2B1");
  ASSERT_TRUE(cb.ok());
  ASSERT_EQ(b->Lock(*cb, "KEEP", LockMode::kExclusive)->outcome, Outcome::kGranted);

  // A hostile LPAR speaking raw frames on its own link to the CF.
  absl::StatusOr<RawConnector> raw = OpenRaw("DB2C");
  ASSERT_TRUE(raw.ok()) << raw.status();
  auto ask = [&](const std::vector<uint8_t>& frame) { return raw->Ask(frame); };
  auto bytes = [](const proto::Writer& w) {
    return std::vector<uint8_t>(w.frame().begin(), w.frame().end());
  };
  EXPECT_THAT(ask({1, 2, 3}), HasSubstr("INVALID_ARGUMENT: CF message of 3 bytes is shorter than"));
  std::vector<uint8_t> badver = bytes(proto::Writer({proto::kConnect, 1, 0, 0}));
  badver[4] = 7;
  EXPECT_THAT(ask(badver), HasSubstr("version 7 is not 1"));
  EXPECT_THAT(ask(bytes(proto::Writer({99, 2, 0, 0}))),
              HasSubstr("message type 99 is not a request"));
  // Someone else's token (B's) from this address.
  proto::Writer steal({proto::kUnlock, 3, cb->token, 0});
  steal.Str("KEEP");
  EXPECT_THAT(ask(bytes(steal)), HasSubstr("PERMISSION_DENIED: CF CF01: connection token"));
  proto::Writer longname({proto::kConnect, 4, 0, 0});
  longname.Str(std::string(300, 'L')).Str("C1");
  EXPECT_THAT(ask(bytes(longname)),
              HasSubstr("field structure at offset 24 is 300 bytes, at most 16"));
  proto::Writer trunc({proto::kConnect, 5, 0, 0});
  trunc.Str("LOCK1");
  EXPECT_THAT(ask(bytes(trunc)), HasSubstr("field connector"));
  proto::Writer ok({proto::kConnect, 6, 0, 0});
  ok.Str("LOCK1").Str("DB2C1");
  EXPECT_THAT(ask(bytes(ok)), HasSubstr("OK"));
  proto::Writer badmode({proto::kLock, 7, 0, 0});
  badmode.U8(9).Str("R").Str("");
  EXPECT_THAT(ask(bytes(badmode)), HasSubstr("connection token 0"));

  // Random frames, and valid headers with random bodies of every request
  // type (seeded, so a failure replays): each gets a reply, none a crash.
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> f;
    if (i % 2 == 0) {
      f.resize(next() % 200);
      for (uint8_t& byte : f) byte = static_cast<uint8_t>(next());
    } else {
      proto::Writer hw(
          {static_cast<uint8_t>(1 + next() % 11), 100u + i, static_cast<uint32_t>(next() % 4), 0});
      f = bytes(hw);
      const size_t extra = next() % 64;
      for (size_t k = 0; k < extra; ++k) f.push_back(static_cast<uint8_t>(next()));
    }
    const std::string answer = ask(f);
    ASSERT_THAT(answer,
                ::testing::AnyOf(HasSubstr("INVALID_ARGUMENT"), HasSubstr("PERMISSION_DENIED"),
                                 HasSubstr("NOT_FOUND"), HasSubstr("OK"),
                                 HasSubstr("ALREADY_EXISTS"), HasSubstr("RESOURCE_EXHAUSTED")))
        << "frame " << i;
    ASSERT_THAT(answer, ::testing::Not(HasSubstr("DEADLINE")))
        << "frame " << i << ": the CF did not answer";
  }

  // Everyone else is served on, and nothing they held is lost.
  absl::StatusOr<LockReply> keep = b->Lock(*cb, "KEEP", LockMode::kExclusive);
  ASSERT_TRUE(keep.ok()) << keep.status();
  EXPECT_EQ(keep->outcome, Outcome::kGranted);  // still B's
  absl::StatusOr<CfClient> a = Open("DB2A");
  ASSERT_TRUE(a.ok());
  absl::StatusOr<Connection> ca = a->Connect("LOCK1", "DB2A1");
  ASSERT_TRUE(ca.ok());
  EXPECT_EQ(a->Lock(*ca, "KEEP", LockMode::kShared)->outcome, Outcome::kQueued);
}

TEST_F(CfTest, AFullLockTableIsResourceExhaustedNamingTheStructure) {
  absl::StatusOr<CfClient> c = Open("DB2C");
  ASSERT_TRUE(c.ok());
  absl::StatusOr<Connection> cc = c->Connect("LOCK2", "DB2C1");
  ASSERT_TRUE(cc.ok()) << cc.status();
  ASSERT_EQ(c->Lock(*cc, "A", LockMode::kShared)->outcome, Outcome::kGranted);
  ASSERT_EQ(c->Lock(*cc, "B", LockMode::kShared)->outcome, Outcome::kGranted);
  absl::StatusOr<LockReply> full = c->Lock(*cc, "C", LockMode::kShared);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(),
              HasSubstr("lock structure LOCK2: all 2 lock entries are in use"));
}

// A connector that sends requests and never reads its replies fills its
// own reply ring; the CF does not wait for it (drops its replies, counted
// and logged) and serves everyone else, whose locks are untouched.
TEST_F(CfTest, AFloodingConnectorThatReadsNothingDoesNotStopTheCf) {
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok());
  absl::StatusOr<Connection> cb = b->Connect("LOCK1", "DB2B1");
  ASSERT_TRUE(cb.ok());
  ASSERT_EQ(b->Lock(*cb, "KEEP", LockMode::kExclusive)->outcome, Outcome::kGranted);

  absl::StatusOr<RawConnector> raw = OpenRaw("DB2C");
  ASSERT_TRUE(raw.ok()) << raw.status();
  hsi::Link* link = &raw->link;
  // Each request gets an error reply (no such connection) of ~100 bytes:
  // 30000 of them are more than the 1 MiB ring to this LPAR holds.
  proto::Writer w({proto::kUnlock, 1, 12345, 0});
  w.Str("NOTHING");
  constexpr int kFlood = 30000;
  for (int i = 0; i < kFlood; ++i) {
    ASSERT_TRUE(link->Send(w.frame(), Wait::Adaptive(In(absl::Seconds(20)))).ok()) << i;
  }
  // B is served (its reply comes after the flood in the CF's order).
  absl::StatusOr<LockReply> keep = b->Lock(*cb, "KEEP", LockMode::kExclusive);
  ASSERT_TRUE(keep.ok()) << keep.status();
  EXPECT_EQ(keep->outcome, Outcome::kGranted);
  EXPECT_THAT(cf_->log(), HasSubstr("dropped so far"));
  // The flooder's ring holds what fitted, each a clear refusal.
  std::vector<uint8_t> buf(16384);
  int replies = 0;
  while (link->Receive(absl::MakeSpan(buf), Wait::Never()).ok()) ++replies;
  EXPECT_GT(replies, 0);
  EXPECT_LT(replies, kFlood);
}

// The CF dies: every connector's next call says the CF link is gone.
TEST_F(CfTest, TheDeathOfTheCfIsUnavailableForEveryConnector) {
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok());
  absl::StatusOr<Connection> cb = b->Connect("LOCK1", "DB2B1");
  ASSERT_TRUE(cb.ok());
  cf_->Kill(SIGKILL);
  absl::StatusOr<Event> e = b->NextEvent(Wait::Block(In(absl::Seconds(10))));
  EXPECT_EQ(e.status().code(), absl::StatusCode::kUnavailable) << e.status();
  absl::StatusOr<LockReply> r = b->Lock(*cb, "R", LockMode::kShared);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

}  // namespace
}  // namespace hsi::cf
