// hsi/ctc.h: one end of a CTC (channel-to-channel) connection between two
// LPARs: a point-to-point channel that carries one write at a time.
//
// A connection is two half-channels, each its own sealed memfd (hsid makes
// them, hsi/ctc_host.h gets them; CreateCtcPairFds() makes a pair for tests
// and benchmarks). An end maps its own half writable and the peer's
// read-only (invariant 1: each byte has one writer). A half-channel holds
// its owner's write buffer (block_size bytes), its owner's state words and
// its owner's counters:
//   write_seq, write_len   the owner's writes announced (n-th write in the buffer)
//   withdrawn              the last own write the owner took back
//   taking, done_seq       the peer's writes the owner is taking / has finished
//   rejected               the last peer write the owner finished WITHOUT
//                          taking it (a collision, or a write withdrawn)
// So "the device is busy with X's write n" = X.write_seq == n > Y.done_seq
// and n > X.withdrawn, derived from both ends' words, each written by its
// owner alone. No word is written by both ends; there is no shared lock.
//
// Semantics, as on the real channel:
//   - Write() occupies the device until the other end has taken the data
//     (it returns then), or the write failed.
//   - A write started while the other side's write is in flight is a
//     **write collision**: both writes fail with kAborted ("write
//     collision"), each end sleeps its recovery delay (CtcOptions::recovery,
//     default kDefaultCtcRecovery, see below) and counts one collision and
//     the time. Detection is Dekker-style: each end announces its write
//     (seq_cst store), then looks at the other's words (seq_cst load), so at
//     least one of two overlapping writes sees the other; the end that sees
//     it rejects the other's write and withdraws its own, and the other end
//     learns it from the rejection. Both fail; none is delivered.
//   - Read() takes the other end's pending write (copies it out), which
//     completes that write.
//   - Every word read from the peer's half is loaded once, checked
//     (monotonic, within bounds, length <= block_size) and only then used;
//     a violation breaks THIS device (kDataLoss naming the field) and no
//     other (invariant 2).
//
// kDefaultCtcRecovery = 200 us. A collision on a FICON CTC ends both
// channel programs with a unit check; each side takes the I/O interrupt,
// senses, and redrives: a few I/O round trips of a FICON channel, each of
// the order of tens of microseconds, plus the operating system's interrupt
// handling. IBM publishes no single figure; 200 us is our estimate of that
// order of magnitude, configurable per device (hsid config `recovery_us`)
// and reported, so a benchmark can say what it assumed.
//
// Waiting: a waiting end sleeps on a futex in the peer's half (a shared
// futex works on a read-only mapping); an end wakes the peer only when the
// peer's `waiting` word says it sleeps. Waits are cut into slices of at
// most 20 ms, so a peer that never wakes us costs at most that, not a hang.
//
// Thread safety: Write/WriteIfIdle/Read/TryCopy/Complete from one thread at a time;
// Interrupt(), PeerBusy(), counters() and status() from any thread.
// Memory ordering: see ctc.cc; each acquire names the release it pairs with.
#ifndef HSI_CTC_H_
#define HSI_CTC_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hsi/export.h"
#include "hsi/fd.h"
#include "hsi/isfc_convention.h"
#include "hsi/segment.h"

namespace hsi {

inline constexpr uint32_t kDefaultCtcBlockSize = 64 * 1024;
inline constexpr uint32_t kMaxCtcBlockSize = 16 * 1024 * 1024;
inline constexpr absl::Duration kDefaultCtcRecovery = absl::Microseconds(200);

// Bytes of one half-channel with a write buffer of `block_size` bytes
// (header lines + buffer, rounded to the page).
HSI_EXPORT size_t CtcSegmentSize(uint32_t block_size);
// kInvalidArgument unless 64 <= block_size <= kMaxCtcBlockSize, multiple of 64.
HSI_EXPORT absl::Status CheckCtcBlockSize(uint32_t block_size);
// A new sealable half-channel memfd (Segment::CreateMemfd).
HSI_EXPORT absl::StatusOr<UniqueFd> CreateCtcSegment(uint32_t block_size, const std::string& name);

// What an end counts, in its own half (hsid reads it with pread to show it).
struct CtcCounters {
  uint64_t writes = 0, bytes_written = 0;  // writes the peer took
  uint64_t reads = 0, bytes_read = 0;      // peer writes this end took
  uint64_t collisions = 0;                 // own writes failed by collision
  uint64_t recovery_ns = 0;                // time spent in collision recovery
  uint64_t withdrawn = 0;                  // own writes taken back (deadline)
  uint64_t broken = 0;                     // 1 once this end found the peer's half corrupt
};
// The counters the owner of half-channel `fd` published; nullopt if the
// fd is not one (too small, bad magic). Reads, maps nothing.
HSI_EXPORT std::optional<CtcCounters> ReadCtcSegmentCounters(int fd);

struct CtcOptions {
  DeviceNumber device;       // this end's number (for messages)
  DeviceNumber peer_device;  // the other end's number
  std::string peer_lpar;     // the other end's LPAR (system) name, if known
  uint32_t block_size = kDefaultCtcBlockSize;  // largest single write
  absl::Duration recovery = kDefaultCtcRecovery;
};

// Both halves of one connection, for a test or a benchmark that plays both
// ends (hsid makes them in real use): each end's own fd to MapOwner and a
// dup of the other's to MapPeer.
struct CtcEndFds {
  UniqueFd own, peer;
};
struct CtcPairFds {
  CtcEndFds a, b;
};
HSI_EXPORT absl::StatusOr<CtcPairFds> CreateCtcPairFds(uint32_t block_size);

class HSI_EXPORT CtcDevice {
 public:
  // One end over `own` (this end's half, mapped with Segment::MapOwner) and
  // `peer` (the other's, Segment::MapPeer); both CtcSegmentSize(block_size)
  // bytes. Initialises the own half. kInvalidArgument on wrong sizes or a
  // writable peer mapping.
  static absl::StatusOr<CtcDevice> Open(Segment own, Segment peer, const CtcOptions& options);
  // MapOwner/MapPeer of the two fds, then Open().
  static absl::StatusOr<CtcDevice> OpenFds(CtcEndFds fds, const CtcOptions& options);

  CtcDevice();
  ~CtcDevice();
  CtcDevice(CtcDevice&&) noexcept;
  CtcDevice& operator=(CtcDevice&&) noexcept;

  // Writes `data` (1..block_size bytes) and waits until the other end has
  // taken it. kAborted "write collision" (after the recovery delay) if the
  // other end wrote at the same time; kDeadlineExceeded if `deadline`
  // passed first (the write is withdrawn and was not delivered);
  // kInvalidArgument for a bad size; kDataLoss once the device is broken;
  // kCancelled if Interrupt() was called.
  absl::Status Write(absl::Span<const uint8_t> data, absl::Time deadline);
  // As Write(), but starts only if the other end has no write in flight
  // (as a real CTC end that finds the device busy does not start its
  // channel program): false, with nothing started and nothing counted, if
  // it has; true once the write was taken; Write()'s errors otherwise. The
  // look comes after the data is staged, just before the start, so two
  // ends collide only if both start within that instant.
  absl::StatusOr<bool> WriteIfIdle(absl::Span<const uint8_t> data, absl::Time deadline);

  // Waits until the other end has a write pending (or `deadline`, or an
  // Interrupt()). OK when one is pending; kDeadlineExceeded; kCancelled;
  // kDataLoss once broken.
  absl::Status WaitIncoming(absl::Time deadline);
  // Copies the pending write (if any) into `out` (resized to its length)
  // WITHOUT completing it: the writer stays busy until Complete(). Returns
  // false when nothing is pending (or it was withdrawn meanwhile).
  absl::StatusOr<bool> TryCopy(std::vector<uint8_t>* out);
  // Completes the write TryCopy() copied: the writer's Write() returns OK.
  void Complete();
  // WaitIncoming + TryCopy + Complete: the next write, copied into `out`.
  absl::StatusOr<size_t> Read(std::vector<uint8_t>* out, absl::Time deadline);

  // Whether the other end has a write in flight on this device now (the
  // device is busy, as a real CTC end sees it): a hint for choosing a
  // device, from any thread. Starting a Write() on a busy device is a
  // collision; a writer takes the pending write first (TryCopy/Complete).
  // The answer can be stale the moment it is returned: two ends that both
  // see the device idle and both write still collide. A corrupt peer half
  // makes it say "busy" or "idle" at random, never more (nothing is
  // accessed by it); the device's own calls find the corruption.
  bool PeerBusy() const;

  // Makes a Write() or WaitIncoming() of another thread return kCancelled
  // at once (and every later one until ClearInterrupt()). Thread-safe.
  void Interrupt();
  void ClearInterrupt();
  // Takes the device down for `why` (e.g. kUnavailable: the other end is
  // gone, as hsid said): every call from now on returns `why`, and a
  // Write() or WaitIncoming() in progress returns it at once. Thread-safe.
  void TakeDown(absl::Status why);

  // This end's counters (its own half). Thread-safe.
  CtcCounters counters() const;
  // OK, or the kDataLoss that broke the device. Thread-safe.
  absl::Status status() const;
  const CtcOptions& options() const;
  bool valid() const { return impl_ != nullptr; }

  struct Impl;

 private:
  absl::StatusOr<bool> WriteImpl(absl::Span<const uint8_t> data, absl::Time deadline, bool if_idle);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hsi

#endif  // HSI_CTC_H_
