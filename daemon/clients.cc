#include "clients.h"

#include "hsi/segment.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <malloc.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/time/clock.h"
#include "log.h"

namespace hsid {
namespace {

using hsi::UniqueFd;
using wire::Direction;
using wire::MsgType;
using Kind = EventLoop::Kind;

constexpr size_t kMaxQueued = 4096;            // unsent messages per client
constexpr size_t kMaxQueuedBytes = size_t{1} << 20;  // and their bytes
constexpr int kMaxMessagesPerWakeup = 64;      // fairness between clients

}  // namespace

std::optional<uint64_t> Clients::Throttle::Take() {
  const absl::Time now = absl::Now();
  if (now - logged < absl::Seconds(1)) return std::nullopt;
  logged = now;
  return std::exchange(count, 0);
}

absl::Status Clients::Init() {
  reserve_fd_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!reserve_fd_.valid()) return absl::ErrnoToStatus(errno, "open /dev/null (reserve fd)");
  return absl::OkStatus();
}

// ------------------------------------------------------------ accepting

void Clients::Accept(int listen_fd) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE) && reserve_fd_.valid()) {
      if (!RefuseForWantOfFds(listen_fd, errno)) return;
      continue;
    }
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR) Log(absl::StrCat("accept: ", std::strerror(errno)));
      if (errno == EINTR) continue;
      return;
    }
    std::unique_ptr<Client> c = Identify(UniqueFd(fd));
    if (c == nullptr || !Admit(*c)) continue;  // `c` closes the connection
    c->hello_deadline = absl::Now() + absl::Milliseconds(config_.hello_timeout_ms);
    ++unclaimed_;
    if (verbose_) Log(absl::StrCat("client ", c->id, " connected: ", c->Who()));
    clients_[c->id] = std::move(c);
  }
}

bool Clients::RefuseForWantOfFds(int listen_fd, int err) {
  // Out of fds: accept the newcomer on the reserve fd, tell it why and
  // close it, so that it gets an answer and the loop does not spin on a
  // listening socket that stays readable. Existing clients are served on.
  reserve_fd_.Reset();
  UniqueFd refused(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  const bool got = refused.valid();
  if (got) {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    SendError(refused.get(), absl::ResourceExhaustedError(absl::StrCat(
                                 "hsid is out of file descriptors (", std::strerror(err), ", RLIMIT_NOFILE ",
                                 lim.rlim_cur, "); connection refused, try again later")));
    ++refused_fds_.count;
  }
  refused.Reset();
  reserve_fd_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (std::optional<uint64_t> n = refused_fds_.Take()) {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    Log(absl::StrCat("out of file descriptors (", std::strerror(err), ", RLIMIT_NOFILE ", lim.rlim_cur, ", ",
                     clients_.size(), " clients): refused ", *n, " new connection(s); existing clients are served on"));
  }
  return got && reserve_fd_.valid();
}

std::unique_ptr<Client> Clients::Identify(UniqueFd fd) {
  auto c = std::make_unique<Client>();
  c->id = next_client_++;
  c->fd = std::move(fd);
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(c->fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    Log(absl::StrCat("SO_PEERCRED: ", std::strerror(errno), "; refusing connection"));
    return nullptr;
  }
  c->uid = cred.uid;
  c->gid = cred.gid;
  c->pid = static_cast<uint32_t>(cred.pid);
  gid_t groups[256];
  len = sizeof(groups);
  if (::getsockopt(c->fd.get(), SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
    for (size_t i = 0; i < len / sizeof(gid_t); ++i) c->gids.push_back(groups[i]);
  }
  c->gids.push_back(cred.gid);
  c->admin = c->uid == 0 ||
             std::find(config_.admin_uids.begin(), config_.admin_uids.end(), c->uid) != config_.admin_uids.end();
  for (uint32_t g : c->gids) {
    c->admin |= std::find(config_.admin_gids.begin(), config_.admin_gids.end(), g) != config_.admin_gids.end();
  }
  return c;
}

std::string Clients::ConnectionCap(uint32_t uid) const {
  // One uid's connections in all, and everyone's (issue 13: one tenant
  // held 3000 claimed connections through a wildcard LPAR).
  uint32_t of_uid = 0, live = 0;
  for (const auto& [oid, o] : clients_) {
    live += !o->closing;
    of_uid += !o->closing && o->uid == uid;
  }
  if (of_uid >= config_.max_connections_per_uid) {
    return absl::StrCat("uid ", uid, " already holds ", of_uid, " connections (max_connections_per_uid = ",
                        config_.max_connections_per_uid, " in config ", config_.source, ")");
  }
  if (live >= config_.max_connections) {
    return absl::StrCat("hsid already serves ", live, " connections (max_connections = ", config_.max_connections,
                        " in config ", config_.source, ")");
  }
  return "";
}

bool Clients::Admit(const Client& c) {
  // A flood of connections that never say hello is bounded per uid, so
  // that one uid cannot use up hsid's fds for everyone.
  uint32_t pending = 0;
  // A connection that claimed no LPAR name (an admin tool, a sniffer)
  // still counts for a non-admin uid: else an empty ClaimRequest would
  // take it past this cap.
  for (const auto& [oid, o] : clients_) {
    pending += !o->closing && o->uid == c.uid && (!o->hello || (o->lpar.empty() && !o->admin));
  }
  if (const std::string cap = ConnectionCap(c.uid); !cap.empty()) {
    Refuse(c.fd.get(), absl::ResourceExhaustedError(absl::StrCat(cap, "; connection refused")));
    if (std::optional<uint64_t> n = refused_cap_.Take()) {
      Log(absl::StrCat("pid ", c.pid, ": ", cap, "; refused (", *n, " more refused since the last such line)"));
    } else {
      ++refused_cap_.count;
    }
    return false;
  }
  if (pending >= config_.max_unclaimed_per_uid) {
    Refuse(c.fd.get(), absl::ResourceExhaustedError(absl::StrCat(
                           "uid ", c.uid, " already has ", pending,
                           " connections that have not claimed (max_unclaimed_per_uid = ",
                           config_.max_unclaimed_per_uid, " in config ", config_.source, "); connection refused")));
    ++refused_unclaimed_.count;
    if (std::optional<uint64_t> n = refused_unclaimed_.Take()) {
      Log(absl::StrCat("uid ", c.uid, " (pid ", c.pid, ") holds ", pending,
                       " connections that have not claimed: refused ", *n,
                       " new connection(s) (max_unclaimed_per_uid = ", config_.max_unclaimed_per_uid, ")"));
    }
    return false;
  }
  return true;
}

EventPage::~EventPage() {
  if (word_ != nullptr) ::munmap(word_, wire::kEventPageSize);
}

void EventPage::Bump() {
  if (word_ == nullptr) return;
  __atomic_fetch_add(word_, 1, __ATOMIC_RELEASE);
  // The low 32 bits, what a 32-bit futex compares. INT_MAX: every waiter
  // (a client's threads share one session's page only one at a time, but a
  // waiter must not be able to take another's wake-up).
  auto* low = reinterpret_cast<uint32_t*>(word_) + (std::endian::native == std::endian::little ? 0 : 1);
  ::syscall(SYS_futex, low, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

absl::StatusOr<hsi::UniqueFd> EventPage::Create() {
  absl::StatusOr<hsi::UniqueFd> fd = hsi::Segment::CreateMemfd("hsi-events", wire::kEventPageSize);
  if (!fd.ok()) return fd.status();
  void* p = ::mmap(nullptr, wire::kEventPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd->get(), 0);
  if (p == MAP_FAILED) return absl::ErrnoToStatus(errno, "mmap event page");
  if (::fcntl(fd->get(), F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0) {
    ::munmap(p, wire::kEventPageSize);
    return absl::ErrnoToStatus(errno, "seal event page");
  }
  if (word_ != nullptr) ::munmap(word_, wire::kEventPageSize);
  word_ = static_cast<uint64_t*>(p);
  return fd;
}

// An event: a message with request id 0 (not a reply).
bool Clients::IsEvent(const OutMessage& m) {
  wire::MsgHeader h;
  if (m.bytes.size() < sizeof(h)) return false;
  std::memcpy(&h, m.bytes.data(), sizeof(h));
  return h.request_id == 0;
}

void Clients::SendError(int fd, const absl::Status& why) {
  wire::ErrorReply e = wire::Zeroed<wire::ErrorReply>();
  e.status = wire::ToWire(why);
  (void)wire::TrySend(fd, wire::Encode(0, e));
}

void Clients::Refuse(int fd, const absl::Status& why) {
  SendError(fd, why);
  Drain(fd, 16);
}

void Clients::Drain(int fd, int max) {
  for (int i = 0; i < max; ++i) {
    absl::StatusOr<std::optional<Message>> m = wire::TryReceive(fd, Direction::kToDaemon);
    if (m.ok() ? !m->has_value() : m.status().code() != absl::StatusCode::kInvalidArgument) break;
  }
}

// ------------------------------------------------------------ reading

void Clients::ArmAll() {
  for (auto& [id, c] : clients_) {
    if (c->closing) continue;
    if (!c->in_pending) {
      loop_.ArmPoll(c->fd.get(), POLLIN | POLLRDHUP, Kind::kClientIn, c->id);
      c->in_pending = true;
    }
    if (!c->out.empty() && !c->out_pending) {
      loop_.ArmPoll(c->fd.get(), POLLOUT, Kind::kClientOut, c->id);
      c->out_pending = true;
    }
  }
}

void Clients::OnReadable(uint64_t id, int res) {
  Client* found = FindAny(id);
  if (found == nullptr) return;
  Client& c = *found;
  c.in_pending = false;
  if (c.closing) return;
  if (res < 0) {
    Close(c, absl::StrCat("poll error ", -res));
    return;
  }
  for (int i = 0; i < kMaxMessagesPerWakeup && !c.closing; ++i) {
    absl::StatusOr<std::optional<Message>> m = wire::TryReceive(c.fd.get(), Direction::kToDaemon);
    if (!m.ok()) {
      if (m.status().code() == absl::StatusCode::kResourceExhausted) {
        // hsid is out of fds: the message's fds are lost, so the request
        // cannot be served. Answer why and drop this client (it reconnects).
        AnswerAndClose(c, m.status(), std::string(m.status().message()));
      } else if (m.status().code() == absl::StatusCode::kInvalidArgument) {
        // Malformed: answer, then drop this client; everyone else is served on.
        AnswerAndClose(c, m.status(), absl::StrCat("malformed message: ", m.status().message()));
      } else {
        Close(c, m.status().code() == absl::StatusCode::kUnavailable ? "disconnected"
                                                                     : std::string(m.status().message()));
      }
      return;
    }
    if (!m->has_value()) return;
    Dispatch(c, **m);
  }
}

void Clients::Dispatch(Client& c, Message& m) {
  if (verbose_) Log(absl::StrCat(c.Who(), ": ", wire::MsgTypeName(static_cast<uint16_t>(m.type))));
  if (!c.hello && m.type != MsgType::kClaimRequest) {
    // Out of order: nothing but a ClaimRequest before a claim succeeded.
    const std::string what = absl::StrCat("protocol: ", wire::MsgTypeName(static_cast<uint16_t>(m.type)),
                                          " before a successful ClaimRequest (the first request must claim)");
    return AnswerAndClose(c, absl::FailedPreconditionError(what), absl::StrCat("protocol violation: ", what));
  }
  listener_.OnMessage(c, m);
}

void Clients::Hello(Client& c) {
  if (c.hello) return;
  c.hello = true;
  c.hello_deadline = absl::InfiniteFuture();
  --unclaimed_;
}

void Clients::ExpireHellos(absl::Time now) {
  if (unclaimed_ == 0) return;
  for (auto& [cid, c] : clients_) {
    if (c->closing || c->hello || c->hello_deadline > now) continue;
    const std::string why = absl::StrCat("no ClaimRequest (hello) within ",
                                         absl::FormatDuration(absl::Milliseconds(config_.hello_timeout_ms)),
                                         " of connecting (hello_timeout_ms in config ", config_.source, ")");
    AnswerAndClose(*c, absl::DeadlineExceededError(absl::StrCat(why, "; closing the connection")), why);
  }
}

const Client* Clients::Claimant(const std::string& lpar) const {
  for (const auto& [id, c] : clients_) {
    if (!c->closing && c->lpar == lpar) return c.get();
  }
  return nullptr;
}

// ------------------------------------------------------------ sending

void Clients::OnWritable(uint64_t id) {
  Client* found = FindAny(id);
  if (found == nullptr) return;
  Client& c = *found;
  c.out_pending = false;
  while (!c.closing && !c.out.empty()) {
    absl::StatusOr<bool> sent = wire::TrySend(c.fd.get(), c.out.front());
    if (!sent.ok()) {
      Close(c, std::string(sent.status().message()));
      return;
    }
    if (!*sent) return;
    Queued(c, -static_cast<ptrdiff_t>(c.out.front().bytes.size()));
    if (IsEvent(c.out.front())) c.events.Bump();
    c.out.pop_front();
  }
}

void Clients::Send(Client& c, OutMessage m) {
  if (c.closing) return;
  if (c.out.empty()) {
    absl::StatusOr<bool> sent = wire::TrySend(c.fd.get(), m);
    if (!sent.ok()) {
      Close(c, std::string(sent.status().message()));
      return;
    }
    if (*sent) {
      if (IsEvent(m)) c.events.Bump();
      return;
    }
  }
  if (c.out.size() >= kMaxQueued || c.out_bytes + m.bytes.size() > kMaxQueuedBytes) {
    Close(c, absl::StrCat("not reading its control socket (", c.out.size(), " messages, ", c.out_bytes,
                          " bytes queued; limits ", kMaxQueued, " messages, ", kMaxQueuedBytes, " bytes)"));
    return;
  }
  if (std::string cap = QueueCap(c, m.bytes.size()); !cap.empty()) {
    Close(c, absl::StrCat("not reading its control socket (", c.out_bytes, " bytes queued for it): ", cap));
    return;
  }
  Queued(c, static_cast<ptrdiff_t>(m.bytes.size()));
  c.out.push_back(std::move(m));
}

std::string Clients::QueueCap(const Client& c, size_t bytes) const {
  auto it = queued_by_uid_.find(c.uid);
  const size_t of_uid = it == queued_by_uid_.end() ? 0 : it->second;
  if (of_uid + bytes > config_.max_queued_bytes_per_uid) {
    return absl::StrCat("uid ", c.uid, " has ", of_uid, " bytes queued over its connections (max_queued_bytes_per_uid = ",
                        config_.max_queued_bytes_per_uid, " in config ", config_.source, ")");
  }
  if (queued_ + bytes > config_.max_queued_bytes) {
    return absl::StrCat("hsid has ", queued_, " bytes queued for clients (max_queued_bytes = ", config_.max_queued_bytes,
                        " in config ", config_.source, ")");
  }
  return "";
}

void Clients::Queued(Client& c, ptrdiff_t delta) {
  c.out_bytes += delta;
  queued_ += delta;
  size_t& u = queued_by_uid_[c.uid];
  u += delta;
  if (u == 0) queued_by_uid_.erase(c.uid);
}

// ------------------------------------------------------------ closing

void Clients::Close(Client& c, const std::string& why) {
  // Only marks: the teardown (link-down events to peers) runs in
  // FlushClosing(), outside whatever handler found the problem.
  if (c.closing) return;
  c.closing = true;
  c.events.Bump();  // the client pumps and finds why (or EOF) at once
  if (!c.hello) --unclaimed_;
  Log(absl::StrCat(c.Who(), " gone: ", why));
  closing_.push_back(c.id);
  close_reason_[c.id] = why;
}

void Clients::AnswerAndClose(Client& c, const absl::Status& answer, const std::string& why) {
  SendError(c.fd.get(), answer);
  Close(c, why);
}

void Clients::FlushClosing() {
  bool trim = false;
  while (!closing_.empty()) {
    const uint64_t id = closing_.back();
    closing_.pop_back();
    auto it = clients_.find(id);
    if (it == clients_.end()) continue;
    Client& c = *it->second;
    // A client dropped with a large backlog (a flooder that did not read)
    // leaves free memory inside the heap; give it back to the system.
    trim |= c.out_bytes > (size_t{64} << 10);
    Queued(c, -static_cast<ptrdiff_t>(c.out_bytes));
    c.out.clear();
    // Read what the client sent after the message that got it dropped: a
    // socket closed with unread data resets the peer's connection, and the
    // client would lose the error reply that says why it was dropped.
    Drain(c.fd.get(), 256);
    const std::string why = close_reason_[id];
    close_reason_.erase(id);
    trim |= listener_.OnClientGone(c, why);  // its links' tables are freed too
    for (auto [pending, kind] : {std::pair{c.in_pending, Kind::kClientIn}, std::pair{c.out_pending, Kind::kClientOut}}) {
      if (pending) loop_.Cancel(kind, c.id);
    }
    clients_.erase(it);
  }
  if (trim) ::malloc_trim(0);
}

void Clients::ShutdownAll() {
  for (auto& [id, c] : clients_) ::shutdown(c->fd.get(), SHUT_RDWR);
}

}  // namespace hsid
