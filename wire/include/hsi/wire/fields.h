// hsi/wire/fields.h: the pieces every control message is built from.
//
// Limits, the 16-byte header, a status on the wire (WireStatus), fixed
// NUL-padded name and text fields, and the checks that a message's
// Validate() (hsi/wire/messages.h) composes. Nothing variable-length: a
// message is one fixed struct.
//
// Thread safety: plain functions and values.
#ifndef HSI_WIRE_FIELDS_H_
#define HSI_WIRE_FIELDS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hsi::wire {

inline constexpr uint32_t kProtoMagic = 0x48534931;  // "HSI1"
// 2: NIC doorbells are split (pipes), LinkClose, LinkDown reason 6.
// 3: ClaimReply carries the client's event page; an error reply carries no fds.
// 4: the message table (hsi/wire/messages.h); ListLinksReply is gone
//    (ListStatsReply carries every counter it had); NicInterfaceRequest and
//    the interface columns of WireNic; CTC and ISFC messages (70-82).
// 5: hsi-run's messages (40-52), three fds at most, kListStreams/kListFallbacks.
inline constexpr uint16_t kProtoVersion = 5;
inline constexpr size_t kNameLen = 32;     // LPAR names, incl. the NUL
inline constexpr size_t kTextLen = 448;    // status messages, incl. the NUL
inline constexpr size_t kMaxFds = 3;       // most fds any message carries
inline constexpr size_t kMaxMessage = 4096;
inline constexpr uint32_t kMaxStatusCode = 16;  // absl::StatusCode::kUnauthenticated

// Who may send a message.
enum class Direction { kToDaemon, kToClient };

// What a message is; it decides the message's request id and fds.
enum class Kind {
  kRequest,  // to hsid, a non-zero request id, answered by one reply
  kReply,    // to a client, repeats its request's id; its body starts with
             // a WireStatus, and a refusal (status not OK) carries no fds
  kEvent,    // from hsid unasked, request id 0; each one bumps the
             // client's event page (hsi/wire/messages.h)
  kNotice,   // to hsid, never answered; any request id
  kError,    // hsid's answer to a message it could not decode; any request id
};

struct MsgHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t request_id;
  uint32_t body_len;
};
static_assert(sizeof(MsgHeader) == 16);
static_assert(std::is_standard_layout_v<MsgHeader>);

// An absl::StatusCode and its message.
struct WireStatus {
  uint32_t code;
  uint32_t reserved;
  char message[kTextLen];
};
static_assert(sizeof(WireStatus) == 456);

// Status <-> WireStatus. ToWire replaces control characters by spaces and
// truncates the message to fit.
WireStatus ToWire(const absl::Status& status);
absl::Status FromWire(const WireStatus& wire);

// Name fields: NUL-terminated inside the array, printable [A-Za-z0-9_.*-],
// zero padding after the NUL. `allow_empty` for the admin-only claim.
absl::Status ValidateName(const char (&name)[kNameLen], const char* field, bool allow_empty);
// Reads a validated name field.
std::string NameOf(const char (&name)[kNameLen]);
// Stores `name` (truncated to kNameLen-1) NUL-padded.
void SetName(char (&dst)[kNameLen], absl::string_view name);

// The field checks Validate() composes; each error is kInvalidArgument
// naming the field.
absl::Status CheckText(const char* text, size_t size, const char* field);  // NUL-terminated, no control chars, zero padding
// A network device or namespace name: CheckText, and no '/', no white
// space; `allow_empty` for a namespace ("" = the owner's own).
absl::Status CheckDeviceName(const char* text, size_t size, const char* field, bool allow_empty);
absl::Status CheckStatus(const WireStatus& s, const char* field);
absl::Status CheckStatusCode(uint32_t code, const char* field, bool allow_ok);
absl::Status CheckBool(uint32_t v, const char* field);
absl::Status CheckZero(uint32_t v, const char* field);
absl::Status CheckFlags(uint32_t v, uint32_t known, const char* field);
absl::Status CheckChpid(uint32_t v);
absl::Status CheckPrefix(uint32_t v);
absl::Status CheckCount(uint32_t count, size_t limit, const char* field);

// Returns the first error of `checks`, OK when all pass.
template <typename... S>
absl::Status FirstError(S&&... checks) {
  absl::Status out;
  ((out.ok() ? (void)(out = std::forward<S>(checks)) : (void)0), ...);
  return out;
}

}  // namespace hsi::wire

#endif  // HSI_WIRE_FIELDS_H_
