// hsi/wire/protocol.h: framing of the control protocol between libhsi and
// hsid: encode a message, decode and validate one, send and receive one on
// a SOCK_SEQPACKET socket with its fds.
//
// The messages themselves are in hsi/wire/messages.h (one table). Decode()
// validates every header field, the exact body size, the message's own
// fields (its Validate()), the exact number of fds for the type and the
// request id its kind requires; fds that came with a rejected message are
// closed.
//
// This is the hsi::wire target: libhsi and hsid both use it; neither
// includes the other's internals for it.
//
// Thread safety: plain functions and values.
#ifndef HSI_WIRE_PROTOCOL_H_
#define HSI_WIRE_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hsi/fd.h"
#include "hsi/wire/fields.h"
#include "hsi/wire/messages.h"

namespace hsi::wire {

// ------------------------------------------------------------------ values

// A decoded, validated message and the fds that came with it.
struct Message {
  MsgType type{};
  uint32_t request_id = 0;
  std::vector<uint8_t> body;
  std::vector<UniqueFd> fds;

  // The body as T; requires type == T::kType (a bug otherwise).
  template <typename T>
  T As() const {
    static_assert(std::is_trivially_copyable_v<T>);
    T t;
    if (type != kTypeOf<T> || body.size() != sizeof(T)) __builtin_trap();
    std::memcpy(&t, body.data(), sizeof(T));
    return t;
  }
};

// An encoded message ready to send: bytes and fds (owned until sent).
struct OutMessage {
  std::vector<uint8_t> bytes;
  std::vector<UniqueFd> fds;
};

template <typename T>
OutMessage Encode(uint32_t request_id, const T& body,
                  std::vector<UniqueFd> fds = {}) {
  static_assert(std::is_trivially_copyable_v<T>);
  OutMessage out;
  MsgHeader h{kProtoMagic, kProtoVersion, static_cast<uint16_t>(kTypeOf<T>),
              request_id, static_cast<uint32_t>(sizeof(T))};
  out.bytes.resize(sizeof(h) + sizeof(T));
  std::memcpy(out.bytes.data(), &h, sizeof(h));
  std::memcpy(out.bytes.data() + sizeof(h), &body, sizeof(T));
  out.fds = std::move(fds);
  return out;
}

// Zero-initialized body (every reserved word and name padding 0).
template <typename T>
T Zeroed() {
  T t;
  std::memset(&t, 0, sizeof(t));
  return t;
}

// What the table (hsi/wire/messages.h) says of a type number; nullopt for
// an unknown one.
struct TypeInfo {
  Direction direction;
  Kind kind;
  size_t body_size;
  size_t fds;
  const char* name;
};
std::optional<TypeInfo> InfoOf(uint16_t type);
const char* MsgTypeName(uint16_t type);

// Validates `bytes` (one datagram) as a message travelling in `direction`,
// with `fds` received alongside it. On error the fds are closed and the
// status is kInvalidArgument naming the field that is wrong.
absl::StatusOr<Message> Decode(absl::Span<const uint8_t> bytes,
                               std::vector<UniqueFd> fds, Direction direction);

// Sends one message on a SOCK_SEQPACKET socket, non-blocking. Returns true
// when sent, false if the socket buffer is full (EAGAIN), an error status on
// a failure (kUnavailable for EPIPE/ECONNRESET).
absl::StatusOr<bool> TrySend(int fd, const OutMessage& msg);
// Sends, waiting for buffer space until `deadline`.
absl::Status SendUntil(int fd, const OutMessage& msg, absl::Time deadline);

// Receives one datagram, non-blocking, with up to kMaxFds fds
// (MSG_CMSG_CLOEXEC). nullopt if nothing is waiting; kUnavailable "closed"
// at EOF; kInvalidArgument for a malformed message (fds closed).
absl::StatusOr<std::optional<Message>> TryReceive(int fd, Direction direction);

// After a send to hsid failed (it closed the connection): the refusal hsid
// sent before it closed (the status of a queued ErrorReply), if any, so
// that the caller reports why rather than "connection lost".
std::optional<absl::Status> QueuedRefusal(int fd);

}  // namespace hsi::wire

#endif  // HSI_WIRE_PROTOCOL_H_
