// cf/cache_structure.h: a CF cache structure, the logic without the links.
//
// A directory of named entries (names of 1..16 bytes, any value), up to
// `entries` of them. A store-in structure (max_data > 0) keeps each
// entry's data (up to max_data bytes); a directory-only one (max_data 0)
// keeps only who holds a copy, and its connectors keep the data in their
// own backing store.
//
// Registration: a connection reads an entry and registers interest with
// the index of the local buffer that will hold its copy
// (ReadAndRegister); the CF sets that bit of the connection's local
// validity vector (cf/validity_vector.h) to valid. A buffer index holds
// one registration: registering another name at the same index ends the
// old one. A write by one connection cross-invalidates every other
// registration of the entry: their bits are set to invalid (no message to
// their owners) and the registrations end; the writer's own stays valid.
// Write() returns only after the bits are flipped, so the reply the
// server sends after it is sent after them.
//
// Castout (store-in only): a write with `changed` marks the entry changed.
// ReadForCastout takes the entry's castout lock and returns its data for
// the connection to write to its backing store; UnlockCastout releases
// the lock and clears `changed` unless a write came meanwhile (the entry
// then stays changed, as on z/OS). A changed or castout-locked entry is
// never reclaimed nor deleted. When the directory is full, a new name
// reclaims the least recently used entry that is neither (its registrants
// are cross-invalidated); if there is none, kResourceExhausted.
//
// A connection that goes, normally or not, loses its registrations (its
// vector goes with it) and the castout locks it held are released: the
// entries stay changed and another connection casts them out (as XES does
// when it cleans up a failed connection's castout locks). A connection
// suspended by a duplex takeover (Suspend) loses its registrations and
// vector but keeps its castout locks (as z/OS keeps them with the
// structure) until it attaches again under the same token or is detached.
//
// Thread safety: none; the CF serves from one thread.
#ifndef HSI_CF_CACHE_STRUCTURE_H_
#define HSI_CF_CACHE_STRUCTURE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "validity_vector.h"

namespace hsi::cf {

struct CacheOpCounters {
  uint64_t reads = 0, hits = 0, writes = 0, invalidations = 0, castouts = 0, reclaims = 0, deletes = 0;
};

// What a read-and-register found: `hit` when the entry has data (store-in).
struct CacheReadResult {
  bool hit = false;
  std::string data;
};

// Deferred cross-invalidation, for the CF's fault injection in tests only
// (hsi-cf --fault): kNone flips before Write() returns (correct);
// kSkip never flips; kLate flips at the next call of FlushLate().
enum class XiFault : uint8_t { kNone, kSkip, kLate };

class CacheStructure {
 public:
  CacheStructure(std::string name, uint32_t entries, uint32_t max_data, uint32_t vector_bits);

  // kAlreadyExists if `connector` has a connection, other than `conn`
  // suspended (the server checks it before it makes and grants a vector;
  // Attach checks it again).
  absl::Status CanAttach(const std::string& connector, uint32_t conn) const;
  // A new connection with its vector (VectorWriter of vector_bits bits), or
  // `conn` suspended, back with a fresh vector (its castout locks its own).
  // kAlreadyExists if `connector` is connected.
  absl::Status Attach(uint32_t conn, const std::string& connector, VectorWriter vector);
  // A duplex takeover keeps `conn` for its connector's return: its
  // registrations end and its vector goes (call InvalidateAll first), its
  // castout locks stay its own. Returns how many it holds.
  uint32_t Suspend(uint32_t conn);
  // The connection goes (normally or failed): registrations end, castout
  // locks are released. Returns how many castout locks it held.
  uint32_t Detach(uint32_t conn);
  // Every bit of the connection's vector invalid, at once (a duplex
  // secondary taking over, before it serves anyone; then Detach).
  void InvalidateAll(uint32_t conn) {
    if (auto it = conns_.find(conn); it != conns_.end()) it->second.vector.Clear();
  }

  // kInvalidArgument: an empty or long name, an index out of range.
  // kResourceExhausted: the directory is full of changed or locked entries.
  absl::StatusOr<CacheReadResult> ReadAndRegister(uint32_t conn, const std::string& name, uint32_t index);
  // Stores `data` (store-in; directory-only: must be empty, `changed`
  // false) and cross-invalidates the others' copies. Returns how many
  // registrations were invalidated.
  absl::StatusOr<uint32_t> Write(uint32_t conn, const std::string& name, std::string data, bool changed);
  // Ends the registration at buffer `index` (kNotFound if none).
  absl::Status Unregister(uint32_t conn, uint32_t index);
  // Removes the entry, invalidating every registration (the caller's too).
  // kNotFound; kFailedPrecondition if it is changed or castout-locked.
  absl::StatusOr<uint32_t> Delete(uint32_t conn, const std::string& name);
  // kNotFound; kFailedPrecondition if not changed, directory-only, or
  // locked by another connection (named).
  absl::StatusOr<std::string> ReadForCastout(uint32_t conn, const std::string& name);
  // Returns whether the entry is still changed (a write came meanwhile).
  // kFailedPrecondition unless `conn` holds its castout lock.
  absl::StatusOr<bool> UnlockCastout(uint32_t conn, const std::string& name);
  // Names of changed entries not castout-locked, at most `max`, in name order.
  std::vector<std::string> Changed(size_t max) const;

  void set_fault(XiFault f) { fault_ = f; }
  // Applies cross-invalidations held back by XiFault::kLate.
  void FlushLate();

  const std::string& name() const { return name_; }
  uint32_t entries() const { return entries_; }
  uint32_t max_data() const { return max_data_; }
  uint32_t vector_bits() const { return vector_bits_; }
  uint32_t in_use() const { return static_cast<uint32_t>(dir_.size()); }
  uint32_t changed_count() const { return changed_; }
  uint32_t castout_locked() const { return locked_; }
  uint32_t registrations() const;
  const CacheOpCounters& counters() const { return counters_; }

 private:
  struct Entry {
    std::string data;
    bool changed = false;
    uint64_t version = 0;          // writes so far
    uint32_t castout_owner = 0;    // conn holding the castout lock, 0: none
    uint64_t castout_version = 0;  // version read for castout
    uint64_t last_use = 0;
    absl::flat_hash_map<uint32_t, uint32_t> regs;  // conn -> buffer index
  };
  struct Conn {
    std::string connector;
    VectorWriter vector;
    absl::flat_hash_map<uint32_t, std::string> by_index;  // buffer index -> entry name
    bool suspended = false;                               // Suspend(): no vector, no registrations
  };
  // Ends every registration of `conn` (Detach, Suspend).
  void EndRegistrations(uint32_t conn, Conn& c);
  absl::Status CheckName(const std::string& n) const;
  absl::StatusOr<Conn*> Find(uint32_t conn);
  // Ends conn's registration at `index` (bit to invalid).
  void Drop(Conn& c, uint32_t conn, uint32_t index);
  // Invalidates every registration of `e` but `keep`'s; returns how many.
  uint32_t Invalidate(Entry& e, uint32_t keep);
  // The entry, made if new (reclaiming one if the directory is full).
  absl::StatusOr<Entry*> Make(const std::string& name);

  std::string name_;
  uint32_t entries_, max_data_, vector_bits_;
  std::map<std::string, Entry> dir_;
  absl::flat_hash_map<uint32_t, Conn> conns_;
  uint32_t changed_ = 0, locked_ = 0;
  uint64_t tick_ = 0;
  CacheOpCounters counters_;
  XiFault fault_ = XiFault::kNone;
  std::vector<std::pair<uint32_t, uint32_t>> late_;  // (conn, index) flips held back
};

}  // namespace hsi::cf

#endif  // HSI_CF_CACHE_STRUCTURE_H_
