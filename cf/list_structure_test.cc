// ListStructure without links: every operation, and transition monitoring
// telling each monitor exactly once per empty -> non-empty transition.
#include "list_structure.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi::cf {
namespace {

using ::testing::HasSubstr;

TEST(ListStructureTest, PushPopAtBothEndsReadDeleteMove) {
  ListStructure l("LIST1", 2, 10, 8);
  std::vector<Transition> t;
  EXPECT_EQ(*l.Push(0, ListEnd::kTail, "k1", "a", &t), 1u);
  EXPECT_EQ(*l.Push(0, ListEnd::kTail, "k2", "b", &t), 2u);
  EXPECT_EQ(*l.Push(0, ListEnd::kHead, "k0", "z", &t), 3u);
  EXPECT_EQ(l.in_use(), 3u);
  EXPECT_EQ(l.Read(0, "k2")->data, "b");
  EXPECT_EQ(l.Read(0, "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(l.Move(0, 1, "k1", ListEnd::kTail, &t).ok());
  EXPECT_EQ(l.Read(1, "k1")->data, "a");
  EXPECT_EQ(l.Read(0, "k1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(l.Delete(0, "k2").ok());
  EXPECT_EQ(l.Delete(0, "k2").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(l.Pop(0, ListEnd::kTail)->key, "k0");
  EXPECT_EQ(l.Pop(0, ListEnd::kHead).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(l.Pop(1, ListEnd::kHead)->key, "k1");
  EXPECT_EQ(l.in_use(), 0u);
}

TEST(ListStructureTest, BoundsAreCheckedAndNamed) {
  ListStructure l("LIST1", 2, 1, 4);
  std::vector<Transition> t;
  absl::StatusOr<uint32_t> bad = l.Push(2, ListEnd::kTail, "k", "", &t);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("list 2 does not exist (0..1)"));
  EXPECT_THAT(l.Push(0, ListEnd::kTail, "k", "12345", &t).status().message(),
              HasSubstr("exceeds max_data 4"));
  ASSERT_TRUE(l.Push(0, ListEnd::kTail, "k", "1234", &t).ok());
  EXPECT_EQ(l.Push(1, ListEnd::kTail, "k", "", &t).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(l.Move(0, 5, "k", ListEnd::kTail, &t).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ListStructureTest, MonitorsAreToldOncePerEmptyToNonEmptyTransition) {
  ListStructure l("LIST1", 2, 100, 8);
  std::vector<Transition> t;
  EXPECT_EQ(*l.Monitor(7, 0, true), 0u);
  EXPECT_EQ(*l.Monitor(8, 0, true), 0u);
  for (int round = 0; round < 3; ++round) {
    t.clear();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(l.Push(0, ListEnd::kTail, "k", "d", &t).ok());
    ASSERT_EQ(t.size(), 2u) << "round " << round;  // one per monitor, not one per push
    EXPECT_EQ(t[0].conn, 7u);
    EXPECT_EQ(t[1].conn, 8u);
    EXPECT_EQ(t[0].list, 0u);
    t.clear();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(l.Pop(0, ListEnd::kHead).ok());
    EXPECT_TRUE(t.empty());
  }
  EXPECT_EQ(l.counters().transitions, 3u);
  // A move into an empty list is a transition; a move within one is not.
  ASSERT_TRUE(l.Push(1, ListEnd::kTail, "m", "", &t).ok());
  t.clear();
  ASSERT_TRUE(l.Move(1, 1, "m", ListEnd::kHead, &t).ok());
  EXPECT_TRUE(t.empty());
  ASSERT_TRUE(l.Move(1, 0, "m", ListEnd::kHead, &t).ok());
  ASSERT_EQ(t.size(), 2u);
  // Off, and a forgotten connection, hear nothing.
  ASSERT_TRUE(l.Pop(0, ListEnd::kHead).ok());
  EXPECT_EQ(*l.Monitor(7, 0, false), 0u);
  l.Forget(8);
  t.clear();
  ASSERT_TRUE(l.Push(0, ListEnd::kTail, "k", "", &t).ok());
  EXPECT_TRUE(t.empty());
  // Monitoring a non-empty list says how long it is (no transition to wait for).
  EXPECT_EQ(*l.Monitor(9, 0, true), 1u);
}

// PopWait (BLPOP's role): pops at once with the count left; on an empty
// list the request waits and the next entry to arrive is handed to the
// oldest waiter, never shown in the list nor told to its monitors.
TEST(ListStructureTest, PopWaitPopsAtOnceOrHandsTheNextEntryToTheOldestWaiter) {
  ListStructure l("LIST1", 2, 100, 8);
  std::vector<Transition> t;
  ASSERT_TRUE(l.Push(0, ListEnd::kTail, "a", "1", &t).ok());
  ASSERT_TRUE(l.Push(0, ListEnd::kTail, "b", "2", &t).ok());
  absl::StatusOr<PopWaitResult> r = l.PopWait(5, 100, 0, ListEnd::kHead);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->waiting);
  EXPECT_EQ(r->entry.key, "a");
  EXPECT_EQ(r->left, 1u);
  r = l.PopWait(5, 101, 0, ListEnd::kTail);
  EXPECT_EQ(r->entry.data, "2");
  EXPECT_EQ(r->left, 0u);
  // Empty: two connections wait; the monitor of the list hears nothing of
  // the entries handed to them.
  EXPECT_EQ(*l.Monitor(9, 0, true), 0u);
  EXPECT_TRUE(l.PopWait(5, 102, 0, ListEnd::kHead)->waiting);
  EXPECT_TRUE(l.PopWait(6, 200, 0, ListEnd::kHead)->waiting);
  EXPECT_EQ(l.PopWait(5, 103, 0, ListEnd::kHead).status().code(),
            absl::StatusCode::kAlreadyExists);
  t.clear();
  EXPECT_EQ(*l.Push(0, ListEnd::kTail, "c", "3", &t), 0u);  // handed out: the list stays empty
  ASSERT_EQ(t.size(), 1u);
  EXPECT_TRUE(t[0].popped);
  EXPECT_EQ(t[0].conn, 5u);
  EXPECT_EQ(t[0].request_id, 102u);
  EXPECT_EQ(t[0].entry.key, "c");
  EXPECT_EQ(t[0].entry.data, "3");
  // A move from another list serves the next waiter.
  ASSERT_TRUE(l.Push(1, ListEnd::kTail, "d", "4", &t).ok());
  t.clear();
  ASSERT_TRUE(l.Move(1, 0, "d", ListEnd::kHead, &t).ok());
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].conn, 6u);
  EXPECT_EQ(t[0].request_id, 200u);
  EXPECT_EQ(t[0].entry.data, "4");
  EXPECT_EQ(l.in_use(), 0u);
  EXPECT_EQ(l.counters().handed, 2u);
  // No waiter left: the next push is a transition, told once.
  t.clear();
  ASSERT_TRUE(l.Push(0, ListEnd::kTail, "e", "5", &t).ok());
  ASSERT_EQ(t.size(), 1u);
  EXPECT_FALSE(t[0].popped);
  EXPECT_EQ(t[0].conn, 9u);
  EXPECT_EQ(l.in_use(), 1u);
}

TEST(ListStructureTest, PopWaitIsWithdrawnByCancelAndByAConnectionThatGoes) {
  ListStructure l("LIST1", 2, 100, 8);
  std::vector<Transition> t;
  EXPECT_TRUE(l.PopWait(5, 1, 0, ListEnd::kHead)->waiting);
  EXPECT_TRUE(*l.CancelPopWait(5, 0));
  EXPECT_FALSE(*l.CancelPopWait(5, 0));  // nothing waits any more
  EXPECT_TRUE(l.PopWait(6, 2, 1, ListEnd::kHead)->waiting);
  l.Forget(6);
  ASSERT_TRUE(l.Push(0, ListEnd::kTail, "a", "", &t).ok());
  ASSERT_TRUE(l.Push(1, ListEnd::kTail, "b", "", &t).ok());
  EXPECT_TRUE(t.empty());  // no one waits and no one monitors
  EXPECT_EQ(l.in_use(), 2u);
  EXPECT_THAT(l.PopWait(5, 3, 2, ListEnd::kHead).status().message(),
              HasSubstr("list 2 does not exist"));
  EXPECT_EQ(l.CancelPopWait(5, 2).status().code(), absl::StatusCode::kInvalidArgument);
}

// Re-duplexing's copy: entries in order, monitors and waiting pops, replayed
// into an empty structure, behave as the original's.
TEST(ListStructureTest, ACopyReplaysEntriesMonitorsAndWaitingPops) {
  ListStructure l("LIST1", 3, 10, 8);
  std::vector<Transition> t;
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(l.Push(0, ListEnd::kTail, absl::StrCat("k", i), "d", &t).ok());
  ASSERT_TRUE(l.Monitor(7, 1, true).ok());
  ASSERT_TRUE(l.PopWait(8, 80, 2, ListEnd::kHead).ok());
  ListStructure c("LIST1", 3, 10, 8);
  for (ListStructure::CopyItem& it : l.CopyOut()) ASSERT_TRUE(c.CopyIn(std::move(it)).ok());
  EXPECT_EQ(c.in_use(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.Pop(0, ListEnd::kHead)->key, absl::StrCat("k", i));
  t.clear();
  ASSERT_TRUE(c.Push(2, ListEnd::kTail, "w", "x", &t).ok());  // to the waiter
  ASSERT_TRUE(c.Push(1, ListEnd::kTail, "m", "y", &t).ok());  // a transition for the monitor
  ASSERT_EQ(t.size(), 2u);
  EXPECT_TRUE(t[0].popped);
  EXPECT_EQ(t[0].conn, 8u);
  EXPECT_EQ(t[0].request_id, 80u);
  EXPECT_EQ(t[0].entry.key, "w");
  EXPECT_FALSE(t[1].popped);
  EXPECT_EQ(t[1].conn, 7u);
  EXPECT_EQ(t[1].list, 1u);
}

TEST(ListStructureTest, ACopyThatBreaksTheRulesIsRefusedNamingWhy) {
  ListStructure c("LIST1", 2, 1, 4);
  using Item = ListStructure::CopyItem;
  using K = Item::Kind;
  EXPECT_THAT(c.CopyIn(Item{K::kEntry, 5, 0, 0, {"k", "d"}}).message(),
              HasSubstr("does not exist"));
  EXPECT_THAT(c.CopyIn(Item{K::kEntry, 0, 0, 0, {"k", "toolong"}}).message(),
              HasSubstr("too long"));
  ASSERT_TRUE(c.CopyIn(Item{K::kWaiter, 1, 3, 30, {}}).ok());
  EXPECT_THAT(c.CopyIn(Item{K::kWaiter, 1, 3, 31, {}}).message(), HasSubstr("two waiting pops"));
  EXPECT_THAT(c.CopyIn(Item{K::kEntry, 1, 0, 0, {"k", "d"}}).message(),
              HasSubstr("with waiting pops"));
  ASSERT_TRUE(c.CopyIn(Item{K::kEntry, 0, 0, 0, {"k", "d"}}).ok());
  EXPECT_THAT(c.CopyIn(Item{K::kWaiter, 0, 4, 40, {}}).message(), HasSubstr("with entries"));
  EXPECT_THAT(c.CopyIn(Item{K::kEntry, 0, 0, 0, {"k2", "d"}}).message(),
              HasSubstr("more than 1 entries"));
  EXPECT_EQ(c.in_use(), 1u);
}

}  // namespace
}  // namespace hsi::cf
