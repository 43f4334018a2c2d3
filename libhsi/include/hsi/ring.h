// hsi/ring.h: the frame ring, one direction of a link between two LPARs.
//
// A single-producer single-consumer ring of variable-length frames over two
// shared-memory segments, one per side (DESIGN.md section 3). The producer's
// segment holds the frame bytes and the producer's state (published tail,
// need-space flag, counters); the consumer's segment holds the consumer's
// state (head, need-data flag, counters). Each side maps its own segment
// read-write and the other's read-only, so the kernel enforces one writer per
// byte (invariant 1). A segment carries the producer half of one direction
// and the consumer half of the other, so one pair of segments makes a full
// duplex link (hsi/endpoint.h).
//
// Frames: a 16-byte header {seq, length, kind, type} and the payload, padded
// to 16 bytes; a padding record fills the tail of the ring at wrap so that
// every frame is contiguous (zero-copy). `seq` is the frame's free-running
// 64-bit ring position XOR a random odd per-segment nonce; the producer
// stores it last with release order, so the consumer learns that a frame is
// complete from the frame's own cache line, without a second miss on a
// shared tail index.
//
// Memory ordering:
//   producer: release fence before writing a record (at reserve), for a
//             lapped sniffer's re-checks (docs/ring.md)
//   producer: payload and header words, then header.seq (release)   -> consumer acquires header.seq
//   consumer: reads frame, then head (release)                      -> producer acquires head before reuse
//   need-wakeup (both directions): sleeper stores flag, seq_cst fence, re-checks;
//   waker publishes, seq_cst fence, loads flag, wakes the sleeper if set:
//   a blocking call of this ring sleeps in FUTEX_WAIT on the peer's "woke"
//   word (the waker stores the flag it answers there, release, then
//   FUTEX_WAKE; the sleeper acquires it before its re-check); a caller that
//   armed with ArmWakeup() and sleeps on a doorbell gets a doorbell ring.
//   docs/ring.md, "Waking", says why a hostile peer cannot stall or starve
//   a sleeper this way.
//
// Untrusted peer (invariant 2): every value read from the peer's segment is
// loaded once into a local and validated before use. A violation moves the
// ring to BROKEN: every later call fails with status() (kDataLoss, naming
// what was wrong). No out-of-bounds access, no crash, no unbounded wait. A
// hostile producer can still change payload bytes while the consumer reads
// them through Peek(); copy them (TryReceive) if that matters.
//
// Thread safety: a RingProducer is used by one thread at a time, a
// RingConsumer likewise; the two may live in different threads or processes.
// The Segments and Doorbells passed to Create() must outlive the ring.
#ifndef HSI_RING_H_
#define HSI_RING_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hsi/doorbell.h"
#include "hsi/fd.h"
#include "hsi/segment.h"
#include "hsi/wait.h"
#include "hsi/export.h"

namespace hsi {

namespace internal {
struct SegmentLayout;
}

// The shape of one ring; both sides must agree on it (hsid hands it out).
struct HSI_EXPORT RingGeometry {
  // Bytes of frame data: a power of two, at least 4096 and at least twice the
  // largest record (16 + mtu rounded up to 16), at most 1 GiB.
  uint64_t capacity = uint64_t{1} << 20;
  // Largest payload in bytes, at most 1 MiB.
  uint32_t mtu = 16384;

  // OK, or kInvalidArgument saying which rule is broken.
  absl::Status Validate() const;
  // Size of the memfd that holds one side: control pages plus data.
  size_t segment_size() const;
};

// Creates one side's segment: a sealed memfd sized for `geometry` with its
// header (magic, version, geometry, a random nonce) written, not mapped. In
// a running host hsid does this; tests and the demo do it themselves.
HSI_EXPORT absl::StatusOr<UniqueFd> CreateRingSegment(const RingGeometry& geometry,
                                           absl::string_view name);

// Checks a ring segment handed over by someone else (hsid checks the
// segments clients hand in when they re-register a link after a restart):
// a memfd sealed against shrink, grow and new writers (F_SEAL_FUTURE_WRITE,
// so nobody can map it writable any more), whose header is a valid
// segment header and whose size is its geometry's segment_size(). Reads
// with pread, maps nothing. Returns the geometry; kInvalidArgument saying
// what is wrong otherwise.
HSI_EXPORT absl::StatusOr<RingGeometry> InspectSealedRingSegment(int fd);

// Whether `fd` is a memfd sealed against new writable mappings
// (F_SEAL_FUTURE_WRITE): hsid hands a segment to a peer or a sniffer only
// then. False for any other fd.
HSI_EXPORT bool IsSealedAgainstWrites(int fd);

// A frame seen by the consumer. `payload` points into the peer's read-only
// segment and stays valid until Release().
struct Frame {
  absl::Span<const uint8_t> payload;
  uint16_t type = 0;  // opaque to the ring; set by the producer's Commit()
};

// Counters of one side of one direction, as last published by its owner.
struct RingCounters {
  uint64_t frames = 0;        // producer: committed; consumer: released
  uint64_t bytes = 0;         // payload bytes, same sense
  uint64_t full_events = 0;   // producer: times the ring was found full
  uint64_t drops = 0;         // producer: frames dropped by policy (RecordDrop)
  uint64_t wakeups_sent = 0;  // doorbell writes to the peer
};

// Both sides' counters of one ring segment, as its owner published them:
// `tx` what it counted as a producer (all five), `rx` as a consumer
// (frames, bytes, wakeups_sent). Read with one pread through the layout's
// fields, mapping nothing (hsid reads link counters this way). Counters,
// not a snapshot: each word is read as it was. nullopt if the fd cannot be
// read that far.
struct SegmentCounters {
  RingCounters tx;
  RingCounters rx;
};
HSI_EXPORT std::optional<SegmentCounters> ReadRingSegmentCounters(int fd);
// Sets a new segment's free-running positions before any ring is created on
// it or anyone else maps it: its producer continues at `tail`, its consumer
// (of the other direction) at `head`. For a segment that replaces one whose
// ring went on elsewhere (hsi-run across exec, docs/hsi-run.md section 5):
// the peer's view of the positions continues without a jump. `own` is
// mapped read-write. kInvalidArgument if a position is not record-aligned.
HSI_EXPORT absl::Status SeedRingPositions(const Segment& own, uint64_t tail, uint64_t head);

// Where a caller that armed a ring end with ArmFutexWakeup() sleeps: in
// FUTEX_WAIT (or FUTEX_WAITV with other rings' words) on `word`, a word of
// the peer's read-only segment, while it holds `value`, loaded after the
// arming (acquire: pairs with the peer's release store of its answer). The
// peer stores the arming's flag there before its FUTEX_WAKE, so a wake-up
// that comes before the sleep makes the wait return at once. `answered`:
// the peer has answered this arming already; do not sleep, re-check.
// Hostile peers: the word is the peer's; it can wake us for nothing or
// never, which costs a re-check or its own frames, never another ring's
// (docs/ring.md, "Why a hostile peer cannot stall or starve a sleeper").
struct FutexWakeup {
  const uint32_t* word = nullptr;
  uint32_t value = 0;
  bool answered = false;
};

class HSI_EXPORT RingProducer {
 public:
  // `own` is the producer's segment mapped with Segment::MapOwner, `peer`
  // the consumer's mapped with Segment::MapPeer. Reserve() sleeps on a
  // futex in the consumer's segment when the ring is full; Publish() wakes a
  // consumer blocked in Peek() by futex, and rings `peer_bell` for one that
  // armed with ArmWakeup() and sleeps on its doorbell. `own_bell` is where
  // the caller sleeps after ArmWakeup(). kInvalidArgument if the geometry
  // is bad or a segment does not match it, kDataLoss if the segment header
  // is not a ring's.
  static absl::StatusOr<RingProducer> Create(const Segment& own,
                                             const Segment& peer,
                                             const Doorbell& own_bell,
                                             const Doorbell& peer_bell,
                                             const RingGeometry& geometry);

  RingProducer() = default;
  RingProducer(RingProducer&&) = default;
  RingProducer& operator=(RingProducer&&) = default;

  // Reserves room for a frame of `len` payload bytes and returns where to
  // write it, or nullptr if the ring is full, `len` exceeds the MTU, or the
  // ring is BROKEN (check status()). The reservation holds until Commit() or
  // the next TryReserve().
  uint8_t* TryReserve(size_t len);
  // As TryReserve, waiting for room as `wait` says. kInvalidArgument if
  // `len` exceeds the MTU, kDeadlineExceeded, or the BROKEN status.
  absl::StatusOr<absl::Span<uint8_t>> Reserve(size_t len, const Wait& wait);
  // Makes the reserved frame, cut to `len` bytes (at most the reserved
  // length), visible to the consumer and then Publish()es.
  void Commit(size_t len, uint16_t type = 0) {
    CommitDeferred(len, type);
    Publish();
  }
  // Makes the frame visible but leaves the tail, counters and wake-up check
  // for a later Publish(): call it once per batch. A sleeping consumer is
  // not woken until then.
  void CommitDeferred(size_t len, uint16_t type = 0);
  // Publishes tail and counters and rings the consumer's doorbell if it
  // sleeps (and was not already rung for this sleep).
  void Publish();

  // Copying send: true if the frame was committed (and published).
  bool TrySend(absl::Span<const uint8_t> payload, uint16_t type = 0);
  // Copying send, waiting for room as `wait` says.
  absl::Status Send(absl::Span<const uint8_t> payload, const Wait& wait,
                    uint16_t type = 0);
  // Counts a frame the caller dropped because the ring was full (overflow
  // policy `drop`); published with the other counters.
  void RecordDrop() { ++drops_; }

  // For callers that sleep on the doorbell themselves (one doorbell shared
  // by many rings, e.g. a NIC): ArmWakeup() asks the consumer to ring
  // `own_bell` at its next Publish() that frees space (need-space flag, a
  // new sleep epoch, then a seq_cst fence). Re-check TryReserve() after
  // arming and before sleeping; DisarmWakeup() when awake again.
  void ArmWakeup();
  void DisarmWakeup();
  // As ArmWakeup(), but asks to be woken by FUTEX_WAKE on the consumer's
  // "woke" word instead of a doorbell ring, for a caller that sleeps on the
  // words of many rings at once (a NIC, FUTEX_WAITV). DisarmWakeup() after.
  FutexWakeup ArmFutexWakeup();

  // OK, or why the ring is BROKEN.
  const absl::Status& status() const { return broken_; }
  bool ok() const { return broken_.ok(); }
  RingCounters counters() const;
  const RingGeometry& geometry() const { return geometry_; }
  uint32_t mtu() const { return geometry_.mtu; }
  // The next write position (everything before it is committed).
  uint64_t position() const { return tail_; }

 private:
  bool ReloadHead();
  void Break(absl::Status status);

  internal::SegmentLayout* own_ = nullptr;         // read-write
  const internal::SegmentLayout* peer_ = nullptr;  // read-only
  uint8_t* data_ = nullptr;
  const Doorbell* own_bell_ = nullptr;
  const Doorbell* peer_bell_ = nullptr;
  RingGeometry geometry_;
  uint64_t mask_ = 0;
  uint64_t nonce_ = 0;
  uint64_t tail_ = 0;        // next write position (local truth)
  uint64_t head_cache_ = 0;  // consumer's head as last validated
  uint64_t reserved_off_ = 0;
  size_t reserved_len_ = 0;
  bool reserved_ = false;
  bool was_full_ = false;
  uint64_t frames_ = 0, bytes_ = 0, full_events_ = 0, drops_ = 0, wakeups_ = 0;
  uint64_t sleep_epoch_ = 0;
  uint64_t last_woken_ = 0;  // consumer sleep epoch we last rang for
  absl::Status broken_;
};

class HSI_EXPORT RingConsumer {
 public:
  // `own` is the consumer's segment mapped with Segment::MapOwner, `peer`
  // the producer's mapped with Segment::MapPeer. Peek() sleeps on a futex
  // in the producer's segment when the ring is empty; Publish() wakes a
  // producer blocked in Reserve() by futex, or rings `peer_bell` for one
  // that armed with ArmWakeup(). Errors as RingProducer::Create.
  static absl::StatusOr<RingConsumer> Create(const Segment& own,
                                             const Segment& peer,
                                             const Doorbell& own_bell,
                                             const Doorbell& peer_bell,
                                             const RingGeometry& geometry);

  RingConsumer() = default;
  RingConsumer(RingConsumer&&) = default;
  RingConsumer& operator=(RingConsumer&&) = default;

  // Returns true and fills `*frame` with the next frame, or false if none is
  // there or the ring is BROKEN (check status()). A second TryPeek/Peek
  // without Release() returns the same frame again (same bytes, same
  // place): nothing is consumed until Release().
  bool TryPeek(Frame* frame);
  // As TryPeek, waiting as `wait` says. kDeadlineExceeded, or the BROKEN
  // status.
  absl::Status Peek(Frame* frame, const Wait& wait);
  // Releases the peeked frame and Publish()es. Requires a successful Peek.
  void Release() {
    ReleaseDeferred();
    Publish();
  }
  // Releases the peeked frame; its space returns to the producer at the next
  // Publish() (or by itself once half the ring waits for it).
  void ReleaseDeferred();
  // Publishes head and counters and rings the producer's doorbell if it
  // sleeps on a full ring.
  void Publish();

  // As RingProducer::ArmWakeup(): the producer's next Publish() of a frame
  // rings `own_bell`. Re-check TryPeek() after arming, before sleeping.
  void ArmWakeup();
  void DisarmWakeup();
  // As RingProducer::ArmFutexWakeup(): the producer's next Publish() of a
  // frame answers on its "woke" word and FUTEX_WAKEs it instead.
  FutexWakeup ArmFutexWakeup();

  // Copying receive into `buffer`: the frame's length, kUnavailable with an
  // empty message if no frame is waiting, kResourceExhausted if `buffer` is
  // too small (the frame stays in the ring), or the BROKEN status.
  // (Here kUnavailable means "nothing yet, try again"; at the session level,
  // hsi/nic.h, kUnavailable means the peer or the NIC is gone.)
  absl::StatusOr<size_t> TryReceive(absl::Span<uint8_t> buffer,
                                    uint16_t* type = nullptr);
  // As TryReceive, waiting as `wait` says.
  absl::StatusOr<size_t> Receive(absl::Span<uint8_t> buffer, const Wait& wait,
                                 uint16_t* type = nullptr);

  const absl::Status& status() const { return broken_; }
  bool ok() const { return broken_.ok(); }
  RingCounters counters() const;
  const RingGeometry& geometry() const { return geometry_; }
  // The next read position (the peeked frame's, if one is peeked).
  uint64_t position() const { return head_; }

 private:
  void Break(absl::Status status);
  absl::Status WaitForFrame(Frame* frame, const Wait& wait);

  internal::SegmentLayout* own_ = nullptr;
  const internal::SegmentLayout* peer_ = nullptr;
  const uint8_t* data_ = nullptr;
  const Doorbell* own_bell_ = nullptr;
  const Doorbell* peer_bell_ = nullptr;
  RingGeometry geometry_;
  uint64_t mask_ = 0;
  uint64_t nonce_ = 0;
  uint64_t head_ = 0;            // next read position (local truth)
  uint64_t published_head_ = 0;  // last head stored for the producer
  uint64_t peek_record_ = 0;     // record size of the peeked frame, 0 if none
  Frame peeked_;
  uint64_t frames_ = 0, bytes_ = 0, wakeups_ = 0;
  uint64_t sleep_epoch_ = 0;
  uint64_t last_woken_ = 0;
  absl::Status broken_;
};

}  // namespace hsi

#endif  // HSI_RING_H_
