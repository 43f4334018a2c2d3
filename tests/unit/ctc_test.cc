// hsi::CtcDevice: writes taken by reads, a write that nobody takes is
// withdrawn, a write collision fails both writes and is counted and
// recovered, and an end that corrupts its half-channel breaks only that
// device.
#include "hsi/ctc.h"

#include <sys/mman.h>

#include <cstring>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "internal/ctc_layout.h"

namespace hsi {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kBlock = 4096;

struct Pair {
  CtcDevice a, b;
};

Pair MakePair(absl::Duration recovery = absl::Microseconds(200)) {
  CtcPairFds fds = CreateCtcPairFds(kBlock).value();
  CtcOptions oa{.device = DeviceNumber(0xD000), .peer_device = DeviceNumber(0xE000), .peer_lpar = "", .block_size = kBlock,
                .recovery = recovery};
  CtcOptions ob{.device = DeviceNumber(0xE000), .peer_device = DeviceNumber(0xD000), .peer_lpar = "", .block_size = kBlock,
                .recovery = recovery};
  return Pair{CtcDevice::OpenFds(std::move(fds.a), oa).value(), CtcDevice::OpenFds(std::move(fds.b), ob).value()};
}

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed * 131 + i * 7);
  return v;
}

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

TEST(CtcDeviceTest, EveryWriteIsTakenByAReadInOrderBothWays) {
  Pair p = MakePair();
  constexpr int kWrites = 300;
  uint64_t bytes = 0;
  for (int i = 0; i < kWrites; ++i) bytes += 1 + (i * 37) % kBlock;
  std::thread reader([&] {
    std::vector<uint8_t> got;
    for (int i = 0; i < kWrites; ++i) {
      absl::StatusOr<size_t> n = p.b.Read(&got, Soon());
      ASSERT_TRUE(n.ok()) << n.status();
      ASSERT_EQ(got, Pattern(1 + (i * 37) % kBlock, i)) << "write " << i;
    }
    ASSERT_TRUE(p.b.Write(Pattern(64, 999), Soon()).ok());  // and back
  });
  for (int i = 0; i < kWrites; ++i) ASSERT_TRUE(p.a.Write(Pattern(1 + (i * 37) % kBlock, i), Soon()).ok()) << i;
  std::vector<uint8_t> back;
  ASSERT_TRUE(p.a.Read(&back, Soon()).ok());
  reader.join();
  EXPECT_EQ(back, Pattern(64, 999));
  EXPECT_EQ(p.a.counters().writes, static_cast<uint64_t>(kWrites));
  EXPECT_EQ(p.a.counters().bytes_written, bytes);
  EXPECT_EQ(p.b.counters().reads, static_cast<uint64_t>(kWrites));
  EXPECT_EQ(p.b.counters().bytes_read, bytes);
  EXPECT_EQ(p.a.counters().collisions + p.b.counters().collisions, 0u);
}

TEST(CtcDeviceTest, AWriteNobodyTakesIsWithdrawnAtItsDeadline) {
  Pair p = MakePair();
  absl::Status s = p.a.Write(Pattern(100, 1), absl::Now() + absl::Milliseconds(30));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("CTC D000"));
  EXPECT_EQ(p.a.counters().withdrawn, 1u);
  EXPECT_EQ(p.a.counters().writes, 0u);
  // Withdrawn: nothing for the other end to read.
  EXPECT_EQ(p.b.WaitIncoming(absl::Now()).code(), absl::StatusCode::kDeadlineExceeded);
  // The device is free again.
  std::thread r([&] {
    std::vector<uint8_t> got;
    ASSERT_TRUE(p.b.Read(&got, Soon()).ok());
    EXPECT_EQ(got, Pattern(200, 2));
  });
  EXPECT_TRUE(p.a.Write(Pattern(200, 2), Soon()).ok());
  r.join();
}

TEST(CtcDeviceTest, AWriteStartedWhileTheOtherIsInFlightIsACollisionBothFailAndRecover) {
  const absl::Duration recovery = absl::Milliseconds(3);
  Pair p = MakePair(recovery);
  absl::Status a_result;
  std::thread writer_a([&] { a_result = p.a.Write(Pattern(500, 1), Soon()); });
  // A's write is in flight once B sees it pending.
  ASSERT_TRUE(p.b.WaitIncoming(Soon()).ok());
  const absl::Status b_result = p.b.Write(Pattern(300, 2), Soon());
  writer_a.join();
  EXPECT_EQ(a_result.code(), absl::StatusCode::kAborted) << a_result;
  EXPECT_EQ(b_result.code(), absl::StatusCode::kAborted) << b_result;
  EXPECT_THAT(a_result.message(), HasSubstr("write collision"));
  EXPECT_THAT(b_result.message(), HasSubstr("write collision"));
  for (CtcDevice* d : {&p.a, &p.b}) {
    const CtcCounters c = d->counters();
    EXPECT_EQ(c.collisions, 1u);
    EXPECT_GE(c.recovery_ns, static_cast<uint64_t>(absl::ToInt64Nanoseconds(recovery)));
    EXPECT_EQ(c.writes, 0u);
    EXPECT_EQ(c.reads, 0u);
  }
  // Neither write was delivered: nothing pending either way.
  EXPECT_EQ(p.a.WaitIncoming(absl::Now()).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(p.b.WaitIncoming(absl::Now()).code(), absl::StatusCode::kDeadlineExceeded);
  // Recovered: the device carries writes again.
  std::thread r([&] {
    std::vector<uint8_t> got;
    ASSERT_TRUE(p.b.Read(&got, Soon()).ok());
    EXPECT_EQ(got, Pattern(500, 3));
  });
  EXPECT_TRUE(p.a.Write(Pattern(500, 3), Soon()).ok());
  r.join();
  EXPECT_EQ(p.a.counters().writes, 1u);
}

// A real CTC end that finds the device busy with the other side's write
// does not start its own: WriteIfIdle says "busy" (false), starts nothing
// and counts nothing; once the pending write is taken, it writes.
TEST(CtcDeviceTest, WriteIfIdleDoesNotStartOnADeviceThePeerIsWriting) {
  Pair p = MakePair();
  EXPECT_FALSE(p.a.PeerBusy());
  EXPECT_FALSE(p.b.PeerBusy());
  absl::Status a_result;
  std::thread writer_a([&] { a_result = p.a.Write(Pattern(500, 1), Soon()); });
  ASSERT_TRUE(p.b.WaitIncoming(Soon()).ok());
  EXPECT_TRUE(p.b.PeerBusy());
  EXPECT_FALSE(p.a.PeerBusy());
  absl::StatusOr<bool> started = p.b.WriteIfIdle(Pattern(300, 2), Soon());
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_FALSE(*started) << "the device was busy with A's write";
  // A's write is still in flight, untouched: B takes it.
  std::vector<uint8_t> got;
  ASSERT_TRUE(p.b.Read(&got, Soon()).ok());
  EXPECT_EQ(got, Pattern(500, 1));
  writer_a.join();
  EXPECT_TRUE(a_result.ok()) << a_result;
  EXPECT_FALSE(p.b.PeerBusy());
  std::thread reader_a([&] {
    std::vector<uint8_t> g;
    ASSERT_TRUE(p.a.Read(&g, Soon()).ok());
    EXPECT_EQ(g, Pattern(300, 2));
  });
  started = p.b.WriteIfIdle(Pattern(300, 2), Soon());
  reader_a.join();
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_TRUE(*started);
  for (CtcDevice* d : {&p.a, &p.b}) {
    EXPECT_EQ(d->counters().collisions, 0u);
    EXPECT_EQ(d->counters().withdrawn, 0u);
  }
  EXPECT_EQ(p.a.counters().writes, 1u);
  EXPECT_EQ(p.b.counters().writes, 1u);
}

// Both ends hammer one device both ways: every write either arrives once or
// fails as a collision on BOTH ends; none is lost, none arrives twice.
TEST(CtcDeviceTest, RacingWritesEitherArriveOnceOrFailOnBothEnds) {
  Pair p = MakePair(absl::ZeroDuration());
  constexpr int kEach = 400;
  std::atomic<int> finished{0};
  auto side = [&](CtcDevice& d, uint8_t tag, std::vector<int>* sent, std::vector<int>* got) {
    int next = 0;
    bool counted = false;
    std::vector<uint8_t> buf;
    // Write kEach, then keep taking until the other side has written its own.
    while (finished.load() < 2) {
      if (next < kEach) {
        std::vector<uint8_t> msg = {tag, static_cast<uint8_t>(next), static_cast<uint8_t>(next >> 8)};
        absl::Status s = d.Write(msg, absl::Now() + absl::Seconds(10));
        if (s.ok()) {
          sent->push_back(next++);
        } else {
          ASSERT_EQ(s.code(), absl::StatusCode::kAborted) << s;
        }
      } else {
        if (!counted) finished.fetch_add(1);
        counted = true;
        absl::Status w = d.WaitIncoming(absl::Now() + absl::Milliseconds(5));
        if (!w.ok()) {
          ASSERT_EQ(w.code(), absl::StatusCode::kDeadlineExceeded) << w;
        }
      }
      for (;;) {  // take whatever the other side has pending
        absl::StatusOr<bool> c = d.TryCopy(&buf);
        ASSERT_TRUE(c.ok()) << c.status();
        if (!*c) break;
        got->push_back(buf[1] | buf[2] << 8);
        d.Complete();
      }
    }
  };
  std::vector<int> sent_a, sent_b, got_a, got_b;
  std::thread ta([&] { side(p.a, 'a', &sent_a, &got_a); });
  std::thread tb([&] { side(p.b, 'b', &sent_b, &got_b); });
  ta.join();
  tb.join();
  ASSERT_EQ(sent_a.size(), static_cast<size_t>(kEach));
  ASSERT_EQ(sent_b.size(), static_cast<size_t>(kEach));
  // Drain what the last writes left (none: a write returns only when taken).
  EXPECT_EQ(sent_a, got_b);
  EXPECT_EQ(sent_b, got_a);
  EXPECT_EQ(p.a.counters().writes, sent_a.size());
  EXPECT_EQ(p.b.counters().reads, sent_a.size());
}

TEST(CtcDeviceTest, AnEndThatCorruptsItsHalfBreaksOnlyThatDevice) {
  CtcPairFds fds = CreateCtcPairFds(kBlock).value();
  // The hostile end: maps its own half writable and scribbles the state.
  Segment hostile = Segment::MapOwner(std::move(fds.a.own), CtcSegmentSize(kBlock)).value();
  CtcOptions ob{.device = DeviceNumber(0xE000), .peer_device = DeviceNumber(0xD000), .peer_lpar = "", .block_size = kBlock};
  CtcDevice victim = CtcDevice::OpenFds(std::move(fds.b), ob).value();
  Pair other = MakePair();  // a second, honest device

  auto* st = reinterpret_cast<internal::CtcHalfState*>(static_cast<uint8_t*>(hostile.data()) +
                                                       internal::CtcHalf::kState);
  st->write_len.store(uint64_t{1} << 40, std::memory_order_relaxed);  // far over the block size
  st->write_seq.store(7, std::memory_order_seq_cst);
  std::vector<uint8_t> got;
  absl::StatusOr<size_t> r = victim.Read(&got, Soon());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("CTC E000"));
  EXPECT_THAT(r.status().message(), HasSubstr("bytes"));
  EXPECT_EQ(victim.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(victim.counters().broken, 1u);
  EXPECT_EQ(victim.Write(Pattern(10, 1), Soon()).code(), absl::StatusCode::kDataLoss);

  // A position that goes back breaks a device too.
  CtcPairFds fds2 = CreateCtcPairFds(kBlock).value();
  Segment hostile2 = Segment::MapOwner(std::move(fds2.a.own), CtcSegmentSize(kBlock)).value();
  CtcDevice victim2 = CtcDevice::OpenFds(std::move(fds2.b), ob).value();
  auto* st2 = reinterpret_cast<internal::CtcHalfState*>(static_cast<uint8_t*>(hostile2.data()) +
                                                        internal::CtcHalf::kState);
  st2->write_len.store(8, std::memory_order_relaxed);
  st2->write_seq.store(5, std::memory_order_seq_cst);
  ASSERT_TRUE(victim2.TryCopy(&got).value());
  victim2.Complete();
  st2->write_seq.store(3, std::memory_order_seq_cst);
  EXPECT_THAT(victim2.WaitIncoming(Soon()).message(), HasSubstr("went back"));

  // The honest device is untouched.
  std::thread rd([&] { ASSERT_TRUE(other.b.Read(&got, Soon()).ok()); });
  EXPECT_TRUE(other.a.Write(Pattern(64, 5), Soon()).ok());
  rd.join();
  EXPECT_TRUE(other.b.status().ok());
}

TEST(CtcDeviceTest, RefusesBadSizesAndReadsCountersOfAHalf) {
  Pair p = MakePair();
  EXPECT_EQ(p.a.Write({}, Soon()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.a.Write(std::vector<uint8_t>(kBlock + 1), Soon()).message(), HasSubstr("1..4096"));
  EXPECT_FALSE(CheckCtcBlockSize(100).ok());
  EXPECT_FALSE(CreateCtcPairFds(0).ok());
}

}  // namespace
}  // namespace hsi
