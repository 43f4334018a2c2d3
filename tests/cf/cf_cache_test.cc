// hsi-cf end to end: cache structures. A real hsid, the real hsi-cf,
// connectors in this process and in forked children. The cross-
// invalidation checker runs readers that copy their local buffer and then
// test their vector bit (the DB2 pattern) while a writer writes increasing
// versions; it must see no valid-but-stale copy from a correct CF, and it
// must see one from a CF that skips the flip or flips after the write's
// reply (hsi-cf --fault). Every wait is on a condition with a deadline.
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cf_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/cf.h"
#include "hsi/nic.h"
#include "hsi/segment.h"
#include "hsi/session.h"
#include "hsi/testing/child.h"
#include "hsi/testing/line_pipe.h"
#include "protocol.h"
#include "xi_checker.h"

namespace hsi::cf {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::LinePipe;
using ::testing::HasSubstr;

TEST_F(CfTest, CacheOperationsEndToEnd) {
  absl::StatusOr<CfClient> a = Open("DB2A");
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<Connection> ca = a->Connect("GBP1", "DB2AGBP");
  ASSERT_TRUE(ca.ok()) << ca.status() << cf_->log();
  absl::StatusOr<Connection> cb = b->Connect("GBP1", "DB2BGBP");
  ASSERT_TRUE(cb.ok()) << cb.status();
  EXPECT_EQ(b->Connect("GBP1", "DB2AGBP").status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(ca->cache);
  EXPECT_EQ(ca->max_data, 64u);
  EXPECT_EQ(ca->entries, 64u);
  ASSERT_NE(ca->vector, nullptr);
  EXPECT_EQ(ca->vector->bits(), 128u);
  EXPECT_FALSE(ca->vector->IsValid(7));

  absl::StatusOr<CacheRead> r = a->ReadAndRegister(*ca, "TS1.P7", 7);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->hit);  // nothing in the CF yet: read the backing store
  EXPECT_TRUE(ca->vector->IsValid(7));
  ASSERT_TRUE(b->ReadAndRegister(*cb, "TS1.P7", 100).ok());
  EXPECT_TRUE(cb->vector->IsValid(100));

  // B writes: A's copy is invalid by the time the write returns; B's stays.
  EXPECT_EQ(*b->WriteEntry(*cb, "TS1.P7", "page v1", true), 1u);
  EXPECT_FALSE(ca->vector->IsValid(7));
  EXPECT_TRUE(cb->vector->IsValid(100));
  r = a->ReadAndRegister(*ca, "TS1.P7", 7);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->hit);
  EXPECT_EQ(r->data, "page v1");
  EXPECT_TRUE(ca->vector->IsValid(7));

  // Castout: the changed entry is listed, read for castout (locked), unlocked.
  EXPECT_THAT(*a->ChangedEntries(*ca, 10), ::testing::ElementsAre("TS1.P7"));
  EXPECT_EQ(*a->ReadForCastout(*ca, "TS1.P7"), "page v1");
  absl::StatusOr<std::string> busy = b->ReadForCastout(*cb, "TS1.P7");
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(busy.status().message(), HasSubstr("locked for castout by DB2AGBP"));
  absl::StatusOr<CacheCounters> st = a->CacheStats(*ca);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->changed, 1u);
  EXPECT_EQ(st->castout_locked, 1u);
  EXPECT_EQ(st->registrations, 2u);
  EXPECT_EQ(*a->UnlockCastout(*ca, "TS1.P7"), false);
  EXPECT_TRUE(a->ChangedEntries(*ca, 10)->empty());

  // Unregister, delete, and the counters of it all.
  EXPECT_TRUE(b->Unregister(*cb, 100).ok());
  EXPECT_FALSE(cb->vector->IsValid(100));
  EXPECT_EQ(b->Unregister(*cb, 100).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*b->DeleteEntry(*cb, "TS1.P7"), 1u);  // A's copy
  EXPECT_FALSE(ca->vector->IsValid(7));
  st = b->CacheStats(*cb);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->entries, 64u);
  EXPECT_EQ(st->in_use, 0u);
  EXPECT_EQ(st->reads, 3u);
  EXPECT_EQ(st->hits, 1u);
  EXPECT_EQ(st->writes, 1u);
  EXPECT_EQ(st->invalidations, 2u);
  EXPECT_EQ(st->castouts, 1u);
  EXPECT_EQ(st->deletes, 1u);

  // Directory-only: no data, invalidation all the same.
  absl::StatusOr<Connection> da = a->Connect("DIR1", "DA");
  absl::StatusOr<Connection> db = b->Connect("DIR1", "DB");
  ASSERT_TRUE(da.ok() && db.ok());
  EXPECT_EQ(da->max_data, 0u);
  ASSERT_FALSE(a->ReadAndRegister(*da, "K", 0)->hit);
  EXPECT_EQ(*b->WriteEntry(*db, "K", "", false), 1u);
  EXPECT_FALSE(da->vector->IsValid(0));
  EXPECT_EQ(b->WriteEntry(*db, "K", "data", false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(a->Disconnect(*da).ok());
  EXPECT_TRUE(a->Disconnect(*ca).ok());
  EXPECT_EQ(b->CacheStats(*cb)->registrations, 0u);
}

// The checker (xi_checker.h) against one CF.
using xi::CheckResult;
using xi::kReaders;
using xi::kWrites;
CheckResult RunChecker(CfClient& w, const std::string& socket, Address cf) {
  xi::CheckOptions o;
  o.socket = socket;
  o.cf = cf;
  return xi::RunChecker(w, o);
}

TEST_F(CfTest, CrossInvalidationUnderConcurrentReadersNeverShowsStaleDataAsValid) {
  absl::StatusOr<CfClient> w = Open("DB2A");
  ASSERT_TRUE(w.ok()) << w.status();
  CheckResult r = RunChecker(*w, hsid_.socket(), cf_->address());
  ASSERT_TRUE(r.ok) << r.error << cf_->log();
  std::printf("checker: %llu valid copies tested, %llu re-registrations, %llu stale\n",
              static_cast<unsigned long long>(r.checks), static_cast<unsigned long long>(r.reregs),
              static_cast<unsigned long long>(r.stale));
  EXPECT_EQ(r.stale, 0u) << "valid-but-stale copies seen";
  // Every write invalidated every reader's copy once, and each reader
  // re-registered exactly once per write.
  EXPECT_EQ(r.invalidated, kWrites * kReaders);
  EXPECT_EQ(r.reregs, kWrites * kReaders);
  EXPECT_GE(r.checks, kWrites * kReaders);  // each version tested valid by each reader
}

// The same checker against a CF broken on purpose: it must notice.
class CfFaultTest : public CfTest, public ::testing::WithParamInterface<const char*> {
 protected:
  std::string CfFlag() const override { return absl::StrCat("--fault=", GetParam()); }
};

TEST_P(CfFaultTest, TheCheckerCatchesACfThatSkipsOrDelaysTheFlip) {
  absl::StatusOr<CfClient> w = Open("DB2A");
  ASSERT_TRUE(w.ok()) << w.status();
  CheckResult r = RunChecker(*w, hsid_.socket(), cf_->address());
  ASSERT_TRUE(r.ok) << r.error << cf_->log();
  std::printf("checker against %s: %llu stale copies seen\n", GetParam(),
              static_cast<unsigned long long>(r.stale));
  EXPECT_GT(r.stale, 0u) << "the checker did not see the stale copies of a CF run with "
                         << CfFlag();
}
INSTANTIATE_TEST_SUITE_P(Faults, CfFaultTest, ::testing::Values("xi-skip", "xi-late"));

// A connector killed while it holds a castout lock: the lock is released
// (the entry stays changed, its data intact) and its registrations end;
// another connector casts the entry out.
TEST_F(CfTest, ConnectorDeathDuringCastoutReleasesItsLockAndKeepsTheData) {
  LinePipe rep, go;
  Child victim([&] {
    absl::StatusOr<CfClient> c = Open("DB2C");
    if (!c.ok()) return rep.Write("ERR open"), 1;
    absl::StatusOr<Connection> conn = c->Connect("GBP1", "DB2CGBP");
    if (!conn.ok()) return rep.Write("ERR connect"), 1;
    if (!c->ReadAndRegister(*conn, "P9", 3).ok()) return rep.Write("ERR register"), 1;
    if (!c->WriteEntry(*conn, "P9", "dirty page", true).ok()) return rep.Write("ERR write"), 1;
    if (!c->ReadForCastout(*conn, "P9").ok()) return rep.Write("ERR castout"), 1;
    rep.Write("CASTING");
    go.Read(absl::Seconds(60));  // killed while it waits
    return 0;
  });
  ASSERT_EQ(rep.Read(absl::Seconds(30)), "CASTING");
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok());
  absl::StatusOr<Connection> cb = b->Connect("GBP1", "DB2BGBP");
  ASSERT_TRUE(cb.ok()) << cb.status();
  EXPECT_THAT(b->ReadForCastout(*cb, "P9").status().message(), HasSubstr("locked for castout by DB2CGBP"));
  absl::StatusOr<CacheCounters> st = b->CacheStats(*cb);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->registrations, 1u);
  EXPECT_EQ(st->castout_locked, 1u);

  ::kill(victim.pid(), SIGKILL);
  victim.Wait();
  // The CF sees the death at once (its link goes down); wait for that on
  // the CF's own answer, with a deadline.
  absl::StatusOr<std::string> data = absl::UnavailableError("not yet");
  for (const absl::Time end = In(absl::Seconds(10)); absl::Now() < end;) {
    data = b->ReadForCastout(*cb, "P9");
    if (data.ok() || data.status().code() != absl::StatusCode::kFailedPrecondition) break;
  }
  ASSERT_TRUE(data.ok()) << data.status() << cf_->log();
  EXPECT_EQ(*data, "dirty page");
  st = b->CacheStats(*cb);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->registrations, 0u);  // the victim's went with it
  EXPECT_EQ(st->changed, 1u);
  EXPECT_EQ(st->castout_locked, 1u);  // ours now
  EXPECT_EQ(*b->UnlockCastout(*cb, "P9"), false);
  EXPECT_EQ(b->CacheStats(*cb)->changed, 0u);
  EXPECT_THAT(cf_->log(), HasSubstr("1 castout lock(s) released"));
  // The connector name is free again.
  absl::StatusOr<CfClient> again = Open("DB2C");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->Connect("GBP1", "DB2CGBP").ok());
}

// A hostile connector: malformed cache requests and requests out of range
// get a clear status; nothing another connector holds is lost; another
// LPAR cannot take someone else's vector, and hsid refuses an unsealed one.
TEST_F(CfTest, HostileCacheRequestsAreRefusedAndOthersKeepTheirCopies) {
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok());
  absl::StatusOr<Connection> cb = b->Connect("GBP1", "DB2BGBP");
  ASSERT_TRUE(cb.ok());
  ASSERT_TRUE(b->ReadAndRegister(*cb, "KEEP", 1).ok());
  ASSERT_TRUE(b->WriteEntry(*cb, "KEEP", "kept", true).ok());

  absl::StatusOr<RawConnector> evil = OpenRaw("EVIL");
  ASSERT_TRUE(evil.ok()) << evil.status();
  uint32_t token = 0;
  auto ask = [&](const proto::Writer& w) {
    proto::Header h;
    std::string answer = evil->Ask(w, &h);
    if (answer == "OK" && h.type == (proto::kConnect | proto::kReplyBit)) token = h.conn;
    return answer;
  };
  using proto::Header;
  using proto::Writer;
  EXPECT_THAT(ask(Writer(Header{proto::kConnect, 1, 0, 0}).Str("NOGBP").Str("EVIL1")),
              HasSubstr("NOT_FOUND: CF CF01: no structure NOGBP"));
  ASSERT_EQ(ask(Writer(Header{proto::kConnect, 2, 0, 0}).Str("GBP1").Str("EVIL1")), "OK");
  EXPECT_THAT(ask(Writer(Header{proto::kCacheRegister, 3, token, 0}).Str("KEEP").U32(128)),
              HasSubstr("INVALID_ARGUMENT: cache structure GBP1: local buffer index 128 is out of "
                        "the vector's range (0..127)"));
  EXPECT_THAT(ask(Writer(Header{proto::kCacheWrite, 4, token, 0}).Str("KEEP").U8(1).Str(std::string(65, 'x'))),
              HasSubstr("65 bytes exceeds max_data 64"));
  EXPECT_THAT(ask(Writer(Header{proto::kCacheWrite, 5, token, 0}).Str("KEEP").U8(7).Str("x")),
              HasSubstr("changed = 7 is not 0 or 1"));
  EXPECT_THAT(ask(Writer(Header{proto::kCacheWrite, 6, token, 0}).Str("KEEP")),  // truncated
              HasSubstr("field changed at offset"));
  EXPECT_THAT(ask(Writer(Header{proto::kCacheCastout, 7, token, 0}).Str("NOSUCH")),
              HasSubstr("NOT_FOUND: cache structure GBP1: entry \"NOSUCH\" does not exist"));
  EXPECT_THAT(ask(Writer(Header{proto::kCacheUnlock, 8, token, 0}).Str("KEEP")),
              HasSubstr("is not locked for castout by this connection"));
  EXPECT_THAT(ask(Writer(Header{proto::kCacheRegister, 9, token, 0}).Str("").U32(0)),
              HasSubstr("entry name of 0 bytes"));
  EXPECT_THAT(ask(Writer(Header{proto::kLock, 10, token, 0}).U8(0).Str("R").Str("")),
              HasSubstr("is a lock request; GBP1 is a cache structure"));
  EXPECT_THAT(ask(Writer(Header{proto::kCacheStats, 11, cb->token, 0})),
              HasSubstr("PERMISSION_DENIED"));  // B's token from another address
  EXPECT_THAT(ask(Writer(Header{proto::kLastRequest + 1, 12, token, 0})),
              HasSubstr(absl::StrCat("is not a request (1..", proto::kLastRequest, ")")));
  EXPECT_THAT(ask(Writer(Header{proto::kCacheDelete, 13, token, 0}).Str("KEEP")),
              HasSubstr("FAILED_PRECONDITION"));  // changed: not lost

  // The vector granted to EVIL's connection: nobody else can take it.
  absl::StatusOr<RawConnector> thief = OpenRaw("THIEF");
  ASSERT_TRUE(thief.ok());
  Nic* tnic = &thief->nic;
  Nic* nic = &evil->nic;
  uint64_t size = 0;
  EXPECT_EQ(tnic->TakeMemory(cf_->address(), token, &size).status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<UniqueFd> mine = nic->TakeMemory(cf_->address(), token, &size);
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_EQ(size, VectorBytes(128));
  EXPECT_EQ(nic->TakeMemory(cf_->address(), token, &size).status().code(), absl::StatusCode::kNotFound);
  // hsid refuses to pass on memory its granter could still let others write.
  absl::StatusOr<UniqueFd> unsealed = Segment::CreateMemfd("x", 4096);
  ASSERT_TRUE(unsealed.ok());
  absl::Status g = nic->GrantMemory(tnic->address(), 1, std::move(*unsealed));
  EXPECT_EQ(g.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(g.message(), HasSubstr("future writes"));

  // B's copy and the entry are intact, and the CF serves on.
  EXPECT_TRUE(cb->vector->IsValid(1));
  absl::StatusOr<CacheRead> r = b->ReadAndRegister(*cb, "KEEP", 1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data, "kept");
  EXPECT_EQ(b->CacheStats(*cb)->changed, 1u);
}

// A connector that connects again and again and never takes its vectors
// fills only its own share of hsid's grants: others still connect. (With
// one cap per granter, the CF's 256 grants to it would refuse everyone.)
TEST_F(CfTest, AConnectorThatNeverTakesItsVectorsBlocksOnlyItself) {
  absl::StatusOr<RawConnector> hog = OpenRaw("HOG");
  ASSERT_TRUE(hog.ok()) << hog.status();
  int accepted = 0;
  std::string last;
  for (int i = 0; i < 300; ++i) {
    last = hog->Ask(proto::Writer(proto::Header{proto::kConnect, static_cast<uint64_t>(i + 1), 0, 0})
                        .Str("GBP1")
                        .Str(absl::StrCat("HOG", i)));
    if (last != "OK") break;
    ++accepted;
  }
  EXPECT_EQ(accepted, 256);
  EXPECT_THAT(last, HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(last, HasSubstr("grants to its client not yet taken"));
  absl::StatusOr<CfClient> b = Open("DB2B");
  ASSERT_TRUE(b.ok());
  absl::StatusOr<Connection> cb = b->Connect("GBP1", "DB2BGBP");
  ASSERT_TRUE(cb.ok()) << cb.status();
  EXPECT_TRUE(b->ReadAndRegister(*cb, "P", 0).ok());
}

// hsid's memory grants on their own (the path the vectors take): only to a
// NIC of the CHPID, only sealed, taken once and only by the client the
// grant names, and dropped when the granter goes.
TEST_F(CfTest, MemoryGrantsGoSealedToTheNamedPeerOnceAndDieWithTheGranter) {
  absl::StatusOr<RawConnector> g = OpenRaw("GRANTER");
  absl::StatusOr<RawConnector> t = OpenRaw("TAKER");
  absl::StatusOr<RawConnector> o = OpenRaw("OTHER");
  ASSERT_TRUE(g.ok() && t.ok() && o.ok());
  Nic& granter = g->nic;
  Nic& taker = t->nic;
  Nic& other = o->nic;
  auto sealed = [] {
    absl::StatusOr<UniqueFd> fd = Segment::CreateMemfd("g", 4096);
    absl::StatusOr<Segment> seg = Segment::MapOwner(std::move(*fd), 4096);
    static_cast<char*>(seg->data())[0] = 42;
    return std::move(*seg);
  };
  Segment seg = sealed();
  absl::Status nowhere = granter.GrantMemory(*Address::Parse("10.240.0.250"), 7, *seg.DupFd());
  EXPECT_EQ(nowhere.code(), absl::StatusCode::kNotFound) << nowhere;
  ASSERT_TRUE(granter.GrantMemory(taker.address(), 7, *seg.DupFd()).ok());
  uint64_t size = 0;
  EXPECT_EQ(other.TakeMemory(granter.address(), 7, &size).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(taker.TakeMemory(granter.address(), 8, &size).status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<UniqueFd> got = taker.TakeMemory(granter.address(), 7, &size);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(size, 4096u);
  absl::StatusOr<Segment> mapped = Segment::MapPeer(std::move(*got), 4096);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(static_cast<const char*>(mapped->data())[0], 42);
  EXPECT_EQ(taker.TakeMemory(granter.address(), 7, &size).status().code(), absl::StatusCode::kNotFound);
  // A grant not taken goes with its granter.
  ASSERT_TRUE(granter.GrantMemory(taker.address(), 9, *seg.DupFd()).ok());
  const Address ga = granter.address();
  *g = RawConnector();
  // hsid has seen the granter go once its LPAR name can be claimed again.
  absl::StatusOr<Session> again = absl::UnavailableError("not yet");
  for (const absl::Time end = In(absl::Seconds(10)); absl::Now() < end && !again.ok();) {
    SessionOptions so;
    so.socket_path = hsid_.socket();
    so.lpar = "GRANTER";
    again = Session::Connect(std::move(so));
  }
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(taker.TakeMemory(ga, 9, &size).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hsi::cf
