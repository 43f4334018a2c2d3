// internal/protocol.h: the control protocol between libhsi and hsid.
//
// One message per SOCK_SEQPACKET datagram: a fixed 16-byte header and one
// fixed, standard-layout body per message type, with the fds (SCM_RIGHTS)
// that type carries. Nothing variable-length: names and texts are fixed
// NUL-padded char arrays. Decode() validates every header field, the exact
// body size, every body field (enums, names, flags, reserved words are
// zero) and the exact number of fds for the type; fds that came with a
// rejected message are closed.
//
// Requests carry a non-zero request id that the reply repeats; unsolicited
// events from hsid carry request id 0. Every reply body starts with a
// WireStatus (absl status code + message).
//
// Sequence of a link (both ends, symmetric):
//   client -> hsid   LinkRequest{nic, peer address}        -> LinkReply{link id}
//   hsid -> each end LinkOffer{link id, geometry} + own segment fd
//   each end         maps it with Segment::MapOwner (which seals it)
//   each end -> hsid LinkSealed{link id, code}
//   hsid             checks F_GET_SEALS has F_SEAL_FUTURE_WRITE on both
//   hsid -> each end LinkPeer{link id} + peer segment fd + peer doorbell fd
//   hsid -> each end LinkDown{link id, why} when the peer's client is gone
//   an end -> hsid   LinkClose{link id, code, why} when it gives the link up
//                    (e.g. it cannot map the peer's segment); hsid tears the
//                    link down and sends the other end LinkDown with the why
//
// Thread safety: plain functions and values.
#ifndef HSI_INTERNAL_PROTOCOL_H_
#define HSI_INTERNAL_PROTOCOL_H_

#include <array>
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

namespace hsi::internal {

inline constexpr uint32_t kProtoMagic = 0x48534931;  // "HSI1"
// 2: NIC doorbells are split (pipes), LinkClose, LinkDown reason 6.
// 3: ClaimReply carries the client's event page; an error reply carries no fds.
inline constexpr uint16_t kProtoVersion = 3;
// The event page hsid hands each client with its ClaimReply: a sealed memfd
// the client maps read-only, whose first 64-bit word hsid increments
// (release) after each event (a message with request id 0) it has put on
// that client's control socket. Only hsid writes it (invariant 1).
inline constexpr size_t kEventPageSize = 4096;
inline constexpr size_t kNameLen = 32;     // LPAR names, incl. the NUL
inline constexpr size_t kTextLen = 448;    // status messages, incl. the NUL
inline constexpr size_t kMaxFds = 2;       // most fds any message carries
inline constexpr size_t kMaxMessage = 4096;

enum class MsgType : uint16_t {
  kClaimRequest = 1,
  kClaimReply = 2,
  kAttachRequest = 3,
  kAttachReply = 4,
  kDetachRequest = 5,
  kDetachReply = 6,
  kLinkRequest = 7,
  kLinkReply = 8,
  kLinkOffer = 9,      // event
  kLinkSealed = 10,    // client notice, no reply
  kLinkPeer = 11,      // event
  kLinkDown = 12,      // event
  kRelinkRequest = 13,
  kNicStateEvent = 14,      // event
  kPeersRequest = 15,
  kPeersReply = 16,
  kLinkClose = 17,     // client notice, no reply
  kDefineChpidRequest = 20,
  kUndefineChpidRequest = 21,
  kSetNicRequest = 22,
  kAdminReply = 23,
  kListRequest = 24,
  kListChpidsReply = 25,
  kListNicsReply = 26,
  kListLinksReply = 27,
  kErrorReply = 30,    // answer to a message that could not be decoded
  // Network Traffic Analyzer (hsi-dump) and statistics (issue 4).
  kSniffRequest = 31,
  kSniffReply = 32,
  kSniffLink = 33,      // event
  kSniffLinkGone = 34,  // event
  kListStatsReply = 35,
};

// Who may send a message type.
enum class Direction { kToDaemon, kToClient };

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

// ------------------------------------------------------------------ bodies

enum : uint32_t { kClaimReclaim = 1 };  // re-registering after an hsid restart

struct ClaimRequest {
  static constexpr MsgType kType = MsgType::kClaimRequest;
  static constexpr size_t kFds = 0;
  char lpar[kNameLen];  // empty: an admin-only connection, no LPAR
  uint32_t flags;
  uint32_t reserved;
};
struct ClaimReply {
  static constexpr MsgType kType = MsgType::kClaimReply;
  static constexpr size_t kFds = 1;  // the event page (kEventPageSize)
  WireStatus status;
  uint32_t uid;
  uint32_t is_admin;
};

enum : uint32_t { kOverflowBlock = 0, kOverflowDrop = 1 };

struct AttachRequest {  // + the ring end of the NIC's split doorbell (hsi/doorbell.h)
  static constexpr MsgType kType = MsgType::kAttachRequest;
  static constexpr size_t kFds = 1;
  uint32_t chpid;    // 0..255
  uint32_t address;  // requested IPv4 address (host order), 0: assign
};
struct AttachReply {
  static constexpr MsgType kType = MsgType::kAttachReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
  uint32_t nic_id;
  uint32_t address;
  uint32_t subnet;   // network address
  uint32_t prefix;   // 0..32
  uint64_t capacity; // ring capacity bytes
  uint32_t mtu;
  uint32_t mfs;
  uint32_t overflow;  // kOverflowBlock / kOverflowDrop
  uint32_t reserved;
};

struct DetachRequest {
  static constexpr MsgType kType = MsgType::kDetachRequest;
  static constexpr size_t kFds = 0;
  uint32_t nic_id;
  uint32_t reserved;
};
struct DetachReply {
  static constexpr MsgType kType = MsgType::kDetachReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
};

struct LinkRequest {
  static constexpr MsgType kType = MsgType::kLinkRequest;
  static constexpr size_t kFds = 0;
  uint32_t nic_id;
  uint32_t peer_address;
};
struct LinkReply {
  static constexpr MsgType kType = MsgType::kLinkReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
  uint32_t link_id;
  uint32_t reserved;
};

struct LinkOffer {  // + this end's own segment (to MapOwner)
  static constexpr MsgType kType = MsgType::kLinkOffer;
  static constexpr size_t kFds = 1;
  uint32_t link_id;
  uint32_t nic_id;
  uint32_t peer_address;
  uint32_t mtu;
  uint64_t capacity;
  char peer_lpar[kNameLen];
};

struct LinkSealed {
  static constexpr MsgType kType = MsgType::kLinkSealed;
  static constexpr size_t kFds = 0;
  uint32_t link_id;
  uint32_t nic_id;  // which end (both ends may be NICs of one client)
  uint32_t code;    // absl::StatusCode of MapOwner; 0 = sealed
  uint32_t reserved;
};

struct LinkPeer {  // + the peer's segment (MapPeer) + the peer NIC's doorbell
  static constexpr MsgType kType = MsgType::kLinkPeer;
  static constexpr size_t kFds = 2;
  uint32_t link_id;
  uint32_t nic_id;  // which end
};

enum : uint32_t {
  kDownPeerGone = 1,     // the peer's client disconnected (or died)
  kDownPeerDetached = 2, // the peer NIC was detached
  kDownSetupFailed = 3,  // sealing/handshake failed or timed out
  kDownNicDown = 4,      // an admin set a NIC of the link down
  kDownPeerLost = 5,     // the peer did not come back after an hsid restart
  kDownPeerClosed = 6,   // the peer gave the link up (LinkClose)
};

struct LinkDown {
  static constexpr MsgType kType = MsgType::kLinkDown;
  static constexpr size_t kFds = 0;
  uint32_t link_id;
  uint32_t nic_id;  // which end
  uint32_t reason;  // kDown*
  uint32_t reserved;
  char text[kTextLen];
};

struct LinkClose {
  static constexpr MsgType kType = MsgType::kLinkClose;
  static constexpr size_t kFds = 0;
  uint32_t link_id;
  uint32_t nic_id;  // which end gives up
  uint32_t code;    // absl::StatusCode of why, not 0
  uint32_t reserved;
  char text[kTextLen];
};

struct RelinkRequest {  // + this end's own (sealed) segment
  static constexpr MsgType kType = MsgType::kRelinkRequest;
  static constexpr size_t kFds = 1;
  uint32_t nic_id;
  uint32_t peer_address;
};

struct NicStateEvent {
  static constexpr MsgType kType = MsgType::kNicStateEvent;
  static constexpr size_t kFds = 0;
  uint32_t nic_id;
  uint32_t up;  // 0 or 1
};

inline constexpr size_t kPeersPerPage = 64;
struct PeersRequest {
  static constexpr MsgType kType = MsgType::kPeersRequest;
  static constexpr size_t kFds = 0;
  uint32_t nic_id;
  uint32_t cursor;
};
struct PeersReply {
  static constexpr MsgType kType = MsgType::kPeersReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
  uint32_t count;
  uint32_t next_cursor;  // 0: no more
  uint32_t addresses[kPeersPerPage];
};

// ---- admin

inline constexpr size_t kMaxChpidLpars = 8;
struct DefineChpidRequest {
  static constexpr MsgType kType = MsgType::kDefineChpidRequest;
  static constexpr size_t kFds = 0;
  uint32_t chpid;
  uint32_t mfs;       // 16K/24K/40K/64K in bytes
  uint32_t subnet;
  uint32_t prefix;
  uint64_t capacity;
  uint32_t overflow;
  uint32_t lpar_count;  // names used in `lpars`; "*" = any
  char lpars[kMaxChpidLpars][kNameLen];
};
struct UndefineChpidRequest {
  static constexpr MsgType kType = MsgType::kUndefineChpidRequest;
  static constexpr size_t kFds = 0;
  uint32_t chpid;
  uint32_t reserved;
};
struct SetNicRequest {
  static constexpr MsgType kType = MsgType::kSetNicRequest;
  static constexpr size_t kFds = 0;
  uint32_t address;
  uint32_t up;
};
struct AdminReply {
  static constexpr MsgType kType = MsgType::kAdminReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
};

enum : uint32_t { kListChpids = 1, kListNics = 2, kListLinks = 3, kListStats = 4 };
struct ListRequest {
  static constexpr MsgType kType = MsgType::kListRequest;
  static constexpr size_t kFds = 0;
  uint32_t what;  // kList*
  uint32_t cursor;
};

struct WireChpid {
  uint32_t chpid, mfs, mtu, subnet, prefix, overflow;
  uint64_t capacity;
  uint32_t nics, links;
};
struct WireNic {
  uint32_t chpid, address, up, links;
  char lpar[kNameLen];
  uint32_t pid, uid;
};
struct WireDirection {  // one direction of a link, from the sender's segment
  uint64_t frames, bytes, full_events, drops, received;
};
struct WireLink {
  uint32_t link_id, chpid, address_a, address_b, state, reserved;
  WireDirection a_to_b, b_to_a;
};
inline constexpr size_t kListPage = 16;
struct ListChpidsReply {
  static constexpr MsgType kType = MsgType::kListChpidsReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
  uint32_t count, next_cursor;
  WireChpid entries[kListPage];
};
struct ListNicsReply {
  static constexpr MsgType kType = MsgType::kListNicsReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
  uint32_t count, next_cursor;
  WireNic entries[kListPage];
};
struct ListLinksReply {
  static constexpr MsgType kType = MsgType::kListLinksReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
  uint32_t count, next_cursor;
  WireLink entries[kListPage];
};
// Full counters of one direction of a link: the sender's (tx, from the
// sender's segment) and the receiver's (rx, from the receiver's segment).
struct WireDirStats {
  uint64_t frames, bytes, full_events, drops, wakeups_sent;  // sender
  uint64_t rx_frames, rx_bytes, rx_wakeups_sent;             // receiver
};
struct WireLinkStats {
  uint32_t link_id, chpid, address_a, address_b, state, reserved;
  WireDirStats a_to_b, b_to_a;
};
// The answer to ListRequest{what = kListStats}.
struct ListStatsReply {
  static constexpr MsgType kType = MsgType::kListStatsReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
  uint32_t count, next_cursor;
  WireLinkStats entries[kListPage];
};

// ---- Network Traffic Analyzer
//
// Sequence: client -> hsid SniffRequest{chpid} -> SniffReply; then hsid
// sends one SniffLink event per link of the CHPID that is ready (both
// segments sealed F_SEAL_FUTURE_WRITE, checked again before each send),
// now and whenever a new one becomes ready, and SniffLinkGone when hsid
// frees it. Allowed to admins and to uids/gids in the CHPID's `sniffers`.
struct SniffRequest {
  static constexpr MsgType kType = MsgType::kSniffRequest;
  static constexpr size_t kFds = 0;
  uint32_t chpid;
  uint32_t reserved;
};
struct SniffReply {
  static constexpr MsgType kType = MsgType::kSniffReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
  uint32_t chpid, mtu;
  uint32_t subnet, prefix;
  uint64_t capacity;
};
// kSniffNew: the link became ready just now, so the tap can account for it
// from its first frame (else it existed when the tap opened).
enum : uint32_t { kSniffNew = 1 };
struct SniffLink {  // + segment of end a + segment of end b (both sealed)
  static constexpr MsgType kType = MsgType::kSniffLink;
  static constexpr size_t kFds = 2;
  uint32_t link_id, chpid;
  uint32_t address_a, address_b;
  uint32_t mtu, flags;  // kSniff*
  uint64_t capacity;
};
struct SniffLinkGone {
  static constexpr MsgType kType = MsgType::kSniffLinkGone;
  static constexpr size_t kFds = 0;
  uint32_t link_id;
  uint32_t reserved;
};

struct ErrorReply {
  static constexpr MsgType kType = MsgType::kErrorReply;
  static constexpr size_t kFds = 0;
  WireStatus status;
};

#define HSI_WIRE_CHECK(T, size)                         \
  static_assert(std::is_standard_layout_v<T>);          \
  static_assert(std::is_trivially_copyable_v<T>);       \
  static_assert(sizeof(T) == (size));                   \
  static_assert(sizeof(MsgHeader) + sizeof(T) <= kMaxMessage)
HSI_WIRE_CHECK(ClaimRequest, 40);
HSI_WIRE_CHECK(ClaimReply, 464);
HSI_WIRE_CHECK(AttachRequest, 8);
HSI_WIRE_CHECK(AttachReply, 496);
HSI_WIRE_CHECK(DetachRequest, 8);
HSI_WIRE_CHECK(DetachReply, 456);
HSI_WIRE_CHECK(LinkRequest, 8);
HSI_WIRE_CHECK(LinkReply, 464);
HSI_WIRE_CHECK(LinkOffer, 56);
HSI_WIRE_CHECK(LinkSealed, 16);
HSI_WIRE_CHECK(LinkPeer, 8);
HSI_WIRE_CHECK(LinkDown, 464);
HSI_WIRE_CHECK(LinkClose, 464);
HSI_WIRE_CHECK(RelinkRequest, 8);
HSI_WIRE_CHECK(NicStateEvent, 8);
HSI_WIRE_CHECK(PeersRequest, 8);
HSI_WIRE_CHECK(PeersReply, 720);
HSI_WIRE_CHECK(DefineChpidRequest, 288);
HSI_WIRE_CHECK(UndefineChpidRequest, 8);
HSI_WIRE_CHECK(SetNicRequest, 8);
HSI_WIRE_CHECK(AdminReply, 456);
HSI_WIRE_CHECK(ListRequest, 8);
HSI_WIRE_CHECK(WireChpid, 40);
HSI_WIRE_CHECK(WireNic, 56);
HSI_WIRE_CHECK(WireLink, 104);
HSI_WIRE_CHECK(ListChpidsReply, 464 + 16 * 40);
HSI_WIRE_CHECK(ListNicsReply, 464 + 16 * 56);
HSI_WIRE_CHECK(ListLinksReply, 464 + 16 * 104);
HSI_WIRE_CHECK(ErrorReply, 456);
HSI_WIRE_CHECK(WireDirStats, 64);
HSI_WIRE_CHECK(WireLinkStats, 152);
HSI_WIRE_CHECK(ListStatsReply, 464 + 16 * 152);
HSI_WIRE_CHECK(SniffRequest, 8);
HSI_WIRE_CHECK(SniffReply, 480);
HSI_WIRE_CHECK(SniffLink, 32);
HSI_WIRE_CHECK(SniffLinkGone, 8);
#undef HSI_WIRE_CHECK

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
    if (type != T::kType || body.size() != sizeof(T)) __builtin_trap();
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
  MsgHeader h{kProtoMagic, kProtoVersion, static_cast<uint16_t>(T::kType),
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

// The direction a type travels in, its body size and its fd count; nullopt
// for an unknown type.
struct TypeInfo {
  Direction direction;
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

// Name fields: NUL-terminated inside the array, printable [A-Za-z0-9_.*-],
// zero padding after the NUL. `allow_empty` for the admin-only claim.
absl::Status ValidateName(const char (&name)[kNameLen], const char* field,
                          bool allow_empty);
// Reads a validated name field.
std::string NameOf(const char (&name)[kNameLen]);
// Stores `name` (truncated to kNameLen-1) NUL-padded.
void SetName(char (&dst)[kNameLen], absl::string_view name);

// Status <-> WireStatus.
WireStatus ToWire(const absl::Status& status);
absl::Status FromWire(const WireStatus& wire);

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

}  // namespace hsi::internal

#endif  // HSI_INTERNAL_PROTOCOL_H_
