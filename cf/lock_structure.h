// cf/lock_structure.h: a CF lock structure, the logic without the links.
//
// Resources are named (up to 64 bytes); each has holders (shared or
// exclusive, with up to 64 bytes of record data kept for recovery), a FIFO
// of queued requests, and retained locks of failed connectors. A request
// is granted at once when compatible with every holder and nothing is
// queued ahead; else it is queued and the reply names the holders; a
// request that conflicts with a retained lock is refused at once, naming
// the failed connector (as DB2 refuses a retained lock). Grants and
// cancellations of queued requests come back as Notes for the server to
// send: no connector ever polls.
//
// A connection that disconnects normally releases everything. One that
// fails (its CF link went down) keeps its locks as RETAINED under its
// connector name; its queued requests are dropped, and queued requests of
// others that now conflict with a retained lock are cancelled (a Note
// naming the failed connector). Retained locks stay until a peer calls
// Recover(failed name) or the connector reconnects under the same name
// (its retained locks are then held by it again).
//
// `entries` bounds the resources in use (held, queued or retained) at once.
//
// Thread safety: none; the CF serves from one thread.
#ifndef HSI_CF_LOCK_STRUCTURE_H_
#define HSI_CF_LOCK_STRUCTURE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hsi::cf {

enum class LockMode : uint8_t { kShared = 0, kExclusive = 1 };

struct LockHolder {
  std::string connector;
  LockMode mode = LockMode::kShared;
  bool retained = false;  // held by a failed connector
};

struct LockResult {
  enum class Outcome : uint8_t { kGranted = 0, kQueued = 1, kRetained = 2 };
  Outcome outcome = Outcome::kGranted;
  // kQueued: who holds it now; kRetained: the failed holders in the way.
  std::vector<LockHolder> holders;
};

struct RetainedLock {
  std::string resource;
  LockMode mode = LockMode::kShared;
  std::string record;
};

// Something to tell a connection: its queued request `request_id` on
// `resource` was granted, or cancelled because `failed` holds it retained.
struct Note {
  enum class Kind : uint8_t { kGranted, kCancelled };
  Kind kind = Kind::kGranted;
  uint32_t conn = 0;
  uint64_t request_id = 0;
  std::string resource;
  LockMode mode = LockMode::kShared;
  std::string failed;
};

struct LockCounters {
  uint64_t granted = 0, queued = 0, refused_retained = 0, released = 0, retained = 0, recovered = 0;
  uint64_t granted_after_wait = 0;  // of `granted`, those that had queued
};

class LockStructure {
 public:
  LockStructure(std::string name, uint32_t entries) : name_(std::move(name)), entries_(entries) {}

  // Connection `conn` under `connector`: kAlreadyExists if a live
  // connection has that name. If a failed one had it, its retained locks
  // are held by `conn` now; *returned says how many.
  absl::Status Attach(uint32_t conn, const std::string& connector, uint32_t* returned);
  // kFailedPrecondition if `conn` is not attached; kResourceExhausted when
  // `entries` resources are in use; kInvalidArgument when `conn` already
  // has a request queued on `resource`.
  // Uncontended, it allocates nothing once warm (resource records are
  // pooled) unless the resource name or record is longer than a short
  // string holds.
  absl::StatusOr<LockResult> Obtain(uint32_t conn, uint64_t request_id, absl::string_view resource,
                                    LockMode mode, absl::string_view record,
                                    std::vector<Note>* notes);
  // kNotFound if `conn` does not hold `resource`.
  absl::Status Release(uint32_t conn, absl::string_view resource, std::vector<Note>* notes);
  // Normal disconnect: releases everything.
  void Detach(uint32_t conn, std::vector<Note>* notes);
  // The connection failed: its locks become retained.
  void Fail(uint32_t conn, std::vector<Note>* notes);
  // Releases every retained lock of the failed connector `failed` and
  // forgets it; returns what was retained. kNotFound if no failed
  // connector has that name.
  absl::StatusOr<std::vector<RetainedLock>> Recover(uint32_t conn, const std::string& failed,
                                                    std::vector<Note>* notes);

  // Re-duplexing's copy (cf/duplex.h "Copy"): every holder (live or
  // retained, with its record) and every queued request, resource by
  // resource, each resource's holders then its queue, both in order.
  // CopyIn() replays them into a structure whose connections are attached
  // (Attach) and that holds nothing else: each item is checked against
  // what came before (a live holder's connection is attached under that
  // connector; holders are compatible; one request per connection and
  // resource; a queue only behind holders; at most `entries` resources):
  // kInvalidArgument naming what is wrong, and nothing applied.
  struct CopyItem {
    bool queued = false;  // a queued request, else a holder
    std::string resource;
    uint32_t conn = 0;        // 0: a retained holder
    std::string connector;    // a holder's
    uint64_t request_id = 0;  // a queued request's
    LockMode mode = LockMode::kShared;
    std::string record;
  };
  std::vector<CopyItem> CopyOut() const;
  absl::Status CopyIn(CopyItem item);
  void set_counters(const LockCounters& c) { counters_ = c; }

  const std::string& name() const { return name_; }
  uint32_t entries() const { return entries_; }
  size_t in_use() const { return resources_.size(); }
  size_t retained_count() const;
  // The failed connectors holding retained locks, by name.
  std::vector<std::string> failed_connectors() const;
  const LockCounters& counters() const { return counters_; }
  bool attached(uint32_t conn) const { return conns_.contains(conn); }

 private:
  struct Held {
    uint32_t conn;  // 0 when retained
    std::string connector;
    LockMode mode;
    std::string record;
  };
  struct Waiter {
    uint32_t conn;
    uint64_t request_id;
    LockMode mode;
    std::string record;
  };
  // Vectors, not a deque (libstdc++'s allocates when constructed), and
  // pooled when a resource is dropped (pool_): the uncontended obtain +
  // release allocates nothing.
  struct Resource {
    std::vector<Held> held;  // live and retained
    std::vector<Waiter> queue;  // Promote() erases its settled head in one go
  };
  static bool Compatible(LockMode a, LockMode b) {
    return a == LockMode::kShared && b == LockMode::kShared;
  }
  // Grants queued requests from the head while they fit; drops the
  // resource when nothing is left.
  void Promote(absl::string_view name, std::vector<Note>* notes);
  void ReleaseAll(uint32_t conn, bool retain, std::vector<Note>* notes);

  std::string name_;
  uint32_t entries_;
  absl::flat_hash_map<std::string, Resource> resources_;
  std::vector<Resource> pool_;  // dropped resources, empty, their capacity kept (at most kPool)
  static constexpr size_t kPool = 64;
  absl::flat_hash_map<uint32_t, std::string> conns_;   // live: conn -> connector name
  absl::flat_hash_map<std::string, uint32_t> failed_;  // failed connector -> retained count
  LockCounters counters_;
};

}  // namespace hsi::cf

#endif  // HSI_CF_LOCK_STRUCTURE_H_
