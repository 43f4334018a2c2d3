// hsi/cf.h: a connector to coupling facility structures served by hsi-cf.
//
// A CfClient is one LPAR's attachment to one CF: it claims the LPAR at hsid
// (its own hsi::Session), attaches a NIC on the CF's CHPID and sets up the
// CF link (an hsi link to the CF's NIC). Over it, the LPAR connects to
// structures by name (the CF checks its policy: the structure exists and
// the LPAR, as hsid knows it, may connect) and issues requests. Frames
// never pass through hsid. The format is in docs/cf.md.
//
// Synchronous requests (Connect, Lock, Unlock, Recover, Disconnect, the
// list and the cache requests) send one frame and spin on the link for the answer, as
// z/OS does for short CF requests, for CfClientOptions::spin, then sleep
// for it until `timeout` (z/OS's sync-to-async conversion). LockAsync/UnlockAsync
// return at once; their replies come as Events. A lock that is contended is queued at the
// CF: Lock() returns kQueued naming the holders, and the grant arrives
// later as an Event (no polling of the CF): wait for it with WaitEvent(),
// or sleep on fd() (epoll, POLLIN) after PrepareWait() returned false and
// then call NextEvent(Wait::Never()) until it says kDeadlineExceeded.
//
// Failure: if this process dies, the CF sees its link go down at once
// (invariant 5) and every lock it held becomes RETAINED under its connector
// name: other connectors asking for them get kRetained naming it, until a
// peer calls Recover(name) or this connector reconnects under the same name
// (the locks are then its again, ConnectResult::returned_locks counts
// them). Disconnect() is the normal end: everything is released.
// A cache connection's registrations end and its castout locks are
// released (the entries stay changed for another connector to cast out).
// If the CF dies, every call returns kUnavailable: "structure LOCK1 in the
// CF at 10.240.0.200 is lost (...)": rebuild it in another CF from what the
// connectors hold (docs/cf.md). With a duplexed structure and
// CfClientOptions::secondary set, the client instead fails over once to
// the secondary, which took over: it connects every open Connection again
// under its names (the CF gives the same tokens back, so Connection values
// stay valid, and their locks are theirs again), then re-sends the request
// whose frame never reached the dead CF; a synchronous request whose frame
// had reached it returns kUnavailable "outcome unknown" (re-issue it),
// asynchronous requests in flight end as Event kReply with that status,
// and queued lock requests stay queued at the survivor (their grant
// comes as an Event after the failover; LockAndWait fails over and goes
// on waiting); list monitors go on (a monitored list with entries is
// noted again after the failover).
// A duplexed cache structure's connection has a vector of two halves (one
// per CF; hsi/cf_vector.h): when the primary dies every local copy tests
// invalid at once, and after the failover the survivor's fresh vector
// replaces both in place (the same Connection::vector): register again.
//
// Cache structures: Connect() also takes the connection's local validity
// vector (Connection::vector), memory the CF alone writes and this process
// maps read-only (granted through hsid; its seals and size are checked
// before it is mapped). ReadAndRegister() registers interest in an entry
// for local buffer `index` and sets that bit valid; another connector's
// write flips it to invalid without telling this process anything else.
// Test a local copy with Connection::vector->IsValid(index) AFTER copying
// it (the DB2 pattern): true means the copy was current when the bit was
// read (docs/cf.md has the memory ordering).
//
// Package: the library hsi::cf (cf/, built beside libhsi and linking it);
// this header is its public API.
//
// Thread safety: none; one thread at a time per CfClient (as hsi::Session).
#ifndef HSI_CF_H_
#define HSI_CF_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsi/address.h"
#include "hsi/cf_vector.h"
#include "hsi/nic.h"
#include "hsi/session.h"

namespace hsi::cf {

struct CfClientOptions {
  std::string socket_path;  // hsid's socket ("": see hsi::ResolveSocketPath)
  std::string lpar;         // the LPAR name this process claims at hsid
  uint32_t chpid = 0xF0;    // the CHPID of the CF links
  Address cf;               // the CF's NIC address on that CHPID
  // Duplexed structures (docs/cf.md "Duplexing"): the NIC address of the CF
  // holding their secondary; Address() if none. When the CF at `cf` dies,
  // the client fails over there by itself: see "Failure" above.
  Address secondary;
  // Bound for each synchronous request.
  absl::Duration timeout = absl::Seconds(5);
  // How long a synchronous request spins for its reply before it sleeps on
  // the NIC's doorbell until the reply or the timeout (z/OS converts a
  // synchronous CF request that runs long to asynchronous for the same
  // reason: a spinning requester holds a CPU the CF or others may need).
  // A CF with a CPU answers within a few microseconds, inside the spin;
  // absl::InfiniteDuration(): spin until the timeout.
  absl::Duration spin = absl::Microseconds(50);
};

enum class LockMode : uint8_t { kShared = 0, kExclusive = 1 };
const char* LockModeName(LockMode m);

struct Holder {
  std::string connector;
  LockMode mode = LockMode::kShared;
  bool retained = false;  // held by a failed connector
};

struct LockReply {
  enum class Outcome : uint8_t { kGranted = 0, kQueued = 1, kRetained = 2 };
  Outcome outcome = Outcome::kGranted;
  uint64_t request = 0;         // the request id; a later Event names it
  std::vector<Holder> holders;  // kQueued: the holders; kRetained: the failed ones
};

struct RetainedLock {
  std::string resource;
  LockMode mode = LockMode::kShared;
  std::string record;  // the record data given with the lock
};

enum class ListEnd : uint8_t { kHead = 0, kTail = 1 };

struct ListEntry {
  std::string key;   // up to 16 bytes, any value
  std::string data;  // up to the structure's max_data (at most 4096)
};

// What PopWait returned: the entry, and how many the list had left after
// it (0: it is empty now).
struct ListPop {
  ListEntry entry;
  uint32_t left = 0;
};

// What the CF tells a connector unasked.
struct Event {
  enum class Kind : uint8_t {
    kGranted,     // the queued lock request `request` on `resource` is granted
    kCancelled,   // it ended: `failed`, a failed connector, holds the lock retained
    kTransition,  // monitored list `list` went from empty to non-empty
    kReply,  // the reply to asynchronous request `request`: `status`, and `lock` for a LockAsync
    kFailedOver,  // the CF died; the client failed over to its secondary (`status` says so)
    kPopped,      // `entry` was popped from list `list` for the waiting PopWait `request`
  };
  Kind kind = Kind::kGranted;
  uint32_t conn = 0;
  uint64_t request = 0;
  std::string resource;
  LockMode mode = LockMode::kShared;
  std::string failed;
  uint32_t list = 0;
  absl::Status status;  // kReply: OK, or the CF's refusal with its message
  LockReply lock;       // kReply to LockAsync with an OK status: its outcome
  ListEntry entry;      // kPopped
};

// What a ReadAndRegister found: `hit` when the CF has the entry's data
// (store-in); a miss means read it from the backing store.
struct CacheRead {
  bool hit = false;
  std::string data;
};

// A cache structure's counters (CacheStats).
struct CacheCounters {
  uint64_t entries = 0, in_use = 0, changed = 0, castout_locked = 0, registrations = 0;
  uint64_t reads = 0, hits = 0, writes = 0, invalidations = 0, castouts = 0, reclaims = 0,
           deletes = 0;
};

// A connection to one structure (the CF's token for it).
struct Connection {
  uint32_t token = 0;
  std::string structure;
  std::string connector;
  bool list = false;            // a list structure
  bool cache = false;           // a cache structure (neither: a lock structure)
  uint32_t entries = 0;         // the structure's size
  uint32_t returned_locks = 0;  // retained locks of this connector name, now held again
  uint32_t max_data = 0;        // cache: bytes of data per entry; 0 = directory-only
  // Cache: this connection's local validity vector (shared by copies of
  // the Connection; unmapped when the last goes).
  std::shared_ptr<const LocalVector> vector;
};

class CfClient {
 public:
  // Claims `lpar` at hsid, attaches a NIC on `chpid` and sets up the link
  // to the CF. Errors of hsi::Session::Connect / AttachNic / Nic::Link,
  // with the CF address named.
  static absl::StatusOr<CfClient> Open(CfClientOptions options);

  CfClient();
  ~CfClient();
  CfClient(CfClient&&) noexcept;
  CfClient& operator=(CfClient&&) noexcept;

  // Connects to structure `structure` as `connector` (1..16 of
  // [A-Za-z0-9_.-$#@], unique among the structure's connections).
  // kNotFound (no such structure at this CF), kPermissionDenied (the
  // policy does not let this LPAR connect), kAlreadyExists (the connector
  // name is connected), kInvalidArgument (a bad name).
  absl::StatusOr<Connection> Connect(const std::string& structure, const std::string& connector);
  // Releases everything the connection holds and ends it.
  absl::Status Disconnect(const Connection& c);

  // Asks for `resource` (1..64 bytes) in `mode`, with up to 64 bytes of
  // `record` data the CF keeps for recovery. Returns at once with the
  // outcome (kGranted, kQueued with the holders: an Event follows, or
  // kRetained naming the failed holders: nothing follows). Errors:
  // kResourceExhausted (the lock table is full), kInvalidArgument.
  absl::StatusOr<LockReply> Lock(const Connection& c, const std::string& resource, LockMode mode,
                                 const std::string& record = "");
  // Lock(), then for kQueued waits (as `wait` says) for the grant: OK once
  // held; kAborted naming the failed connector if it was cancelled;
  // kFailedPrecondition naming them for kRetained; kDeadlineExceeded (the
  // request stays queued; its Event comes later).
  absl::Status LockAndWait(const Connection& c, const std::string& resource, LockMode mode,
                           const Wait& wait, const std::string& record = "");
  // kNotFound if the connection holds no lock on `resource`.
  absl::Status Unlock(const Connection& c, const std::string& resource);
  // Releases the retained locks of failed connector `failed` (peer
  // recovery) and returns them with their record data. kNotFound if no
  // failed connector of that name holds any.
  absl::StatusOr<std::vector<RetainedLock>> Recover(const Connection& c, const std::string& failed);

  // List structures. `list` is a list number (0..lists-1 of the policy;
  // kInvalidArgument naming the range otherwise). Push returns the list's
  // length after it; Pop, Read and Delete are kNotFound on an empty list
  // or a missing key; Push is kResourceExhausted when the structure's
  // entries are all in use and kInvalidArgument for data above max_data.
  absl::StatusOr<uint32_t> Push(const Connection& c, uint32_t list, ListEnd end,
                                const std::string& key, const std::string& data);
  absl::StatusOr<ListEntry> Pop(const Connection& c, uint32_t list, ListEnd end);
  absl::StatusOr<ListEntry> Read(const Connection& c, uint32_t list, const std::string& key);
  absl::Status Delete(const Connection& c, uint32_t list, const std::string& key);
  absl::Status Move(const Connection& c, uint32_t from, uint32_t to, const std::string& key,
                    ListEnd end);
  // List transition monitoring: while on, an Event kTransition comes each
  // time `list` goes from empty to non-empty (once per transition, not per
  // entry). Returns the list's length now: when it is not 0 there is no
  // transition to wait for, drain the list first.
  absl::StatusOr<uint32_t> Monitor(const Connection& c, uint32_t list, bool on);
  // A blocking pop (Redis BLPOP's role): pops from `end` of `list` and
  // returns the entry with the count left after it; if the list is empty,
  // the CF keeps the request and hands this connector the next entry that
  // comes (pushed or moved there) in the note that wakes it: one round
  // trip and one wake-up per message, never a second pop to see the list
  // empty. Waits as `wait` says (Wait::Block sleeps). kDeadlineExceeded if
  // nothing came by then: the request is withdrawn at the CF first, and an
  // entry that was on its way is returned, not lost. An entry handed to a
  // waiting pop never shows in the list: monitors get no transition for
  // it. kAlreadyExists if this connection has a pop waiting on `list`
  // (PopWait is synchronous; only a stray request can).
  absl::StatusOr<ListPop> PopWait(const Connection& c, uint32_t list, ListEnd end,
                                  const Wait& wait);

  // Cache structures (entry names: 1..16 bytes, any value). Registers
  // interest in `name` for local buffer `index` (0..vector->bits()-1) and
  // sets that bit valid; returns the data if the CF has it (store-in).
  // A registration at `index` of another name ends. kInvalidArgument for
  // an index out of range or a bad name; kResourceExhausted when every
  // directory entry is changed or castout-locked.
  absl::StatusOr<CacheRead> ReadAndRegister(const Connection& c, const std::string& name,
                                            uint32_t index);
  // Writes `name` (store-in: `data`, up to max_data bytes, marked changed
  // for castout if `changed`; directory-only: no data, changed false) and
  // cross-invalidates every other connector's registered copy: their
  // vector bits are invalid before this returns. Returns how many copies
  // were invalidated.
  absl::StatusOr<uint32_t> WriteEntry(const Connection& c, const std::string& name,
                                      const std::string& data, bool changed = true);
  // Ends the registration of local buffer `index` (kNotFound if none).
  absl::Status Unregister(const Connection& c, uint32_t index);
  // Removes an unchanged entry, invalidating every copy. Returns how many.
  absl::StatusOr<uint32_t> DeleteEntry(const Connection& c, const std::string& name);
  // Castout: takes the entry's castout lock and returns its data, to be
  // written to this connector's backing store; kFailedPrecondition if it
  // is not changed or another connector (named) holds the lock.
  absl::StatusOr<std::string> ReadForCastout(const Connection& c, const std::string& name);
  // Releases the castout lock; the entry is unchanged now unless a write
  // came since ReadForCastout (then true: still changed).
  absl::StatusOr<bool> UnlockCastout(const Connection& c, const std::string& name);
  // Changed entries not locked for castout, at most `max` (in name order).
  absl::StatusOr<std::vector<std::string>> ChangedEntries(const Connection& c, uint32_t max);
  absl::StatusOr<CacheCounters> CacheStats(const Connection& c);

  // Asynchronous forms: send the request and return its id at once (errors
  // here are only the connector's own checks and the link's); the reply
  // comes later as an Event kReply with that id (and, for a queued lock,
  // a kGranted or kCancelled Event after it), seen via fd()/NextEvent().
  absl::StatusOr<uint64_t> LockAsync(const Connection& c, const std::string& resource,
                                     LockMode mode, const std::string& record = "");
  absl::StatusOr<uint64_t> UnlockAsync(const Connection& c, const std::string& resource);

  // The next event, waiting as `wait` says; kDeadlineExceeded if none came.
  absl::StatusOr<Event> NextEvent(const Wait& wait);
  // The NIC's doorbell, readable when a frame from the CF arrived.
  int fd() const;
  // Arms fd(); true if an event is already waiting (do not sleep then).
  bool PrepareWait();

  Address cf() const;

  struct State;  // opaque: defined in cf/connector.cc

 private:
  std::unique_ptr<State> s_;
};

}  // namespace hsi::cf

#endif  // HSI_CF_H_
