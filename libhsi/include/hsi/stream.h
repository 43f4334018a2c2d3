// hsi/stream.h: a byte stream over a ring pair whose wake-ups travel as
// bytes on a real TCP socket (hsi-run, docs/hsi-run.md).
//
// hsi-run keeps a program's TCP socket as its fd and moves the connection's
// data onto two rings (hsi/ring.h), one per direction. The kernel socket is
// still what poll/epoll/select watch, across fork and in shared epoll sets,
// so readiness is made real on it: when a consumer runs out of data it
// *arms* (StreamEnd::ArmData), and the producer's next commit sends one
// byte, a *bell*, over the TCP connection, which makes the consumer's socket
// readable. The consumer drains bells only while arming (or, DrainStale,
// when woken with an empty ring), and only as many as the producer had
// counted before it found the ring empty, so after an arm, whenever the
// ring holds data at least one bell is (or is about to be) in the socket; a
// bell with no data behind it is a spurious wake-up. When to arm is the
// caller's choice: hsi-run arms just before a reader sleeps (lazy arming,
// docs/hsi-run.md section 4). The same for space: a producer
// that finds the ring full arms (ArmSpace) and the consumer's next release
// sends a bell back (an EPOLLOUT edge for the producer's socket) and wakes
// a futex word for a producer blocked in write. No stream byte ever goes
// over TCP: every byte in the TCP stream is a bell.
//
// Each side owns one ring segment and one StreamPage (a 4 KiB sealed memfd),
// mapped read-write by the owner only and read-only by the peer
// (invariant 1). Values read from the peer's page are loaded once and
// used only as wake-up hints (a hostile peer can make its own connection
// wake too often or stall, nothing else); ring frames are validated by the
// ring (invariant 2): a violation breaks this stream only (ECONNRESET).
//
// One bell per wait: a wait that sleeps on many connections (an epoll set)
// arms them all with its waiter id; the producer's process remembers (in a
// small table of atomics, per process) the ids it has rung, and rings at
// most one connection per id: the wait is woken once and then looks at all
// its rings (hsi-run's wait.cc). An id is only a hint from the peer: a
// forged one can only cost its own connections their bells; the table
// forgets (a slot overwritten) only towards ringing more.
//
// Memory ordering (the need-wakeup handshake of DESIGN.md section 3):
//   consumer: data_arm (seq_cst store), seq_cst fence, re-check ring
//   producer: commit (release, in the ring), seq_cst fence, load data_arm
// so either the consumer sees the new frame or the producer sees the arm.
// Space likewise with space_arm against the consumer's head publish.
// bells_sent is incremented (release) just before a bell byte is sent (both
// under one spin lock, so bytes leave in count order); the peer loads it
// (acquire) before arming and drains at most that many, so it never drains
// a bell sent for its newer arm, and always the one that woke it.
//
// Thread safety: a StreamEnd is not synchronized; hsi-run holds one lock
// for the sending side and one for the receiving side (TryWrite/ArmSpace
// under the first, TryRead/ArmData/Readable under the second). It holds no
// pointers into private heap memory, so it may live in a MAP_SHARED page
// shared by the processes of a fork (hsi-run does so).
#ifndef HSI_STREAM_H_
#define HSI_STREAM_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hsi/doorbell.h"
#include "hsi/export.h"
#include "hsi/fd.h"
#include "hsi/ring.h"
#include "hsi/segment.h"

namespace hsi {

inline constexpr size_t kStreamPageSize = 4096;
inline constexpr uint64_t kStreamPageMagic = 0x48534953544d5031;  // "HSISTMP1"

// One side's control page. Only its owner writes it.
struct StreamPage {
  uint64_t magic;  // kStreamPageMagic
  uint64_t reserved[7];
  // Bytes this side has sent over TCP as bells (data and space), counted
  // before each send.
  alignas(64) std::atomic<uint64_t> bells_sent;
  // As consumer: the epoch of this side's latest request for a data bell.
  alignas(64) std::atomic<uint64_t> data_arm;
  // As consumer: the one wait that made that request (a random id), or 0:
  // any number of sleepers may rely on it. A producer that has rung one
  // bell for a waiter id need not ring another connection for it (that
  // wait is woken already, and looks at all its rings when it wakes).
  // Stored before data_arm.
  std::atomic<uint64_t> data_waiter;
  // As consumer: the peer's space_arm epoch this side last rang for.
  std::atomic<uint64_t> space_rung;
  // As consumer: bumped (release) before FUTEX_WAKE when it rings for space.
  std::atomic<uint32_t> space_futex;
  // As producer: the epoch of this side's latest request for a space bell.
  alignas(64) std::atomic<uint64_t> space_arm;
  // As producer: the peer's data_arm epoch this side last rang for.
  std::atomic<uint64_t> data_rung;
  // Totals, for hsictl (bytes this side committed and consumed).
  alignas(64) std::atomic<uint64_t> bytes_out;
  std::atomic<uint64_t> bytes_in;
  // Exec (docs/hsi-run.md section 5). Nonzero from just before this side's
  // image execs (stored after its last commit, seq_cst): hsid will have its
  // next generation of segments. A hint only: the peer asks hsid when it
  // runs out of ring data or room; hsid's answer is what counts.
  alignas(64) std::atomic<uint64_t> moving;
  // The generation of the peer's segments whose ring this side reads now
  // (0: the first; raised once the earlier ring is drained). The peer
  // waits for it before it execs again.
  std::atomic<uint64_t> peer_gen;
};
static_assert(std::is_standard_layout_v<StreamPage>);
static_assert(sizeof(StreamPage) <= kStreamPageSize);
static_assert(offsetof(StreamPage, bells_sent) == 64);
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free);

// Makes this side's page: a memfd sealed against shrink and grow, mapped
// read-write, initialized, then sealed against new writers. The Segment's
// fd is the one to hand to hsid (DupFd). kInternal naming the syscall.
HSI_EXPORT absl::StatusOr<Segment> CreateStreamPage();
// Whether `fd` is a stream page a peer may be handed: a memfd of exactly
// kStreamPageSize bytes sealed against shrink, grow and new writers
// (hsid checks before it hands one on). kInvalidArgument saying what is not.
HSI_EXPORT absl::Status CheckStreamPage(int fd);
// Makes this side's ring segment of `geometry`, mapped read-write and sealed.
HSI_EXPORT absl::StatusOr<Segment> CreateOwnRing(const RingGeometry& geometry);

// What an exec carries from the old image's StreamEnd to the new image's
// (docs/hsi-run.md section 5): ring positions and wake-up counters, so that
// the new segments continue where the old ones stopped.
struct StreamCarry {
  uint64_t tail = 0;       // own ring: next write position
  uint64_t head = 0;       // the peer's ring: next read position
  uint64_t rx_offset = 0;  // bytes of the frame at `head` already read
  uint64_t bells_drained = 0, bells_sent = 0;
  uint64_t data_arm = 0, data_rung = 0, space_arm = 0, space_rung = 0;
  uint64_t bytes_out = 0, bytes_in = 0;
  uint64_t gen = 0;       // own segments' generation (hsid numbers them)
  uint64_t peer_gen = 0;  // generation of the peer's segments in use
};

class HSI_EXPORT StreamEnd {
 public:
  // Builds the stream in `*this` from the four mapped segments (kept here;
  // their fds are given up: the mappings stay). kInvalidArgument/kDataLoss
  // if a segment is not what `geometry` says.
  absl::Status Init(Segment own_ring, Segment peer_ring, Segment own_page, Segment peer_page,
                    const RingGeometry& geometry);

  // Copies up to the total of `iov` into the ring as frames of at most the
  // MTU and, if the peer is armed, sends it a bell on `sock`. Returns the
  // bytes taken (0 when the ring is full), or -ECONNRESET when the ring is
  // broken.
  ssize_t TryWrite(const struct iovec* iov, int iovcnt, int sock);
  // Copies up to the total of `iov` out of the ring (with `peek`, from the
  // first frame only and without consuming). Returns the bytes copied (0:
  // the ring is empty), or -ECONNRESET when the ring is broken. Sends a
  // space bell if the peer waits for room.
  ssize_t TryRead(const struct iovec* iov, int iovcnt, bool peek, int sock);
  // Consumer: asks for a data bell and drains the bells counted before.
  // Returns true if the ring is still empty (armed: the next commit rings),
  // false if data is there (read it).
  bool ArmData(int sock) { return ArmData(sock, 0); }
  // The same, for a wait identified by `waiter` (nonzero, unique to that
  // wait) that is the only sleeper this ring has and that, once woken,
  // looks at every ring it waits on: a producer rings at most one of the
  // connections armed for one waiter (StreamPage::data_waiter).
  bool ArmData(int sock, uint64_t waiter);
  // Consumer, woken with nothing in the ring (a bell for a frame already
  // read): drains the bells counted before it looked, without arming.
  // Returns true if the ring is empty, false if data is there.
  bool DrainStale(int sock);
  // Producer: asks for a space bell. Returns true if the ring still has no
  // room for a frame of `need` bytes (capped at the MTU).
  bool ArmSpace(size_t need);
  // After ArmSpace() returned true: blocks until the consumer rings for
  // space (or did since the arm), at most `timeout_ms`.
  void WaitSpace(int timeout_ms) const;
  // Increments bells_sent and sends one bell on `sock`, non-blocking, with
  // `flags` (MSG_NOSIGNAL or 0: a probe of a peer that may be gone, which
  // raises SIGPIPE as a TCP write would). Returns send(2)'s result.
  ssize_t SendBell(int sock, int flags);
  // How many bells the peer counted that this side has not drained yet.
  uint64_t BellsUndrained() const {
    const uint64_t sent = peer_page()->bells_sent.load(std::memory_order_acquire);
    return sent > bells_drained_ ? sent - bells_drained_ : 0;
  }
  bool BellsOwed() const { return BellsUndrained() > 0; }
  // Bytes of the first waiting frame not yet read (0: none), for FIONREAD.
  size_t Readable();
  bool broken() const { return failed_ || !tx_.ok() || !rx_.ok(); }
  // Unmaps the four segments in this process only (Segment::UnmapView): a
  // process of a fork letting go while others keep the stream.
  void UnmapViews() const {
    for (const Segment* s : {&own_ring_, &peer_ring_, &own_page_, &peer_page_, &old_peer_ring_}) s->UnmapView();
  }
  uint64_t bytes_out() const { return own_page()->bytes_out.load(std::memory_order_relaxed); }
  uint64_t bytes_in() const { return own_page()->bytes_in.load(std::memory_order_relaxed); }

  // ---- exec (docs/hsi-run.md section 5). All under both locks.
  // Old image, just before execve: fills `*out` and marks the page moving.
  // kFailedPrecondition if this side still drains the peer's ring from
  // before the peer's own exec (that ring cannot be carried).
  absl::Status Export(StreamCarry* out);
  // The exec failed: the old image goes on, the mark is withdrawn.
  void CancelExport() { own_page()->moving.store(0, std::memory_order_seq_cst); }
  // Whether the peer has caught up with this side's segments (it reads the
  // ring of generation gen()): only then may this side exec again.
  bool PeerCaughtUp() const { return peer_page()->peer_gen.load(std::memory_order_acquire) == gen_; }
  uint64_t gen() const { return gen_; }
  // New image: writes `carry`'s positions and counters into its fresh own
  // segments, before they are handed to anyone (hsi/ring.h
  // SeedRingPositions).
  static absl::Status Seed(const Segment& own_ring, const Segment& own_page, const StreamCarry& carry);
  // New image: Init() on the seeded segments and the peer's, then the
  // carried local state; `gen` is the new generation hsid gave them.
  absl::Status Resume(Segment own_ring, Segment peer_ring, Segment own_page, Segment peer_page,
                      const RingGeometry& geometry, const StreamCarry& carry, uint64_t gen);
  // The peer marked its page moving (and this side has no switch pending):
  // ask hsid for its next generation (hsi-run's io.cc).
  bool PeerMoving() const {
    return !rx_switch_pending_ && peer_page()->moving.load(std::memory_order_acquire) != 0;
  }
  // The generation of the peer's segments this side has (fetched).
  uint64_t peer_gen_fetched() const { return peer_gen_fetched_; }
  // The peer's new image's segments (generation `peer_gen`): writes go to
  // the ring at once (its consumer state is there); reads finish the old
  // ring (final: its writer's image is gone) and then continue on the new
  // one, at the same position. Errors leave the stream as it was.
  absl::Status SwitchPeer(Segment peer_ring, Segment peer_page, uint64_t peer_gen);

 private:
  // The first unread frame of the current peer ring; when it is drained
  // and a switch is pending, moves to the new one.
  bool PeekFrame(Frame* f);
  StreamPage* own_page() const { return static_cast<StreamPage*>(own_page_.data()); }
  const StreamPage* peer_page() const { return static_cast<const StreamPage*>(peer_page_.data()); }
  void Bell(int sock) { (void)SendBell(sock, MSG_NOSIGNAL); }
  // Reads (non-blocking) the peer's bells up to its count `counted`.
  void DrainBells(int sock, uint64_t counted);

  Segment own_ring_, peer_ring_, own_page_, peer_page_;
  RingProducer tx_;
  RingConsumer rx_;
  size_t rx_offset_ = 0;       // bytes of the peeked frame already read
  uint64_t bells_drained_ = 0;  // peer's bells read off the socket
  uint64_t data_arm_ = 0;      // my last data_arm
  uint64_t space_arm_ = 0;     // my last space_arm
  uint32_t space_ticket_ = 0;  // the peer's space_futex when I last armed
  uint64_t gen_ = 0;             // own segments' generation
  uint64_t peer_gen_fetched_ = 0;  // the peer's newest segments' generation here
  Segment old_peer_ring_;        // the peer's ring before its exec, drained first
  // Written under the receive lock (and both, in SwitchPeer), read under
  // either: atomic (relaxed; the locks order everything else).
  std::atomic<bool> rx_switch_pending_{false};
  std::atomic<bool> failed_{false};  // a switch found the new ring unusable
  std::atomic<uint32_t> bell_lock_{0};  // SendBell's spin lock (shared across fork)
};

}  // namespace hsi

#endif  // HSI_STREAM_H_
