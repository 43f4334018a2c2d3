// daemon/reclaim.h: what a restarted hsid holds for the clients of the
// previous one (issue 13, DESIGN.md invariant 4 against an attacker racing
// the restart).
//
// hsid rebuilds its tables from its clients after a restart: each client
// reconnects, re-claims its LPAR name and re-attaches its NICs with their
// addresses. Until they have, a name or address is free in the new
// tables, and anyone the policy allows could take it first: an attacker's
// explicit attach took a streaming victim's address, a newcomer got a live
// peer's address. So hsid keeps a small state file beside its socket
// (`<socket>.state`, in the directory listen_socket.h has checked, mode
// 0600, kept open): every claimed LPAR name with its uid, and every NIC's
// CHPID, address and LPAR. A starting hsid reads it and, for `reclaim_grace_ms`,
// holds each name for its uid and each address for its LPAR: anyone else
// asking for them is refused with kUnavailable saying for whom and how
// long, and dynamic assignment skips them. An owner's reclaim releases its
// hold at once; the rest expire with the grace. The file is rewritten in
// place after a change, at most once per event loop turn; a missing or
// unreadable file holds nothing (logged).
//
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_RECLAIM_H_
#define HSI_DAEMON_RECLAIM_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsi/address.h"
#include "hsi/fd.h"

namespace hsid {

// What the state file records.
struct HeldState {
  std::map<std::string, uint32_t> lpars;  // LPAR name -> uid that claimed it
  std::map<std::pair<uint32_t, uint32_t>, std::string> nics;  // (CHPID, address) -> LPAR
};

// The state file, open for the daemon's life (one fd, so that hsid's fd
// count does not blink with every save). Each save rewrites it in place
// with one pwrite() ending in an "# end" line, then truncates: a reader
// ignores anything after "# end", so a save cut short by SIGKILL leaves the
// previous content or the new one, never a mix that parses.
class StateFile {
 public:
  // Opens (creating it, 0600, no symlink followed) the file at `path` and
  // reads what it holds: an empty state if it was empty or new,
  // kInvalidArgument naming the line for a malformed one (the file stays
  // open for saving either way: check fd_ok()).
  absl::StatusOr<HeldState> Open(const std::string& path);
  bool fd_ok() const { return fd_.valid(); }
  absl::Status Save(const HeldState& state);

 private:
  std::string path_;
  hsi::UniqueFd fd_;
};

// Parses a state file's text; `path` names it in errors.
absl::StatusOr<HeldState> ParseHeldState(const std::string& text, const std::string& path);

class ReclaimHolds {
 public:
  // Holds everything in `state` until `until`.
  void Hold(HeldState state, absl::Time until);
  bool active() const { return !held_.lpars.empty() || !held_.nics.empty(); }
  absl::Time until() const { return until_; }
  // Drops every hold once `now` reaches until().
  void Expire(absl::Time now);

  // The uid `lpar` is held for, if it is held for another uid than `uid`.
  std::optional<uint32_t> NameHeldFromOthers(const std::string& lpar, uint32_t uid) const;
  // The LPAR `address` on `chpid` is held for, if not `lpar`.
  std::optional<std::string> AddressHeldFromOthers(uint32_t chpid, hsi::Address address,
                                                   const std::string& lpar) const;
  bool AddressHeld(uint32_t chpid, hsi::Address address) const;
  // The owner is back: its name, or one of its addresses.
  void ReleaseName(const std::string& lpar);
  void ReleaseAddress(uint32_t chpid, hsi::Address address);
  // "held for LPAR \"x\" to reclaim after hsid restarted (4.2s more)".
  std::string Why(const std::string& what_for) const;

 private:
  HeldState held_;
  absl::Time until_ = absl::InfinitePast();
};

}  // namespace hsid

#endif  // HSI_DAEMON_RECLAIM_H_
