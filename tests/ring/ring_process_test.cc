// The frame ring between two processes: long streams with exact accounting
// and checksums, and wake-up correctness of the blocking modes.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/time/clock.h"
#include "hsi/testing/child.h"
#include "gtest/gtest.h"
#include "hsi/endpoint.h"

namespace hsi {
namespace {

using testing::Child;

uint64_t FramesFromEnv(uint64_t fallback) {
  const char* v = std::getenv("HSI_STREAM_FRAMES");
  return v != nullptr ? std::strtoull(v, nullptr, 10) : fallback;
}

// Frame i: 8-byte index, then bytes derived from it; length varies with i.
size_t LengthOf(uint64_t i, uint32_t max) { return 8 + (i * 2654435761u) % (max - 7); }
uint8_t ByteOf(uint64_t i, size_t j) { return static_cast<uint8_t>(i * 31 + j * 7); }

// Streams `frames` frames from a child to the parent over a link of
// `geometry`, waiting as `mode` says, and checks every byte of every frame,
// their order, and the counters on both sides.
void Stream(uint64_t frames, RingGeometry geometry, WaitMode mode, bool zero_copy) {
  auto fds = CreateEndpointFds(geometry);
  ASSERT_TRUE(fds.ok()) << fds.status();
  const uint32_t max = std::min<uint32_t>(geometry.mtu, 256);
  const absl::Time deadline = absl::Now() + absl::Seconds(240);
  const Wait wait{mode, deadline, absl::Microseconds(20)};

  Child producer([&]() -> int {
    fds->b = {};
    auto end = Endpoint::Open(std::move(fds->a), geometry);
    if (!end.ok()) return 10;
    RingProducer& tx = end->tx();
    std::vector<uint8_t> buf(max);
    for (uint64_t i = 0; i < frames; ++i) {
      const size_t len = LengthOf(i, max);
      if (zero_copy) {
        auto span = tx.Reserve(len, wait);
        if (!span.ok()) return 11;
        std::memcpy(span->data(), &i, 8);
        for (size_t j = 8; j < len; ++j) (*span)[j] = ByteOf(i, j);
        tx.CommitDeferred(len, static_cast<uint16_t>(i));
        if (i % 32 == 31) tx.Publish();
      } else {
        std::memcpy(buf.data(), &i, 8);
        for (size_t j = 8; j < len; ++j) buf[j] = ByteOf(i, j);
        if (!tx.Send(absl::MakeConstSpan(buf.data(), len), wait, static_cast<uint16_t>(i)).ok()) {
          return 12;
        }
      }
    }
    tx.Publish();
    // Stay mapped until the parent has read everything (it answers with one frame).
    Frame f;
    if (!end->rx().Peek(&f, Wait::Block(deadline)).ok()) return 13;
    return tx.counters().frames == frames ? 0 : 14;
  });
  ASSERT_TRUE(producer.started());

  auto end = Endpoint::Open(std::move(fds->b), geometry);
  ASSERT_TRUE(end.ok()) << end.status();
  fds->a = {};
  RingConsumer& rx = end->rx();
  uint64_t bytes = 0;
  for (uint64_t i = 0; i < frames; ++i) {
    Frame f;
    absl::Status s = rx.Peek(&f, wait);
    ASSERT_TRUE(s.ok()) << s << " waiting for frame " << i;
    const size_t len = LengthOf(i, max);
    ASSERT_EQ(f.payload.size(), len) << "frame " << i;
    uint64_t index;
    std::memcpy(&index, f.payload.data(), 8);
    ASSERT_EQ(index, i) << "lost or reordered";
    ASSERT_EQ(f.type, static_cast<uint16_t>(i));
    for (size_t j = 8; j < len; ++j) {
      if (f.payload[j] != ByteOf(i, j)) FAIL() << "frame " << i << " byte " << j << " corrupt";
    }
    bytes += len;
    if (zero_copy) {
      rx.ReleaseDeferred();
      if (i % 32 == 31) rx.Publish();
    } else {
      rx.Release();
    }
  }
  rx.Publish();
  Frame extra;
  EXPECT_FALSE(rx.TryPeek(&extra)) << "more frames than sent";
  EXPECT_EQ(rx.counters().frames, frames);
  EXPECT_EQ(rx.counters().bytes, bytes);
  uint8_t done = 1;
  ASSERT_TRUE(end->tx().Send({&done, 1}, Wait::Block(deadline)).ok());
  EXPECT_EQ(producer.Wait(), 0) << "producer failed (see exit codes in Stream())";
}

TEST(RingProcessTest, StreamsTenMillionFramesSpinCopying) {
  Stream(FramesFromEnv(10'000'000), {1 << 16, 256}, WaitMode::kSpin, false);
}

TEST(RingProcessTest, StreamsZeroCopyBatchedAdaptive) {
  Stream(FramesFromEnv(10'000'000) / 4, {1 << 16, 256}, WaitMode::kAdaptive, true);
}

// A tiny ring forces the consumer and the producer to sleep over and over:
// a lost wake-up would hang until the deadline and fail the test.
TEST(RingProcessTest, BlockingModeLosesNoWakeup) {
  Stream(FramesFromEnv(10'000'000) / 50, {4096, 256}, WaitMode::kBlock, false);
}

TEST(RingProcessTest, AdaptiveSmallRingLosesNoWakeup) {
  Stream(FramesFromEnv(10'000'000) / 20, {4096, 256}, WaitMode::kAdaptive, true);
}

}  // namespace
}  // namespace hsi
