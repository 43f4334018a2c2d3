// connector_cache.cc: CfClient's cache requests (docs/cf.md). The CF's
// replies are validated as any peer's frames (kDataLoss if malformed).
#include "absl/strings/str_cat.h"
#include "client_internal.h"

namespace hsi::cf {

using proto::Header;
using proto::Reader;
using proto::Writer;

namespace {

absl::Status CheckEntryName(const std::string& name) {
  if (name.empty() || name.size() > proto::kMaxKey) {
    return absl::InvalidArgumentError(absl::StrCat("cache entry name of ", name.size(), " bytes: 1..",
                                                   proto::kMaxKey, " allowed"));
  }
  return absl::OkStatus();
}

// A request that names one entry, and its reply (OK status).
absl::StatusOr<std::vector<uint8_t>> NameCall(CfClient::State& s, uint8_t type, const Connection& c,
                                              const std::string& name) {
  if (absl::Status st = CheckEntryName(name); !st.ok()) return st;
  const uint64_t id = s.next_id++;
  Writer w(Header{type, id, c.token, 0});
  w.Str(name);
  return Call(s, w, id);
}

// Reads the reply's fields with `read`, then checks nothing is left.
template <typename T, typename F>
absl::StatusOr<T> Parse(CfClient::State& s, const std::vector<uint8_t>& rep, F read) {
  Reader r(rep);
  T out = read(r);
  if (absl::Status st = r.Done(); !st.ok())
    return absl::DataLossError(absl::StrCat(s.Name(), ": ", st.message()));
  return out;
}

}  // namespace

absl::StatusOr<CacheRead> CfClient::ReadAndRegister(const Connection& c, const std::string& name,
                                                    uint32_t index) {
  if (absl::Status st = CheckEntryName(name); !st.ok()) return st;
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kCacheRegister, id, c.token, 0});
  w.Str(name).U32(index);
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  return Parse<CacheRead>(*s_, *rep, [](Reader& r) {
    CacheRead out;
    out.hit = r.U8("hit") != 0;
    out.data = r.Str("data", proto::kMaxData);
    return out;
  });
}

absl::StatusOr<uint32_t> CfClient::WriteEntry(const Connection& c, const std::string& name,
                                              const std::string& data, bool changed) {
  if (absl::Status st = CheckEntryName(name); !st.ok()) return st;
  if (data.size() > proto::kMaxData) {
    return absl::InvalidArgumentError(absl::StrCat("cache entry data of ", data.size(),
                                                   " bytes: at most ", proto::kMaxData, " allowed"));
  }
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kCacheWrite, id, c.token, 0});
  w.Str(name).U8(changed ? 1 : 0).Str(data);
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  return Parse<uint32_t>(*s_, *rep, [](Reader& r) { return r.U32("invalidated"); });
}

absl::Status CfClient::Unregister(const Connection& c, uint32_t index) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kCacheUnregister, id, c.token, 0});
  w.U32(index);
  return Call(*s_, w, id).status();
}

absl::StatusOr<uint32_t> CfClient::DeleteEntry(const Connection& c, const std::string& name) {
  absl::StatusOr<std::vector<uint8_t>> rep = NameCall(*s_, proto::kCacheDelete, c, name);
  if (!rep.ok()) return rep.status();
  return Parse<uint32_t>(*s_, *rep, [](Reader& r) { return r.U32("invalidated"); });
}

absl::StatusOr<std::string> CfClient::ReadForCastout(const Connection& c, const std::string& name) {
  absl::StatusOr<std::vector<uint8_t>> rep = NameCall(*s_, proto::kCacheCastout, c, name);
  if (!rep.ok()) return rep.status();
  return Parse<std::string>(*s_, *rep, [](Reader& r) { return r.Str("data", proto::kMaxData); });
}

absl::StatusOr<bool> CfClient::UnlockCastout(const Connection& c, const std::string& name) {
  absl::StatusOr<std::vector<uint8_t>> rep = NameCall(*s_, proto::kCacheUnlock, c, name);
  if (!rep.ok()) return rep.status();
  return Parse<bool>(*s_, *rep, [](Reader& r) { return r.U8("still changed") != 0; });
}

absl::StatusOr<std::vector<std::string>> CfClient::ChangedEntries(const Connection& c,
                                                                  uint32_t max) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kCacheChanged, id, c.token, 0});
  w.U32(max);
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  return Parse<std::vector<std::string>>(*s_, *rep, [](Reader& r) {
    std::vector<std::string> out;
    const uint32_t n = r.U32("count");
    for (uint32_t i = 0; i < n && r.status().ok(); ++i)
      out.push_back(r.Str("name", proto::kMaxKey));
    return out;
  });
}

absl::StatusOr<CacheCounters> CfClient::CacheStats(const Connection& c) {
  const uint64_t id = s_->next_id++;
  Writer w(Header{proto::kCacheStats, id, c.token, 0});
  absl::StatusOr<std::vector<uint8_t>> rep = Call(*s_, w, id);
  if (!rep.ok()) return rep.status();
  // The counters in the order of proto::CacheStat.
  static constexpr uint64_t CacheCounters::*kFields[proto::kStatCount] = {
      &CacheCounters::entries,       &CacheCounters::in_use, &CacheCounters::changed,
      &CacheCounters::castout_locked, &CacheCounters::registrations, &CacheCounters::reads,
      &CacheCounters::hits,          &CacheCounters::writes, &CacheCounters::invalidations,
      &CacheCounters::castouts,      &CacheCounters::reclaims, &CacheCounters::deletes};
  return Parse<CacheCounters>(*s_, *rep, [](Reader& r) {
    const uint32_t n = r.U32("count");
    CacheCounters out;
    // A newer CF may send more counters: the ones we know, the rest read and skipped.
    for (uint32_t i = 0; i < n && r.status().ok(); ++i) {
      const uint64_t x = r.U64("counter");
      if (i < proto::kStatCount) out.*kFields[i] = x;
    }
    return out;
  });
}

}  // namespace hsi::cf
