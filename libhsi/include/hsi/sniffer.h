// hsi/sniffer.h: the Network Traffic Analyzer: a read-only tap on a CHPID.
//
// A Sniffer asks hsid for every link of one CHPID. hsid allows it to admins
// and to the uids/gids listed in the CHPID's `sniffers` / `sniffer_gids`
// config keys, and hands over, for every link that is ready now or becomes
// ready later, a dup of both ring segments. Both are sealed
// F_SEAL_FUTURE_WRITE by their owners (hsid checks before it hands them
// out), so the kernel lets the sniffer map them read-only and nothing else
// (DESIGN.md invariant 1): a sniffer can never write into a ring, and it
// never touches the consumer's head, so it cannot slow or alter traffic.
//
// How frames are read: each direction of a link is followed on its own,
// behind the producer, by the seq chain of docs/ring.md (a record at ring
// position p is complete when its seq word equals p ^ nonce), starting at
// the producer's published tail when the link was handed over, with the
// ring consumer's own record reader. The frame is copied out, then the
// producer's sequence is re-checked, seqlock style: the record's seq word
// must still be what it was (a record committed over it changes it), and the
// producer's published tail must not be more than 3/4 of the ring ahead of
// the frame (a record still being written may cover it). If either check
// fails, the producer may have come round the ring onto the bytes
// just copied: the copy is discarded, the tap jumps to the producer's tail
// and the frames it skipped are counted in missed() (from the producer's
// published frame counter). So a slow sniffer loses frames, counted, and
// never slows the producer.
//
// Untrusted memory (invariant 2): every header word is loaded once and
// checked (kind, length <= MTU, record inside the ring, tail monotonic and
// aligned); a direction that breaks the contract (and was not lapped while
// it was read) stops being read and its status says why; the other
// directions go on.
//
// Memory ordering: the seq word is loaded with acquire (pairs with the
// producer's release in Commit); after the copy an acquire fence orders it
// before the re-reads of seq and tail. It pairs with the release fence the
// producer issues before it writes a record: if the copy saw any byte of the
// next lap, the re-reads see the tail published before it. This holds on
// any architecture, not only under x86's ordered stores.
//
// Thread safety: one thread at a time per Sniffer.
#ifndef HSI_SNIFFER_H_
#define HSI_SNIFFER_H_

#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hsi/address.h"
#include "hsi/export.h"

namespace hsi {

struct SnifferOptions {
  std::string socket_path;  // "": see hsi::ResolveSocketPath()
  uint32_t chpid = 0xF0;
  absl::Duration timeout = absl::Seconds(5);  // for hsid's answer
  // The uid hsid must run as besides root (SessionOptions::hsid_uid).
  std::optional<uint32_t> hsid_uid = std::nullopt;
};

// One frame as the tap saw it.
struct CapturedFrame {
  absl::Time time;  // when the tap copied it (not when it was sent)
  uint32_t link_id = 0;
  Address source;
  // The receiving NIC; for a broadcast frame the CHPID's broadcast address
  // (a broadcast shows once per link it travelled on).
  Address destination;
  bool broadcast = false;
  uint16_t type = 0;  // the ring's frame type word: low byte 0 unicast, 1 broadcast
  uint8_t tag = 0;    // its high byte: the sender's tag (hsi/nic.h, Nic::SendTo)
  // A private copy, valid while the callback runs.
  absl::Span<const uint8_t> payload;
};

// Per direction of a link the tap follows.
struct TapDirection {
  uint32_t link_id = 0;
  Address source, destination;
  uint64_t captured = 0;
  uint64_t missed = 0;
  absl::Status status;  // OK, or why this direction is no longer read
};

class HSI_EXPORT Sniffer {
 public:
  // Connects to hsid and opens the tap. kPermissionDenied with hsid's words
  // if this uid may not, kNotFound if the CHPID is not defined,
  // kUnavailable if hsid does not answer.
  static absl::StatusOr<Sniffer> Open(const SnifferOptions& options);

  Sniffer();
  ~Sniffer();
  Sniffer(Sniffer&&) noexcept;
  Sniffer& operator=(Sniffer&&) noexcept;

  // Calls `on_frame` for every frame committed on the CHPID's links since
  // the last call (in link order, each direction in ring order), and handles
  // hsid's link events. If nothing is there it naps (sleeps, never spins)
  // until something is or `deadline` passes. Returns the number of frames
  // delivered. hsid going away is not an error: the links the tap has keep
  // being read (see control_status()).
  absl::StatusOr<size_t> Poll(absl::FunctionRef<void(const CapturedFrame&)> on_frame,
                              absl::Time deadline);

  uint64_t captured() const;
  uint64_t missed() const;
  uint32_t chpid() const;
  uint32_t mtu() const;
  Subnet subnet() const;
  std::vector<TapDirection> directions() const;
  // OK while the control connection to hsid is up.
  absl::Status control_status() const;

 private:
  struct HSI_LOCAL State;
  std::unique_ptr<State> state_;
};

}  // namespace hsi

#endif  // HSI_SNIFFER_H_
