// daemon/clients.h: hsid's connections: who is on the control socket, and
// what hsid has to send each of them.
//
// Clients accepts connections and identifies each by SO_PEERCRED (uid,
// gid, supplementary groups, pid); a client is an admin if it is root or
// the config's admin_uids/admin_gids name it (DESIGN.md invariants 3, 9).
// It refuses at once, with an ErrorReply that names the cap, a connection
// over max_connections, max_connections_per_uid or max_unclaimed_per_uid,
// and, when hsid is out of fds, one it holds a spare fd for just to say so
// (a connection left in the backlog would spin the loop).
//
// It reads each client's messages, at most 64 per wake-up (fairness between
// clients). A malformed message, or anything but a ClaimRequest before a
// claim succeeded (the hello), is answered and its client dropped; everyone
// else is served on. The rest goes to the Listener. A client that has not
// said hello within hello_timeout_ms is answered and dropped.
//
// What hsid sends a client that is not reading is queued, up to 4096
// messages and 1 MiB per connection, max_queued_bytes_per_uid per uid and
// max_queued_bytes in all; a client whose message would pass a cap is
// dropped, named in the log with the cap.
//
// Ownership: Clients owns every Client and its socket. Other parts keep a
// Client& only while handling one event, and its id across events. A client
// dropped by Close() stays in the table, `closing`, until FlushClosing()
// after the event; that calls Listener::OnClientGone to take down what the
// client held, then frees it. Fields of a Client are written by Clients
// (identity, hello, queue), Policy (lpar), Links (in_flight) and Sniffer
// (sniff_chpid).
//
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_CLIENTS_H_
#define HSI_DAEMON_CLIENTS_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "config.h"
#include "event_loop.h"
#include "hsi/fd.h"
#include "hsi/wire/protocol.h"

namespace hsid {

// The control protocol (wire/include/hsi/wire/protocol.h), as hsid's parts
// name it: the one place that says where it lives.
namespace wire = ::hsi::wire;
using wire::Message;
using wire::OutMessage;

// hsid's mapping of a client's event page (wire::kEventPageSize): a sealed
// memfd hsid maps read-write and hands the client, which maps it read-only.
// Its first word counts the events (messages with request id 0) hsid has
// put on that client's socket, so the client's data path sees them at once
// (libhsi's MaybePump). hsid keeps the mapping only, no fd: a client costs
// hsid one fd. Unmapped with the client.
class EventPage {
 public:
  EventPage() = default;
  EventPage(const EventPage&) = delete;
  EventPage& operator=(const EventPage&) = delete;
  ~EventPage();
  // Makes a new page (replacing any) and returns the fd for the client,
  // sealed against new writers and resizing once hsid's mapping is made.
  absl::StatusOr<hsi::UniqueFd> Create();
  // Release pairs with the client's acquire load: the event is on its
  // socket before the word moves. Then FUTEX_WAKE on the word's low half:
  // a client asleep in FUTEX_WAITV on it (libhsi's data_path.h) wakes and
  // pumps; one syscall per event, none when the page is absent.
  void Bump();

 private:
  uint64_t* word_ = nullptr;
};

struct Client {
  uint64_t id = 0;
  hsi::UniqueFd fd;
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
  EventPage events;        // made at its claim
  // What any other client may be told of this one: its LPAR name, not its
  // pid or uid (issue 13: say only what the asker may know).
  std::string Public() const { return lpar.empty() ? std::string("a client with no LPAR") : absl::StrCat("LPAR \"", lpar, "\""); }
  // For the log, and for answers to admins or to the same uid.
  std::string Who() const {
    return lpar.empty() ? absl::StrCat("pid ", pid, " uid ", uid)
                        : absl::StrCat("LPAR \"", lpar, "\" (pid ", pid, " uid ", uid, ")");
  }
};

class Clients {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    // A request or notice from `c`: a ClaimRequest, or anything once `c`
    // has said hello. Decoded and validated already.
    virtual void OnMessage(Client& c, Message& m) = 0;
    // `c` was dropped for `why` and is about to be freed: take down what it
    // held. Returns whether that freed table entries (hsid then gives free
    // heap back to the system).
    virtual bool OnClientGone(Client& c, const std::string& why) = 0;
  };

  Clients(const Config& config, EventLoop& loop, Listener& listener, bool verbose)
      : config_(config), loop_(loop), listener_(listener), verbose_(verbose) {}

  // Opens the spare fd kept for refusing connections at EMFILE.
  absl::Status Init();

  // Accepts every connection waiting on `listen_fd` (non-blocking).
  void Accept(int listen_fd);
  // Completions of the polls ArmAll() asked for.
  void OnReadable(uint64_t id, int res);
  void OnWritable(uint64_t id);
  // Asks for a poll on every client that has none pending: readable, and
  // writable while something is queued for it. Once per loop turn.
  void ArmAll();
  // Frees the clients dropped since the last call (see above).
  void FlushClosing();
  // Drops every client that has not said hello by its deadline.
  void ExpireHellos(absl::Time now);
  // Connections that have not said hello yet.
  uint64_t unclaimed() const { return unclaimed_; }
  // `c` has said hello (a claim succeeded): no hello deadline any more.
  void Hello(Client& c);

  // The live (not closing) client `id`, or nullptr.
  Client* Find(uint64_t id) {
    auto it = clients_.find(id);
    return it == clients_.end() || it->second->closing ? nullptr : it->second.get();
  }
  // Client `id` even while it is closing (until FlushClosing frees it).
  Client* FindAny(uint64_t id) {
    auto it = clients_.find(id);
    return it == clients_.end() ? nullptr : it->second.get();
  }
  // The live client that claimed LPAR `lpar`, or nullptr.
  const Client* Claimant(const std::string& lpar) const;
  // Calls `f(Client&)` for every live client, in id order.
  template <typename F>
  void ForEachLive(F f) {
    for (auto& [id, c] : clients_) {
      if (!c->closing) f(*c);
    }
  }

  // Sends `m` to `c` now, or queues it; drops `c` if a cap says so. A
  // closing client gets nothing.
  void Send(Client& c, OutMessage m);
  static bool IsEvent(const OutMessage& m);
  template <typename T>
  void Reply(Client& c, uint32_t req, const T& body) {
    Send(c, wire::Encode(req, body));
  }
  // Replies a T (a reply type with a `status` field) carrying `s`.
  template <typename T>
  void ReplyError(Client& c, uint32_t req, const absl::Status& s) {
    T body = wire::Zeroed<T>();
    body.status = wire::ToWire(s);
    Reply(c, req, body);
  }
  // Drops `c` for `why` (logged); the teardown runs in FlushClosing().
  void Close(Client& c, const std::string& why);
  // Sends `c` an ErrorReply with `answer` at once, past its queue (best
  // effort), then drops it for `why`: for a client that broke the protocol.
  void AnswerAndClose(Client& c, const absl::Status& answer, const std::string& why);

  // At shutdown: shuts every connection down (the clients see EOF).
  void ShutdownAll();
  // Closes every connection, with no teardown.
  void Clear() { clients_.clear(); }

 private:
  // A log line that would repeat for every refused connection, written at
  // most once a second with how many refusals it stands for.
  struct Throttle {
    uint64_t count = 0;  // refusals not yet logged
    absl::Time logged = absl::InfinitePast();
    // The count to log if a line is due now (and starts a new count).
    std::optional<uint64_t> Take();
  };

  // At EMFILE/ENFILE (`err`): accepts one newcomer on `listen_fd` with the
  // spare fd and tells it why it is refused. Returns whether to accept on.
  bool RefuseForWantOfFds(int listen_fd, int err);
  // A new connection's Client, identified; nullptr (logged) if SO_PEERCRED fails.
  std::unique_ptr<Client> Identify(hsi::UniqueFd fd);
  // Whether `c` may connect under the connection caps; if not, refuses it
  // (answered, logged at most once a second).
  bool Admit(const Client& c);
  // The connection cap (max_connections, max_connections_per_uid) a new
  // connection of `uid` would pass, or "".
  std::string ConnectionCap(uint32_t uid) const;
  // Logs (verbose) and hands a message on, or drops a client that sends
  // anything but a ClaimRequest before its hello.
  void Dispatch(Client& c, Message& m);
  // Sends an ErrorReply with `why` on `fd` (best effort, not queued).
  static void SendError(int fd, const absl::Status& why);
  // Answers a connection hsid will not serve with `why` and reads what the
  // client already sent, so that closing it does not reset the connection
  // before the client has read the answer (the caller closes it).
  static void Refuse(int fd, const absl::Status& why);
  // Reads and discards up to `max` messages waiting on `fd`.
  static void Drain(int fd, int max);
  // Whether queueing `bytes` more for client `c` stays within the per-uid
  // and global caps; else the reason, naming the cap.
  std::string QueueCap(const Client& c, size_t bytes) const;
  // Adds `delta` to the bytes queued for `c` (and its uid's, and the total).
  void Queued(Client& c, ptrdiff_t delta);

  const Config& config_;
  EventLoop& loop_;
  Listener& listener_;
  const bool verbose_;
  std::map<uint64_t, std::unique_ptr<Client>> clients_;
  uint64_t next_client_ = 1;
  uint64_t unclaimed_ = 0;  // clients that have not completed their hello
  std::vector<uint64_t> closing_;
  std::map<uint64_t, std::string> close_reason_;
  // Held so that at EMFILE hsid can still accept a newcomer to refuse it:
  // a connection left in the backlog keeps the listening socket readable
  // and would spin the event loop.
  hsi::UniqueFd reserve_fd_;
  Throttle refused_fds_;        // refused for want of fds
  Throttle refused_unclaimed_;  // refused by max_unclaimed_per_uid
  Throttle refused_cap_;        // refused by max_connections(_per_uid)
  // Bytes queued in clients' `out`, per uid and in all (max_queued_bytes*).
  absl::flat_hash_map<uint32_t, size_t> queued_by_uid_;
  size_t queued_ = 0;
};

}  // namespace hsid

#endif  // HSI_DAEMON_CLIENTS_H_
