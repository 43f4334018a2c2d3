// daemon/streams.h: hsi-run's listeners, proposals, pairings and counters.
#include "streams.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hsi/stream.h"
#include "log.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

namespace hsid {
namespace {

// Caps: what one client may hold (invariant 7: a flood hurts only its sender).
constexpr size_t kMaxListenersPerClient = 256;
constexpr size_t kMaxStreamsPerClient = 4096;

bool Member(const std::vector<uint32_t>& v, uint32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

std::optional<SockAddr> FromSockaddr(const sockaddr_storage& ss) {
  SockAddr a;
  if (ss.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    a.family = AF_INET;
    a.port = ntohs(in.sin_port);
    std::memcpy(a.addr.data(), &in.sin_addr, 4);
    return a;
  }
  if (ss.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
    a.port = ntohs(in6.sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      a.family = AF_INET;
      std::memcpy(a.addr.data(), in6.sin6_addr.s6_addr + 12, 4);
    } else {
      a.family = AF_INET6;
      std::memcpy(a.addr.data(), in6.sin6_addr.s6_addr, 16);
    }
    return a;
  }
  return std::nullopt;
}

SockAddr FromWire(const wire::WireSockAddr& w) {
  sockaddr_storage ss{};
  if (w.family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(ss);
    in.sin_family = AF_INET;
    in.sin_port = htons(static_cast<uint16_t>(w.port));
    std::memcpy(&in.sin_addr, w.addr, 4);
  } else {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(ss);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(static_cast<uint16_t>(w.port));
    std::memcpy(&in6.sin6_addr, w.addr, 16);
  }
  return *FromSockaddr(ss);
}

// What hsid reads of a TCP socket handed in by a client.
struct SockInfo {
  uint64_t netns = 0, cookie = 0;
  bool listening = false;
  std::optional<SockAddr> local, peer;  // peer: nullopt when not connected
};

absl::StatusOr<SockInfo> Inspect(int fd) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) < 0 || v != IPPROTO_TCP) {
    return absl::InvalidArgumentError("the descriptor handed in is not a TCP socket");
  }
  SockInfo info;
  len = sizeof(v);
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0) info.listening = v != 0;
  len = sizeof(info.netns);
  if (::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &info.netns, &len) < 0) {
    return absl::InternalError(absl::StrCat("SO_NETNS_COOKIE: ", std::strerror(errno)));
  }
  len = sizeof(info.cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &info.cookie, &len) < 0) {
    return absl::InternalError(absl::StrCat("SO_COOKIE: ", std::strerror(errno)));
  }
  sockaddr_storage ss{};
  socklen_t sl = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) info.local = FromSockaddr(ss);
  sl = sizeof(ss);
  ss = {};
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) info.peer = FromSockaddr(ss);
  if (!info.local) return absl::InvalidArgumentError("the socket handed in has no IPv4/IPv6 address");
  return info;
}

// The segments an end handed in, checked before anyone else gets them.
absl::Status CheckParts(int ring, int page, const hsi::RingGeometry& want) {
  absl::StatusOr<hsi::RingGeometry> g = hsi::InspectSealedRingSegment(ring);
  if (!g.ok()) return g.status();
  if (!hsi::IsSealedAgainstWrites(ring)) return absl::InvalidArgumentError("ring segment not sealed against writers");
  if (g->capacity != want.capacity || g->mtu != want.mtu) {
    return absl::FailedPreconditionError(absl::StrCat("ring geometry ", g->capacity, "/", g->mtu, " differs from the stream's ",
                                                      want.capacity, "/", want.mtu));
  }
  return hsi::CheckStreamPage(page);
}

absl::StatusOr<hsi::UniqueFd> Dup(const hsi::UniqueFd& fd) {
  const int d = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
  if (d < 0) return absl::ResourceExhaustedError(absl::StrCat("dup: ", std::strerror(errno)));
  return hsi::UniqueFd(d);
}

}  // namespace

bool SockAddr::wildcard() const {
  return std::all_of(addr.begin(), addr.end(), [](uint8_t b) { return b == 0; });
}

std::string SockAddr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  ::inet_ntop(family == AF_INET ? AF_INET : AF_INET6, addr.data(), buf, sizeof(buf));
  return family == AF_INET ? absl::StrCat(buf, ":", port) : absl::StrCat("[", buf, "]:", port);
}

wire::WireSockAddr SockAddr::ToWire() const {
  wire::WireSockAddr w{};
  w.family = family;
  w.port = port;
  std::memcpy(w.addr, addr.data(), family == AF_INET ? 4 : 16);
  return w;
}

absl::Status Streams::Allowed(uint32_t a, uint32_t b) const {
  for (uint32_t u : {a, b}) {
    if (!Member(config_.run_uids, u)) {
      return absl::PermissionDeniedError(absl::StrCat("uid ", u, " is not in [hsid] run_uids of ", config_.source));
    }
  }
  if (a != b && !(Member(config_.run_cross_uids, a) && Member(config_.run_cross_uids, b))) {
    return absl::PermissionDeniedError(
        absl::StrCat("uids ", a, " and ", b, " differ and are not both in [hsid] run_cross_uids of ", config_.source));
  }
  return absl::OkStatus();
}

void Streams::OnListen(Client& c, Message& m) {
  const auto req = m.As<wire::RunListenRequest>();
  auto refuse = [&](const absl::Status& s) { clients_.ReplyError<wire::RunListenReply>(c, m.request_id, s); };
  absl::StatusOr<SockInfo> info = Inspect(m.fds[0].get());
  m.fds.clear();  // hold no socket: it would keep the port bound
  if (!info.ok()) return refuse(info.status());
  if (!info->listening) return refuse(absl::InvalidArgumentError("the socket handed in is not listening"));
  const absl::Status allowed = Allowed(c.uid, c.uid);
  if (!allowed.ok()) {
    // The library asks again at each accept, with a new id: keep one record
    // per address, so that its clients are counted as `policy`.
    std::erase_if(listeners_, [&](const auto& kv) {
      return kv.first.first == c.id && kv.second.refused && kv.second.netns == info->netns && kv.second.local == *info->local;
    });
  }
  size_t mine = 0;
  for (const auto& [key, l] : listeners_) mine += key.first == c.id;
  if (mine >= kMaxListenersPerClient && !listeners_.contains({c.id, req.listener_id})) {
    return refuse(absl::ResourceExhaustedError(absl::StrCat("more than ", kMaxListenersPerClient, " listeners")));
  }
  listeners_[{c.id, req.listener_id}] = Listener{c.id, c.uid, info->netns, *info->local, !allowed.ok()};
  if (!allowed.ok()) return refuse(allowed);
  auto rep = wire::Zeroed<wire::RunListenReply>();
  rep.listener_id = req.listener_id;
  clients_.Reply(c, m.request_id, rep);
}

void Streams::OnUnlisten(Client& c, const Message& m) {
  listeners_.erase({c.id, m.As<wire::RunUnlistenNotice>().listener_id});
}

void Streams::OnPropose(Client& c, Message& m) {
  const auto req = m.As<wire::RunProposeRequest>();
  auto refuse = [&](uint32_t reason, const absl::Status& s) {
    Count(reason);
    Refuse<wire::RunProposeReply>(c, m, reason, s);
  };
  const hsi::RingGeometry geometry{req.capacity, req.mtu};
  absl::StatusOr<SockInfo> info = Inspect(m.fds[0].get());
  if (!info.ok()) return refuse(wire::kRunFallbackBadSocket, info.status());
  if (info->listening || info->peer) {
    return refuse(wire::kRunFallbackBadSocket, absl::InvalidArgumentError("propose: the socket is already connected or listening"));
  }
  if (info->local->port == 0) return refuse(wire::kRunFallbackBadSocket, absl::InvalidArgumentError("propose: the socket is not bound"));
  if (absl::Status s = CheckParts(m.fds[1].get(), m.fds[2].get(), geometry); !s.ok()) {
    return refuse(wire::kRunFallbackBadSocket, s);
  }
  const SockAddr dest = FromWire(req.destination);
  const Listener* found = nullptr;  // a registered listener first, else one the policy refused
  for (const auto& [key, l] : listeners_) {
    if (l.netns == info->netns && l.local.port == dest.port && (l.local == dest || l.local.wildcard()) &&
        (l.local.family == dest.family || l.local.family == AF_INET6) && clients_.Find(l.client) != nullptr &&
        (found == nullptr || found->refused)) {
      found = &l;
    }
  }
  if (found == nullptr) {
    return refuse(wire::kRunFallbackNoListener,
                  absl::NotFoundError(absl::StrCat("no hsi-run listener at ", dest.ToString(), " in this namespace")));
  }
  if (found->refused) {
    return refuse(wire::kRunFallbackPolicy, absl::PermissionDeniedError(absl::StrCat(
                                                "the listener at ", dest.ToString(), " was refused at listen(): ",
                                                std::string(Allowed(found->uid, found->uid).message()))));
  }
  if (absl::Status s = Allowed(c.uid, found->uid); !s.ok()) return refuse(wire::kRunFallbackPolicy, s);
  const ProposalKey key{info->netns, info->local->port, dest};
  if (proposals_.contains(key)) {
    return refuse(wire::kRunFallbackDuplicate, absl::AlreadyExistsError("a proposal for this port and destination exists"));
  }
  size_t mine = 0;
  for (const auto& [id, s] : streams_) mine += s.c_client == c.id;
  if (mine >= kMaxStreamsPerClient) {
    return refuse(wire::kRunFallbackInternal, absl::ResourceExhaustedError(absl::StrCat("more than ", kMaxStreamsPerClient, " streams")));
  }
  Stream s;
  s.id = next_id_++;
  s.netns = info->netns;
  s.cookie = info->cookie;
  s.connector = *info->local;
  s.destination = dest;
  s.c_client = c.id;
  s.c_pid = c.pid;
  s.c_uid = c.uid;
  s.geometry = geometry;
  s.c_ring = std::move(m.fds[1]);
  s.c_page = std::move(m.fds[2]);
  s.created = absl::Now();
  proposals_[key] = s.id;
  auto rep = wire::Zeroed<wire::RunProposeReply>();
  rep.stream_id = s.id;
  streams_.emplace(s.id, std::move(s));
  clients_.Reply(c, m.request_id, rep);
}

void Streams::OnClaim(Client& c, Message& m) {
  auto refuse = [&](uint32_t reason, const absl::Status& s) {
    Count(reason);
    Refuse<wire::RunClaimReply>(c, m, reason, s);
  };
  absl::StatusOr<SockInfo> info = Inspect(m.fds[0].get());
  if (!info.ok()) return refuse(wire::kRunFallbackBadSocket, info.status());
  if (info->listening || !info->peer) {
    return refuse(wire::kRunFallbackBadSocket, absl::InvalidArgumentError("claim: the socket is not a connected one"));
  }
  auto it = proposals_.find(ProposalKey{info->netns, info->peer->port, *info->local});
  Stream* s = it == proposals_.end() ? nullptr : &streams_.at(it->second);
  if (s != nullptr && !(s->connector.wildcard() || s->connector == *info->peer)) s = nullptr;
  if (s == nullptr || s->state != wire::kStreamProposed || s->refused != 0) {
    return refuse(wire::kRunFallbackPlainPeer,
                  absl::NotFoundError(absl::StrCat("no hsi-run proposal from ", info->peer->ToString())));
  }
  proposals_.erase(it);  // one claim per proposal
  if (absl::Status st = Allowed(s->c_uid, c.uid); !st.ok()) {
    s->refused = wire::kRunFallbackPolicy;
    AnswerAwait(*s);
    return refuse(wire::kRunFallbackPolicy, st);
  }
  if (absl::Status st = CheckParts(m.fds[1].get(), m.fds[2].get(), s->geometry); !st.ok()) {
    s->refused = st.code() == absl::StatusCode::kFailedPrecondition ? wire::kRunFallbackGeometry : wire::kRunFallbackBadSocket;
    AnswerAwait(*s);
    return refuse(s->refused, st);
  }
  absl::StatusOr<hsi::UniqueFd> ring = Dup(s->c_ring), page = Dup(s->c_page);
  if (!ring.ok() || !page.ok()) {
    s->refused = wire::kRunFallbackInternal;
    AnswerAwait(*s);
    return refuse(wire::kRunFallbackInternal, ring.ok() ? page.status() : ring.status());
  }
  s->a_ring = std::move(m.fds[1]);
  s->a_page = std::move(m.fds[2]);
  s->a_client = c.id;
  s->a_pid = c.pid;
  s->a_uid = c.uid;
  s->connector_seen = *info->peer;
  s->a_cookie = info->cookie;
  s->state = wire::kStreamPaired;
  auto rep = wire::Zeroed<wire::RunClaimReply>();
  rep.stream_id = s->id;
  std::vector<hsi::UniqueFd> fds;
  fds.push_back(std::move(*ring));
  fds.push_back(std::move(*page));
  clients_.Send(c, wire::Encode(m.request_id, rep, std::move(fds)));
  AnswerAwait(*s);
}

void Streams::OnAwait(Client& c, Message& m) {
  const auto req = m.As<wire::RunAwaitRequest>();
  auto refuse = [&](uint32_t reason, const absl::Status& st) { Refuse<wire::RunAwaitReply>(c, m, reason, st); };
  auto it = streams_.find(req.stream_id);
  absl::StatusOr<SockInfo> info = Inspect(m.fds[0].get());
  // The same socket that proposed, now connected to the destination: only
  // its holder can hand it in.
  if (it == streams_.end() || !info.ok() || info->cookie != it->second.cookie || !info->peer ||
      !(*info->peer == it->second.destination) || it->second.await_client != 0) {
    return refuse(wire::kRunFallbackBadSocket,
                  absl::NotFoundError(absl::StrCat("await: stream ", req.stream_id, " is not this socket's")));
  }
  Stream& s = it->second;
  if (s.refused == 0 && s.state == wire::kStreamProposed && (req.flags & wire::kRunAwaitPoll) != 0) {
    return refuse(wire::kRunFallbackTimeout, absl::UnavailableError(absl::StrCat("stream ", s.id, ": not claimed yet")));
  }
  if (s.refused == 0 && s.state == wire::kStreamProposed && req.wait_ms > 0) {
    s.await_client = c.id;
    s.await_request = m.request_id;
    s.await_deadline = absl::Now() + absl::Milliseconds(req.wait_ms);
    ++awaiting_;
    return;
  }
  s.await_client = c.id;
  s.await_request = m.request_id;
  ++awaiting_;
  if (s.refused == 0 && s.state == wire::kStreamProposed) s.refused = wire::kRunFallbackTimeout;
  AnswerAwait(s);
}

template <typename Reply>
Streams::Stream* Streams::Holder(Client& c, const Message& m, uint64_t id, uint32_t side) {
  auto it = streams_.find(id);
  absl::StatusOr<SockInfo> info = Inspect(m.fds[0].get());
  if (it == streams_.end() || !info.ok() || it->second.state == wire::kStreamProposed ||
      info->cookie != (side == 0 ? it->second.cookie : it->second.a_cookie) ||
      c.uid != (side == 0 ? it->second.c_uid : it->second.a_uid)) {
    clients_.ReplyError<Reply>(c, m.request_id,
                               absl::NotFoundError(absl::StrCat("stream ", id, " side ", side, " is not this socket's")));
    return nullptr;
  }
  return &it->second;
}

// Hands `c` `ring` and `page` (duplicated) with reply `rep` to request `m`.
template <typename Reply>
void SendParts(Clients& clients, Client& c, const Message& m, Reply rep, const hsi::UniqueFd& ring,
               const hsi::UniqueFd& page) {
  absl::StatusOr<hsi::UniqueFd> r = Dup(ring), p = Dup(page);
  if (!r.ok() || !p.ok()) return clients.ReplyError<Reply>(c, m.request_id, r.ok() ? p.status() : r.status());
  std::vector<hsi::UniqueFd> fds;
  fds.push_back(std::move(*r));
  fds.push_back(std::move(*p));
  clients.Send(c, wire::Encode(m.request_id, rep, std::move(fds)));
}

void Streams::OnReattach(Client& c, Message& m) {
  const auto req = m.As<wire::RunReattachRequest>();
  auto refuse = [&](const absl::Status& st) { clients_.ReplyError<wire::RunReattachReply>(c, m.request_id, st); };
  Stream* found = Holder<wire::RunReattachReply>(c, m, req.stream_id, req.side);
  if (found == nullptr) return;
  Stream& s = *found;
  const bool conn = req.side == 0;
  // The peer must read this side's current ring (its new image's positions
  // continue from it) and this side must have used the peer's current one:
  // otherwise a ring in between would be skipped (both ends exec'ing at
  // once: the second to re-attach is refused and its connection reset).
  if ((conn ? s.a_has : s.c_has) != (conn ? s.c_gen : s.a_gen) || req.peer_gen != (conn ? s.a_gen : s.c_gen)) {
    return refuse(absl::FailedPreconditionError(absl::StrCat(
        "stream ", s.id, ": the other end has not caught up with this end's last exec, or the reverse")));
  }
  if (absl::Status st = CheckParts(m.fds[1].get(), m.fds[2].get(), s.geometry); !st.ok()) return refuse(st);
  (conn ? s.c_ring : s.a_ring) = std::move(m.fds[1]);
  (conn ? s.c_page : s.a_page) = std::move(m.fds[2]);
  (conn ? s.c_client : s.a_client) = c.id;
  (conn ? s.c_pid : s.a_pid) = c.pid;
  (conn ? s.c_has : s.a_has) = conn ? s.a_gen : s.c_gen;
  const uint64_t gen = ++(conn ? s.c_gen : s.a_gen);
  auto rep = wire::Zeroed<wire::RunReattachReply>();
  rep.gen = gen;
  SendParts(clients_, c, m, rep, conn ? s.a_ring : s.c_ring, conn ? s.a_page : s.c_page);
}

void Streams::OnFetch(Client& c, Message& m) {
  const auto req = m.As<wire::RunFetchRequest>();
  Stream* s = Holder<wire::RunFetchReply>(c, m, req.stream_id, req.side);
  if (s == nullptr) return;
  const bool conn = req.side == 0;
  const uint64_t peer_gen = conn ? s->a_gen : s->c_gen;
  if (peer_gen <= req.have_gen) {
    return clients_.ReplyError<wire::RunFetchReply>(
        c, m.request_id, absl::UnavailableError(absl::StrCat("stream ", s->id, ": the peer's new image has not re-attached yet")));
  }
  (conn ? s->c_has : s->a_has) = peer_gen;
  auto rep = wire::Zeroed<wire::RunFetchReply>();
  rep.gen = peer_gen;
  SendParts(clients_, c, m, rep, conn ? s->a_ring : s->c_ring, conn ? s->a_page : s->c_page);
}

void Streams::AnswerAwait(Stream& s) {
  if (s.await_client == 0) return;
  Client* c = clients_.Find(s.await_client);
  const uint32_t req = s.await_request;
  s.await_client = 0;
  s.await_deadline = absl::InfiniteFuture();
  --awaiting_;
  if (c == nullptr) return;
  auto rep = wire::Zeroed<wire::RunAwaitReply>();
  if (s.refused != 0 || s.state != wire::kStreamPaired) {
    rep.reason = s.refused != 0 ? s.refused : wire::kRunFallbackTimeout;
    rep.status = wire::ToWire(absl::DeadlineExceededError(
        absl::StrCat("stream ", s.id, ": not paired (", wire::FallbackReasonName(rep.reason), ")")));
    if (s.refused == 0) Count(rep.reason);
    return clients_.Reply(*c, req, rep);
  }
  absl::StatusOr<hsi::UniqueFd> ring = Dup(s.a_ring), page = Dup(s.a_page);
  if (!ring.ok() || !page.ok()) {
    // The acceptor is paired already; the connector cannot be: the
    // connection cannot stay consistent, so say it plainly.
    Log(absl::StrCat("hsi-run stream ", s.id, ": out of fds answering the connector"));
    rep.reason = wire::kRunFallbackInternal;
    rep.status = wire::ToWire(absl::ResourceExhaustedError("hsid is out of fds"));
    return clients_.Reply(*c, req, rep);
  }
  std::vector<hsi::UniqueFd> fds;
  fds.push_back(std::move(*ring));
  fds.push_back(std::move(*page));
  clients_.Send(*c, wire::Encode(req, rep, std::move(fds)));
}

void Streams::Expire(absl::Time now) {
  if (awaiting_ == 0) return;
  for (auto& [id, s] : streams_) {
    if (s.await_client != 0 && s.await_deadline <= now) {
      // Abandoned: a late claim gets kNotFound, so both ends stay on TCP.
      if (s.state == wire::kStreamProposed && s.refused == 0) s.refused = wire::kRunFallbackTimeout;
      AnswerAwait(s);
    }
  }
}

void Streams::OnClose(Client& c, const Message& m) {
  const auto n = m.As<wire::RunCloseNotice>();
  auto it = streams_.find(n.stream_id);
  if (it == streams_.end()) return;
  Stream& s = it->second;
  if (c.uid != (n.side == 0 ? s.c_uid : s.a_uid)) return;  // not that end's uid: ignored
  (n.side == 0 ? s.c_closed : s.a_closed) = true;
  if ((s.c_closed && s.a_closed) || (s.c_closed && s.state != wire::kStreamPaired)) Erase(s.id);
  else s.state = s.state == wire::kStreamPaired ? wire::kStreamHalfClosed : s.state;
}

void Streams::OnFallback(Client&, const Message& m) { Count(m.As<wire::RunFallbackNotice>().reason); }

void Streams::Erase(uint64_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  for (auto p = proposals_.begin(); p != proposals_.end();) {
    p = p->second == id ? proposals_.erase(p) : std::next(p);
  }
  if (it->second.await_client != 0) --awaiting_;
  streams_.erase(it);
}

void Streams::OnClientGone(const Client& c) {
  std::erase_if(listeners_, [&](const auto& kv) { return kv.first.first == c.id; });
  std::vector<uint64_t> gone;
  for (auto& [id, s] : streams_) {
    if (s.await_client == c.id) {
      s.await_client = 0;
      --awaiting_;
    }
    const bool c_gone = s.c_client == c.id || clients_.Find(s.c_client) == nullptr;
    const bool a_gone = s.a_client == c.id || s.a_client == 0 || clients_.Find(s.a_client) == nullptr;
    if (c_gone && (a_gone || s.state == wire::kStreamProposed)) gone.push_back(id);
  }
  for (uint64_t id : gone) Erase(id);
}

void Streams::OnList(Client& c, const Message& m) {
  const auto req = m.As<wire::ListRequest>();
  if (req.what == wire::kListFallbacks) {
    auto rep = wire::Zeroed<wire::ListFallbacksReply>();
    std::copy(fallbacks_.begin(), fallbacks_.end(), rep.counts);
    return clients_.Reply(c, m.request_id, rep);
  }
  auto rep = wire::Zeroed<wire::ListStreamsReply>();
  const absl::Time now = absl::Now();
  for (auto it = streams_.lower_bound(req.cursor); it != streams_.end(); ++it) {
    const Stream& s = it->second;
    if (!c.admin && c.uid != s.c_uid && c.uid != s.a_uid) continue;  // only what the asker may know
    if (rep.count == wire::kListPage) {
      rep.next_cursor = static_cast<uint32_t>(it->first);
      break;
    }
    wire::WireStream& e = rep.entries[rep.count++];
    e.stream_id = s.id;
    e.state = s.state;
    SockAddr seen = s.connector;
    if (s.state != wire::kStreamProposed) seen = s.connector_seen;
    e.connector = seen.ToWire();
    e.acceptor = s.destination.ToWire();
    e.connector_pid = s.c_pid;
    e.acceptor_pid = s.a_pid;
    e.connector_uid = s.c_uid;
    e.acceptor_uid = s.a_uid;
    if (auto k = hsi::ReadRingSegmentCounters(s.c_ring.get())) e.bytes_c_to_a = k->tx.bytes;
    if (s.a_ring.valid()) {
      if (auto k = hsi::ReadRingSegmentCounters(s.a_ring.get())) e.bytes_a_to_c = k->tx.bytes;
    }
    e.age_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(now - s.created));
  }
  clients_.Reply(c, m.request_id, rep);
}

}  // namespace hsid
