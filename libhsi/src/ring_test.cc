#include "hsi/ring.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "hsi/endpoint.h"
#include "internal/ring_layout.h"

namespace hsi {
namespace {

struct Link {
  Endpoint a, b;
};

Link MakeLink(RingGeometry g) {
  auto fds = CreateEndpointFds(g);
  EXPECT_TRUE(fds.ok()) << fds.status();
  auto a = Endpoint::Open(std::move(fds->a), g);
  EXPECT_TRUE(a.ok()) << a.status();
  auto b = Endpoint::Open(std::move(fds->b), g);
  EXPECT_TRUE(b.ok()) << b.status();
  return Link{std::move(*a), std::move(*b)};
}

std::vector<uint8_t> Pattern(size_t len, uint32_t seed) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = static_cast<uint8_t>(seed * 131 + i * 7);
  return v;
}

TEST(RingGeometryTest, RejectsBadShapes) {
  EXPECT_TRUE((RingGeometry{4096, 1024}).Validate().ok());
  EXPECT_FALSE((RingGeometry{4096 + 16, 1024}).Validate().ok());  // not a power of two
  EXPECT_FALSE((RingGeometry{2048, 512}).Validate().ok());        // too small
  EXPECT_FALSE((RingGeometry{4096, 4096}).Validate().ok());       // < 2 records
  EXPECT_FALSE((RingGeometry{4096, 0}).Validate().ok());
  auto s = RingGeometry{4096, 4096}.Validate();
  EXPECT_NE(s.message().find("twice the largest record"), absl::string_view::npos) << s;
}

TEST(RingTest, SendsAndReceivesInOrderWithTypes) {
  Link l = MakeLink({4096, 256});
  for (uint16_t i = 0; i < 10; ++i) {
    auto p = Pattern(i * 10, i);
    ASSERT_TRUE(l.a.tx().TrySend(p, i));
  }
  std::vector<uint8_t> buf(256);
  for (uint16_t i = 0; i < 10; ++i) {
    uint16_t type = 0xffff;
    auto n = l.b.rx().TryReceive(absl::MakeSpan(buf), &type);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, i * 10u);
    EXPECT_EQ(type, i);
    EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + *n), Pattern(i * 10, i));
  }
  auto empty = l.b.rx().TryReceive(absl::MakeSpan(buf));
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(l.a.tx().counters().frames, 10u);
  EXPECT_EQ(l.b.rx().counters().frames, 10u);
  EXPECT_EQ(l.b.rx().counters().bytes, 450u);
}

TEST(RingTest, DirectionsAreIndependent) {
  Link l = MakeLink({4096, 256});
  uint8_t x = 1, y = 2, buf[1];
  ASSERT_TRUE(l.a.tx().TrySend({&x, 1}));
  ASSERT_TRUE(l.b.tx().TrySend({&y, 1}));
  ASSERT_EQ(*l.a.rx().TryReceive(absl::MakeSpan(buf)), 1u);
  EXPECT_EQ(buf[0], 2);
  ASSERT_EQ(*l.b.rx().TryReceive(absl::MakeSpan(buf)), 1u);
  EXPECT_EQ(buf[0], 1);
}

TEST(RingTest, FramesOfEveryLengthUpToMtuAndMtuPlusOneRejected) {
  constexpr uint32_t kMtu = 1000;
  Link l = MakeLink({4096, kMtu});
  std::vector<uint8_t> buf(kMtu);
  for (uint32_t len = 0; len <= kMtu; ++len) {
    auto p = Pattern(len, len);
    ASSERT_TRUE(l.a.tx().TrySend(p)) << len;
    auto n = l.b.rx().TryReceive(absl::MakeSpan(buf));
    ASSERT_TRUE(n.ok()) << n.status();
    ASSERT_EQ(*n, len);
    ASSERT_TRUE(std::equal(p.begin(), p.end(), buf.begin())) << len;
  }
  EXPECT_EQ(l.a.tx().TryReserve(kMtu + 1), nullptr);
  EXPECT_TRUE(l.a.tx().ok());  // a caller error does not break the ring
  auto r = l.a.tx().Reserve(kMtu + 1, Wait::Never());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("exceeds MTU 1000"), absl::string_view::npos) << r.status();
}

// Starts the ring at every 16-byte offset and sends frames of every size
// class across the wrap, so the padding record appears at every position.
TEST(RingTest, WrapsAtEveryAlignment) {
  constexpr uint64_t kCap = 4096;
  constexpr uint32_t kMtu = 512;
  std::vector<uint8_t> buf(kMtu);
  for (uint64_t start = 0; start < kCap; start += internal::kRecordAlign) {
    Link l = MakeLink({kCap, kMtu});
    // Advance both ends to `start` with one filler frame (plus a pad if needed).
    if (start >= internal::kFrameHeaderSize) {
      uint64_t left = start;
      while (left > 0) {
        uint64_t rec = std::min<uint64_t>(left, internal::RecordSize(kMtu));
        ASSERT_TRUE(l.a.tx().TrySend(Pattern(rec - internal::kFrameHeaderSize, 0)));
        ASSERT_TRUE(l.b.rx().TryReceive(absl::MakeSpan(buf)).ok());
        left -= rec;
      }
    } else if (start != 0) {
      continue;  // no record is smaller than its header
    }
    uint32_t seed = 0;
    for (size_t len : {0, 1, 15, 16, 17, 100, 255, 256, 511, 512}) {
      for (int rep = 0; rep < 12; ++rep, ++seed) {
        auto p = Pattern(len, seed);
        ASSERT_TRUE(l.a.tx().TrySend(p)) << "start " << start << " len " << len;
        auto n = l.b.rx().TryReceive(absl::MakeSpan(buf));
        ASSERT_TRUE(n.ok()) << n.status() << " start " << start << " len " << len;
        ASSERT_EQ(*n, len);
        ASSERT_TRUE(std::equal(p.begin(), p.end(), buf.begin()));
      }
    }
    ASSERT_TRUE(l.a.tx().ok() && l.b.rx().ok());
  }
}

TEST(RingTest, FullRingRefusesThenAcceptsAfterRelease) {
  Link l = MakeLink({4096, 256});
  auto p = Pattern(100, 1);  // record 128 bytes: 32 fit
  int sent = 0;
  while (l.a.tx().TrySend(p)) ++sent;
  EXPECT_EQ(sent, 4096 / 128);
  EXPECT_EQ(l.a.tx().counters().full_events, 1u);
  EXPECT_TRUE(l.a.tx().ok());
  std::vector<uint8_t> buf(256);
  ASSERT_TRUE(l.b.rx().TryReceive(absl::MakeSpan(buf)).ok());
  EXPECT_TRUE(l.a.tx().TrySend(p));
  EXPECT_FALSE(l.a.tx().TrySend(p));
  EXPECT_EQ(l.a.tx().counters().full_events, 2u);
  auto r = l.a.tx().Reserve(100, Wait::Spin(absl::Now() + absl::Milliseconds(5)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(RingTest, ZeroCopyReserveCommitPeekRelease) {
  Link l = MakeLink({8192, 1024});
  uint8_t* w = l.a.tx().TryReserve(1024);
  ASSERT_NE(w, nullptr);
  std::memcpy(w, "hello", 5);
  l.a.tx().Commit(5, 7);  // shorter than reserved
  Frame f;
  ASSERT_TRUE(l.b.rx().TryPeek(&f));
  EXPECT_EQ(f.type, 7);
  EXPECT_EQ(absl::string_view(reinterpret_cast<const char*>(f.payload.data()), f.payload.size()), "hello");
  Frame again;
  ASSERT_TRUE(l.b.rx().TryPeek(&again));  // same frame until Release
  EXPECT_EQ(again.payload.data(), f.payload.data());
  l.b.rx().Release();
  EXPECT_FALSE(l.b.rx().TryPeek(&f));
}

TEST(RingTest, ReceiveIntoSmallBufferKeepsTheFrame) {
  Link l = MakeLink({4096, 256});
  ASSERT_TRUE(l.a.tx().TrySend(Pattern(200, 3)));
  std::vector<uint8_t> small(10), big(256);
  auto n = l.b.rx().TryReceive(absl::MakeSpan(small));
  EXPECT_EQ(n.status().code(), absl::StatusCode::kResourceExhausted);
  n = l.b.rx().TryReceive(absl::MakeSpan(big));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 200u);
}

TEST(RingTest, DeferredCommitsArePublishedInABatch) {
  Link l = MakeLink({8192, 256});
  for (int i = 0; i < 8; ++i) {
    uint8_t* w = l.a.tx().TryReserve(8);
    ASSERT_NE(w, nullptr);
    std::memcpy(w, &i, sizeof(i));
    l.a.tx().CommitDeferred(8);
  }
  l.a.tx().Publish();
  Frame f;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(l.b.rx().TryPeek(&f));
    int v;
    std::memcpy(&v, f.payload.data(), sizeof(v));
    EXPECT_EQ(v, i);
    l.b.rx().ReleaseDeferred();
  }
  l.b.rx().Publish();
  EXPECT_EQ(l.b.rx().counters().frames, 8u);
}

// The record reader and its seqlock re-check, as a lapped reader (the
// sniffer) uses them: a record read at position 0 stays "unchanged" while
// the producer writes the rest of the lap, and stops being so once the
// producer commits a record over the same bytes one lap later.
TEST(RingTest, ARecordCommittedOverFailsTheSeqlockReCheck) {
  constexpr RingGeometry kG{4096, 256};
  auto fds = CreateEndpointFds(kG);
  ASSERT_TRUE(fds.ok()) << fds.status();
  absl::StatusOr<Segment> a_own = Segment::MapOwner(std::move(fds->a.own_segment), kG.segment_size());
  absl::StatusOr<Segment> b_own = Segment::MapOwner(std::move(fds->b.own_segment), kG.segment_size());
  absl::StatusOr<Segment> a_view = Segment::MapPeer(std::move(fds->b.peer_segment), kG.segment_size());
  absl::StatusOr<Segment> b_view = Segment::MapPeer(std::move(fds->a.peer_segment), kG.segment_size());
  absl::StatusOr<Doorbell> a_bell = Doorbell::Adopt(std::move(fds->a.own_bell));
  absl::StatusOr<Doorbell> b_bell = Doorbell::Adopt(std::move(fds->b.own_bell));
  ASSERT_TRUE(a_own.ok() && b_own.ok() && a_view.ok() && b_view.ok() && a_bell.ok() && b_bell.ok());
  absl::StatusOr<RingProducer> tx = RingProducer::Create(*a_own, *b_view, *a_bell, *b_bell, kG);
  absl::StatusOr<RingConsumer> rx = RingConsumer::Create(*b_own, *a_view, *b_bell, *a_bell, kG);
  ASSERT_TRUE(tx.ok() && rx.ok());
  const auto* data = static_cast<const uint8_t*>(a_view->data()) + internal::kDataOffset;
  const uint64_t nonce = internal::LayoutOf(static_cast<const void*>(a_view->data()))->header.nonce;

  const std::vector<uint8_t> frame = Pattern(112, 7);  // a 128-byte record: 32 a lap
  ASSERT_TRUE(tx->TrySend(frame, 5));
  const internal::Record first = internal::ReadRecord(data, kG.capacity, 0, nonce, kG.mtu);
  ASSERT_EQ(first.verdict, internal::Record::kData);
  EXPECT_EQ(first.len, 112u);
  EXPECT_EQ(first.type, 5);
  EXPECT_EQ(first.size, 128u);
  EXPECT_EQ(std::vector<uint8_t>(first.payload, first.payload + first.len), frame);
  std::vector<uint8_t> buf(kG.mtu);
  for (int i = 1; i < 32; ++i) {
    ASSERT_TRUE(rx->TryReceive(absl::MakeSpan(buf)).ok());
    ASSERT_TRUE(tx->TrySend(frame));
    EXPECT_TRUE(internal::RecordUnchanged(data, kG.capacity, 0, first)) << "frame " << i;
  }
  ASSERT_TRUE(rx->TryReceive(absl::MakeSpan(buf)).ok());
  ASSERT_TRUE(internal::RecordUnchanged(data, kG.capacity, 0, first));
  ASSERT_NE(tx->TryReserve(112), nullptr);  // position 4096: the bytes of position 0
  EXPECT_EQ(internal::ReadRecord(data, kG.capacity, 4096, nonce, kG.mtu).verdict, internal::Record::kNotWritten);
  tx->CommitDeferred(112);  // committed, not published: the tail stays at 4096
  EXPECT_EQ(internal::LayoutOf(static_cast<const void*>(a_view->data()))->tx.tail.load(), 4096u);
  EXPECT_FALSE(internal::RecordUnchanged(data, kG.capacity, 0, first));
  EXPECT_EQ(internal::ReadRecord(data, kG.capacity, 4096, nonce, kG.mtu).verdict, internal::Record::kData);
}

TEST(RingTest, PeekTimesOutOnEmptyRingInEveryMode) {
  Link l = MakeLink({4096, 256});
  for (WaitMode m : {WaitMode::kSpin, WaitMode::kBlock, WaitMode::kAdaptive}) {
    Frame f;
    Wait w{m, absl::Now() + absl::Milliseconds(20), absl::Milliseconds(5)};
    absl::Time t0 = absl::Now();
    absl::Status s = l.b.rx().Peek(&f, w);
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << WaitModeName(m);
    EXPECT_GE(absl::Now(), t0 + absl::Milliseconds(19)) << WaitModeName(m);
  }
}

// True once thread `tid` of this process sleeps in a syscall (state S).
bool Sleeping(pid_t tid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/task/%d/stat", static_cast<int>(tid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return false;
  char buf[512] = {};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  const char* close = std::strrchr(buf, ')');  // "pid (comm) S ..."
  return n > 0 && close != nullptr && close[1] == ' ' && close[2] == 'S';
}

TEST(RingTest, BlockedConsumerIsWokenOnceBySend) {
  Link l = MakeLink({4096, 256});
  const pid_t consumer = static_cast<pid_t>(::syscall(SYS_gettid));
  std::thread t([&] {
    // Send once the consumer sleeps: it has armed its wake-up flag by then.
    for (const absl::Time deadline = absl::Now() + absl::Seconds(10); !Sleeping(consumer) && absl::Now() < deadline;) {
      std::this_thread::yield();
    }
    uint8_t x = 42;
    ASSERT_TRUE(l.a.tx().TrySend({&x, 1}));
  });
  Frame f;
  absl::Status s = l.b.rx().Peek(&f, Wait::Block(absl::Now() + absl::Seconds(10)));
  t.join();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.payload[0], 42);
  EXPECT_EQ(l.a.tx().counters().wakeups_sent, 1u);
}

// Idle CPU 0 at the ring: a consumer blocked in Peek (block, or adaptive
// after its 50 us of spinning) sleeps in FUTEX_WAIT until its deadline. A
// spinning wait would use about its whole length in CPU.
TEST(RingTest, AWaitingConsumerUsesNoCpuAfterTheSpinPhase) {
  Link l = MakeLink({4096, 256});
  auto cpu = [] {
    rusage u;
    ::getrusage(RUSAGE_THREAD, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
  };
  for (WaitMode mode : {WaitMode::kBlock, WaitMode::kAdaptive}) {
    Frame f;
    const double c0 = cpu();
    const absl::Time t0 = absl::Now();
    absl::Status s = l.b.rx().Peek(&f, Wait{mode, absl::Now() + absl::Milliseconds(500), absl::Microseconds(50)});
    const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_LT(cpu() - c0, 0.1 * wall) << WaitModeName(mode) << ": the waiting consumer kept a CPU busy";
  }
}

TEST(RingTest, SpinningConsumerCostsNoWakeups) {
  Link l = MakeLink({4096, 256});
  std::thread t([&] {
    uint8_t x = 1;
    for (int i = 0; i < 1000; ++i) {
      while (!l.a.tx().TrySend({&x, 1})) {
      }
    }
  });
  std::vector<uint8_t> buf(8);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(l.b.rx().Receive(absl::MakeSpan(buf), Wait::Spin(absl::Now() + absl::Seconds(20))).ok());
  }
  t.join();
  EXPECT_EQ(l.a.tx().counters().wakeups_sent, 0u);
}

// Producer and consumer in two threads, with every wait mode on both sides,
// a small ring (frequent full and empty), exact counts and checksums. Under
// TSan this is the data-race check of the ring's memory ordering.
void StressThreads(WaitMode mode, int frames) {
  Link l = MakeLink({4096, 512});
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  Wait w{mode, deadline, absl::Microseconds(20)};
  uint64_t sent_sum = 0;
  std::thread producer([&] {
    for (int i = 0; i < frames; ++i) {
      size_t len = (i * 37) % 513;
      auto span = l.a.tx().Reserve(len, w);
      ASSERT_TRUE(span.ok()) << span.status();
      for (size_t j = 0; j < len; ++j) (*span)[j] = static_cast<uint8_t>(i + j);
      uint32_t seq = static_cast<uint32_t>(i);
      if (len >= 4) std::memcpy(span->data(), &seq, 4);
      for (size_t j = 0; j < len; ++j) sent_sum += (*span)[j];
      if (i % 3 == 0) {
        l.a.tx().CommitDeferred(len);
        if (i % 9 == 0) l.a.tx().Publish();
      } else {
        l.a.tx().Commit(len);
      }
    }
    l.a.tx().Publish();
  });
  uint64_t recv_sum = 0;
  for (int i = 0; i < frames; ++i) {
    Frame f;
    absl::Status s = l.b.rx().Peek(&f, w);
    ASSERT_TRUE(s.ok()) << s << " at frame " << i;
    ASSERT_EQ(f.payload.size(), static_cast<size_t>((i * 37) % 513));
    if (f.payload.size() >= 4) {
      uint32_t seq;
      std::memcpy(&seq, f.payload.data(), 4);
      ASSERT_EQ(seq, static_cast<uint32_t>(i)) << "reordered or lost";
    }
    for (uint8_t c : f.payload) recv_sum += c;
    if (i % 2) {
      l.b.rx().Release();
    } else {
      l.b.rx().ReleaseDeferred();
    }
  }
  l.b.rx().Publish();
  producer.join();
  Frame f;
  EXPECT_FALSE(l.b.rx().TryPeek(&f));
  EXPECT_EQ(recv_sum, sent_sum);
  EXPECT_EQ(l.a.tx().counters().frames, static_cast<uint64_t>(frames));
  EXPECT_EQ(l.b.rx().counters().frames, static_cast<uint64_t>(frames));
  EXPECT_TRUE(l.a.tx().ok());
  EXPECT_TRUE(l.b.rx().ok());
}

TEST(RingStressTest, ThreadsSpin) { StressThreads(WaitMode::kSpin, 200000); }
TEST(RingStressTest, ThreadsBlockNoLostWakeup) { StressThreads(WaitMode::kBlock, 100000); }
TEST(RingStressTest, ThreadsAdaptiveNoLostWakeup) { StressThreads(WaitMode::kAdaptive, 100000); }

// Both ends of a link stream to each other with one thread per direction,
// all four blocking on small rings (full and empty over and over): the tx
// thread waiting for space and the rx thread waiting for data must not
// take each other's wake-ups. Exact counts; a lost wake-up shows as a
// deadline passing.
TEST(RingTest, TxAndRxThreadsOfOneEndDoNotStealWakeups) {
  Link l = MakeLink({4096, 256});
  constexpr uint64_t kFrames = 100000;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  for (WaitMode mode : {WaitMode::kBlock, WaitMode::kAdaptive}) {
    SCOPED_TRACE(mode == WaitMode::kBlock ? "block" : "adaptive");
    const Wait w{mode, deadline, absl::Microseconds(5)};
    std::atomic<uint64_t> received[2] = {0, 0};
    std::atomic<int> errors{0};
    auto send = [&](Endpoint& e) {
      for (uint64_t i = 0; i < kFrames; ++i) {
        if (!e.tx().Send({reinterpret_cast<const uint8_t*>(&i), sizeof(i)}, w).ok()) return void(++errors);
      }
      e.tx().Publish();
    };
    auto receive = [&](Endpoint& e, std::atomic<uint64_t>& got) {
      uint64_t v = 0;
      for (uint64_t i = 0; i < kFrames; ++i) {
        absl::StatusOr<size_t> n = e.rx().Receive({reinterpret_cast<uint8_t*>(&v), sizeof(v)}, w);
        if (!n.ok() || *n != sizeof(v) || v != i) return void(++errors);
        got.store(i + 1, std::memory_order_relaxed);
      }
    };
    std::thread t[4] = {std::thread(send, std::ref(l.a)), std::thread(receive, std::ref(l.a), std::ref(received[0])),
                        std::thread(send, std::ref(l.b)), std::thread(receive, std::ref(l.b), std::ref(received[1]))};
    for (auto& x : t) x.join();
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(received[0].load(), kFrames);
    EXPECT_EQ(received[1].load(), kFrames);
  }
}

}  // namespace
}  // namespace hsi
