// cf/list_structure.h: a CF list structure, the logic without the links.
//
// `lists` list headers, each an ordered list of entries (a key of up to 16
// bytes, data of up to the structure's max_data bytes). Entries are pushed
// and popped at either end, read, deleted or moved between lists by key (the
// first entry with that key from the head). `entries` bounds the entries in
// all lists together.
//
// List transition monitoring (the XCF signalling pattern): a connection
// monitoring a list is told (a Transition) each time the list goes from
// empty to non-empty, exactly once per transition: a push to a list that
// already has entries tells no one. Turning monitoring on returns the
// entries the list has now, so a monitor that finds it non-empty drains it
// without waiting for a transition that already happened.
//
// Waiting pops (BLPOP's role): PopWait on an empty list keeps the request;
// the next entry pushed or moved to that list is popped for the oldest
// waiting request at once and handed out in a Transition with `popped`
// set (one entry per waiter, in arrival order). Such an entry never makes
// the list non-empty, so monitors are not told of it; a push that finds
// no waiter is a transition as before. Invariant: a list with waiting
// pops is empty.
//
// A connection that goes (normally or not) stops monitoring and its
// waiting pops end; the entries stay (the structure is persistent, as a
// real list structure is).
//
// Thread safety: none; the CF serves from one thread.
#ifndef HSI_CF_LIST_STRUCTURE_H_
#define HSI_CF_LIST_STRUCTURE_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hsi::cf {

enum class ListEnd : uint8_t { kHead = 0, kTail = 1 };

struct ListEntry {
  std::string key;
  std::string data;
};

// Tell connection `conn` that list `list` went from empty to non-empty;
// or, with `popped`, hand it `entry`, popped for its waiting PopWait
// `request_id`.
struct Transition {
  uint32_t conn = 0;
  uint32_t list = 0;
  bool popped = false;
  uint64_t request_id = 0;
  ListEntry entry;
};

// What PopWait did: popped an entry (`entry`, with `left` entries after
// it), or (`waiting`) the list was empty and the request waits.
struct PopWaitResult {
  bool waiting = false;
  ListEntry entry;
  uint32_t left = 0;
};

struct ListCounters {
  uint64_t pushed = 0, popped = 0, moved = 0, deleted = 0, transitions = 0;
  uint64_t handed = 0;  // of `popped`, entries popped for a waiting PopWait as they came
};

class ListStructure {
 public:
  ListStructure(std::string name, uint32_t lists, uint32_t entries, uint32_t max_data);

  // Returns the list's length after the push. kInvalidArgument for a list
  // number out of range or data above max_data; kResourceExhausted when
  // `entries` entries exist.
  absl::StatusOr<uint32_t> Push(uint32_t list, ListEnd end, std::string key, std::string data,
                                std::vector<Transition>* out);
  // kNotFound if the list is empty.
  absl::StatusOr<ListEntry> Pop(uint32_t list, ListEnd end);
  // kNotFound if no entry has `key`.
  absl::StatusOr<ListEntry> Read(uint32_t list, const std::string& key) const;
  absl::Status Delete(uint32_t list, const std::string& key);
  absl::Status Move(uint32_t from, uint32_t to, const std::string& key, ListEnd end,
                    std::vector<Transition>* out);
  // Pops from `end` of `list` if it has entries; else the request
  // (`request_id`) of `conn` waits (see above). kAlreadyExists if `conn`
  // already has a pop waiting on `list`; kInvalidArgument for a bad list.
  absl::StatusOr<PopWaitResult> PopWait(uint32_t conn, uint64_t request_id, uint32_t list,
                                        ListEnd end);
  // Withdraws `conn`'s waiting pop on `list`: true if there was one (false:
  // none waited, or it was served already). kInvalidArgument for a bad list.
  absl::StatusOr<bool> CancelPopWait(uint32_t conn, uint32_t list);
  // Turns monitoring of `list` by `conn` on or off; returns the list's length.
  absl::StatusOr<uint32_t> Monitor(uint32_t conn, uint32_t list, bool on);
  // `conn` is gone: it monitors nothing and waits for nothing.
  void Forget(uint32_t conn);
  // A Transition for each list `conn` monitors that has entries (in list
  // order): what a monitor that comes back after a duplex failover is told,
  // since a transition may have happened while it was away (docs/cf.md).
  std::vector<Transition> Monitored(uint32_t conn) const;

  // Re-duplexing's copy (cf/duplex.h "Copy"): list by list, its entries
  // in order, its monitors, its waiting pops in order. CopyIn() replays
  // them into an empty structure; the connections are the caller's to
  // check. Each item is checked (list in range, data within max_data, at
  // most `entries` entries, a waiting pop only on an empty list and one
  // per connection): kInvalidArgument naming what is wrong, nothing applied.
  struct CopyItem {
    enum class Kind : uint8_t { kEntry = 0, kMonitor = 1, kWaiter = 2 };
    Kind kind = Kind::kEntry;
    uint32_t list = 0;
    uint32_t conn = 0;        // a monitor's or waiting pop's
    uint64_t request_id = 0;  // a waiting pop's
    ListEntry entry;
  };
  std::vector<CopyItem> CopyOut() const;
  absl::Status CopyIn(CopyItem item);
  void set_counters(const ListCounters& c) { counters_ = c; }

  const std::string& name() const { return name_; }
  uint32_t lists() const { return static_cast<uint32_t>(lists_.size()); }
  uint32_t entries() const { return entries_; }
  uint32_t max_data() const { return max_data_; }
  uint32_t in_use() const { return in_use_; }
  const ListCounters& counters() const { return counters_; }

 private:
  absl::Status CheckList(uint32_t list) const;
  // An entry went onto `list` (was_empty: it had none): served to a
  // waiting pop if there is one, else a transition if was_empty.
  void Arrived(uint32_t list, bool was_empty, std::vector<Transition>* out);
  void Transitioned(uint32_t list, std::vector<Transition>* out);

  struct PopWaiter {
    uint32_t conn;
    uint64_t request_id;
  };
  struct Header {
    std::deque<ListEntry> entries;
    absl::flat_hash_set<uint32_t> monitors;
    std::deque<PopWaiter> waiters;  // non-empty only while `entries` is empty
  };
  std::string name_;
  std::vector<Header> lists_;
  uint32_t entries_;
  uint32_t max_data_;
  uint32_t in_use_ = 0;
  ListCounters counters_;
};

}  // namespace hsi::cf

#endif  // HSI_CF_LIST_STRUCTURE_H_
