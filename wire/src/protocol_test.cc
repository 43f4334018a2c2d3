// The control protocol's decoder against malformed input: every field is
// checked, unexpected fds are closed, nothing crashes.
#include "hsi/wire/protocol.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hsi::wire {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> Bytes(const OutMessage& m) { return m.bytes; }

ClaimRequest Claim(const char* name) {
  ClaimRequest c = Zeroed<ClaimRequest>();
  SetName(c.lpar, name);
  return c;
}

absl::Status DecodeStatus(const std::vector<uint8_t>& b, std::vector<UniqueFd> fds = {},
                          Direction d = Direction::kToDaemon) {
  return Decode(b, std::move(fds), d).status();
}

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

TEST(ProtocolTest, RoundTripsAValidMessage) {
  auto b = Bytes(Encode(7, Claim("payroll")));
  absl::StatusOr<Message> m = Decode(b, {}, Direction::kToDaemon);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, MsgType::kClaimRequest);
  EXPECT_EQ(m->request_id, 7u);
  EXPECT_EQ(NameOf(m->As<ClaimRequest>().lpar), "payroll");
}

TEST(ProtocolTest, RejectsTruncatedAndOversize) {
  auto b = Bytes(Encode(7, Claim("a")));
  for (size_t n = 0; n < b.size(); ++n) {
    std::vector<uint8_t> cut(b.begin(), b.begin() + static_cast<long>(n));
    EXPECT_EQ(DecodeStatus(cut).code(), absl::StatusCode::kInvalidArgument) << n;
  }
  EXPECT_THAT(DecodeStatus({1, 2, 3}).message(), HasSubstr("truncated"));
  std::vector<uint8_t> big = b;
  big.resize(kMaxMessage + 1);
  EXPECT_THAT(DecodeStatus(big).message(), HasSubstr("oversize"));
  std::vector<uint8_t> longer = b;
  longer.push_back(0);
  EXPECT_THAT(DecodeStatus(longer).message(), HasSubstr("header says body is 40 bytes, datagram carries 41"));
}

TEST(ProtocolTest, RejectsBadMagicVersionTypeAndDirection) {
  auto b = Bytes(Encode(7, Claim("a")));
  auto bad = b;
  bad[0] ^= 0xff;
  EXPECT_THAT(DecodeStatus(bad).message(), HasSubstr("bad magic"));
  bad = b;
  bad[4] = 9;  // version
  EXPECT_THAT(DecodeStatus(bad).message(), HasSubstr("protocol version 9 is not supported"));
  bad = b;
  bad[6] = 99;  // type
  EXPECT_THAT(DecodeStatus(bad).message(), HasSubstr("unknown message type 99"));
  EXPECT_THAT(DecodeStatus(b, {}, Direction::kToClient).message(), HasSubstr("client-to-daemon"));
  bad = b;
  std::memset(bad.data() + 8, 0, 4);  // request id 0
  EXPECT_THAT(DecodeStatus(bad).message(), HasSubstr("request id 0"));
}

TEST(ProtocolTest, RejectsBadBodySizesForTheType) {
  // A LinkRequest body under a ClaimRequest header.
  OutMessage m = Encode(1, Zeroed<LinkRequest>());
  m.bytes[6] = static_cast<uint8_t>(MsgType::kClaimRequest);
  EXPECT_THAT(DecodeStatus(m.bytes).message(), HasSubstr("body is 8 bytes, expected 40"));
}

TEST(ProtocolTest, RejectsBadNamesEnumsAndReservedFields) {
  ClaimRequest c = Claim("ok");
  c.lpar[3] = 'x';  // bytes after the NUL
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, c))).message(), HasSubstr("bytes after its NUL"));
  c = Claim("");
  std::memset(c.lpar, 'a', sizeof(c.lpar));  // no NUL
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, c))).message(), HasSubstr("not NUL-terminated"));
  c = Claim("a/b");
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, c))).message(), HasSubstr("character 0x2f"));
  c = Claim("a");
  c.flags = 0x80;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, c))).message(), HasSubstr("unknown bits"));
  c = Claim("a");
  c.reserved = 1;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, c))).message(), HasSubstr("reserved is 1"));
  ListRequest l = Zeroed<ListRequest>();
  l.what = 9;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, l))).message(), HasSubstr("what 9 is not a list kind"));
  SetNicRequest n = Zeroed<SetNicRequest>();
  n.up = 2;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, n))).message(), HasSubstr("up is 2"));
  DefineChpidRequest d = Zeroed<DefineChpidRequest>();
  d.chpid = 0x100;
  d.mfs = 16384;
  d.capacity = 1 << 20;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, d))).message(), HasSubstr("chpid 256 is not in 00..FF"));
  d.chpid = 1;
  d.mfs = 20000;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, d))).message(), HasSubstr("mfs 20000"));
  d.mfs = 16384;
  d.capacity = 5000;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, d))).message(), HasSubstr("not a power of two"));
  d.capacity = 1 << 20;
  d.lpar_count = 9;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, d))).message(), HasSubstr("lpar_count 9"));
  d.lpar_count = 0;
  d.lpars[2][0] = 'z';
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, d))).message(), HasSubstr("unused lpars"));
  // A reply with a status code out of range and a control char in its text.
  AdminReply r = Zeroed<AdminReply>();
  r.status.code = 99;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, r)), {}, Direction::kToClient).message(), HasSubstr("code 99"));
  r.status.code = 3;
  r.status.message[0] = '\n';
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, r)), {}, Direction::kToClient).message(), HasSubstr("control character"));
  LinkDown down = Zeroed<LinkDown>();
  down.reason = 77;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, down)), {}, Direction::kToClient).message(), HasSubstr("reason 77"));
  down.reason = kDownPeerGone;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(5, down)), {}, Direction::kToClient).message(),
              HasSubstr("event with a non-zero request id"));
}

TEST(ProtocolTest, LinkCloseIsAnErrorWithATextAndGoesOnlyToHsid) {
  LinkClose c = Zeroed<LinkClose>();
  c.link_id = 4;
  c.nic_id = 2;
  c.code = static_cast<uint32_t>(absl::StatusCode::kDataLoss);
  std::memcpy(c.text, "cannot map", 10);
  absl::StatusOr<Message> m = Decode(Bytes(Encode(0, c)), {}, Direction::kToDaemon);
  ASSERT_TRUE(m.ok()) << m.status();  // a notice: request id 0, like LinkSealed
  EXPECT_EQ(m->As<LinkClose>().link_id, 4u);
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, c)), {}, Direction::kToClient).message(), HasSubstr("is a client"));
  c.code = 0;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, c))).message(), HasSubstr("code 0 is not an error status code"));
  c.code = 99;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, c))).message(), HasSubstr("code 99"));
  c.code = static_cast<uint32_t>(absl::StatusCode::kDataLoss);
  c.reserved = 3;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, c))).message(), HasSubstr("reserved is 3"));
  c.reserved = 0;
  c.text[20] = 'x';  // after the NUL
  EXPECT_FALSE(Decode(Bytes(Encode(0, c)), {}, Direction::kToDaemon).ok());
  LinkDown down = Zeroed<LinkDown>();
  down.reason = kDownPeerClosed;
  EXPECT_TRUE(Decode(Bytes(Encode(0, down)), {}, Direction::kToClient).ok());
}

TEST(ProtocolTest, WrongFdCountIsRejectedAndTheFdsAreClosed) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  UniqueFd keep(p[1]);
  std::vector<UniqueFd> fds;
  fds.emplace_back(p[0]);
  absl::Status s = DecodeStatus(Bytes(Encode(1, Claim("a"))), std::move(fds));
  EXPECT_THAT(s.message(), HasSubstr("carries 1 fds, expected 0"));
  EXPECT_FALSE(IsOpen(p[0])) << "an unexpected fd was not closed";
  // An attach needs exactly one (its doorbell).
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, Zeroed<AttachRequest>()))).message(), HasSubstr("carries 0 fds, expected 1"));
}

// hsi-run's messages (40-52): each field is checked before hsid sees it.
std::vector<UniqueFd> Pipes(int n) {
  std::vector<UniqueFd> fds;
  for (int i = 0; i < n; ++i) {
    int p[2];
    EXPECT_EQ(::pipe(p), 0);
    fds.emplace_back(p[0]);
    ::close(p[1]);
  }
  return fds;
}

TEST(ProtocolTest, HsiRunMessagesCheckEveryField) {
  RunProposeRequest prop = Zeroed<RunProposeRequest>();
  prop.destination.family = 2;
  prop.destination.port = 6379;
  prop.capacity = 1 << 20;
  prop.mtu = 65536;
  EXPECT_TRUE(DecodeStatus(Bytes(Encode(1, prop)), Pipes(3)).ok()) << DecodeStatus(Bytes(Encode(1, prop)), Pipes(3));
  RunProposeRequest bad = prop;
  bad.destination.family = 1;  // AF_UNIX
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, bad)), Pipes(3)).message(), HasSubstr("destination: family 1"));
  bad = prop;
  bad.destination.port = 70000;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, bad)), Pipes(3)).message(), HasSubstr("port 70000"));
  bad = prop;
  bad.destination.addr[9] = 1;  // IPv4 with bytes past the fourth
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, bad)), Pipes(3)).message(), HasSubstr("bytes 4..15 zero"));
  bad = prop;
  bad.capacity = 1000;  // not a power of two
  EXPECT_FALSE(DecodeStatus(Bytes(Encode(1, bad)), Pipes(3)).ok());
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, prop)), Pipes(2)).message(), HasSubstr("carries 2 fds, expected 3"));

  RunAwaitRequest aw = Zeroed<RunAwaitRequest>();
  aw.wait_ms = kMaxAwaitMs + 1;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, aw)), Pipes(1)).message(), HasSubstr("wait_ms exceeds"));
  aw.wait_ms = 10;
  aw.flags = 2;
  EXPECT_FALSE(DecodeStatus(Bytes(Encode(1, aw)), Pipes(1)).ok());

  RunFallbackNotice fb = Zeroed<RunFallbackNotice>();
  fb.reason = 0;  // "none" is no fallback
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, fb))).message(), HasSubstr("fallback reason 0"));
  fb.reason = 99;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, fb))).message(), HasSubstr("fallback reason 99"));
  fb.reason = kRunFallbackOption;
  EXPECT_TRUE(DecodeStatus(Bytes(Encode(0, fb))).ok());

  RunCloseNotice cl = Zeroed<RunCloseNotice>();
  cl.side = 2;
  EXPECT_FALSE(DecodeStatus(Bytes(Encode(0, cl))).ok());

  // A reply that refuses names a reason and carries no fds.
  RunClaimReply rep = Zeroed<RunClaimReply>();
  rep.status = ToWire(absl::NotFoundError("no proposal"));
  rep.reason = kRunFallbackPlainPeer;
  EXPECT_TRUE(DecodeStatus(Bytes(Encode(3, rep)), {}, Direction::kToClient).ok());
  rep.reason = 0;
  EXPECT_FALSE(DecodeStatus(Bytes(Encode(3, rep)), {}, Direction::kToClient).ok());
  EXPECT_STREQ(FallbackReasonName(kRunFallbackNoListener), "no_listener");
}

TEST(ProtocolTest, SocketLevelReceiveHandlesFdsAndTruncation) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  // Nothing waiting.
  absl::StatusOr<std::optional<Message>> r = TryReceive(b.get(), Direction::kToDaemon);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  // A valid attach with its fd.
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  UniqueFd pw(p[1]);
  std::vector<UniqueFd> fds;
  fds.emplace_back(p[0]);
  ASSERT_TRUE(*TrySend(a.get(), Encode(3, Zeroed<AttachRequest>(), std::move(fds))));
  r = TryReceive(b.get(), Direction::kToDaemon);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->fds.size(), 1u);
  // Oversize datagram.
  std::vector<uint8_t> big(kMaxMessage + 100, 0);
  ASSERT_GT(::send(a.get(), big.data(), big.size(), 0), 0);
  r = TryReceive(b.get(), Direction::kToDaemon);
  EXPECT_THAT(r.status().message(), HasSubstr("oversize"));
  // EOF.
  a.Reset();
  r = TryReceive(b.get(), Direction::kToDaemon);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
}

TEST(ProtocolTest, StatusSurvivesTheWire) {
  absl::Status s = absl::PermissionDeniedError("LPAR \"x\": uid 5 is not allowed\nsecond line");
  absl::Status back = FromWire(ToWire(s));
  EXPECT_EQ(back.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(back.message(), "LPAR \"x\": uid 5 is not allowed second line");
  EXPECT_TRUE(FromWire(ToWire(absl::OkStatus())).ok());
  // Every byte pattern of a body decodes or fails cleanly (no crash).
  auto b = Bytes(Encode(1, Claim("abc")));
  for (size_t i = 16; i < b.size(); ++i) {
    for (int v : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
      auto c = b;
      c[i] = static_cast<uint8_t>(v);
      (void)DecodeStatus(c);
    }
  }
}

// Issue 4: the sniffer and statistics messages are validated like the rest.
TEST(ProtocolTest, SnifferAndStatsMessagesAreValidated) {
  SniffRequest q = Zeroed<SniffRequest>();
  q.chpid = 0xF0;
  EXPECT_TRUE(DecodeStatus(Bytes(Encode(1, q))).ok());
  q.chpid = 0x100;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, q))).message(), HasSubstr("chpid 256 is not in 00..FF"));
  q.chpid = 1;
  q.reserved = 3;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, q))).message(), HasSubstr("reserved is 3"));
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, Zeroed<SniffRequest>())), {}, Direction::kToClient).message(),
              HasSubstr("client-to-daemon"));

  SniffReply r = Zeroed<SniffReply>();
  r.chpid = 0xF0;
  r.mtu = 8192;
  r.capacity = 1 << 20;
  r.prefix = 24;
  EXPECT_TRUE(DecodeStatus(Bytes(Encode(1, r)), {}, Direction::kToClient).ok());
  r.capacity = 5000;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, r)), {}, Direction::kToClient).message(), HasSubstr("power of two"));
  r.status.code = static_cast<uint32_t>(absl::StatusCode::kPermissionDenied);  // geometry unused then
  EXPECT_TRUE(DecodeStatus(Bytes(Encode(1, r)), {}, Direction::kToClient).ok());
  r.prefix = 40;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, r)), {}, Direction::kToClient).message(), HasSubstr("prefix 40"));

  // A SniffLink event carries exactly two fds and request id 0.
  SniffLink l = Zeroed<SniffLink>();
  l.chpid = 0xF0;
  l.address_a = 1;
  l.address_b = 2;
  l.mtu = 8192;
  l.capacity = 1 << 20;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, l)), {}, Direction::kToClient).message(),
              HasSubstr("carries 0 fds, expected 2"));
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::vector<UniqueFd> two;
  two.emplace_back(p[0]);
  two.emplace_back(p[1]);
  absl::StatusOr<Message> ok = Decode(Bytes(Encode(0, l)), std::move(two), Direction::kToClient);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->fds.size(), 2u);
  EXPECT_THAT(DecodeStatus(Bytes(Encode(4, Zeroed<SniffLinkGone>())), {}, Direction::kToClient).message(),
              HasSubstr("event with a non-zero request id"));
  l.flags = 2;
  std::vector<UniqueFd> flagged;
  ASSERT_EQ(::pipe(p), 0);
  flagged.emplace_back(p[0]);
  flagged.emplace_back(p[1]);
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, l)), std::move(flagged), Direction::kToClient).message(),
              HasSubstr("flags 0x2 has unknown bits"));
  l.flags = kSniffNew;
  l.address_b = 1;
  std::vector<UniqueFd> two_more;
  ASSERT_EQ(::pipe(p), 0);
  two_more.emplace_back(p[0]);
  two_more.emplace_back(p[1]);
  const int r0 = p[0];
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, l)), std::move(two_more), Direction::kToClient).message(),
              HasSubstr("address_a equals address_b"));
  EXPECT_FALSE(IsOpen(r0)) << "fds of a rejected SniffLink were not closed";
  l.address_b = 2;
  l.mtu = 1u << 30;
  std::vector<UniqueFd> third;
  ASSERT_EQ(::pipe(p), 0);
  third.emplace_back(p[0]);
  third.emplace_back(p[1]);
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, l)), std::move(third), Direction::kToClient).message(),
              HasSubstr("ring mtu"));

  SniffLinkGone g = Zeroed<SniffLinkGone>();
  g.reserved = 1;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(0, g)), {}, Direction::kToClient).message(), HasSubstr("reserved is 1"));

  ListRequest lr = Zeroed<ListRequest>();
  lr.what = kListStats;
  EXPECT_TRUE(DecodeStatus(Bytes(Encode(1, lr))).ok());
  ListStatsReply st = Zeroed<ListStatsReply>();
  st.count = 17;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, st)), {}, Direction::kToClient).message(), HasSubstr("count 17 exceeds 16"));
  st.count = 1;
  st.entries[0].state = 7;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, st)), {}, Direction::kToClient).message(), HasSubstr("state 7"));
  st.entries[0].state = 1;
  st.entries[0].chpid = 0x1F0;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, st)), {}, Direction::kToClient).message(), HasSubstr("chpid 496"));
  st.entries[0].chpid = 0xF0;
  st.entries[0].reserved = 1;
  EXPECT_THAT(DecodeStatus(Bytes(Encode(1, st)), {}, Direction::kToClient).message(), HasSubstr("reserved"));
  st.entries[0].reserved = 0;
  EXPECT_TRUE(DecodeStatus(Bytes(Encode(1, st)), {}, Direction::kToClient).ok());
}

// The table decides request ids and fds by kind: an event never carries a
// request id, a request or reply always does, a refusing reply carries no
// fds while an accepting one carries its own; a retired type is unknown.
TEST(ProtocolTest, TheTableDecidesRequestIdsAndFdsByKind) {
  // An event (NicStateEvent) with a request id.
  NicStateEvent ev = Zeroed<NicStateEvent>();
  EXPECT_THAT(DecodeStatus(Encode(5, ev).bytes, {}, Direction::kToClient).message(),
              HasSubstr("event with a non-zero request id"));
  EXPECT_TRUE(Decode(Encode(0, ev).bytes, {}, Direction::kToClient).ok());
  // A reply (AdminReply) with request id 0.
  EXPECT_THAT(DecodeStatus(Encode(0, Zeroed<AdminReply>()).bytes, {}, Direction::kToClient).message(),
              HasSubstr("request id 0"));
  // A notice (LinkSealed) may carry any id; an error reply too.
  EXPECT_TRUE(Decode(Encode(0, Zeroed<LinkSealed>()).bytes, {}, Direction::kToDaemon).ok());
  EXPECT_TRUE(Decode(Encode(0, Zeroed<ErrorReply>()).bytes, {}, Direction::kToClient).ok());
  // ClaimReply carries the event page when it accepts and nothing when it refuses.
  ClaimReply ok = Zeroed<ClaimReply>();
  EXPECT_THAT(DecodeStatus(Encode(1, ok).bytes, {}, Direction::kToClient).message(),
              HasSubstr("carries 0 fds, expected 1"));
  ClaimReply refused = Zeroed<ClaimReply>();
  refused.status = ToWire(absl::PermissionDeniedError("no"));
  EXPECT_TRUE(Decode(Encode(1, refused).bytes, {}, Direction::kToClient).ok());
  // An event whose body starts like a refusal still needs its fds (LinkOffer is not a reply).
  LinkOffer offer = Zeroed<LinkOffer>();
  offer.link_id = 1;
  SetName(offer.peer_lpar, "b");
  offer.capacity = 4096;
  offer.mtu = 1024;
  EXPECT_THAT(DecodeStatus(Encode(0, offer).bytes, {}, Direction::kToClient).message(),
              HasSubstr("carries 0 fds, expected 1"));
  // 27 was ListLinksReply (protocol 3); ListRequest kind 3 was the links list.
  EXPECT_FALSE(InfoOf(27).has_value());
  ListRequest lr = Zeroed<ListRequest>();
  lr.what = 3;
  EXPECT_THAT(DecodeStatus(Encode(1, lr).bytes).message(), HasSubstr("what 3 is not a list kind"));
  // Every type the table names decodes its own name.
  EXPECT_STREQ(MsgTypeName(static_cast<uint16_t>(MsgType::kSniffLinkGone)), "SniffLinkGone");
  EXPECT_STREQ(MsgTypeName(27), "unknown");
}

}  // namespace
}  // namespace hsi::wire
