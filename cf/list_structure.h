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
// A connection that goes (normally or not) stops monitoring; the entries
// stay (the structure is persistent, as a real list structure is).
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

// Tell connection `conn` that list `list` went from empty to non-empty.
struct Transition {
  uint32_t conn = 0;
  uint32_t list = 0;
};

struct ListCounters {
  uint64_t pushed = 0, popped = 0, moved = 0, deleted = 0, transitions = 0;
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
  // Turns monitoring of `list` by `conn` on or off; returns the list's length.
  absl::StatusOr<uint32_t> Monitor(uint32_t conn, uint32_t list, bool on);
  // `conn` is gone: it monitors nothing.
  void Forget(uint32_t conn);
  // A Transition for each list `conn` monitors that has entries (in list
  // order): what a monitor that comes back after a duplex failover is told,
  // since a transition may have happened while it was away (docs/cf.md).
  std::vector<Transition> Monitored(uint32_t conn) const;

  const std::string& name() const { return name_; }
  uint32_t lists() const { return static_cast<uint32_t>(lists_.size()); }
  uint32_t entries() const { return entries_; }
  uint32_t max_data() const { return max_data_; }
  uint32_t in_use() const { return in_use_; }
  const ListCounters& counters() const { return counters_; }

 private:
  absl::Status CheckList(uint32_t list) const;
  void Transitioned(uint32_t list, std::vector<Transition>* out);

  struct Header {
    std::deque<ListEntry> entries;
    absl::flat_hash_set<uint32_t> monitors;
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
