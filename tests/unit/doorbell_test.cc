// hsi::Doorbell: eventfd and split (pipe) doorbells, rung and waited on
// within a process and across processes. (libhsi/src/segment_test.cc keeps
// the hostile-holder cases: Adopt of a non-doorbell, ringers that cannot
// consume, flags a peer changes.)
#include "hsi/doorbell.h"

#include <signal.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "hsi/fd.h"
#include "hsi/testing/child.h"
#include "hsi/testing/line_pipe.h"

namespace hsi {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::LinePipe;

absl::Time In(absl::Duration d) { return absl::Now() + d; }

TEST(DoorbellTest, UnrungEventfdTimesOutAndHasNothingToDrain) {
  absl::StatusOr<Doorbell> b = Doorbell::Create();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->kind(), Doorbell::Kind::kEventfd);
  EXPECT_TRUE(b->valid());
  EXPECT_FALSE(b->Drain());
  EXPECT_EQ(b->WaitUntil(In(absl::Milliseconds(20))).code(), absl::StatusCode::kDeadlineExceeded);
  // A deadline already past is a poll, not a sleep.
  EXPECT_EQ(b->WaitUntil(absl::InfinitePast()).code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(DoorbellTest, RingsCoalesceIntoOneWakeUp) {
  absl::StatusOr<Doorbell> b = Doorbell::Create();
  ASSERT_TRUE(b.ok()) << b.status();
  b->Ring();
  b->Ring();
  b->Ring();
  EXPECT_TRUE(b->Drain());
  EXPECT_FALSE(b->Drain());
  b->Ring();
  EXPECT_TRUE(b->WaitUntil(In(absl::Seconds(5))).ok());
  // WaitUntil consumed it.
  EXPECT_FALSE(b->Drain());
}

TEST(DoorbellTest, SplitDoorbellHasAWaitEndAndARingEnd) {
  UniqueFd ring_fd;
  absl::StatusOr<Doorbell> wait_end = Doorbell::CreateSplit(&ring_fd);
  ASSERT_TRUE(wait_end.ok()) << wait_end.status();
  ASSERT_TRUE(ring_fd.valid());
  EXPECT_EQ(wait_end->kind(), Doorbell::Kind::kWaitEnd);
  absl::StatusOr<Doorbell> ring_end = Doorbell::Adopt(std::move(ring_fd));
  ASSERT_TRUE(ring_end.ok()) << ring_end.status();
  EXPECT_EQ(ring_end->kind(), Doorbell::Kind::kRingEnd);

  EXPECT_FALSE(wait_end->Drain());
  ring_end->Ring();
  ring_end->Ring();
  EXPECT_TRUE(wait_end->WaitUntil(In(absl::Seconds(5))).ok());
  EXPECT_FALSE(wait_end->Drain());  // both rings were consumed
  EXPECT_EQ(wait_end->WaitUntil(In(absl::Milliseconds(10))).code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(DoorbellTest, AdoptedDupRingsTheSameEventfd) {
  absl::StatusOr<Doorbell> b = Doorbell::Create();
  ASSERT_TRUE(b.ok()) << b.status();
  absl::StatusOr<UniqueFd> dup = b->Dup();
  ASSERT_TRUE(dup.ok()) << dup.status();
  absl::StatusOr<Doorbell> other = Doorbell::Adopt(std::move(*dup));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->kind(), Doorbell::Kind::kEventfd);
  other->Ring();
  EXPECT_TRUE(b->Drain());
}

// The waiter is asleep before the ring: the child rings only after the
// parent said (through the pipe) that it is about to wait, and a ring that
// comes before the sleep must still wake it (the count stays until consumed).
TEST(DoorbellTest, RingFromAnotherProcessWakesASleeper) {
  UniqueFd ring_fd;
  absl::StatusOr<Doorbell> wait_end = Doorbell::CreateSplit(&ring_fd);
  ASSERT_TRUE(wait_end.ok()) << wait_end.status();
  LinePipe go;
  Child ringer([&] {
    absl::StatusOr<Doorbell> r = Doorbell::Adopt(std::move(ring_fd));
    if (!r.ok()) return 1;
    if (go.Read(absl::Seconds(10)) != "go") return 2;
    r->Ring();
    return 0;
  });
  ASSERT_TRUE(ringer.started());
  go.Write("go");
  const absl::Time start = absl::Now();
  EXPECT_TRUE(wait_end->WaitUntil(start + absl::Seconds(10)).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(ringer.Wait(), 0);
}

// Rings a split doorbell whose only read end is closed, with SIGPIPE's
// default action (which would kill the test): Ring() must not let it
// through, nor leave it pending. `make_private`: the ring end reopened as
// a session does (MakePrivate: then it holds a read end of its own and
// writes without a signal mask; checked by hand that without that read end
// and without the mask the test dies of SIGPIPE).
void RingAfterTheOwnerIsGone(bool make_private) {
  UniqueFd ring_fd;
  absl::StatusOr<Doorbell> wait_end = Doorbell::CreateSplit(&ring_fd);
  ASSERT_TRUE(wait_end.ok()) << wait_end.status();
  absl::StatusOr<Doorbell> ring_end = Doorbell::Adopt(std::move(ring_fd));
  ASSERT_TRUE(ring_end.ok()) << ring_end.status();
  if (make_private) {
    ASSERT_TRUE(ring_end->MakePrivate());
  }
  *wait_end = Doorbell();  // closes the owner's read end
  struct sigaction old {};
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ASSERT_EQ(::sigaction(SIGPIPE, &dfl, &old), 0);
  // More rings than a pipe holds bytes: a full pipe must not block either.
  for (int i = 0; i < 70000; ++i) ring_end->Ring();
  sigset_t pending;
  sigemptyset(&pending);
  ::sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGPIPE));
  ::sigaction(SIGPIPE, &old, nullptr);
}

TEST(DoorbellTest, RingingAfterTheOwnerIsGoneRaisesNoSigpipe) { RingAfterTheOwnerIsGone(/*make_private=*/false); }
TEST(DoorbellTest, RingingAPrivateRingEndAfterTheOwnerIsGoneRaisesNoSigpipe) {
  RingAfterTheOwnerIsGone(/*make_private=*/true);
}

}  // namespace
}  // namespace hsi
