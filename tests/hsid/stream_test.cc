// Streams through hsid-made links between LPAR processes, with exact counts
// and checksums, and a SIGKILL of hsid in the middle of a stream.
#include <signal.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "hsi/testing/child.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/line_pipe.h"

namespace hsi {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::Hsid;
using ::hsi::testing::LinePipe;

constexpr size_t kFrameSize = 64;

absl::StatusOr<Session> Connect(const std::string& socket, const std::string& lpar) {
  SessionOptions o;
  o.socket_path = socket;
  o.lpar = lpar;
  return Session::Connect(std::move(o));
}

uint64_t Mix(uint64_t i) { return (i + 1) * 0x9E3779B97F4A7C15ULL; }

// Sender: `n` frames of kFrameSize bytes to `to`, each seq + a word derived
// from it; reports "sent N SUM".
// If `pause` is given, stops after n/2 frames, writes "half" and waits for a
// line on `pause` before sending the rest. Idles in Session::Poll() after.
int Sender(const std::string& socket, Address to, uint64_t n, const LinePipe& rep, LinePipe* pause = nullptr) {
  absl::StatusOr<Session> s = Connect(socket, "sender");
  if (!s.ok()) return rep.Write("ERR " + s.status().ToString()), 1;
  absl::StatusOr<Nic> nic = s->AttachNic(0xF0);
  if (!nic.ok()) return rep.Write("ERR " + nic.status().ToString()), 1;
  rep.Write(nic->address().ToString());
  absl::StatusOr<Link> l = nic->Link(to);
  if (!l.ok()) return rep.Write("ERR " + l.status().ToString()), 2;
  uint8_t frame[kFrameSize] = {};
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (pause != nullptr && i == n / 2) {
      rep.Write("half");
      if (pause->Read(absl::Seconds(60)).empty()) return 5;
    }
    const uint64_t m = Mix(i);
    std::memcpy(frame, &i, 8);
    std::memcpy(frame + 8, &m, 8);
    absl::Status st = l->Send(frame, Wait::Adaptive(absl::Now() + absl::Seconds(60)));
    if (!st.ok()) return rep.Write(absl::StrCat("ERR send ", i, " ", st.ToString())), 3;
    sum += m;
  }
  rep.Write(absl::StrCat("sent ", n, " ", sum));
  for (;;) {  // keep the link up and answer hsid; the test kills us
    (void)s->Poll();
    absl::SleepFor(absl::Milliseconds(1));
  }
}

// Receiver: reports its address, then "progress K" every 2^20 frames, then
// "got N SUM" after `n` frames, checking order on the way.
int Receiver(const std::string& socket, uint64_t n, const LinePipe& rep) {
  absl::StatusOr<Session> s = Connect(socket, "receiver");
  if (!s.ok()) return rep.Write("ERR " + s.status().ToString()), 1;
  absl::StatusOr<Nic> nic = s->AttachNic(0xF0);
  if (!nic.ok()) return rep.Write("ERR " + nic.status().ToString()), 1;
  rep.Write(nic->address().ToString());
  uint8_t buf[kFrameSize];
  absl::StatusOr<Received> first = nic->Receive(absl::MakeSpan(buf), Wait::Block(absl::Now() + absl::Seconds(60)));
  if (!first.ok()) return rep.Write("ERR first " + first.status().ToString()), 2;
  absl::StatusOr<Link> l = nic->Link(first->source);
  if (!l.ok()) return rep.Write("ERR link " + l.status().ToString()), 2;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (i > 0) {
      absl::StatusOr<size_t> r = l->Receive(absl::MakeSpan(buf), Wait::Adaptive(absl::Now() + absl::Seconds(60)));
      if (!r.ok()) return rep.Write(absl::StrCat("ERR receive ", i, " ", r.status().ToString())), 3;
      if (*r != kFrameSize) return rep.Write(absl::StrCat("ERR length ", *r)), 3;
    }
    uint64_t seq, m;
    std::memcpy(&seq, buf, 8);
    std::memcpy(&m, buf + 8, 8);
    if (seq != i || m != Mix(i)) return rep.Write(absl::StrCat("ERR frame ", i, " has seq ", seq)), 4;
    sum += m;
    if ((i & ((1u << 20) - 1)) == 0) rep.Write(absl::StrCat("progress ", i));
  }
  rep.Write(absl::StrCat("got ", n, " ", sum));
  // Nothing beyond n.
  absl::StatusOr<size_t> extra = l->Receive(absl::MakeSpan(buf), Wait::Block(absl::Now() + absl::Milliseconds(100)));
  rep.Write(extra.ok() ? "EXTRA" : "clean");
  for (;;) {
    (void)s->Poll();
    absl::SleepFor(absl::Milliseconds(1));
  }
}

std::string ReadNonProgress(LinePipe& r, absl::Duration timeout) {
  for (;;) {
    std::string line = r.Read(timeout);
    if (line.rfind("progress", 0) != 0) return line;
  }
}

TEST(StreamTest, TenMillionFramesBetweenTwoLparProcessesNoneLost) {
  Hsid d;
  ASSERT_TRUE(d.Start()) << d.log();
  constexpr uint64_t kN = 10'000'000;
  LinePipe rr, rs;
  Child receiver([&] { return Receiver(d.socket(), kN, rr); });
  absl::StatusOr<Address> raddr = Address::Parse(rr.Read());
  ASSERT_TRUE(raddr.ok());
  Child sender([&] { return Sender(d.socket(), *raddr, kN, rs); });
  ASSERT_TRUE(Address::Parse(rs.Read()).ok());
  const std::string sent = rs.Read(absl::Seconds(240));
  const std::string got = ReadNonProgress(rr, absl::Seconds(240));
  ASSERT_THAT(sent, ::testing::StartsWith("sent ")) << sent;
  ASSERT_THAT(got, ::testing::StartsWith("got ")) << got;
  EXPECT_EQ(sent.substr(5), got.substr(4)) << "count or checksum differs";
  EXPECT_EQ(rr.Read(), "clean");
}

// Invariant 4: SIGKILL of hsid loses no frame and stops no link; clients
// re-register when it is back, and a new link works within 1 s.
TEST(StreamTest, HsidKilledMidStreamLosesNothingAndNewLinkWorksWithinOneSecond) {
  Hsid d;
  ASSERT_TRUE(d.Start()) << d.log();
  constexpr uint64_t kN = 4'000'000;
  LinePipe rr, rs, go;
  Child receiver([&] { return Receiver(d.socket(), kN, rr); });
  absl::StatusOr<Address> raddr = Address::Parse(rr.Read());
  ASSERT_TRUE(raddr.ok());
  Child sender([&] { return Sender(d.socket(), *raddr, kN, rs, &go); });
  absl::StatusOr<Address> saddr = Address::Parse(rs.Read());
  ASSERT_TRUE(saddr.ok());
  ASSERT_EQ(rs.Read(), "half");
  ASSERT_NE(d.Stop(SIGKILL), -1);
  // The kernel tears down a dead process's io_uring (and the listening
  // socket it references) asynchronously.
  for (int i = 0; i < 2000 && d.Connectable(); ++i) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_FALSE(d.Connectable());
  go.Write("go");
  // The second half flows entirely while hsid is dead.
  const std::string sent = rs.Read(absl::Seconds(120));
  const std::string got = ReadNonProgress(rr, absl::Seconds(120));
  ASSERT_THAT(sent, ::testing::StartsWith("sent ")) << sent;
  ASSERT_THAT(got, ::testing::StartsWith("got ")) << got;
  EXPECT_EQ(sent.substr(5), got.substr(4)) << "count or checksum differs";
  EXPECT_EQ(rr.Read(), "clean");
  ASSERT_FALSE(d.Connectable());
  // Restart; a new LPAR links to the sender, which must have re-registered.
  ASSERT_TRUE(d.Start()) << d.log();
  const absl::Time up = absl::Now();
  LinePipe rc;
  Child c([&] {
    for (;;) {
      absl::StatusOr<Session> s = Connect(d.socket(), "latecomer");
      if (!s.ok()) continue;
      absl::StatusOr<Nic> nic = s->AttachNic(0xF0);
      if (!nic.ok()) return rc.Write("ERR " + nic.status().ToString()), 1;
      for (;;) {
        absl::StatusOr<Link> l = nic->Link(*saddr);
        if (l.ok()) {
          uint8_t hello[8] = {1};
          absl::Status st = l->Send(hello, Wait::Block(absl::Now() + absl::Seconds(5)));
          rc.Write(st.ok() ? "linked" : "ERR " + st.ToString());
          absl::SleepFor(absl::Seconds(60));
          return 0;
        }
        if (absl::Now() - up > absl::Seconds(5)) return rc.Write("ERR " + l.status().ToString()), 2;
        absl::SleepFor(absl::Milliseconds(5));
      }
    }
  });
  const std::string linked = rc.Read(absl::Seconds(10));
  const absl::Duration took = absl::Now() - up;
  EXPECT_EQ(linked, "linked");
  EXPECT_LT(took, absl::Seconds(1)) << "new link took " << took;
  EXPECT_THAT(d.log(), ::testing::HasSubstr("LPAR \"sender\" (pid"));
  EXPECT_THAT(d.log(), ::testing::HasSubstr("reclaimed"));
}

}  // namespace
}  // namespace hsi
