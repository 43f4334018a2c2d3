#include "cache_structure.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "protocol.h"

namespace hsi::cf {

CacheStructure::CacheStructure(std::string name, uint32_t entries, uint32_t max_data, uint32_t vector_bits)
    : name_(std::move(name)), entries_(entries), max_data_(max_data), vector_bits_(vector_bits) {}

uint32_t CacheStructure::registrations() const {
  uint32_t n = 0;
  for (const auto& [id, c] : conns_) n += static_cast<uint32_t>(c.by_index.size());
  return n;
}

absl::Status CacheStructure::CheckName(const std::string& n) const {
  if (n.empty() || n.size() > proto::kMaxKey) {
    return absl::InvalidArgumentError(absl::StrCat("cache structure ", name_, ": entry name of ", n.size(),
                                                   " bytes: 1..", proto::kMaxKey, " allowed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CacheStructure::Conn*> CacheStructure::Find(uint32_t conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cache structure ", name_, ": connection ", conn, " is not attached"));
  }
  return &it->second;
}

absl::Status CacheStructure::CanAttach(const std::string& connector, uint32_t conn) const {
  for (const auto& [id, c] : conns_) {
    if (c.connector == connector && !(id == conn && c.suspended)) {
      return absl::AlreadyExistsError(
          absl::StrCat("cache structure ", name_, ": connector ", connector, " is already connected"));
    }
  }
  return absl::OkStatus();
}

absl::Status CacheStructure::Attach(uint32_t conn, const std::string& connector, VectorWriter vector) {
  if (absl::Status s = CanAttach(connector, conn); !s.ok()) return s;
  if (auto it = conns_.find(conn); it != conns_.end() && it->second.suspended) {
    it->second.vector = std::move(vector);  // back: its castout locks are still its own
    it->second.suspended = false;
    return absl::OkStatus();
  }
  conns_[conn] = Conn{connector, std::move(vector), {}};
  return absl::OkStatus();
}

void CacheStructure::EndRegistrations(uint32_t conn, Conn& c) {
  for (const auto& [index, entry] : c.by_index) {
    if (auto e = dir_.find(entry); e != dir_.end()) e->second.regs.erase(conn);
  }
  c.by_index.clear();
  std::erase_if(late_, [&](const auto& l) { return l.first == conn; });
}

uint32_t CacheStructure::Suspend(uint32_t conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return 0;
  EndRegistrations(conn, it->second);
  it->second.vector = VectorWriter();  // its mapping goes; a fresh one on Attach
  it->second.suspended = true;
  uint32_t held = 0;
  for (const auto& [n, e] : dir_) held += e.castout_owner == conn;
  return held;
}

uint32_t CacheStructure::Detach(uint32_t conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return 0;
  EndRegistrations(conn, it->second);
  uint32_t released = 0;
  for (auto& [n, e] : dir_) {
    if (e.castout_owner == conn) {
      e.castout_owner = 0;  // stays changed: another connection casts it out
      --locked_;
      ++released;
    }
  }
  conns_.erase(it);  // the vector's mapping goes with it
  return released;
}

void CacheStructure::Drop(Conn& c, uint32_t conn, uint32_t index) {
  c.by_index.erase(index);
  switch (fault_) {
    case XiFault::kNone:
      c.vector.Set(index, false);
      break;
    case XiFault::kSkip:
      break;
    case XiFault::kLate:
      late_.emplace_back(conn, index);
      break;
  }
}

void CacheStructure::FlushLate() {
  for (const auto& [conn, index] : late_) {
    auto c = conns_.find(conn);
    if (c != conns_.end() && !c->second.by_index.contains(index)) c->second.vector.Set(index, false);
  }
  late_.clear();
}

uint32_t CacheStructure::Invalidate(Entry& e, uint32_t keep) {
  uint32_t n = 0;
  for (auto it = e.regs.begin(); it != e.regs.end();) {
    auto next = std::next(it);
    if (it->first != keep) {
      Drop(conns_.at(it->first), it->first, it->second);
      e.regs.erase(it);
      ++n;
    }
    it = next;
  }
  counters_.invalidations += n;
  return n;
}

absl::StatusOr<CacheStructure::Entry*> CacheStructure::Make(const std::string& name) {
  if (auto it = dir_.find(name); it != dir_.end()) return &it->second;
  if (dir_.size() >= entries_) {
    // Reclaim the least recently used entry that holds nothing unsaved.
    auto victim = dir_.end();
    for (auto it = dir_.begin(); it != dir_.end(); ++it) {
      if (it->second.changed || it->second.castout_owner != 0) continue;
      if (victim == dir_.end() || it->second.last_use < victim->second.last_use) victim = it;
    }
    if (victim == dir_.end()) {
      return absl::ResourceExhaustedError(absl::StrCat("cache structure ", name_, ": all ", entries_,
                                                       " entries are changed or castout-locked; cast some out"));
    }
    Invalidate(victim->second, 0);
    dir_.erase(victim);
    ++counters_.reclaims;
  }
  return &dir_[name];
}

absl::StatusOr<CacheReadResult> CacheStructure::ReadAndRegister(uint32_t conn, const std::string& name,
                                                                uint32_t index) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (index >= vector_bits_) {
    return absl::InvalidArgumentError(absl::StrCat("cache structure ", name_, ": local buffer index ", index,
                                                   " is out of the vector's range (0..", vector_bits_ - 1, ")"));
  }
  absl::StatusOr<Conn*> c = Find(conn);
  if (!c.ok()) return c.status();
  absl::StatusOr<Entry*> e = Make(name);
  if (!e.ok()) return e.status();
  // The buffer held another entry: that registration ends.
  if (auto old = (*c)->by_index.find(index); old != (*c)->by_index.end() && old->second != name) {
    if (auto oe = dir_.find(old->second); oe != dir_.end()) oe->second.regs.erase(conn);
  }
  // One registration per entry and connection: a new index replaces the old.
  if (auto prev = (*e)->regs.find(conn); prev != (*e)->regs.end() && prev->second != index) {
    (*c)->by_index.erase(prev->second);
    (*c)->vector.Set(prev->second, false);
  }
  (*e)->regs[conn] = index;
  (*e)->last_use = ++tick_;
  (*c)->by_index[index] = name;
  (*c)->vector.Set(index, true);
  ++counters_.reads;
  CacheReadResult r;
  if (max_data_ > 0 && (*e)->version > 0) {
    r.hit = true;
    r.data = (*e)->data;
    ++counters_.hits;
  }
  return r;
}

absl::StatusOr<uint32_t> CacheStructure::Write(uint32_t conn, const std::string& name, std::string data,
                                               bool changed) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (max_data_ == 0 && (!data.empty() || changed)) {
    return absl::InvalidArgumentError(absl::StrCat("cache structure ", name_,
                                                   " is directory-only: a write carries no data and no changed mark"));
  }
  if (data.size() > max_data_ && max_data_ > 0) {
    return absl::InvalidArgumentError(absl::StrCat("cache structure ", name_, ": entry data of ", data.size(),
                                                   " bytes exceeds max_data ", max_data_));
  }
  absl::StatusOr<Conn*> c = Find(conn);
  if (!c.ok()) return c.status();
  Entry* e = nullptr;
  if (max_data_ == 0) {
    auto it = dir_.find(name);
    if (it == dir_.end()) return 0u;  // nobody holds a copy: nothing to invalidate
    e = &it->second;
  } else {
    absl::StatusOr<Entry*> made = Make(name);
    if (!made.ok()) return made.status();
    e = *made;
    e->data = std::move(data);
    if (changed && !e->changed) ++changed_;
    e->changed = e->changed || changed;
  }
  ++e->version;
  e->last_use = ++tick_;
  ++counters_.writes;
  return Invalidate(*e, conn);
}

absl::Status CacheStructure::Unregister(uint32_t conn, uint32_t index) {
  absl::StatusOr<Conn*> c = Find(conn);
  if (!c.ok()) return c.status();
  auto it = (*c)->by_index.find(index);
  if (it == (*c)->by_index.end()) {
    return absl::NotFoundError(
        absl::StrCat("cache structure ", name_, ": no registration at local buffer index ", index));
  }
  if (auto e = dir_.find(it->second); e != dir_.end()) e->second.regs.erase(conn);
  (*c)->by_index.erase(it);
  (*c)->vector.Set(index, false);
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> CacheStructure::Delete(uint32_t conn, const std::string& name) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (absl::StatusOr<Conn*> c = Find(conn); !c.ok()) return c.status();
  auto it = dir_.find(name);
  if (it == dir_.end()) {
    return absl::NotFoundError(
        absl::StrCat("cache structure ", name_, ": no entry \"", absl::CHexEscape(name), "\""));
  }
  if (it->second.changed || it->second.castout_owner != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cache structure ", name_, ": entry \"",
                                                      absl::CHexEscape(name),
                                                      "\" is changed or being cast out; cast it out first"));
  }
  const uint32_t n = Invalidate(it->second, 0);
  dir_.erase(it);
  ++counters_.deletes;
  return n;
}

absl::StatusOr<std::string> CacheStructure::ReadForCastout(uint32_t conn, const std::string& name) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (absl::StatusOr<Conn*> c = Find(conn); !c.ok()) return c.status();
  const std::string what = absl::StrCat("cache structure ", name_, ": entry \"", absl::CHexEscape(name), "\"");
  if (max_data_ == 0) return absl::FailedPreconditionError(absl::StrCat(what, ": directory-only, no castout"));
  auto it = dir_.find(name);
  if (it == dir_.end()) return absl::NotFoundError(absl::StrCat(what, " does not exist"));
  Entry& e = it->second;
  if (e.castout_owner != 0 && e.castout_owner != conn) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " is locked for castout by ", conns_.at(e.castout_owner).connector));
  }
  if (!e.changed) return absl::FailedPreconditionError(absl::StrCat(what, " is not changed"));
  if (e.castout_owner == 0) ++locked_;
  e.castout_owner = conn;
  e.castout_version = e.version;
  return e.data;
}

absl::StatusOr<bool> CacheStructure::UnlockCastout(uint32_t conn, const std::string& name) {
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (absl::StatusOr<Conn*> c = Find(conn); !c.ok()) return c.status();
  auto it = dir_.find(name);
  if (it == dir_.end() || it->second.castout_owner != conn) {
    return absl::FailedPreconditionError(absl::StrCat("cache structure ", name_, ": entry \"",
                                                      absl::CHexEscape(name),
                                                      "\" is not locked for castout by this connection"));
  }
  Entry& e = it->second;
  e.castout_owner = 0;
  --locked_;
  ++counters_.castouts;
  if (e.version == e.castout_version) {
    e.changed = false;
    --changed_;
  }
  return e.changed;
}

std::vector<std::string> CacheStructure::Changed(size_t max) const {
  std::vector<std::string> out;
  for (const auto& [n, e] : dir_) {
    if (out.size() >= max) break;
    if (e.changed && e.castout_owner == 0) out.push_back(n);
  }
  return out;
}

}  // namespace hsi::cf
