// ListStructure without links: every operation, and transition monitoring
// telling each monitor exactly once per empty -> non-empty transition.
#include "list_structure.h"

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

}  // namespace
}  // namespace hsi::cf
