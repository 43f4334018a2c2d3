// internal/control_channel.h: a client's one connection to hsid.
//
// Every libhsi client of hsid (a Session and the AdminClient through it, a
// Sniffer) talks to it through one ControlChannel: it connects and checks
// who serves the socket (ConnectControl, DESIGN.md invariant 9), claims
// (an LPAR, or nothing for an admin or a tap) and maps the event page that
// hsid hands back, makes calls (a request, then its reply under a
// deadline), sends messages no reply answers, and hands everything else
// hsid sends to the owner's Handler: events (request id 0) and replies no
// call waits for any more.
//
// The event page: one 64-bit word that only hsid writes (the client maps
// the sealed memfd read-only, invariant 1) and bumps, with release order,
// after each event it has put on this client's socket. Quiet() loads it
// (acquire: pairs with that release) and compares it with the value the
// last full Pump() settled, so a data-path call learns of a link-down, a
// NIC set down or up, or a redefined CHPID on the very next call at the cost
// of one load of a line nobody else writes. hsid's own death is no event it
// can publish: a blocking wait sees it at once (the socket is in its poll
// set), a busy loop through Quiet() within kLivenessCalls calls.
//
// Thread safety: none; one thread at a time (see hsi/session.h).
#ifndef HSI_INTERNAL_CONTROL_CHANNEL_H_
#define HSI_INTERNAL_CONTROL_CHANNEL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsi/fd.h"
#include "hsi/segment.h"
#include "hsi/wire/protocol.h"

namespace hsi::internal {

// Milliseconds from now until `until` for poll(2): -1 for InfiniteFuture,
// 0 once it passed, rounded up otherwise.
int PollMs(absl::Time until);

class ControlChannel {
 public:
  // What the owner does with what hsid sends unasked. Called from inside
  // Call(), Pump() and Send(); a handler may Send() in turn.
  class Handler {
   public:
    // An event (request id 0): a link offer, a link-down, ...
    virtual void OnEvent(wire::Message& m) = 0;
    // A reply to a request no Call() waits for (a LinkRequest sent with
    // Send(), or a late reply to a call that timed out).
    virtual void OnStrayReply(wire::Message& m) = 0;
    // The connection is gone (EOF, an error, hsid's ErrorReply, a send that
    // failed); the channel is closed already. `why` says what happened.
    virtual void OnLost(const absl::Status& why) = 0;

   protected:
    ~Handler() = default;
  };

  // `path` is the socket, `hsid_uid` the uid besides root that may serve it
  // (see ConnectControl). `handler` must outlive the channel.
  ControlChannel(std::string path, std::optional<uint32_t> hsid_uid, Handler* handler)
      : path_(std::move(path)), hsid_uid_(hsid_uid), handler_(handler) {}
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  // Connects, sends `claim` and waits (timeout()) for the ClaimReply, then
  // maps the event page it carries. Returns the reply; on any failure the
  // channel is closed and the status says why (ConnectControl's errors,
  // hsid's refusal, kDeadlineExceeded, kInternal for an unusable page).
  absl::StatusOr<wire::ClaimReply> Open(const wire::ClaimRequest& claim);
  // Closes the connection without telling the handler.
  void Close();

  // One request and its reply, handling events meanwhile. Returns the
  // reply's status; `reply` is filled whenever a reply of type Rep came. The
  // send is bounded by timeout(), the reply by timeout() and `deadline`,
  // whichever comes first.
  template <typename Req, typename Rep>
  absl::Status Call(const Req& req, std::vector<UniqueFd> fds, Rep* reply,
                    absl::Time deadline = absl::InfiniteFuture()) {
    static_assert(offsetof(Rep, status) == 0);
    *reply = wire::Zeroed<Rep>();
    wire::Message m;
    absl::Status s = CallRaw(wire::kTypeOf<Req>, &req, sizeof(req), std::move(fds), wire::kTypeOf<Rep>, &m, deadline);
    if (m.type == wire::kTypeOf<Rep> && m.body.size() == sizeof(Rep)) *reply = m.As<Rep>();
    return s;
  }
  absl::Status CallRaw(wire::MsgType type, const void* body, size_t size, std::vector<UniqueFd> fds, wire::MsgType reply_type,
                       wire::Message* reply, absl::Time deadline = absl::InfiniteFuture());

  // Sends one message without waiting for an answer, by `deadline`. On a
  // failure the connection is lost (the handler hears why) and the status is
  // kUnavailable "hsid at PATH: ...".
  absl::Status Send(const wire::OutMessage& out, absl::Time deadline);
  // A request id for a message sent with Send() whose reply the handler
  // will see in OnStrayReply(). Never 0 (events carry 0).
  uint32_t NextRequestId() {
    const uint32_t id = next_request_++;
    if (next_request_ == 0) next_request_ = 1;
    return id;
  }

  // Handles what hsid has sent, without blocking: at most 64 messages. Once
  // the socket is drained the event word read before draining is settled
  // (Quiet() compares against it).
  void Pump();
  // The hot-path check: true when there is nothing to Pump() for, i.e. the
  // event word has not moved since the last drain, and this is not the
  // kLivenessCalls-th check (then false, so that a busy loop notices hsid's
  // death). False while disconnected.
  static constexpr uint32_t kLivenessCalls = 1u << 16;
  bool Quiet() {
    return events_ != nullptr && __atomic_load_n(events_, __ATOMIC_ACQUIRE) == seen_events_ &&
           (++tick_ & (kLivenessCalls - 1)) != 0;
  }

  // Waits until the socket is readable or `until` passes, whichever first.
  // hsid answers most requests within tens of microseconds, less than the
  // scheduler takes to wake a sleeping thread on a busy host, so it first
  // polls without sleeping for up to 150 us, yielding the CPU between looks
  // (hsid or a peer may need it), then sleeps in poll(2).
  void Await(absl::Time until) const;

  // Timeout of the calls and of Open() (SessionOptions::timeout and the
  // like); a Session shortens it while it reconnects.
  absl::Duration timeout() const { return timeout_; }
  void set_timeout(absl::Duration t) { timeout_ = t; }

  bool connected() const { return fd_.valid(); }
  // hsid's event word (null while disconnected) and its value the last full
  // Pump() settled: a sleeper waits for the word to leave that value (hsid
  // FUTEX_WAKEs it after each bump, daemon/clients.h).
  const uint64_t* event_word() const { return events_; }
  uint64_t settled_events() const { return seen_events_; }
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

 private:
  // Closes, then tells the handler why.
  void Lost(const absl::Status& why);
  // Sends request `id`; on a failure the connection is lost and the status
  // says why (hsid's refusal if it queued one before it closed).
  absl::Status SendRequest(wire::MsgType type, uint32_t id, const void* body, size_t size, std::vector<UniqueFd> fds,
                           absl::Time deadline);

  std::string path_;
  std::optional<uint32_t> hsid_uid_;
  Handler* handler_;
  absl::Duration timeout_ = absl::Seconds(5);
  UniqueFd fd_;
  uint32_t next_request_ = 1;
  uint32_t tick_ = 0;
  // hsid's event page (one word, its count of events sent to us); nullptr
  // while disconnected.
  Segment event_page_;
  const uint64_t* events_ = nullptr;
  uint64_t seen_events_ = 0;
};

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_CONTROL_CHANNEL_H_
