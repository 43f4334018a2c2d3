// LockStructure without links: every operation, contention, retention and
// both ways of recovery.
#include "lock_structure.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi::cf {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Outcome = LockResult::Outcome;
constexpr LockMode S = LockMode::kShared;
constexpr LockMode X = LockMode::kExclusive;

class LockStructureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uint32_t r = 99;
    ASSERT_TRUE(l_.Attach(1, "A", &r).ok());
    EXPECT_EQ(r, 0u);
    ASSERT_TRUE(l_.Attach(2, "B", &r).ok());
    ASSERT_TRUE(l_.Attach(3, "C", &r).ok());
  }
  LockResult Obtain(uint32_t conn, uint64_t id, const std::string& res, LockMode m,
                    const std::string& rec = "") {
    absl::StatusOr<LockResult> r = l_.Obtain(conn, id, res, m, rec, &notes_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : LockResult{};
  }
  LockStructure l_{"LOCK1", 4};
  std::vector<Note> notes_;
};

TEST_F(LockStructureTest, SharedLocksShareAndExclusiveQueuesNamingHolders) {
  EXPECT_EQ(Obtain(1, 10, "R", S).outcome, Outcome::kGranted);
  EXPECT_EQ(Obtain(2, 20, "R", S).outcome, Outcome::kGranted);
  LockResult x = Obtain(3, 30, "R", X);
  ASSERT_EQ(x.outcome, Outcome::kQueued);
  ASSERT_EQ(x.holders.size(), 2u);
  EXPECT_EQ(x.holders[0].connector, "A");
  EXPECT_EQ(x.holders[1].connector, "B");
  EXPECT_FALSE(x.holders[0].retained);
  // FIFO: a shared request behind the queued exclusive one waits too.
  EXPECT_EQ(Obtain(1, 11, "R2", S).outcome, Outcome::kGranted);
  EXPECT_TRUE(l_.Release(1, "R", &notes_).ok());
  EXPECT_TRUE(notes_.empty());  // B still holds it
  EXPECT_TRUE(l_.Release(2, "R", &notes_).ok());
  ASSERT_EQ(notes_.size(), 1u);
  EXPECT_EQ(notes_[0].kind, Note::Kind::kGranted);
  EXPECT_EQ(notes_[0].conn, 3u);
  EXPECT_EQ(notes_[0].request_id, 30u);
  EXPECT_EQ(notes_[0].mode, X);
}

TEST_F(LockStructureTest, ExclusiveBlocksSharedAndReleaseGrantsAllCompatibleWaiters) {
  EXPECT_EQ(Obtain(1, 10, "R", X).outcome, Outcome::kGranted);
  EXPECT_EQ(Obtain(2, 20, "R", S).outcome, Outcome::kQueued);
  EXPECT_EQ(Obtain(3, 30, "R", S).outcome, Outcome::kQueued);
  EXPECT_TRUE(l_.Release(1, "R", &notes_).ok());
  ASSERT_EQ(notes_.size(), 2u);
  EXPECT_EQ(notes_[0].conn, 2u);
  EXPECT_EQ(notes_[1].conn, 3u);
}

TEST_F(LockStructureTest, ReleaseOfALockNotHeldIsNotFound) {
  absl::Status s = l_.Release(1, "R", &notes_);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("connector A holds no lock on R"));
}

TEST_F(LockStructureTest, FullTableIsResourceExhaustedAndFreesWhenReleased) {
  for (int i = 0; i < 4; ++i) Obtain(1, i, absl::StrCat("R", i), X);
  absl::StatusOr<LockResult> r = l_.Obtain(1, 9, "R9", X, "", &notes_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("all 4 lock entries"));
  EXPECT_TRUE(l_.Release(1, "R0", &notes_).ok());
  EXPECT_EQ(l_.in_use(), 3u);
  EXPECT_EQ(Obtain(1, 10, "R9", X).outcome, Outcome::kGranted);
}

TEST_F(LockStructureTest, FailedHolderLeavesRetainedLocksNamedAndCancelsConflictingWaiters) {
  Obtain(1, 10, "R", X, "rec-R");
  Obtain(1, 11, "Q", S, "rec-Q");
  EXPECT_EQ(Obtain(2, 20, "R", S).outcome, Outcome::kQueued);
  l_.Fail(1, &notes_);
  EXPECT_EQ(l_.retained_count(), 2u);
  ASSERT_EQ(notes_.size(), 1u);
  EXPECT_EQ(notes_[0].kind, Note::Kind::kCancelled);
  EXPECT_EQ(notes_[0].conn, 2u);
  EXPECT_EQ(notes_[0].failed, "A");
  LockResult r = Obtain(3, 30, "R", S);
  EXPECT_EQ(r.outcome, Outcome::kRetained);
  ASSERT_EQ(r.holders.size(), 1u);
  EXPECT_EQ(r.holders[0].connector, "A");
  EXPECT_TRUE(r.holders[0].retained);
  // A retained shared lock still lets shared requests through.
  EXPECT_EQ(Obtain(3, 31, "Q", S).outcome, Outcome::kGranted);
  EXPECT_EQ(Obtain(2, 21, "Q", X).outcome, Outcome::kRetained);
}

TEST_F(LockStructureTest, PeerRecoveryReturnsRecordsAndFreesTheResources) {
  Obtain(1, 10, "R", X, "rec-R");
  Obtain(1, 11, "Q", S, "rec-Q");
  l_.Fail(1, &notes_);
  absl::StatusOr<std::vector<RetainedLock>> got = l_.Recover(2, "A", &notes_);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].resource, "Q");
  EXPECT_EQ((*got)[0].record, "rec-Q");
  EXPECT_EQ((*got)[1].resource, "R");
  EXPECT_EQ((*got)[1].mode, X);
  EXPECT_EQ((*got)[1].record, "rec-R");
  EXPECT_EQ(l_.retained_count(), 0u);
  EXPECT_EQ(Obtain(3, 30, "R", X).outcome, Outcome::kGranted);
  EXPECT_EQ(l_.Recover(2, "A", &notes_).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LockStructureTest, RestartedConnectorGetsItsRetainedLocksBack) {
  Obtain(1, 10, "R", X);
  l_.Fail(1, &notes_);
  uint32_t returned = 0;
  EXPECT_EQ(l_.Attach(7, "B", &returned).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(l_.Attach(7, "A", &returned).ok());
  EXPECT_EQ(returned, 1u);
  EXPECT_EQ(l_.retained_count(), 0u);
  EXPECT_EQ(Obtain(2, 20, "R", S).outcome, Outcome::kQueued);  // held (not retained) by A again
  EXPECT_TRUE(l_.Release(7, "R", &notes_).ok());
  ASSERT_EQ(notes_.size(), 1u);
  EXPECT_EQ(notes_[0].conn, 2u);
}

TEST_F(LockStructureTest, NormalDetachReleasesEverythingAndRetainsNothing) {
  Obtain(1, 10, "R", X);
  Obtain(2, 20, "R", X);
  l_.Detach(1, &notes_);
  EXPECT_EQ(l_.retained_count(), 0u);
  ASSERT_EQ(notes_.size(), 1u);
  EXPECT_EQ(notes_[0].kind, Note::Kind::kGranted);
  EXPECT_FALSE(l_.attached(1));
  EXPECT_EQ(l_.Obtain(1, 11, "R", S, "", &notes_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(LockStructureTest, UpgradeBySoleHolderIsGrantedAndASecondQueuedRequestIsRefused) {
  EXPECT_EQ(Obtain(1, 10, "R", S).outcome, Outcome::kGranted);
  EXPECT_EQ(Obtain(1, 11, "R", X).outcome, Outcome::kGranted);
  EXPECT_EQ(Obtain(2, 20, "R", S).outcome, Outcome::kQueued);
  EXPECT_EQ(l_.Obtain(2, 21, "R", S, "", &notes_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Re-duplexing's copy: what CopyOut gives, replayed by CopyIn into an
// empty structure with the same connections, behaves as the original:
// holders (live and retained, with records) and queued requests in order.
TEST_F(LockStructureTest, ACopyReplaysHoldersRetainedLocksAndTheQueueInOrder) {
  EXPECT_EQ(Obtain(1, 10, "R", S, "a-R").outcome, Outcome::kGranted);
  EXPECT_EQ(Obtain(2, 20, "R", S, "b-R").outcome, Outcome::kGranted);
  EXPECT_EQ(Obtain(3, 30, "R", X, "c-R").outcome, Outcome::kQueued);
  EXPECT_EQ(Obtain(3, 31, "Q", X, "c-Q").outcome, Outcome::kGranted);
  l_.Fail(3, &notes_);  // C's Q becomes retained, its queued request on R ends
  EXPECT_EQ(Obtain(1, 11, "T", X, "a-T").outcome, Outcome::kGranted);
  EXPECT_EQ(Obtain(2, 21, "T", S, "b-T").outcome, Outcome::kQueued);
  LockStructure copy("LOCK1", 4);
  uint32_t r = 0;
  ASSERT_TRUE(copy.Attach(1, "A", &r).ok());
  ASSERT_TRUE(copy.Attach(2, "B", &r).ok());
  const std::vector<LockStructure::CopyItem> all = l_.CopyOut();
  EXPECT_EQ(all.size(), 5u);  // R: A, B; Q: C retained; T: A, then B queued
  for (const LockStructure::CopyItem& it : all) ASSERT_TRUE(copy.CopyIn(it).ok()) << it.resource;
  EXPECT_EQ(copy.in_use(), 3u);
  EXPECT_EQ(copy.retained_count(), 1u);
  EXPECT_THAT(copy.failed_connectors(), ElementsAre("C"));
  // A's release of T grants B's queued request 21 in the copy.
  std::vector<Note> n;
  ASSERT_TRUE(copy.Release(1, "T", &n).ok());
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(n[0].conn, 2u);
  EXPECT_EQ(n[0].request_id, 21u);
  // C's retained Q comes back with its record.
  absl::StatusOr<std::vector<RetainedLock>> got = copy.Recover(1, "C", &n);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].resource, "Q");
  EXPECT_EQ((*got)[0].record, "c-Q");
  // R is shared by A and B: an exclusive request of a new connection queues behind both.
  ASSERT_TRUE(copy.Attach(4, "D", &r).ok());
  absl::StatusOr<LockResult> x = copy.Obtain(4, 40, "R", X, "", &n);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->outcome, Outcome::kQueued);
  EXPECT_EQ(x->holders.size(), 2u);
}

TEST_F(LockStructureTest, ACopyThatBreaksTheRulesIsRefusedNamingWhy) {
  LockStructure c("LOCK1", 1);
  uint32_t r = 0;
  ASSERT_TRUE(c.Attach(1, "A", &r).ok());
  ASSERT_TRUE(c.Attach(2, "B", &r).ok());
  using Item = LockStructure::CopyItem;
  EXPECT_THAT(c.CopyIn(Item{false, "R", 9, "Z", 0, X, ""}).message(), HasSubstr("not attached"));
  EXPECT_THAT(c.CopyIn(Item{false, "R", 1, "B", 0, X, ""}).message(), HasSubstr("does not match"));
  EXPECT_THAT(c.CopyIn(Item{true, "R", 1, "", 5, X, ""}).message(), HasSubstr("nothing holds it"));
  EXPECT_THAT(c.CopyIn(Item{false, "R", 0, "A", 0, X, ""}).message(),
              HasSubstr("which is connected"));
  ASSERT_TRUE(c.CopyIn(Item{false, "R", 1, "A", 0, X, "rec"}).ok());
  EXPECT_THAT(c.CopyIn(Item{false, "R", 2, "B", 0, S, ""}).message(),
              HasSubstr("conflicting modes"));
  EXPECT_THAT(c.CopyIn(Item{false, "S", 2, "B", 0, S, ""}).message(),
              HasSubstr("more than 1 resources"));
  ASSERT_TRUE(c.CopyIn(Item{true, "R", 2, "", 7, S, ""}).ok());
  EXPECT_THAT(c.CopyIn(Item{true, "R", 2, "", 8, S, ""}).message(), HasSubstr("queued twice"));
  EXPECT_THAT(c.CopyIn(Item{false, "R", 0, "C", 0, S, ""}).message(),
              HasSubstr("after a queued request"));
  EXPECT_EQ(c.retained_count(), 0u);
}

}  // namespace
}  // namespace hsi::cf
