// connector.cc: hsi::cf::CfClient, the connector side of CF links.
#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client_internal.h"
#include "hsi/cf.h"
#include "protocol.h"

namespace hsi::cf {

using proto::Header;
using proto::Reader;
using proto::Writer;

const char* LockModeName(LockMode m) { return m == LockMode::kShared ? "shared" : "exclusive"; }

namespace {

// Parses a note from the CF into an Event. The CF's frames are validated
// as any peer's (invariant 2): a bad one is kDataLoss naming the field.
absl::StatusOr<Event> ParseNote(const Header& h, absl::Span<const uint8_t> f) {
  Reader r(f);
  Event e;
  e.conn = h.conn;
  e.request = h.request_id;
  if (h.type == proto::kTransitionNote || h.type == proto::kPopNote) {
    e.kind = h.type == proto::kPopNote ? Event::Kind::kPopped : Event::Kind::kTransition;
    e.list = r.U32("list");
    if (h.type == proto::kPopNote) {
      e.entry.key = r.Str("key", proto::kMaxKey);
      e.entry.data = r.Str("data", proto::kMaxData);
    }
    if (absl::Status s = r.Done(); !s.ok()) return absl::DataLossError(s.message());
    return e;
  }
  e.resource = r.Str("resource", proto::kMaxResource);
  if (h.type == proto::kGrantNote) {
    e.kind = Event::Kind::kGranted;
    const uint8_t m = r.U8("mode");
    if (m > 1)
      return absl::DataLossError(absl::StrCat("grant note: lock mode ", m, " is not 0 or 1"));
    e.mode = static_cast<LockMode>(m);
  } else {
    e.kind = Event::Kind::kCancelled;
    e.failed = r.Str("failed connector", proto::kMaxName);
  }
  if (absl::Status s = r.Done(); !s.ok()) return absl::DataLossError(s.message());
  return e;
}

}  // namespace

// Receives one frame from the CF, waiting as `wait` says. A note goes to
// the event queue; a reply to `want` is copied to *reply (true returned in
// *matched); stale replies (of requests that timed out) are dropped.
absl::Status ReceiveOne(CfClient::State& s, const Wait& wait, uint64_t want,
                        std::vector<uint8_t>* reply, bool* matched) {
  absl::StatusOr<size_t> n = s.link.Receive(absl::MakeSpan(s.buf), wait);
  if (!n.ok()) return n.status();
  const absl::Span<const uint8_t> f(s.buf.data(), *n);
  absl::StatusOr<Header> h = proto::ParseHeader(f);
  if (!h.ok()) return absl::DataLossError(absl::StrCat(s.Name(), ": ", h.status().message()));
  if (h->type == proto::kDuplexEndNote) {
    if (f.size() != proto::kHeaderSize)
      return absl::DataLossError(absl::StrCat(s.Name(), ": duplex end note of ", f.size(), " bytes"));
    return DuplexEnded(s, h->conn);
  }
  if (h->type == proto::kGrantNote || h->type == proto::kCancelNote ||
      h->type == proto::kTransitionNote || h->type == proto::kPopNote) {
    absl::StatusOr<Event> e = ParseNote(*h, f);
    if (!e.ok()) return absl::DataLossError(absl::StrCat(s.Name(), ": ", e.status().message()));
    s.events.push_back(std::move(*e));
    return absl::OkStatus();
  }
  if ((h->type & proto::kReplyBit) == 0) {
    return absl::DataLossError(absl::StrCat(s.Name(), ": message type ", h->type,
                                            " from the CF is neither a reply nor a note"));
  }
  if (want != 0 && h->request_id == want) {
    reply->assign(f.begin(), f.end());
    *matched = true;
    return absl::OkStatus();
  }
  if (auto a = s.async.find(h->request_id); a != s.async.end()) {
    if ((h->type & ~proto::kReplyBit) != a->second) {
      return absl::DataLossError(absl::StrCat(s.Name(), ": reply type ", h->type, " to request ",
                                              h->request_id, " of type ", a->second));
    }
    Event e;
    e.kind = Event::Kind::kReply;
    e.conn = h->conn;
    e.request = h->request_id;
    e.status = ReplyStatus(s, f);
    if (e.status.ok() && a->second == proto::kLock) {
      absl::StatusOr<LockReply> l = ParseLockReply(s, f, h->request_id);
      if (!l.ok()) return l.status();
      e.lock = std::move(*l);
    }
    s.async.erase(a);
    s.events.push_back(std::move(e));
  }
  return absl::OkStatus();  // else a stale reply (its request timed out): dropped
}

absl::Status ReplyStatus(CfClient::State& s, absl::Span<const uint8_t> reply) {
  absl::StatusOr<Header> h = proto::ParseHeader(reply);
  if (!h.ok()) return absl::DataLossError(absl::StrCat(s.Name(), ": ", h.status().message()));
  if (h->status == 0) return absl::OkStatus();
  if (h->status > 16)
    return absl::DataLossError(absl::StrCat(s.Name(), ": status code ", h->status, " unknown"));
  Reader r(reply);
  std::string msg = r.Str("message", 1024);
  if (absl::Status st = r.Done(); !st.ok())
    return absl::DataLossError(absl::StrCat(s.Name(), ": ", st.message()));
  return absl::Status(static_cast<absl::StatusCode>(h->status), msg);
}

absl::StatusOr<LockReply> ParseLockReply(CfClient::State& s, absl::Span<const uint8_t> reply,
                                         uint64_t id) {
  Reader r(reply);
  LockReply out;
  out.request = id;
  const uint8_t outcome = r.U8("outcome");
  const uint32_t n = r.U32("holders");
  for (uint32_t i = 0; i < n && r.status().ok(); ++i) {
    Holder h;
    h.connector = r.Str("holder", proto::kMaxName);
    const uint8_t m = r.U8("holder mode");
    h.retained = r.U8("holder retained") != 0;
    h.mode = m == 1 ? LockMode::kExclusive : LockMode::kShared;
    out.holders.push_back(std::move(h));
  }
  if (absl::Status st = r.Done(); !st.ok())
    return absl::DataLossError(absl::StrCat(s.Name(), ": ", st.message()));
  if (outcome > 2)
    return absl::DataLossError(absl::StrCat(s.Name(), ": lock outcome ", outcome, " unknown"));
  out.outcome = static_cast<LockReply::Outcome>(outcome);
  return out;
}

// Sends the request in `w` and spins for its reply until the timeout.
// Returns the reply frame (OK status) or the CF's status with its message.
absl::StatusOr<std::vector<uint8_t>> Call(CfClient::State& s, const Writer& w, uint64_t id) {
  std::vector<uint8_t> reply;
  if (absl::Status st = CallInto(s, w, id, &reply); !st.ok()) return st;
  return reply;
}

absl::Status CallInto(CfClient::State& s, const Writer& w, uint64_t id,
                      std::vector<uint8_t>* reply) {
  const absl::Time deadline = absl::Now() + s.timeout;
  const Wait wait = s.CallWait(deadline);
  absl::Status sent = s.link.Send(w.frame(), wait);
  if (sent.code() == absl::StatusCode::kUnavailable) {
    sent = LinkDown(s, sent, w.frame(), /*in_flight=*/false);
    if (sent.ok()) return CallInto(s, w, id, reply);  // failed over: once (failed_over)
  }
  if (!sent.ok()) return sent;
  bool matched = false;
  while (!matched) {
    absl::Status st = ReceiveOne(s, wait, id, reply, &matched);
    if (st.code() == absl::StatusCode::kDeadlineExceeded) {
      return absl::DeadlineExceededError(absl::StrCat(s.Name(), ": no reply to request ", id,
                                                      " within ", absl::FormatDuration(s.timeout)));
    }
    if (st.code() == absl::StatusCode::kUnavailable) return LinkDown(s, st, w.frame(), true);
    if (!st.ok()) return st;
  }
  return ReplyStatus(s, *reply);
}

absl::StatusOr<CfClient> CfClient::Open(CfClientOptions o) {
  auto s = std::make_unique<State>();
  s->timeout = o.timeout;
  s->spin = o.spin;
  SessionOptions so;
  so.socket_path = o.socket_path;
  so.lpar = o.lpar;
  absl::StatusOr<Session> session = Session::Connect(std::move(so));
  if (!session.ok()) return session.status();
  s->session = std::move(*session);
  absl::StatusOr<Nic> nic = s->session.AttachNic(o.chpid);
  if (!nic.ok()) return nic.status();
  s->nic = std::move(*nic);
  absl::StatusOr<hsi::Link> link = s->nic.Link(o.cf, Wait::Adaptive(absl::Now() + o.timeout));
  if (!link.ok()) {
    return absl::Status(
        link.status().code(),
        absl::StrCat("CF at ", o.cf.ToString(), ": no CF link: ", link.status().message()));
  }
  s->link = std::move(*link);
  s->buf.resize(s->nic.info().mtu);
  s->secondary = o.secondary;
  CfClient c;
  c.s_ = std::move(s);
  return c;
}

CfClient::CfClient() = default;
CfClient::~CfClient() = default;
CfClient::CfClient(CfClient&&) noexcept = default;
CfClient& CfClient::operator=(CfClient&&) noexcept = default;

Address CfClient::cf() const { return s_ ? s_->link.peer() : Address(); }
int CfClient::fd() const { return s_->nic.fd(); }
bool CfClient::PrepareWait() { return !s_->events.empty() || s_->nic.PrepareWait(); }

absl::StatusOr<Connection> CfClient::Connect(const std::string& structure,
                                             const std::string& connector) {
  if (absl::Status st = proto::CheckName("structure name", structure, proto::kMaxName); !st.ok())
    return st;
  if (absl::Status st = proto::CheckName("connector name", connector, proto::kMaxName); !st.ok())
    return st;
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kConnect, id, 0, 0});
  w.Str(structure).Str(connector);
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  Reader r(*rep);
  const uint8_t type = r.U8("type");
  Connection c;
  c.token = proto::ParseHeader(*rep)->conn;
  c.structure = structure;
  c.connector = connector;
  c.entries = r.U32("entries");
  c.returned_locks = r.U32("returned");
  uint32_t vector_bits = 0;
  Address secondary;  // a duplexed cache structure: the CF with the vector's second half
  if (type == proto::kCacheStructure) {
    vector_bits = r.U32("vector bits");
    c.max_data = r.U32("max_data");
    secondary = Address(r.U32("secondary"));
  }
  if (absl::Status st = r.Done(); !st.ok())
    return absl::DataLossError(absl::StrCat(s_->Name(), ": ", st.message()));
  c.list = type == proto::kListStructure;
  c.cache = type == proto::kCacheStructure;
  if (type != proto::kLockStructure && type != proto::kListStructure &&
      type != proto::kCacheStructure) {
    return absl::DataLossError(
        absl::StrCat(s_->Name(), ": structure type ", type, " unknown to this connector"));
  }
  if (c.cache) {
    if (c.max_data > proto::kMaxData) {
      return absl::DataLossError(absl::StrCat(s_->Name(), ": cache max_data ", c.max_data,
                                              " above ", proto::kMaxData));
    }
    // The CF granted the vector through hsid before it replied; take it,
    // check it (LocalVector::Map: size and seals) and map it read-only.
    uint64_t size = 0;
    absl::StatusOr<UniqueFd> fd =
        s_->nic.TakeMemory(s_->link.peer(), c.token, &size, Wait::Block(absl::Now() + s_->timeout));
    absl::StatusOr<LocalVector> v =
        fd.ok() ? LocalVector::Map(std::move(*fd), vector_bits) : fd.status();
    if (v.ok() && secondary != Address()) v = TakeSecondHalf(*s_, secondary, c.token, std::move(*v));
    if (!v.ok()) {
      // Without its vector the connection is useless: end it at the CF.
      (void)Disconnect(c);
      return absl::Status(v.status().code(),
                          absl::StrCat(s_->Name(), ": the validity vector of ", structure, ": ",
                                       v.status().message()));
    }
    c.vector = std::make_shared<const LocalVector>(std::move(*v));
  }
  s_->open.push_back(c);
  return c;
}

absl::Status CfClient::Disconnect(const Connection& c) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kDisconnect, id, c.token, 0});
  absl::Status st = Call(*s_, w, id).status();
  if (st.ok()) std::erase_if(s_->open, [&](const Connection& o) { return o.token == c.token; });
  return st;
}

absl::StatusOr<LockReply> CfClient::Lock(const Connection& c, const std::string& resource,
                                         LockMode mode, const std::string& record) {
  if (resource.empty() || resource.size() > proto::kMaxResource) {
    return absl::InvalidArgumentError(absl::StrCat("lock resource name of ", resource.size(),
                                                   " bytes: 1..", proto::kMaxResource, " allowed"));
  }
  if (record.size() > proto::kMaxRecord) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lock record data of ", record.size(), " bytes: at most ", proto::kMaxRecord, " allowed"));
  }
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kLock, id, c.token, 0}, std::move(s_->wbuf));
  w.U8(static_cast<uint8_t>(mode)).Str(resource).Str(record);
  const absl::Status st = CallInto(*s_, w, id, &s_->reply);
  s_->wbuf = w.Take();
  if (!st.ok()) return st;
  return ParseLockReply(*s_, s_->reply, id);
}

absl::StatusOr<uint64_t> CfClient::LockAsync(const Connection& c, const std::string& resource,
                                             LockMode mode, const std::string& record) {
  if (resource.empty() || resource.size() > proto::kMaxResource ||
      record.size() > proto::kMaxRecord) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lock resource name of ", resource.size(), " bytes (1..", proto::kMaxResource,
        ") or record data of ", record.size(), " bytes (at most ", proto::kMaxRecord, ")"));
  }
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kLock, id, c.token, 0});
  w.U8(static_cast<uint8_t>(mode)).Str(resource).Str(record);
  if (absl::Status st = s_->link.Send(w.frame(), Wait::Spin(absl::Now() + s_->timeout)); !st.ok())
    return st;
  s_->async[id] = proto::kLock;
  return id;
}

absl::StatusOr<uint64_t> CfClient::UnlockAsync(const Connection& c, const std::string& resource) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kUnlock, id, c.token, 0});
  w.Str(resource);
  if (absl::Status st = s_->link.Send(w.frame(), Wait::Spin(absl::Now() + s_->timeout)); !st.ok())
    return st;
  s_->async[id] = proto::kUnlock;
  return id;
}

absl::Status CfClient::LockAndWait(const Connection& c, const std::string& resource, LockMode mode,
                                   const Wait& wait, const std::string& record) {
  absl::StatusOr<LockReply> r = Lock(c, resource, mode, record);
  if (!r.ok()) return r.status();
  auto names = [](const std::vector<Holder>& hs) {
    std::string s;
    for (const Holder& h : hs)
      absl::StrAppend(&s, s.empty() ? "" : ", ", h.connector, " (", LockModeName(h.mode), ")");
    return s;
  };
  if (r->outcome == LockReply::Outcome::kGranted) return absl::OkStatus();
  if (r->outcome == LockReply::Outcome::kRetained) {
    return absl::FailedPreconditionError(absl::StrCat(
        c.structure, ": ", resource, " is retained by failed connector(s) ", names(r->holders)));
  }
  std::vector<uint8_t> unused;
  bool matched = false;
  while (true) {
    for (auto it = s_->events.begin(); it != s_->events.end(); ++it) {
      if (it->request != r->request || it->conn != c.token) continue;
      Event e = std::move(*it);
      s_->events.erase(it);
      if (e.kind == Event::Kind::kGranted) return absl::OkStatus();
      return absl::AbortedError(absl::StrCat(c.structure, ": request for ", resource,
                                             " cancelled: failed connector ", e.failed,
                                             " holds it retained"));
    }
    absl::Status st = ReceiveOne(*s_, wait, 0, &unused, &matched);
    // The CF died: fail over (the survivor keeps the queued request).
    if (st.code() == absl::StatusCode::kUnavailable) st = LinkDown(*s_, st, {}, false);
    if (st.code() == absl::StatusCode::kDeadlineExceeded) {
      return absl::DeadlineExceededError(
          absl::StrCat(c.structure, ": ", resource, " not granted by the deadline (", "held by ",
                       names(r->holders), "; the request stays queued)"));
    }
    if (!st.ok()) return st;
  }
}

absl::Status CfClient::Unlock(const Connection& c, const std::string& resource) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kUnlock, id, c.token, 0}, std::move(s_->wbuf));
  w.Str(resource);
  const absl::Status st = CallInto(*s_, w, id, &s_->reply);
  s_->wbuf = w.Take();
  return st;
}

absl::StatusOr<std::vector<RetainedLock>> CfClient::Recover(const Connection& c,
                                                            const std::string& failed) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kRecover, id, c.token, 0});
  w.Str(failed);
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  Reader r(*rep);
  std::vector<RetainedLock> out;
  const uint32_t n = r.U32("count");
  for (uint32_t i = 0; i < n && r.status().ok(); ++i) {
    RetainedLock l;
    l.resource = r.Str("resource", proto::kMaxResource);
    l.mode = r.U8("mode") == 1 ? LockMode::kExclusive : LockMode::kShared;
    l.record = r.Str("record", proto::kMaxRecord);
    out.push_back(std::move(l));
  }
  if (absl::Status st = r.Done(); !st.ok())
    return absl::DataLossError(absl::StrCat(s_->Name(), ": ", st.message()));
  return out;
}

absl::StatusOr<Event> CfClient::NextEvent(const Wait& wait) {
  std::vector<uint8_t> unused;
  bool matched = false;
  while (s_->events.empty()) {
    absl::Status st = ReceiveOne(*s_, wait, 0, &unused, &matched);
    if (st.code() == absl::StatusCode::kUnavailable) st = LinkDown(*s_, st, {}, false);
    if (!st.ok()) return st;
  }
  Event e = std::move(s_->events.front());
  s_->events.pop_front();
  return e;
}

}  // namespace hsi::cf
