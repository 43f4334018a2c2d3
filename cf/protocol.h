// cf/protocol.h: the CF request/response format over hsi links (docs/cf.md).
//
// One frame = one message: a 24-byte header, then fields. Little-endian,
// no padding, read with memcpy (a frame sits in a peer's ring: nothing is
// aligned or trusted). Strings are a u16 length and bytes. Every field a
// connector sent is validated by the Reader (bounds) and by the CF
// (lengths, character set, enum values) before use; a bad frame gets a
// kInvalidArgument reply naming the field, and the CF serves on.
//
// Thread safety: Writer and Reader are values; one thread each.
#ifndef HSI_CF_PROTOCOL_H_
#define HSI_CF_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace hsi::cf::proto {

inline constexpr uint32_t kMagic = 0x46434948;  // "HICF"
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderSize = 24;
inline constexpr size_t kMaxName = 16;      // structure and connector names (CFRM: 16)
inline constexpr size_t kMaxResource = 64;  // lock resource names
inline constexpr size_t kMaxRecord = 64;    // record data kept with a lock for recovery
inline constexpr size_t kMaxFrame = 8192;   // fits the smallest CHPID MTU (16K MFS)
inline constexpr size_t kMaxKey = 16;       // list entry keys (bytes, any value)
inline constexpr size_t kMaxData = 4096;    // list entry data, at most (max_data per structure)

// The one table of message types. Requests go connector -> CF; each is
// answered by a reply of type (request | kReplyBit) with the same
// request_id. Notes go CF -> connector unasked, carrying the request_id of
// the lock request they complete.
enum Type : uint8_t {
  kConnect = 1,     // str structure, str connector   -> u8 type, u32 entries, u32 returned;
                    // cache: then u32 vector bits, u32 max_data, u32 secondary (the NIC
                    // address of the CF that granted the vector's second half; 0: none)
  kDisconnect = 2,  // (nothing)                      -> (nothing)
  kLock = 3,     // u8 mode, str resource, str record -> u8 outcome, u32 n, n x (str connector, u8
                 // mode, u8 retained)
  kUnlock = 4,   // str resource                   -> (nothing)
  kRecover = 5,  // str failed connector           -> u32 n, n x (str resource, u8 mode, str record)
  kListPush = 6,      // u32 list, u8 end, str key, str data -> u32 length after
  kListPop = 7,       // u32 list, u8 end               -> str key, str data
  kListRead = 8,      // u32 list, str key              -> str key, str data
  kListDelete = 9,    // u32 list, str key              -> (nothing)
  kListMove = 10,     // u32 from, u32 to, str key, u8 end -> (nothing)
  kListMonitor = 11,  // u32 list, u8 on              -> u32 length now
  // Cache structures (docs/cf.md). Entry names are 1..kMaxKey bytes.
  kCacheRegister = 12,   // str name, u32 index          -> u8 hit, str data
  kCacheWrite = 13,      // str name, u8 changed, str data -> u32 invalidated
  kCacheUnregister = 14, // u32 index                    -> (nothing)
  kCacheDelete = 15,     // str name                     -> u32 invalidated
  kCacheCastout = 16,    // str name (read for castout)  -> str data
  kCacheUnlock = 17,     // str name (unlock castout)    -> u8 still changed
  kCacheChanged = 18,    // u32 max                      -> u32 n, n x str name
  kCacheStats = 19,      // (nothing)                    -> u32 n, n x u64 counter (CacheStat order)
  // Blocking pop (BLPOP's role; docs/cf.md). Non-empty list: pops now,
  // got = 1 with the entry and the entries left after it. Empty: got = 0,
  // left = 0, and the CF keeps the request (one per connection and list):
  // the next entry pushed or moved to the list is popped for it and sent
  // in a kPopNote with this request's id (no transition note for it).
  kListPopWait = 20,     // u32 list, u8 end             -> u8 got, u32 left[, str key, str data]
  kListPopCancel = 21,   // u32 list: withdraw the waiting pop -> u8 withdrawn (0: none waited)
  kLastRequest = kListPopCancel,
  kGrantNote = 64,    // str resource, u8 mode: a queued lock request is granted
  kCancelNote =
      65,  // str resource, str failed connector: a queued request ended, the lock is retained
  kTransitionNote = 66,  // u32 list: a monitored list went from empty to non-empty
  kPopNote = 67,  // u32 list, str key, str data: the entry popped for a waiting kListPopWait
  // CF-to-CF duplexing (cf/duplex.h), primary -> secondary only, each
  // answered by a reply (status only). Types 100..127 are duplexing's.
  kDuplexHello = 100,    // u32 n, n x str structure: "I am the primary of these"
  kDuplexConnect = 101,  // conn = token; str structure, str connector, str lpar, u32 peer
  kDuplexRequest = 102,  // conn = token; str frame: a connector's request, applied as sent
  kDuplexFail = 103,     // conn = token: that connector failed (its locks become retained)
  // CF -> a connector of a duplexed cache structure (not answered): the
  // secondary's half of its validity vector is gone (duplexing ended);
  // test the primary's half alone from now on (LocalVector::DropSecondary).
  kDuplexEndNote = 104,  // conn = token; (nothing)
  // Primary -> secondary: "duplexing with you ended" (a mirror was not
  // acknowledged in time, but the link is up: the secondary may be
  // stalled); its copy is out of date from now on: never take over.
  kDuplexDrop = 105,  // (nothing)
  // Primary -> secondary: the PopNote handing an entry to a waiting pop of
  // connection `conn` could not be sent (its ring full, its link down): the
  // entry went back to the head of its list here; do the same there.
  kDuplexPutBack = 106,  // conn = token; u32 list, str key, str data
  // Primary -> secondary, after an accepted Hello: the copy of each named
  // structure's whole state (cf/duplex.h "Copy"), before any mirror. Each
  // is answered as a mirror is; a refused one ends the copy (the secondary
  // is not duplexed, the primary stays simplex).
  kDuplexCopyConn = 107,  // str structure, u32 n, n x (u32 token, str connector, str lpar, u32 peer)
  kDuplexCopyLock = 108,  // str structure, u32 n, n x (u8 kind 0 held / 1 queued, str resource,
                          // u32 conn (0: retained), str connector, u64 request_id, u8 mode, str record)
  kDuplexCopyList = 109,  // str structure, u32 n, n x (u8 kind 0 entry / 1 monitor / 2 waiting pop,
                          // u32 list, u32 conn, u64 request_id, str key, str data)
  kDuplexCopyEnd = 110,   // str structure, u32 items (connections and entries sent), u64 requests,
                          // u64 refused, u32 n, n x u64 counter (the structure's counters, in order)
  kReplyBit = 128,
};

// A request type of a cache structure (kCacheRegister..kCacheStats).
inline bool IsCacheRequest(uint8_t type) { return type >= kCacheRegister && type <= kCacheStats; }

// The counters of a kCacheStats reply, in order (more may follow later:
// a reader takes the ones it knows).
enum CacheStat : uint8_t {
  kStatEntries, kStatInUse, kStatChanged, kStatCastoutLocked, kStatRegistrations, kStatReads,
  kStatHits, kStatWrites, kStatInvalidations, kStatCastouts, kStatReclaims, kStatDeletes, kStatCount
};

enum class Outcome : uint8_t { kGranted = 0, kQueued = 1, kRetained = 2 };
enum StructureType : uint8_t { kLockStructure = 1, kListStructure = 2, kCacheStructure = 3 };

// The header. `conn` is the connection token the CF gave in its Connect
// reply (0 in a Connect request); `status` is an absl::StatusCode in a
// reply (0 = OK), and then the body of a non-OK reply is one string, the
// message.
struct Header {
  uint8_t type = 0;
  uint64_t request_id = 0;
  uint32_t conn = 0;
  uint32_t status = 0;
};

class Writer {
 public:
  explicit Writer(const Header& h);
  // Builds the frame in `buf` (cleared first; its capacity is reused, so a
  // caller that keeps one buffer and gets it back with Take() allocates
  // nothing per frame once it is large enough).
  Writer(const Header& h, std::vector<uint8_t>&& buf);
  std::vector<uint8_t> Take() { return std::move(buf_); }
  Writer& U8(uint8_t v);
  Writer& U32(uint32_t v);
  Writer& U64(uint64_t v);
  Writer& Str(absl::string_view s);  // caller keeps s < 64K
  absl::Span<const uint8_t> frame() const { return buf_; }
  size_t size() const { return buf_.size(); }

 private:
  std::vector<uint8_t> buf_;
};

// Parses the header of `frame`: kInvalidArgument if shorter than the
// header, the magic or version is wrong (the message says which, with the
// value found).
absl::StatusOr<Header> ParseHeader(absl::Span<const uint8_t> frame);

// Reads fields after the header; the first failure sticks and names the
// field (`what`) and its offset.
class Reader {
 public:
  explicit Reader(absl::Span<const uint8_t> frame) : f_(frame), pos_(kHeaderSize) {}
  uint8_t U8(const char* what);
  uint32_t U32(const char* what);
  uint64_t U64(const char* what);
  // A string of at most `max` bytes.
  std::string Str(const char* what, size_t max);
  // The same without a copy: a view into the frame (valid while it is).
  absl::string_view View(const char* what, size_t max);
  // OK if every read fitted and nothing is left over.
  absl::Status Done() const;
  const absl::Status& status() const { return st_; }

 private:
  bool Need(const char* what, size_t n);
  absl::Span<const uint8_t> f_;
  size_t pos_;
  absl::Status st_;
};

// kInvalidArgument unless `s` is 1..max of [A-Za-z0-9_.$#@-] (`what` names it).
absl::Status CheckName(const char* what, absl::string_view s, size_t max);

// A reply frame carrying only `status` (non-OK: its message).
std::vector<uint8_t> ErrorReply(const Header& req, const absl::Status& status);

}  // namespace hsi::cf::proto

#endif  // HSI_CF_PROTOCOL_H_
