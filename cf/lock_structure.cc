#include "lock_structure.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace hsi::cf {

absl::Status LockStructure::Attach(uint32_t conn, const std::string& connector,
                                   uint32_t* returned) {
  *returned = 0;
  for (const auto& [c, name] : conns_) {
    if (name == connector) {
      return absl::AlreadyExistsError(absl::StrCat("lock structure ", name_, ": connector ",
                                                   connector, " is already connected"));
    }
  }
  conns_[conn] = connector;
  if (auto it = failed_.find(connector); it != failed_.end()) {
    for (auto& [res, r] : resources_) {
      for (Held& h : r.held) {
        if (h.conn == 0 && h.connector == connector) {
          h.conn = conn;
          ++*returned;
        }
      }
    }
    failed_.erase(it);
  }
  return absl::OkStatus();
}

absl::StatusOr<LockResult> LockStructure::Obtain(uint32_t conn, uint64_t request_id,
                                                 absl::string_view resource, LockMode mode,
                                                 absl::string_view record,
                                                 std::vector<Note>* notes) {
  (void)notes;
  auto self = conns_.find(conn);
  if (self == conns_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("lock structure ", name_, ": connection ", conn, " is not connected"));
  }
  auto it = resources_.find(resource);
  if (it == resources_.end()) {
    if (resources_.size() >= entries_) {
      return absl::ResourceExhaustedError(absl::StrCat("lock structure ", name_, ": all ", entries_,
                                                       " lock entries are in use; resource ",
                                                       resource, " cannot be locked"));
    }
    Resource fresh;
    if (!pool_.empty()) {
      fresh = std::move(pool_.back());
      pool_.pop_back();
    }
    it = resources_.emplace(resource, std::move(fresh)).first;
  }
  Resource& r = it->second;
  LockResult out;
  // Retained locks in the way: refused at once, naming the failed holders.
  for (const Held& h : r.held) {
    if (h.conn == 0 && !Compatible(h.mode, mode))
      out.holders.push_back({h.connector, h.mode, true});
  }
  if (!out.holders.empty()) {
    out.outcome = LockResult::Outcome::kRetained;
    ++counters_.refused_retained;
    return out;
  }
  for (const Waiter& w : r.queue) {
    if (w.conn == conn) {
      return absl::InvalidArgumentError(
          absl::StrCat("lock structure ", name_, ": connector ", self->second,
                       " already has a request queued on ", resource));
    }
  }
  // Already held by this connection in a mode that covers the request.
  for (Held& h : r.held) {
    if (h.conn == conn && (h.mode == LockMode::kExclusive || h.mode == mode)) {
      h.record.assign(record.data(), record.size());
      ++counters_.granted;
      return out;
    }
  }
  bool fits = r.queue.empty();
  for (const Held& h : r.held) {
    if (h.conn != conn && !Compatible(h.mode, mode)) fits = false;
  }
  if (fits) {
    std::erase_if(r.held, [&](const Held& h) { return h.conn == conn; });  // an upgrade replaces
    r.held.push_back({conn, self->second, mode, std::string(record)});
    ++counters_.granted;
    return out;
  }
  for (const Held& h : r.held) {
    if (h.conn != conn) out.holders.push_back({h.connector, h.mode, false});
  }
  r.queue.push_back({conn, request_id, mode, std::string(record)});
  out.outcome = LockResult::Outcome::kQueued;
  ++counters_.queued;
  return out;
}

void LockStructure::Promote(absl::string_view name, std::vector<Note>* notes) {
  auto it = resources_.find(name);
  if (it == resources_.end()) return;
  Resource& r = it->second;
  // The waiters settled here (granted or cancelled) leave the queue's head
  // in one erase at the end: one move of the rest, not one per waiter.
  size_t settled = 0;
  for (; settled < r.queue.size(); ++settled) {
    Waiter& w = r.queue[settled];
    bool fits = true;
    const Held* retained = nullptr;
    for (const Held& h : r.held) {
      if (h.conn != w.conn && !Compatible(h.mode, w.mode)) {
        fits = false;
        if (h.conn == 0) retained = &h;
      }
    }
    if (retained != nullptr) {
      notes->push_back({Note::Kind::kCancelled, w.conn, w.request_id, std::string(name), w.mode,
                        retained->connector});
      continue;
    }
    if (!fits) break;
    std::erase_if(r.held, [&](const Held& h) { return h.conn == w.conn; });
    r.held.push_back({w.conn, conns_[w.conn], w.mode, std::move(w.record)});
    notes->push_back({Note::Kind::kGranted, w.conn, w.request_id, std::string(name), w.mode, ""});
    ++counters_.granted;
    ++counters_.granted_after_wait;
  }
  r.queue.erase(r.queue.begin(), r.queue.begin() + static_cast<std::ptrdiff_t>(settled));
  if (r.held.empty() && r.queue.empty()) {
    if (pool_.size() < kPool) pool_.push_back(std::move(r));  // empty, its capacity kept
    resources_.erase(it);
  }
}

absl::Status LockStructure::Release(uint32_t conn, absl::string_view resource,
                                    std::vector<Note>* notes) {
  auto it = resources_.find(resource);
  const size_t before = it == resources_.end() ? 0 : it->second.held.size();
  if (it != resources_.end())
    std::erase_if(it->second.held, [&](const Held& h) { return h.conn == conn; });
  if (it == resources_.end() || it->second.held.size() == before) {
    auto c = conns_.find(conn);
    return absl::NotFoundError(absl::StrCat("lock structure ", name_, ": connector ",
                                            c == conns_.end() ? absl::StrCat("#", conn) : c->second,
                                            " holds no lock on ", resource));
  }
  ++counters_.released;
  Promote(resource, notes);
  return absl::OkStatus();
}

void LockStructure::ReleaseAll(uint32_t conn, bool retain, std::vector<Note>* notes) {
  std::vector<std::string> touched;
  uint32_t kept = 0;
  const std::string connector = conns_[conn];
  for (auto& [name, r] : resources_) {
    bool t = false;
    if (std::erase_if(r.queue, [&](const Waiter& w) { return w.conn == conn; }) > 0) t = true;
    for (Held& h : r.held) {
      if (h.conn != conn) continue;
      t = true;
      if (retain) {
        h.conn = 0;
        ++kept;
      }
    }
    if (!retain) std::erase_if(r.held, [&](const Held& h) { return h.conn == conn; });
    if (t) touched.push_back(name);
  }
  conns_.erase(conn);
  if (kept > 0) {
    failed_[connector] = kept;
    counters_.retained += kept;
  }
  for (const std::string& name : touched) Promote(name, notes);
}

void LockStructure::Detach(uint32_t conn, std::vector<Note>* notes) {
  if (conns_.contains(conn)) ReleaseAll(conn, false, notes);
}
void LockStructure::Fail(uint32_t conn, std::vector<Note>* notes) {
  if (conns_.contains(conn)) ReleaseAll(conn, true, notes);
}

absl::StatusOr<std::vector<RetainedLock>> LockStructure::Recover(uint32_t conn,
                                                                 const std::string& failed,
                                                                 std::vector<Note>* notes) {
  if (!conns_.contains(conn)) {
    return absl::FailedPreconditionError(
        absl::StrCat("lock structure ", name_, ": connection ", conn, " is not connected"));
  }
  auto f = failed_.find(failed);
  if (f == failed_.end()) {
    return absl::NotFoundError(absl::StrCat("lock structure ", name_, ": no failed connector ",
                                            failed, " holds retained locks"));
  }
  failed_.erase(f);
  std::vector<RetainedLock> out;
  std::vector<std::string> touched;
  for (auto& [name, r] : resources_) {
    const size_t before = out.size();
    for (const Held& h : r.held) {
      if (h.conn == 0 && h.connector == failed) out.push_back({name, h.mode, h.record});
    }
    if (out.size() != before) {
      std::erase_if(r.held, [&](const Held& h) { return h.conn == 0 && h.connector == failed; });
      touched.push_back(name);
    }
  }
  counters_.recovered += out.size();
  for (const std::string& name : touched) Promote(name, notes);
  std::sort(out.begin(), out.end(),
            [](const RetainedLock& a, const RetainedLock& b) { return a.resource < b.resource; });
  return out;
}

size_t LockStructure::retained_count() const {
  size_t n = 0;
  for (const auto& [f, k] : failed_) n += k;
  return n;
}

}  // namespace hsi::cf

namespace hsi::cf {

std::vector<std::string> LockStructure::failed_connectors() const {
  std::vector<std::string> out;
  for (const auto& [name, count] : failed_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace hsi::cf

namespace hsi::cf {

std::vector<LockStructure::CopyItem> LockStructure::CopyOut() const {
  std::vector<CopyItem> out;
  for (const auto& [name, r] : resources_) {
    for (const Held& h : r.held)
      out.push_back({false, name, h.conn, h.connector, 0, h.mode, h.record});
    for (const Waiter& w : r.queue) {
      auto c = conns_.find(w.conn);
      out.push_back(
          {true, name, w.conn, c == conns_.end() ? "" : c->second, w.request_id, w.mode, w.record});
    }
  }
  return out;
}

absl::Status LockStructure::CopyIn(CopyItem item) {
  const std::string where =
      absl::StrCat("lock structure ", name_, ": copy of ",
                   item.queued ? "a queued request on " : "a holder of ", item.resource, ": ");
  if (item.resource.empty() || item.resource.size() > 64 || item.record.size() > 64)
    return absl::InvalidArgumentError(
        absl::StrCat(where, "resource or record length out of range"));
  auto c = item.conn == 0 ? conns_.end() : conns_.find(item.conn);
  if (item.conn != 0 && c == conns_.end())
    return absl::InvalidArgumentError(
        absl::StrCat(where, "connection ", item.conn, " is not attached"));
  auto it = resources_.find(item.resource);
  if (it == resources_.end() && (item.queued || resources_.size() >= entries_))
    return absl::InvalidArgumentError(
        absl::StrCat(where, item.queued ? "nothing holds it"
                                        : absl::StrCat("more than ", entries_, " resources")));
  if (item.queued) {
    if (item.conn == 0)
      return absl::InvalidArgumentError(absl::StrCat(where, "a queued request of no connection"));
    for (const Waiter& w : it->second.queue)
      if (w.conn == item.conn)
        return absl::InvalidArgumentError(
            absl::StrCat(where, "connection ", item.conn, " queued twice"));
    it->second.queue.push_back({item.conn, item.request_id, item.mode, std::move(item.record)});
    return absl::OkStatus();
  }
  if (item.conn == 0 ? item.connector.empty() || item.connector.size() > 16
                     : item.connector != c->second)
    return absl::InvalidArgumentError(absl::StrCat(where, "connector ", item.connector,
                                                   " does not match connection ", item.conn));
  if (item.conn == 0) {
    for (const auto& [conn, name] : conns_)
      if (name == item.connector)
        return absl::InvalidArgumentError(
            absl::StrCat(where, "retained by ", name, ", which is connected"));
  }
  if (it != resources_.end()) {
    if (!it->second.queue.empty())
      return absl::InvalidArgumentError(absl::StrCat(where, "a holder after a queued request"));
    for (const Held& h : it->second.held) {
      if ((item.conn != 0 && h.conn == item.conn) ||
          (item.conn == 0 && h.conn == 0 && h.connector == item.connector))
        return absl::InvalidArgumentError(absl::StrCat(where, item.connector, " holds it twice"));
      if (!Compatible(h.mode, item.mode))
        return absl::InvalidArgumentError(absl::StrCat(where, item.connector, " and ", h.connector,
                                                       " hold it in conflicting modes"));
    }
  } else {
    it = resources_.emplace(item.resource, Resource{}).first;
  }
  if (item.conn == 0) ++failed_[item.connector];
  it->second.held.push_back(
      {item.conn, std::move(item.connector), item.mode, std::move(item.record)});
  return absl::OkStatus();
}

}  // namespace hsi::cf
