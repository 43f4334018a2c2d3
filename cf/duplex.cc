// cf/duplex.cc: duplexing of structures in two CFs (cf/duplex.h). Every
// frame from the partner is validated as any peer's (proto::Reader).
#include "duplex.h"

#include <algorithm>
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

bool Duplex::HoldsPrimaries() const {
  for (const StructureConfig& s : server_.config_.structures)
    if (s.duplex == "primary") return true;
  return false;
}

std::vector<std::string> Duplex::Candidates() {
  std::vector<std::string> names;
  for (const StructureConfig& sc : server_.config_.structures) {
    if (sc.duplex != "primary") continue;
    const Server::Structure& st = server_.structures_.at(sc.name);
    if (st.cache) {
      bool connected = false;
      for (const auto& [t, c] : server_.conns_) connected = connected || c.structure == sc.name;
      if (connected || st.cache->in_use() > 0) {
        if (said_simplex_.insert(sc.name).second)
          server_.Log(absl::StrCat(
              "duplexing: cache structure ", sc.name,
              " stays simplex: it has entries or connections, and copying a cache structure "
              "into a new secondary is not done (its connectors would need the new "
              "secondary's half of their vectors first)"));
        continue;
      }
    }
    names.push_back(sc.name);
  }
  return names;
}

void Duplex::Establish(absl::Duration wait) {
  const CfConfig& c = server_.config_;
  if (!HoldsPrimaries() || !c.duplex_address) return;
  buf_.resize(server_.nic_.info().mtu);
  const std::string partner = absl::StrCat(c.duplex_partner, " at ", c.duplex_address->ToString());
  absl::StatusOr<hsi::Link> l =
      server_.nic_.Link(*c.duplex_address, Wait::Adaptive(absl::Now() + wait));
  if (!l.ok()) {
    server_.Log(absl::StrCat("duplexing: no CF-to-CF link to ", partner, " (", l.status().message(),
                             "): primary structure(s) served simplex until it comes"));
    return;
  }
  partner_ = std::move(*l);
  const std::vector<std::string> names = Candidates();
  if (names.empty()) return;
  const uint64_t id = next_id_++;
  Writer w(Header{proto::kDuplexHello, id, 0, 0});
  w.U32(static_cast<uint32_t>(names.size()));
  for (const std::string& n : names) w.Str(n);
  OnHelloAnswer(names, Exchange(w.frame(), id), false);
}

void Duplex::Backoff(absl::Time now) {
  next_retry_ = now + backoff_;
  backoff_ = std::min(backoff_ * 2, absl::Seconds(60));
}

void Duplex::Retry(absl::Time now) {
  const CfConfig& c = server_.config_;
  if (duplexed_ || moved_ || !c.duplex_address || !HoldsPrimaries()) return;
  if (hello_id_ != 0) {
    if (now < hello_deadline_) return;
    server_.Log(absl::StrCat("duplexing: no answer to Hello from ", c.duplex_partner, " within ",
                             absl::FormatDuration(kAckTimeout),
                             "; primary structure(s) stay simplex, tried again later"));
    hello_id_ = 0;
    Backoff(now);
    return;
  }
  if (now < next_retry_) return;
  next_retry_ = now + absl::Seconds(1);
  // One question to hsid (control plane, between requests): is the
  // partner's NIC up? Not there: asked again in a second.
  absl::StatusOr<std::string> lpar = server_.nic_.PeerLpar(*c.duplex_address);
  if (!lpar.ok() || *lpar != c.duplex_partner) {
    partner_seen_ = false;
    backoff_ = absl::Seconds(1);
    return;
  }
  std::vector<std::string> names = Candidates();
  if (names.empty()) return;
  absl::StatusOr<hsi::Link> l =
      server_.nic_.Link(*c.duplex_address, Wait::Adaptive(now + absl::Milliseconds(200)));
  if (!l.ok()) {
    Backoff(now);
    return;
  }
  partner_ = std::move(*l);
  buf_.resize(server_.nic_.info().mtu);
  deferred_.clear();  // (the fault's) a mirror of what the copy holds
  hello_id_ = next_id_++;
  hello_names_ = std::move(names);
  Writer w(Header{proto::kDuplexHello, hello_id_, 0, 0});
  w.U32(static_cast<uint32_t>(hello_names_.size()));
  for (const std::string& n : hello_names_) w.Str(n);
  if (absl::Status st = partner_.Send(w.frame(), Wait::Never()); !st.ok()) {
    hello_id_ = 0;
    Backoff(now);
    return;
  }
  hello_deadline_ = now + kAckTimeout;
  if (!partner_seen_)
    server_.Log(absl::StrCat("duplexing: ", c.duplex_partner, " is up at ",
                             c.duplex_address->ToString(), ": Hello sent to re-duplex ",
                             hello_names_.size(), " structure(s)"));
  partner_seen_ = true;
}

void Duplex::OnHelloAnswer(const std::vector<std::string>& names, const absl::Status& answer,
                           bool again) {
  const CfConfig& c = server_.config_;
  const std::string partner = absl::StrCat(c.duplex_partner, " at ", c.duplex_address->ToString());
  absl::Status st = answer;
  if (st.code() == absl::StatusCode::kFailedPrecondition &&
      st.message().find("took over") != absl::string_view::npos) {
    moved_ = true;
    server_.Log(absl::StrCat("duplexing: ", partner, " refused: ", st.message(),
                             "; this CF sends connectors of its primary structure(s) there"));
    return;
  }
  size_t frames = 0, items = 0;
  std::string what;
  if (st.ok()) {
    for (const std::string& name : names) {
      st = Copy(name, &frames, &items);
      if (!st.ok()) {
        what = absl::StrCat("the copy of ", name, " failed: ");
        break;
      }
    }
    if (!st.ok() && partner_.valid() && partner_.status().ok()) {
      // What the secondary holds of the copy must never be taken over.
      partner_.Send(Writer(Header{proto::kDuplexDrop, next_id_++, 0, 0}).frame(), Wait::Never())
          .IgnoreError();
    }
  }
  if (!st.ok()) {
    server_.Log(absl::StrCat(again ? "re-duplexing" : "duplexing", " with ", partner,
                             " not established: ", what, st.message(),
                             "; primary structure(s) served simplex"));
    Backoff(absl::Now());
    return;
  }
  duplexed_ = true;
  backoff_ = absl::Seconds(1);
  simplex_.clear();
  for (const StructureConfig& sc : c.structures)
    if (sc.duplex == "primary" && std::find(names.begin(), names.end(), sc.name) == names.end())
      simplex_.insert(sc.name);
  server_.Log(absl::StrCat("duplexed with ", partner, ": ", names.size(),
                           " structure(s), this CF the primary", again ? " (re-duplexed" : " (",
                           again ? ": " : "", items, " item(s) copied in ", frames, " frame(s))"));
}

absl::Status Duplex::Exchange(absl::Span<const uint8_t> frame, uint64_t id) {
  const absl::Time deadline = absl::Now() + kAckTimeout;
  if (absl::Status st = partner_.Send(frame, Wait::Adaptive(deadline)); !st.ok()) return st;
  while (true) {
    absl::StatusOr<size_t> n = partner_.Receive(absl::MakeSpan(buf_), Wait::Adaptive(deadline));
    if (!n.ok()) return n.status();
    const absl::Span<const uint8_t> f(buf_.data(), *n);
    absl::StatusOr<Header> h = proto::ParseHeader(f);
    if (!h.ok()) return h.status();
    if (!(h->type & proto::kReplyBit) || h->request_id != id) continue;  // a stale answer
    if (h->status == 0) return absl::OkStatus();
    Reader r(f);
    const std::string msg = r.Str("message", 1024);
    const absl::StatusCode code =
        h->status <= 16 ? static_cast<absl::StatusCode>(h->status) : absl::StatusCode::kUnknown;
    return absl::Status(code, msg);
  }
}

template <typename SizeFn, typename PutFn>
absl::Status Duplex::SendItems(uint8_t type, const std::string& name, size_t n, SizeFn size,
                               PutFn put, size_t* frames) {
  size_t i = 0;
  while (i < n) {
    const uint64_t id = next_id_++;
    Writer w(Header{type, id, 0, 0});
    w.Str(name);
    const size_t at = w.size();
    w.U32(0);
    uint32_t count = 0;
    // One item always fits (each is far below kMaxFrame).
    while (i < n && (count == 0 || w.size() + size(i) <= proto::kMaxFrame)) {
      put(i++, w);
      ++count;
    }
    std::vector<uint8_t> f = w.Take();
    std::memcpy(f.data() + at, &count, 4);  // little-endian, as Writer::U32
    if (absl::Status st = Exchange(f, id); !st.ok()) return st;
    ++*frames;
  }
  return absl::OkStatus();
}

absl::Status Duplex::Copy(const std::string& name, size_t* frames, size_t* items) {
  const Server::Structure& st = server_.structures_.at(name);
  std::vector<const Server::Conn*> conns;
  for (const auto& [t, c] : server_.conns_)
    if (c.structure == name) conns.push_back(&c);
  std::sort(conns.begin(), conns.end(),
            [](const Server::Conn* a, const Server::Conn* b) { return a->token < b->token; });
  uint64_t count = conns.size();
  absl::Status s = SendItems(
      proto::kDuplexCopyConn, name, conns.size(),
      [&](size_t i) { return 12 + 4 + conns[i]->connector.size() + conns[i]->lpar.size(); },
      [&](size_t i, Writer& w) {
        w.U32(conns[i]->token)
            .Str(conns[i]->connector)
            .Str(conns[i]->lpar)
            .U32(conns[i]->peer.value());
      },
      frames);
  std::vector<uint64_t> counters;
  if (s.ok() && st.lock) {
    const std::vector<LockStructure::CopyItem> all = st.lock->CopyOut();
    count += all.size();
    s = SendItems(
        proto::kDuplexCopyLock, name, all.size(),
        [&](size_t i) {
          return 1 + 2 + all[i].resource.size() + 4 + 2 + all[i].connector.size() + 8 + 1 + 2 +
                 all[i].record.size();
        },
        [&](size_t i, Writer& w) {
          const LockStructure::CopyItem& it = all[i];
          w.U8(it.queued ? 1 : 0)
              .Str(it.resource)
              .U32(it.conn)
              .Str(it.connector)
              .U64(it.request_id);
          w.U8(static_cast<uint8_t>(it.mode)).Str(it.record);
        },
        frames);
    const LockCounters& k = st.lock->counters();
    counters = {k.granted,  k.queued,    k.refused_retained,  k.released,
                k.retained, k.recovered, k.granted_after_wait};
  } else if (s.ok() && st.list) {
    const std::vector<ListStructure::CopyItem> all = st.list->CopyOut();
    count += all.size();
    s = SendItems(
        proto::kDuplexCopyList, name, all.size(),
        [&](size_t i) {
          return 1 + 4 + 4 + 8 + 4 + all[i].entry.key.size() + all[i].entry.data.size();
        },
        [&](size_t i, Writer& w) {
          const ListStructure::CopyItem& it = all[i];
          w.U8(static_cast<uint8_t>(it.kind)).U32(it.list).U32(it.conn).U64(it.request_id);
          w.Str(it.entry.key).Str(it.entry.data);
        },
        frames);
    const ListCounters& k = st.list->counters();
    counters = {k.pushed, k.popped, k.moved, k.deleted, k.transitions, k.handed};
  }
  // (A cache structure is copied only empty and unconnected: nothing but its end.)
  if (!s.ok()) return s;
  const uint64_t id = next_id_++;
  Writer w(Header{proto::kDuplexCopyEnd, id, 0, 0});
  w.Str(name).U32(static_cast<uint32_t>(count)).U64(st.requests).U64(st.refused);
  w.U32(static_cast<uint32_t>(counters.size()));
  for (uint64_t v : counters) w.U64(v);
  if (s = Exchange(w.frame(), id); !s.ok()) return s;
  ++*frames;
  *items += count;
  return absl::OkStatus();
}

void Duplex::Discard(const std::string& name) {
  Server::Structure& s = server_.structures_.at(name);
  for (auto c = server_.conns_.begin(); c != server_.conns_.end();) {
    auto next = std::next(c);
    if (c->second.structure == name) {
      if (s.cache)
        server_.DetachCache(c->second, "discarded with this CF's copy (a new one follows)");
      server_.conns_.erase(c);
    }
    c = next;
  }
  server_.Reset(s);
}

absl::Status Duplex::ApplyCopy(const Header& h, Reader& r) {
  const std::string name = r.Str("structure", proto::kMaxName);
  if (!r.status().ok()) return r.status();
  auto cp = copying_.find(name);
  if (cp == copying_.end())
    return absl::FailedPreconditionError(
        absl::StrCat("CF ", server_.config_.lpar, ": no copy of ", name, " is under way here"));
  Server::Structure& s = server_.structures_.at(name);
  const std::string where = absl::StrCat("copy of ", name, ": ");
  switch (h.type) {
    case proto::kDuplexCopyConn: {
      const uint32_t n = r.U32("connections");
      std::vector<Server::Conn> conns;
      for (uint32_t i = 0; i < n && r.status().ok(); ++i) {
        Server::Conn c;
        c.token = r.U32("token");
        c.structure = name;
        c.connector = r.Str("connector", proto::kMaxName);
        c.lpar = r.Str("lpar", 31);
        c.peer = Address(r.U32("peer"));
        conns.push_back(std::move(c));
      }
      if (absl::Status st = r.Done(); !st.ok()) return st;
      if (s.cache && !conns.empty())
        return absl::InvalidArgumentError(
            absl::StrCat(where, "a cache structure's connections are not copied"));
      for (Server::Conn& c : conns) {
        if (absl::Status st = proto::CheckName("connector name", c.connector, proto::kMaxName);
            !st.ok())
          return st;
        if (c.token == 0 || server_.conns_.contains(c.token))
          return absl::InvalidArgumentError(
              absl::StrCat(where, "connection token ", c.token, " is 0 or in use"));
        for (const auto& [t, o] : server_.conns_)
          if (o.structure == name && o.connector == c.connector)
            return absl::InvalidArgumentError(
                absl::StrCat(where, "connector ", c.connector, " twice"));
        uint32_t returned = 0;
        if (s.lock) {
          if (absl::Status st = s.lock->Attach(c.token, c.connector, &returned); !st.ok())
            return st;
        }
        server_.next_token_ = std::max(server_.next_token_, c.token + 1);
        server_.conns_[c.token] = std::move(c);
      }
      cp->second += n;
      return absl::OkStatus();
    }
    case proto::kDuplexCopyLock: {
      if (!s.lock)
        return absl::InvalidArgumentError(
            absl::StrCat(where, "lock items for a ", s.config.type, " structure"));
      const uint32_t n = r.U32("items");
      std::vector<LockStructure::CopyItem> all;
      for (uint32_t i = 0; i < n && r.status().ok(); ++i) {
        LockStructure::CopyItem it;
        const uint8_t kind = r.U8("kind");
        it.queued = kind == 1;
        it.resource = r.Str("resource", proto::kMaxResource);
        it.conn = r.U32("conn");
        it.connector = r.Str("connector", proto::kMaxName);
        it.request_id = r.U64("request_id");
        const uint8_t mode = r.U8("mode");
        it.mode = static_cast<LockMode>(mode);
        it.record = r.Str("record", proto::kMaxRecord);
        if (r.status().ok() && (kind > 1 || mode > 1))
          return absl::InvalidArgumentError(absl::StrCat(where, "lock item ", i, ": kind ", kind,
                                                         " or mode ", mode, " out of range"));
        all.push_back(std::move(it));
      }
      if (absl::Status st = r.Done(); !st.ok()) return st;
      for (LockStructure::CopyItem& it : all)
        if (absl::Status st = s.lock->CopyIn(std::move(it)); !st.ok()) return st;
      cp->second += n;
      return absl::OkStatus();
    }
    case proto::kDuplexCopyList: {
      if (!s.list)
        return absl::InvalidArgumentError(
            absl::StrCat(where, "list items for a ", s.config.type, " structure"));
      const uint32_t n = r.U32("items");
      std::vector<ListStructure::CopyItem> all;
      for (uint32_t i = 0; i < n && r.status().ok(); ++i) {
        ListStructure::CopyItem it;
        const uint8_t kind = r.U8("kind");
        it.kind = static_cast<ListStructure::CopyItem::Kind>(kind);
        it.list = r.U32("list");
        it.conn = r.U32("conn");
        it.request_id = r.U64("request_id");
        it.entry.key = r.Str("key", proto::kMaxKey);
        it.entry.data = r.Str("data", proto::kMaxData);
        if (r.status().ok() && kind > 2)
          return absl::InvalidArgumentError(
              absl::StrCat(where, "list item ", i, ": kind ", kind, " unknown"));
        if (r.status().ok() && kind != 0) {
          auto c = server_.conns_.find(it.conn);
          if (c == server_.conns_.end() || c->second.structure != name)
            return absl::InvalidArgumentError(absl::StrCat(where, "list item ", i, ": connection ",
                                                           it.conn, " is not one of ", name, "'s"));
        }
        all.push_back(std::move(it));
      }
      if (absl::Status st = r.Done(); !st.ok()) return st;
      for (ListStructure::CopyItem& it : all)
        if (absl::Status st = s.list->CopyIn(std::move(it)); !st.ok()) return st;
      cp->second += n;
      return absl::OkStatus();
    }
    case proto::kDuplexCopyEnd: {
      const uint32_t items = r.U32("items");
      const uint64_t requests = r.U64("requests");
      const uint64_t refused = r.U64("refused");
      const uint32_t n = r.U32("counters");
      std::vector<uint64_t> k;
      for (uint32_t i = 0; i < n && i < 64 && r.status().ok(); ++i) k.push_back(r.U64("counter"));
      if (absl::Status st = r.Done(); !st.ok()) return st;
      if (items != cp->second)
        return absl::InvalidArgumentError(
            absl::StrCat(where, "the end says ", items, " item(s), ", cp->second, " came"));
      const size_t want = s.lock ? 7 : s.list ? 6 : 0;
      if (k.size() != want)
        return absl::InvalidArgumentError(absl::StrCat(where, k.size(), " counter(s), not ", want));
      if (s.lock) s.lock->set_counters({k[0], k[1], k[2], k[3], k[4], k[5], k[6]});
      if (s.list) s.list->set_counters({k[0], k[1], k[2], k[3], k[4], k[5]});
      s.requests = requests;
      s.refused = refused;
      copying_.erase(cp);
      current_.insert(name);
      if (copying_.empty())
        server_.Log(absl::StrCat("duplexed with ", server_.config_.duplex_partner, ": ",
                                 current_.size(), " structure(s), this CF the secondary (copied)"));
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("duplexing: copy message type ", h.type, " unknown"));
  }
}

void Duplex::Break(const std::string& why) {
  if (!duplexed_) return;
  duplexed_ = false;
  next_retry_ = absl::Now() + absl::Seconds(1);  // Retry: re-duplexing when the partner is back
  backoff_ = absl::Seconds(1);
  partner_seen_ = false;
  server_.Log(absl::StrCat("duplexing with ", server_.config_.duplex_partner, " ended (", why,
                           "): primary structure(s) served simplex until it is back"));
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
    if (RoleOf(c.structure) != Role::kPrimary || !server_.structures_.at(c.structure).cache ||
        simplex_.contains(c.structure))
      continue;
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
    // (A structure whose copy was not complete is not taken over: Serve
    // refuses it.)
    if (RoleOf(c->second.structure) == Role::kSecondary && current_.contains(c->second.structure)) {
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
  if (!copying_.empty())
    server_.Log(absl::StrCat("the primary ", server_.config_.duplex_partner,
                             " died before its copy of ", copying_.size(),
                             " structure(s) was complete here: those are not taken over"));
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
  if (c == server_.conns_.end() || RoleOf(c->second.structure) != Role::kPrimary ||
      simplex_.contains(c->second.structure))
    return;
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
  if (h->type & proto::kReplyBit) {
    // The answer to Retry's Hello; else an acknowledgement that came too late: dropped.
    if (hello_id_ != 0 && h->request_id == hello_id_ &&
        h->type == (proto::kDuplexHello | proto::kReplyBit)) {
      hello_id_ = 0;
      absl::Status st;
      if (h->status != 0) {
        Reader r(frame);
        const std::string msg = r.Str("message", 1024);
        st = absl::Status(
            h->status <= 16 ? static_cast<absl::StatusCode>(h->status) : absl::StatusCode::kUnknown,
            msg);
      }
      OnHelloAnswer(hello_names_, st, true);
    }
    return;
  }
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
    }
    if (st.ok() && names.empty())
      st = absl::InvalidArgumentError(
          absl::StrCat("CF ", server_.config_.lpar, ": Hello names no structure"));
    duplexed_ = st.ok();
    if (st.ok()) {
      current_.clear();
      copying_.clear();
      // Whatever this CF holds of them (a copy from before it was dropped,
      // or nothing) goes: the primary's copy of each follows, in order.
      dropped_ = false;
      for (const std::string& name : names) {
        Discard(name);
        copying_[name] = 0;
      }
    }
    server_.Log(st.ok() ? absl::StrCat("Hello from ", server_.config_.duplex_partner, " for ",
                                       names.size(), " structure(s) accepted: their copy follows")
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
  if (h->type >= proto::kDuplexCopyConn && h->type <= proto::kDuplexCopyEnd) {
    absl::Status st = ApplyCopy(*h, r);
    if (!st.ok()) {
      // Nothing of this copy is ever served or taken over; the primary
      // stays simplex (it sends Hello again later).
      duplexed_ = false;
      current_.clear();
      copying_.clear();
      server_.Log(absl::StrCat("duplexing refused: ", st.message()));
    }
    Ack(from, *h, st);
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
      if (RoleOf(structure) != Role::kSecondary || !current_.contains(structure))
        return absl::FailedPreconditionError(
            absl::StrCat(structure, " is not a secondary structure copied here"));
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
      if (c == server_.conns_.end() || RoleOf(c->second.structure) != Role::kSecondary ||
          !current_.contains(c->second.structure))
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
      if (c == server_.conns_.end() || RoleOf(c->second.structure) != Role::kSecondary ||
          !current_.contains(c->second.structure))
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
    if (took_over_ && current_.contains(structure)) return false;
    if (took_over_) {
      server_.Reply(from, proto::ErrorReply(*h, absl::UnavailableError(absl::StrCat(
                                                    "CF ", cfg.lpar, " took over from ",
                                                    cfg.duplex_partner, " without ", structure,
                                                    ", whose copy here was not complete "
                                                    "(or not made): the structure is lost unless ",
                                                    cfg.duplex_partner, " serves it"))));
      return true;
    }
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
  if (!duplexed_ || simplex_.contains(structure)) return false;
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
  if (!duplexed_ || c == server_.conns_.end() || RoleOf(c->second.structure) != Role::kPrimary ||
      simplex_.contains(c->second.structure))
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
