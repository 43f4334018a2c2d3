// CacheStructure without links: every operation, with each connection's
// validity vector read back through a read-only mapping of its memfd (the
// connector's view, LocalVector), and the vector's own checks of hostile
// memory.
#include "cache_structure.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/cf_vector.h"
#include "validity_vector.h"

namespace hsi::cf {
namespace {

using ::testing::HasSubstr;

// A structure and connections 1..n, each with its vector mapped read-only.
struct Fixture {
  explicit Fixture(uint32_t entries = 8, uint32_t max_data = 16, uint32_t bits = 64)
      : cache("GBP1", entries, max_data, bits) {}
  const LocalVector& Connect(uint32_t conn) {
    absl::StatusOr<VectorWriter> w = VectorWriter::Create(cache.vector_bits(), "test");
    EXPECT_TRUE(w.ok()) << w.status();
    absl::StatusOr<UniqueFd> fd = w->DupFd();
    EXPECT_TRUE(fd.ok());
    absl::StatusOr<LocalVector> r = LocalVector::Map(std::move(*fd), cache.vector_bits());
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(cache.Attach(conn, absl::StrCat("C", conn), std::move(*w)).ok());
    views[conn] = std::make_unique<LocalVector>(std::move(*r));
    return *views[conn];
  }
  CacheStructure cache;
  std::map<uint32_t, std::unique_ptr<LocalVector>> views;
};

TEST(CacheStructureTest, ReadAndRegisterSetsTheBitAndAWriteInvalidatesOnlyTheOthers) {
  Fixture f;
  const LocalVector& a = f.Connect(1);
  const LocalVector& b = f.Connect(2);
  const LocalVector& c = f.Connect(3);
  EXPECT_FALSE(a.IsValid(5));
  absl::StatusOr<CacheReadResult> r = f.cache.ReadAndRegister(1, "PAGE1", 5);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->hit);  // a new entry: a miss, read the backing store
  EXPECT_TRUE(a.IsValid(5));
  ASSERT_TRUE(f.cache.ReadAndRegister(2, "PAGE1", 9).ok());
  ASSERT_TRUE(f.cache.ReadAndRegister(3, "PAGE1", 0).ok());
  EXPECT_TRUE(b.IsValid(9));
  EXPECT_TRUE(c.IsValid(0));
  EXPECT_EQ(f.cache.registrations(), 3u);
  // B writes: A's and C's copies go invalid, B's stays valid.
  absl::StatusOr<uint32_t> n = f.cache.Write(2, "PAGE1", "v1", true);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);
  EXPECT_FALSE(a.IsValid(5));
  EXPECT_FALSE(c.IsValid(0));
  EXPECT_TRUE(b.IsValid(9));
  EXPECT_EQ(f.cache.registrations(), 1u);
  // A reads again: a hit with the new data, valid again.
  r = f.cache.ReadAndRegister(1, "PAGE1", 5);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->hit);
  EXPECT_EQ(r->data, "v1");
  EXPECT_TRUE(a.IsValid(5));
  EXPECT_EQ(f.cache.counters().invalidations, 2u);
  EXPECT_EQ(f.cache.counters().hits, 1u);
  EXPECT_EQ(f.cache.counters().reads, 4u);
}

TEST(CacheStructureTest, ABufferHoldsOneRegistrationAndUnregisterClearsIt) {
  Fixture f;
  const LocalVector& a = f.Connect(1);
  f.Connect(2);
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P1", 3).ok());
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P2", 3).ok());  // buffer 3 now holds P2
  EXPECT_EQ(*f.cache.Write(2, "P1", "x", false), 0u);      // nobody holds P1 any more
  EXPECT_TRUE(a.IsValid(3));
  EXPECT_EQ(*f.cache.Write(2, "P2", "y", false), 1u);
  EXPECT_FALSE(a.IsValid(3));
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P2", 4).ok());
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P2", 6).ok());  // moves P2 from buffer 4 to 6
  EXPECT_FALSE(a.IsValid(4));
  EXPECT_TRUE(a.IsValid(6));
  EXPECT_TRUE(f.cache.Unregister(1, 6).ok());
  EXPECT_FALSE(a.IsValid(6));
  EXPECT_EQ(f.cache.Unregister(1, 6).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(f.cache.registrations(), 0u);
}

TEST(CacheStructureTest, CastoutClearsChangedUnlessAWriteCameMeanwhile) {
  Fixture f;
  f.Connect(1);
  f.Connect(2);
  ASSERT_TRUE(f.cache.Write(1, "P1", "a", true).ok());
  ASSERT_TRUE(f.cache.Write(1, "P2", "b", true).ok());
  ASSERT_TRUE(f.cache.Write(1, "P3", "c", false).ok());
  EXPECT_EQ(f.cache.changed_count(), 2u);
  EXPECT_THAT(f.cache.Changed(10), ::testing::ElementsAre("P1", "P2"));
  EXPECT_EQ(*f.cache.ReadForCastout(2, "P1"), "a");
  EXPECT_EQ(f.cache.castout_locked(), 1u);
  EXPECT_THAT(f.cache.Changed(10), ::testing::ElementsAre("P2"));  // locked ones are taken
  absl::StatusOr<std::string> busy = f.cache.ReadForCastout(1, "P1");
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(busy.status().message(), HasSubstr("locked for castout by C2"));
  EXPECT_EQ(f.cache.UnlockCastout(1, "P1").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*f.cache.UnlockCastout(2, "P1"), false);
  EXPECT_EQ(f.cache.changed_count(), 1u);
  EXPECT_EQ(f.cache.ReadForCastout(2, "P3").status().code(), absl::StatusCode::kFailedPrecondition);
  // A write during castout: the entry stays changed after the unlock.
  EXPECT_EQ(*f.cache.ReadForCastout(2, "P2"), "b");
  ASSERT_TRUE(f.cache.Write(1, "P2", "b2", true).ok());
  EXPECT_EQ(*f.cache.UnlockCastout(2, "P2"), true);
  EXPECT_EQ(f.cache.changed_count(), 1u);
  EXPECT_EQ(*f.cache.ReadForCastout(2, "P2"), "b2");
  EXPECT_EQ(f.cache.counters().castouts, 2u);
}

TEST(CacheStructureTest, ADetachedConnectionLosesRegistrationsAndReleasesCastoutLocks) {
  Fixture f;
  f.Connect(1);
  f.Connect(2);
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P1", 0).ok());
  ASSERT_TRUE(f.cache.Write(2, "P2", "d", true).ok());
  ASSERT_TRUE(f.cache.ReadForCastout(1, "P2").ok());
  EXPECT_EQ(f.cache.Detach(1), 1u);
  EXPECT_EQ(f.cache.registrations(), 0u);
  EXPECT_EQ(f.cache.castout_locked(), 0u);
  EXPECT_EQ(f.cache.changed_count(), 1u);  // the data is not lost: still to cast out
  EXPECT_EQ(*f.cache.ReadForCastout(2, "P2"), "d");
  EXPECT_EQ(*f.cache.Write(2, "P1", "e", false), 0u);  // nobody to invalidate
  EXPECT_EQ(f.cache.ReadAndRegister(1, "P1", 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A duplex takeover suspends a connection: its registrations end, its
// castout locks stay its own (others are refused naming it) until it
// attaches again under its token and completes the castout; its name is
// taken meanwhile; detached instead, its locks are released.
TEST(CacheStructureTest, ASuspendedConnectionKeepsItsCastoutLocksUntilItIsBack) {
  Fixture f;
  f.Connect(1);
  f.Connect(2);
  ASSERT_TRUE(f.cache.Write(2, "P2", "d", true).ok());
  ASSERT_TRUE(f.cache.Write(2, "P3", "e", true).ok());
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P1", 0).ok());
  ASSERT_TRUE(f.cache.ReadForCastout(1, "P2").ok());
  ASSERT_TRUE(f.cache.ReadForCastout(1, "P3").ok());
  EXPECT_EQ(f.cache.Suspend(1), 2u);
  EXPECT_EQ(f.cache.registrations(), 0u);
  EXPECT_EQ(f.cache.castout_locked(), 2u);
  EXPECT_THAT(f.cache.ReadForCastout(2, "P2").status().message(),
              HasSubstr("is locked for castout by C1"));
  EXPECT_EQ(f.cache.CanAttach("C1", 3).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(f.cache.CanAttach("C1", 1).ok());
  f.Connect(1);  // back, with a fresh vector
  EXPECT_EQ(*f.cache.UnlockCastout(1, "P2"), false);
  EXPECT_EQ(f.cache.changed_count(), 1u);
  EXPECT_EQ(f.cache.Suspend(1), 1u);
  EXPECT_EQ(f.cache.Detach(1), 1u);  // never back: released, still changed
  EXPECT_EQ(f.cache.castout_locked(), 0u);
  EXPECT_EQ(*f.cache.ReadForCastout(2, "P3"), "e");
}

TEST(CacheStructureTest, AFullDirectoryReclaimsTheOldestUnchangedEntryOrRefuses) {
  Fixture f(/*entries=*/2);
  const LocalVector& a = f.Connect(1);
  f.Connect(2);
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "OLD", 1).ok());
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "NEW", 2).ok());
  ASSERT_TRUE(f.cache.ReadAndRegister(2, "THIRD", 0).ok());  // reclaims OLD
  EXPECT_FALSE(a.IsValid(1));
  EXPECT_TRUE(a.IsValid(2));
  EXPECT_EQ(f.cache.counters().reclaims, 1u);
  ASSERT_TRUE(f.cache.Write(1, "NEW", "n", true).ok());
  ASSERT_TRUE(f.cache.Write(1, "THIRD", "t", true).ok());
  absl::StatusOr<CacheReadResult> full = f.cache.ReadAndRegister(2, "FOURTH", 0);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("all 2 entries are changed or castout-locked"));
  EXPECT_EQ(f.cache.in_use(), 2u);
}

TEST(CacheStructureTest, DeleteInvalidatesEveryCopyButNotAChangedEntry) {
  Fixture f;
  const LocalVector& a = f.Connect(1);
  const LocalVector& b = f.Connect(2);
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P", 0).ok());
  ASSERT_TRUE(f.cache.ReadAndRegister(2, "P", 0).ok());
  EXPECT_EQ(*f.cache.Delete(1, "P"), 2u);
  EXPECT_FALSE(a.IsValid(0));
  EXPECT_FALSE(b.IsValid(0));
  EXPECT_EQ(f.cache.Delete(1, "P").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(f.cache.Write(1, "Q", "q", true).ok());
  EXPECT_EQ(f.cache.Delete(1, "Q").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(CacheStructureTest, DirectoryOnlyKeepsNoDataAndStillInvalidates) {
  Fixture f(8, /*max_data=*/0);
  const LocalVector& a = f.Connect(1);
  f.Connect(2);
  absl::StatusOr<CacheReadResult> r = f.cache.ReadAndRegister(1, "P", 0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->hit);
  EXPECT_EQ(f.cache.Write(2, "P", "data", false).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.cache.Write(2, "P", "", true).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*f.cache.Write(2, "P", "", false), 1u);
  EXPECT_FALSE(a.IsValid(0));
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P", 0).ok());
  EXPECT_FALSE(f.cache.ReadAndRegister(1, "P", 0)->hit);  // never data
  EXPECT_THAT(f.cache.ReadForCastout(1, "P").status().message(), HasSubstr("directory-only"));
}

TEST(CacheStructureTest, BadInputIsRefusedByName) {
  Fixture f(8, 16, /*bits=*/64);
  f.Connect(1);
  absl::StatusOr<CacheReadResult> r = f.cache.ReadAndRegister(1, "P", 64);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("local buffer index 64 is out of the vector's range (0..63)"));
  EXPECT_EQ(f.cache.ReadAndRegister(1, "", 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.cache.ReadAndRegister(1, std::string(17, 'n'), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.cache.Write(1, "P", std::string(17, 'd'), true).status().message(),
              HasSubstr("17 bytes exceeds max_data 16"));
  EXPECT_EQ(f.cache.Write(9, "P", "d", true).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(f.cache.in_use(), 0u);  // nothing made by a refused request
}

// The fault modes that the end-to-end checker must catch: kSkip never
// flips; kLate flips only at FlushLate(), after the write returned.
TEST(CacheStructureTest, FaultModesHoldTheFlipBack) {
  Fixture f;
  const LocalVector& a = f.Connect(1);
  f.Connect(2);
  f.cache.set_fault(XiFault::kLate);
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P", 0).ok());
  EXPECT_EQ(*f.cache.Write(2, "P", "v", false), 1u);
  EXPECT_TRUE(a.IsValid(0));  // stale but valid: the broken CF
  f.cache.FlushLate();
  EXPECT_FALSE(a.IsValid(0));
  f.cache.set_fault(XiFault::kSkip);
  ASSERT_TRUE(f.cache.ReadAndRegister(1, "P", 0).ok());
  EXPECT_EQ(*f.cache.Write(2, "P", "w", false), 1u);
  f.cache.FlushLate();
  EXPECT_TRUE(a.IsValid(0));
}

// The connector maps only a memfd of the right size that nobody else can
// write or shrink; anything else is kDataLoss, and no read can fault.
TEST(LocalVectorTest, RefusesAVectorThatIsUnsealedOrOfTheWrongSize) {
  absl::StatusOr<UniqueFd> plain = Segment::CreateMemfd("v", VectorBytes(64));  // shrink/grow sealed only
  ASSERT_TRUE(plain.ok());
  absl::StatusOr<LocalVector> v = LocalVector::Map(std::move(*plain), 64);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(v.status().message(), HasSubstr("not sealed against writes"));

  const int raw = ::memfd_create("v", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_GE(raw, 0);
  ASSERT_EQ(::ftruncate(raw, 64), 0);
  ASSERT_EQ(::fcntl(raw, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), 0);  // but may shrink: a SIGBUS risk
  v = LocalVector::Map(UniqueFd(raw), 64);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss);

  absl::StatusOr<VectorWriter> w = VectorWriter::Create(64, "v");
  ASSERT_TRUE(w.ok());
  v = LocalVector::Map(*w->DupFd(), 1000);  // the CF said 1000 bits; the memfd holds 64
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss);
  v = LocalVector::Map(*w->DupFd(), 64);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_FALSE(v->IsValid(64));
  EXPECT_FALSE(v->IsValid(UINT32_MAX));
  w->Set(63, true);
  EXPECT_TRUE(v->IsValid(63));
  EXPECT_FALSE(VectorWriter::Create(0, "v").ok());
  EXPECT_FALSE(VectorWriter::Create(kMaxVectorBits + 1, "v").ok());
}

// A duplexed structure's vector (hsi/cf_vector.h): two halves, each CF
// writing its own; valid only if valid in both; Replace maps a fresh
// vector over both in place (the same object, every copy of the pointer);
// DropSecondary leaves the primary's half alone; halves are checked as
// Map checks a vector.
TEST(LocalVectorTest, TwoHalvesAreAndedAndReplacedInPlace) {
  absl::StatusOr<VectorWriter> p = VectorWriter::Create(128, "p");
  absl::StatusOr<VectorWriter> q = VectorWriter::Create(128, "q");
  ASSERT_TRUE(p.ok() && q.ok());
  absl::StatusOr<LocalVector> v = LocalVector::Map(*p->DupFd(), 128);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_FALSE(v->duplexed());
  EXPECT_EQ(v->AddSecondary(*VectorWriter::Create(1024, "big")->DupFd()).code(),
            absl::StatusCode::kDataLoss);  // the wrong size is refused
  ASSERT_TRUE(v->AddSecondary(*q->DupFd()).ok());
  EXPECT_TRUE(v->duplexed());
  p->Set(5, true);
  EXPECT_FALSE(v->IsValid(5));  // the secondary's half says invalid
  q->Set(5, true);
  EXPECT_TRUE(v->IsValid(5));
  q->Clear();  // a secondary taking over
  EXPECT_FALSE(v->IsValid(5));
  EXPECT_TRUE(p->Get(5));

  // Duplexing ends: the primary's half alone decides.
  p->Set(7, true);
  EXPECT_FALSE(v->IsValid(7));
  ASSERT_TRUE(v->DropSecondary().ok());
  EXPECT_TRUE(v->IsValid(7));
  EXPECT_TRUE(v->IsValid(5));

  // A failover: a fresh vector over both halves, in place.
  absl::StatusOr<LocalVector> w = LocalVector::Map(*p->DupFd(), 128);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->AddSecondary(*q->DupFd()).ok());
  const LocalVector* before = &*w;
  absl::StatusOr<VectorWriter> fresh = VectorWriter::Create(128, "fresh");
  ASSERT_TRUE(fresh.ok());
  absl::StatusOr<UniqueFd> plain = Segment::CreateMemfd("v", VectorBytes(128));  // not sealed
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(w->Replace(std::move(*plain)).code(), absl::StatusCode::kDataLoss);
  p->Set(9, true);
  q->Set(9, true);
  EXPECT_TRUE(w->IsValid(9));
  ASSERT_TRUE(w->Replace(*fresh->DupFd()).ok());
  EXPECT_EQ(before, &*w);
  EXPECT_FALSE(w->IsValid(9));  // every copy invalid at first
  fresh->Set(9, true);
  EXPECT_TRUE(w->IsValid(9));
  p->Set(9, false);  // the old halves are written no more (here: not read)
  q->Set(9, false);
  EXPECT_TRUE(w->IsValid(9));
}

}  // namespace
}  // namespace hsi::cf
