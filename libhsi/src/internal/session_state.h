// internal/session_state.h: what a Session, its Nics and Links share.
//
// One control channel to hsid per session (internal/control_channel.h), the
// NICs attached through it and their links. Events from hsid (link offers,
// peers, link-down, NIC state) are handled whenever the session reads the
// channel: inside a request, in Pump() (non-blocking), in MaybePump() on
// every data-path call once hsid's event word moved, and in the wait loops
// of Receive/Send.
//
// Thread safety: none; see hsi/session.h.
#ifndef HSI_INTERNAL_SESSION_STATE_H_
#define HSI_INTERNAL_SESSION_STATE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "hsi/address.h"
#include "hsi/doorbell.h"
#include "hsi/nic.h"
#include "hsi/ring.h"
#include "hsi/segment.h"
#include "hsi/session.h"
#include "internal/control_channel.h"
#include "hsi/wire/protocol.h"

namespace hsi::internal {

// The ring's 16-bit frame type word as libhsi uses it: the low byte is the
// kind (unicast or broadcast), the high byte the sender's tag (Nic::SendTo's
// `tag`, FrameView::tag), which libhsi carries and gives no meaning.
inline constexpr uint16_t kTypeUnicast = 0;
inline constexpr uint16_t kTypeBroadcast = 1;
inline constexpr uint16_t FrameType(uint16_t kind, uint8_t tag) { return static_cast<uint16_t>(kind | tag << 8); }
inline constexpr bool IsBroadcast(uint16_t type) { return (type & 0xFF) == kTypeBroadcast; }
inline constexpr uint8_t FrameTag(uint16_t type) { return static_cast<uint8_t>(type >> 8); }

// The kDeadlineExceeded of a receive that found no frame ("NIC 10.240.0.1
// on CHPID F0: no frame arrived before the deadline"), built on first use
// into `cache` and copied after. A copy of a non-OK absl::Status only adds
// a reference to its shared message, so the empty poll a spinning caller
// makes (Receive/Peek with Wait::Never(), hsi-ifd's pump) costs no StrCat
// and no malloc, and the status still says what and where.
template <typename NameFn>
const absl::Status& NoFrameStatus(absl::Status& cache, NameFn name) {
  if (cache.ok()) cache = absl::DeadlineExceededError(absl::StrCat(name(), ": no frame arrived before the deadline"));
  return cache;
}

struct LinkState {
  enum State { kSetup, kReady };
  uint32_t link_id = 0;  // hsid's id (renumbered after an hsid restart)
  uint32_t chpid = 0;
  Address local, peer;
  std::string peer_lpar;
  RingGeometry geometry;
  bool drop = false;
  State state = kSetup;
  bool peeked = false;        // Link::Peek() holds a frame
  bool down = false;          // hsid said the peer is gone (or setup failed)
  absl::Status down_status;   // kUnavailable naming the peer
  // Declared before the rings that point at them.
  std::shared_ptr<Doorbell> own_bell;
  Segment own;
  Segment peer_segment;
  Doorbell peer_bell;
  RingProducer tx;
  RingConsumer rx;

  std::string Name() const {
    return absl::StrCat("link ", local.ToString(), "->", peer.ToString());
  }
  // Link::Receive's kDeadlineExceeded, built once (see NoFrameStatus).
  absl::Status no_frame;
  const absl::Status& NoFrame() { return NoFrameStatus(no_frame, [this] { return Name(); }); }
};

// One peer that a call needs a link to (SessionState::SetUpLinks).
struct SetupWant {
  Address peer;
  bool done = false;
  std::shared_ptr<LinkState> link;  // once up
  absl::Status status;              // once failed (names the link)
  std::string reason;               // the failure without the link's name
};

struct NicState {
  uint32_t nic_id = 0;  // hsid's id (renumbered after an hsid restart)
  NicInfo info;
  std::shared_ptr<Doorbell> bell;  // the wait end of a split doorbell
  // Its ring end, dup'd to hsid at each attach; held open so the wait end
  // never reads EOF.
  UniqueFd bell_ring_end;
  bool up = true;
  bool detached = false;
  absl::Status down_status;
  // Ready links, including dead ones still being drained.
  std::vector<std::shared_ptr<LinkState>> active;
  absl::flat_hash_map<uint32_t, std::shared_ptr<LinkState>> by_peer;
  // The link Nic::SendTo used last and its peer's address, so that a run of
  // sends to one peer costs no hash lookup and no shared_ptr copy. Points
  // into by_peer: cleared (ForgetHot) wherever an entry of by_peer goes or
  // is replaced, so it never outlives its LinkState.
  LinkState* hot_link = nullptr;
  uint32_t hot_peer = 0;
  size_t rr = 0;
  std::shared_ptr<LinkState> peeked;  // Nic::Peek() holds a frame of it
  std::optional<NicInterface> iface;  // declared (Nic::DeclareInterface); said again on re-attach
  // Spare ring segments hsid offered, mapped as our own and sealed
  // (SessionOptions::link_spares): a LinkSpareUp names one as its own end.
  struct Spare {
    uint32_t id = 0;
    RingGeometry geometry;
    Segment segment;
  };
  std::vector<Spare> spares;

  std::string Name() const {
    return absl::StrCat("NIC ", info.address.ToString(), " on CHPID ", ChpidText());
  }
  std::string ChpidText() const;
  // Nic::Receive/Peek's kDeadlineExceeded, built once (see NoFrameStatus);
  // no_frame_for: the address it names, so a NIC renumbered by hsid gets
  // a message with its new address.
  absl::Status no_frame;
  uint32_t no_frame_for = 0;
  const absl::Status& NoFrame() {
    if (no_frame_for != info.address.value()) no_frame = absl::OkStatus();
    no_frame_for = info.address.value();
    return NoFrameStatus(no_frame, [this] { return Name(); });
  }
  void Forget(const std::shared_ptr<LinkState>& l);
  void ForgetHot() { hot_link = nullptr; }
};

// One LPAR's connection to hsid with its NICs and links. The control
// channel's events land here (ControlChannel::Handler); session.cc connects,
// reconnects and handles events, link_setup.cc sets links up and
// broadcasts, nic.cc and link.cc are the data path.
class SessionState final : private ControlChannel::Handler {
 public:
  explicit SessionState(SessionOptions options, std::string path)
      : opt_(std::move(options)), ctl_(std::move(path), opt_.hsid_uid, this) {
    ctl_.set_timeout(opt_.timeout);
  }
  ~SessionState();

  // Connects and claims the LPAR (reclaim: after an hsid restart).
  absl::Status Open(bool reclaim);
  void Close();

  // One request, waiting for its reply while handling events (see
  // ControlChannel::Call). The reply is awaited until `deadline` (the
  // caller's Wait), at most call_timeout().
  template <typename Req, typename Rep>
  absl::Status Call(const Req& req, std::vector<UniqueFd> fds, Rep* reply,
                    absl::Time deadline = absl::InfiniteFuture()) {
    return ctl_.Call(req, std::move(fds), reply, deadline);
  }
  // SessionOptions::timeout, but 500 ms for the calls of a reconnect, which
  // run inside hot-path calls and must not stall them on a dying hsid.
  absl::Duration call_timeout() const { return ctl_.timeout(); }

  // Non-blocking: handles pending events; reconnects when one is due.
  void Pump();
  // Cheap enough for every hot-path call: one load of the event word hsid
  // publishes (ControlChannel::Quiet()), so a link-down, a NIC set down or
  // up, a redefined CHPID is seen on the very next call. Pumps when the word
  // moved, every kLivenessCalls-th call (hsid's death), and on every call
  // while hsid is away (an owner reclaims its LPAR name and addresses as soon
  // as hsid is back).
  void MaybePump() {
    if (!ctl_.Quiet() || !deferred_spares_.empty()) Pump();
  }
  absl::Status EnsureConnected();

  // Waits as `wait` says until ready() returns true. arm(true) before
  // sleeping on the NIC's doorbell (and the control socket), arm(false)
  // after. OK when ready, kDeadlineExceeded otherwise. In data_path.h.
  template <typename Ready, typename Arm>
  absl::Status WaitLoop(NicState& nic, const Wait& wait, Ready ready, Arm arm);

  absl::StatusOr<std::shared_ptr<NicState>> Attach(uint32_t chpid, std::optional<Address> address);
  void Detach(NicState& nic);
  // Tells hsid what nic.iface says (NicInterfaceRequest).
  absl::Status DeclareInterface(NicState& nic);
  // Asks hsid which LPAR owns NIC `peer` on nic's CHPID (OwnerRequest).
  absl::StatusOr<std::string> PeerLpar(NicState& nic, Address peer);
  // The link to `peer`, set up first if there is none, by `deadline` (at
  // most SessionOptions::timeout from now).
  absl::StatusOr<std::shared_ptr<LinkState>> GetLink(NicState& nic, Address peer, absl::Time deadline);
  // Sets up the links of `wants` together: every LinkRequest goes out first
  // (at most SessionOptions::max_link_setups pending in this session), then
  // the replies, offers and peers of all are awaited under one deadline (the
  // caller's, at most SessionOptions::timeout from now). Settles every want:
  // a link, or a status saying which stage it did not pass. on_ready(want)
  // runs for each want whose link is up: those up already once the new
  // requests have gone out, the others as they come up. In link_setup.cc.
  template <typename OnReady>
  void SetUpLinks(NicState& nic, std::vector<SetupWant>& wants, absl::Time deadline, OnReady on_ready);
  absl::Status SendOnLink(NicState& nic, LinkState& l, absl::Span<const uint8_t> payload,
                          const Wait& wait, uint16_t type);
  // Sends to every other NIC of the CHPID; see Nic::SendTo.
  absl::Status Broadcast(NicState& nic, absl::Span<const uint8_t> payload, const Wait& wait, uint8_t tag = 0);
  absl::StatusOr<std::vector<Address>> Peers(NicState& nic, absl::Time deadline);
  // Memory grants through hsid (Nic::GrantMemory / Nic::TakeMemory).
  absl::Status GrantMemory(NicState& nic, Address peer, uint64_t tag, UniqueFd memfd, absl::Time deadline);
  absl::StatusOr<UniqueFd> TakeMemory(NicState& nic, Address from, uint64_t tag, uint64_t* size,
                                      absl::Time deadline);

  bool connected() const { return ctl_.connected(); }
  int ctl_fd() const { return ctl_.fd(); }
  // While hsid is away and this session will reconnect: when Pump() tries
  // next. InfiniteFuture otherwise.
  absl::Time reconnect_at() const {
    return !ctl_.connected() && opt_.reconnect && ever_connected_ && !closed_ ? next_reconnect_
                                                                              : absl::InfiniteFuture();
  }
  const SessionOptions& options() const { return opt_; }
  const std::string& path() const { return ctl_.path(); }
  bool is_admin() const { return is_admin_; }

  // CF structures declared (Session::DeclareCfStructure), by name: sent
  // again by Reconnect(), as hsid rebuilds its tables from its clients.
  std::map<std::string, wire::CfDeclareRequest> cf_declared_;

 private:
  // ControlChannel::Handler
  void OnEvent(wire::Message& m) override;
  void OnStrayReply(wire::Message& m) override;  // a LinkRequest's reply (link_setup.cc)
  void OnLost(const absl::Status& why) override;

  void Reconnect();
  // Re-registers one NIC with a restarted hsid, then its live links. False
  // if the connection was lost meanwhile (*s says why, if it is known).
  bool Reattach(NicState& nic, absl::Status* s);
  void Relink(NicState& nic);
  void OnOffer(wire::Message& m);
  void OnPeer(wire::Message& m);
  // SpareOffer: sealed into its NIC's spares (SealSpare); kept in
  // orphan_spares_ while an attach waits for the reply naming its NIC, and
  // in deferred_spares_ while a link set-up waits (SealDeferred).
  void OnSpareOffer(wire::Message& m);
  // Seals the offers deferred during a link set-up: a set-up does so once
  // its requests are out (while hsid works on them), Pump() outside one.
  void SealDeferred();
  void SealSpare(NicState& nic, wire::Message& m);
  // The offers kept for `nic`, sealed now that it is known; the rest go.
  void AdoptSpares(NicState& nic);
  // LinkSpareUp: a link ready at once, its own end one of the NIC's spares.
  void OnSpareUp(wire::Message& m);
  using LinkMap = absl::flat_hash_map<uint64_t, std::shared_ptr<LinkState>>;
  // The link at `it` has its own segment mapped: maps the peer's, adopts
  // its doorbell (an open file of our own already if `bell_private`, else
  // reopened where the uid allows) and makes the rings; the link is ready.
  // On a failure gives it up (GiveUp).
  void Activate(LinkMap::iterator it, uint32_t link_id, uint32_t nic_id, UniqueFd peer_segment, UniqueFd peer_bell,
                bool bell_private);
  // Gives the link at `it` up here and tells hsid (LinkClose), which tears
  // it down and tells the peer why (else the peer would send into a ring
  // nobody reads).
  void GiveUp(LinkMap::iterator it, uint32_t link_id, uint32_t nic_id, const absl::Status& s);
  void OnDown(const wire::Message& m);
  void OnNicState(const wire::Message& m);
  NicState* NicById(uint32_t nic_id);

  // A LinkRequest of this session whose link is not up yet. hsid counts it
  // against the client's max_in_flight until both ends have sealed or it
  // gives the setup up (kSetupTimeout, 5 s): it outlives the call that
  // started it, and a later call for the same peer waits for it instead of
  // asking again. Settled by the LinkReply (an error), LinkPeer (up; the
  // entry goes), LinkDown or the loss of hsid's connection (failed; the
  // entry stays until a call has seen why, or the next call starts).
  struct PendingSetup {
    uint32_t nic_id = 0;
    Address local, peer;
    uint32_t request_id = 0;  // of the LinkRequest, until its reply came
    uint32_t link_id = 0;     // from the reply
    absl::Time expires;       // a backstop only (hsid ends each setup itself)
    bool failed = false;
    absl::Status status;      // why, once failed
  };
  absl::Status StartSetup(NicState& nic, Address peer);
  PendingSetup* FindSetup(uint32_t nic_id, Address peer);
  size_t SetupsInFlight();
  void SetupUp(uint32_t link_id, uint32_t nic_id);
  void SetupFailed(uint32_t link_id, uint32_t nic_id, const absl::Status& why);
  // True once `w` is settled: its link is up, or its setup failed.
  bool Settle(NicState& nic, SetupWant& w);
  // SetUpLinks out of time: settles each open want with what it was still
  // waiting for.
  void ExplainTimeout(NicState& nic, std::vector<SetupWant>& wants, absl::Time start, absl::Time until,
                      bool session_bound);
  static uint64_t Key(uint32_t link_id, uint32_t nic_id) {
    return (uint64_t{link_id} << 32) | nic_id;
  }

  SessionOptions opt_;
  ControlChannel ctl_;
  bool closed_ = false;  // Close() called: never reconnect
  bool is_admin_ = false;
  bool in_reconnect_ = false;
  bool ever_connected_ = false;
  absl::Time next_reconnect_ = absl::InfinitePast();
  // WaitLoop (data_path.h): a sleep on futex words cannot see hsid's socket
  // close, so until this time sleeps may be futex sleeps; then the next one
  // is a poll() that includes the control socket, and sets it again. So a
  // session that sleeps at all looks at its socket at least every
  // futex_sleep_for, however short its waits or however busy its links.
  absl::Time next_ctl_look_ = absl::InfinitePast();
  absl::Duration backoff_ = absl::Milliseconds(10);
  std::vector<std::shared_ptr<NicState>> nics_;
  // Links being set up or up, by (hsid link id, hsid nic id).
  LinkMap links_;
  // SpareOffers that came before the AttachReply naming their NIC.
  std::vector<wire::Message> orphan_spares_;
  bool in_attach_ = false;  // an AttachRequest waits for its reply
  // SpareOffers that came while a link set-up waited: mapping and sealing
  // them there would lengthen the set-up (a replacement for the spare the
  // set-up used comes right behind hsid's answer).
  std::vector<wire::Message> deferred_spares_;
  bool defer_spares_ = false;
  std::vector<PendingSetup> setups_;
};

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_SESSION_STATE_H_
