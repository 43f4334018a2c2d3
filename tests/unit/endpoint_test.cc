// hsi::Endpoint: the two ends of a duplex link made by CreateEndpointFds(),
// in one process and across fork().
#include "hsi/endpoint.h"

#include <poll.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "hsi/ring.h"
#include "hsi/testing/child.h"
#include "hsi/wait.h"

namespace hsi {
namespace {

using ::hsi::testing::Child;

absl::Time In(absl::Duration d) { return absl::Now() + d; }

RingGeometry Small() {
  RingGeometry g;
  g.capacity = 64 * 1024;
  g.mtu = 1024;
  return g;
}

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

struct Pair {
  Endpoint a, b;
};

Pair OpenBoth(const RingGeometry& g) {
  absl::StatusOr<EndpointFdPair> fds = CreateEndpointFds(g);
  EXPECT_TRUE(fds.ok()) << fds.status();
  if (!fds.ok()) return {};
  absl::StatusOr<Endpoint> a = Endpoint::Open(std::move(fds->a), g);
  absl::StatusOr<Endpoint> b = Endpoint::Open(std::move(fds->b), g);
  EXPECT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(b.ok()) << b.status();
  if (!a.ok() || !b.ok()) return {};
  return {std::move(*a), std::move(*b)};
}

TEST(EndpointTest, EachDirectionCarriesItsOwnFramesInOrder) {
  Pair p = OpenBoth(Small());
  ASSERT_GE(p.a.fd(), 0);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(p.a.tx().Send(Bytes(absl::StrCat("a->b ", i)), Wait::Never(), 7).ok()) << i;
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(p.b.tx().Send(Bytes(absl::StrCat("b->a ", i)), Wait::Never()).ok()) << i;
  }
  std::vector<uint8_t> buf(1024);
  for (int i = 0; i < 100; ++i) {
    uint16_t type = 0;
    absl::StatusOr<size_t> n = p.b.rx().Receive(absl::MakeSpan(buf), Wait::Never(), &type);
    ASSERT_TRUE(n.ok()) << i << ": " << n.status();
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buf.data()), *n), absl::StrCat("a->b ", i));
    EXPECT_EQ(type, 7);
  }
  EXPECT_FALSE(p.b.rx().Receive(absl::MakeSpan(buf), Wait::Never()).ok());  // nothing more
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<size_t> n = p.a.rx().Receive(absl::MakeSpan(buf), Wait::Never());
    ASSERT_TRUE(n.ok()) << i << ": " << n.status();
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buf.data()), *n), absl::StrCat("b->a ", i));
  }
  EXPECT_EQ(p.a.tx().counters().frames, 100u);
  EXPECT_EQ(p.b.rx().counters().frames, 100u);
  EXPECT_EQ(p.b.tx().counters().frames, 50u);
  EXPECT_EQ(p.a.rx().counters().frames, 50u);
}

TEST(EndpointTest, AFrameOverTheMtuIsRefused) {
  Pair p = OpenBoth(Small());
  std::string big(Small().mtu + 1, 'x');
  EXPECT_FALSE(p.a.tx().Send(Bytes(big), Wait::Never()).ok());
  std::string fits(Small().mtu, 'y');
  EXPECT_TRUE(p.a.tx().Send(Bytes(fits), Wait::Never()).ok());
}

TEST(EndpointTest, DataFdBecomesReadableWhenASleepingConsumerIsRung) {
  Pair p = OpenBoth(Small());
  std::vector<uint8_t> buf(1024);
  // Arm: the consumer says it will sleep, so the producer rings.
  p.b.rx().ArmWakeup();
  pollfd before = {p.b.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&before, 1, 0), 0) << "readable before anything was sent";
  ASSERT_TRUE(p.a.tx().Send(Bytes("wake"), Wait::Never()).ok());
  pollfd after = {p.b.fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&after, 1, 5000), 1);
  p.b.rx().DisarmWakeup();
  absl::StatusOr<size_t> n = p.b.rx().Receive(absl::MakeSpan(buf), Wait::Never());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 4u);
}

TEST(EndpointTest, RejectsAnInvalidGeometry) {
  RingGeometry bad;
  bad.capacity = 1000;  // not a power of two
  absl::StatusOr<EndpointFdPair> fds = CreateEndpointFds(bad);
  ASSERT_FALSE(fds.ok());
  EXPECT_EQ(fds.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EndpointTest, OpenRefusesAGeometryOtherThanTheSegmentsWereMadeFor) {
  absl::StatusOr<EndpointFdPair> fds = CreateEndpointFds(Small());
  ASSERT_TRUE(fds.ok()) << fds.status();
  RingGeometry other = Small();
  other.capacity *= 2;
  EXPECT_FALSE(Endpoint::Open(std::move(fds->a), other).ok());
}

// Across fork(), both ends blocked in the kernel between frames: the child
// echoes every frame; the parent checks each echo and the total checksum.
TEST(EndpointTest, EchoesAcrossProcessesWithBlockingWaits) {
  const RingGeometry g = Small();
  absl::StatusOr<EndpointFdPair> fds = CreateEndpointFds(g);
  ASSERT_TRUE(fds.ok()) << fds.status();
  constexpr int kFrames = 2000;
  Child echo([&] {
    absl::StatusOr<Endpoint> b = Endpoint::Open(std::move(fds->b), g);
    if (!b.ok()) return 1;
    std::vector<uint8_t> buf(g.mtu);
    for (int i = 0; i < kFrames; ++i) {
      absl::StatusOr<size_t> n = b->rx().Receive(absl::MakeSpan(buf), Wait::Block(In(absl::Seconds(20))));
      if (!n.ok()) return 2;
      if (!b->tx().Send(absl::MakeConstSpan(buf.data(), *n), Wait::Block(In(absl::Seconds(20)))).ok()) return 3;
    }
    return 0;
  });
  ASSERT_TRUE(echo.started());
  absl::StatusOr<Endpoint> a = Endpoint::Open(std::move(fds->a), g);
  ASSERT_TRUE(a.ok()) << a.status();
  fds->b = EndpointFds();  // the parent keeps no fd of the child's end
  std::vector<uint8_t> buf(g.mtu);
  uint64_t sent_sum = 0, got_sum = 0;
  for (int i = 0; i < kFrames; ++i) {
    const std::string s = absl::StrCat("frame ", i, std::string(static_cast<size_t>(i % 700), 'z'));
    for (char c : s) sent_sum += static_cast<uint8_t>(c);
    ASSERT_TRUE(a->tx().Send(Bytes(s), Wait::Block(In(absl::Seconds(20)))).ok()) << i;
    absl::StatusOr<size_t> n = a->rx().Receive(absl::MakeSpan(buf), Wait::Block(In(absl::Seconds(20))));
    ASSERT_TRUE(n.ok()) << i << ": " << n.status();
    ASSERT_EQ(std::string(reinterpret_cast<char*>(buf.data()), *n), s);
    for (size_t k = 0; k < *n; ++k) got_sum += buf[k];
  }
  EXPECT_EQ(got_sum, sent_sum);
  EXPECT_EQ(echo.Wait(), 0);
}

}  // namespace
}  // namespace hsi
