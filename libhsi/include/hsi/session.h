// hsi/session.h: an LPAR's connection to hsid.
//
// A Session claims an LPAR name from hsid (the policy checks the caller's
// uid/gid, identified by SO_PEERCRED) and attaches NICs to CHPIDs
// (hsi/nic.h). hsid is only the control plane: once a link is made, frames
// flow through shared memory and never through hsid (DESIGN.md invariant 4).
//
// Daemon restarts: when the control socket reaches EOF (hsid died), links
// keep working. The library reconnects on its own with a short backoff
// (10 ms doubling to 100 ms) from inside the calls that use the session
// (Receive, SendTo, Link, Poll, ...), re-claims the LPAR, re-attaches every
// NIC with the same address and re-registers every live link, so that hsid
// rebuilds its tables from its clients. A restarted hsid holds the LPAR
// names and NIC addresses its predecessor had for their owners for
// `reclaim_grace_ms` of its config (default 10 s; hsid(8)), and a
// re-registered link waits that long for its other end: a session that
// comes back within it gets its name, addresses and links again; one that
// comes later may find them taken (its calls then say so).
//
// Socket discovery: SessionOptions::socket_path, else $HSI_SOCKET, else
// /run/hsi/hsid.sock for root and $XDG_RUNTIME_DIR/hsi/hsid.sock otherwise.
// Server identity: the socket must be served by root or the uid the client
// trusts (SessionOptions::hsid_uid, $HSI_HSID_UID, else its own euid);
// otherwise Connect (and every reconnect) refuses it (DESIGN invariant 9).
//
// Thread safety: a Session, its Nics and their Links share one control
// channel and are NOT thread-safe: use them from one thread at a time.
// Different Sessions are independent.
#ifndef HSI_SESSION_H_
#define HSI_SESSION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hsi/address.h"
#include "hsi/export.h"

namespace hsi {

class Nic;
namespace internal {
class SessionState;
}

// The control socket path: `explicit_path` if not empty, else $HSI_SOCKET,
// else the default for this uid. kFailedPrecondition if a non-root user
// has no XDG_RUNTIME_DIR.
HSI_EXPORT absl::StatusOr<std::string> ResolveSocketPath(absl::string_view explicit_path);

struct SessionOptions {
  std::string socket_path;  // "": see ResolveSocketPath()
  std::string lpar;         // the LPAR name to claim (1..31 of [A-Za-z0-9_.-])
  // Longest wait for one hsid request and for a link setup, when the
  // caller's Wait allows more: every call also keeps its Wait's deadline.
  absl::Duration timeout = absl::Seconds(5);
  // Link setups this session keeps pending at once (a broadcast starts one
  // for every peer it has no link to, all together). hsid disconnects a
  // client with more than its max_in_flight pending (64 by default): keep
  // this below that (0 counts as 1). A setup the peer never answers stays
  // pending until hsid gives it up (5 s), even after the call that started
  // it returned.
  uint32_t max_link_setups = 32;
  // Hold spare ring segments for links to come (hsid offers each NIC up to
  // two, which the session maps and seals when they come): a link to or
  // from a NIC with a sealed spare is set up in one round trip to hsid, and
  // its peer need not answer. Each costs an fd and an (untouched) mapping
  // of the CHPID's ring size. false: links to this session's NICs wait for
  // it to answer hsid's link offer. hsid sends a NIC's first spares with
  // its attach either way (false declines them once received), so an
  // attach needs room for two more fds; without it the attach fails with
  // kResourceExhausted naming the SpareOffer.
  bool link_spares = true;
  // Reconnect and re-register after hsid restarts.
  bool reconnect = true;
  // The uid hsid must run as, besides root (checked by SO_PEERCRED on every
  // connect; a socket served by anyone else is refused with
  // kPermissionDenied naming the uid found). Unset: $HSI_HSID_UID, else
  // this process's effective uid.
  std::optional<uint32_t> hsid_uid = std::nullopt;
};

// One coupling facility structure's state as its CF (hsi-cf) declares it to
// hsid (Session::DeclareCfStructure) and admins list it
// (AdminClient::ListCfs, hsictl cfs). hsid only checks it is well formed:
// it is the CF's claim.
struct CfStructureView {
  std::string lpar;  // listing only: the CF's LPAR, as hsid knows it
  std::string name;  // 1..31 printable characters
  std::string type;  // "lock", "list" or "cache"
  std::string duplex = "simplex";  // "simplex", "primary" or "secondary"
  bool partner_up = false;         // duplexed: the partner CF's link is up
  uint32_t size = 0, in_use = 0;   // entries it may hold / in use
  uint32_t connector_count = 0;    // live connections (listing: may exceed the names shown)
  std::vector<std::pair<std::string, std::string>> connectors;  // (connector, its LPAR); 8 shown at most
  uint32_t retained = 0;           // retained locks
  uint32_t failed_count = 0;       // failed connectors holding them
  std::vector<std::string> failed;  // their names; 4 shown at most
  uint64_t requests = 0, queued = 0, granted_after_wait = 0, refused = 0;
  bool operator==(const CfStructureView&) const = default;
};

class HSI_EXPORT Session {
 public:
  // Connects to hsid and claims `options.lpar`. kUnavailable if hsid does
  // not answer at the path (the message names it), kPermissionDenied with
  // the policy's own words if the uid may not claim the LPAR,
  // kAlreadyExists if another process holds it, kPermissionDenied if the
  // socket is served by a uid this client does not trust.
  static absl::StatusOr<Session> Connect(SessionOptions options);

  Session();
  ~Session();  // closes the control socket: hsid takes the LPAR's NICs down
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  // Attaches a NIC to CHPID `chpid` (0x00..0xFF). The address is the
  // LPAR's static one from hsid's config, else `address` if given, else
  // one hsid assigns in the CHPID's subnet. Errors name the CHPID and
  // address: kNotFound (no such CHPID), kPermissionDenied (the LPAR may
  // not attach), kAlreadyExists (address taken), kResourceExhausted (NIC
  // quota or subnet full).
  absl::StatusOr<Nic> AttachNic(uint32_t chpid,
                                std::optional<Address> address = std::nullopt);

  // Processes pending control traffic (link offers from peers, link-down
  // events, a reconnect that is due) without waiting. Receive/SendTo/Link
  // do this themselves whenever hsid has sent an event (see nic.h, "Control
  // events"); call Poll() if the process may sit idle outside libhsi while
  // peers link to it.
  absl::Status Poll();

  // For an event loop that waits outside libhsi on Nic::fd() (epoll, an
  // io_uring of its own): the control socket to hsid. When it is readable
  // call Poll(), which also notices hsid's death. -1 while hsid is away or
  // the Session is empty; then call Poll() at next_poll(), which reconnects
  // and re-registers the NICs and links (DESIGN invariant 4; hsi::Poller
  // does all this itself). An io_uring poll holds the socket open: cancel
  // it before destroying the Session, or hsid sees the LPAR go late.
  int fd() const;
  // When to call Poll() with no event: the next reconnect attempt while
  // hsid is away, absl::InfiniteFuture() otherwise.
  absl::Time next_poll() const;

  // Declares one CF structure's state (wire CfDeclareRequest): hsid keeps
  // the last per name until this Session closes (and is told again after
  // hsid restarts, as the NICs are); `withdraw` drops it. More
  // than 8 connectors or 4 failed ones: the counts go, the first names
  // only. kInvalidArgument naming the field for a malformed one (checked
  // here as hsid checks it), kResourceExhausted past 64 structures.
  absl::Status DeclareCfStructure(const CfStructureView& view, bool withdraw = false);

  bool connected() const;
  const std::string& lpar() const;
  const std::string& socket_path() const;

 private:
  explicit Session(std::shared_ptr<internal::SessionState> s) : state_(std::move(s)) {}
  std::shared_ptr<internal::SessionState> state_;
};

}  // namespace hsi

#endif  // HSI_SESSION_H_
