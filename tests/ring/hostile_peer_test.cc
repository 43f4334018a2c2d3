// Invariant 2: nothing the other side wrote is trusted. A hostile producer
// writes anything anywhere in its own segment; a hostile consumer writes
// anything in its. The honest side must fail cleanly (BROKEN with kDataLoss
// naming what was wrong) or carry on: no out-of-bounds access (this test runs
// under ASan+UBSan, and accepted frames are copied into MTU-sized heap
// buffers), no crash, no hang.
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "hsi/testing/child.h"
#include "hsi/testing/line_pipe.h"
#include "gtest/gtest.h"
#include "hsi/endpoint.h"
#include "internal/futex.h"
#include "internal/ring_layout.h"

namespace hsi {
namespace {

using internal::FrameHeader;
using internal::kDataOffset;
using internal::kKindData;
using internal::kKindPad;
using internal::PackMeta;
using internal::SegmentLayout;

constexpr RingGeometry kGeometry{4096, 256};

// Both ends in one process, with every segment reachable, so the test can
// play the hostile side by writing its segment directly.
struct Rig {
  Segment a_own, a_view, b_own, b_view;
  Doorbell a_bell, b_bell;
  RingProducer tx;  // honest producer A -> B (for valid prefixes)
  RingConsumer rx;  // honest consumer at B: the side under test

  static std::unique_ptr<Rig> Make(bool corrupt_header_first = false) {
    auto fds = CreateEndpointFds(kGeometry);
    EXPECT_TRUE(fds.ok()) << fds.status();
    auto r = std::make_unique<Rig>();
    r->a_own = *Segment::MapOwner(std::move(fds->a.own_segment), kGeometry.segment_size());
    r->b_own = *Segment::MapOwner(std::move(fds->b.own_segment), kGeometry.segment_size());
    r->a_view = *Segment::MapPeer(std::move(fds->b.peer_segment), kGeometry.segment_size());
    r->b_view = *Segment::MapPeer(std::move(fds->a.peer_segment), kGeometry.segment_size());
    r->a_bell = *Doorbell::Adopt(std::move(fds->a.own_bell));
    r->b_bell = *Doorbell::Adopt(std::move(fds->b.own_bell));
    if (corrupt_header_first) return r;
    r->tx = *RingProducer::Create(r->a_own, r->b_view, r->a_bell, r->b_bell, kGeometry);
    r->rx = *RingConsumer::Create(r->b_own, r->a_view, r->b_bell, r->a_bell, kGeometry);
    return r;
  }
  SegmentLayout* a() { return static_cast<SegmentLayout*>(a_own.data()); }
  SegmentLayout* b() { return static_cast<SegmentLayout*>(b_own.data()); }
  uint8_t* a_data() { return static_cast<uint8_t*>(a_own.data()) + kDataOffset; }
  const uint8_t* view_data() { return static_cast<const uint8_t*>(a_view.data()) + kDataOffset; }
  uint64_t nonce() { return a()->header.nonce; }
  // Writes a frame header at ring position `pos` as a hostile producer would.
  void Forge(uint64_t pos, uint32_t len, uint16_t kind) {
    auto* h = reinterpret_cast<FrameHeader*>(a_data() + (pos & (kGeometry.capacity - 1)));
    h->meta = PackMeta(len, kind, 0);
    __atomic_store_n(&h->seq, pos ^ nonce(), __ATOMIC_RELEASE);
  }
  // Drains with checks on every accepted frame; returns frames accepted.
  int Drain() {
    std::vector<uint8_t> buf(kGeometry.mtu);  // exactly MTU: ASan sees overflow
    int n = 0;
    for (int i = 0; i < 1000; ++i) {
      Frame f;
      if (!rx.TryPeek(&f)) break;
      const uint8_t* lo = view_data();
      const uint8_t* hi = lo + kGeometry.capacity;
      EXPECT_LE(f.payload.size(), kGeometry.mtu);
      EXPECT_GE(f.payload.data(), lo);
      EXPECT_LE(f.payload.data() + f.payload.size(), hi);
      if (f.payload.size() > kGeometry.mtu || f.payload.data() < lo ||
          f.payload.data() + f.payload.size() > hi) {
        return -1;  // would have been an out-of-bounds read
      }
      auto got = rx.TryReceive(absl::MakeSpan(buf));
      EXPECT_TRUE(got.ok()) << got.status();
      ++n;
    }
    return n;
  }
};

// The producer's segment as the consumer sees it (read-only).
const SegmentLayout& LayoutOfView(const Rig& r) { return *static_cast<const SegmentLayout*>(r.a_view.data()); }

void ExpectBroken(const RingConsumer& rx, absl::string_view what) {
  EXPECT_EQ(rx.status().code(), absl::StatusCode::kDataLoss) << rx.status();
  EXPECT_NE(rx.status().message().find(what), absl::string_view::npos) << rx.status();
}

TEST(HostileProducerTest, LengthOverMtuBreaksTheRing) {
  auto r = Rig::Make();
  r->Forge(0, kGeometry.mtu + 1, kKindData);
  EXPECT_EQ(r->Drain(), 0);
  ExpectBroken(r->rx, "exceeding MTU 256");
  // BROKEN is sticky: a later valid frame is not read.
  r->Forge(0, 8, kKindData);
  Frame f;
  EXPECT_FALSE(r->rx.TryPeek(&f));
  EXPECT_EQ(r->rx.Peek(&f, Wait::Block(absl::Now() + absl::Seconds(5))).code(),
            absl::StatusCode::kDataLoss);
}

TEST(HostileProducerTest, HugeLengthBreaksTheRing) {
  auto r = Rig::Make();
  r->Forge(0, 0xffffffffu, kKindData);
  EXPECT_EQ(r->Drain(), 0);
  ExpectBroken(r->rx, "exceeding MTU");
}

TEST(HostileProducerTest, UnknownKindBreaksTheRing) {
  auto r = Rig::Make();
  r->Forge(0, 8, 0x1234);
  EXPECT_EQ(r->Drain(), 0);
  ExpectBroken(r->rx, "unknown kind 0x1234");
}

TEST(HostileProducerTest, FrameRunningPastTheEndBreaksTheRing) {
  auto r = Rig::Make();
  // Honest frames up to 32 bytes before the end of the ring.
  std::vector<uint8_t> p(240);
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(r->tx.TrySend(p));  // 16 * 256 = 4096... keep 32 free
  ASSERT_EQ(r->Drain(), 16);
  // position 4096: next lap starts at offset 0; move to offset 4064.
  for (int i = 0; i < 15; ++i) ASSERT_TRUE(r->tx.TrySend(p));
  ASSERT_TRUE(r->tx.TrySend(std::vector<uint8_t>(208)));  // record 224: now at 4096+4064
  ASSERT_EQ(r->Drain(), 16);
  r->Forge(4096 + 4064, 100, kKindData);  // record 128 > 32 left
  EXPECT_EQ(r->Drain(), 0);
  ExpectBroken(r->rx, "runs past the end of the ring (32 bytes left)");
}

TEST(HostileProducerTest, WrongPaddingLengthBreaksTheRing) {
  auto r = Rig::Make();
  r->Forge(0, 100, kKindPad);  // a pad at 0 must cover the whole ring
  EXPECT_EQ(r->Drain(), 0);
  ExpectBroken(r->rx, "padding record at position 0 claims 100 bytes");
}

TEST(HostileProducerTest, GarbageSeqLooksEmptyAndWaitsEndAtTheDeadline) {
  auto r = Rig::Make();
  auto* h = reinterpret_cast<FrameHeader*>(r->a_data());
  h->seq = 0x123456789abcdef0;  // not position 0 ^ nonce
  h->meta = PackMeta(8, kKindData, 0);
  Frame f;
  for (WaitMode m : {WaitMode::kSpin, WaitMode::kBlock, WaitMode::kAdaptive}) {
    absl::Status s = r->rx.Peek(&f, Wait{m, absl::Now() + absl::Milliseconds(20)});
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  }
  EXPECT_TRUE(r->rx.ok());
}

TEST(HostileProducerTest, CorruptSegmentHeaderIsRefusedAtAttach) {
  auto r = Rig::Make(/*corrupt_header_first=*/true);
  struct Case {
    void (*corrupt)(SegmentLayout*);
    absl::string_view message;
  };
  for (const Case& c : std::initializer_list<Case>{
           {[](SegmentLayout* s) { s->header.magic ^= 1; }, "not an hsi ring segment"},
           {[](SegmentLayout* s) { s->header.capacity = 1 << 30; }, "header says capacity 1073741824"},
           {[](SegmentLayout* s) { s->header.mtu = 100000; }, "mtu 100000"},
           {[](SegmentLayout* s) { s->header.nonce &= ~uint64_t{1}; }, "even nonce"},
       }) {
    SegmentLayout saved;
    std::memcpy(static_cast<void*>(&saved), r->a(), sizeof(saved));
    c.corrupt(r->a());
    auto rx = RingConsumer::Create(r->b_own, r->a_view, r->b_bell, r->a_bell, kGeometry);
    EXPECT_EQ(rx.status().code(), absl::StatusCode::kDataLoss) << rx.status();
    EXPECT_NE(rx.status().message().find(c.message), absl::string_view::npos) << rx.status();
    std::memcpy(static_cast<void*>(r->a()), &saved, sizeof(saved));
  }
}

TEST(HostileConsumerTest, HeadThatGoesBackOrPastTailBreaksTheProducer) {
  for (uint64_t bad : {uint64_t{8}, uint64_t{1} << 40, uint64_t{16}}) {
    auto r = Rig::Make();
    std::vector<uint8_t> p(100);
    // Fill the ring so the producer must reload the head.
    while (r->tx.TrySend(p)) {
    }
    ASSERT_TRUE(r->tx.ok());
    if (bad == 16) {  // legal once, then going backwards
      r->b()->rx.head.store(128, std::memory_order_release);
      ASSERT_TRUE(r->tx.TrySend(p)) << r->tx.status();
      while (r->tx.TrySend(p)) {
      }
    }
    r->b()->rx.head.store(bad, std::memory_order_release);
    EXPECT_FALSE(r->tx.TrySend(p));
    EXPECT_EQ(r->tx.status().code(), absl::StatusCode::kDataLoss) << "head " << bad;
    EXPECT_NE(r->tx.status().message().find("consumer head"), absl::string_view::npos)
        << r->tx.status();
    auto span = r->tx.Reserve(10, Wait::Block(absl::Now() + absl::Seconds(5)));
    EXPECT_EQ(span.status().code(), absl::StatusCode::kDataLoss);
  }
}

// Random corruption of every word of the producer's segment (header,
// control blocks, counters, frame headers and payload), with values biased
// toward the ones that pass the first checks (a correct seq, a known kind,
// lengths around the limits). Every accepted frame must be in bounds; every
// rejection must be a clean kDataLoss.
TEST(HostileProducerTest, RandomCorruptionOfEveryFieldFailsCleanly) {
  int broken = 0, accepted = 0;
  const int kRounds = 3000;
  for (int round = 0; round < kRounds; ++round) {
    std::mt19937_64 rng(round);
    auto r = Rig::Make();
    std::vector<uint8_t> p(rng() % 200);
    const int prefix = static_cast<int>(rng() % 40);
    for (int i = 0; i < prefix; ++i) {
      if (!r->tx.TrySend(p)) break;
      if (rng() % 2) r->Drain();
    }
    const uint64_t head = r->b()->rx.head.load();  // what the consumer expects next
    auto* words = static_cast<uint64_t*>(r->a_own.data());
    const size_t nwords = kGeometry.segment_size() / 8;
    const int writes = 1 + static_cast<int>(rng() % 8);
    for (int w = 0; w < writes; ++w) {
      const uint64_t pos = head + 16 * (rng() % 8);
      const uint64_t off = kDataOffset / 8 + ((pos & (kGeometry.capacity - 1)) / 8);
      const uint32_t lens[] = {0, 1, 255, 256, 257, 4000, 4080, 0x7fffffff, 0xffffffff,
                               static_cast<uint32_t>(rng())};
      const uint16_t kinds[] = {kKindData, kKindPad, static_cast<uint16_t>(rng())};
      switch (rng() % 5) {
        case 0:  // any word anywhere, any value
          words[rng() % nwords] = rng();
          break;
        case 1:  // a plausible frame header at or after the head
          words[off + 1] = PackMeta(lens[rng() % 10], kinds[rng() % 3], 0);
          __atomic_store_n(&words[off], pos ^ r->nonce(), __ATOMIC_RELEASE);
          break;
        case 2:  // a correct seq over whatever meta is there
          __atomic_store_n(&words[off], pos ^ r->nonce(), __ATOMIC_RELEASE);
          break;
        case 3:  // control blocks and counters
          words[16 + rng() % 112] = rng();
          break;
        case 4:  // the header the consumer already read once
          words[rng() % 8] = rng();
          break;
      }
    }
    const int n = r->Drain();
    ASSERT_GE(n, 0) << "round " << round << " accepted an out-of-bounds frame";
    accepted += n;
    if (!r->rx.ok()) {
      ++broken;
      ASSERT_EQ(r->rx.status().code(), absl::StatusCode::kDataLoss) << r->rx.status();
      ASSERT_NE(r->rx.status().message().find("ring:"), absl::string_view::npos);
    }
  }
  // The corruption must actually reach the validation paths.
  EXPECT_GT(broken, kRounds / 10);
  EXPECT_GT(accepted, 0);
  std::printf("hostile rounds %d: %d broke the ring cleanly, %d frames accepted in bounds\n",
              kRounds, broken, accepted);
}

// A hostile producer in another process scribbles over its whole segment as
// fast as it can while the consumer keeps reading with deadlines. It starts
// once the consumer has opened the ring: a segment whose header is garbage
// at Open is refused there (CorruptSegmentHeaderIsRefusedAtAttach), and
// the scribbler's stray words hit the header now and then (a CI run opened
// after one did).
TEST(HostileProducerTest, ConcurrentScribblerCannotCrashOrHangTheConsumer) {
  auto fds = CreateEndpointFds(kGeometry);
  ASSERT_TRUE(fds.ok());
  testing::LinePipe opened;
  testing::Child scribbler([&]() -> int {
    if (opened.Read() != "opened") return 3;
    auto seg = Segment::MapOwner(std::move(fds->a.own_segment), kGeometry.segment_size());
    if (!seg.ok()) return 1;
    auto* words = static_cast<uint64_t*>(seg->data());
    const uint64_t nonce = static_cast<SegmentLayout*>(seg->data())->header.nonce;
    std::mt19937_64 rng(7);
    const size_t nwords = kGeometry.segment_size() / 8;
    auto consumer = Segment::MapPeer(std::move(fds->a.peer_segment), kGeometry.segment_size());
    if (!consumer.ok()) return 2;
    const auto* consumer_state = static_cast<const SegmentLayout*>(consumer->data());
    // Rewrites a plausible chain of frames from the consumer's head on, over
    // and over (so headers and payload change while the consumer reads
    // them), and now and then garbage anywhere.
    for (;;) {
      uint64_t pos = consumer_state->rx.head.load(std::memory_order_acquire) & ~uint64_t{15};
      for (int i = 0; i < 16; ++i) {
        const uint64_t off = kDataOffset / 8 + (pos & (kGeometry.capacity - 1)) / 8;
        const uint64_t room = kGeometry.capacity - (pos & (kGeometry.capacity - 1));
        uint32_t len = static_cast<uint32_t>(rng() % (kGeometry.mtu + 1));
        uint16_t kind = kKindData;
        if (internal::RecordSize(len) > room) {
          len = static_cast<uint32_t>(room - 16);
          kind = kKindPad;
        }
        for (uint32_t j = 0; j < len / 8; ++j) words[off + 2 + j] = rng();
        words[off + 1] = PackMeta(len, kind, 0);
        __atomic_store_n(&words[off], pos ^ nonce, __ATOMIC_RELEASE);
        pos += internal::RecordSize(len);
      }
      if (rng() % 256 == 0) words[rng() % nwords] = rng();
    }
  });
  auto end = Endpoint::Open(std::move(fds->b), kGeometry);
  ASSERT_TRUE(end.ok()) << end.status();
  opened.Write("opened");
  std::vector<uint8_t> buf(kGeometry.mtu);
  const absl::Time stop = absl::Now() + absl::Seconds(2);
  uint64_t frames = 0;
  while (absl::Now() < stop && end->rx().ok()) {
    auto n = end->rx().Receive(absl::MakeSpan(buf), Wait::Adaptive(absl::Now() + absl::Milliseconds(10)));
    if (n.ok()) {
      ASSERT_LE(*n, kGeometry.mtu);
      ++frames;
    } else {
      ASSERT_TRUE(n.status().code() == absl::StatusCode::kDeadlineExceeded ||
                  n.status().code() == absl::StatusCode::kDataLoss)
          << n.status();
    }
  }
  std::printf("scribbler: consumer read %llu frames, final status: %s\n",
              static_cast<unsigned long long>(frames), end->rx().status().ToString().c_str());
}

// ------------------------------------------------------------ wake-ups
//
// A blocked Peek/Reserve sleeps in FUTEX_WAIT on the peer's "woke" word
// (docs/ring.md, "Waking"). The peer owns that word and can wake us at
// will: it must cost re-checks, never a bogus frame, a lost wake-up or an
// early return.

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

pid_t Tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

void AwaitSleeping(const std::atomic<pid_t>& tid) {
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       (tid.load() == 0 || !Sleeping(tid.load())) && absl::Now() < deadline;) {
    std::this_thread::yield();
  }
}

// What a hostile peer does to a sleeper's futex word, `rounds` times: wakes
// it, stores garbage, stores the sleeper's own current flag value ("I
// answered you"), and wakes it again.
void Harass(internal::Word& woke, const internal::Word& their_flag, int rounds) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < rounds; ++i) {
    switch (i % 3) {
      case 0: woke.store(rng(), std::memory_order_release); break;
      case 1: woke.store(their_flag.load(std::memory_order_acquire), std::memory_order_release); break;
      default: break;
    }
    internal::FutexWake(internal::FutexHalf(woke));
  }
}

TEST(HostileProducerTest, SpuriousWakesCostReChecksNotFramesOrWakeups) {
  auto r = Rig::Make();
  std::atomic<pid_t> tid{0};
  absl::Status s;
  Frame f;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  std::thread consumer([&] {
    tid = Tid();
    s = r->rx.Peek(&f, Wait::Block(deadline));
  });
  AwaitSleeping(tid);
  // The producer's segment is the hostile side's: it wakes the consumer for
  // nothing and lies in its woke word. The consumer must keep waiting (no
  // frame, no early deadline) and still take the real wake-up after.
  Harass(r->a()->tx_wake.woke_data, r->b()->rx_wake.need_data, 3000);
  EXPECT_TRUE(consumer.joinable());
  uint8_t x = 42;
  ASSERT_TRUE(r->tx.TrySend({&x, 1}));  // honest now: commit, publish, wake
  consumer.join();
  ASSERT_TRUE(s.ok()) << s;
  // A frame found only by the re-check at the deadline: the wake-up was lost.
  EXPECT_LT(absl::Now(), deadline) << "the consumer woke only at its deadline";
  ASSERT_EQ(f.payload.size(), 1u);
  EXPECT_EQ(f.payload[0], 42);
  EXPECT_TRUE(r->rx.ok());
}

TEST(HostileConsumerTest, SpuriousWakesCostReChecksNotRoomOrWakeups) {
  auto r = Rig::Make();
  std::vector<uint8_t> p(100);
  while (r->tx.TrySend(p)) {
  }
  std::atomic<pid_t> tid{0};
  absl::StatusOr<absl::Span<uint8_t>> span = absl::UnknownError("not run");
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  std::thread producer([&] {
    tid = Tid();
    span = r->tx.Reserve(100, Wait::Block(deadline));
  });
  AwaitSleeping(tid);
  // Now the consumer's segment is the hostile side's.
  Harass(r->b()->rx_wake.woke_space, r->a()->tx_wake.need_space, 3000);
  std::vector<uint8_t> buf(kGeometry.mtu);
  ASSERT_TRUE(r->rx.TryReceive(absl::MakeSpan(buf)).ok());  // honest: release, publish, wake
  producer.join();
  ASSERT_TRUE(span.ok()) << span.status();
  EXPECT_LT(absl::Now(), deadline) << "the producer woke only at its deadline";
  EXPECT_EQ(span->size(), 100u);
  EXPECT_TRUE(r->tx.ok());
}

// Whoever else holds the producer's segment (an authorized sniffer, say)
// can sleep on the same futex word; the producer's FUTEX_WAKE wakes every
// waiter, so that one cannot take the consumer's wake-up. (With a wake of
// one waiter the first sleeper, the other one here, would get it and the
// consumer would sleep to its deadline.)
TEST(HostileProducerTest, AnotherWaiterOnTheWordCannotTakeOurWakeup) {
  auto r = Rig::Make();
  const uint32_t* word = internal::FutexHalf(LayoutOfView(*r).tx_wake.woke_data);
  std::atomic<pid_t> thief_tid{0}, consumer_tid{0};
  std::thread thief([&] {
    thief_tid = Tid();
    const timespec ts{30, 0};
    ::syscall(SYS_futex, word, FUTEX_WAIT, __atomic_load_n(word, __ATOMIC_RELAXED), &ts, nullptr, 0);
  });
  AwaitSleeping(thief_tid);
  absl::Status s;
  Frame f;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  std::thread consumer([&] {
    consumer_tid = Tid();
    s = r->rx.Peek(&f, Wait::Block(deadline));
  });
  AwaitSleeping(consumer_tid);
  uint8_t x = 7;
  ASSERT_TRUE(r->tx.TrySend({&x, 1}));
  consumer.join();
  const absl::Time woken = absl::Now();
  thief.join();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_LT(woken, deadline) << "the consumer woke only at its deadline: the other waiter took its wake-up";
  EXPECT_EQ(f.payload[0], 7);
  EXPECT_EQ(r->tx.counters().wakeups_sent, 1u);
}

// A producer that commits a frame and never wakes the sleeping consumer
// delays only that frame, to the consumer's deadline: the futex sleep is
// bounded by it, and the re-check after it finds the frame.
TEST(HostileProducerTest, AProducerThatNeverWakesCostsOnlyTheDeadline) {
  auto r = Rig::Make();
  std::atomic<pid_t> tid{0};
  absl::Status s;
  Frame f;
  std::thread consumer([&] {
    tid = Tid();
    s = r->rx.Peek(&f, Wait::Block(absl::Now() + absl::Milliseconds(300)));
  });
  AwaitSleeping(tid);
  r->Forge(0, 8, kKindData);  // a frame, and no wake-up
  consumer.join();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.payload.size(), 8u);
}

}  // namespace
}  // namespace hsi
