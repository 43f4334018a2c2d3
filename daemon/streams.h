// daemon/streams.h: hsi-run's side in hsid: which listening TCP sockets
// are hsi-run's, which connections are proposed and paired, and the
// fallback counters (docs/hsi-run.md; the messages in hsi/wire/messages.h).
//
// A connection is paired only between the two proven ends of one TCP
// connection: the connector proves its end by handing in its socket before
// connect() (hsid notes its SO_COOKIE, bound port and SO_NETNS_COOKIE) and
// again before its first byte (same cookie, peer = the destination); the
// acceptor by handing in the accepted socket, whose peer address and port
// and namespace must be the connector's and whose local address the
// destination. A 4-tuple is unique in a namespace, so no third process, of
// any uid, can claim a connection it does not hold. hsid reads the sockets
// and closes its copies at once (holding one would keep a connection or a
// port alive after the program closed it).
//
// Each end hands in its own ring segment and control page, mapped and
// sealed against new writers by their owner; hsid checks the seals
// (InspectSealedRingSegment, CheckStreamPage) and the geometry before it
// hands either to the other end (invariants 1 and 3), and keeps the fds
// only to read byte counters for hsictl. Frames never pass through hsid.
//
// Policy: both uids must be in [hsid] run_uids; two different uids must both
// be in run_cross_uids. A refusal names the rule and is a fallback to TCP
// for the program, counted by reason.
//
// Ownership: Streams owns its tables; a Client is referred to by id.
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_STREAMS_H_
#define HSI_DAEMON_STREAMS_H_

#include <array>
#include <cstdint>
#include <map>
#include <tuple>

#include "absl/time/time.h"
#include "clients.h"
#include "config.h"
#include "hsi/fd.h"
#include "hsi/ring.h"
#include "hsi/wire/protocol.h"

namespace hsid {

// A socket address as hsid compares them: IPv4-mapped IPv6 as IPv4.
struct SockAddr {
  uint32_t family = 0;
  uint32_t port = 0;
  std::array<uint8_t, 16> addr{};
  bool wildcard() const;
  auto Key() const { return std::tie(family, port, addr); }
  bool operator<(const SockAddr& o) const { return Key() < o.Key(); }
  bool operator==(const SockAddr& o) const { return Key() == o.Key(); }
  std::string ToString() const;
  wire::WireSockAddr ToWire() const;
};

class Streams {
 public:
  Streams(const Config& config, Clients& clients) : config_(config), clients_(clients) {}

  void OnListen(Client& c, Message& m);
  void OnUnlisten(Client& c, const Message& m);
  void OnPropose(Client& c, Message& m);
  void OnClaim(Client& c, Message& m);
  void OnAwait(Client& c, Message& m);
  // After an exec (docs/hsi-run.md section 5): the new image of one side
  // hands in the stream's socket and fresh segments, checked as the first
  // ones; the peer fetches them when the old page says "moving".
  void OnReattach(Client& c, Message& m);
  void OnFetch(Client& c, Message& m);
  void OnClose(Client& c, const Message& m);
  void OnFallback(Client& c, const Message& m);
  // ListRequest{kListStreams or kListFallbacks}.
  void OnList(Client& c, const Message& m);
  // `c` is gone: its listeners, its pending awaits; streams none holds.
  void OnClientGone(const Client& c);
  // Answers awaits whose wait ran out (the connection stays on TCP).
  void Expire(absl::Time now);
  bool AnyDeadline() const { return awaiting_ > 0; }

 private:
  struct Listener {
    uint64_t client = 0;
    uint32_t uid = 0;
    uint64_t netns = 0;
    SockAddr local;
    // Refused by the policy at listen() (its uid is not in run_uids): kept,
    // one per (client, namespace, address), only so that a connector to it
    // is refused as `policy`, not `no_listener`; never paired.
    bool refused = false;
  };
  struct Stream {
    uint64_t id = 0;
    uint32_t state = wire::kStreamProposed;
    uint64_t netns = 0;
    uint64_t cookie = 0;  // the connector socket's SO_COOKIE
    uint64_t a_cookie = 0;  // the accepted socket's
    // Generation of each side's segments: 0 first, one more at each exec
    // of that side (OnReattach); and the generation of the other side's
    // segments each side has fetched (OnFetch, or got at its reattach).
    uint64_t c_gen = 0, a_gen = 0, c_has = 0, a_has = 0;
    SockAddr connector;   // as bound (the address may be a wildcard)
    SockAddr destination;
    SockAddr connector_seen;  // as the acceptor sees it
    uint64_t c_client = 0, a_client = 0;
    uint32_t c_pid = 0, a_pid = 0, c_uid = 0, a_uid = 0;
    hsi::RingGeometry geometry;
    hsi::UniqueFd c_ring, c_page, a_ring, a_page;
    absl::Time created;
    uint32_t refused = 0;  // kRunFallback* once either side was refused
    bool c_closed = false, a_closed = false;
    // A connector's await not yet answered.
    uint64_t await_client = 0;
    uint32_t await_request = 0;
    absl::Time await_deadline = absl::InfiniteFuture();
  };
  using ProposalKey = std::tuple<uint64_t, uint32_t, SockAddr>;  // netns, connector port, destination

  // Whether uids `a` and `b` may be paired; else the refusal naming the rule.
  absl::Status Allowed(uint32_t a, uint32_t b) const;
  void Count(uint32_t reason) { ++fallbacks_[reason < fallbacks_.size() ? reason : wire::kRunFallbackInternal]; }
  // Answers request `m` of `c` with a `Reply` (RunProposeReply,
  // RunClaimReply, RunAwaitReply) saying `s` and fallback `reason`.
  template <typename Reply>
  void Refuse(Client& c, const Message& m, uint32_t reason, const absl::Status& s) {
    auto rep = wire::Zeroed<Reply>();
    rep.status = wire::ToWire(s);
    rep.reason = reason;
    clients_.Reply(c, m.request_id, rep);
  }
  void AnswerAwait(Stream& s);
  // The stream `id` whose `side` end `c` proves to hold with the socket
  // `m` carries first (same SO_COOKIE, same uid); else answers `m` with a
  // `Reply` saying so and returns nullptr.
  template <typename Reply>
  Stream* Holder(Client& c, const Message& m, uint64_t id, uint32_t side);
  void Erase(uint64_t id);

  const Config& config_;
  Clients& clients_;
  std::map<std::pair<uint64_t, uint64_t>, Listener> listeners_;  // (client, listener id)
  std::map<uint64_t, Stream> streams_;
  std::map<ProposalKey, uint64_t> proposals_;
  std::array<uint64_t, wire::kRunFallbackCount> fallbacks_{};
  uint64_t next_id_ = 1;
  uint32_t awaiting_ = 0;
};

}  // namespace hsid

#endif  // HSI_DAEMON_STREAMS_H_
