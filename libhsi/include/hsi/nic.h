// hsi/nic.h: a NIC (one LPAR's attachment to one CHPID) and its Links.
//
// A Nic has an address in its CHPID's subnet. SendTo(address) sends a
// frame to the NIC with that address on the same CHPID: the first send to
// a peer asks hsid for a link (two sealed ring segments, one per
// direction, each writable only by its sender: DESIGN.md invariant 1) and
// every later frame goes straight through shared memory. Receive() returns
// the next frame from any peer with its source address. A Link handle
// (Nic::Link) is the hot path to one peer, without the address lookup.
// Sending to the CHPID's broadcast address sends the frame on a link to
// every other NIC of the CHPID (creating links as needed; hsid is asked for
// the member list on every broadcast, so it is not a hot path).
//
// Link setup and deadlines: a link is up once both ends have sealed their
// segments, so setting one up needs the peer's process to be inside libhsi
// (any call that waits, or Session::Poll) to answer hsid's offer. A peer
// that never does (a "silent NIC": attached, then busy elsewhere or stopped)
// delays no call beyond its Wait's deadline: SendTo, Link and a broadcast
// keep it for the setup as for the send (and never wait more than
// SessionOptions::timeout for a setup). A setup cut short by a deadline
// stays pending in the session until the peer answers or hsid withdraws it
// (after 5 s): a later call to that peer picks it up instead of starting
// over. With Wait::Never() a send to a peer without a link starts the setup
// and returns kDeadlineExceeded. A broadcast needs hsid's member list, so
// its deadline must allow a round trip to hsid (tens of microseconds); with
// Wait::Never() it returns kDeadlineExceeded.
//
// Overflow: under the CHPID's policy `block` a send waits for room as its
// Wait says (lossless); under `drop` a send to a full ring returns
// kResourceExhausted at once and the frame is counted in the sender's
// `drops` counter, as the real machine counts it.
//
// Liveness: when a peer's process dies (its control socket closes), hsid
// sends a link-down event. Frames the peer committed before it died are
// still delivered, each exactly once; after the last one, Receive()
// returns kUnavailable once for that link, naming the peer address and
// that its LPAR disconnected (Nic::Receive then forgets the link), and a
// SendTo() to it returns the same status. A later SendTo() to that address
// asks hsid for a new link.
//
// Control events reach every call at once: hsid counts the events it sends
// a session (a link-down, a NIC set down or up by an admin, a link offer)
// in a word the session maps read-only, and every SendTo, Receive, Peek,
// Link::Send/Receive/Peek and Link::status() loads it (one cache line) and
// reads the control socket when it moved. So a process that only sends
// learns of its peer's death on its first call after hsid has seen it
// (kUnavailable), however long it waited between sends; a NIC set up
// again by an admin is usable on the owner's next call, no Session::Poll()
// needed. hsid's own death is not such an event (links keep working): a
// blocking wait sees it at once, a busy loop within 65536 calls, and the
// session then reconnects by itself.
//
// Readiness (epoll, io_uring): fd() is the NIC's doorbell (the wait end of a
// split doorbell, hsi/doorbell.h: peers can ring it, not read it). Call
// PrepareWait() before sleeping on it; it is then readable when a frame
// arrives on any link of the NIC or when hsid sent a control event (hsid
// rings it after each). hsi/poller.h does this for many NICs.
//
// Thread safety: as hsi/session.h: one thread at a time per Session.
#ifndef HSI_NIC_H_
#define HSI_NIC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hsi/address.h"
#include "hsi/ring.h"
#include "hsi/wait.h"
#include "hsi/export.h"
#include "hsi/fd.h"

namespace hsi {

namespace internal {
class SessionState;
struct NicState;
struct LinkState;
}  // namespace internal

struct NicInfo {
  uint32_t chpid = 0;
  Address address;
  Subnet subnet;
  uint32_t mfs = 0;  // maximum frame size of the CHPID
  uint32_t mtu = 0;  // largest payload: mfs - 8K
  RingGeometry geometry;  // of every link on this CHPID
  bool drop = false;      // overflow policy drop (else block)
};

// A frame copied out by Receive().
struct Received {
  Address source;
  size_t length = 0;
  bool broadcast = false;  // sent to the CHPID's broadcast address
  uint8_t tag = 0;         // the sender's tag (Nic::SendTo)
};

// A frame seen in place by Peek(); valid until Release() or the next Peek.
struct FrameView {
  Address source;
  absl::Span<const uint8_t> payload;
  bool broadcast = false;
  uint8_t tag = 0;  // the sender's tag (Nic::SendTo)
};

// The hot path to one peer NIC.
class HSI_EXPORT Link {
 public:
  Link();
  ~Link();
  Link(Link&&) noexcept;
  Link& operator=(Link&&) noexcept;

  // Sends one frame (at most the MTU), waiting for room as `wait` says
  // (policy block). kInvalidArgument above the MTU, kResourceExhausted if
  // dropped (policy drop), kDeadlineExceeded, kUnavailable once the peer is
  // gone, kDataLoss if the peer broke the ring's contract.
  absl::Status Send(absl::Span<const uint8_t> payload, const Wait& wait = Wait());
  // Copies the next frame from the peer into `buffer`; returns its length.
  // kResourceExhausted if it does not fit (the frame stays, for a call with
  // a buffer that fits or a Peek; the message names the link and both
  // sizes), kDeadlineExceeded, kUnavailable after the last frame of a peer
  // that is gone.
  absl::StatusOr<size_t> Receive(absl::Span<uint8_t> buffer, const Wait& wait = Wait());
  // Batches, where the ring batches (a stream): SendBatch() copies
  // frames[0..n) into the ring in order, committing each as it goes, and
  // tells the peer (waking it if it sleeps) once at the end, or before it
  // waits for room. OK once all were sent; else the first failure, as
  // Send() reports it, with the frames before it sent. `*sent` (if given)
  // is how many were sent either way.
  absl::Status SendBatch(absl::Span<const absl::Span<const uint8_t>> frames, const Wait& wait = Wait(),
                         size_t* sent = nullptr);
  // Waits as Receive() does for the first frame, then copies it and every
  // frame waiting behind it, back to back into `buffer`, as long as each
  // fits and `lengths` has room; the peer learns of the freed space once,
  // at the end. Returns how many frames were copied (lengths[0..n) holds
  // their lengths). Errors as Receive(): kResourceExhausted if the first
  // frame does not fit `buffer` (it stays); kInvalidArgument if `lengths`
  // is empty.
  absl::StatusOr<size_t> ReceiveBatch(absl::Span<uint8_t> buffer, absl::Span<size_t> lengths,
                                      const Wait& wait = Wait());
  // Zero-copy: the next frame in place, until Release(). A second Peek
  // without Release() returns the same frame; a Receive consumes it.
  absl::StatusOr<absl::Span<const uint8_t>> Peek(const Wait& wait = Wait());
  void Release();

  // The link's two addresses; Address() (0.0.0.0) on a default-constructed
  // or moved-from handle.
  Address local() const;
  Address peer() const;
  // OK while the link is up; the reason once it is down.
  absl::Status status() const;
  RingCounters tx_counters() const;
  RingCounters rx_counters() const;
  bool valid() const { return link_ != nullptr; }

 private:
  friend class Nic;
  std::shared_ptr<internal::SessionState> session_;
  std::shared_ptr<internal::NicState> nic_;
  std::shared_ptr<internal::LinkState> link_;
};

// A network interface a NIC carries, as its owner declares it
// (Nic::DeclareInterface) and hsid lists it (AdminClient::ListNics).
struct NicInterface {
  int layer = 3;      // 3: bare IP packets on the ring; 2: Ethernet frames
  std::string name;   // the device, "hsi0" (at most 15 characters)
  std::string netns;  // its network namespace (ip netns name); "" = the owner's own
};

class HSI_EXPORT Nic {
 public:
  Nic();
  ~Nic();  // detaches from the CHPID; links of this NIC go down
  Nic(Nic&&) noexcept;
  Nic& operator=(Nic&&) noexcept;

  const NicInfo& info() const;
  Address address() const { return info().address; }
  Address broadcast() const { return info().subnet.broadcast(); }

  // Sends one frame to `to` (a NIC of this CHPID, or its broadcast address),
  // making the link first if needed. `wait` bounds the whole call: the
  // setup of a new link (at most SessionOptions::timeout) and then the wait
  // for room in the ring.
  // Errors as Link::Send, plus: kInvalidArgument if the frame exceeds the
  // MTU (the message names the CHPID, both addresses and the limit),
  // kNotFound if no NIC has that address, kUnavailable if hsid cannot be
  // reached to make a new link, kDeadlineExceeded if the link was not up in
  // time (the message names the link and what it waited for: hsid's answer,
  // or the peer's seal).
  // A broadcast starts the setups of all missing links together (at most
  // SessionOptions::max_link_setups pending per session), sends on the
  // links that are up meanwhile, then on each new one as it comes up, and
  // returns by the deadline. OK if every peer got the frame; else the code
  // of the first peer's failure and a message that names every peer not
  // reached, grouped by reason ("CHPID F0: broadcast from 10.240.0.1
  // reached 1 of 4 peers; not reached: 10.240.0.3, 10.240.0.4 (not up by
  // the deadline, after 100ms: the peer has not sealed its end of the link;
  // ...)"). The peers that were reached have the frame either way.
  // `tag`: 8 bits the receiver reads in FrameView::tag / Received::tag
  // (and a sniffer in CapturedFrame::tag), carried in the ring's frame
  // header beside the frame; libhsi gives them no meaning. A receiver
  // must treat them as a peer's input: hsi-ifd marks checksum-offloaded
  // packets with them (docs/hsi-ifd.md, "Offload") and checks each one.
  absl::Status SendTo(Address to, absl::Span<const uint8_t> payload,
                      const Wait& wait = Wait(), uint8_t tag = 0);
  // Copies the next frame from any peer into `buffer` (round robin over
  // links). kDeadlineExceeded when nothing came in time, kUnavailable once
  // per dead link after its last frame (see the file comment) or when the
  // NIC was set down, kDataLoss if a peer broke its ring.
  // A frame larger than `buffer` is not lost and does not block the NIC:
  // when its link's turn comes, the call returns kResourceExhausted naming
  // the peer and both sizes ("NIC 10.240.0.1 on CHPID F0: frame of 8192
  // bytes from 10.240.0.2 does not fit the 1500-byte buffer"), the frame
  // stays at the head of that link, and the round robin moves on: the next
  // calls return other peers' frames, and that link's turn comes again
  // (with the same status) until a call's buffer fits it or Peek() takes it.
  // So a loop that reads until kDeadlineExceeded (see PrepareWait) must
  // take such a frame or stop at kResourceExhausted, or it never ends.
  absl::StatusOr<Received> Receive(absl::Span<uint8_t> buffer, const Wait& wait = Wait());
  // Zero-copy receive: the frame stays in the peer's read-only segment
  // until Release() (or the next Peek/Receive). A second Peek without
  // Release() returns the same frame again.
  absl::StatusOr<FrameView> Peek(const Wait& wait = Wait());
  void Release();

  // The link to `peer`, made now if there is none, waiting for its setup
  // until `wait`'s deadline (at most SessionOptions::timeout). Errors as
  // SendTo's for a new link.
  absl::StatusOr<hsi::Link> Link(Address peer, const Wait& wait = Wait());

  // Tells hsid that this NIC carries a network interface (hsi-ifd's hsi0),
  // so that `hsictl nics` shows its device, namespace and layer. hsid shows
  // what the owner says; it checks only the form. Kept by the session and
  // said again after an hsid restart. kInvalidArgument for a layer other
  // than 2 or 3, a name that is empty or longer than 15 characters, or a
  // name or namespace with '/', white space or a control character;
  // kUnavailable if hsid cannot be reached.
  absl::Status DeclareInterface(const NicInterface& iface);

  // The name of the LPAR that owns NIC `peer`, which must be up on this
  // NIC's CHPID: what a partition may know of the others on its CHPID (a
  // CF names its connectors this way). One round trip to hsid; the answer
  // is true when hsid gives it (the NIC may go away after). kNotFound if no
  // such NIC is up there, kUnavailable if hsid cannot be reached.
  absl::StatusOr<std::string> PeerLpar(Address peer);

  // Memory grants through hsid (hsi/wire/messages.h, "memory grants"): the
  // way one LPAR hands another memory that it alone writes (a coupling
  // facility's local validity vectors, docs/cf.md). GrantMemory hands
  // `memfd` to whichever client owns NIC `peer` on this CHPID now, under
  // `tag`; the memfd must be sealed against shrink, grow and future writes
  // (Segment::CreateMemfd, then Segment::MapOwner), else kInvalidArgument
  // saying which seal is missing; kNotFound if `peer` is no NIC of this
  // CHPID; kResourceExhausted past hsid's cap of untaken grants.
  absl::Status GrantMemory(Address peer, uint64_t tag, UniqueFd memfd, const Wait& wait = Wait());
  // Takes the memory NIC `from` granted to this NIC under `tag` (once):
  // the fd, and in *size its size as hsid found it. The caller still
  // checks the seals and size before it maps it (the granter is a peer).
  // kNotFound if no such grant waits for this client.
  absl::StatusOr<UniqueFd> TakeMemory(Address from, uint64_t tag, uint64_t* size,
                                      const Wait& wait = Wait());

  // The NIC's doorbell, for epoll/io_uring readiness (POLLIN): the read end
  // of its split doorbell, a pipe only this process can read (hsid and the
  // NIC's peers hold the write end).
  int fd() const;
  // Processes control events (when hsid's event word moved, one load
  // otherwise), clears the doorbell and arms every link to ring it. Returns
  // true if a frame or a status is already waiting (do not sleep then).
  // Call Receive(..., Wait::Never()) until it returns kDeadlineExceeded
  // before the next PrepareWait().
  bool PrepareWait() { return PrepareWait(/*drain=*/true); }

  bool valid() const { return nic_ != nullptr; }

 private:
  friend class Session;
  friend class Poller;  // also waits on the session's control socket
  // PrepareWait(), clearing the doorbell only if `drain`: the Poller knows
  // whether its poll saw the doorbell readable since it last drained it.
  bool PrepareWait(bool drain);
  std::shared_ptr<internal::SessionState> session_;
  std::shared_ptr<internal::NicState> nic_;
};

}  // namespace hsi

#endif  // HSI_NIC_H_
