#include "hsi/segment.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hsi/doorbell.h"

namespace hsi {
namespace {

TEST(SegmentTest, OwnerWritesPeerSeesReadOnly) {
  auto fd = Segment::CreateMemfd("t", 8192);
  ASSERT_TRUE(fd.ok()) << fd.status();
  auto peer_fd = UniqueFd(::dup(fd->get()));
  auto own = Segment::MapOwner(std::move(*fd), 8192);
  ASSERT_TRUE(own.ok()) << own.status();
  auto peer = Segment::MapPeer(std::move(peer_fd), 8192);
  ASSERT_TRUE(peer.ok()) << peer.status();
  static_cast<char*>(own->data())[100] = 'x';
  EXPECT_EQ(static_cast<const char*>(peer->data())[100], 'x');
  EXPECT_TRUE(own->writable());
  EXPECT_FALSE(peer->writable());
}

// Invariant 1: after the owner maps, no one can get a writable mapping,
// not even by reopening /proc/self/fd/N read-write.
TEST(SegmentTest, PeerCannotGainWriteAccess) {
  auto fd = Segment::CreateMemfd("t", 4096);
  ASSERT_TRUE(fd.ok());
  UniqueFd peer_fd(::dup(fd->get()));
  auto own = Segment::MapOwner(std::move(*fd), 4096);
  ASSERT_TRUE(own.ok()) << own.status();

  std::string path = "/proc/self/fd/" + std::to_string(peer_fd.get());
  UniqueFd rw(::open(path.c_str(), O_RDWR));
  ASSERT_TRUE(rw.valid()) << "reopen failed; the test expects the kernel to allow it";
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rw.get(), 0);
  EXPECT_EQ(p, MAP_FAILED) << "peer mapped the segment writable";
  if (p != MAP_FAILED) ::munmap(p, 4096);
  EXPECT_EQ(errno, EPERM);
  char c = 'y';
  EXPECT_LT(::pwrite(rw.get(), &c, 1, 0), 0) << "peer wrote with write()";
  EXPECT_LT(::ftruncate(rw.get(), 0), 0) << "peer shrank the segment";
  EXPECT_LT(::fcntl(rw.get(), F_ADD_SEALS, 0), 0) << "seals are not sealed";
  // The owner's mapping stays writable.
  static_cast<char*>(own->data())[0] = 'z';
  EXPECT_EQ(static_cast<char*>(own->data())[0], 'z');
}

TEST(SegmentTest, OwnerMapsOnlyOnce) {
  auto fd = Segment::CreateMemfd("t", 4096);
  ASSERT_TRUE(fd.ok());
  UniqueFd again(::dup(fd->get()));
  ASSERT_TRUE(Segment::MapOwner(std::move(*fd), 4096).ok());
  auto second = Segment::MapOwner(std::move(again), 4096);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
}

TEST(SegmentTest, RejectsUnsealedWrongSizeAndNonMemfd) {
  UniqueFd plain(::memfd_create("plain", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_EQ(::ftruncate(plain.get(), 4096), 0);
  auto r = Segment::MapPeer(std::move(plain), 4096);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("shrink and grow"), absl::string_view::npos) << r.status();

  auto fd = Segment::CreateMemfd("t", 4096);
  ASSERT_TRUE(fd.ok());
  r = Segment::MapPeer(std::move(*fd), 8192);
  EXPECT_NE(r.status().message().find("4096 bytes, expected 8192"), absl::string_view::npos) << r.status();

  UniqueFd pipe_fds[2];
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pipe_fds[0] = UniqueFd(p[0]);
  pipe_fds[1] = UniqueFd(p[1]);
  r = Segment::MapPeer(std::move(pipe_fds[0]), 4096);
  EXPECT_NE(r.status().message().find("not a sealable memfd"), absl::string_view::npos) << r.status();
}

TEST(SegmentTest, AccessPastTheEndFaults) {
  auto fd = Segment::CreateMemfd("t", 4096);
  ASSERT_TRUE(fd.ok());
  auto seg = Segment::MapPeer(std::move(*fd), 4096);
  ASSERT_TRUE(seg.ok());
  const volatile char* end = static_cast<const char*>(seg->data()) + 4096;
  EXPECT_DEATH({ (void)*end; }, "");
}

TEST(DoorbellTest, AdoptRejectsWhatIsNotADoorbell) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd keep(sv[1]);
  auto bell = Doorbell::Adopt(UniqueFd(sv[0]));
  EXPECT_EQ(bell.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bell.status().message().find("not an eventfd or an end of a split doorbell"), absl::string_view::npos)
      << bell.status();
}

// A split doorbell: ringers hold the ring end and cannot read the rings
// back; the owner waits on the wait end and drains it. Ringing never blocks
// on a full pipe left blocking, and ringing an owner that is gone raises no
// SIGPIPE (the default action would kill this test).
TEST(DoorbellTest, SplitDoorbellRingersCannotConsumeRings) {
  UniqueFd ring_fd;
  auto wait = Doorbell::CreateSplit(&ring_fd);
  ASSERT_TRUE(wait.ok()) << wait.status();
  EXPECT_EQ(wait->kind(), Doorbell::Kind::kWaitEnd);
  auto ring = Doorbell::Adopt(std::move(ring_fd));
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->kind(), Doorbell::Kind::kRingEnd);
  EXPECT_EQ(wait->WaitUntil(absl::Now() + absl::Milliseconds(5)).code(), absl::StatusCode::kDeadlineExceeded);
  ring->Ring();
  ring->Ring();
  EXPECT_FALSE(ring->Drain());  // a ringer has nothing to drain
  char b;
  EXPECT_EQ(::read(ring->fd(), &b, 1), -1) << "the ring end read a ring back";
  EXPECT_EQ(errno, EBADF);
  EXPECT_TRUE(wait->WaitUntil(absl::Now() + absl::Seconds(5)).ok());
  EXPECT_FALSE(wait->Drain()) << "WaitUntil left rings behind";
  // Full and blocking, as a hostile holder can leave it.
  ::alarm(10);
  const std::vector<char> chunk(4096, 1);
  while (::write(ring->fd(), chunk.data(), chunk.size()) > 0) {
  }
  ASSERT_EQ(::fcntl(ring->fd(), F_SETFL, ::fcntl(ring->fd(), F_GETFL) & ~O_NONBLOCK), 0);
  ring->Ring();  // a plain send() would block here
  EXPECT_TRUE(wait->Drain());
  ::alarm(0);
  // The owner is gone: EPIPE, and the SIGPIPE it raised is taken.
  *wait = Doorbell();
  ring->Ring();
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(::sigpending(&pending), 0);
  EXPECT_FALSE(sigismember(&pending, SIGPIPE)) << "a SIGPIPE was left pending";
}

TEST(DoorbellTest, RingWakesWaiter) {
  auto bell = Doorbell::Create();
  ASSERT_TRUE(bell.ok());
  EXPECT_EQ(bell->WaitUntil(absl::Now() + absl::Milliseconds(5)).code(),
            absl::StatusCode::kDeadlineExceeded);
  bell->Ring();
  bell->Ring();
  EXPECT_TRUE(bell->WaitUntil(absl::Now() + absl::Seconds(5)).ok());
  EXPECT_FALSE(bell->Drain());  // both rings consumed at once
}

// hsid hands each ringer an open file of its own: flags one holder changes
// do not reach the others.
TEST(DoorbellTest, OpenPrivateGivesARingerFlagsOfItsOwn) {
  UniqueFd ring_fd;
  auto wait = Doorbell::CreateSplit(&ring_fd);
  ASSERT_TRUE(wait.ok()) << wait.status();
  auto shared = Doorbell::Adopt(std::move(ring_fd));
  ASSERT_TRUE(shared.ok()) << shared.status();
  absl::StatusOr<UniqueFd> mine = shared->OpenPrivate();
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_EQ(::fcntl(shared->fd(), F_SETFL, ::fcntl(shared->fd(), F_GETFL) & ~O_NONBLOCK), 0);
  EXPECT_NE(::fcntl(mine->get(), F_GETFL) & O_NONBLOCK, 0) << "the reopened ring end shares the other's flags";
  auto ring = Doorbell::Adopt(std::move(*mine));
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->kind(), Doorbell::Kind::kRingEnd);
  ring->Ring();
  EXPECT_TRUE(wait->WaitUntil(absl::Now() + absl::Seconds(5)).ok());
  // An eventfd has no such thing: OpenPrivate() is a dup of the same file.
  auto efd = Doorbell::Create();
  ASSERT_TRUE(efd.ok());
  absl::StatusOr<UniqueFd> dup = efd->OpenPrivate();
  ASSERT_TRUE(dup.ok());
  ASSERT_EQ(::fcntl(efd->fd(), F_SETFL, 0), 0);
  EXPECT_EQ(::fcntl(dup->get(), F_GETFL) & O_NONBLOCK, 0);
}

// A peer holding our doorbell's fd can clear O_NONBLOCK on the shared file
// and saturate the counter. Ring(), Drain() and WaitUntil() must still
// return: alarm() turns a block into a failed (killed) test, not a hang.
TEST(DoorbellTest, NeverBlocksOnAFileAPeerMadeBlocking) {
  const int raw = ::eventfd(0, EFD_CLOEXEC);  // blocking, as a hostile peer leaves it
  ASSERT_GE(raw, 0);
  auto bell = Doorbell::Adopt(UniqueFd(raw));
  ASSERT_TRUE(bell.ok()) << bell.status();
  ::alarm(10);
  EXPECT_FALSE(bell->Drain());  // empty: a plain read() would block here
  EXPECT_EQ(bell->WaitUntil(absl::Now() + absl::Milliseconds(5)).code(), absl::StatusCode::kDeadlineExceeded);
  const uint64_t full = 0xfffffffffffffffeULL;
  ASSERT_EQ(::write(raw, &full, sizeof(full)), static_cast<ssize_t>(sizeof(full)));
  bell->Ring();  // saturated: a plain write() of 1 would block here
  EXPECT_TRUE(bell->WaitUntil(absl::Now() + absl::Seconds(5)).ok());
  EXPECT_FALSE(bell->Drain()) << "WaitUntil left a count behind";
  bell->Ring();
  EXPECT_TRUE(bell->Drain());
  ::alarm(0);
}

}  // namespace
}  // namespace hsi
