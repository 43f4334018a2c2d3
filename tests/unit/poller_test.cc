// hsi::Poller: one wait over several NICs, through a private hsid. The NICs
// under test are in this process; a forked LPAR sends to them on request.
#include "hsi/poller.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

absl::StatusOr<Session> Connect(const Hsid& d, const std::string& lpar) {
  return Session::Connect({.socket_path = d.socket(), .lpar = lpar});
}

// LPAR "sender": for each line "ADDR TEXT" it sends TEXT to ADDR and
// answers "SENT" (or "ERR ..."); "END" ends it.
int Sender(const Hsid& d, LinePipe& in, LinePipe& out) {
  absl::StatusOr<Session> s = Connect(d, "sender");
  if (!s.ok()) return 1;
  absl::StatusOr<Nic> nic = s->AttachNic(0xF0);
  if (!nic.ok()) return 2;
  out.Write(nic->address().ToString());
  for (;;) {
    const std::string line = in.Read(absl::Seconds(30));
    if (line.empty() || line == "END") return 0;
    std::vector<std::string> w = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    absl::StatusOr<Address> to = Address::Parse(w[0]);
    if (!to.ok() || w.size() != 2) return 3;
    const absl::Status st = nic->SendTo(
        *to, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(w[1].data()), w[1].size()),
        Wait::Block(In(absl::Seconds(20))));
    out.Write(st.ok() ? "SENT" : absl::StrCat("ERR ", st.ToString()));
  }
}

class PollerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(d_.Start()) << d_.log();
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<Session> s = Connect(d_, absl::StrCat("rx", i));
      ASSERT_TRUE(s.ok()) << s.status();
      sessions_.push_back(std::move(*s));
    }
    for (Session& s : sessions_) {
      absl::StatusOr<Nic> n = s.AttachNic(0xF0);
      ASSERT_TRUE(n.ok()) << n.status();
      nics_.push_back(std::move(*n));
    }
    sender_ = std::make_unique<Child>([this] { return Sender(d_, to_sender_, from_sender_); });
    sender_addr_ = from_sender_.Read(absl::Seconds(20));
    ASSERT_FALSE(sender_addr_.empty()) << d_.log();
  }
  void TearDown() override {
    to_sender_.Write("END");
    if (sender_) {
      EXPECT_EQ(sender_->Wait(), 0);
    }
  }

  // Asks the sender to send `text` to `nic` (it answers once SendTo returned,
  // which needs this process to answer the link offer: so the answer is not
  // awaited here but in Collect()).
  void Send(const Nic& nic, const std::string& text) {
    to_sender_.Write(absl::StrCat(nic.address().ToString(), " ", text));
  }

  // Waits on `poller` until `want` frames came in, draining every NIC it
  // returns; the frames by NIC index. Fails past 20 s.
  std::vector<std::vector<std::string>> Collect(Poller& poller, size_t want, std::set<int>* woken = nullptr) {
    std::vector<std::vector<std::string>> got(nics_.size());
    size_t n = 0;
    const absl::Time deadline = In(absl::Seconds(20));
    while (n < want && absl::Now() < deadline) {
      absl::StatusOr<std::vector<Nic*>> ready = poller.Wait(deadline);
      EXPECT_TRUE(ready.ok()) << ready.status();
      if (!ready.ok()) break;
      for (Nic* nic : *ready) {
        const int i = static_cast<int>(nic - nics_.data());
        EXPECT_TRUE(i >= 0 && i < static_cast<int>(nics_.size())) << "a NIC that was never added";
        if (woken != nullptr) woken->insert(i);
        uint8_t buf[256];
        for (;;) {
          absl::StatusOr<Received> r = nic->Receive(absl::MakeSpan(buf), Wait::Never());
          if (!r.ok()) {
            EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
            break;
          }
          EXPECT_EQ(r->source.ToString(), sender_addr_);
          got[static_cast<size_t>(i)].emplace_back(reinterpret_cast<char*>(buf), r->length);
          ++n;
        }
      }
    }
    EXPECT_EQ(n, want);
    return got;
  }

  // Links the sender to NICs 0 and 1 through `poller` (one frame each,
  // collected), so that later frames need no control traffic.
  void LinkFirstTwo(Poller& poller) {
    Send(nics_[0], "hello 0");
    Send(nics_[1], "hello 1");
    Collect(poller, 2);
    ASSERT_EQ(from_sender_.Read(absl::Seconds(20)), "SENT");
    ASSERT_EQ(from_sender_.Read(absl::Seconds(20)), "SENT");
  }

  Hsid d_;
  std::vector<Session> sessions_;
  std::vector<Nic> nics_;
  LinePipe to_sender_, from_sender_;
  std::unique_ptr<Child> sender_;
  std::string sender_addr_;
};

TEST_F(PollerTest, AddingANicTwiceIsRefused) {
  absl::StatusOr<Poller> p = Poller::Create();
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(p->Add(&nics_[0]).ok());
  EXPECT_EQ(p->Add(&nics_[0]).code(), absl::StatusCode::kAlreadyExists);
  p->Remove(&nics_[0]);
  p->Remove(&nics_[0]);  // a no-op
  EXPECT_TRUE(p->Add(&nics_[0]).ok());
}

TEST_F(PollerTest, WaitReturnsTheNicsWithFramesAndOnlyThose) {
  absl::StatusOr<Poller> p = Poller::Create();
  ASSERT_TRUE(p.ok()) << p.status();
  for (Nic& n : nics_) ASSERT_TRUE(p->Add(&n).ok());

  Send(nics_[0], "to rx0");
  Send(nics_[2], "to rx2 first");
  Send(nics_[2], "to rx2 second");
  std::vector<std::vector<std::string>> got = Collect(*p, 3);
  EXPECT_EQ(got[0], std::vector<std::string>({"to rx0"}));
  EXPECT_TRUE(got[1].empty());
  EXPECT_EQ(got[2], std::vector<std::string>({"to rx2 first", "to rx2 second"}));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(from_sender_.Read(absl::Seconds(20)), "SENT");

  // Nothing more is waiting: a Wait to a near deadline returns no NIC with a
  // frame (a control event may still wake one; it then has nothing to read).
  absl::StatusOr<std::vector<Nic*>> idle = p->Wait(In(absl::Milliseconds(50)));
  ASSERT_TRUE(idle.ok()) << idle.status();
  uint8_t buf[64];
  for (Nic* nic : *idle) {
    EXPECT_EQ(nic->Receive(absl::MakeSpan(buf), Wait::Never()).status().code(), absl::StatusCode::kDeadlineExceeded);
  }
}

TEST_F(PollerTest, ARemovedNicNoLongerWakesTheWait) {
  absl::StatusOr<Poller> p = Poller::Create();
  ASSERT_TRUE(p.ok()) << p.status();
  for (Nic& n : nics_) ASSERT_TRUE(p->Add(&n).ok());
  // Links first, so that the removed NIC needs no control traffic later.
  LinkFirstTwo(*p);
  if (HasFatalFailure()) return;

  p->Remove(&nics_[0]);
  Send(nics_[0], "unseen");
  ASSERT_EQ(from_sender_.Read(absl::Seconds(20)), "SENT");  // in rx0's ring now
  Send(nics_[1], "seen");
  std::set<int> woken;
  std::vector<std::vector<std::string>> got = Collect(*p, 1, &woken);
  EXPECT_EQ(got[1], std::vector<std::string>({"seen"}));
  EXPECT_EQ(woken.count(0), 0u) << "the removed NIC was returned";
  EXPECT_EQ(from_sender_.Read(absl::Seconds(20)), "SENT");
  // The frame waited in rx0's ring all along.
  uint8_t buf[64];
  absl::StatusOr<Received> r = nics_[0].Receive(absl::MakeSpan(buf), Wait::Block(In(absl::Seconds(5))));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), r->length), "unseen");
}

// The Poller drains a NIC's doorbell only when its poll saw it readable
// (Nic::PrepareWait(drain)), and pumps a session only when its control
// socket's poll fired. A NIC whose poll stayed pending while another woke
// the wait must still wake it for its next frame, and a drained doorbell
// must not leave the wait returning at once: an idle Wait sleeps to its
// deadline. (Checked by hand: without marking a completed poll as fired,
// the doorbell is never drained and the idle loop below spins.)
TEST_F(PollerTest, LazyDrainingLosesNoWakeUpAndDoesNotSpin) {
  absl::StatusOr<Poller> p = Poller::Create();
  ASSERT_TRUE(p.ok()) << p.status();
  for (Nic& n : nics_) ASSERT_TRUE(p->Add(&n).ok());
  LinkFirstTwo(*p);
  if (HasFatalFailure()) return;
  for (int round = 0; round < 20; ++round) {
    const int to = round % 2;  // the other NIC's poll stays pending, undrained
    Send(nics_[to], absl::StrCat("frame ", round));
    std::vector<std::vector<std::string>> got = Collect(*p, 1);
    ASSERT_EQ(got[to], std::vector<std::string>({absl::StrCat("frame ", round)})) << "round " << round;
    ASSERT_EQ(from_sender_.Read(absl::Seconds(20)), "SENT");
  }
  int waits = 0;
  for (const absl::Time end = In(absl::Milliseconds(300)); absl::Now() < end; ++waits) {
    absl::StatusOr<std::vector<Nic*>> idle = p->Wait(end);
    ASSERT_TRUE(idle.ok()) << idle.status();
    uint8_t buf[64];
    for (Nic* nic : *idle) {
      EXPECT_EQ(nic->Receive(absl::MakeSpan(buf), Wait::Never()).status().code(),
                absl::StatusCode::kDeadlineExceeded);
    }
  }
  EXPECT_LE(waits, 4) << "an idle Poller::Wait kept returning before its deadline";
}

}  // namespace
}  // namespace hsi
