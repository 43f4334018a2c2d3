// server_cache.cc: hsi-cf's cache requests (cf/cache_structure.h) and the
// grant of each cache connection's local validity vector. Every field is
// read through proto::Reader and checked before use.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server.h"

namespace hsi::cf {

absl::Status Server::AttachCache(CacheStructure& cache, Address from, uint32_t token,
                                 const std::string& connector) {
  // Before anything is made and granted: a refused Connect leaves nothing behind.
  if (absl::Status s = cache.CanAttach(connector, token); !s.ok()) return s;
  absl::StatusOr<VectorWriter> vec =
      VectorWriter::Create(cache.vector_bits(), absl::StrCat("hsi-cf ", cache.name(), " ", connector));
  if (!vec.ok()) return vec.status();
  absl::StatusOr<UniqueFd> fd = vec->DupFd();
  if (!fd.ok()) return fd.status();
  // hsid checks the seals and hands the memfd to the owner of `from` only.
  // The connector takes it with the token as the tag after our reply.
  if (absl::Status s = nic_.GrantMemory(from, token, std::move(*fd),
                                        Wait::Block(absl::Now() + absl::Seconds(2)));
      !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("CF ", config_.lpar, ": cannot grant the validity vector of ",
                                               cache.name(), " to ", from.ToString(), ": ",
                                               s.message()));
  }
  return cache.Attach(token, connector, std::move(*vec));
}

void Server::DetachCache(const Conn& conn, const std::string& why) {
  CacheStructure& cache = *structures_.at(conn.structure).cache;
  const uint32_t released = cache.Detach(conn.token);
  Log(absl::StrCat("connector ", conn.connector, " (LPAR ", conn.lpar, ", ", conn.peer.ToString(),
                   ") of ", conn.structure, " ", why, "; its registrations end",
                   released > 0 ? absl::StrCat(", ", released, " castout lock(s) released (the entries stay changed)")
                                : ""));
}

absl::Status Server::DispatchCache(const Conn& conn, CacheStructure& cache, const proto::Header& h,
                                   proto::Reader& r, proto::Writer& w) {
  switch (h.type) {
    case proto::kCacheRegister: {
      const std::string name = r.Str("name", proto::kMaxKey);
      const uint32_t index = r.U32("index");
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<CacheReadResult> got = cache.ReadAndRegister(h.conn, name, index);
      if (!got.ok()) return got.status();
      w.U8(got->hit ? 1 : 0).Str(got->data);
      return absl::OkStatus();
    }
    case proto::kCacheWrite: {
      std::string name = r.Str("name", proto::kMaxKey);
      const uint8_t changed = r.U8("changed");
      std::string data = r.Str("data", proto::kMaxData);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      if (changed > 1)
        return absl::InvalidArgumentError(absl::StrCat("cache write: changed = ", changed, " is not 0 or 1"));
      // The bits are flipped before Write returns; the reply goes after.
      absl::StatusOr<uint32_t> n = cache.Write(h.conn, name, std::move(data), changed == 1);
      if (!n.ok()) return n.status();
      w.U32(*n);
      return absl::OkStatus();
    }
    case proto::kCacheUnregister: {
      const uint32_t index = r.U32("index");
      if (absl::Status s = r.Done(); !s.ok()) return s;
      return cache.Unregister(h.conn, index);
    }
    case proto::kCacheDelete: {
      const std::string name = r.Str("name", proto::kMaxKey);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<uint32_t> n = cache.Delete(h.conn, name);
      if (!n.ok()) return n.status();
      w.U32(*n);
      return absl::OkStatus();
    }
    case proto::kCacheCastout: {
      const std::string name = r.Str("name", proto::kMaxKey);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<std::string> data = cache.ReadForCastout(h.conn, name);
      if (!data.ok()) return data.status();
      w.Str(*data);
      return absl::OkStatus();
    }
    case proto::kCacheUnlock: {
      const std::string name = r.Str("name", proto::kMaxKey);
      if (absl::Status s = r.Done(); !s.ok()) return s;
      absl::StatusOr<bool> still = cache.UnlockCastout(h.conn, name);
      if (!still.ok()) return still.status();
      w.U8(*still ? 1 : 0);
      return absl::OkStatus();
    }
    case proto::kCacheChanged: {
      const uint32_t max = r.U32("max");
      if (absl::Status s = r.Done(); !s.ok()) return s;
      // No more names than one frame can carry, whatever `max` says.
      std::vector<std::string> names = cache.Changed(std::min<uint32_t>(max, proto::kMaxFrame / 3));
      uint32_t n = 0;
      size_t bytes = w.size() + 4;
      for (const std::string& name : names) {  // the first ones that fit one frame
        bytes += 2 + name.size();
        if (bytes > proto::kMaxFrame) break;
        ++n;
      }
      w.U32(n);
      for (uint32_t i = 0; i < n; ++i) w.Str(names[i]);
      return absl::OkStatus();
    }
    case proto::kCacheStats: {
      if (absl::Status s = r.Done(); !s.ok()) return s;
      const CacheOpCounters& c = cache.counters();
      const uint64_t v[proto::kStatCount] = {cache.entries(),  cache.in_use(),   cache.changed_count(),
                                             cache.castout_locked(), cache.registrations(), c.reads,
                                             c.hits,           c.writes,         c.invalidations,
                                             c.castouts,       c.reclaims,       c.deletes};
      w.U32(proto::kStatCount);
      for (uint64_t x : v) w.U64(x);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("CF ", config_.lpar, ": message type ", h.type, " is a ",
                       h.type >= proto::kListPush ? "list" : "lock", " request; ", conn.structure,
                       " is a cache structure"));
  }
}

}  // namespace hsi::cf
