// cf/duplex.cc: duplexing of structures in two CFs (cf/duplex.h). Every
// frame from the partner is validated as any peer's (proto::Reader).
#include "duplex.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server.h"

namespace hsi::cf {

using proto::Header;
using proto::Reader;
using proto::Writer;

namespace {

constexpr absl::Duration kAckTimeout = absl::Seconds(5);
// How long a secondary that took over keeps a live connector's lock
// connection (its locks and queued requests) for it to come back.
constexpr absl::Duration kReclaimGrace = absl::Seconds(10);

std::vector<uint8_t> Bytes(const Writer& w) { return {w.frame().begin(), w.frame().end()}; }

}  // namespace

Duplex::Role Duplex::RoleOf(const std::string& structure) const {
  auto it = server_.structures_.find(structure);
  if (it == server_.structures_.end()) return Role::kNone;
  if (it->second.config.duplex == "primary") return Role::kPrimary;
  if (it->second.config.duplex == "secondary") return Role::kSecondary;
  return Role::kNone;
}

bool Duplex::HoldsSecondaries() const {
  for (const StructureConfig& s : server_.config_.structures)
    if (s.duplex == "secondary") return true;
  return false;
}

void Duplex::Establish(absl::Duration wait) {
  const CfConfig& c = server_.config_;
  std::vector<std::string> mine;
  for (const StructureConfig& s : c.structures)
    if (s.duplex == "primary") mine.push_back(s.name);
  if (mine.empty() || !c.duplex_address) return;
  buf_.resize(server_.nic_.info().mtu);
  const std::string partner = absl::StrCat(c.duplex_partner, " at ", c.duplex_address->ToString());
  absl::StatusOr<hsi::Link> l =
      server_.nic_.Link(*c.duplex_address, Wait::Adaptive(absl::Now() + wait));
  if (!l.ok()) {
    server_.Log(absl::StrCat("duplexing: no CF-to-CF link to ", partner, " (", l.status().message(),
                             "): primary structure(s) served simplex"));
    return;
  }
  partner_ = std::move(*l);
  const uint64_t id = next_id_++;
  Writer w(Header{proto::kDuplexHello, id, 0, 0});
  w.U32(static_cast<uint32_t>(mine.size()));
  for (const std::string& n : mine) w.Str(n);
  absl::Status st = partner_.Send(w.frame(), Wait::Adaptive(absl::Now() + kAckTimeout));
  absl::StatusOr<size_t> n;
  if (st.ok()) n = partner_.Receive(absl::MakeSpan(buf_), Wait::Adaptive(absl::Now() + kAckTimeout));
  if (st.ok() && !n.ok()) st = n.status();
  absl::StatusOr<Header> h;
  if (st.ok()) h = proto::ParseHeader(absl::MakeConstSpan(buf_.data(), *n));
  if (st.ok() && !h.ok()) st = h.status();
  if (st.ok() && (h->type != (proto::kDuplexHello | proto::kReplyBit) || h->request_id != id))
    st = absl::DataLossError(absl::StrCat("answer of type ", h->type, " to Hello"));
  if (st.ok() && h->status != 0) {
    Reader r(absl::MakeConstSpan(buf_.data(), *n));
    const std::string msg = r.Str("message", 1024);
    if (h->status == static_cast<uint32_t>(absl::StatusCode::kFailedPrecondition) &&
        msg.find("took over") != std::string::npos) {
      moved_ = true;
      server_.Log(absl::StrCat("duplexing: ", partner, " refused: ", msg,
                               "; this CF sends connectors of its primary structure(s) there"));
      return;
    }
    st = absl::Status(static_cast<absl::StatusCode>(h->status), msg);
  }
  if (!st.ok()) {
    server_.Log(absl::StrCat("duplexing with ", partner, " not established: ", st.message(),
                             "; primary structure(s) served simplex"));
    return;
  }
  duplexed_ = true;
  server_.Log(absl::StrCat("duplexed with ", partner, ": ", mine.size(),
                           " structure(s), this CF the primary"));
}

void Duplex::Break(const std::string& why) {
  if (!duplexed_) return;
  duplexed_ = false;
  server_.Log(absl::StrCat("duplexing with ", server_.config_.duplex_partner, " ended (", why,
                           "): primary structure(s) served simplex from now on"));
  // A secondary still alive (stalled, or slow to acknowledge) must never
  // take over with the copy it has now: told so on the CF-to-CF link,
  // behind the last mirror it got. It reads them in order, also after this
  // CF's death (invariant 5: what was committed is drained first).
  if (partner_.valid() && partner_.status().ok()) {
    if (absl::Status s = partner_.Send(Writer(Header{proto::kDuplexDrop, next_id_++, 0, 0}).frame(),
                                       Wait::Never());
        !s.ok()) {
      server_.Log(absl::StrCat("duplexing: could not tell ", server_.config_.duplex_partner,
                               " that it is dropped: ", s.message()));
    }
  }
  // Cache connectors test the secondary's half of their vectors no more
  // (it is frozen now): told before any reply that follows.
  for (const auto& [token, c] : server_.conns_) {
    if (RoleOf(c.structure) != Role::kPrimary || !server_.structures_.at(c.structure).cache) continue;
    server_.Reply(c.peer, Writer(Header{proto::kDuplexEndNote, 0, token, 0}).frame());
  }
}

void Duplex::TakeOver(const std::string& why) {
  duplexed_ = false;
  took_over_ = true;
  // Every mirrored connection ends here until its connector connects
  // again under the same name (ReclaimToken). A lock connection whose
  // connector is alive (its NIC is up, hsid says) is suspended: its locks
  // and queued requests stay its own, notes for it are held, until it
  // comes back or kReclaimGrace passes (Expire); one whose connector died
  // fails: its locks become retained.
  size_t failed = 0;
  std::vector<std::pair<LockStructure*, uint32_t>> dead;
  const absl::Time until = absl::Now() + kReclaimGrace;
  for (auto c = server_.conns_.begin(); c != server_.conns_.end();) {
    auto next = std::next(c);
    if (RoleOf(c->second.structure) == Role::kSecondary) {
      Server::Structure& s = server_.structures_.at(c->second.structure);
      const bool alive = server_.nic_.PeerLpar(c->second.peer).ok();
      if (s.cache) {
        // Before anything is served here: every local copy is invalid (a
        // connector that has not noticed the primary's death yet must not
        // trust the primary's frozen half); the entries, changed data
        // included, stay. The connector gets a fresh vector when it
        // connects again; a live one keeps its castout locks meanwhile
        // (a castout in progress completes after its failover).
        if (!fault_keep_vectors_) s.cache->InvalidateAll(c->first);
        if (alive) {
          const uint32_t held = s.cache->Suspend(c->first);
          suspended_[c->first] = Suspension{.lock = nullptr,
                                            .until = until,
                                            .notes = {},
                                            .cache = s.cache.get(),
                                            .list = nullptr};
          server_.Log(absl::StrCat("connector ", c->second.connector, " of ", c->second.structure,
                                   " failed over (its primary CF died); its registrations end, ",
                                   held, " castout lock(s) kept for its return"));
        } else {
          server_.DetachCache(c->second, "failed over (its primary CF died)");
        }
      } else if (s.list) {
        // Its waiting pops end (an entry handed to a connector away would
        // be lost: its PopWait ends with the dead CF's link anyway). Its
        // monitors stay for a live connector's return (ReclaimToken); a
        // dead one's end now, and a live one's if it is not back in time.
        for (uint32_t l = 0; l < s.list->lists(); ++l)
          s.list->CancelPopWait(c->first, l).IgnoreError();
        if (alive) {
          suspended_[c->first] = Suspension{
              .lock = nullptr, .until = until, .notes = {}, .cache = nullptr, .list = s.list.get()};
        } else {
          s.list->Forget(c->first);
        }
      } else if (alive) {
        suspended_[c->first] = Suspension{s.lock.get(), until, {}, nullptr, nullptr};
      } else {
        dead.emplace_back(s.lock.get(), c->first);
      }
      reclaim_[{c->second.structure, c->second.connector}] = c->first;
      server_.conns_.erase(c);
      ++failed;
    }
    c = next;
  }
  std::vector<Note> notes;  // for suspended connections: held (SendNotes)
  for (const auto& [lock, token] : dead) lock->Fail(token, &notes);
  server_.SendNotes(notes);
  server_.Log(absl::StrCat("took over the secondary structure(s) of ",
                           server_.config_.duplex_partner, " (", why, "): ", failed,
                           " connection(s) to reclaim by their connectors (", suspended_.size(),
                           " of live connectors kept for ", absl::FormatDuration(kReclaimGrace),
                           ", ", failed - suspended_.size(), " of dead connectors failed)"));
}

void Duplex::HoldNote(const Note& n) {
  if (auto it = suspended_.find(n.conn); it != suspended_.end()) it->second.notes.push_back(n);
}

std::vector<Note> Duplex::Returned(uint32_t token) {
  auto it = suspended_.find(token);
  if (it == suspended_.end()) return {};
  std::vector<Note> out = std::move(it->second.notes);
  suspended_.erase(it);
  return out;
}

void Duplex::Expire(absl::Time now) {
  std::vector<Note> notes;
  for (auto it = suspended_.begin(); it != suspended_.end();) {
    if (it->second.until > now) {
      ++it;
      continue;
    }
    const uint32_t token = it->first;
    const Suspension sp = std::move(it->second);
    it = suspended_.erase(it);
    const std::string what =
        absl::StrCat("connection ", token, " of ",
                     sp.lock    ? sp.lock->name()
                     : sp.cache ? sp.cache->name()
                                : sp.list->name(),
                     " not reclaimed within ", absl::FormatDuration(kReclaimGrace),
                     " of the takeover: failed, ");
    if (sp.cache) {
      server_.Log(absl::StrCat(what, sp.cache->Detach(token),
                               " castout lock(s) released (the entries stay changed)"));
    } else if (sp.list) {
      sp.list->Forget(token);
      server_.Log(absl::StrCat(what, "its monitors end"));
    } else {
      const size_t before = sp.lock->retained_count();
      sp.lock->Fail(token, &notes);
      server_.Log(absl::StrCat(what, sp.lock->retained_count() - before, " lock(s) retained"));
    }
  }
  server_.SendNotes(notes);
}

void Duplex::CheckPartner() {
  if (!duplexed_ || !partner_.valid()) return;
  absl::Status st = partner_.status();
  if (st.ok()) return;
  if (HoldsSecondaries()) {
    // What the primary committed before it died comes first, in order:
    // its last mirrors, and a Drop if it had ended duplexing with us.
    while (duplexed_) {
      absl::StatusOr<size_t> n = partner_.Receive(absl::MakeSpan(buf_), Wait::Never());
      if (!n.ok()) break;
      OnPartnerFrame(partner_.peer(), absl::MakeConstSpan(buf_.data(), *n));
    }
    if (duplexed_) TakeOver(std::string(st.message()));
  } else {
    Break(std::string(st.message()));
  }
}

uint32_t Duplex::ReclaimToken(const std::string& structure, const std::string& connector) {
  auto it = reclaim_.find({structure, connector});
  if (it == reclaim_.end()) return 0;
  const uint32_t t = it->second;
  reclaim_.erase(it);
  return t;
}

void Duplex::Mirror(absl::Span<const uint8_t> frame, uint64_t id) {
  if (!duplexed_) return;
  const absl::Time deadline = absl::Now() + kAckTimeout;
  if (absl::Status st = partner_.Send(frame, Wait::Spin(deadline)); !st.ok()) {
    Break(absl::StrCat("mirror not sent: ", st.message()));
    return;
  }
  while (true) {
    // Adaptive: spins a little, then sleeps on the doorbell, so that a
    // secondary sharing this CPU gets it to apply the update.
    absl::StatusOr<size_t> n = partner_.Receive(absl::MakeSpan(buf_), Wait::Adaptive(deadline));
    if (!n.ok()) {
      Break(absl::StrCat("no acknowledgement of mirror ", id, ": ", n.status().message()));
      return;
    }
    absl::StatusOr<Header> h = proto::ParseHeader(absl::MakeConstSpan(buf_.data(), *n));
    if (!h.ok()) {
      Break(std::string(h.status().message()));
      return;
    }
    if (h->request_id != id) continue;  // a stale acknowledgement
    if (h->status != 0) Break(absl::StrCat("the secondary refused mirror ", id, " (status ", h->status, ")"));
    return;
  }
}

void Duplex::MirrorFail(uint32_t token) {
  if (!duplexed_) return;
  auto c = server_.conns_.find(token);
  if (c == server_.conns_.end() || RoleOf(c->second.structure) != Role::kPrimary) return;
  const uint64_t id = next_id_++;
  Mirror(Writer(Header{proto::kDuplexFail, id, token, 0}).frame(), id);
}

void Duplex::Ack(Address to, const Header& h, const absl::Status& st) {
  Header rh{static_cast<uint8_t>(h.type | proto::kReplyBit), h.request_id, h.conn, 0};
  std::vector<uint8_t> f = st.ok() ? Bytes(Writer(rh)) : proto::ErrorReply(h, st);
  // On the link the frame came on (it exists: SendTo makes none).
  if (absl::Status s = server_.nic_.SendTo(to, f, Wait::Spin(absl::Now() + kAckTimeout)); !s.ok())
    server_.Log(absl::StrCat("duplexing: acknowledgement to the primary not sent: ", s.message()));
}

void Duplex::OnPartnerFrame(Address from, absl::Span<const uint8_t> frame) {
  absl::StatusOr<Header> h = proto::ParseHeader(frame);
  if (!h.ok()) {
    server_.Log(absl::StrCat("duplexing: from partner ", from.ToString(), ": ", h.status().message()));
    return;
  }
  if (h->type & proto::kReplyBit) return;  // an acknowledgement that came too late: dropped
  Reader r(frame);
  if (h->type == proto::kDuplexHello) {
    // The link the frame came on is the CF-to-CF link (the primary made it).
    absl::StatusOr<hsi::Link> l = server_.nic_.Link(from, Wait::Adaptive(absl::Now() + kAckTimeout));
    if (!l.ok()) return;
    if (duplexed_) CheckPartner();  // a restarted primary: the old one is dead
    partner_ = std::move(*l);
    buf_.resize(server_.nic_.info().mtu);
    absl::Status st;
    const uint32_t n = r.U32("structures");
    std::vector<std::string> names;
    for (uint32_t i = 0; i < n && r.status().ok() && i < 4096; ++i)
      names.push_back(r.Str("structure", proto::kMaxName));
    st = r.Done();
    absl::StatusOr<std::string> lpar = server_.LparOf(from);
    if (st.ok() && !lpar.ok()) st = lpar.status();
    if (st.ok() && *lpar != server_.config_.duplex_partner)
      st = absl::PermissionDeniedError(absl::StrCat("CF ", server_.config_.lpar, ": ", from.ToString(),
                                                    " is LPAR ", *lpar, ", not the partner ",
                                                    server_.config_.duplex_partner));
    if (st.ok() && took_over_)
      st = absl::FailedPreconditionError(absl::StrCat("CF ", server_.config_.lpar,
                                                      " took over the duplexed structure(s) after ",
                                                      server_.config_.duplex_partner, " died"));
    for (const std::string& name : names) {
      if (!st.ok()) break;
      if (RoleOf(name) != Role::kSecondary)
        st = absl::FailedPreconditionError(absl::StrCat("CF ", server_.config_.lpar, ": ", name,
                                                        " is not a secondary structure here"));
      for (const auto& [t, c] : server_.conns_)
        if (st.ok() && c.structure == name)
          st = absl::FailedPreconditionError(absl::StrCat("CF ", server_.config_.lpar, ": ", name,
                                                          " has connections here already"));
    }
    duplexed_ = st.ok();
    server_.Log(st.ok() ? absl::StrCat("duplexed with ", server_.config_.duplex_partner, ": ",
                                       names.size(), " structure(s), this CF the secondary")
                        : absl::StrCat("duplexing refused: ", st.message()));
    Ack(from, *h, st);
    return;
  }
  // (No takeover check here: a frame from the primary's link is applied
  // even if the primary died after it; a new primary process says Hello.)
  if (h->type == proto::kDuplexDrop) {
    absl::Status st = r.Done();
    if (st.ok() && duplexed_) {
      duplexed_ = false;
      dropped_ = true;
      server_.Log(absl::StrCat("the primary ", server_.config_.duplex_partner,
                               " ended duplexing with this CF: its copy is out of date from now "
                               "on, and it will not take over if the primary dies"));
    }
    Ack(from, *h, st);
    return;
  }
  if (!duplexed_ || !HoldsSecondaries()) {
    Ack(from, *h, absl::FailedPreconditionError(absl::StrCat(
                      "CF ", server_.config_.lpar, " is not the duplex secondary of ", from.ToString())));
    return;
  }
  Ack(from, *h, ApplyMirrored(*h, r));
}

absl::Status Duplex::ApplyMirrored(const Header& h, Reader& r) {
  switch (h.type) {
    case proto::kDuplexConnect: {
      const std::string structure = r.Str("structure", proto::kMaxName);
      const std::string connector = r.Str("connector", proto::kMaxName);
      const std::string lpar = r.Str("lpar", 31);
      const Address peer(r.U32("peer"));
      if (absl::Status s = r.Done(); !s.ok()) return s;
      if (RoleOf(structure) != Role::kSecondary)
        return absl::FailedPreconditionError(absl::StrCat(structure, " is not a secondary structure"));
      Server::Structure& s = server_.structures_.at(structure);
      uint32_t returned = 0;
      if (s.lock) {
        if (absl::Status st = s.lock->Attach(h.conn, connector, &returned); !st.ok()) return st;
      } else if (s.cache) {
        // This CF's own half of the connector's vector, granted to it
        // through hsid as the primary grants its half.
        if (absl::Status st = server_.AttachCache(*s.cache, peer, h.conn, connector); !st.ok()) return st;
      }
      server_.conns_[h.conn] = Server::Conn{h.conn, structure, connector, lpar, peer};
      server_.next_token_ = std::max(server_.next_token_, h.conn + 1);
      return absl::OkStatus();
    }
    case proto::kDuplexRequest: {
      const std::string inner = r.Str("frame", proto::kMaxFrame);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      const absl::Span<const uint8_t> f(reinterpret_cast<const uint8_t*>(inner.data()), inner.size());
      absl::StatusOr<Header> ih = proto::ParseHeader(f);
      if (!ih.ok()) return ih.status();
      auto c = server_.conns_.find(ih->conn);
      if (c == server_.conns_.end() || RoleOf(c->second.structure) != Role::kSecondary)
        return absl::FailedPreconditionError(absl::StrCat("no mirrored connection ", ih->conn));
      // Applied as the primary applied it; what it would send goes nowhere.
      Reader ir(f);
      server_.reply_mode_ = Server::ReplyMode::kDrop;
      absl::StatusOr<std::vector<uint8_t>> out = server_.Dispatch(c->second.peer, *ih, ir);
      server_.reply_mode_ = Server::ReplyMode::kSend;
      server_.pending_transitions_.clear();
      return out.status();
    }
    case proto::kDuplexFail: {
      if (absl::Status s = r.Done(); !s.ok()) return s;
      auto c = server_.conns_.find(h.conn);
      if (c == server_.conns_.end() || RoleOf(c->second.structure) != Role::kSecondary)
        return absl::OkStatus();
      Server::Structure& s = server_.structures_.at(c->second.structure);
      std::vector<Note> unused;
      if (s.cache) {
        server_.DetachCache(c->second, "failed (seen by the primary)");
      } else if (s.list) {
        s.list->Forget(h.conn);
      } else {
        s.lock->Fail(h.conn, &unused);
      }
      server_.conns_.erase(c);
      return absl::OkStatus();
    }
    case proto::kDuplexPutBack: {
      const uint32_t list = r.U32("list");
      std::string key = r.Str("key", proto::kMaxKey);
      std::string data = r.Str("data", proto::kMaxData);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      auto c = server_.conns_.find(h.conn);
      if (c == server_.conns_.end() || RoleOf(c->second.structure) != Role::kSecondary)
        return absl::FailedPreconditionError(absl::StrCat("no mirrored connection ", h.conn));
      Server::Structure& s = server_.structures_.at(c->second.structure);
      if (!s.list)
        return absl::InvalidArgumentError(
            absl::StrCat("duplexing: put-back on ", c->second.structure, ", not a list structure"));
      // The same push the primary did; what it would send goes nowhere.
      std::vector<Transition> unused;
      return s.list->Push(list, ListEnd::kHead, std::move(key), std::move(data), &unused).status();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("duplexing: message type ", h.type, " unknown"));
  }
}

bool Duplex::Serve(Address from, absl::Span<const uint8_t> frame) {
  const CfConfig& cfg = server_.config_;
  if (cfg.duplex_address && from == *cfg.duplex_address) {
    OnPartnerFrame(from, frame);
    return true;
  }
  absl::StatusOr<Header> h = proto::ParseHeader(frame);
  if (!h.ok()) return false;
  std::string structure;
  if (h->type == proto::kConnect) {
    Reader r(frame);
    structure = r.Str("structure", proto::kMaxName);
  } else if (auto c = server_.conns_.find(h->conn); c != server_.conns_.end()) {
    structure = c->second.structure;
  }
  const Role role = RoleOf(structure);
  if (role == Role::kNone) return false;
  if (role == Role::kSecondary) {
    CheckPartner();
    if (took_over_) return false;
    if (dropped_) {
      server_.Reply(from, proto::ErrorReply(
                              *h, absl::UnavailableError(absl::StrCat(
                                      "CF ", cfg.lpar, " was dropped from duplexing ", structure,
                                      " by ", cfg.duplex_partner,
                                      " and holds an out-of-date copy: the structure is lost "
                                      "unless ", cfg.duplex_partner, " serves it"))));
      return true;
    }
    server_.Reply(from, proto::ErrorReply(
                            *h, absl::UnavailableError(absl::StrCat(
                                    "CF ", cfg.lpar, " holds the duplex secondary of ", structure,
                                    duplexed_ ? "; its primary CF " : " and is not duplexed with its primary CF ",
                                    cfg.duplex_partner, " serves it"))));
    return true;
  }
  if (moved_) {
    server_.Reply(from, proto::ErrorReply(*h, absl::UnavailableError(absl::StrCat(
                                                  "CF ", cfg.lpar, ": structure ", structure,
                                                  " was taken over by its secondary in CF ",
                                                  cfg.duplex_partner, " at ", cfg.duplex_address->ToString(),
                                                  "; connect there"))));
    return true;
  }
  CheckPartner();
  if (!duplexed_) return false;
  FlushDeferred();
  // Applied here with the replies (and notes) held, mirrored, then sent.
  server_.reply_mode_ = Server::ReplyMode::kHold;
  server_.Handle(from, frame);
  server_.reply_mode_ = Server::ReplyMode::kSend;
  std::vector<HeldFrame> held;
  held.swap(server_.held_);
  uint32_t token = 0;
  bool ok = false;
  for (const auto& [to, f, popped] : held) {
    absl::StatusOr<Header> rh = proto::ParseHeader(f);
    if (to == from && rh.ok() && rh->request_id == h->request_id &&
        rh->type == (h->type | proto::kReplyBit) && rh->status == 0) {
      ok = true;
      token = rh->conn;
    }
  }
  // Reads that change nothing are not mirrored.
  const bool read_only = h->type == proto::kListRead || h->type == proto::kCacheChanged ||
                         h->type == proto::kCacheStats;
  if (ok && !read_only) {
    const uint64_t id = next_id_++;
    std::vector<uint8_t> m;
    if (h->type == proto::kConnect) {
      const Server::Conn& c = server_.conns_.at(token);
      m = Bytes(Writer(Header{proto::kDuplexConnect, id, token, 0})
                    .Str(c.structure)
                    .Str(c.connector)
                    .Str(c.lpar)
                    .U32(c.peer.value()));
    } else {
      m = Bytes(Writer(Header{proto::kDuplexRequest, id, h->conn, 0})
                    .Str(absl::string_view(reinterpret_cast<const char*>(frame.data()), frame.size())));
    }
    if (fault_) {
      deferred_ = std::move(m);
    } else {
      Mirror(m, id);
    }
    // A cache Connect's reply names the CF that granted the second half of
    // the vector: the secondary, if it has the connection now.
    if (h->type == proto::kConnect && duplexed_ && server_.structures_.at(structure).cache) {
      for (auto& [to, f, popped] : held) {
        absl::StatusOr<Header> rh = proto::ParseHeader(f);
        if (to != from || !rh.ok() || rh->request_id != h->request_id || f.size() < 4) continue;
        const uint32_t a = cfg.duplex_address->value();
        std::memcpy(f.data() + f.size() - 4, &a, 4);  // the reply's last field, u32 little-endian
      }
    }
  }
  SendHeld(std::move(held));
  return true;
}

void Duplex::FlushDeferred() {
  if (deferred_.empty()) return;
  std::vector<uint8_t> d;
  d.swap(deferred_);
  Mirror(d, proto::ParseHeader(d)->request_id);
}

void Duplex::SendHeld(std::vector<HeldFrame> held) {
  for (const HeldFrame& m : held) {
    if (!m.popped) {
      server_.Reply(m.to, m.frame);
      continue;
    }
    auto c = server_.conns_.find(m.popped->conn);
    if (c != server_.conns_.end()) server_.SendPopNote(c->second, *m.popped);
  }
}

bool Duplex::PutBack(const Transition& t, const absl::Status& why) {
  auto c = server_.conns_.find(t.conn);
  if (!duplexed_ || c == server_.conns_.end() || RoleOf(c->second.structure) != Role::kPrimary)
    return false;
  // Applied here with what it causes held, mirrored, then sent: as a
  // connector's request is (Serve).
  FlushDeferred();
  std::vector<Transition> again;
  server_.reply_mode_ = Server::ReplyMode::kHold;
  const absl::Status back = server_.PutBack(c->second, t, why, &again);
  server_.SendTransitions(again);
  server_.reply_mode_ = Server::ReplyMode::kSend;
  std::vector<HeldFrame> held;
  held.swap(server_.held_);
  if (back.ok()) {
    const uint64_t id = next_id_++;
    Mirror(Writer(Header{proto::kDuplexPutBack, id, t.conn, 0})
               .U32(t.list)
               .Str(t.entry.key)
               .Str(t.entry.data)
               .frame(),
           id);
  }
  SendHeld(std::move(held));
  return true;
}

}  // namespace hsi::cf
