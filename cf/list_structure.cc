#include "list_structure.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace hsi::cf {

ListStructure::ListStructure(std::string name, uint32_t lists, uint32_t entries, uint32_t max_data)
    : name_(std::move(name)), lists_(lists), entries_(entries), max_data_(max_data) {}

absl::Status ListStructure::CheckList(uint32_t list) const {
  if (list >= lists_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("list structure ", name_, ": list ", list,
                                                   " does not exist (0..", lists_.size() - 1, ")"));
  }
  return absl::OkStatus();
}

void ListStructure::Transitioned(uint32_t list, std::vector<Transition>* out) {
  // Sorted so that the order of notes does not depend on hashing.
  std::vector<uint32_t> m(lists_[list].monitors.begin(), lists_[list].monitors.end());
  std::sort(m.begin(), m.end());
  for (uint32_t c : m) out->push_back({c, list, false, 0, {}});
  ++counters_.transitions;
}

absl::StatusOr<uint32_t> ListStructure::Push(uint32_t list, ListEnd end, std::string key,
                                             std::string data, std::vector<Transition>* out) {
  if (absl::Status s = CheckList(list); !s.ok()) return s;
  if (data.size() > max_data_) {
    return absl::InvalidArgumentError(absl::StrCat("list structure ", name_, ": entry data of ",
                                                   data.size(), " bytes exceeds max_data ",
                                                   max_data_));
  }
  if (in_use_ >= entries_) {
    return absl::ResourceExhaustedError(absl::StrCat("list structure ", name_, ": all ", entries_,
                                                     " entries are in use; list ", list,
                                                     " is full"));
  }
  Header& h = lists_[list];
  const bool was_empty = h.entries.empty();
  if (end == ListEnd::kHead) {
    h.entries.push_front({std::move(key), std::move(data)});
  } else {
    h.entries.push_back({std::move(key), std::move(data)});
  }
  ++in_use_;
  ++counters_.pushed;
  Arrived(list, was_empty, out);
  return static_cast<uint32_t>(h.entries.size());
}

void ListStructure::Arrived(uint32_t list, bool was_empty, std::vector<Transition>* out) {
  Header& h = lists_[list];
  if (h.waiters.empty()) {
    if (was_empty) Transitioned(list, out);
    return;
  }
  // Waiters exist only on an empty list: the entry that came is the only
  // one, and it goes to the oldest waiter without the list ever showing it.
  const PopWaiter w = h.waiters.front();
  h.waiters.pop_front();
  Transition t{w.conn, list, true, w.request_id, std::move(h.entries.front())};
  h.entries.pop_front();
  --in_use_;
  ++counters_.popped;
  ++counters_.handed;
  out->push_back(std::move(t));
}

absl::StatusOr<PopWaitResult> ListStructure::PopWait(uint32_t conn, uint64_t request_id,
                                                     uint32_t list, ListEnd end) {
  if (absl::Status s = CheckList(list); !s.ok()) return s;
  Header& h = lists_[list];
  PopWaitResult r;
  if (!h.entries.empty()) {
    absl::StatusOr<ListEntry> e = Pop(list, end);
    if (!e.ok()) return e.status();
    r.entry = std::move(*e);
    r.left = static_cast<uint32_t>(h.entries.size());
    return r;
  }
  for (const PopWaiter& w : h.waiters) {
    if (w.conn == conn) {
      return absl::AlreadyExistsError(absl::StrCat("list structure ", name_, ": list ", list,
                                                   " already has a pop of this connection waiting"
                                                   " (request ", w.request_id, ")"));
    }
  }
  h.waiters.push_back({conn, request_id});
  r.waiting = true;
  return r;
}

absl::StatusOr<bool> ListStructure::CancelPopWait(uint32_t conn, uint32_t list) {
  if (absl::Status s = CheckList(list); !s.ok()) return s;
  return std::erase_if(lists_[list].waiters, [&](const PopWaiter& w) { return w.conn == conn; }) > 0;
}

absl::StatusOr<ListEntry> ListStructure::Pop(uint32_t list, ListEnd end) {
  if (absl::Status s = CheckList(list); !s.ok()) return s;
  Header& h = lists_[list];
  if (h.entries.empty())
    return absl::NotFoundError(
        absl::StrCat("list structure ", name_, ": list ", list, " is empty"));
  ListEntry e;
  if (end == ListEnd::kHead) {
    e = std::move(h.entries.front());
    h.entries.pop_front();
  } else {
    e = std::move(h.entries.back());
    h.entries.pop_back();
  }
  --in_use_;
  ++counters_.popped;
  return e;
}

absl::StatusOr<ListEntry> ListStructure::Read(uint32_t list, const std::string& key) const {
  if (absl::Status s = CheckList(list); !s.ok()) return s;
  for (const ListEntry& e : lists_[list].entries) {
    if (e.key == key) return e;
  }
  return absl::NotFoundError(
      absl::StrCat("list structure ", name_, ": list ", list, " has no entry with that key"));
}

absl::Status ListStructure::Delete(uint32_t list, const std::string& key) {
  if (absl::Status s = CheckList(list); !s.ok()) return s;
  auto& q = lists_[list].entries;
  auto it = std::find_if(q.begin(), q.end(), [&](const ListEntry& e) { return e.key == key; });
  if (it == q.end()) {
    return absl::NotFoundError(
        absl::StrCat("list structure ", name_, ": list ", list, " has no entry with that key"));
  }
  q.erase(it);
  --in_use_;
  ++counters_.deleted;
  return absl::OkStatus();
}

absl::Status ListStructure::Move(uint32_t from, uint32_t to, const std::string& key, ListEnd end,
                                 std::vector<Transition>* out) {
  if (absl::Status s = CheckList(from); !s.ok()) return s;
  if (absl::Status s = CheckList(to); !s.ok()) return s;
  auto& q = lists_[from].entries;
  auto it = std::find_if(q.begin(), q.end(), [&](const ListEntry& e) { return e.key == key; });
  if (it == q.end()) {
    return absl::NotFoundError(
        absl::StrCat("list structure ", name_, ": list ", from, " has no entry with that key"));
  }
  ListEntry e = std::move(*it);
  q.erase(it);
  Header& t = lists_[to];
  const bool was_empty = from != to && t.entries.empty();  // a move within a list is no transition
  if (end == ListEnd::kHead) {
    t.entries.push_front(std::move(e));
  } else {
    t.entries.push_back(std::move(e));
  }
  ++counters_.moved;
  if (from != to) Arrived(to, was_empty, out);
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> ListStructure::Monitor(uint32_t conn, uint32_t list, bool on) {
  if (absl::Status s = CheckList(list); !s.ok()) return s;
  if (on) {
    lists_[list].monitors.insert(conn);
  } else {
    lists_[list].monitors.erase(conn);
  }
  return static_cast<uint32_t>(lists_[list].entries.size());
}

void ListStructure::Forget(uint32_t conn) {
  for (Header& h : lists_) {
    h.monitors.erase(conn);
    std::erase_if(h.waiters, [&](const PopWaiter& w) { return w.conn == conn; });
  }
}

std::vector<Transition> ListStructure::Monitored(uint32_t conn) const {
  std::vector<Transition> out;
  for (uint32_t i = 0; i < lists_.size(); ++i) {
    if (lists_[i].monitors.contains(conn) && !lists_[i].entries.empty()) {
      Transition t;
      t.conn = conn;
      t.list = i;
      out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace hsi::cf

namespace hsi::cf {

std::vector<ListStructure::CopyItem> ListStructure::CopyOut() const {
  std::vector<CopyItem> out;
  for (uint32_t l = 0; l < lists_.size(); ++l) {
    const Header& h = lists_[l];
    for (const ListEntry& e : h.entries) out.push_back({CopyItem::Kind::kEntry, l, 0, 0, e});
    std::vector<uint32_t> m(h.monitors.begin(), h.monitors.end());
    std::sort(m.begin(), m.end());
    for (uint32_t c : m) out.push_back({CopyItem::Kind::kMonitor, l, c, 0, {}});
    for (const PopWaiter& w : h.waiters)
      out.push_back({CopyItem::Kind::kWaiter, l, w.conn, w.request_id, {}});
  }
  return out;
}

absl::Status ListStructure::CopyIn(CopyItem item) {
  if (absl::Status s = CheckList(item.list); !s.ok()) return s;
  Header& h = lists_[item.list];
  const std::string where =
      absl::StrCat("list structure ", name_, ": copy of list ", item.list, ": ");
  switch (item.kind) {
    case CopyItem::Kind::kEntry:
      if (item.entry.key.size() > 16 || item.entry.data.size() > max_data_)
        return absl::InvalidArgumentError(
            absl::StrCat(where, "an entry's key or data is too long"));
      if (in_use_ >= entries_)
        return absl::InvalidArgumentError(absl::StrCat(where, "more than ", entries_, " entries"));
      if (!h.waiters.empty())
        return absl::InvalidArgumentError(
            absl::StrCat(where, "an entry on a list with waiting pops"));
      h.entries.push_back(std::move(item.entry));
      ++in_use_;
      return absl::OkStatus();
    case CopyItem::Kind::kMonitor:
      h.monitors.insert(item.conn);
      return absl::OkStatus();
    case CopyItem::Kind::kWaiter:
      if (!h.entries.empty())
        return absl::InvalidArgumentError(
            absl::StrCat(where, "a waiting pop on a list with entries"));
      for (const PopWaiter& w : h.waiters)
        if (w.conn == item.conn)
          return absl::InvalidArgumentError(
              absl::StrCat(where, "two waiting pops of connection ", item.conn));
      h.waiters.push_back({item.conn, item.request_id});
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, "item kind ", static_cast<int>(item.kind), " unknown"));
}

}  // namespace hsi::cf
