// hsi/isfc.h: an ISFC logical link: 1 to 16 CTC devices between two
// systems (LPARs), used as one ordered message channel, as z/VM joins FCTC
// connections between two SSI members.
//
// Each side activates the link over its ends of the devices (hsi/ctc.h;
// CtcHost::Open gets them from hsid); the link is complete when both sides
// have activated it: each side's first write is a hello naming its system
// and mode, and WaitActive() returns once the peer's hello came and names
// the expected system. Devices can be added and removed while the link runs.
//
// Messages of 1 byte to IsfcOptions::max_message (default kMaxIsfcMessage,
// 64 MiB) are cut into chunks of the devices' block size (less a 32-byte
// header: sequence number, message length, offset), striped over the
// devices this side may write, and reassembled in order at the other end.
// Which devices this side writes, and in which order, is z/VM's convention
// (hsi/isfc_convention.h), planned over the device numbers of the side with
// the lesser name so both sides agree; IsfcMode::kNaive (both write every
// device, lowest free first) exists for comparison. A chunk goes to the
// first free device in this side's order.
//
// Staying off the peer's devices (kConvention): the devices this side may
// write that the peer does not ("reserved": the first one or two of this
// side's order, with 2 or more devices) are always tried first. A chunk
// goes on to a device both sides write ("spills") only when this side has
// more queued than its reserved devices carry in one round (bulk), or when
// it has waited IsfcOptions::spill_wait for a reserved device (a small
// control message whose reserved devices still hold earlier ones); and
// then only onto a device the peer has no write in flight on
// (CtcDevice::PeerBusy). And an end that has a chunk to write first takes
// the peer's pending write (a real CTC end sees the device busy: its write
// would collide), then writes only if the device is still idle
// (CtcDevice::WriteIfIdle). kNaive does none of this: it writes at once,
// as a link that ignores the device's state, and takes the peer's pending
// write first only after a collision. So the
// relocation-like load (one side streams, the other acknowledges) does not
// collide: the acknowledging side stays on its reserved devices, and
// spills, if ever, only between the streaming side's writes.
//
// Flow control: a device carries one chunk at a time and a write lasts
// until the reader took it (CTC semantics); the sender never puts a chunk
// more than `window` chunks past the oldest chunk not yet taken on a
// device, so the receiver can always take what arrives (anything outside
// that window is a protocol violation); the receiver stops taking while
// `receive_buffer` bytes of whole messages wait for Receive(); Send()
// waits while `send_buffer` bytes are queued.
//
// Faults: a write collision (possible on devices both sides write, and in
// kNaive mode) fails the chunk on both sides; each resends it after the
// recovery delay. A device that goes down (removed, closed by the peer,
// its peer dead, its peer's half corrupt) gives its unfinished chunk back
// to the queue, which another device sends; the receiver drops chunks it
// already has (by sequence number). The link lives while one device this
// side may write remains; with none, Send() waits for an AddDevice() until
// its deadline. A peer that sends a chunk that breaks the format breaks the
// device it came on (kDataLoss), not the link.
//
// Thread safety: all methods are thread-safe. The link runs one thread per
// device (the channel program of that device); Send/Receive block the
// caller only.
#ifndef HSI_ISFC_H_
#define HSI_ISFC_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hsi/ctc.h"
#include "hsi/ctc_host.h"
#include "hsi/export.h"
#include "hsi/isfc_convention.h"

namespace hsi {

inline constexpr size_t kMaxIsfcMessage = size_t{64} << 20;
inline constexpr size_t kIsfcChunkHeader = 32;

struct IsfcOptions {
  std::string self;  // this system's name
  std::string peer;  // the peer system's name
  IsfcMode mode = IsfcMode::kConvention;
  size_t max_message = kMaxIsfcMessage;     // 1 .. kMaxIsfcMessage
  uint32_t window = 64;                     // chunks in flight past the oldest untaken
  size_t send_buffer = size_t{8} << 20;     // bytes Send() may queue
  size_t receive_buffer = size_t{64} << 20; // bytes of whole messages waiting for Receive()
  // kConvention: how long a chunk waits for one of this side's reserved
  // devices before it may spill onto a device the peer also writes (when
  // this side's queue is no more than the reserved devices carry in one
  // round). A spill risks a collision, which costs each side the recovery
  // delay (200 us by default) and a resend; 1 ms is five of those.
  absl::Duration spill_wait = absl::Milliseconds(1);
  // If set (the host whose devices these are), the link declares its side
  // to hsid at activation and after each device change, and withdraws it
  // when deactivated, so that `hsictl isfc` shows it. Must outlive the link.
  CtcHost* host = nullptr;
};

// One device of a running link, for people (hsictl, the benchmark).
struct IsfcDeviceInfo {
  DeviceNumber device;  // this side's number
  DeviceNumber key;     // the number the plan uses (the lesser-named side's)
  int self_rank = -1;   // this side's write order (0 first), -1: does not write
  int peer_rank = -1;
  std::string why;      // from the plan
  bool up = true;
  CtcCounters counters;  // this end's (writes = chunks sent, reads = chunks taken)
};

struct IsfcStats {
  uint64_t messages_sent = 0, messages_received = 0;
  uint64_t bytes_sent = 0, bytes_received = 0;  // message payload
  uint64_t resent_chunks = 0;      // given back by a collision or a lost device and sent again
  uint64_t duplicate_chunks = 0;   // received again after a resend, dropped
  uint64_t spilled_chunks = 0;     // kConvention: chunks written on a device the peer also writes
                                   // while this side's queue was small (spill_wait ran out)
};

class HSI_EXPORT IsfcLink {
 public:
  // Activates the link over `devices` (1..16 ends of CTC devices to the
  // system options.peer; each device's options().peer_lpar, if set, must
  // be options.peer). Starts the device threads and sends the hello.
  // kInvalidArgument naming what is wrong (names, sizes, devices, block
  // sizes that differ).
  static absl::StatusOr<std::unique_ptr<IsfcLink>> Activate(IsfcOptions options,
                                                            std::vector<std::shared_ptr<CtcDevice>> devices);
  // Deactivates: stops the device threads (their unfinished chunks are
  // lost with the link). The devices stay open (their owner closes them).
  ~IsfcLink();

  // Waits until the peer's hello came. kFailedPrecondition if it named
  // another system or mode; kDeadlineExceeded.
  absl::Status WaitActive(absl::Time deadline);

  // Adds a device while the link runs (the plan is recomputed; the peer
  // must add its end too for both to agree). kAlreadyExists, kInvalidArgument.
  absl::Status AddDevice(std::shared_ptr<CtcDevice> device);
  // Removes this side's device `device` (this side's number): its thread
  // stops, an unfinished chunk is sent again on another device. The peer
  // learns it when the device's owner closes it (CtcHost::Close). kNotFound.
  absl::Status RemoveDevice(DeviceNumber device);

  // Queues `message` (1..max_message bytes); waits while send_buffer bytes
  // are queued. Returns once queued, not once delivered (see Flush()).
  absl::Status Send(absl::Span<const uint8_t> message, absl::Time deadline);
  // Waits until every chunk queued so far was taken by the peer.
  absl::Status Flush(absl::Time deadline);
  // The next message, in order. kDeadlineExceeded.
  absl::StatusOr<std::vector<uint8_t>> Receive(absl::Time deadline);

  // The current plan, and each device (ascending by plan key).
  WritePlan plan() const;
  std::vector<IsfcDeviceInfo> devices() const;
  IsfcStats stats() const;
  // A table of devices() for people: who writes which device and why,
  // chunks and bytes each way, collisions, recovery time.
  std::string Describe() const;

  struct State;

 private:
  explicit IsfcLink(std::shared_ptr<State> s) : state_(std::move(s)) {}
  std::shared_ptr<State> state_;
};

// The ISFC links of one LPAR's process, driven by commands, as z/VM's
// ACTIVATE / DEACTIVATE ISLINK drive a member's: TakeCommands() makes
// Handle() the host's handler (CtcHost::AcceptIsfcCommands), so an admin
// runs `hsictl isfc-activate LPAR1 LPAR2 D000-D00F` (and isfc-deactivate,
// isfc-add, isfc-remove); the destructor stops it again first.
//   kActivate       opens the devices through the host (each waits, up to
//                   the command's timeout, until the peer LPAR opened its
//                   end: activate both sides, in either order, within it)
//                   and activates the link to `peer` (declared to hsid);
//                   kAlreadyExists if one is active.
//   kDeactivate     deactivates it and closes its devices (the peer's ends
//                   go down); kNotFound if none is active.
//   kAddDevices     opens them and adds them to the running link.
//   kRemoveDevices  removes them from the link and closes them.
// A command that fails leaves the link as it was (devices it opened are
// closed again).
//
// Thread safety: all methods are thread-safe; commands run one at a time.
class HSI_EXPORT IsfcLinks {
 public:
  // `host` (an LPAR's, named `self` in the links) must outlive this.
  IsfcLinks(CtcHost* host, std::string self) : host_(host), self_(std::move(self)) {}
  // Stops taking commands (if TakeCommands() did), then deactivates the
  // links; the devices stay open (their host closes them).
  ~IsfcLinks();

  // Takes the host's ISFC commands from now on (CtcHost::AcceptIsfcCommands).
  absl::Status TakeCommands();
  absl::Status Handle(const IsfcCommand& command);
  // The active link to `peer`, or nullptr. Valid until a command
  // deactivates it (or this object goes).
  IsfcLink* link(const std::string& peer);

 private:
  absl::StatusOr<std::vector<std::shared_ptr<CtcDevice>>> OpenAll(const IsfcCommand& c);
  void CloseAll(const std::vector<DeviceNumber>& devices);

  CtcHost* const host_;
  const std::string self_;
  bool taking_ = false;  // TakeCommands() succeeded
  std::mutex mu_;  // one command at a time; guards links_
  std::map<std::string, std::unique_ptr<IsfcLink>> links_;
  std::map<std::string, std::vector<DeviceNumber>> devices_;  // peer -> this side's open devices
};

}  // namespace hsi

#endif  // HSI_ISFC_H_
