// hsid's side of hsi-run against a hostile client: a process that holds no
// end of a connection cannot obtain its rings, whatever it hands in; a
// socket of the wrong kind, an unsealed segment or a wrong-sized ring is
// refused with a reason; and the two real ends still pair afterwards.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <memory>

#include "gtest/gtest.h"
#include "hsi/run_broker.h"
#include "hsi/stream.h"
#include "hsi/testing/hsid.h"
#include "hsi/wire/messages.h"

namespace hsi {
namespace {

namespace wire = ::hsi::wire;

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

uint16_t PortOf(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

struct Parts {
  Segment ring, page;
};
Parts MakeParts(const RingGeometry& g) {
  absl::StatusOr<Segment> r = CreateOwnRing(g);
  absl::StatusOr<Segment> p = CreateStreamPage();
  EXPECT_TRUE(r.ok() && p.ok());
  return Parts{std::move(*r), std::move(*p)};
}

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(hsid_.Start()) << hsid_.log();
    RunBrokerOptions o;
    o.socket_path = hsid_.socket();
    for (auto* b : {&victim_, &attacker_}) {
      absl::StatusOr<std::unique_ptr<RunBroker>> c = RunBroker::Connect(o);
      ASSERT_TRUE(c.ok()) << c.status();
      *b = std::move(*c);
    }
    listener_ = std::make_unique<Fd>(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = Loopback(0);
    ASSERT_EQ(::bind(listener_->fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(::listen(listener_->fd, 16), 0);
    port_ = PortOf(listener_->fd);
    ASSERT_TRUE(victim_->Listen(1, listener_->fd).ok());
  }

  // A bound, unconnected socket, proposed by the victim toward the listener.
  uint64_t Propose(Fd& c, Parts& parts) {
    sockaddr_in any{};
    any.sin_family = AF_INET;
    EXPECT_EQ(::bind(c.fd, reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);
    const sockaddr_in dest = Loopback(port_);
    uint32_t reason = 0;
    absl::StatusOr<uint64_t> id =
        victim_->Propose(c.fd, reinterpret_cast<const sockaddr*>(&dest), sizeof(dest), parts.ring, parts.page, g_, &reason);
    EXPECT_TRUE(id.ok()) << id.status();
    EXPECT_EQ(::connect(c.fd, reinterpret_cast<const sockaddr*>(&dest), sizeof(dest)), 0);
    return id.ok() ? *id : 0;
  }

  testing::Hsid hsid_;
  std::unique_ptr<RunBroker> victim_, attacker_;
  std::unique_ptr<Fd> listener_;
  uint16_t port_ = 0;
  const RingGeometry g_{64 * 1024, 16 * 1024};
};

TEST_F(HostileTest, AThirdProcessCannotAwaitOrClaimSomeoneElsesConnection) {
  Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  Parts cparts = MakeParts(g_);
  const uint64_t id = Propose(c, cparts);
  ASSERT_NE(id, 0u);
  Fd accepted(::accept4(listener_->fd, nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(accepted.fd, 0);

  // The attacker's own connection to the same listener.
  Fd x(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in dest = Loopback(port_);
  ASSERT_EQ(::connect(x.fd, reinterpret_cast<const sockaddr*>(&dest), sizeof(dest)), 0);
  Fd y(::accept4(listener_->fd, nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(y.fd, 0);

  // Await the victim's stream (and its neighbours' ids) with its own socket.
  uint32_t reason = 0;
  for (uint64_t guess = id > 3 ? id - 3 : 1; guess <= id + 3; ++guess) {
    absl::StatusOr<RunPeer> p = attacker_->Await(guess, x.fd, 0, false, g_, &reason);
    EXPECT_FALSE(p.ok()) << "stream " << guess << " was handed to a process that does not hold it";
    EXPECT_EQ(reason, wire::kRunFallbackBadSocket);
  }
  // Claim with its own accepted socket: no proposal is that socket's.
  Parts xparts = MakeParts(g_);
  absl::StatusOr<RunPeer> claim = attacker_->Claim(y.fd, xparts.ring, xparts.page, g_, &reason);
  EXPECT_EQ(claim.status().code(), absl::StatusCode::kNotFound) << claim.status();
  EXPECT_EQ(reason, wire::kRunFallbackPlainPeer);
  // Claim with the victim's *connector* socket (connected, but the wrong end).
  claim = attacker_->Claim(c.fd, xparts.ring, xparts.page, g_, &reason);
  EXPECT_FALSE(claim.ok());

  // The two real ends still pair, each getting the other's segments.
  Parts aparts = MakeParts(g_);
  absl::StatusOr<RunPeer> a = victim_->Claim(accepted.fd, aparts.ring, aparts.page, g_, &reason);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->stream_id, id);
  absl::StatusOr<RunPeer> cp = victim_->Await(id, c.fd, 1000, false, g_, &reason);
  ASSERT_TRUE(cp.ok()) << cp.status();
  // A second claim of the same connection is refused.
  Parts again = MakeParts(g_);
  claim = attacker_->Claim(accepted.fd, again.ring, again.page, g_, &reason);
  EXPECT_FALSE(claim.ok());
}

TEST_F(HostileTest, WrongSocketsAndSegmentsAreRefusedWithAReason) {
  uint32_t reason = 0;
  // Listen with a socket that does not listen.
  Fd notlistening(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_FALSE(attacker_->Listen(7, notlistening.fd).ok());
  // Listen with a pipe.
  int pipefd[2];
  ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
  Fd p0(pipefd[0]), p1(pipefd[1]);
  EXPECT_FALSE(attacker_->Listen(8, p0.fd).ok());

  // Propose with a socket that is connected already.
  Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in dest = Loopback(port_);
  ASSERT_EQ(::connect(c.fd, reinterpret_cast<const sockaddr*>(&dest), sizeof(dest)), 0);
  Fd c_accepted(::accept4(listener_->fd, nullptr, nullptr, SOCK_CLOEXEC));  // out of the backlog
  Parts parts = MakeParts(g_);
  absl::StatusOr<uint64_t> id =
      attacker_->Propose(c.fd, reinterpret_cast<const sockaddr*>(&dest), sizeof(dest), parts.ring, parts.page, g_, &reason);
  EXPECT_FALSE(id.ok());
  EXPECT_EQ(reason, wire::kRunFallbackBadSocket);

  // Propose with a ring segment nobody sealed against writers.
  Fd d(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in any{};
  any.sin_family = AF_INET;
  ASSERT_EQ(::bind(d.fd, reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);
  absl::StatusOr<UniqueFd> raw = CreateRingSegment(g_, "unsealed");
  ASSERT_TRUE(raw.ok());
  absl::StatusOr<Segment> unsealed = Segment::MapPeer(std::move(*raw), g_.segment_size());
  ASSERT_TRUE(unsealed.ok()) << unsealed.status();
  id = attacker_->Propose(d.fd, reinterpret_cast<const sockaddr*>(&dest), sizeof(dest), *unsealed, parts.page, g_, &reason);
  EXPECT_FALSE(id.ok());
  EXPECT_EQ(reason, wire::kRunFallbackBadSocket);

  // A destination with no hsi-run listener.
  const sockaddr_in nowhere = Loopback(1);
  id = attacker_->Propose(d.fd, reinterpret_cast<const sockaddr*>(&nowhere), sizeof(nowhere), parts.ring, parts.page, g_,
                          &reason);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kNotFound) << id.status();
  EXPECT_EQ(reason, wire::kRunFallbackNoListener);

  // A ring of another size than the connector's: refused at the claim, and
  // the connector's await is refused too, so both ends stay on TCP.
  Fd e(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  Parts eparts = MakeParts(g_);
  ASSERT_EQ(::bind(e.fd, reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);
  absl::StatusOr<uint64_t> eid =
      victim_->Propose(e.fd, reinterpret_cast<const sockaddr*>(&dest), sizeof(dest), eparts.ring, eparts.page, g_, &reason);
  ASSERT_TRUE(eid.ok()) << eid.status();
  ASSERT_EQ(::connect(e.fd, reinterpret_cast<const sockaddr*>(&dest), sizeof(dest)), 0);
  Fd ea(::accept4(listener_->fd, nullptr, nullptr, SOCK_CLOEXEC));
  const RingGeometry other{128 * 1024, 16 * 1024};
  Parts big = MakeParts(other);
  absl::StatusOr<RunPeer> claim = victim_->Claim(ea.fd, big.ring, big.page, other, &reason);
  EXPECT_FALSE(claim.ok());
  EXPECT_EQ(reason, wire::kRunFallbackGeometry);
  absl::StatusOr<RunPeer> aw = victim_->Await(*eid, e.fd, 1000, false, g_, &reason);
  EXPECT_FALSE(aw.ok()) << "await after a refused claim";
  EXPECT_EQ(reason, wire::kRunFallbackGeometry);

  // hsid is still serving everyone.
  EXPECT_TRUE(victim_->connected());
  EXPECT_TRUE(hsid_.Connectable());
}

// After an exec (docs/hsi-run.md section 5) the new image re-attaches with
// fresh segments and the peer fetches them: only the holder of that side's
// socket may do either, new segments are checked as the first ones, and a
// re-attach that would skip a ring the peer has not reached is refused.
TEST_F(HostileTest, ReattachAndFetchAreTheHoldersOnly) {
  // The victim's connection, paired.
  Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  Parts cparts = MakeParts(g_), aparts = MakeParts(g_);
  const uint64_t id = Propose(c, cparts);
  Fd accepted(::accept4(listener_->fd, nullptr, nullptr, SOCK_CLOEXEC));
  uint32_t reason = 0;
  ASSERT_TRUE(id != 0 && victim_->Claim(accepted.fd, aparts.ring, aparts.page, g_, &reason).ok());
  ASSERT_TRUE(victim_->Await(id, c.fd, 1000, false, g_, &reason).ok());

  // The attacker's own connection to the same listener: its sockets prove
  // nothing about the victim's stream, for either side.
  Fd x(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in dest = Loopback(port_);
  ASSERT_EQ(::connect(x.fd, reinterpret_cast<const sockaddr*>(&dest), sizeof(dest)), 0);
  Fd y(::accept4(listener_->fd, nullptr, nullptr, SOCK_CLOEXEC));
  Parts xparts = MakeParts(g_);
  for (uint32_t side : {0u, 1u}) {
    for (int s : {x.fd, y.fd}) {
      EXPECT_FALSE(attacker_->Reattach(id, side, 0, s, xparts.ring, xparts.page, g_).ok()) << "side " << side;
      EXPECT_FALSE(attacker_->Fetch(id, side, 0, s, g_).ok()) << "side " << side;
    }
  }
  // The right socket for the other side is refused too (the acceptor's
  // socket does not prove the connector's end).
  EXPECT_FALSE(victim_->Reattach(id, 0, 0, accepted.fd, xparts.ring, xparts.page, g_).ok());

  // The connector's new image hands in an unsealed ring: refused.
  absl::StatusOr<UniqueFd> raw = CreateRingSegment(g_, "unsealed");
  ASSERT_TRUE(raw.ok());
  absl::StatusOr<Segment> unsealed = Segment::MapPeer(std::move(*raw), g_.segment_size());
  ASSERT_TRUE(unsealed.ok());
  EXPECT_FALSE(victim_->Reattach(id, 0, 0, c.fd, *unsealed, xparts.page, g_).ok());
  // Nothing new for the acceptor yet.
  EXPECT_EQ(victim_->Fetch(id, 1, 0, accepted.fd, g_).status().code(), absl::StatusCode::kUnavailable);

  // A proper re-attach: generation 1, answered with the acceptor's segments;
  // the acceptor fetches it.
  Parts c1 = MakeParts(g_);
  absl::StatusOr<RunPeer> r = victim_->Reattach(id, 0, 0, c.fd, c1.ring, c1.page, g_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->gen, 1u);
  // A second exec before the acceptor has the first one's segments would
  // skip a ring: refused.
  Parts c2 = MakeParts(g_);
  EXPECT_EQ(victim_->Reattach(id, 0, 0, c.fd, c2.ring, c2.page, g_).status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<RunPeer> f = victim_->Fetch(id, 1, 0, accepted.fd, g_);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->gen, 1u);
  EXPECT_EQ(victim_->Fetch(id, 1, 1, accepted.fd, g_).status().code(), absl::StatusCode::kUnavailable);
  // Now it may, once, with the acceptor's generation it used (0).
  EXPECT_FALSE(victim_->Reattach(id, 0, 5, c.fd, c2.ring, c2.page, g_).ok()) << "a peer generation hsid never gave";
  r = victim_->Reattach(id, 0, 0, c.fd, c2.ring, c2.page, g_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->gen, 2u);
  EXPECT_TRUE(hsid_.Connectable());
}

}  // namespace
}  // namespace hsi
