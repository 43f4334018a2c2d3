// hsi/ctc_host.h: an LPAR's CTC devices, opened through hsid, and the
// admin calls that define them.
//
// A CtcHost is one connection to hsid that claims an LPAR name (as a
// Session does; one process cannot hold both a Session and a CtcHost for
// the same LPAR, hsid grants a name to one connection) and opens that
// LPAR's CTC devices. hsid's policy lets an LPAR open only the devices
// defined for it (config [[ctc]] or CtcHost::Define by an admin). Opening
// a device hands this end its own half-channel, which it maps writable and
// seals, and, once the other LPAR has opened its end too, the other's,
// read-only (hsi/ctc.h). Data then flows without hsid.
//
// Death is seen at once (invariant 5): when the other end closes or its
// process dies, hsid says so and the device is taken down
// (CtcDevice::TakeDown with kUnavailable naming why): a Write or wait in
// progress returns at once. A background thread of the CtcHost listens to
// hsid for this. If hsid itself dies, open devices keep working
// (invariant 4) and the thread reconnects as a Session does (10 ms backoff
// doubling to 100 ms): it claims the LPAR again and re-registers each
// device still open (handing hsid its own half again, so that hsid lists
// it, tells its peer of this end's death, and is ready again once both
// ends did) and each ISFC side declared. Meanwhile Open() and the admin
// calls return kUnavailable; WaitConnected() waits for the reconnect. If
// the other end of a device opens it afresh instead (its process was
// restarted too), the old connection goes down here (CtcDown, or hsid's
// refusal of the re-registration if the fresh open came first).
//
// With an empty `lpar` a CtcHost claims nothing: an admin tool (hsictl).
//
// Thread safety: all methods are thread-safe.
#ifndef HSI_CTC_HOST_H_
#define HSI_CTC_HOST_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsi/ctc.h"
#include "hsi/export.h"
#include "hsi/isfc_convention.h"

namespace hsi {

struct CtcHostOptions {
  std::string socket_path;  // "": ResolveSocketPath (hsi/session.h)
  std::string lpar;         // the LPAR to claim; "" for admin calls only
  absl::Duration timeout = absl::Seconds(5);  // per hsid request
  std::optional<uint32_t> hsid_uid = std::nullopt;  // as SessionOptions
};

// A CTC connection as an admin defines it: `count` consecutive devices
// from device_a of lpar_a to device_b of lpar_b.
struct CtcDefinition {
  std::string lpar_a, lpar_b;
  DeviceNumber device_a, device_b;
  uint32_t count = 1;
  uint32_t block_size = 0;  // 0: hsid's default (64 KiB)
  absl::Duration recovery = kDefaultCtcRecovery;
};

// What hsid says of a device as it accepts an Open(), before the wait for
// the other end: enough to size buffers (and an interface's MTU) for it
// while the other LPAR is still away.
struct CtcOpenAccepted {
  uint32_t block_size = 0;  // 0 until hsid accepted the open
  std::string peer_lpar;
  DeviceNumber peer_device;
};

enum class CtcEndState : uint32_t { kClosed = 0, kOpening = 1, kReady = 2 };

// One connection as hsid lists it, with each end's counters.
struct CtcListing {
  std::string lpar_a, lpar_b;
  DeviceNumber device_a, device_b;
  uint32_t block_size = 0;
  absl::Duration recovery;
  CtcEndState state_a = CtcEndState::kClosed, state_b = CtcEndState::kClosed;
  CtcCounters counters_a, counters_b;
};

// One side of an ISFC link as its LPAR declared it to hsid.
struct IsfcListing {
  std::string lpar, peer;
  IsfcMode mode = IsfcMode::kConvention;
  std::vector<DeviceNumber> devices;  // this side's numbers
};

// z/VM's ACTIVATE / DEACTIVATE ISLINK, given from outside (hsictl
// isfc-activate and the like) to the process of an LPAR: which side of
// which link, and what to do with it.
enum class IsfcCommandOp : uint32_t { kActivate = 1, kDeactivate = 2, kAddDevices = 3, kRemoveDevices = 4 };
struct IsfcCommand {
  IsfcCommandOp op = IsfcCommandOp::kActivate;
  std::string peer;                  // the other system
  IsfcMode mode = IsfcMode::kConvention;  // kActivate
  std::vector<DeviceNumber> devices;  // this LPAR's numbers; none for kDeactivate
  absl::Duration timeout = absl::Seconds(30);  // how long the LPAR may take (opening waits for the peer)
};
// Runs one command in the LPAR's process; its status goes back to the
// admin who gave it.
using IsfcCommandHandler = std::function<absl::Status(const IsfcCommand&)>;

class HSI_EXPORT CtcHost {
 public:
  // Connects and claims `options.lpar` (errors as Session::Connect).
  static absl::StatusOr<std::unique_ptr<CtcHost>> Connect(CtcHostOptions options);
  // Closes the connection: hsid takes every device this host opened down
  // (the other ends get told). Joins the listener thread.
  ~CtcHost();

  // Opens this LPAR's device `device` and waits until the other end has
  // opened its end too, or `deadline` (kDeadlineExceeded; this end is
  // closed again). kPermissionDenied / kNotFound / kAlreadyExists as hsid
  // says (the message names the device and the LPARs it is defined for).
  // `accepted`, if given, is filled as soon as hsid accepts the open, so
  // also when the wait ends in kDeadlineExceeded; left as it is when hsid
  // refuses.
  absl::StatusOr<std::shared_ptr<CtcDevice>> Open(DeviceNumber device, absl::Time deadline,
                                                  CtcOpenAccepted* accepted = nullptr);
  // Closes this end of `device` (the other end gets CtcDown). The
  // CtcDevice is taken down. kNotFound if it is not open here.
  absl::Status Close(DeviceNumber device);

  // Declares this LPAR's side of an ISFC link to system `peer` over its
  // devices `devices` (this side's numbers), so that admins see it
  // (ListIsfc, hsictl isfc); `active` false withdraws it. IsfcLink does this
  // itself when given IsfcOptions::host. kInvalidArgument if a device does
  // not lead to `peer`, kPermissionDenied/kNotFound if it is not this LPAR's.
  absl::Status DeclareIsfc(const std::string& peer, IsfcMode mode, const std::vector<DeviceNumber>& devices,
                           bool active);

  // Admin calls (root, or admin_uids/admin_gids of hsid's config).
  absl::Status Define(const CtcDefinition& def);
  absl::Status Undefine(const std::string& lpar, DeviceNumber device);
  absl::StatusOr<std::vector<CtcListing>> List();
  absl::StatusOr<std::vector<IsfcListing>> ListIsfc();

  // Takes admins' ISFC commands for this LPAR: hsid forwards each command
  // an admin gives for this LPAR (SendIsfcCommand, hsictl isfc-activate
  // ...) to `handler`, which runs on a thread of this host, one command at
  // a time, and its status goes back to the admin. IsfcLinks::Handle
  // (hsi/isfc.h) is the handler that does what z/VM does. Replaces an
  // earlier handler; survives an hsid restart. The handler is called until
  // StopIsfcCommands() or the host's destruction (each waits for a command
  // in progress; an Open() in it returns kCancelled at the destruction).
  // kFailedPrecondition for a host with no LPAR.
  absl::Status AcceptIsfcCommands(IsfcCommandHandler handler);
  // Stops taking ISFC commands (hsid refuses them again; one that was on
  // its way is answered kUnavailable) and waits for a command in progress.
  absl::Status StopIsfcCommands();
  // Admin: gives `command` to the process of LPAR `lpar` that takes ISFC
  // commands, through hsid, and waits for its status (until command.timeout
  // plus this host's timeout). kPermissionDenied (not an admin), the
  // device refusals of DeclareIsfc, kFailedPrecondition (no process of
  // `lpar` takes commands), kUnavailable (it went before it answered), or
  // the handler's status, naming the command and the LPAR.
  absl::Status SendIsfcCommand(const std::string& lpar, const IsfcCommand& command);

  const std::string& lpar() const;
  // Waits until connected to hsid (at once, unless hsid went away and the
  // reconnect has not succeeded yet). kUnavailable at `deadline`, naming why.
  absl::Status WaitConnected(absl::Time deadline);

  struct State;

 private:
  explicit CtcHost(std::unique_ptr<State> s);
  std::unique_ptr<State> state_;
};

}  // namespace hsi

#endif  // HSI_CTC_HOST_H_
