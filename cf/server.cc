#include "server.h"

#include <poll.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace hsi::cf {

using proto::Header;
using proto::Reader;
using proto::Writer;

namespace {

std::vector<uint8_t> Bytes(const Writer& w) { return {w.frame().begin(), w.frame().end()}; }
Header ReplyHeader(const Header& req) {
  return {static_cast<uint8_t>(req.type | proto::kReplyBit), req.request_id, req.conn, 0};
}

absl::StatusOr<LockMode> ModeOf(uint8_t m) {
  if (m > 1)
    return absl::InvalidArgumentError(
        absl::StrCat("lock mode ", m, " is not 0 (shared) or 1 (exclusive)"));
  return static_cast<LockMode>(m);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(CfConfig config, ServerOptions options) {
  std::unique_ptr<Server> s(new Server(std::move(config), options));
  SessionOptions so;
  so.socket_path = options.socket_path;
  so.lpar = s->config_.lpar;
  absl::StatusOr<Session> session = Session::Connect(std::move(so));
  if (!session.ok()) return session.status();
  s->session_ = std::move(*session);
  absl::StatusOr<Nic> nic = s->session_.AttachNic(s->config_.chpid, s->config_.address);
  if (!nic.ok()) return nic.status();
  s->nic_ = std::move(*nic);
  for (const StructureConfig& sc : s->config_.structures) {
    Structure st{sc, nullptr, nullptr, nullptr};
    s->Reset(st);
    s->structures_.emplace(sc.name, std::move(st));
  }
  if (s->config_.duplex_address) {
    s->duplex_ = std::make_unique<Duplex>(*s, options.duplex_fault_mirror_after_reply,
                                         options.duplex_fault_keep_vectors);
    s->duplex_->Establish(options.duplex_wait);
  }
  return s;
}

void Server::Reset(Structure& st) {
  const StructureConfig& sc = st.config;
  st.lock.reset();
  st.list.reset();
  st.cache.reset();
  st.requests = st.refused = 0;
  if (sc.type == "cache") {
    st.cache = std::make_unique<CacheStructure>(sc.name, sc.entries, sc.max_data, sc.vector);
    st.cache->set_fault(options_.fault);
  } else if (sc.type == "list") {
    st.list = std::make_unique<ListStructure>(sc.name, sc.lists, sc.entries, sc.max_data);
  } else {
    st.lock = std::make_unique<LockStructure>(sc.name, sc.entries);
  }
}

void Server::Log(const std::string& line) const {
  std::fprintf(stderr, "hsi-cf %s: %s\n", config_.lpar.c_str(), line.c_str());
}

absl::Status Server::Run() {
  std::vector<uint8_t> buf(nic_.info().mtu);
  int idle_errors = 0;  // kUnavailable in a row that failed no connection
  Log(absl::StrCat("serving ", structures_.size(), " structure(s) on CHPID ",
                   Chpid(config_.chpid).ToString(), " at ", nic_.address().ToString()));
  while (!stop_.load(std::memory_order_relaxed)) {
    const absl::Time now = absl::Now();
    MaybeDeclare(now);
    if (duplex_) {
      duplex_->Expire(now);
      duplex_->Retry(now);
    }
    // The deadline only bounds how late Stop() is seen (and a declaration due).
    Wait w{options_.wait, now + absl::Milliseconds(200)};
    absl::StatusOr<Received> got = nic_.Receive(absl::MakeSpan(buf), w);
    if (got.ok()) {
      idle_errors = 0;
      Serve(got->source, absl::MakeConstSpan(buf.data(), got->length));
      continue;
    }
    switch (got.status().code()) {
      case absl::StatusCode::kDeadlineExceeded:
        idle_errors = 0;
        break;
      case absl::StatusCode::kUnavailable:
      case absl::StatusCode::kDataLoss: {
        // A link went down (a connector died or detached) or broke its
        // ring: whoever it was, their connections fail now.
        const size_t before = conns_.size();
        if (duplex_) duplex_->CheckPartner();
        ReapDeadPeers();
        if (before != conns_.size()) {
          idle_errors = 0;
          break;
        }
        if (options_.verbose) Log(std::string(got.status().message()));
        // Each dead link is reported once; the same error again and again
        // is our NIC set down by an admin or hsid away: do not spin on it.
        if (++idle_errors >= 3) {
          struct pollfd p {
            nic_.fd(), POLLIN, 0
          };
          ::poll(&p, 1, 100);
        }
        break;
      }
      default:
        Log(absl::StrCat("receive: ", got.status().ToString()));
        struct pollfd p {
          nic_.fd(), POLLIN, 0
        };
        ::poll(&p, 1, 100);
    }
  }
  return absl::OkStatus();
}

void Server::ReapDeadPeers() {
  std::vector<Note> notes;
  for (auto it = links_.begin(); it != links_.end();) {
    absl::Status st = it->second.status();
    if (st.ok()) {
      ++it;
      continue;
    }
    const Address peer = it->first;
    for (auto c = conns_.begin(); c != conns_.end();) {
      auto next = std::next(c);
      if (c->second.peer == peer) {
        if (duplex_) duplex_->MirrorFail(c->first);
        Structure& s = structures_.at(c->second.structure);
        if (s.cache) {
          DetachCache(c->second, absl::StrCat("failed: ", st.message()));
        } else if (s.list) {
          s.list->Forget(c->first);
          Log(absl::StrCat("connector ", c->second.connector, " (LPAR ", c->second.lpar, ", ",
                           peer.ToString(), ") failed: ", st.message(), "; its monitors of ",
                           s.config.name, " end"));
        } else {
          const size_t before = s.lock->retained_count();
          s.lock->Fail(c->first, &notes);
          Log(absl::StrCat("connector ", c->second.connector, " (LPAR ", c->second.lpar, ", ",
                           peer.ToString(), ") failed: ", st.message(), "; ",
                           s.lock->retained_count() - before, " lock(s) retained in ",
                           s.config.name));
        }
        conns_.erase(c);
      }
      c = next;
    }
    it = links_.erase(it);
  }
  SendNotes(notes);
}

void Server::Serve(Address from, absl::Span<const uint8_t> frame) {
  if (!duplex_ || !duplex_->Serve(from, frame)) Handle(from, frame);
}

void Server::Reply(Address to, absl::Span<const uint8_t> frame) {
  if (reply_mode_ == ReplyMode::kDrop) return;
  if (reply_mode_ == ReplyMode::kHold) {
    held_.push_back(HeldFrame{to, std::vector<uint8_t>(frame.begin(), frame.end()), std::nullopt});
    return;
  }
  auto it = links_.find(to);
  absl::Status s;
  if (it != links_.end()) {
    s = it->second.Send(frame, Wait::Never());
  } else {
    // A peer with no connection (a refused Connect, a hostile frame): its
    // link exists (its frame came on it), so this never waits either.
    s = nic_.SendTo(to, frame, Wait::Never());
  }
  if (!s.ok()) {
    // A connector that does not read its replies fills its ring; the CF
    // does not wait for it (the others are served on). Counted and said.
    // Logged at the 1st, 2nd, 4th, 8th ... drop: a flood does not flood the log.
    ++replies_dropped_;
    if ((replies_dropped_ & (replies_dropped_ - 1)) == 0) {
      Log(absl::StrCat("reply to ", to.ToString(), " not sent (", replies_dropped_,
                       " dropped so far): ", s.message()));
    }
  }
}

void Server::SendNotes(const std::vector<Note>& notes) {
  for (const Note& n : notes) {
    auto c = conns_.find(n.conn);
    if (c == conns_.end()) {
      if (duplex_) duplex_->HoldNote(n);  // a connector away after a takeover: for its return
      continue;
    }
    Header h{n.kind == Note::Kind::kGranted ? proto::kGrantNote : proto::kCancelNote, n.request_id,
             n.conn, 0};
    Writer w(h);
    w.Str(n.resource);
    if (n.kind == Note::Kind::kGranted) {
      w.U8(static_cast<uint8_t>(n.mode));
    } else {
      w.Str(n.failed);
    }
    Reply(c->second.peer, w.frame());
  }
}

void Server::Handle(Address from, absl::Span<const uint8_t> frame) {
  absl::StatusOr<Header> h = proto::ParseHeader(frame);
  if (!h.ok()) {
    // No header to answer: we cannot name the request. Say so to the peer
    // with request id 0, and serve on.
    Log(absl::StrCat("from ", from.ToString(), ": ", h.status().message()));
    Reply(from, proto::ErrorReply(Header{0, 0, 0, 0}, h.status()));
    return;
  }
  // A frame from an address whose old link is down comes from a new
  // process there (a restart may get the same address): fail the old one's
  // connections first, so that its tokens do not pass to the newcomer.
  if (auto l = links_.find(from); l != links_.end() && !l->second.status().ok()) ReapDeadPeers();
  // XiFault::kLate (tests only): the flips held back from the last write
  // happen now, after its reply went out.
  if (options_.fault == XiFault::kLate) {
    for (auto& [name, st] : structures_) {
      if (st.cache) st.cache->FlushLate();
    }
  }
  Reader r(frame);
  absl::StatusOr<std::vector<uint8_t>> out = Dispatch(from, *h, r);
  if (!out.ok()) {
    if (options_.verbose || out.status().code() == absl::StatusCode::kInvalidArgument) {
      Log(absl::StrCat("from ", from.ToString(), ": ", out.status().message()));
    }
    pending_transitions_.clear();
    if (auto c = conns_.find(h->conn); c != conns_.end() && h->type != proto::kConnect) {
      ++structures_.at(c->second.structure).refused;
    }
    Reply(from, proto::ErrorReply(*h, out.status()));
    return;
  }
  if (!out->empty()) Reply(from, *out);  // else Dispatch replied itself
  if (!pending_transitions_.empty()) {
    std::vector<Transition> t;
    t.swap(pending_transitions_);
    SendTransitions(t);
  }
}

absl::StatusOr<std::string> Server::LparOf(Address a) {
  // hsid answers who owns a NIC on our own CHPID (Nic::PeerLpar: no admin
  // rights needed); the Session reconnects by itself after an hsid restart.
  absl::StatusOr<std::string> lpar = nic_.PeerLpar(a);
  if (lpar.ok()) return lpar;
  if (lpar.status().code() == absl::StatusCode::kNotFound) {
    return absl::PermissionDeniedError(absl::StrCat("CF ", config_.lpar, ": ", lpar.status().message()));
  }
  return absl::UnavailableError(
      absl::StrCat("CF ", config_.lpar, ": cannot ask hsid who owns ", a.ToString(), ": ", lpar.status().message()));
}

absl::StatusOr<std::vector<uint8_t>> Server::OnConnect(Address from, const Header& h, Reader& r) {
  const std::string structure = r.Str("structure", proto::kMaxName);
  const std::string connector = r.Str("connector", proto::kMaxName);
  if (absl::Status s = r.Done(); !s.ok()) return s;
  if (absl::Status s = proto::CheckName("structure name", structure, proto::kMaxName); !s.ok())
    return s;
  if (absl::Status s = proto::CheckName("connector name", connector, proto::kMaxName); !s.ok())
    return s;
  auto it = structures_.find(structure);
  if (it == structures_.end()) {
    return absl::NotFoundError(absl::StrCat("CF ", config_.lpar, ": no structure ", structure,
                                            " (policy ", config_.source, ")"));
  }
  absl::StatusOr<std::string> lpar = LparOf(from);
  if (!lpar.ok()) return lpar.status();
  if (!it->second.config.Allows(*lpar)) {
    return absl::PermissionDeniedError(absl::StrCat("CF ", config_.lpar, ": LPAR ", *lpar,
                                                    " may not connect to ", "structure ", structure,
                                                    " (its lpars in ", config_.source, ")"));
  }
  if (!links_.contains(from)) {
    absl::StatusOr<hsi::Link> l = nic_.Link(from, Wait::Adaptive(absl::Now() + absl::Seconds(1)));
    if (!l.ok()) return l.status();
    links_.emplace(from, std::move(*l));
  }
  uint32_t token = duplex_ ? duplex_->ReclaimToken(structure, connector) : 0;
  // A list connection back after a duplex failover monitors what it did
  // (cf/duplex.h): told, after the reply, of each monitored list with entries.
  if (token != 0 && it->second.list) pending_transitions_ = it->second.list->Monitored(token);
  if (token == 0) token = next_token_++;
  uint32_t returned = 0;
  if (it->second.cache) {
    if (absl::Status s = AttachCache(*it->second.cache, from, token, connector); !s.ok()) return s;
  } else if (it->second.lock) {
    // (A connection suspended by a duplex takeover is still attached.)
    if (!(duplex_ && duplex_->Suspended(token))) {
      if (absl::Status s = it->second.lock->Attach(token, connector, &returned); !s.ok()) return s;
    }
  } else {
    for (const auto& [t, c] : conns_) {
      if (c.structure == structure && c.connector == connector) {
        return absl::AlreadyExistsError(absl::StrCat("list structure ", structure, ": connector ",
                                                     connector, " is already connected"));
      }
    }
  }
  conns_[token] = Conn{token, structure, connector, *lpar, from};
  Log(absl::StrCat(
      "connector ", connector, " (LPAR ", *lpar, ", ", from.ToString(), ") connected to ",
      structure,
      returned > 0 ? absl::StrCat("; ", returned, " retained lock(s) returned to it") : ""));
  Header rh = ReplyHeader(h);
  rh.conn = token;
  Writer w(rh);
  w.U8(it->second.cache  ? proto::kCacheStructure
       : it->second.lock ? proto::kLockStructure
                         : proto::kListStructure)
      .U32(it->second.config.entries)
      .U32(returned);
  // A cache connection learns its vector's size (bits; the granted memfd
  // is VectorBytes of it) and the entries' max_data (0: directory-only).
  // Then the secondary CF that granted the vector's second half (0: none;
  // cf/duplex.cc fills it in once the secondary has the connection).
  if (it->second.cache) w.U32(it->second.config.vector).U32(it->second.config.max_data).U32(0);
  // Back after a duplex takeover: the notes held for it follow the reply.
  if (std::vector<Note> back = duplex_ ? duplex_->Returned(token) : std::vector<Note>{}; !back.empty()) {
    Reply(from, Bytes(w));
    SendNotes(back);
    return std::vector<uint8_t>{};
  }
  return Bytes(w);
}

absl::StatusOr<std::vector<uint8_t>> Server::Dispatch(Address from, const Header& h, Reader& r) {
  if (h.type == proto::kConnect) return OnConnect(from, h, r);
  if (h.type < proto::kDisconnect || h.type > proto::kLastRequest) {
    return absl::InvalidArgumentError(absl::StrCat("CF ", config_.lpar, ": message type ", h.type,
                                                   " is not a request (1..", proto::kLastRequest,
                                                   ")"));
  }
  auto c = conns_.find(h.conn);
  if (c == conns_.end() || c->second.peer != from) {
    return absl::PermissionDeniedError(absl::StrCat("CF ", config_.lpar, ": connection token ",
                                                    h.conn, " is not one of ", from.ToString(),
                                                    "'s connections"));
  }
  // A copy only for Disconnect (the connection is erased, then logged);
  // every other request uses it in place.
  const Conn conn_copy = h.type == proto::kDisconnect ? c->second : Conn{};
  const Conn& conn = h.type == proto::kDisconnect ? conn_copy : c->second;
  Structure& st = StructureOf(conn);
  ++st.requests;
  if (st.lock) return DispatchLock(from, conn, st, h, r);
  Writer w(ReplyHeader(h));
  if (st.cache) {
    if (h.type == proto::kDisconnect) {
      if (absl::Status s = r.Done(); !s.ok()) return s;
      DetachCache(conn, "disconnected");
      conns_.erase(h.conn);
    } else if (absl::Status s = DispatchCache(conn, *st.cache, h, r, w); !s.ok()) {
      return s;
    }
    return Bytes(w);
  }
  if (st.list) {
    if (h.type == proto::kDisconnect) {
      if (absl::Status s = r.Done(); !s.ok()) return s;
      st.list->Forget(h.conn);
      conns_.erase(h.conn);
      Log(absl::StrCat("connector ", conn.connector, " disconnected from ", conn.structure));
    } else if (absl::Status s = DispatchList(conn, *st.list, h, r, w); !s.ok()) {
      return s;
    }
    return Bytes(w);
  }
  return absl::InternalError(absl::StrCat("structure ", conn.structure, " has no type"));
}

// The lock requests. The reply is built in scratch_ (no allocation per
// request) and sent from here, then the notes it set free.
absl::StatusOr<std::vector<uint8_t>> Server::DispatchLock(Address from, const Conn& conn,
                                                          Structure& st, const Header& h,
                                                          Reader& r) {
  if (h.type > proto::kRecover) {
    return absl::InvalidArgumentError(absl::StrCat("CF ", config_.lpar, ": message type ", h.type,
                                                   " is a ",
                                                   proto::IsCacheRequest(h.type) ? "cache" : "list",
                                                   " request; ", conn.structure,
                                                   " is a lock structure"));
  }
  LockStructure& lock = *st.lock;
  notes_.clear();
  std::vector<Note>& notes = notes_;
  Writer w(ReplyHeader(h), std::move(scratch_));
  switch (h.type) {
    case proto::kDisconnect: {
      if (absl::Status s = r.Done(); !s.ok()) return s;
      lock.Detach(h.conn, &notes);
      conns_.erase(h.conn);
      Log(absl::StrCat("connector ", conn.connector, " disconnected from ", conn.structure));
      break;
    }
    case proto::kLock: {
      const uint8_t m = r.U8("mode");
      const absl::string_view resource = r.View("resource", proto::kMaxResource);
      const absl::string_view record = r.View("record", proto::kMaxRecord);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<LockMode> mode = ModeOf(m);
      if (!mode.ok()) return mode.status();
      if (resource.empty())
        return absl::InvalidArgumentError("lock request: the resource name is empty");
      absl::StatusOr<LockResult> res =
          lock.Obtain(h.conn, h.request_id, resource, *mode, record, &notes);
      if (!res.ok()) return res.status();
      w.U8(static_cast<uint8_t>(res->outcome)).U32(static_cast<uint32_t>(res->holders.size()));
      for (const LockHolder& ho : res->holders) {
        if (w.size() + ho.connector.size() + 8 > proto::kMaxFrame) break;  // the first ones fit
        w.Str(ho.connector).U8(static_cast<uint8_t>(ho.mode)).U8(ho.retained ? 1 : 0);
      }
      break;
    }
    case proto::kUnlock: {
      const absl::string_view resource = r.View("resource", proto::kMaxResource);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      if (absl::Status s = lock.Release(h.conn, resource, &notes); !s.ok()) return s;
      break;
    }
    case proto::kRecover: {
      const std::string failed = r.Str("failed connector", proto::kMaxName);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<std::vector<RetainedLock>> got = lock.Recover(h.conn, failed, &notes);
      if (!got.ok()) return got.status();
      Log(absl::StrCat("connector ", conn.connector, " recovered ", got->size(),
                       " retained lock(s) of ", failed, " in ", conn.structure));
      uint32_t n = 0;
      size_t bytes = w.size() + 4;
      for (const RetainedLock& l : *got) {
        bytes += 5 + l.resource.size() + l.record.size();
        if (bytes > proto::kMaxFrame) break;
        ++n;
      }
      w.U32(n);
      for (uint32_t i = 0; i < n; ++i) {
        const RetainedLock& l = (*got)[i];
        w.Str(l.resource).U8(static_cast<uint8_t>(l.mode)).Str(l.record);
      }
      break;
    }
  }
  // The reply first, then what it set free (a waiter's grant).
  Reply(from, w.frame());
  scratch_ = w.Take();
  SendNotes(notes);
  return std::vector<uint8_t>{};
}

}  // namespace hsi::cf

namespace hsi::cf {

CfStructureView Server::View(const std::string& name, const Structure& st) const {
  CfStructureView v;
  v.name = name;
  v.requests = st.requests;
  v.refused = st.refused;
  if (st.lock) {
    v.type = "lock";
    v.size = st.lock->entries();
    v.in_use = static_cast<uint32_t>(st.lock->in_use());
    v.retained = static_cast<uint32_t>(st.lock->retained_count());
    v.failed = st.lock->failed_connectors();
    v.queued = st.lock->counters().queued;
    v.granted_after_wait = st.lock->counters().granted_after_wait;
  } else if (st.list) {
    v.type = "list";
    v.size = st.list->entries();
    v.in_use = st.list->in_use();
  } else {
    v.type = "cache";
    v.size = st.cache->entries();
    v.in_use = st.cache->in_use();
  }
  // The wire checks queued <= requests: a lock request counts once even if
  // it queued and was granted later.
  v.queued = std::min(v.queued, v.requests);
  v.granted_after_wait = std::min(v.granted_after_wait, v.queued);
  if (duplex_) {
    const std::optional<std::pair<bool, bool>> d = duplex_->RoleAndPartner(name);  // (primary, partner up)
    if (d) {
      v.duplex = d->first ? "primary" : "secondary";
      v.partner_up = d->second;
    }
  }
  for (const auto& [token, c] : conns_) {
    if (c.structure == name) v.connectors.emplace_back(c.connector, c.lpar);
  }
  std::sort(v.connectors.begin(), v.connectors.end());
  v.connector_count = static_cast<uint32_t>(v.connectors.size());
  v.failed_count = static_cast<uint32_t>(v.failed.size());
  return v;
}

void Server::MaybeDeclare(absl::Time now) {
  if (now < next_declare_) return;
  next_declare_ = now + absl::Seconds(1);
  for (const auto& [name, st] : structures_) {
    CfStructureView v = View(name, st);
    auto it = declared_.find(name);
    if (it != declared_.end() && it->second == v) continue;
    if (absl::Status s = session_.DeclareCfStructure(v); !s.ok()) {
      // hsid away (it forgets what we declared): all again once it is back.
      if (options_.verbose) Log(absl::StrCat("declare ", name, " to hsid: ", s.message()));
      declared_.clear();
      return;
    }
    declared_[name] = std::move(v);
  }
}

}  // namespace hsi::cf
