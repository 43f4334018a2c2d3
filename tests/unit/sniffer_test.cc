// hsi::Sniffer: a tap on a CHPID through a private hsid sees the frames of
// a link with their source, destination and payload, and counts them per
// direction. This process is LPAR "b" and the tap; a forked LPAR "a" sends.
#include "hsi/sniffer.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/child.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/line_pipe.h"

namespace hsi {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::Hsid;
using ::hsi::testing::LinePipe;

absl::Time In(absl::Duration d) { return absl::Now() + d; }

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

constexpr int kAtoB = 100;
constexpr int kBtoA = 40;

// LPAR "a": reports its address; on "HELLO ADDR" sends one frame to ADDR
// (this makes the link); on "SEND" sends kAtoB frames "a i"; then receives
// kBtoA frames and reports "GOT n".
int LparA(const Hsid& d, LinePipe& in, LinePipe& out) {
  absl::StatusOr<Session> s = Session::Connect({.socket_path = d.socket(), .lpar = "a"});
  if (!s.ok()) return 1;
  absl::StatusOr<Nic> nic = s->AttachNic(0xF0);
  if (!nic.ok()) return 2;
  out.Write(nic->address().ToString());
  const std::string hello = in.Read(absl::Seconds(30));
  absl::StatusOr<Address> b = Address::Parse(hello.substr(hello.find(' ') + 1));
  if (!b.ok()) return 3;
  if (!nic->SendTo(*b, Bytes("hello"), Wait::Block(In(absl::Seconds(20)))).ok()) return 4;
  if (in.Read(absl::Seconds(30)) != "SEND") return 5;
  for (int i = 0; i < kAtoB; ++i) {
    if (!nic->SendTo(*b, Bytes(absl::StrCat("a ", i)), Wait::Block(In(absl::Seconds(20)))).ok()) return 6;
  }
  uint8_t buf[64];
  int got = 0;
  while (got < kBtoA && nic->Receive(absl::MakeSpan(buf), Wait::Block(In(absl::Seconds(20)))).ok()) ++got;
  out.Write(absl::StrCat("GOT ", got));
  return in.Read(absl::Seconds(30)) == "END" ? 0 : 7;
}

TEST(SnifferTest, TapSeesBothDirectionsOfALinkWithAddressesAndCounts) {
  Hsid d;
  ASSERT_TRUE(d.Start()) << d.log();
  absl::StatusOr<Session> s = Session::Connect({.socket_path = d.socket(), .lpar = "b"});
  ASSERT_TRUE(s.ok()) << s.status();
  absl::StatusOr<Nic> b = s->AttachNic(0xF0);
  ASSERT_TRUE(b.ok()) << b.status();
  LinePipe to_a, from_a;
  Child a([&] { return LparA(d, to_a, from_a); });
  const std::string a_text = from_a.Read(absl::Seconds(20));
  absl::StatusOr<Address> a_addr = Address::Parse(a_text);
  ASSERT_TRUE(a_addr.ok()) << "LPAR a: '" << a_text << "' " << d.log();

  // The link first (b answers the offer from its Receive), then the tap, so
  // that the tap is handed a ready link.
  to_a.Write(absl::StrCat("HELLO ", b->address().ToString()));
  uint8_t buf[64];
  absl::StatusOr<Received> hello = b->Receive(absl::MakeSpan(buf), Wait::Block(In(absl::Seconds(20))));
  ASSERT_TRUE(hello.ok()) << hello.status();
  ASSERT_EQ(hello->source, *a_addr);

  absl::StatusOr<Sniffer> tap = Sniffer::Open({.socket_path = d.socket(), .chpid = 0xF0});
  ASSERT_TRUE(tap.ok()) << tap.status();
  EXPECT_EQ(tap->chpid(), 0xF0u);
  EXPECT_TRUE(tap->subnet().IsHost(*a_addr));
  EXPECT_TRUE(tap->subnet().IsHost(b->address()));
  EXPECT_TRUE(tap->control_status().ok()) << tap->control_status();
  // Wait (bounded) until the tap follows both directions of the link.
  std::vector<CapturedFrame> early;
  for (const absl::Time end = In(absl::Seconds(10)); tap->directions().size() < 2 && absl::Now() < end;) {
    ASSERT_TRUE(tap->Poll([&](const CapturedFrame&) { early.emplace_back(); }, In(absl::Milliseconds(20))).ok());
  }
  ASSERT_EQ(tap->directions().size(), 2u);
  EXPECT_TRUE(early.empty()) << "the tap saw the frame sent before it was opened";

  to_a.Write("SEND");
  for (int i = 0; i < kAtoB; ++i) {
    absl::StatusOr<Received> r = b->Receive(absl::MakeSpan(buf), Wait::Block(In(absl::Seconds(20))));
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    ASSERT_EQ(std::string(reinterpret_cast<char*>(buf), r->length), absl::StrCat("a ", i));
  }
  for (int i = 0; i < kBtoA; ++i) {
    ASSERT_TRUE(b->SendTo(*a_addr, Bytes(absl::StrCat("b ", i)), Wait::Block(In(absl::Seconds(20)))).ok()) << i;
  }
  EXPECT_EQ(from_a.Read(absl::Seconds(20)), absl::StrCat("GOT ", kBtoA));

  struct Seen {
    Address source, destination;
    bool broadcast;
    std::string payload;
  };
  std::vector<Seen> seen;
  for (const absl::Time end = In(absl::Seconds(10)); seen.size() < kAtoB + kBtoA && absl::Now() < end;) {
    absl::StatusOr<size_t> n = tap->Poll(
        [&](const CapturedFrame& f) {
          seen.push_back({f.source, f.destination, f.broadcast,
                          std::string(reinterpret_cast<const char*>(f.payload.data()), f.payload.size())});
        },
        In(absl::Milliseconds(50)));
    ASSERT_TRUE(n.ok()) << n.status();
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(kAtoB + kBtoA));
  // Each direction in ring order.
  int next_a = 0, next_b = 0;
  for (const Seen& f : seen) {
    EXPECT_FALSE(f.broadcast);
    if (f.source == *a_addr) {
      EXPECT_EQ(f.destination, b->address());
      EXPECT_EQ(f.payload, absl::StrCat("a ", next_a++));
    } else {
      EXPECT_EQ(f.source, b->address());
      EXPECT_EQ(f.destination, *a_addr);
      EXPECT_EQ(f.payload, absl::StrCat("b ", next_b++));
    }
  }
  EXPECT_EQ(next_a, kAtoB);
  EXPECT_EQ(next_b, kBtoA);
  EXPECT_EQ(tap->captured(), static_cast<uint64_t>(kAtoB + kBtoA));
  EXPECT_EQ(tap->missed(), 0u);
  for (const TapDirection& dir : tap->directions()) {
    EXPECT_TRUE(dir.status.ok()) << dir.status;
    EXPECT_EQ(dir.missed, 0u);
    if (dir.source == *a_addr) {
      EXPECT_EQ(dir.destination, b->address());
      EXPECT_EQ(dir.captured, static_cast<uint64_t>(kAtoB));
    } else {
      EXPECT_EQ(dir.source, b->address());
      EXPECT_EQ(dir.destination, *a_addr);
      EXPECT_EQ(dir.captured, static_cast<uint64_t>(kBtoA));
    }
  }
  to_a.Write("END");
  EXPECT_EQ(a.Wait(), 0);
}

}  // namespace
}  // namespace hsi
