#include "server.h"

#include <fcntl.h>
#include <liburing.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "hsi/address.h"
#include "hsi/doorbell.h"
#include "hsi/fd.h"
#include "hsi/ring.h"
#include "hsi/segment.h"
#include "internal/protocol.h"
#include "internal/ring_layout.h"
#include "internal/syscall.h"
#include "listen_socket.h"
#include "reclaim.h"

namespace hsid {
namespace {

using hsi::Address;
using hsi::UniqueFd;
using hsi::internal::Direction;
using hsi::internal::ErrnoStatus;
using hsi::internal::Message;
using hsi::internal::MsgType;
using hsi::internal::OutMessage;
namespace wire = hsi::internal;

constexpr size_t kMaxQueued = 4096;            // unsent messages per client
constexpr size_t kMaxQueuedBytes = size_t{1} << 20;  // and their bytes
constexpr int kMaxMessagesPerWakeup = 64;      // fairness between clients
constexpr absl::Duration kSetupTimeout = absl::Seconds(5);
constexpr absl::Duration kSetupSpin = absl::Microseconds(150);
constexpr absl::Duration kRecoveryWindow = absl::Milliseconds(400);

enum Kind : uint64_t { kListen = 1, kSignal = 2, kClientIn = 3, kClientOut = 4, kTimer = 5, kIgnore = 6, kBell = 7 };
uint64_t Tag(Kind k, uint64_t id) { return (uint64_t{k} << 56) | (id & ((uint64_t{1} << 56) - 1)); }

void Log(const std::string& line) { std::fprintf(stderr, "hsid: %s\n", line.c_str()); }

// hsid's mapping of a client's event page; unmapped with the client.
class EventPage {
 public:
  EventPage() = default;
  EventPage(const EventPage&) = delete;
  EventPage& operator=(const EventPage&) = delete;
  ~EventPage() {
    if (word_ != nullptr) ::munmap(word_, wire::kEventPageSize);
  }
  // Creates the page and returns the fd for the client (sealed against new
  // writers and resizing after hsid's own mapping is made).
  absl::StatusOr<UniqueFd> Create() {
    absl::StatusOr<UniqueFd> fd = hsi::Segment::CreateMemfd("hsi-events", wire::kEventPageSize);
    if (!fd.ok()) return fd.status();
    void* p = ::mmap(nullptr, wire::kEventPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd->get(), 0);
    if (p == MAP_FAILED) return ErrnoStatus(errno, "mmap event page");
    if (::fcntl(fd->get(), F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0) {
      ::munmap(p, wire::kEventPageSize);
      return ErrnoStatus(errno, "seal event page");
    }
    if (word_ != nullptr) ::munmap(word_, wire::kEventPageSize);
    word_ = static_cast<uint64_t*>(p);
    return fd;
  }
  bool valid() const { return word_ != nullptr; }
  // Release pairs with the client's acquire load in MaybePump(): the event
  // is on its socket before the word moves.
  void Bump() {
    if (word_ != nullptr) __atomic_fetch_add(word_, 1, __ATOMIC_RELEASE);
  }

 private:
  uint64_t* word_ = nullptr;
};

struct Client {
  uint64_t id = 0;
  UniqueFd fd;
  uint32_t uid = 0, gid = 0, pid = 0;
  std::vector<uint32_t> gids;
  std::string lpar;  // empty until claimed
  bool admin = false;
  std::deque<OutMessage> out;
  size_t out_bytes = 0;  // bytes in `out`
  // The hello: the first message must be a ClaimRequest, and one must
  // succeed before hello_deadline (config hello_timeout_ms).
  bool hello = false;
  absl::Time hello_deadline = absl::InfiniteFuture();
  bool in_pending = false, out_pending = false;
  bool closing = false;
  uint32_t in_flight = 0;  // link setups requested and not finished
  int sniff_chpid = -1;    // CHPID this client taps (hsi-dump), -1: none
  // The client's event page (wire::kEventPageSize, mapped read-write here,
  // sealed so that no one else can map it writable; the client maps it
  // read-only): its first word counts the events sent to this client.
  // hsid keeps the mapping only, no fd: a client costs hsid one fd.
  EventPage events;
  // What any other client may be told of this one: its LPAR name, not its
  // pid or uid (issue 13: say only what the asker may know).
  std::string Public() const { return lpar.empty() ? std::string("a client with no LPAR") : absl::StrCat("LPAR \"", lpar, "\""); }
  // For the log, and for answers to admins or to the same uid.
  std::string Who() const {
    return lpar.empty() ? absl::StrCat("pid ", pid, " uid ", uid)
                        : absl::StrCat("LPAR \"", lpar, "\" (pid ", pid, " uid ", uid, ")");
  }
};

struct Nic {
  uint32_t id = 0;
  uint64_t client = 0;
  uint32_t chpid = 0;
  Address address;
  hsi::Doorbell bell;
  bool bell_private = false;  // `bell` is hsid's own open file (non-blocking for good)
  bool bell_pending = false;  // an io_uring write to `bell` is in flight
  bool up = true;
  std::set<uint32_t> links;
};

struct LinkEnd {
  uint32_t nic = 0;  // 0: not (yet) known (relink waiting for the peer)
  Address address;
  UniqueFd segment;  // kept to read counters
  bool sealed = false;
};

struct Link {
  enum State { kSetup, kReady, kRelinkWait };
  uint32_t id = 0;
  uint32_t chpid = 0;
  State state = kSetup;
  LinkEnd a, b;
  uint64_t requester = 0;  // client whose in_flight counts this setup
  absl::Time deadline = absl::InfiniteFuture();
};

class ServerImpl : public Server {
 public:
  explicit ServerImpl(ServerOptions o) : opt_(std::move(o)), config_(opt_.config) {}
  ~ServerImpl() override;
  absl::Status Init();
  absl::Status Run() override;

 private:
  // io_uring plumbing
  io_uring_sqe* Sqe();
  void ArmPoll(int fd, uint32_t mask, uint64_t tag);
  void ArmClient(Client& c);
  void ArmTimer();
  void OnAccept();
  void OnClientIn(uint64_t id, int res);
  void OnClientOut(uint64_t id);
  void OnTimer();
  void CloseClient(Client& c, const std::string& why);
  // Events (messages with request id 0) are counted in the client's event
  // page once they are on its socket, so its data path sees them at once.
  static bool IsEvent(const OutMessage& m);
  static void Published(Client& c);
  // Answers a connection hsid will not serve with `why` and reads what the
  // client already sent, so that closing it does not reset the connection
  // before the client has read the answer (the caller closes it).
  static void Refuse(int fd, const absl::Status& why);
  // Whether queueing `bytes` more for client `c` stays within the per-uid
  // and global caps; else the reason, naming the cap.
  std::string QueueCap(const Client& c, size_t bytes) const;
  // Adds `delta` to the bytes queued for `c` (and its uid's, and the total).
  void Queued(Client& c, ptrdiff_t delta);
  void FlushClosing();

  // messages
  void Send(Client& c, OutMessage m);
  template <typename T>
  void Reply(Client& c, uint32_t req, const T& body) {
    Send(c, wire::Encode(req, body));
  }
  template <typename T>
  void ReplyError(Client& c, uint32_t req, const absl::Status& s) {
    T body = wire::Zeroed<T>();
    body.status = wire::ToWire(s);
    Reply(c, req, body);
  }
  void Handle(Client& c, Message& m);
  void OnClaim(Client& c, const Message& m);
  void OnAttach(Client& c, Message& m);
  void OnDetach(Client& c, const Message& m);
  void OnLink(Client& c, const Message& m);
  void OnSealed(Client& c, const Message& m);
  void OnClose(Client& c, const Message& m);
  // The end with NIC `nic_id` of link `link_id`, named by client `c` in a
  // notice `msg` (LinkSealed, LinkClose). nullptr if the link is already
  // gone (a race, not a fault), or if hsid never offered that link or that
  // end is not the client's: a protocol violation, answered, and the client
  // dropped.
  LinkEnd* NoticeEnd(Client& c, absl::string_view msg, uint32_t link_id, uint32_t nic_id);
  void OnRelink(Client& c, Message& m);
  void OnPeers(Client& c, const Message& m);
  void OnDefineChpid(Client& c, const Message& m);
  void OnUndefineChpid(Client& c, const Message& m);
  void OnSetNic(Client& c, const Message& m);
  void OnList(Client& c, const Message& m);
  void OnSniff(Client& c, const Message& m);
  // Hands a ready link's two sealed segments, read-only by the seals, to
  // every sniffer of its CHPID (or only to `only`).
  void OfferToSniffers(const Link& l, Client* only = nullptr);
  void SniffersGone(const Link& l);

  // tables
  Client* FindClient(uint64_t id) {
    auto it = clients_.find(id);
    return it == clients_.end() || it->second->closing ? nullptr : it->second.get();
  }
  absl::StatusOr<Nic*> OwnNic(Client& c, uint32_t nic_id);
  Nic* NicAt(Address a) {
    auto it = by_address_.find(a.value());
    return it == by_address_.end() ? nullptr : &nics_.at(it->second);
  }
  uint32_t LinksOf(const std::string& lpar) const;
  uint32_t NicsOf(uint64_t client) const;
  absl::Status CheckAdmin(const Client& c, const char* op) const;
  void SendDown(uint32_t nic_id, uint32_t link_id, uint32_t reason, const std::string& text);
  // Removes a link; notifies the ends listed in `notify` (nic ids).
  void DropLink(uint32_t link_id, uint32_t reason, const std::string& text_for_a,
                const std::string& text_for_b, bool notify_a, bool notify_b);
  void FinishSetup(Link& l);
  void SendToNic(uint32_t nic_id, OutMessage m);
  void RemoveNic(uint32_t nic_id, uint32_t reason, const std::string& why);
  void EndSetup(Link& l);
  wire::WireDirection Counters(const UniqueFd& from, const UniqueFd& to) const;
  wire::WireDirStats Stats(const UniqueFd& from, const UniqueFd& to) const;

  ServerOptions opt_;
  Config& config_;
  UniqueFd listen_;
  UniqueFd signal_fd_;
  // Held so that at EMFILE hsid can still accept a newcomer to refuse it:
  // a connection left in the backlog keeps the listening socket readable
  // and would spin the event loop.
  UniqueFd reserve_fd_;
  uint64_t refused_ = 0;  // connections refused for want of fds, not yet logged
  absl::Time refusal_logged_ = absl::InfinitePast();
  uint64_t refused_unclaimed_ = 0;  // refused by max_unclaimed_per_uid, not yet logged
  absl::Time unclaimed_logged_ = absl::InfinitePast();
  uint64_t unclaimed_ = 0;  // clients that have not completed their hello
  uint64_t refused_cap_ = 0;  // refused by max_connections(_per_uid), not yet logged
  absl::Time cap_logged_ = absl::InfinitePast();
  // Bytes queued in clients' `out`, per uid and in all (max_queued_bytes*).
  absl::flat_hash_map<uint32_t, size_t> queued_by_uid_;
  size_t queued_ = 0;
  io_uring ring_{};
  bool ring_ok_ = false;
  bool timer_pending_ = false;
  __kernel_timespec timer_ts_{};
  bool stop_ = false;

  uint64_t next_client_ = 1;
  uint32_t next_nic_ = 1;
  uint32_t next_link_ = 1;
  uint32_t setups_pending_ = 0;  // links in setup with a requester (EndSetup not yet run)
  std::map<uint64_t, std::unique_ptr<Client>> clients_;
  std::map<uint32_t, Nic> nics_;
  absl::flat_hash_map<uint32_t, uint32_t> by_address_;  // address -> nic id
  std::map<uint32_t, Link> links_;
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> by_pair_;  // (addr lo, addr hi) -> link id
  std::vector<uint64_t> closing_;
  std::map<uint64_t, std::string> close_reason_;
  absl::Time recovery_until_ = absl::InfinitePast();
  // Names and addresses of the previous hsid's clients, held for them
  // (reclaim.h), and whether the state file needs writing.
  ReclaimHolds holds_;
  StateFile state_file_;
  bool state_dirty_ = false;
  void SaveState();
  std::vector<std::pair<uint64_t, Message>> deferred_;  // attaches waiting for recovery
};

// The memfd name of a NIC's ring segments ("hsi-10.240.0.1"), which hsid
// gives every segment it makes: a relink must hand in one of its own.
std::string SegmentName(Address a) { return absl::StrCat("hsi-", a.ToString()); }

// The name a memfd was created with ("" if `fd` is not a memfd).
std::string MemfdName(int fd) {
  char buf[256];
  const ssize_t n = ::readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  absl::string_view v(buf, static_cast<size_t>(n));
  if (!absl::ConsumePrefix(&v, "/memfd:")) return "";
  absl::ConsumeSuffix(&v, " (deleted)");
  return std::string(v);
}

// Invariant 1: the owner has sealed `fd` against new writers (then no one,
// a peer or a sniffer, can map it writable any more).
bool SealedAgainstWrites(int fd) {
  const int seals = ::fcntl(fd, F_GET_SEALS);
  return seals >= 0 && (seals & F_SEAL_FUTURE_WRITE) != 0;
}

std::pair<uint32_t, uint32_t> PairKey(Address x, Address y) {
  return x < y ? std::make_pair(x.value(), y.value()) : std::make_pair(y.value(), x.value());
}

// ------------------------------------------------------------ setup

absl::Status ServerImpl::Init() {
  // Not dumpable: no process of hsid's uid (short of CAP_SYS_PTRACE) may
  // open /proc/<hsid>/fd, where every segment lies writable until its owner
  // seals it (issue 13; docs/reliability.md says what remains within a uid).
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return ErrnoStatus(errno, "prctl(PR_SET_DUMPABLE, 0)");
  absl::StatusOr<ListenSocket> ls = OpenListenSocket(opt_.socket_path, ::geteuid());
  if (!ls.ok()) return ls.status();
  listen_ = std::move(ls->fd);
  opt_.socket_path = ls->path;
  const std::string state_path = absl::StrCat(ls->path, ".state");
  if (absl::StatusOr<HeldState> held = state_file_.Open(state_path); held.ok()) {
    if (!held->lpars.empty() || !held->nics.empty()) {
      const absl::Duration grace = absl::Milliseconds(config_.reclaim_grace_ms);
      Log(absl::StrCat("holding ", held->lpars.size(), " LPAR names and ", held->nics.size(),
                       " NIC addresses of the previous hsid for their owners for up to ",
                       absl::FormatDuration(grace), " (", state_path, ")"));
      holds_.Hold(std::move(*held), absl::Now() + grace);
    }
  } else {
    Log(absl::StrCat("ignoring the state file: ", held.status().message()));
  }
  state_dirty_ = state_file_.fd_ok();  // it describes this hsid's (empty) tables from now on
  if (ls->stale) {
    // The previous hsid died without cleaning up: its clients will
    // re-register their NICs with their old addresses. Hold back dynamic
    // address assignment briefly so that a newcomer does not take one.
    recovery_until_ = absl::Now() + kRecoveryWindow;
    Log(absl::StrCat("found a stale socket: assigning new addresses only after ",
                     absl::FormatDuration(kRecoveryWindow), " while clients re-register"));
  }
  reserve_fd_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!reserve_fd_.valid()) return ErrnoStatus(errno, "open /dev/null (reserve fd)");
  // hsid holds two segment fds per link and a doorbell per NIC: a CHPID
  // with 64 NICs all linked needs over 4000. Raise the soft fd limit to the
  // hard one (hsid never uses select(), so high fd numbers are fine).
  if (rlimit lim{}; ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &lim) < 0) Log(absl::StrCat("raising RLIMIT_NOFILE: ", std::strerror(errno)));
  }

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) < 0) return ErrnoStatus(errno, "sigprocmask");
  ::signal(SIGPIPE, SIG_IGN);
  signal_fd_ = UniqueFd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_.valid()) return ErrnoStatus(errno, "signalfd");

  int r = io_uring_queue_init(512, &ring_, 0);
  if (r < 0) return ErrnoStatus(-r, "io_uring_queue_init");
  ring_ok_ = true;
  return absl::OkStatus();
}

ServerImpl::~ServerImpl() {
  clients_.clear();
  if (ring_ok_) io_uring_queue_exit(&ring_);
  if (listen_.valid()) ::unlink(opt_.socket_path.c_str());
}

void ServerImpl::SaveState() {
  state_dirty_ = false;
  HeldState st;
  for (const auto& [id, c] : clients_) {
    if (!c->closing && !c->lpar.empty()) st.lpars[c->lpar] = c->uid;
  }
  for (const auto& [id, n] : nics_) {
    const Client* c = FindClient(n.client);
    if (c != nullptr && !c->lpar.empty()) st.nics[{n.chpid, n.address.value()}] = c->lpar;
  }
  if (absl::Status s = state_file_.Save(st); !s.ok()) Log(absl::StrCat("state file: ", s.message()));
}

io_uring_sqe* ServerImpl::Sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  // A submit empties the submission queue, so this is a bug, not a state.
  if (sqe == nullptr) std::abort();
  return sqe;
}

void ServerImpl::ArmPoll(int fd, uint32_t mask, uint64_t tag) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_poll_add(sqe, fd, mask);
  io_uring_sqe_set_data64(sqe, tag);
}

void ServerImpl::ArmClient(Client& c) {
  if (c.closing) return;
  if (!c.in_pending) {
    ArmPoll(c.fd.get(), POLLIN | POLLRDHUP, Tag(kClientIn, c.id));
    c.in_pending = true;
  }
  if (!c.out.empty() && !c.out_pending) {
    ArmPoll(c.fd.get(), POLLOUT, Tag(kClientOut, c.id));
    c.out_pending = true;
  }
}

void ServerImpl::ArmTimer() {
  if (timer_pending_) return;
  bool need = !deferred_.empty() || unclaimed_ > 0 || holds_.active();
  for (auto it = links_.begin(); !need && it != links_.end(); ++it) need = it->second.deadline != absl::InfiniteFuture();
  if (!need) return;
  timer_ts_ = {0, 100 * 1000 * 1000};  // sweep deadlines every 100 ms while any exist
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_timeout(sqe, &timer_ts_, 0, 0);
  io_uring_sqe_set_data64(sqe, Tag(kTimer, 0));
  timer_pending_ = true;
}

absl::Status ServerImpl::Run() {
  Log(absl::StrCat("serving ", opt_.socket_path, " with config ", config_.source, " (",
                   config_.chpids.size(), " CHPIDs)"));
  ArmPoll(listen_.get(), POLLIN, Tag(kListen, 0));
  ArmPoll(signal_fd_.get(), POLLIN, Tag(kSignal, 0));
  while (!stop_) {
    // A link setup in progress waits for both ends' LinkSealed, which come
    // within tens of microseconds, sooner than a sleeping hsid would be
    // woken for them on a busy host: check the completion queue without
    // sleeping for up to kSetupSpin first, yielding the CPU (the ends may
    // need it) between checks. Idle hsid never spins.
    if (setups_pending_ > 0) {
      io_uring_submit(&ring_);
      const absl::Time spin_end = absl::Now() + kSetupSpin;
      while (io_uring_cq_ready(&ring_) == 0 && absl::Now() < spin_end) ::sched_yield();
    }
    int r = io_uring_submit_and_wait(&ring_, 1);
    // EAGAIN/EBUSY: the kernel is short of memory or the completion queue
    // overflowed; reaping completions below makes room, so go on.
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) return ErrnoStatus(-r, "io_uring_submit_and_wait");
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    std::vector<std::pair<uint64_t, int>> events;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      events.emplace_back(io_uring_cqe_get_data64(cqe), cqe->res);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    for (auto [tag, res] : events) {
      const auto kind = static_cast<Kind>(tag >> 56);
      const uint64_t id = tag & ((uint64_t{1} << 56) - 1);
      switch (kind) {
        case kListen:
          OnAccept();
          ArmPoll(listen_.get(), POLLIN, Tag(kListen, 0));
          break;
        case kSignal: {
          signalfd_siginfo si;
          while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
            Log(absl::StrCat("signal ", si.ssi_signo, ": shutting down"));
            stop_ = true;
          }
          if (!stop_) ArmPoll(signal_fd_.get(), POLLIN, Tag(kSignal, 0));
          break;
        }
        case kClientIn:
          OnClientIn(id, res);
          break;
        case kClientOut:
          OnClientOut(id);
          break;
        case kTimer:
          timer_pending_ = false;
          OnTimer();
          break;
        case kBell:
          if (auto n = nics_.find(static_cast<uint32_t>(id)); n != nics_.end()) n->second.bell_pending = false;
          break;
        case kIgnore:
          break;
      }
      FlushClosing();
    }
    for (auto& [id, c] : clients_) ArmClient(*c);
    ArmTimer();
    if (state_dirty_ && state_file_.fd_ok()) SaveState();
  }
  for (auto& [id, c] : clients_) ::shutdown(c->fd.get(), SHUT_RDWR);
  return absl::OkStatus();
}

void ServerImpl::OnAccept() {
  for (;;) {
    int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE) && reserve_fd_.valid()) {
      // Out of fds: accept the newcomer on the reserve fd, tell it why and
      // close it, so that it gets an answer and the loop does not spin on a
      // listening socket that stays readable. Existing clients are served on.
      const int err = errno;
      reserve_fd_.Reset();
      UniqueFd refused(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      const bool got = refused.valid();
      if (got) {
        rlimit lim{};
        ::getrlimit(RLIMIT_NOFILE, &lim);
        wire::ErrorReply e = wire::Zeroed<wire::ErrorReply>();
        e.status = wire::ToWire(absl::ResourceExhaustedError(absl::StrCat(
            "hsid is out of file descriptors (", std::strerror(err), ", RLIMIT_NOFILE ", lim.rlim_cur,
            "); connection refused, try again later")));
        (void)wire::TrySend(refused.get(), wire::Encode(0, e));
        ++refused_;
      }
      refused.Reset();
      reserve_fd_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      if (absl::Now() - refusal_logged_ >= absl::Seconds(1)) {
        rlimit lim{};
        ::getrlimit(RLIMIT_NOFILE, &lim);
        Log(absl::StrCat("out of file descriptors (", std::strerror(err), ", RLIMIT_NOFILE ", lim.rlim_cur, ", ",
                         clients_.size(), " clients): refused ", refused_,
                         " new connection(s); existing clients are served on"));
        refusal_logged_ = absl::Now();
        refused_ = 0;
      }
      if (!got || !reserve_fd_.valid()) return;
      continue;
    }
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR) Log(absl::StrCat("accept: ", std::strerror(errno)));
      if (errno == EINTR) continue;
      return;
    }
    auto c = std::make_unique<Client>();
    c->id = next_client_++;
    c->fd = UniqueFd(fd);
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
      Log(absl::StrCat("SO_PEERCRED: ", std::strerror(errno), "; refusing connection"));
      continue;
    }
    c->uid = cred.uid;
    c->gid = cred.gid;
    c->pid = static_cast<uint32_t>(cred.pid);
    gid_t groups[256];
    len = sizeof(groups);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
      for (size_t i = 0; i < len / sizeof(gid_t); ++i) c->gids.push_back(groups[i]);
    }
    c->gids.push_back(cred.gid);
    c->admin = c->uid == 0 ||
               std::find(config_.admin_uids.begin(), config_.admin_uids.end(), c->uid) != config_.admin_uids.end();
    for (uint32_t g : c->gids) {
      c->admin |= std::find(config_.admin_gids.begin(), config_.admin_gids.end(), g) != config_.admin_gids.end();
    }
    // A flood of connections that never say hello is bounded per uid, so
    // that one uid cannot use up hsid's fds for everyone.
    uint32_t pending = 0;
    // A connection that claimed no LPAR name (an admin tool, a sniffer)
    // still counts for a non-admin uid: else an empty ClaimRequest would
    // take it past this cap.
    for (const auto& [oid, o] : clients_) {
      pending += !o->closing && o->uid == c->uid && (!o->hello || (o->lpar.empty() && !o->admin));
    }
    // One uid's connections in all, and everyone's (issue 13: one tenant
    // held 3000 claimed connections through a wildcard LPAR).
    uint32_t of_uid = 0, live = 0;
    for (const auto& [oid, o] : clients_) {
      live += !o->closing;
      of_uid += !o->closing && o->uid == c->uid;
    }
    std::string cap;
    if (of_uid >= config_.max_connections_per_uid) {
      cap = absl::StrCat("uid ", c->uid, " already holds ", of_uid, " connections (max_connections_per_uid = ",
                         config_.max_connections_per_uid, " in config ", config_.source, ")");
    } else if (live >= config_.max_connections) {
      cap = absl::StrCat("hsid already serves ", live, " connections (max_connections = ", config_.max_connections,
                         " in config ", config_.source, ")");
    }
    if (!cap.empty()) {
      Refuse(fd, absl::ResourceExhaustedError(absl::StrCat(cap, "; connection refused")));
      if (absl::Now() - cap_logged_ >= absl::Seconds(1)) {
        Log(absl::StrCat("pid ", c->pid, ": ", cap, "; refused (", refused_cap_, " more refused since the last such line)"));
        cap_logged_ = absl::Now();
        refused_cap_ = 0;
      } else {
        ++refused_cap_;
      }
      continue;  // `c` closes the connection
    }
    if (pending >= config_.max_unclaimed_per_uid) {
      Refuse(fd, absl::ResourceExhaustedError(absl::StrCat(
          "uid ", c->uid, " already has ", pending, " connections that have not claimed (max_unclaimed_per_uid = ",
          config_.max_unclaimed_per_uid, " in config ", config_.source, "); connection refused")));
      ++refused_unclaimed_;
      if (absl::Now() - unclaimed_logged_ >= absl::Seconds(1)) {
        Log(absl::StrCat("uid ", c->uid, " (pid ", c->pid, ") holds ", pending,
                         " connections that have not claimed: refused ", refused_unclaimed_,
                         " new connection(s) (max_unclaimed_per_uid = ", config_.max_unclaimed_per_uid, ")"));
        unclaimed_logged_ = absl::Now();
        refused_unclaimed_ = 0;
      }
      continue;  // `c` closes the connection
    }
    c->hello_deadline = absl::Now() + absl::Milliseconds(config_.hello_timeout_ms);
    ++unclaimed_;
    if (opt_.verbose) Log(absl::StrCat("client ", c->id, " connected: ", c->Who()));
    clients_[c->id] = std::move(c);
  }
}

void ServerImpl::OnClientIn(uint64_t id, int res) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  Client& c = *it->second;
  c.in_pending = false;
  if (c.closing) return;
  if (res < 0) {
    CloseClient(c, absl::StrCat("poll error ", -res));
    return;
  }
  for (int i = 0; i < kMaxMessagesPerWakeup && !c.closing; ++i) {
    absl::StatusOr<std::optional<Message>> m = wire::TryReceive(c.fd.get(), Direction::kToDaemon);
    if (!m.ok()) {
      if (m.status().code() == absl::StatusCode::kResourceExhausted) {
        // hsid is out of fds: the message's fds are lost, so the request
        // cannot be served. Answer why and drop this client (it reconnects).
        wire::ErrorReply e = wire::Zeroed<wire::ErrorReply>();
        e.status = wire::ToWire(m.status());
        (void)wire::TrySend(c.fd.get(), wire::Encode(0, e));
        CloseClient(c, std::string(m.status().message()));
      } else if (m.status().code() == absl::StatusCode::kInvalidArgument) {
        // Malformed: answer, then drop this client; everyone else is served on.
        wire::ErrorReply e = wire::Zeroed<wire::ErrorReply>();
        e.status = wire::ToWire(m.status());
        (void)wire::TrySend(c.fd.get(), wire::Encode(0, e));
        CloseClient(c, absl::StrCat("malformed message: ", m.status().message()));
      } else {
        CloseClient(c, m.status().code() == absl::StatusCode::kUnavailable ? "disconnected"
                                                                           : std::string(m.status().message()));
      }
      return;
    }
    if (!m->has_value()) return;
    Handle(c, **m);
  }
}

void ServerImpl::OnClientOut(uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  Client& c = *it->second;
  c.out_pending = false;
  while (!c.closing && !c.out.empty()) {
    absl::StatusOr<bool> sent = wire::TrySend(c.fd.get(), c.out.front());
    if (!sent.ok()) {
      CloseClient(c, std::string(sent.status().message()));
      return;
    }
    if (!*sent) return;
    Queued(c, -static_cast<ptrdiff_t>(c.out.front().bytes.size()));
    if (IsEvent(c.out.front())) Published(c);
    c.out.pop_front();
  }
}

bool ServerImpl::IsEvent(const OutMessage& m) {
  wire::MsgHeader h;
  if (m.bytes.size() < sizeof(h)) return false;
  std::memcpy(&h, m.bytes.data(), sizeof(h));
  return h.request_id == 0;
}

void ServerImpl::Published(Client& c) { c.events.Bump(); }

void ServerImpl::Send(Client& c, OutMessage m) {
  if (c.closing) return;
  if (c.out.empty()) {
    absl::StatusOr<bool> sent = wire::TrySend(c.fd.get(), m);
    if (!sent.ok()) {
      CloseClient(c, std::string(sent.status().message()));
      return;
    }
    if (*sent) {
      if (IsEvent(m)) Published(c);
      return;
    }
  }
  if (c.out.size() >= kMaxQueued || c.out_bytes + m.bytes.size() > kMaxQueuedBytes) {
    CloseClient(c, absl::StrCat("not reading its control socket (", c.out.size(), " messages, ", c.out_bytes,
                                " bytes queued; limits ", kMaxQueued, " messages, ", kMaxQueuedBytes, " bytes)"));
    return;
  }
  if (std::string cap = QueueCap(c, m.bytes.size()); !cap.empty()) {
    CloseClient(c, absl::StrCat("not reading its control socket (", c.out_bytes, " bytes queued for it): ", cap));
    return;
  }
  Queued(c, static_cast<ptrdiff_t>(m.bytes.size()));
  c.out.push_back(std::move(m));
}

std::string ServerImpl::QueueCap(const Client& c, size_t bytes) const {
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

void ServerImpl::Queued(Client& c, ptrdiff_t delta) {
  c.out_bytes += delta;
  queued_ += delta;
  size_t& u = queued_by_uid_[c.uid];
  u += delta;
  if (u == 0) queued_by_uid_.erase(c.uid);
}

void ServerImpl::Refuse(int fd, const absl::Status& why) {
  wire::ErrorReply e = wire::Zeroed<wire::ErrorReply>();
  e.status = wire::ToWire(why);
  (void)wire::TrySend(fd, wire::Encode(0, e));
  for (int i = 0; i < 16; ++i) {
    absl::StatusOr<std::optional<Message>> m = wire::TryReceive(fd, Direction::kToDaemon);
    if (m.ok() ? !m->has_value() : m.status().code() != absl::StatusCode::kInvalidArgument) break;
  }
}

void ServerImpl::CloseClient(Client& c, const std::string& why) {
  // Only marks: the teardown (link-down events to peers) runs in
  // FlushClosing(), outside whatever handler found the problem.
  if (c.closing) return;
  c.closing = true;
  Published(c);  // the client pumps and finds why (or EOF) at once
  if (!c.hello) --unclaimed_;
  Log(absl::StrCat(c.Who(), " gone: ", why));
  closing_.push_back(c.id);
  close_reason_[c.id] = why;
  state_dirty_ |= !c.lpar.empty();
}

void ServerImpl::FlushClosing() {
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
    for (int i = 0; i < 256; ++i) {
      absl::StatusOr<std::optional<Message>> m = wire::TryReceive(c.fd.get(), Direction::kToDaemon);
      if (m.ok() ? !m->has_value() : m.status().code() != absl::StatusCode::kInvalidArgument) break;
    }
    const std::string why = close_reason_[id];
    close_reason_.erase(id);
    std::vector<uint32_t> mine;
    for (const auto& [nid, n] : nics_) {
      if (n.client == c.id) mine.push_back(nid);
    }
    trim |= !mine.empty();  // its links' tables are freed too
    for (uint32_t nic : mine) {
      RemoveNic(nic, wire::kDownPeerGone,
                absl::StrCat("its LPAR \"", c.lpar, "\" disconnected (", why, ")"));
    }
    for (auto& [lid, l] : links_) {
      if (l.requester == c.id) EndSetup(l);
    }
    for (auto [pending, kind] : {std::pair{c.in_pending, kClientIn}, std::pair{c.out_pending, kClientOut}}) {
      if (!pending) continue;
      io_uring_sqe* sqe = Sqe();
      io_uring_prep_cancel64(sqe, Tag(kind, c.id), 0);
      io_uring_sqe_set_data64(sqe, Tag(kIgnore, 0));
    }
    clients_.erase(it);
  }
  if (trim) ::malloc_trim(0);
}

void ServerImpl::OnTimer() {
  const absl::Time now = absl::Now();
  if (holds_.active()) {
    holds_.Expire(now);
    if (!holds_.active()) Log("the previous hsid's names and addresses are no longer held");
  }
  if (unclaimed_ > 0) {
    for (auto& [cid, c] : clients_) {
      if (c->closing || c->hello || c->hello_deadline > now) continue;
      const std::string why = absl::StrCat("no ClaimRequest (hello) within ",
                                           absl::FormatDuration(absl::Milliseconds(config_.hello_timeout_ms)),
                                           " of connecting (hello_timeout_ms in config ", config_.source, ")");
      wire::ErrorReply e = wire::Zeroed<wire::ErrorReply>();
      e.status = wire::ToWire(absl::DeadlineExceededError(absl::StrCat(why, "; closing the connection")));
      (void)wire::TrySend(c->fd.get(), wire::Encode(0, e));
      CloseClient(*c, why);
    }
  }
  if (!deferred_.empty() && now >= recovery_until_) {
    std::vector<std::pair<uint64_t, Message>> todo = std::move(deferred_);
    deferred_.clear();
    for (auto& [cid, m] : todo) {
      if (Client* c = FindClient(cid)) OnAttach(*c, m);
    }
  }
  std::vector<uint32_t> expired;
  for (const auto& [id, l] : links_) {
    if (l.deadline <= now) expired.push_back(id);
  }
  for (uint32_t id : expired) {
    auto it = links_.find(id);
    if (it == links_.end()) continue;
    Link& l = it->second;
    if (l.state == Link::kSetup) {
      const std::string t = absl::StrCat("link ", l.a.address.ToString(), "<->", l.b.address.ToString(),
                                         ": setup timed out (an end did not seal its segment within ",
                                         absl::FormatDuration(kSetupTimeout), ")");
      DropLink(id, wire::kDownSetupFailed, t, t, true, true);
    } else if (l.state == Link::kRelinkWait) {
      DropLink(id, wire::kDownPeerLost,
               absl::StrCat("peer ", l.b.address.ToString(), " did not re-register within ",
                            absl::FormatDuration(absl::Milliseconds(config_.reclaim_grace_ms)), " after hsid restarted; its LPAR is gone"),
               "", true, false);
    }
  }
}

// ------------------------------------------------------------ tables

absl::StatusOr<Nic*> ServerImpl::OwnNic(Client& c, uint32_t nic_id) {
  auto it = nics_.find(nic_id);
  if (it == nics_.end() || it->second.client != c.id) {
    return absl::NotFoundError(absl::StrCat("NIC id ", nic_id, " is not attached by this client"));
  }
  return &it->second;
}

uint32_t ServerImpl::LinksOf(const std::string& lpar) const {
  uint32_t n = 0;
  for (const auto& [id, l] : links_) {
    for (const LinkEnd* e : {&l.a, &l.b}) {
      auto nit = nics_.find(e->nic);
      if (nit == nics_.end()) continue;
      auto cit = clients_.find(nit->second.client);
      if (cit != clients_.end() && cit->second->lpar == lpar) ++n;
    }
  }
  return n;
}

uint32_t ServerImpl::NicsOf(uint64_t client) const {
  uint32_t n = 0;
  for (const auto& [id, nic] : nics_) n += nic.client == client;
  return n;
}

absl::Status ServerImpl::CheckAdmin(const Client& c, const char* op) const {
  if (c.admin) return absl::OkStatus();
  // The admin lists are not the asker's to read.
  return absl::PermissionDeniedError(absl::StrCat("admin operation ", op, ": uid ", c.uid,
                                                  " is not an admin (root, or admin_uids/admin_gids in config ",
                                                  config_.source, ")"));
}

void ServerImpl::SendDown(uint32_t nic_id, uint32_t link_id, uint32_t reason, const std::string& text) {
  wire::LinkDown d = wire::Zeroed<wire::LinkDown>();
  d.link_id = link_id;
  d.nic_id = nic_id;
  d.reason = reason;
  wire::WireStatus w = wire::ToWire(absl::UnavailableError(text));
  std::memcpy(d.text, w.message, sizeof(d.text));
  SendToNic(nic_id, wire::Encode(0, d));
}

void ServerImpl::EndSetup(Link& l) {
  if (l.requester == 0) return;
  --setups_pending_;
  auto it = clients_.find(l.requester);
  if (it != clients_.end() && it->second->in_flight > 0) --it->second->in_flight;
  l.requester = 0;
}

void ServerImpl::DropLink(uint32_t link_id, uint32_t reason, const std::string& text_for_a,
                          const std::string& text_for_b, bool notify_a, bool notify_b) {
  auto it = links_.find(link_id);
  if (it == links_.end()) return;
  Link& l = it->second;
  EndSetup(l);
  if (notify_a && l.a.nic != 0) SendDown(l.a.nic, link_id, reason, text_for_a);
  if (notify_b && l.b.nic != 0) SendDown(l.b.nic, link_id, reason, text_for_b);
  for (const LinkEnd* e : {&l.a, &l.b}) {
    auto n = nics_.find(e->nic);
    if (n != nics_.end()) n->second.links.erase(link_id);
  }
  if (l.state == Link::kReady) SniffersGone(l);
  auto p = by_pair_.find(PairKey(l.a.address, l.b.address));
  if (p != by_pair_.end() && p->second == link_id) by_pair_.erase(p);
  if (opt_.verbose) Log(absl::StrCat("link ", link_id, " freed"));
  links_.erase(it);  // closes hsid's segment fds; the memory lives while an end maps it
}

void ServerImpl::RemoveNic(uint32_t nic_id, uint32_t reason, const std::string& why) {
  auto it = nics_.find(nic_id);
  if (it == nics_.end()) return;
  Nic& n = it->second;
  const std::vector<uint32_t> links(n.links.begin(), n.links.end());
  for (uint32_t lid : links) {
    auto lit = links_.find(lid);
    if (lit == links_.end()) continue;
    Link& l = lit->second;
    const bool is_a = l.a.nic == nic_id;
    const std::string text = absl::StrCat("link ", (is_a ? l.b.address : l.a.address).ToString(), "->",
                                          n.address.ToString(), " on CHPID ", ChpidName(n.chpid), ": peer ",
                                          n.address.ToString(), " is gone: ", why);
    DropLink(lid, reason, text, text, !is_a, is_a);
  }
  if (n.bell_pending) {
    // A write to a doorbell its owner made blocking and saturated never
    // completes on its own; cancelling it frees the io-wq worker.
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_cancel64(sqe, Tag(kBell, n.id), 0);
    io_uring_sqe_set_data64(sqe, Tag(kIgnore, 0));
  }
  by_address_.erase(n.address.value());
  nics_.erase(it);
  state_dirty_ = true;
}

wire::WireDirection ServerImpl::Counters(const UniqueFd& from, const UniqueFd& to) const {
  wire::WireDirection d{};
  using wire::SegmentLayout;
  alignas(128) unsigned char buf[sizeof(SegmentLayout)];
  auto word = [&](size_t off) {
    uint64_t v;
    std::memcpy(&v, buf + off, sizeof(v));
    return v;
  };
  if (from.valid() && ::pread(from.get(), buf, sizeof(buf), 0) == static_cast<ssize_t>(sizeof(buf))) {
    const size_t c = offsetof(SegmentLayout, tx_counters);
    d.frames = word(c);
    d.bytes = word(c + 8);
    d.full_events = word(c + 16);
    d.drops = word(c + 24);
  }
  if (to.valid() && ::pread(to.get(), buf, sizeof(buf), 0) == static_cast<ssize_t>(sizeof(buf))) {
    d.received = word(offsetof(SegmentLayout, rx_counters));
  }
  return d;
}

wire::WireDirStats ServerImpl::Stats(const UniqueFd& from, const UniqueFd& to) const {
  wire::WireDirStats d{};
  using wire::SegmentLayout;
  alignas(128) unsigned char buf[sizeof(SegmentLayout)];
  auto word = [&](size_t off) {
    uint64_t v;
    std::memcpy(&v, buf + off, sizeof(v));
    return v;
  };
  if (from.valid() && ::pread(from.get(), buf, sizeof(buf), 0) == static_cast<ssize_t>(sizeof(buf))) {
    const size_t c = offsetof(SegmentLayout, tx_counters);
    d.frames = word(c);
    d.bytes = word(c + 8);
    d.full_events = word(c + 16);
    d.drops = word(c + 24);
    d.wakeups_sent = word(c + 32);
  }
  if (to.valid() && ::pread(to.get(), buf, sizeof(buf), 0) == static_cast<ssize_t>(sizeof(buf))) {
    const size_t c = offsetof(SegmentLayout, rx_counters);
    d.rx_frames = word(c);
    d.rx_bytes = word(c + 8);
    d.rx_wakeups_sent = word(c + 16);
  }
  return d;
}

// ------------------------------------------------------------ requests

void ServerImpl::Handle(Client& c, Message& m) {
  if (opt_.verbose) Log(absl::StrCat(c.Who(), ": ", wire::MsgTypeName(static_cast<uint16_t>(m.type))));
  if (!c.hello && m.type != MsgType::kClaimRequest) {
    // Out of order: nothing but a ClaimRequest before a claim succeeded.
    const std::string what = absl::StrCat("protocol: ", wire::MsgTypeName(static_cast<uint16_t>(m.type)),
                                          " before a successful ClaimRequest (the first request must claim)");
    wire::ErrorReply e = wire::Zeroed<wire::ErrorReply>();
    e.status = wire::ToWire(absl::FailedPreconditionError(what));
    (void)wire::TrySend(c.fd.get(), wire::Encode(0, e));
    return CloseClient(c, absl::StrCat("protocol violation: ", what));
  }
  switch (m.type) {
    case MsgType::kClaimRequest: return OnClaim(c, m);
    case MsgType::kAttachRequest: return OnAttach(c, m);
    case MsgType::kDetachRequest: return OnDetach(c, m);
    case MsgType::kLinkRequest: return OnLink(c, m);
    case MsgType::kLinkSealed: return OnSealed(c, m);
    case MsgType::kLinkClose: return OnClose(c, m);
    case MsgType::kRelinkRequest: return OnRelink(c, m);
    case MsgType::kPeersRequest: return OnPeers(c, m);
    case MsgType::kDefineChpidRequest: return OnDefineChpid(c, m);
    case MsgType::kUndefineChpidRequest: return OnUndefineChpid(c, m);
    case MsgType::kSetNicRequest: return OnSetNic(c, m);
    case MsgType::kListRequest: return OnList(c, m);
    case MsgType::kSniffRequest: return OnSniff(c, m);
    default:
      break;  // Decode() admits only client-to-daemon types
  }
}

void ServerImpl::OnClaim(Client& c, const Message& m) {
  const auto req = m.As<wire::ClaimRequest>();
  const std::string name = wire::NameOf(req.lpar);
  auto fail = [&](absl::Status s) {
    Log(absl::StrCat(c.Who(), ": claim refused: ", s.message()));
    ReplyError<wire::ClaimReply>(c, m.request_id, s);
  };
  if (!c.lpar.empty()) {
    return fail(absl::FailedPreconditionError(absl::StrCat("this connection already claimed LPAR \"", c.lpar, "\"")));
  }
  if (!name.empty()) {
    if (name == "*") return fail(absl::InvalidArgumentError("\"*\" is not an LPAR name"));
    const LparConfig* policy = config_.FindLpar(name);
    if (policy == nullptr) {
      return fail(absl::PermissionDeniedError(absl::StrCat(
          "LPAR \"", name, "\": not defined (no [[lpar]] named \"", name, "\" or \"*\" in config ",
          config_.source, ")")));
    }
    bool allowed = std::find(policy->uids.begin(), policy->uids.end(), c.uid) != policy->uids.end();
    for (uint32_t g : c.gids) {
      allowed |= std::find(policy->gids.begin(), policy->gids.end(), g) != policy->gids.end();
    }
    if (!allowed) {
      // Who else may claim it is the policy's business: admins see the lists.
      return fail(absl::PermissionDeniedError(absl::StrCat(
          "LPAR \"", name, "\": uid ", c.uid, " (gid ", c.gid, ") may not claim it",
          c.admin ? absl::StrCat(": not in allowed uids ", JoinIds(policy->uids), " or gids ", JoinIds(policy->gids))
                  : std::string(),
          " (policy [[lpar]] name = \"", policy->name, "\" in config ", config_.source, ")")));
    }
    if (std::optional<uint32_t> holder = holds_.NameHeldFromOthers(name, c.uid)) {
      return fail(absl::UnavailableError(absl::StrCat(
          "LPAR \"", name, "\" is ", holds_.Why(c.admin ? absl::StrCat("uid ", *holder) : "its previous owner"))));
    }
    for (const auto& [id, other] : clients_) {
      if (!other->closing && other->lpar == name) {
        return fail(absl::AlreadyExistsError(absl::StrCat(
            "LPAR \"", name, "\" is already claimed by ",
            c.admin || c.uid == other->uid ? absl::StrCat("pid ", other->pid, " (uid ", other->uid, ")")
                                           : std::string("another process"))));
      }
    }
    c.lpar = name;
    holds_.ReleaseName(name);
    state_dirty_ = true;
    Log(absl::StrCat(c.Who(), (req.flags & wire::kClaimReclaim) ? " reclaimed" : " claimed"));
  }
  if (!c.hello) {
    c.hello = true;
    c.hello_deadline = absl::InfiniteFuture();
    --unclaimed_;
  }
  // A second (named) claim of a nameless connection gets a new page.
  absl::StatusOr<UniqueFd> page_fd = c.events.Create();
  if (!page_fd.ok()) {
    return fail(absl::ResourceExhaustedError(absl::StrCat("claim: hsid cannot make the event page: ",
                                                          page_fd.status().message())));
  }
  wire::ClaimReply r = wire::Zeroed<wire::ClaimReply>();
  r.uid = c.uid;
  r.is_admin = c.admin ? 1 : 0;
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(*page_fd));
  Send(c, wire::Encode(m.request_id, r, std::move(fds)));
}

void ServerImpl::OnAttach(Client& c, Message& m) {
  const auto req = m.As<wire::AttachRequest>();
  auto fail = [&](absl::Status s) { ReplyError<wire::AttachReply>(c, m.request_id, s); };
  if (c.lpar.empty()) return fail(absl::FailedPreconditionError("attach: claim an LPAR first"));
  const LparConfig* policy = config_.FindLpar(c.lpar);
  if (policy == nullptr) return fail(absl::PermissionDeniedError("attach: the LPAR's policy was removed"));
  auto cit = config_.chpids.find(req.chpid);
  if (cit == config_.chpids.end()) {
    std::vector<std::string> ids;
    for (const auto& [id, ch] : config_.chpids) ids.push_back(ChpidName(id));
    return fail(absl::NotFoundError(absl::StrCat("CHPID ", ChpidName(req.chpid), " is not defined (defined: ",
                                                 ids.empty() ? "none" : absl::StrJoin(ids, ", "), ")")));
  }
  const ChpidConfig& ch = cit->second;
  if (!ch.Allows(c.lpar)) {
    return fail(absl::PermissionDeniedError(absl::StrCat(
        "CHPID ", ChpidName(ch.id), ": LPAR \"", c.lpar, "\" is not in its allowed LPARs",
        c.admin ? absl::StrCat(" [", absl::StrJoin(ch.lpars, ", "), "]") : std::string(), " (config ", config_.source,
        ")")));
  }
  if (NicsOf(c.id) >= policy->max_nics) {
    return fail(absl::ResourceExhaustedError(absl::StrCat("LPAR \"", c.lpar, "\": NIC quota max_nics = ",
                                                          policy->max_nics, " reached (config ", config_.source, ")")));
  }
  const bool is_static = policy->name == c.lpar && policy->addresses.contains(ch.id) &&
                         NicAt(policy->addresses.at(ch.id)) == nullptr;
  if (req.address == 0 && !is_static && absl::Now() < recovery_until_) {
    deferred_.emplace_back(c.id, std::move(m));  // answered by OnTimer()
    return;
  }
  // The NIC's doorbell is the ring end (the write end of a pipe) of the
  // client's split doorbell: hsid and the NIC's peers can ring it, and none
  // of them can read the rings (an eventfd would let any peer consume them).
  absl::StatusOr<hsi::Doorbell> bell = hsi::Doorbell::Adopt(std::move(m.fds[0]));
  if (!bell.ok()) return fail(absl::InvalidArgumentError(absl::StrCat("attach: NIC doorbell: ", bell.status().message())));
  if (bell->kind() != hsi::Doorbell::Kind::kRingEnd) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "attach: NIC doorbell: fd is ", bell->kind() == hsi::Doorbell::Kind::kEventfd ? "an eventfd" : "a pipe's read end",
        "; it must be the ring end of a split doorbell (the write end of a pipe), so that the NIC's peers can ring "
        "it but not read it")));
  }
  // hsid's own open file of that pipe, non-blocking for good: no client can
  // change its flags. Needs root or the client's uid; else hsid rings the
  // shared file through io_uring (RingNic).
  bool bell_private = false;
  if (absl::StatusOr<UniqueFd> own = bell->OpenPrivate(); own.ok()) {
    if (absl::StatusOr<hsi::Doorbell> b = hsi::Doorbell::Adopt(std::move(*own)); b.ok()) {
      bell = std::move(b);
      bell_private = true;
    }
  }
  // The address: static from the policy, the one asked for, or the first free.
  auto reserved_by_other = [&](Address a) -> const LparConfig* {
    for (const LparConfig& l : config_.lpars) {
      auto s = l.addresses.find(ch.id);
      if (l.name != c.lpar && s != l.addresses.end() && s->second == a) return &l;
    }
    return nullptr;
  };
  Address addr;
  auto fixed = policy->addresses.find(ch.id);
  const std::string chname = absl::StrCat("CHPID ", ChpidName(ch.id));
  // The static address goes to the LPAR's first NIC on the CHPID; more
  // NICs of the same LPAR there get assigned addresses.
  const Nic* holder = fixed != policy->addresses.end() ? NicAt(fixed->second) : nullptr;
  const bool own_static_taken = holder != nullptr && holder->client == c.id;
  if (fixed != policy->addresses.end() && policy->name == c.lpar && !own_static_taken) {
    if (req.address != 0 && req.address != fixed->second.value()) {
      return fail(absl::InvalidArgumentError(absl::StrCat(chname, ": LPAR \"", c.lpar, "\" has the static address ",
                                                          fixed->second.ToString(), ", not ",
                                                          Address(req.address).ToString())));
    }
    addr = fixed->second;
    // The CHPID may have been redefined at run time with another subnet.
    if (!ch.subnet.IsHost(addr)) {
      return fail(absl::FailedPreconditionError(absl::StrCat(
          chname, ": LPAR \"", c.lpar, "\"'s static address ", addr.ToString(), " is not a host address of subnet ",
          ch.subnet.ToString(), " (config ", config_.source, ")")));
    }
  } else if (req.address != 0) {
    addr = Address(req.address);
    if (!ch.subnet.IsHost(addr)) {
      return fail(absl::InvalidArgumentError(absl::StrCat(chname, ": address ", addr.ToString(),
                                                          " is not a host address of subnet ", ch.subnet.ToString())));
    }
    if (const LparConfig* o = reserved_by_other(addr)) {
      return fail(absl::PermissionDeniedError(absl::StrCat(chname, ": address ", addr.ToString(),
                                                           " is LPAR \"", o->name, "\"'s static address")));
    }
  } else {
    const uint32_t first = ch.subnet.network().value() + 1, last = ch.subnet.broadcast().value() - 1;
    for (uint32_t v = first; v <= last; ++v) {
      if (!by_address_.contains(v) && reserved_by_other(Address(v)) == nullptr && !holds_.AddressHeld(ch.id, Address(v))) {
        addr = Address(v);
        break;
      }
    }
    if (addr.value() == 0) {
      return fail(absl::ResourceExhaustedError(absl::StrCat(chname, ": no free address in ", ch.subnet.ToString())));
    }
  }
  if (std::optional<std::string> held_for = holds_.AddressHeldFromOthers(ch.id, addr, c.lpar)) {
    return fail(absl::UnavailableError(absl::StrCat(chname, ": address ", addr.ToString(), " is ",
                                                    holds_.Why(absl::StrCat("LPAR \"", *held_for, "\"")))));
  }
  if (Nic* other = NicAt(addr)) {
    Client* oc = FindClient(other->client);
    return fail(absl::AlreadyExistsError(absl::StrCat(chname, ": address ", addr.ToString(), " is in use by ",
                                                      oc == nullptr ? "another client"
                                                      : c.admin || c.uid == oc->uid ? oc->Who()
                                                                                    : oc->Public())));
  }
  Nic n;
  n.id = next_nic_++;
  n.client = c.id;
  n.chpid = ch.id;
  n.address = addr;
  n.bell = std::move(*bell);
  n.bell_private = bell_private;
  by_address_[addr.value()] = n.id;
  holds_.ReleaseAddress(ch.id, addr);
  state_dirty_ = true;
  wire::AttachReply r = wire::Zeroed<wire::AttachReply>();
  r.nic_id = n.id;
  r.address = addr.value();
  r.subnet = ch.subnet.network().value();
  r.prefix = static_cast<uint32_t>(ch.subnet.prefix());
  r.capacity = ch.queue_size;
  r.mtu = ch.mtu;
  r.mfs = ch.mfs;
  r.overflow = ch.drop ? wire::kOverflowDrop : wire::kOverflowBlock;
  Log(absl::StrCat(c.Who(), " attached ", addr.ToString(), " to CHPID ", ChpidName(ch.id)));
  nics_.emplace(n.id, std::move(n));
  Reply(c, m.request_id, r);
}

void ServerImpl::OnDetach(Client& c, const Message& m) {
  const auto req = m.As<wire::DetachRequest>();
  absl::StatusOr<Nic*> nic = OwnNic(c, req.nic_id);
  if (!nic.ok()) return ReplyError<wire::DetachReply>(c, m.request_id, nic.status());
  RemoveNic(req.nic_id, wire::kDownPeerDetached, "it was detached");
  Reply(c, m.request_id, wire::Zeroed<wire::DetachReply>());
}

void ServerImpl::OnLink(Client& c, const Message& m) {
  const auto req = m.As<wire::LinkRequest>();
  auto fail = [&](absl::Status s) { ReplyError<wire::LinkReply>(c, m.request_id, s); };
  absl::StatusOr<Nic*> own = OwnNic(c, req.nic_id);
  if (!own.ok()) return fail(own.status());
  Nic& a = **own;
  const Address peer(req.peer_address);
  const ChpidConfig& ch = config_.chpids.at(a.chpid);
  const std::string where = absl::StrCat("CHPID ", ChpidName(a.chpid), ": link ", a.address.ToString(), "->",
                                         peer.ToString());
  if (!a.up) return fail(absl::UnavailableError(absl::StrCat(where, ": NIC ", a.address.ToString(), " is down")));
  if (peer == a.address) return fail(absl::InvalidArgumentError(absl::StrCat(where, ": a NIC cannot link to itself")));
  Nic* b = NicAt(peer);
  if (b == nullptr || b->chpid != a.chpid) {
    return fail(absl::NotFoundError(absl::StrCat(where, ": no NIC has address ", peer.ToString(), " on CHPID ",
                                                 ChpidName(a.chpid), " (subnet ", ch.subnet.ToString(), ")")));
  }
  if (!b->up) return fail(absl::UnavailableError(absl::StrCat(where, ": NIC ", peer.ToString(), " is down")));
  if (auto p = by_pair_.find(PairKey(a.address, peer)); p != by_pair_.end()) {
    wire::LinkReply r = wire::Zeroed<wire::LinkReply>();
    r.link_id = p->second;
    return Reply(c, m.request_id, r);
  }
  Client* bc = FindClient(b->client);
  if (bc == nullptr) return fail(absl::UnavailableError(absl::StrCat(where, ": the peer is disconnecting")));
  for (const Client* x : std::initializer_list<const Client*>{&c, bc}) {
    const LparConfig* pol = config_.FindLpar(x->lpar);
    if (pol != nullptr && LinksOf(x->lpar) >= pol->max_links) {
      return fail(absl::ResourceExhaustedError(absl::StrCat(where, ": LPAR \"", x->lpar, "\" has reached its quota max_links = ",
                                                            pol->max_links, " (config ", config_.source, ")")));
    }
  }
  if (c.in_flight >= config_.max_in_flight) {
    fail(absl::ResourceExhaustedError(absl::StrCat(where, ": more than max_in_flight = ", config_.max_in_flight,
                                                   " link setups pending; disconnecting")));
    return CloseClient(c, "over the in-flight quota");
  }
  const hsi::RingGeometry g{ch.queue_size, ch.mtu};
  absl::StatusOr<UniqueFd> sa = hsi::CreateRingSegment(g, SegmentName(a.address));
  absl::StatusOr<UniqueFd> sb = hsi::CreateRingSegment(g, SegmentName(peer));
  if (!sa.ok() || !sb.ok()) {
    return fail(absl::ResourceExhaustedError(absl::StrCat(where, ": creating ring segments: ",
                                                          (!sa.ok() ? sa.status() : sb.status()).message())));
  }
  // The copies the offers carry, made before any table changes: out of fds
  // fails this request (passing -1 to sendmsg would drop the recipient).
  UniqueFd offer_a(::fcntl(sa->get(), F_DUPFD_CLOEXEC, 0)), offer_b(::fcntl(sb->get(), F_DUPFD_CLOEXEC, 0));
  if (!offer_a.valid() || !offer_b.valid()) {
    return fail(absl::ResourceExhaustedError(absl::StrCat(where, ": duplicating a ring segment fd: ",
                                                          std::strerror(errno))));
  }
  Link l;
  l.id = next_link_++;
  l.chpid = a.chpid;
  l.a = LinkEnd{a.id, a.address, std::move(*sa), false};
  l.b = LinkEnd{b->id, b->address, std::move(*sb), false};
  l.requester = c.id;
  l.deadline = absl::Now() + kSetupTimeout;
  ++c.in_flight;
  ++setups_pending_;
  a.links.insert(l.id);
  b->links.insert(l.id);
  by_pair_[PairKey(a.address, peer)] = l.id;
  const uint32_t link_id = l.id;
  const std::string lpar_a = c.lpar, lpar_b = bc->lpar;
  // Messages first, sends after: a failing send only marks a client closing.
  std::vector<std::pair<uint32_t, OutMessage>> out;  // nic id, message
  for (auto [end, other, peer_lpar] : {std::tuple{&l.a, &l.b, &lpar_b}, std::tuple{&l.b, &l.a, &lpar_a}}) {
    wire::LinkOffer o = wire::Zeroed<wire::LinkOffer>();
    o.link_id = l.id;
    o.nic_id = end->nic;
    o.peer_address = other->address.value();
    o.mtu = g.mtu;
    o.capacity = g.capacity;
    wire::SetName(o.peer_lpar, *peer_lpar);
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(end == &l.a ? offer_a : offer_b));
    out.emplace_back(end->nic, wire::Encode(0, o, std::move(fds)));
  }
  links_.emplace(link_id, std::move(l));
  wire::LinkReply r = wire::Zeroed<wire::LinkReply>();
  r.link_id = link_id;
  Reply(c, m.request_id, r);
  for (auto& [nic_id, msg] : out) SendToNic(nic_id, std::move(msg));
}

void ServerImpl::SendToNic(uint32_t nic_id, OutMessage m) {
  auto it = nics_.find(nic_id);
  if (it == nics_.end()) return;
  Client* c = FindClient(it->second.client);
  if (c == nullptr) return;
  Send(*c, std::move(m));
  // A blocked Receive wakes and reads the event. The doorbell is the write
  // end of the client's pipe. hsid's own open file of it is non-blocking
  // for good, so a ring is a write that cannot block (-EAGAIN: full, so rung
  // already; -EPIPE: the reader is gone, and SIGPIPE is ignored here).
  // Without one (hsid could not reopen the pipe), the client can clear
  // O_NONBLOCK on the shared file and fill the pipe, and a write() would
  // block hsid's only thread: so that write goes through io_uring, which
  // completes it or parks it on a kernel worker, one at a time per NIC
  // (one pending write wakes the sleeper), cancelled when the NIC goes.
  Nic& n = it->second;
  if (n.bell_private) return n.bell.Ring();
  if (n.bell_pending) return;
  static const char kOne = 1;  // outlives every request
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_write(sqe, n.bell.fd(), &kOne, sizeof(kOne), static_cast<uint64_t>(-1));
  io_uring_sqe_set_data64(sqe, Tag(kBell, n.id));
  n.bell_pending = true;
}

void ServerImpl::OnSealed(Client& c, const Message& m) {
  const auto req = m.As<wire::LinkSealed>();
  LinkEnd* end = NoticeEnd(c, "LinkSealed", req.link_id, req.nic_id);
  if (end == nullptr) return;
  Link& l = links_.at(req.link_id);
  if (l.state != Link::kSetup) return;
  const std::string where = absl::StrCat("link ", l.a.address.ToString(), "<->", l.b.address.ToString(),
                                         " on CHPID ", ChpidName(l.chpid));
  if (req.code != 0) {
    const std::string t = absl::StrCat(where, ": setup failed: ", end->address.ToString(),
                                       " could not map its segment (status code ", req.code, ")");
    return DropLink(l.id, wire::kDownSetupFailed, t, t, true, true);
  }
  // Invariant 1: the owner must have sealed against new writers before its
  // peer gets the fd.
  if (!SealedAgainstWrites(end->segment.get())) {
    const std::string t = absl::StrCat(where, ": setup failed: ", c.Public(), " reported its segment sealed but it is not");
    Log(absl::StrCat(t, " (", c.Who(), ")"));
    return DropLink(l.id, wire::kDownSetupFailed, t, t, true, true);
  }
  end->sealed = true;
  if (l.a.sealed && l.b.sealed) FinishSetup(l);
}

LinkEnd* ServerImpl::NoticeEnd(Client& c, absl::string_view msg, uint32_t link_id, uint32_t nic_id) {
  // Out of order: answered and dropped like a malformed message.
  auto violation = [&](const std::string& what) -> LinkEnd* {
    wire::ErrorReply e = wire::Zeroed<wire::ErrorReply>();
    e.status = wire::ToWire(absl::InvalidArgumentError(absl::StrCat("protocol: ", msg, ": ", what)));
    (void)wire::TrySend(c.fd.get(), wire::Encode(0, e));
    CloseClient(c, absl::StrCat("protocol violation: ", msg, ": ", what));
    return nullptr;
  };
  if (link_id == 0 || link_id >= next_link_) return violation(absl::StrCat("link id ", link_id, " was never offered"));
  auto it = links_.find(link_id);
  if (it == links_.end()) return nullptr;  // already torn down
  Link& l = it->second;
  LinkEnd* end = nic_id == 0 ? nullptr : l.a.nic == nic_id ? &l.a : l.b.nic == nic_id ? &l.b : nullptr;
  auto n = end == nullptr ? nics_.end() : nics_.find(nic_id);
  if (n == nics_.end() || n->second.client != c.id) {
    return violation(absl::StrCat("link ", link_id, " has no end NIC id ", nic_id, " of this client"));
  }
  return end;
}

// An end gave its link up (it could not use the peer's segment, say): the
// link goes, and the other end learns why. The end that closed is not told.
void ServerImpl::OnClose(Client& c, const Message& m) {
  const auto req = m.As<wire::LinkClose>();
  const LinkEnd* end = NoticeEnd(c, "LinkClose", req.link_id, req.nic_id);
  if (end == nullptr) return;
  Link& l = links_.at(req.link_id);
  const bool is_a = end == &l.a;
  const std::string why(req.text, strnlen(req.text, sizeof(req.text)));  // validated printable by Decode()
  const std::string t = absl::StrCat("link ", l.a.address.ToString(), "<->", l.b.address.ToString(), " on CHPID ",
                                     ChpidName(l.chpid), ": ", end->address.ToString(), " (", c.Public(),
                                     ") closed it: ", why.empty() ? "no reason given" : why);
  Log(absl::StrCat(t, " [", c.Who(), "]"));
  DropLink(l.id, wire::kDownPeerClosed, t, t, !is_a, is_a);  // tell the other end
}

void ServerImpl::FinishSetup(Link& l) {
  l.state = Link::kReady;
  l.deadline = absl::InfiniteFuture();
  EndSetup(l);
  std::vector<std::pair<uint32_t, OutMessage>> out;
  for (auto [end, other] : {std::pair{&l.a, &l.b}, std::pair{&l.b, &l.a}}) {
    Nic& peer = nics_.at(other->nic);
    std::vector<UniqueFd> fds;
    fds.emplace_back(::fcntl(other->segment.get(), F_DUPFD_CLOEXEC, 0));
    // Each peer gets an open file of its own (flags no one else can change)
    // when hsid may reopen the pipe; else a copy of hsid's.
    absl::StatusOr<UniqueFd> bell = peer.bell.OpenPrivate();
    if (!bell.ok()) bell = peer.bell.Dup();
    fds.push_back(bell.ok() ? std::move(*bell) : UniqueFd());
    if (!fds[0].valid() || !fds[1].valid()) {
      const std::string t = absl::StrCat("link ", l.a.address.ToString(), "<->", l.b.address.ToString(),
                                         ": hsid is out of file descriptors");
      return DropLink(l.id, wire::kDownSetupFailed, t, t, true, true);
    }
    wire::LinkPeer p = wire::Zeroed<wire::LinkPeer>();
    p.link_id = l.id;
    p.nic_id = end->nic;
    out.emplace_back(end->nic, wire::Encode(0, p, std::move(fds)));
  }
  if (opt_.verbose) Log(absl::StrCat("link ", l.id, " ready"));
  for (auto& [nic_id, msg] : out) SendToNic(nic_id, std::move(msg));
  OfferToSniffers(l);
}

void ServerImpl::OnRelink(Client& c, Message& m) {
  const auto req = m.As<wire::RelinkRequest>();
  auto fail = [&](absl::Status s) { ReplyError<wire::LinkReply>(c, m.request_id, s); };
  absl::StatusOr<Nic*> own = OwnNic(c, req.nic_id);
  if (!own.ok()) return fail(own.status());
  Nic& n = **own;
  const Address peer(req.peer_address);
  UniqueFd seg = std::move(m.fds[0]);
  // The same checks a new link gets: a relink may only restore a link that
  // could have existed, and counts against the LPAR's quota while it waits.
  auto cit = config_.chpids.find(n.chpid);
  if (cit == config_.chpids.end()) return fail(absl::NotFoundError("relink: the NIC's CHPID is gone"));
  const std::string where = absl::StrCat("CHPID ", ChpidName(n.chpid), ": relink ", n.address.ToString(), "->",
                                         peer.ToString());
  if (!n.up) return fail(absl::UnavailableError(absl::StrCat(where, ": NIC ", n.address.ToString(), " is down")));
  if (peer == n.address || !cit->second.subnet.IsHost(peer)) {
    return fail(absl::InvalidArgumentError(absl::StrCat(where, ": the peer is not another host address of subnet ",
                                                        cit->second.subnet.ToString())));
  }
  // The same checks link set-up makes by construction: a sealed ring
  // segment of a valid geometry (at most 1 GiB) and of its size, made by
  // hsid for this NIC's address (not the peer's segment, which the client
  // holds read-only and could hand in as its own).
  absl::StatusOr<hsi::RingGeometry> geometry = hsi::InspectSealedRingSegment(seg.get());
  if (!geometry.ok()) return fail(absl::InvalidArgumentError(absl::StrCat(where, ": ", geometry.status().message())));
  if (const std::string name = MemfdName(seg.get()); name != SegmentName(n.address)) {
    return fail(absl::InvalidArgumentError(absl::StrCat(where, ": the segment is \"", name,
                                                        "\", not the one hsid made for ", n.address.ToString())));
  }
  const auto key = PairKey(n.address, peer);
  wire::LinkReply r = wire::Zeroed<wire::LinkReply>();
  if (auto p = by_pair_.find(key); p != by_pair_.end()) {
    Link& l = links_.at(p->second);
    absl::StatusOr<hsi::RingGeometry> other = hsi::InspectSealedRingSegment(l.a.segment.get());
    if (l.state != Link::kRelinkWait || l.b.address != n.address || l.chpid != n.chpid || !other.ok() ||
        other->capacity != geometry->capacity || other->mtu != geometry->mtu) {
      return fail(absl::AlreadyExistsError(absl::StrCat("relink ", n.address.ToString(), "->", peer.ToString(),
                                                        ": hsid already has this link")));
    }
    l.b.nic = n.id;
    l.b.segment = std::move(seg);
    l.b.sealed = true;
    l.state = Link::kReady;
    l.deadline = absl::InfiniteFuture();
    n.links.insert(l.id);
    r.link_id = l.id;
    Reply(c, m.request_id, r);
    return OfferToSniffers(l);
  }
  if (const LparConfig* pol = config_.FindLpar(c.lpar); pol != nullptr && LinksOf(c.lpar) >= pol->max_links) {
    return fail(absl::ResourceExhaustedError(absl::StrCat(where, ": LPAR \"", c.lpar,
                                                          "\" has reached its quota max_links = ", pol->max_links,
                                                          " (config ", config_.source, ")")));
  }
  Link l;
  l.id = next_link_++;
  l.chpid = n.chpid;
  l.state = Link::kRelinkWait;
  l.a = LinkEnd{n.id, n.address, std::move(seg), true};
  l.b = LinkEnd{0, peer, UniqueFd(), false};
  l.deadline = absl::Now() + absl::Milliseconds(config_.reclaim_grace_ms);
  n.links.insert(l.id);
  by_pair_[key] = l.id;
  r.link_id = l.id;
  links_.emplace(l.id, std::move(l));
  Reply(c, m.request_id, r);
}

void ServerImpl::OnPeers(Client& c, const Message& m) {
  const auto req = m.As<wire::PeersRequest>();
  absl::StatusOr<Nic*> own = OwnNic(c, req.nic_id);
  if (!own.ok()) return ReplyError<wire::PeersReply>(c, m.request_id, own.status());
  std::vector<uint32_t> addrs;
  for (const auto& [id, n] : nics_) {
    if (n.chpid == (*own)->chpid && n.id != (*own)->id && n.up) addrs.push_back(n.address.value());
  }
  std::sort(addrs.begin(), addrs.end());
  wire::PeersReply r = wire::Zeroed<wire::PeersReply>();
  size_t i = req.cursor;
  for (; i < addrs.size() && r.count < wire::kPeersPerPage; ++i) r.addresses[r.count++] = addrs[i];
  r.next_cursor = i < addrs.size() ? static_cast<uint32_t>(i) : 0;
  Reply(c, m.request_id, r);
}

void ServerImpl::OnDefineChpid(Client& c, const Message& m) {
  if (absl::Status s = CheckAdmin(c, "define CHPID"); !s.ok()) return ReplyError<wire::AdminReply>(c, m.request_id, s);
  const auto req = m.As<wire::DefineChpidRequest>();
  ChpidConfig ch;
  ch.id = req.chpid;
  ch.mfs = req.mfs;
  ch.mtu = req.mfs - 8192;
  ch.subnet = hsi::Subnet(Address(req.subnet), static_cast<int>(req.prefix));
  ch.queue_size = req.capacity;
  ch.drop = req.overflow == wire::kOverflowDrop;
  ch.lpars.clear();
  for (uint32_t i = 0; i < req.lpar_count; ++i) ch.lpars.push_back(wire::NameOf(req.lpars[i]));
  if (ch.subnet.network().value() != req.subnet || req.prefix < 8 || req.prefix > 30) {
    return ReplyError<wire::AdminReply>(c, m.request_id, absl::InvalidArgumentError(absl::StrCat(
        "define CHPID ", ChpidName(ch.id), ": subnet ", Address(req.subnet).ToString(), "/", req.prefix,
        " must have a prefix 8..30 and no host bits")));
  }
  if (absl::Status s = ValidateChpid(ch, config_); !s.ok()) return ReplyError<wire::AdminReply>(c, m.request_id, s);
  Log(absl::StrCat(c.Who(), " defined CHPID ", ChpidName(ch.id), " subnet ", ch.subnet.ToString()));
  config_.chpids[ch.id] = std::move(ch);
  Reply(c, m.request_id, wire::Zeroed<wire::AdminReply>());
}

void ServerImpl::OnUndefineChpid(Client& c, const Message& m) {
  if (absl::Status s = CheckAdmin(c, "undefine CHPID"); !s.ok()) return ReplyError<wire::AdminReply>(c, m.request_id, s);
  const auto req = m.As<wire::UndefineChpidRequest>();
  if (!config_.chpids.contains(req.chpid)) {
    return ReplyError<wire::AdminReply>(c, m.request_id, absl::NotFoundError(absl::StrCat(
        "undefine CHPID ", ChpidName(req.chpid), ": not defined")));
  }
  std::vector<std::string> users;
  for (const auto& [id, n] : nics_) {
    if (n.chpid == req.chpid) users.push_back(n.address.ToString());
  }
  if (!users.empty()) {
    return ReplyError<wire::AdminReply>(c, m.request_id, absl::FailedPreconditionError(absl::StrCat(
        "undefine CHPID ", ChpidName(req.chpid), ": NICs ", absl::StrJoin(users, ", "),
        " are attached; they must detach first")));
  }
  config_.chpids.erase(req.chpid);
  Log(absl::StrCat(c.Who(), " undefined CHPID ", ChpidName(req.chpid)));
  Reply(c, m.request_id, wire::Zeroed<wire::AdminReply>());
}

void ServerImpl::OnSetNic(Client& c, const Message& m) {
  if (absl::Status s = CheckAdmin(c, "set NIC state"); !s.ok()) return ReplyError<wire::AdminReply>(c, m.request_id, s);
  const auto req = m.As<wire::SetNicRequest>();
  Nic* n = NicAt(Address(req.address));
  if (n == nullptr) {
    return ReplyError<wire::AdminReply>(c, m.request_id, absl::NotFoundError(absl::StrCat(
        "set NIC state: no NIC has address ", Address(req.address).ToString())));
  }
  const bool up = req.up != 0;
  if (n->up != up) {
    n->up = up;
    if (!up) {
      const std::vector<uint32_t> links(n->links.begin(), n->links.end());
      for (uint32_t lid : links) {
        const std::string t = absl::StrCat("link on NIC ", n->address.ToString(), " closed: an admin set NIC ",
                                           n->address.ToString(), " down");
        DropLink(lid, wire::kDownNicDown, t, t, true, true);
      }
    }
    wire::NicStateEvent e = wire::Zeroed<wire::NicStateEvent>();
    e.nic_id = n->id;
    e.up = up ? 1 : 0;
    SendToNic(n->id, wire::Encode(0, e));
    Log(absl::StrCat(c.Who(), " set NIC ", n->address.ToString(), up ? " up" : " down"));
  }
  Reply(c, m.request_id, wire::Zeroed<wire::AdminReply>());
}

void ServerImpl::OnList(Client& c, const Message& m) {
  const auto req = m.As<wire::ListRequest>();
  size_t i = 0;
  auto page = [&](auto& r, size_t total, auto fill) {
    i = req.cursor;
    for (; i < total && r.count < wire::kListPage; ++i) fill(r.entries[r.count++], i);
    r.next_cursor = i < total ? static_cast<uint32_t>(i) : 0;
    Reply(c, m.request_id, r);
  };
  if (absl::Status s = CheckAdmin(c, "list"); !s.ok()) {
    switch (req.what) {
      case wire::kListChpids: return ReplyError<wire::ListChpidsReply>(c, m.request_id, s);
      case wire::kListNics: return ReplyError<wire::ListNicsReply>(c, m.request_id, s);
      case wire::kListStats: return ReplyError<wire::ListStatsReply>(c, m.request_id, s);
      default: return ReplyError<wire::ListLinksReply>(c, m.request_id, s);
    }
  }
  if (req.what == wire::kListChpids) {
    std::vector<const ChpidConfig*> v;
    for (const auto& [id, ch] : config_.chpids) v.push_back(&ch);
    wire::ListChpidsReply r = wire::Zeroed<wire::ListChpidsReply>();
    page(r, v.size(), [&](wire::WireChpid& e, size_t k) {
      const ChpidConfig& ch = *v[k];
      e.chpid = ch.id;
      e.mfs = ch.mfs;
      e.mtu = ch.mtu;
      e.subnet = ch.subnet.network().value();
      e.prefix = static_cast<uint32_t>(ch.subnet.prefix());
      e.overflow = ch.drop ? wire::kOverflowDrop : wire::kOverflowBlock;
      e.capacity = ch.queue_size;
      for (const auto& [nid, n] : nics_) e.nics += n.chpid == ch.id;
      for (const auto& [lid, l] : links_) e.links += l.chpid == ch.id;
    });
  } else if (req.what == wire::kListNics) {
    std::vector<const Nic*> v;
    for (const auto& [id, n] : nics_) v.push_back(&n);
    wire::ListNicsReply r = wire::Zeroed<wire::ListNicsReply>();
    page(r, v.size(), [&](wire::WireNic& e, size_t k) {
      const Nic& n = *v[k];
      e.chpid = n.chpid;
      e.address = n.address.value();
      e.up = n.up ? 1 : 0;
      e.links = static_cast<uint32_t>(n.links.size());
      if (const Client* oc = FindClient(n.client)) {
        wire::SetName(e.lpar, oc->lpar);
        e.pid = oc->pid;
        e.uid = oc->uid;
      }
    });
  } else if (req.what == wire::kListStats) {
    std::vector<const Link*> v;
    for (const auto& [id, l] : links_) v.push_back(&l);
    wire::ListStatsReply r = wire::Zeroed<wire::ListStatsReply>();
    page(r, v.size(), [&](wire::WireLinkStats& e, size_t k) {
      const Link& l = *v[k];
      e.link_id = l.id;
      e.chpid = l.chpid;
      e.address_a = l.a.address.value();
      e.address_b = l.b.address.value();
      e.state = static_cast<uint32_t>(l.state);
      e.a_to_b = Stats(l.a.segment, l.b.segment);
      e.b_to_a = Stats(l.b.segment, l.a.segment);
    });
  } else {
    std::vector<const Link*> v;
    for (const auto& [id, l] : links_) v.push_back(&l);
    wire::ListLinksReply r = wire::Zeroed<wire::ListLinksReply>();
    page(r, v.size(), [&](wire::WireLink& e, size_t k) {
      const Link& l = *v[k];
      e.link_id = l.id;
      e.chpid = l.chpid;
      e.address_a = l.a.address.value();
      e.address_b = l.b.address.value();
      e.state = static_cast<uint32_t>(l.state);
      // Counters are read from the segments themselves: each owner
      // publishes its own in its segment (hsid never maps a ring).
      e.a_to_b = Counters(l.a.segment, l.b.segment);
      e.b_to_a = Counters(l.b.segment, l.a.segment);
    });
  }
}

void ServerImpl::OnSniff(Client& c, const Message& m) {
  const auto req = m.As<wire::SniffRequest>();
  auto fail = [&](absl::Status s) {
    Log(absl::StrCat(c.Who(), ": sniffer refused: ", s.message()));
    ReplyError<wire::SniffReply>(c, m.request_id, s);
  };
  auto cit = config_.chpids.find(req.chpid);
  if (cit == config_.chpids.end()) {
    return fail(absl::NotFoundError(absl::StrCat("sniff CHPID ", ChpidName(req.chpid), ": not defined")));
  }
  const ChpidConfig& ch = cit->second;
  bool allowed = c.admin ||
                 std::find(ch.sniffer_uids.begin(), ch.sniffer_uids.end(), c.uid) != ch.sniffer_uids.end();
  for (uint32_t g : c.gids) {
    allowed |= std::find(ch.sniffer_gids.begin(), ch.sniffer_gids.end(), g) != ch.sniffer_gids.end();
  }
  if (!allowed) {
    return fail(absl::PermissionDeniedError(absl::StrCat(
        "sniff CHPID ", ChpidName(ch.id), ": uid ", c.uid, " is not an admin and not an authorized sniffer of "
        "this CHPID (sniffers/sniffer_gids of [[chpid]] ", ChpidName(ch.id), " in config ", config_.source, ")")));
  }
  if (c.sniff_chpid >= 0 && c.sniff_chpid != static_cast<int>(ch.id)) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "sniff CHPID ", ChpidName(ch.id), ": this connection already taps CHPID ",
        ChpidName(static_cast<uint32_t>(c.sniff_chpid)))));
  }
  c.sniff_chpid = static_cast<int>(ch.id);
  wire::SniffReply r = wire::Zeroed<wire::SniffReply>();
  r.chpid = ch.id;
  r.mtu = ch.mtu;
  r.capacity = ch.queue_size;
  r.subnet = ch.subnet.network().value();
  r.prefix = static_cast<uint32_t>(ch.subnet.prefix());
  Log(absl::StrCat(c.Who(), " opened a sniffer on CHPID ", ChpidName(ch.id)));
  Reply(c, m.request_id, r);
  for (const auto& [id, l] : links_) {
    if (l.chpid == ch.id && l.state == Link::kReady) OfferToSniffers(l, &c);
  }
}

void ServerImpl::OfferToSniffers(const Link& l, Client* only) {
  if (l.state != Link::kReady) return;
  std::vector<Client*> to;
  if (only != nullptr) {
    to.push_back(only);
  } else {
    for (auto& [id, c] : clients_) {
      if (!c->closing && c->sniff_chpid == static_cast<int>(l.chpid)) to.push_back(c.get());
    }
  }
  if (to.empty()) return;
  // Invariant 1: a sniffer only ever gets segments whose owners sealed them
  // against new writers, so the kernel keeps it read-only.
  for (const LinkEnd* e : {&l.a, &l.b}) {
    if (!SealedAgainstWrites(e->segment.get())) {
      Log(absl::StrCat("link ", l.id, ": segment of ", e->address.ToString(),
                       " is not sealed against writes; not handing it to sniffers"));
      return;
    }
  }
  auto cit = config_.chpids.find(l.chpid);
  if (cit == config_.chpids.end()) return;
  const ChpidConfig& ch = cit->second;
  for (Client* c : to) {
    wire::SniffLink s = wire::Zeroed<wire::SniffLink>();
    s.link_id = l.id;
    s.chpid = l.chpid;
    s.address_a = l.a.address.value();
    s.address_b = l.b.address.value();
    s.mtu = ch.mtu;
    s.flags = only == nullptr ? uint32_t{wire::kSniffNew} : uint32_t{0};
    s.capacity = ch.queue_size;
    std::vector<UniqueFd> fds;
    fds.emplace_back(::fcntl(l.a.segment.get(), F_DUPFD_CLOEXEC, 0));
    fds.emplace_back(::fcntl(l.b.segment.get(), F_DUPFD_CLOEXEC, 0));
    if (!fds[0].valid() || !fds[1].valid()) {
      Log(absl::StrCat("link ", l.id, ": out of file descriptors for a sniffer"));
      continue;
    }
    Send(*c, wire::Encode(0, s, std::move(fds)));
  }
}

void ServerImpl::SniffersGone(const Link& l) {
  for (auto& [id, c] : clients_) {
    if (c->closing || c->sniff_chpid != static_cast<int>(l.chpid)) continue;
    wire::SniffLinkGone g = wire::Zeroed<wire::SniffLinkGone>();
    g.link_id = l.id;
    Send(*c, wire::Encode(0, g));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions options) {
  auto s = std::make_unique<ServerImpl>(std::move(options));
  if (absl::Status st = s->Init(); !st.ok()) return st;
  return std::unique_ptr<Server>(std::move(s));
}

}  // namespace hsid
