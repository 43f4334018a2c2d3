// The stream layer (hsi/stream.h) over a real loopback TCP pair, in one
// process: bytes in order across ring wraps, the socket readable exactly
// when ring data waits, space bells, peek, and a peer page with hostile
// counts. Run under ASan+UBSan and TSan (label "sanitize").
#include "hsi/stream.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace hsi {
namespace {

struct Pair {
  int a = -1, b = -1;
  std::unique_ptr<StreamEnd> ea, eb;
  StreamPage* page_a = nullptr;  // A's own page (writable here, to play a hostile A)
  ~Pair() {
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
  }
};

void TcpPair(int* a, int* b) {
  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(l, 1), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len);
  *a = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(*a, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  *b = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(*b, 0);
  ::close(l);
}

// `s` mapped again, read-only, as the peer maps it.
Segment PeerView(const Segment& s, size_t size) {
  absl::StatusOr<UniqueFd> fd = s.DupFd();
  EXPECT_TRUE(fd.ok());
  absl::StatusOr<Segment> m = Segment::MapPeer(std::move(*fd), size);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

void MakePair(Pair* p, const RingGeometry& g) {
  TcpPair(&p->a, &p->b);
  absl::StatusOr<Segment> ra = CreateOwnRing(g), rb = CreateOwnRing(g);
  absl::StatusOr<Segment> pa = CreateStreamPage(), pb = CreateStreamPage();
  ASSERT_TRUE(ra.ok() && rb.ok() && pa.ok() && pb.ok());
  ASSERT_TRUE(CheckStreamPage(pa->fd()).ok()) << CheckStreamPage(pa->fd());
  auto peer = PeerView;
  Segment ra_peer = peer(*ra, g.segment_size()), rb_peer = peer(*rb, g.segment_size());
  Segment pa_peer = peer(*pa, kStreamPageSize), pb_peer = peer(*pb, kStreamPageSize);
  p->page_a = static_cast<StreamPage*>(pa->data());
  p->ea = std::make_unique<StreamEnd>();
  p->eb = std::make_unique<StreamEnd>();
  ASSERT_TRUE(p->ea->Init(std::move(*ra), std::move(rb_peer), std::move(*pa), std::move(pb_peer), g).ok());
  ASSERT_TRUE(p->eb->Init(std::move(*rb), std::move(ra_peer), std::move(*pb), std::move(pa_peer), g).ok());
}

uint8_t ByteAt(uint64_t i) { return static_cast<uint8_t>((i * 2654435761u) >> 13); }

// poll(2) on `fd` for POLLIN, waiting up to `ms`.
bool Readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1 && (p.revents & POLLIN) != 0;
}

TEST(StreamEndTest, BytesArriveInOrderAcrossManyWraps) {
  Pair p;
  MakePair(&p, RingGeometry{64 * 1024, 16 * 1024});
  const uint64_t total = 8 << 20;  // 128 wraps of the ring
  std::vector<uint8_t> out(100000), in(70000);
  uint64_t sent = 0, got = 0;
  const size_t sizes[] = {1, 13, 4096, 16384, 40000, 99999};
  for (int round = 0; got < total; ++round) {
    while (sent < total) {
      const size_t n = std::min<uint64_t>(sizes[round % 6], total - sent);
      for (size_t i = 0; i < n; ++i) out[i] = ByteAt(sent + i);
      iovec v[2] = {{out.data(), n / 3}, {out.data() + n / 3, n - n / 3}};
      const ssize_t w = p.ea->TryWrite(v, 2, p.a);
      ASSERT_GE(w, 0);
      if (w == 0) break;
      sent += static_cast<uint64_t>(w);
    }
    iovec r{in.data(), sizes[(round + 3) % 6] < in.size() ? sizes[(round + 3) % 6] : in.size()};
    const ssize_t n = p.eb->TryRead(&r, 1, false, p.b);
    ASSERT_GE(n, 0);
    for (ssize_t i = 0; i < n; ++i) ASSERT_EQ(in[i], ByteAt(got + i)) << "at byte " << got + i;
    got += static_cast<uint64_t>(n);
  }
  EXPECT_EQ(got, total);
  EXPECT_EQ(p.ea->bytes_out(), total);
  EXPECT_EQ(p.eb->bytes_in(), total);
}

TEST(StreamEndTest, SocketIsReadableExactlyWhenRingDataWaits) {
  Pair p;
  MakePair(&p, RingGeometry{64 * 1024, 16 * 1024});
  // Nothing yet: B arms, and its socket is quiet.
  ASSERT_TRUE(p.eb->ArmData(p.b));
  EXPECT_FALSE(Readable(p.b, 0));
  for (int msg = 0; msg < 100; ++msg) {
    uint8_t m[64];
    for (int i = 0; i < 64; ++i) m[i] = static_cast<uint8_t>(msg + i);
    iovec v{m, sizeof(m)};
    ASSERT_EQ(p.ea->TryWrite(&v, 1, p.a), 64);
    ASSERT_TRUE(Readable(p.b, 5000)) << "message " << msg << ": no bell";
    uint8_t got[64];
    iovec r{got, sizeof(got)};
    ASSERT_EQ(p.eb->TryRead(&r, 1, false, p.b), 64);
    EXPECT_EQ(got[63], static_cast<uint8_t>(msg + 63));
    // Emptied: drain and re-arm, as the preload does; quiet again.
    ASSERT_TRUE(p.eb->ArmData(p.b));
    EXPECT_FALSE(Readable(p.b, 0)) << "message " << msg << ": readable with an empty ring";
  }
}

// Writes one 8-byte message from A to B.
void Send8(Pair& p) {
  uint8_t m[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  iovec v{m, sizeof(m)};
  ASSERT_EQ(p.ea->TryWrite(&v, 1, p.a), 8);
}

// Reads B's 8-byte message.
void Recv8(Pair& p) {
  uint8_t m[8];
  iovec r{m, sizeof(m)};
  ASSERT_EQ(p.eb->TryRead(&r, 1, false, p.b), 8);
  EXPECT_EQ(m[7], 8);
}

TEST(StreamEndTest, OneBellPerWaiter) {
  // Two connections from one producer process, both armed by one wait
  // (waiter id W): the first commit rings, the second needs not, since
  // that wait is woken already. A new wait (W2) and a wait with no id (0,
  // "ring every arm") are rung on each.
  Pair p1, p2;
  MakePair(&p1, RingGeometry{64 * 1024, 16 * 1024});
  MakePair(&p2, RingGeometry{64 * 1024, 16 * 1024});
  const uint64_t w = 0x5eed0001a2b3c4d5ull, w2 = w + 2;
  ASSERT_TRUE(p1.eb->ArmData(p1.b, w));
  ASSERT_TRUE(p2.eb->ArmData(p2.b, w));
  Send8(p1);
  Send8(p2);
  EXPECT_TRUE(Readable(p1.b, 5000)) << "the wait got no bell";
  EXPECT_FALSE(Readable(p2.b, 50)) << "a second bell for one wait";
  Recv8(p1);
  Recv8(p2);
  ASSERT_TRUE(p1.eb->ArmData(p1.b, w2));  // drains the bell of W
  ASSERT_TRUE(p2.eb->ArmData(p2.b, w2));
  EXPECT_FALSE(Readable(p1.b, 0));
  Send8(p2);
  Send8(p1);
  EXPECT_TRUE(Readable(p2.b, 5000)) << "the new wait got no bell";
  EXPECT_FALSE(Readable(p1.b, 50)) << "a second bell for the new wait";
  Recv8(p1);
  Recv8(p2);
  ASSERT_TRUE(p1.eb->ArmData(p1.b, 0));
  ASSERT_TRUE(p2.eb->ArmData(p2.b, 0));
  Send8(p1);
  Send8(p2);
  EXPECT_TRUE(Readable(p1.b, 5000)) << "no bell with waiter 0";
  EXPECT_TRUE(Readable(p2.b, 5000)) << "no bell with waiter 0";
}

TEST(StreamEndTest, DrainStaleLeavesTheSocketQuietOnlyWhenTheRingIsEmpty) {
  Pair p;
  MakePair(&p, RingGeometry{64 * 1024, 16 * 1024});
  ASSERT_TRUE(p.eb->ArmData(p.b));
  Send8(p);
  ASSERT_TRUE(Readable(p.b, 5000));
  // Data waits: the bell is not stale and stays.
  EXPECT_FALSE(p.eb->DrainStale(p.b));
  EXPECT_TRUE(Readable(p.b, 0));
  // Read without arming (lazy): the bell is left behind, stale.
  Recv8(p);
  EXPECT_TRUE(Readable(p.b, 0));
  EXPECT_TRUE(p.eb->DrainStale(p.b));
  EXPECT_FALSE(Readable(p.b, 0)) << "readable with an empty ring after the drain";
}

TEST(StreamEndTest, FullProducerGetsASpaceBell) {
  Pair p;
  MakePair(&p, RingGeometry{64 * 1024, 16 * 1024});
  std::vector<uint8_t> buf(16 * 1024, 7);
  iovec v{buf.data(), buf.size()};
  uint64_t sent = 0;
  while (p.ea->TryWrite(&v, 1, p.a) > 0) sent += buf.size();
  ASSERT_GT(sent, 0u);
  ASSERT_TRUE(p.ea->ArmSpace(buf.size()));
  EXPECT_FALSE(Readable(p.a, 0));
  std::vector<uint8_t> in(sent);
  iovec r{in.data(), in.size()};
  ASSERT_EQ(p.eb->TryRead(&r, 1, false, p.b), static_cast<ssize_t>(sent));
  EXPECT_TRUE(Readable(p.a, 5000)) << "no space bell";
  EXPECT_GT(p.ea->TryWrite(&v, 1, p.a), 0);
}

TEST(StreamEndTest, PeekLeavesTheBytes) {
  Pair p;
  MakePair(&p, RingGeometry{64 * 1024, 16 * 1024});
  const char msg[] = "hello, ring";
  iovec v{const_cast<char*>(msg), sizeof(msg)};
  ASSERT_EQ(p.ea->TryWrite(&v, 1, p.a), static_cast<ssize_t>(sizeof(msg)));
  char a[5] = {}, b[sizeof(msg)] = {};
  iovec r1{a, sizeof(a)};
  ASSERT_EQ(p.eb->TryRead(&r1, 1, true, p.b), 5);
  EXPECT_EQ(std::string(a, 5), "hello");
  EXPECT_EQ(p.eb->Readable(), sizeof(msg));
  iovec r2{b, sizeof(b)};
  ASSERT_EQ(p.eb->TryRead(&r2, 1, false, p.b), static_cast<ssize_t>(sizeof(msg)));
  EXPECT_STREQ(b, msg);
  EXPECT_EQ(p.eb->Readable(), 0u);
}

TEST(StreamEndTest, HostileBellCountsOnlyAffectWakeups) {
  Pair p;
  MakePair(&p, RingGeometry{64 * 1024, 16 * 1024});
  // A claims to have sent 2^63 bells (B's drain may read every byte the
  // socket holds; they are all bells) and then far fewer: no crash, no
  // hang, and data still arrives whole.
  p.page_a->bells_sent.store(uint64_t{1} << 63);
  EXPECT_TRUE(p.eb->ArmData(p.b));
  p.page_a->bells_sent.store(1);
  EXPECT_TRUE(p.eb->ArmData(p.b));
  const char msg[] = "still fine";
  iovec v{const_cast<char*>(msg), sizeof(msg)};
  ASSERT_EQ(p.ea->TryWrite(&v, 1, p.a), static_cast<ssize_t>(sizeof(msg)));
  char got[sizeof(msg)] = {};
  iovec r{got, sizeof(got)};
  EXPECT_EQ(p.eb->TryRead(&r, 1, false, p.b), static_cast<ssize_t>(sizeof(msg)));
  EXPECT_STREQ(got, msg);
}

TEST(StreamEndTest, CheckStreamPageRefusesAWritableMemfd) {
  absl::StatusOr<UniqueFd> fd = Segment::CreateMemfd("not-sealed", kStreamPageSize);
  ASSERT_TRUE(fd.ok());
  const absl::Status s = CheckStreamPage(fd->get());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not sealed"), std::string::npos) << s;
}

// An exec (docs/hsi-run.md section 5) on the stream layer alone: A's old
// image exports its state with bytes in flight both ways and part of a
// frame read; its new image seeds fresh segments and resumes on B's (mapped
// again, read-only); B writes on meanwhile, switches to A's new segments
// and reads A's old ring to its end before the new one. Every byte in
// order; a carried offset outside the frame and a bad new page are refused.
TEST(StreamEndTest, ExecMovesOneEndToNewSegmentsWithoutLosingAByte) {
  const RingGeometry g{64 * 1024, 16 * 1024};
  int a = -1, b = -1;
  TcpPair(&a, &b);
  auto view = PeerView;
  auto make = [&](Segment* ring, Segment* page) {
    absl::StatusOr<Segment> r = CreateOwnRing(g);
    absl::StatusOr<Segment> p = CreateStreamPage();
    ASSERT_TRUE(r.ok() && p.ok());
    *ring = std::move(*r);
    *page = std::move(*p);
  };
  const size_t seg = g.segment_size();
  Segment ra, pa, rb, pb;
  make(&ra, &pa);
  make(&rb, &pb);
  Segment ra_v = view(ra, seg), pa_v = view(pa, kStreamPageSize);
  Segment rb_v = view(rb, seg), pb_v = view(pb, kStreamPageSize);
  Segment rb_v2 = view(rb, seg), pb_v2 = view(pb, kStreamPageSize), rb_v3 = view(rb, seg), pb_v3 = view(pb, kStreamPageSize);
  auto ea = std::make_unique<StreamEnd>();
  StreamEnd eb;
  ASSERT_TRUE(ea->Init(std::move(ra), std::move(rb_v), std::move(pa), std::move(pb_v), g).ok());
  ASSERT_TRUE(eb.Init(std::move(rb), std::move(ra_v), std::move(pb), std::move(pa_v), g).ok());

  constexpr uint64_t kBtoA = 1000003;  // B's stream: ByteAt(i + kBtoA)
  uint64_t a_sent = 0, a_got = 0, b_sent = 0, b_got = 0;
  std::vector<uint8_t> buf(70000);
  auto write = [&](StreamEnd& e, int sock, uint64_t off, uint64_t* pos, uint64_t to) {
    while (*pos < to) {
      const size_t n = std::min<uint64_t>(to - *pos, 9000);
      for (size_t i = 0; i < n; ++i) buf[i] = ByteAt(*pos + off + i);
      iovec v{buf.data(), n};
      const ssize_t w = e.TryWrite(&v, 1, sock);
      ASSERT_GE(w, 0);
      if (w == 0) return;
      *pos += static_cast<uint64_t>(w);
    }
  };
  auto read = [&](StreamEnd& e, int sock, uint64_t off, uint64_t* got, uint64_t to) {
    std::vector<uint8_t> in(7000);
    while (*got < to) {
      iovec v{in.data(), std::min<uint64_t>(in.size(), to - *got)};
      const ssize_t n = e.TryRead(&v, 1, false, sock);
      ASSERT_GE(n, 0);
      if (n == 0) return;
      for (ssize_t i = 0; i < n; ++i) ASSERT_EQ(in[i], ByteAt(*got + off + i)) << "at byte " << *got + i;
      *got += static_cast<uint64_t>(n);
    }
  };
  // In flight both ways; A has read 5 bytes of B's first frame.
  write(*ea, a, 0, &a_sent, 40000);
  ASSERT_EQ(a_sent, 40000u);
  read(eb, b, 0, &b_got, 10000);
  write(eb, b, kBtoA, &b_sent, 30000);
  read(*ea, a, kBtoA, &a_got, 5);
  ASSERT_EQ(a_got, 5u);

  // A's old image, at exec.
  StreamCarry k;
  ASSERT_TRUE(ea->Export(&k).ok());
  EXPECT_EQ(k.rx_offset, 5u);
  EXPECT_TRUE(eb.PeerMoving());

  // A carried offset past the frame is refused (it would read past it).
  {
    Segment rx, px;
    make(&rx, &px);
    StreamCarry bad = k;
    bad.rx_offset = 20000;
    ASSERT_TRUE(StreamEnd::Seed(rx, px, bad).ok());
    StreamEnd ex;
    EXPECT_EQ(ex.Resume(std::move(rx), std::move(rb_v3), std::move(px), std::move(pb_v3), g, bad, 1).code(),
              absl::StatusCode::kDataLoss);
  }
  // A's new image.
  Segment ra2, pa2;
  make(&ra2, &pa2);
  ASSERT_TRUE(StreamEnd::Seed(ra2, pa2, k).ok());
  Segment ra2_v = view(ra2, seg), pa2_v = view(pa2, kStreamPageSize);
  StreamEnd ea2;
  ASSERT_TRUE(ea2.Resume(std::move(ra2), std::move(rb_v2), std::move(pa2), std::move(pb_v2), g, k, 1).ok());
  ea.reset();  // the old image is gone

  // B writes on into its ring, which A's new image reads; A's new image
  // writes into its new ring, which B does not have yet.
  write(eb, b, kBtoA, &b_sent, 50000);
  write(ea2, a, 0, &a_sent, 50000);
  ASSERT_EQ(a_sent, 50000u);
  read(ea2, a, kBtoA, &a_got, 50000);
  EXPECT_EQ(a_got, 50000u);
  read(eb, b, 0, &b_got, 50000);
  EXPECT_EQ(b_got, 40000u) << "B reads A's old ring to its end, no further before the switch";

  // B switches: a bad page is refused and changes nothing, then the real one.
  Segment not_a_page = view(ra2_v, seg);
  Segment ra2_v2 = view(ra2_v, seg);
  EXPECT_FALSE(eb.SwitchPeer(std::move(ra2_v2), std::move(not_a_page), 1).ok());
  EXPECT_TRUE(eb.PeerMoving());
  ASSERT_TRUE(eb.SwitchPeer(std::move(ra2_v), std::move(pa2_v), 1).ok());
  EXPECT_FALSE(eb.PeerMoving());
  EXPECT_FALSE(ea2.PeerCaughtUp()) << "B has not reached A's new ring yet";
  read(eb, b, 0, &b_got, 50000);
  EXPECT_EQ(b_got, 50000u);
  EXPECT_TRUE(ea2.PeerCaughtUp());

  // The new rings through many wraps, both ways.
  const uint64_t total = 2 << 20;
  while (b_got < total || a_got < total) {
    write(ea2, a, 0, &a_sent, total);
    write(eb, b, kBtoA, &b_sent, total);
    read(eb, b, 0, &b_got, total);
    read(ea2, a, kBtoA, &a_got, total);
  }
  EXPECT_EQ(eb.bytes_in(), total);
  EXPECT_EQ(ea2.bytes_out(), total) << "the carried byte counts continue";
  ::close(a);
  ::close(b);
}

}  // namespace
}  // namespace hsi
