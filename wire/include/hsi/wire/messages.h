// hsi/wire/messages.h: every message of the control protocol between libhsi
// and hsid, in one table.
//
// A message is one SOCK_SEQPACKET datagram: the 16-byte header
// (hsi/wire/fields.h) and one fixed, standard-layout body, with the fds
// (SCM_RIGHTS) its type carries. HSI_WIRE_MESSAGES below is the one place
// that gives each message its type number, direction, kind, fd count and
// body size; each body struct follows with its Validate(), the checks of
// its own fields. Decode() (hsi/wire/protocol.h) checks the rest from the
// table: direction, size, fds, request id.
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
// A link in one round trip (issue 15): hsid keeps, for each NIC, spare ring
// segments that it made and that the NIC's owner has already mapped and
// sealed, so that setting up a link waits for no peer:
//   hsid -> owner    SpareOffer{nic, spare id, geometry} + a new segment
//                    (at attach, before the AttachReply; after a spare is
//                    used; never more than kSparesPerNic unused)
//   owner            maps it with Segment::MapOwner (which seals it)
//   owner -> hsid    SpareSealed{nic, spare id, code}; hsid checks F_GET_SEALS
//                    has F_SEAL_FUTURE_WRITE before it counts the spare
// A LinkRequest between two NICs that both hold a sealed spare of the
// CHPID's geometry is answered at once, and the link is ready:
//   hsid -> each end LinkSpareUp{link id, own spare id, peer} + peer segment
//                    + peer doorbell: the requester's, then its LinkReply;
//                    the peer's (and both NICs' new spares) after hsid has
//                    let the requester have the CPU
// Otherwise (a NIC without a sealed spare: its owner declined them, or
// has not sealed the next one yet) the link takes the offer/seal path above.
//
// The event page: with its ClaimReply hsid hands each client a sealed memfd
// of kEventPageSize bytes that the client maps read-only; hsid increments
// (release) its first 64-bit word after each event it has put on that
// client's socket. Only hsid writes it (invariant 1).
//
// Thread safety: plain values.
#ifndef HSI_WIRE_MESSAGES_H_
#define HSI_WIRE_MESSAGES_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "hsi/ring.h"
#include "hsi/wire/fields.h"

namespace hsi::wire {

inline constexpr size_t kEventPageSize = 4096;

//  name                  type direction  kind      fds body size
#define HSI_WIRE_MESSAGES(X)                                                \
  X(ClaimRequest,           1, kToDaemon, kRequest, 0, 40)                  \
  X(ClaimReply,             2, kToClient, kReply,   1, 464)  /* event page */ \
  X(AttachRequest,          3, kToDaemon, kRequest, 1, 8)    /* doorbell */ \
  X(AttachReply,            4, kToClient, kReply,   0, 496)                 \
  X(DetachRequest,          5, kToDaemon, kRequest, 0, 8)                   \
  X(DetachReply,            6, kToClient, kReply,   0, 456)                 \
  X(LinkRequest,            7, kToDaemon, kRequest, 0, 8)                   \
  X(LinkReply,              8, kToClient, kReply,   0, 464)                 \
  X(LinkOffer,              9, kToClient, kEvent,   1, 56)   /* own segment */ \
  X(LinkSealed,            10, kToDaemon, kNotice,  0, 16)                  \
  X(LinkPeer,              11, kToClient, kEvent,   2, 8)    /* peer segment, doorbell */ \
  X(LinkDown,              12, kToClient, kEvent,   0, 464)                 \
  X(RelinkRequest,         13, kToDaemon, kRequest, 1, 8)    /* own segment */ \
  X(NicStateEvent,         14, kToClient, kEvent,   0, 8)                   \
  X(PeersRequest,          15, kToDaemon, kRequest, 0, 8)                   \
  X(PeersReply,            16, kToClient, kReply,   0, 720)                 \
  X(LinkClose,             17, kToDaemon, kNotice,  0, 464)                 \
  X(DefineChpidRequest,    20, kToDaemon, kRequest, 0, 288)                 \
  X(UndefineChpidRequest,  21, kToDaemon, kRequest, 0, 8)                   \
  X(SetNicRequest,         22, kToDaemon, kRequest, 0, 8)                   \
  X(AdminReply,            23, kToClient, kReply,   0, 456)                 \
  X(ListRequest,           24, kToDaemon, kRequest, 0, 8)                   \
  X(ListChpidsReply,       25, kToClient, kReply,   0, 464 + 16 * 40)       \
  X(ListNicsReply,         26, kToClient, kReply,   0, 464 + 16 * 112)      \
  X(ErrorReply,            30, kToClient, kError,   0, 456)                 \
  X(SniffRequest,          31, kToDaemon, kRequest, 0, 8)                   \
  X(SniffReply,            32, kToClient, kReply,   0, 480)                 \
  X(SniffLink,             33, kToClient, kEvent,   2, 32)   /* segments a, b */ \
  X(SniffLinkGone,         34, kToClient, kEvent,   0, 8)                   \
  X(ListStatsReply,        35, kToClient, kReply,   0, 464 + 16 * 152)     \
  X(NicInterfaceRequest,   36, kToDaemon, kRequest, 0, 56)                  \
  X(NicInterfaceReply,     37, kToClient, kReply,   0, 456)                 \
  X(OwnerRequest,          38, kToDaemon, kRequest, 0, 8)                   \
  X(OwnerReply,            39, kToClient, kReply,   0, 456 + 32)            \
  /* hsi-run (issue 17): 40-59 */                                          \
  X(RunListenRequest,      40, kToDaemon, kRequest, 1, 16)   /* listening socket */ \
  X(RunListenReply,        41, kToClient, kReply,   0, 464)                 \
  X(RunProposeRequest,     42, kToDaemon, kRequest, 3, 40)   /* bound socket, ring, ctl */ \
  X(RunProposeReply,       43, kToClient, kReply,   0, 472)                 \
  X(RunClaimRequest,       44, kToDaemon, kRequest, 3, 8)    /* accepted socket, ring, ctl */ \
  X(RunClaimReply,         45, kToClient, kReply,   2, 472)  /* connector's ring, ctl */ \
  X(RunAwaitRequest,       46, kToDaemon, kRequest, 1, 16)   /* connected socket */ \
  X(RunAwaitReply,         47, kToClient, kReply,   2, 464)  /* acceptor's ring, ctl */ \
  X(RunCloseNotice,        48, kToDaemon, kNotice,  0, 16)                  \
  X(RunFallbackNotice,     49, kToDaemon, kNotice,  0, 8)                   \
  X(RunUnlistenNotice,     50, kToDaemon, kNotice,  0, 8)                   \
  X(ListStreamsReply,      51, kToClient, kReply,   0, 464 + 16 * 112)      \
  X(ListFallbacksReply,    52, kToClient, kReply,   0, 456 + 8 * 16) \
  X(RunReattachRequest,    53, kToDaemon, kRequest, 3, 24)   /* socket, new ring, ctl */ \
  X(RunReattachReply,      54, kToClient, kReply,   2, 464)  /* peer's ring, ctl */ \
  X(RunFetchRequest,       55, kToDaemon, kRequest, 1, 24)   /* socket */ \
  X(RunFetchReply,         56, kToClient, kReply,   2, 464)  /* peer's new ring, ctl */ \
  /* CTC devices (issue 19): 70-89 */                                        \
  X(CtcOpenRequest,        70, kToDaemon, kRequest, 0, 8)                   \
  X(CtcOpenReply,          71, kToClient, kReply,   1, 504)  /* own half */  \
  X(CtcSealed,             72, kToDaemon, kNotice,  0, 16)                  \
  X(CtcPeer,               73, kToClient, kEvent,   1, 8)    /* peer half */ \
  X(CtcDown,               74, kToClient, kEvent,   0, 464)                 \
  X(CtcClose,              75, kToDaemon, kNotice,  0, 8)                   \
  X(CtcDefineRequest,      76, kToDaemon, kRequest, 0, 88)                  \
  X(CtcUndefineRequest,    77, kToDaemon, kRequest, 0, 40)                  \
  X(CtcListRequest,        78, kToDaemon, kRequest, 0, 8)                   \
  X(CtcListReply,          79, kToClient, kReply,   0, 464 + 16 * 216)     \
  X(IsfcDeclareRequest,    80, kToDaemon, kRequest, 0, 112)  /* -> AdminReply */ \
  X(IsfcListRequest,       81, kToDaemon, kRequest, 0, 8)                   \
  X(IsfcListReply,         82, kToClient, kReply,   0, 464 + 16 * 136)    \
  X(CtcReattachRequest,    83, kToDaemon, kRequest, 1, 8)    /* own half */ \
  X(CtcReattachReply,      84, kToClient, kReply,   0, 464)                 \
  X(IsfcCommandRequest,    85, kToDaemon, kRequest, 0, 144)  /* -> AdminReply */ \
  X(IsfcCommand,           86, kToClient, kEvent,   0, 120)                 \
  X(IsfcCommandResult,     87, kToDaemon, kNotice,  0, 456)                 \
  X(IsfcCommandsAccept,    88, kToDaemon, kNotice,  0, 8)                   \
  X(MemGrantRequest,       90, kToDaemon, kRequest, 1, 16)   /* sealed memfd */ \
  X(MemGrantReply,         91, kToClient, kReply,   0, 456)                 \
  X(MemTakeRequest,        92, kToDaemon, kRequest, 0, 16)                  \
  X(MemTakeReply,          93, kToClient, kReply,   1, 464)  /* the granted memfd */ \
  X(CfDeclareRequest,      94, kToDaemon, kRequest, 0, 744)  /* -> AdminReply */ \
  X(CfListRequest,         95, kToDaemon, kRequest, 0, 8)                   \
  X(CfListReply,           96, kToClient, kReply,   0, 464 + 4 * 768)     \
  /* link set-up from spare segments (issue 15): 100-109 */                \
  X(SpareOffer,           100, kToClient, kEvent,   1, 24)   /* spare own segment */ \
  X(SpareSealed,          101, kToDaemon, kNotice,  0, 16)                  \
  X(LinkSpareUp,          102, kToClient, kEvent,   2, 64)   /* peer segment, doorbell */
// Retired numbers, never to be reused: 27 (ListLinksReply, protocol 3).

enum class MsgType : uint16_t {
#define HSI_WIRE_ENUM(name, number, dir, kind, fds, size) k##name = number,
  HSI_WIRE_MESSAGES(HSI_WIRE_ENUM)
#undef HSI_WIRE_ENUM
};

// ---------------------------------------------------------------- session

enum : uint32_t { kClaimReclaim = 1 };  // re-registering after an hsid restart

struct ClaimRequest {
  char lpar[kNameLen];  // empty: an admin-only connection, no LPAR
  uint32_t flags;       // kClaim*
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(ValidateName(lpar, "lpar", /*allow_empty=*/true), CheckFlags(flags, kClaimReclaim, "flags"),
                      CheckZero(reserved, "reserved"));
  }
};
struct ClaimReply {
  WireStatus status;
  uint32_t uid;
  uint32_t is_admin;
  absl::Status Validate() const { return FirstError(CheckStatus(status, "status"), CheckBool(is_admin, "is_admin")); }
};

enum : uint32_t { kOverflowBlock = 0, kOverflowDrop = 1 };
absl::Status CheckOverflow(uint32_t v);

struct AttachRequest {  // + the ring end of the NIC's split doorbell (hsi/doorbell.h)
  uint32_t chpid;    // 0..255
  uint32_t address;  // requested IPv4 address (host order), 0: assign
  absl::Status Validate() const { return CheckChpid(chpid); }
};
struct AttachReply {
  WireStatus status;
  uint32_t nic_id;
  uint32_t address;
  uint32_t subnet;    // network address
  uint32_t prefix;    // 0..32
  uint64_t capacity;  // ring capacity bytes
  uint32_t mtu;
  uint32_t mfs;
  uint32_t overflow;  // kOverflow*
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(CheckStatus(status, "status"), CheckPrefix(prefix), CheckOverflow(overflow),
                      CheckZero(reserved, "reserved"),
                      status.code == 0 ? RingGeometry{capacity, mtu}.Validate() : absl::OkStatus());
  }
};

struct DetachRequest {
  uint32_t nic_id;
  uint32_t reserved;
  absl::Status Validate() const { return CheckZero(reserved, "reserved"); }
};
struct DetachReply {
  WireStatus status;
  absl::Status Validate() const { return CheckStatus(status, "status"); }
};

struct PeersRequest {
  uint32_t nic_id;
  uint32_t cursor;
  absl::Status Validate() const { return absl::OkStatus(); }
};
inline constexpr size_t kPeersPerPage = 64;
struct PeersReply {
  WireStatus status;
  uint32_t count;
  uint32_t next_cursor;  // 0: no more
  uint32_t addresses[kPeersPerPage];
  absl::Status Validate() const {
    return FirstError(CheckStatus(status, "status"), CheckCount(count, kPeersPerPage, "count"));
  }
};

// ---------------------------------------------------------------- links

struct LinkRequest {
  uint32_t nic_id;
  uint32_t peer_address;
  absl::Status Validate() const { return absl::OkStatus(); }
};
struct LinkReply {
  WireStatus status;
  uint32_t link_id;
  uint32_t reserved;
  absl::Status Validate() const { return FirstError(CheckStatus(status, "status"), CheckZero(reserved, "reserved")); }
};

struct LinkOffer {  // + this end's own segment (to MapOwner)
  uint32_t link_id;
  uint32_t nic_id;
  uint32_t peer_address;
  uint32_t mtu;
  uint64_t capacity;
  char peer_lpar[kNameLen];
  absl::Status Validate() const {
    return FirstError(ValidateName(peer_lpar, "peer_lpar", false), RingGeometry{capacity, mtu}.Validate());
  }
};

struct LinkSealed {
  uint32_t link_id;
  uint32_t nic_id;  // which end (both ends may be NICs of one client)
  uint32_t code;    // absl::StatusCode of MapOwner; 0 = sealed
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(CheckStatusCode(code, "code", /*allow_ok=*/true), CheckZero(reserved, "reserved"));
  }
};

struct LinkPeer {  // + the peer's segment (MapPeer) + the peer NIC's doorbell
  uint32_t link_id;
  uint32_t nic_id;  // which end
  absl::Status Validate() const { return absl::OkStatus(); }
};

enum : uint32_t {
  kDownPeerGone = 1,     // the peer's client disconnected (or died)
  kDownPeerDetached = 2, // the peer NIC was detached
  kDownSetupFailed = 3,  // sealing/handshake failed or timed out
  kDownNicDown = 4,      // an admin set a NIC of the link down
  kDownPeerLost = 5,     // the peer did not come back after an hsid restart
  kDownPeerClosed = 6,   // the peer gave the link up (LinkClose)
};
absl::Status CheckDownReason(uint32_t v);

struct LinkDown {
  uint32_t link_id;
  uint32_t nic_id;  // which end
  uint32_t reason;  // kDown*
  uint32_t reserved;
  char text[kTextLen];
  absl::Status Validate() const {
    return FirstError(CheckDownReason(reason), CheckZero(reserved, "reserved"), CheckText(text, kTextLen, "text"));
  }
};

struct LinkClose {
  uint32_t link_id;
  uint32_t nic_id;  // which end gives up
  uint32_t code;    // absl::StatusCode of why, not 0
  uint32_t reserved;
  char text[kTextLen];
  absl::Status Validate() const {
    return FirstError(CheckStatusCode(code, "code", /*allow_ok=*/false), CheckZero(reserved, "reserved"),
                      CheckText(text, kTextLen, "text"));
  }
};

inline constexpr uint32_t kSparesPerNic = 2;

struct SpareOffer {  // + a new ring segment for this NIC (to MapOwner)
  uint32_t nic_id;
  uint32_t spare_id;  // hsid's, per NIC, never 0
  uint64_t capacity;
  uint32_t mtu;
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(spare_id == 0 ? absl::InvalidArgumentError("spare_id: 0") : absl::OkStatus(),
                      CheckZero(reserved, "reserved"), RingGeometry{capacity, mtu}.Validate());
  }
};

struct SpareSealed {
  uint32_t nic_id;
  uint32_t spare_id;
  uint32_t code;  // absl::StatusCode of MapOwner; 0 = sealed, else the NIC declines spares
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(CheckStatusCode(code, "code", /*allow_ok=*/true), CheckZero(reserved, "reserved"));
  }
};

// The doorbell is an open file of the receiver's own (Doorbell::OpenPrivate
// by hsid, which kept no copy): no one else can make it blocking.
enum : uint32_t { kPeerBellPrivate = 1 };

struct LinkSpareUp {  // + the peer's segment (MapPeer) + the peer NIC's doorbell
  uint32_t link_id;
  uint32_t nic_id;    // which end
  uint32_t spare_id;  // this end's own segment: the spare it sealed
  uint32_t peer_address;
  uint64_t capacity;
  uint32_t mtu;
  uint32_t flags;  // kPeerBellPrivate
  char peer_lpar[kNameLen];
  absl::Status Validate() const {
    return FirstError(CheckFlags(flags, kPeerBellPrivate, "flags"), ValidateName(peer_lpar, "peer_lpar", false),
                      RingGeometry{capacity, mtu}.Validate());
  }
};

struct RelinkRequest {  // + this end's own (sealed) segment
  uint32_t nic_id;
  uint32_t peer_address;
  absl::Status Validate() const { return absl::OkStatus(); }
};

// A NIC's owner says the NIC is a network interface (hsi-ifd's hsi0), so
// that hsictl can show it: the device's name, its network namespace ("" =
// the owner's own) and layer 2 or 3. hsid stores and shows it; it does not
// check it (it is what the owner says, shown as such).
inline constexpr size_t kIfNameLen = 16;  // IFNAMSIZ, incl. the NUL
struct NicInterfaceRequest {
  uint32_t nic_id;
  uint32_t layer;  // 2 or 3
  char netns[kNameLen];
  char ifname[kIfNameLen];
  absl::Status Validate() const;
};
struct NicInterfaceReply {
  WireStatus status;
  absl::Status Validate() const { return CheckStatus(status, "status"); }
};

// Which LPAR owns the NIC with `address` on the asker's NIC's CHPID: what a
// partition may know of the other partitions on its own CHPID (hsi-cf
// learns who a connector is this way, without admin rights). A NIC that is
// not up on that CHPID is kNotFound; the asker must own `nic_id`.
struct OwnerRequest {
  uint32_t nic_id;
  uint32_t address;
  absl::Status Validate() const { return absl::OkStatus(); }
};
struct OwnerReply {
  WireStatus status;
  char lpar[kNameLen];
  absl::Status Validate() const {
    return FirstError(CheckStatus(status, "status"), ValidateName(lpar, "lpar", /*allow_empty=*/true));
  }
};

struct NicStateEvent {
  uint32_t nic_id;
  uint32_t up;  // 0 or 1
  absl::Status Validate() const { return CheckBool(up, "up"); }
};

// ---------------------------------------------------------------- admin

inline constexpr size_t kMaxChpidLpars = 8;
struct DefineChpidRequest {
  uint32_t chpid;
  uint32_t mfs;       // 16K/24K/40K/64K in bytes
  uint32_t subnet;
  uint32_t prefix;
  uint64_t capacity;
  uint32_t overflow;
  uint32_t lpar_count;  // names used in `lpars`; "*" = any
  char lpars[kMaxChpidLpars][kNameLen];
  absl::Status Validate() const;  // in protocol.cc: mfs, names, geometry
};
struct UndefineChpidRequest {
  uint32_t chpid;
  uint32_t reserved;
  absl::Status Validate() const { return FirstError(CheckChpid(chpid), CheckZero(reserved, "reserved")); }
};
struct SetNicRequest {
  uint32_t address;
  uint32_t up;
  absl::Status Validate() const { return CheckBool(up, "up"); }
};
struct AdminReply {
  WireStatus status;
  absl::Status Validate() const { return CheckStatus(status, "status"); }
};

enum : uint32_t { kListChpids = 1, kListNics = 2, kListStats = 4, kListStreams = 5, kListFallbacks = 6 };  // 3 retired (links, protocol 3)
struct ListRequest {
  uint32_t what;  // kList*
  uint32_t cursor;
  absl::Status Validate() const;
};

inline constexpr size_t kListPage = 16;
struct WireChpid {
  uint32_t chpid, mfs, mtu, subnet, prefix, overflow;
  uint64_t capacity;
  uint32_t nics, links;
};
static_assert(sizeof(WireChpid) == 40);
struct ListChpidsReply {
  WireStatus status;
  uint32_t count, next_cursor;
  WireChpid entries[kListPage];
  absl::Status Validate() const { return FirstError(CheckStatus(status, "status"), CheckCount(count, kListPage, "count")); }
};

struct WireNic {
  uint32_t chpid, address, up, links;
  char lpar[kNameLen];
  uint32_t pid, uid;
  uint32_t if_layer;  // 0: not declared an interface; else 2 or 3 (NicInterfaceRequest)
  uint32_t reserved;
  char if_netns[kNameLen];
  char if_name[kIfNameLen];
};
static_assert(sizeof(WireNic) == 112);
struct ListNicsReply {
  WireStatus status;
  uint32_t count, next_cursor;
  WireNic entries[kListPage];
  absl::Status Validate() const;
};

// A link's state as hsid reports it (hsi::LinkState, hsi/admin.h).
enum : uint32_t { kStateSetup = 0, kStateReady = 1, kStateRelinkWait = 2 };
// Full counters of one direction of a link: the sender's (tx, from the
// sender's segment) and the receiver's (rx, from the receiver's segment).
struct WireDirStats {
  uint64_t frames, bytes, full_events, drops, wakeups_sent;  // sender
  uint64_t rx_frames, rx_bytes, rx_wakeups_sent;             // receiver
};
static_assert(sizeof(WireDirStats) == 64);
struct WireLinkStats {
  uint32_t link_id, chpid, address_a, address_b, state, reserved;  // state: kState*
  WireDirStats a_to_b, b_to_a;
};
static_assert(sizeof(WireLinkStats) == 152);
// The answer to ListRequest{what = kListStats}.
struct ListStatsReply {
  WireStatus status;
  uint32_t count, next_cursor;
  WireLinkStats entries[kListPage];
  absl::Status Validate() const;
};

// ---------------------------------------------------------------- Network Traffic Analyzer
//
// Sequence: client -> hsid SniffRequest{chpid} -> SniffReply; then hsid
// sends one SniffLink event per link of the CHPID that is ready (both
// segments sealed F_SEAL_FUTURE_WRITE, checked again before each send),
// now and whenever a new one becomes ready, and SniffLinkGone when hsid
// frees it. Allowed to admins and to uids/gids in the CHPID's `sniffers`.
struct SniffRequest {
  uint32_t chpid;
  uint32_t reserved;
  absl::Status Validate() const { return FirstError(CheckChpid(chpid), CheckZero(reserved, "reserved")); }
};
struct SniffReply {
  WireStatus status;
  uint32_t chpid, mtu;
  uint32_t subnet, prefix;
  uint64_t capacity;
  absl::Status Validate() const {
    return FirstError(CheckStatus(status, "status"), CheckChpid(chpid), CheckPrefix(prefix),
                      status.code == 0 ? RingGeometry{capacity, mtu}.Validate() : absl::OkStatus());
  }
};
// kSniffNew: the link became ready just now, so the tap can account for it
// from its first frame (else it existed when the tap opened).
enum : uint32_t { kSniffNew = 1 };
struct SniffLink {  // + segment of end a + segment of end b (both sealed)
  uint32_t link_id, chpid;
  uint32_t address_a, address_b;
  uint32_t mtu, flags;  // kSniff*
  uint64_t capacity;
  absl::Status Validate() const;
};
struct SniffLinkGone {
  uint32_t link_id;
  uint32_t reserved;
  absl::Status Validate() const { return CheckZero(reserved, "reserved"); }
};

// ---------------------------------------------------------------- hsi-run (transparent TCP)
//
// docs/hsi-run.md has the whole design. The sequence of one connection:
//   listener  -> hsid  RunListenRequest{id} + its listening TCP socket: hsid
//                      checks SO_ACCEPTCONN and notes the address
//                      (getsockname) and namespace (SO_NETNS_COOKIE)
//   connector -> hsid  RunProposeRequest{destination, geometry} + its bound,
//                      not yet connected socket + its own sealed ring segment
//                      and control page, BEFORE connect(): hsid finds an
//                      hsi-run listener there and the policy allows -> stream
//                      id; a refusal names a kRunFallback* (the program stays
//                      on TCP, nothing was sent in-band)
//   acceptor  -> hsid  RunClaimRequest + the accepted socket + its own sealed
//                      ring and page: hsid matches the socket's 4-tuple and
//                      namespace to a proposal and answers with the
//                      connector's ring and page (kNotFound: a plain client)
//   connector -> hsid  RunAwaitRequest{stream, wait_ms} + the connected socket
//                      (same SO_COOKIE, peer = destination) before its first
//                      byte: answered with the acceptor's ring and page once
//                      claimed, or kDeadlineExceeded after wait_ms, after which
//                      hsid answers a late claim kNotFound (both ends on TCP)
//   after an exec (docs/hsi-run.md section 5), the new image of one end:
//   execer    -> hsid  RunReattachRequest{stream, side, peer_gen} + the socket
//                      (same SO_COOKIE as that side's) + fresh sealed ring and
//                      page seeded with the carried positions: hsid checks
//                      them as the first ones, numbers them (generation) and
//                      answers with the peer's current ring and page
//   peer      -> hsid  RunFetchRequest{stream, side, have_gen} + its socket,
//                      when the execer's old page says "moving": the
//                      execer's newer segments, or kUnavailable (not yet)
// The proof of holding a connection is the socket itself, by SCM_RIGHTS:
// hsid reads its tuple, namespace and cookie and keeps no reference to it.
enum : uint32_t {
  kRunFallbackNone = 0,
  kRunFallbackNoHsid = 1,      // hsid not reachable (client-side)
  kRunFallbackNoListener = 2,  // no hsi-run listener at the destination in this namespace
  kRunFallbackPolicy = 3,      // hsid's [run] policy does not pair these uids
  kRunFallbackTimeout = 4,     // the acceptor did not claim within the connector's wait
  kRunFallbackNotLocal = 5,    // destination is not an address of this host (client-side)
  kRunFallbackBadSocket = 6,   // a socket handed in is not what the request says
  kRunFallbackOption = 7,      // an option hsi-run cannot carry, e.g. TCP_FASTOPEN (client-side)
  kRunFallbackFiltered = 8,    // excluded by the port/address filters (client-side)
  kRunFallbackPlainPeer = 9,   // an accepted connection whose client is not under hsi-run
  kRunFallbackInternal = 10,   // a resource failed: memfd, mmap, a segment (either side)
  kRunFallbackDuplicate = 11,  // a proposal for that 4-tuple exists already
  kRunFallbackGeometry = 12,   // the two ends want different ring sizes
  kRunFallbackCount = 16,
};
absl::Status CheckFallbackReason(uint32_t v, bool allow_none);
const char* FallbackReasonName(uint32_t v);  // "no_listener", ...

// An IPv4 or IPv6 socket address: family 2 (AF_INET) or 10 (AF_INET6),
// port in host order, address bytes in network order (IPv4: the first 4,
// the rest zero).
struct WireSockAddr {
  uint32_t family;
  uint32_t port;
  uint8_t addr[16];
  absl::Status Validate(const char* field) const;
};
static_assert(sizeof(WireSockAddr) == 24);

struct RunListenRequest {  // + the listening socket
  uint64_t listener_id;  // chosen by the client, unique within its connection
  uint64_t reserved;
  absl::Status Validate() const { return CheckZero(static_cast<uint32_t>(reserved | (reserved >> 32)), "reserved"); }
};
struct RunListenReply {
  WireStatus status;
  uint64_t listener_id;
  absl::Status Validate() const { return CheckStatus(status, "status"); }
};
struct RunUnlistenNotice {
  uint64_t listener_id;
  absl::Status Validate() const { return absl::OkStatus(); }
};

struct RunProposeRequest {  // + bound socket + own sealed ring + own sealed control page
  WireSockAddr destination;
  uint64_t capacity;  // the ring geometry of both directions
  uint32_t mtu;
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(destination.Validate("destination"), CheckZero(reserved, "reserved"), RingGeometry{capacity, mtu}.Validate());
  }
};
struct RunProposeReply {
  WireStatus status;
  uint64_t stream_id;
  uint32_t reason;  // kRunFallback* when status is not OK
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(CheckStatus(status, "status"), CheckFallbackReason(reason, status.code == 0), CheckZero(reserved, "reserved"));
  }
};

struct RunClaimRequest {  // + accepted socket + own sealed ring + own sealed control page
  uint64_t reserved;
  absl::Status Validate() const { return CheckZero(static_cast<uint32_t>(reserved | (reserved >> 32)), "reserved"); }
};
struct RunClaimReply {  // + the connector's ring segment + control page (only when OK)
  WireStatus status;
  uint64_t stream_id;
  uint32_t reason;  // kRunFallback* when not OK (kRunFallbackPlainPeer: no proposal)
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(CheckStatus(status, "status"), CheckFallbackReason(reason, status.code == 0), CheckZero(reserved, "reserved"));
  }
};

inline constexpr uint32_t kMaxAwaitMs = 60000;
// kRunAwaitPoll: only look: if not claimed yet, answer kUnavailable and
// keep the proposal open (the client asks again; it holds no hsid call
// open meanwhile, so its other threads can claim and propose).
enum : uint32_t { kRunAwaitPoll = 1 };
struct RunAwaitRequest {  // + the connected socket
  uint64_t stream_id;
  uint32_t wait_ms;  // at most kMaxAwaitMs; 0: answer now
  uint32_t flags;    // kRunAwait*
  absl::Status Validate() const {
    return FirstError(wait_ms > kMaxAwaitMs ? absl::InvalidArgumentError("wait_ms exceeds 60000") : absl::OkStatus(),
                      CheckFlags(flags, kRunAwaitPoll, "flags"));
  }
};
struct RunAwaitReply {  // + the acceptor's ring segment + control page (only when OK)
  WireStatus status;
  uint32_t reason;  // kRunFallback* when not OK
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(CheckStatus(status, "status"), CheckFallbackReason(reason, status.code == 0), CheckZero(reserved, "reserved"));
  }
};

struct RunCloseNotice {  // the last descriptor of one end is closed
  uint64_t stream_id;
  uint32_t side;  // 0 connector, 1 acceptor
  uint32_t reserved;
  absl::Status Validate() const { return FirstError(CheckBool(side, "side"), CheckZero(reserved, "reserved")); }
};
struct RunReattachRequest {  // + the socket + the new sealed ring + control page
  uint64_t stream_id;
  uint32_t side;       // 0 connector, 1 acceptor: the side re-attaching
  uint32_t reserved;
  uint64_t peer_gen;   // generation of the peer's segments the old image used
  absl::Status Validate() const { return FirstError(CheckBool(side, "side"), CheckZero(reserved, "reserved")); }
};
struct RunReattachReply {  // + the peer's ring segment + control page (only when OK)
  WireStatus status;
  uint64_t gen;  // the new segments' generation
  absl::Status Validate() const { return CheckStatus(status, "status"); }
};
struct RunFetchRequest {  // + the socket
  uint64_t stream_id;
  uint32_t side;  // the asking side
  uint32_t reserved;
  uint64_t have_gen;  // generation of the peer's segments the asker has
  absl::Status Validate() const { return FirstError(CheckBool(side, "side"), CheckZero(reserved, "reserved")); }
};
struct RunFetchReply {  // + the peer's newer ring segment + control page (only when OK)
  WireStatus status;
  uint64_t gen;  // their generation
  absl::Status Validate() const { return CheckStatus(status, "status"); }
};
struct RunFallbackNotice {  // a fallback the client decided itself
  uint32_t reason;
  uint32_t reserved;
  absl::Status Validate() const { return FirstError(CheckFallbackReason(reason, false), CheckZero(reserved, "reserved")); }
};

// An accelerated connection, as ListRequest{kListStreams} reports it.
enum : uint32_t { kStreamProposed = 0, kStreamPaired = 1, kStreamHalfClosed = 2 };
struct WireStream {
  uint64_t stream_id;
  uint32_t state;  // kStream*
  uint32_t reserved;
  WireSockAddr connector, acceptor;
  uint32_t connector_pid, acceptor_pid, connector_uid, acceptor_uid;
  uint64_t bytes_c_to_a, bytes_a_to_c;  // as each sender's segment counts them
  uint64_t age_ms;                      // since the proposal
  uint64_t reserved2;
};
static_assert(sizeof(WireStream) == 112);
struct ListStreamsReply {
  WireStatus status;
  uint32_t count, next_cursor;
  WireStream entries[kListPage];
  absl::Status Validate() const;
};
struct ListFallbacksReply {
  WireStatus status;
  uint64_t counts[kRunFallbackCount];  // indexed by kRunFallback*
  absl::Status Validate() const { return CheckStatus(status, "status"); }
};

struct ErrorReply {
  WireStatus status;
  absl::Status Validate() const { return CheckStatus(status, "status"); }
};

// ---------------------------------------------------------------- CTC devices (issue 19)
//
// A CTC connection joins device `device_a` of LPAR a and `device_b` of
// LPAR b (hsid config [[ctc]], or CtcDefineRequest by an admin). An end
// opens its device (hsi/ctc_host.h):
//   client -> hsid   CtcOpenRequest{device}  -> CtcOpenReply{conn, geometry} + own half
//   the end          maps it with Segment::MapOwner (which seals it)
//   the end -> hsid  CtcSealed{conn, device, code}
//   hsid             checks F_SEAL_FUTURE_WRITE; once both ends sealed:
//   hsid -> each end CtcPeer{conn, device} + the other end's half (read-only)
//   hsid -> an end   CtcDown{conn, device, why} when the other end closed
//                    (CtcClose) or its client is gone; the connection's
//                    memory is freed and both ends must open it again.
inline constexpr uint32_t kMaxCtcRange = 256;  // devices one CtcDefineRequest defines
struct CtcOpenRequest {
  uint32_t device;  // this LPAR's device number, 0..0xFFFF
  uint32_t reserved;
  absl::Status Validate() const;
};
struct CtcOpenReply {  // + this end's own half-channel
  WireStatus status;
  uint32_t conn_id;
  uint32_t block_size;
  uint32_t recovery_us;
  uint32_t peer_device;
  char peer_lpar[kNameLen];
  absl::Status Validate() const;
};
struct CtcSealed {
  uint32_t conn_id;
  uint32_t device;
  uint32_t code;  // absl::StatusCode of MapOwner; 0 = sealed
  uint32_t reserved;
  absl::Status Validate() const {
    return FirstError(CheckStatusCode(code, "code", /*allow_ok=*/true), CheckZero(reserved, "reserved"));
  }
};
struct CtcPeer {  // + the other end's half-channel, sealed
  uint32_t conn_id;
  uint32_t device;
  absl::Status Validate() const { return absl::OkStatus(); }
};
struct CtcDown {
  uint32_t conn_id;
  uint32_t device;
  uint32_t reason;  // kDown* (the link reasons)
  uint32_t reserved;
  char text[kTextLen];
  absl::Status Validate() const {
    return FirstError(CheckDownReason(reason), CheckZero(reserved, "reserved"), CheckText(text, kTextLen, "text"));
  }
};
struct CtcClose {
  uint32_t conn_id;
  uint32_t device;
  absl::Status Validate() const { return absl::OkStatus(); }
};
// After an hsid restart an end that is still open re-registers it
// (invariant 4: hsid rebuilds its tables from its clients), handing in its
// own half (sealed; hsid checks the seal and the size):
//   client -> hsid   CtcReattachRequest{device} + own half -> CtcReattachReply{conn}
// Once both ends did, the connection is ready again (no CtcPeer: each end
// still maps the other's half). An end that opens afresh while the other
// is re-registered takes the old connection down (CtcDown to the other).
struct CtcReattachRequest {  // + this end's own half-channel, sealed
  uint32_t device;  // this LPAR's device number, 0..0xFFFF
  uint32_t reserved;
  absl::Status Validate() const;
};
struct CtcReattachReply {
  WireStatus status;
  uint32_t conn_id;
  uint32_t reserved;
  absl::Status Validate() const {
    if (status.code != 0) return CheckStatus(status, "status");
    return FirstError(CheckStatus(status, "status"), CheckZero(reserved, "reserved"));
  }
};
// Defines `count` connections: device_a+i of lpar_a to device_b+i of lpar_b.
struct CtcDefineRequest {
  char lpar_a[kNameLen];
  char lpar_b[kNameLen];
  uint32_t device_a, device_b;
  uint32_t count;        // 1..kMaxCtcRange
  uint32_t block_size;   // 0: the default
  uint32_t recovery_us;  // collision recovery delay
  uint32_t reserved;
  absl::Status Validate() const;
};
// Undefines the connection with device `device` of LPAR `lpar` (not open).
struct CtcUndefineRequest {
  char lpar[kNameLen];
  uint32_t device;
  uint32_t reserved;
  absl::Status Validate() const;
};
struct CtcListRequest {
  uint32_t cursor;
  uint32_t reserved;
  absl::Status Validate() const { return CheckZero(reserved, "reserved"); }
};
// One connection: its definition, each end's state (kCtcEnd*) and each
// end's counters (hsi::CtcCounters, as that end published them).
enum : uint32_t { kCtcEndClosed = 0, kCtcEndOpening = 1, kCtcEndReady = 2 };
struct WireCtc {
  char lpar_a[kNameLen];
  char lpar_b[kNameLen];
  uint32_t device_a, device_b, block_size, recovery_us, state_a, state_b;
  uint64_t counters_a[8], counters_b[8];
};
static_assert(sizeof(WireCtc) == 216);
struct CtcListReply {
  WireStatus status;
  uint32_t count, next_cursor;
  WireCtc entries[kListPage];
  absl::Status Validate() const;
};

// ISFC logical links live in the LPARs' processes; each side declares its
// side of a link to hsid (IsfcDeclareRequest, answered with AdminReply) so
// that admins can list them (IsfcListRequest; hsictl isfc): the peer system,
// the mode and this side's device numbers, each a CTC device defined for
// this LPAR that leads to `peer`. active = 0 withdraws the declaration.
struct IsfcDeclareRequest {
  char peer[kNameLen];
  uint32_t mode;   // hsi::IsfcMode: 0 convention, 1 naive
  uint32_t count;  // devices used, 0..16 (0 only with active = 0)
  uint32_t devices[16];
  uint32_t active;  // 1 declare / update, 0 withdraw
  uint32_t reserved;
  absl::Status Validate() const;
};
// Coupling facility views (issue 20; hsictl cfs). An hsi-cf process
// declares each of its structures' state to hsid (CfDeclareRequest,
// answered with AdminReply) when it starts and then at most once a second
// while something changed; hsid keeps the last declaration per structure of
// that client (at most kMaxCfStructures), drops them when the client goes,
// and lists them to admins (CfListRequest) as the CF's claim: hsid checks
// only that they are well formed. active = 0 withdraws one structure.
// Names are CF names (1..16 of [A-Za-z0-9_.$#@-]) checked as text here.
inline constexpr size_t kCfConnectorsShown = 8, kCfFailedShown = 4, kCfListPage = 4, kMaxCfStructures = 64;
enum : uint32_t { kCfLock = 1, kCfList = 2, kCfCache = 3 };
enum : uint32_t { kCfSimplex = 0, kCfPrimary = 1, kCfSecondary = 2 };  // duplex role
// Their names (hsi::CfStructureView), indexed by the values above.
inline constexpr const char* kCfTypeNames[] = {"", "lock", "list", "cache"};
inline constexpr const char* kCfRoleNames[] = {"simplex", "primary", "secondary"};
struct WireCfStructure {
  char name[kNameLen];
  uint32_t type;         // kCfLock / kCfList / kCfCache
  uint32_t duplex_role;  // kCfSimplex / kCfPrimary / kCfSecondary
  uint32_t partner_up;   // 1: the duplex partner's link is up (0 when simplex)
  uint32_t size;         // entries it may hold
  uint32_t in_use;       // entries in use, <= size
  uint32_t connectors;   // live connections; the first kCfConnectorsShown named below
  uint32_t retained;     // retained locks (lock structures)
  uint32_t failed;       // failed connectors holding them; the first kCfFailedShown named
  char connector[kCfConnectorsShown][kNameLen];       // "" past min(connectors, 8)
  char connector_lpar[kCfConnectorsShown][kNameLen];  // each connector's LPAR
  char failed_name[kCfFailedShown][kNameLen];         // "" past min(failed, 4)
  uint64_t requests;            // requests served
  uint64_t queued;              // requests that had to wait (contention)
  uint64_t granted_after_wait;  // of those, granted later
  uint64_t refused;             // refused (retained locks, full, bad input)
};
static_assert(sizeof(WireCfStructure) == 736);
struct CfDeclareRequest {
  uint32_t active;  // 1 declare / update, 0 withdraw `s.name`
  uint32_t reserved;
  WireCfStructure s;
  absl::Status Validate() const;
};
struct CfListRequest {
  uint32_t cursor;  // 0 first
  uint32_t reserved;
  absl::Status Validate() const { return CheckZero(reserved, "reserved"); }
};
struct WireCfEntry {
  char lpar[kNameLen];  // the CF's LPAR (hsid's own knowledge)
  WireCfStructure s;    // the CF's claim
};
struct CfListReply {
  WireStatus status;
  uint32_t count, next_cursor;
  WireCfEntry entries[kCfListPage];
  absl::Status Validate() const;
};
// Validates one structure summary (CfDeclareRequest, CfListReply).
absl::Status ValidateCfStructure(const WireCfStructure& s, bool withdraw);

// z/VM's ACTIVATE/DEACTIVATE ISLINK from outside (hsictl): an admin asks
// hsid, hsid asks the process of that LPAR that takes ISFC commands (it
// said so with IsfcCommandsAccept{1}), and that process's answer goes back:
//   admin -> hsid   IsfcCommandRequest{lpar, peer, op, devices}
//   hsid -> LPAR    IsfcCommand{command_id, op, peer, devices}
//   LPAR -> hsid    IsfcCommandResult{command_id, code, text}
//   hsid -> admin   AdminReply{that status}
// kFailedPrecondition at once if no process of the LPAR takes them;
// kUnavailable if it goes before it answers.
enum : uint32_t { kIsfcActivate = 1, kIsfcDeactivate = 2, kIsfcAddDevices = 3, kIsfcRemoveDevices = 4 };
inline constexpr uint32_t kMaxIsfcCommandMs = 600000;
struct IsfcCommandRequest {
  char lpar[kNameLen];  // the LPAR whose side it is
  char peer[kNameLen];
  uint32_t op;          // kIsfc*
  uint32_t mode;        // hsi::IsfcMode (activate)
  uint32_t count;       // devices: 1..16, 0 for deactivate
  uint32_t timeout_ms;  // how long the LPAR may take (opening waits for the other side): 1..kMaxIsfcCommandMs
  uint32_t devices[16];
  absl::Status Validate() const;
};
struct IsfcCommand {
  uint32_t command_id;
  uint32_t op;
  char peer[kNameLen];
  uint32_t mode;
  uint32_t count;
  uint32_t timeout_ms;
  uint32_t reserved;
  uint32_t devices[16];
  absl::Status Validate() const;
};
struct IsfcCommandResult {
  uint32_t command_id;
  uint32_t code;  // absl::StatusCode; 0 = done
  char text[kTextLen];
  absl::Status Validate() const {
    return FirstError(CheckStatusCode(code, "code", /*allow_ok=*/true), CheckText(text, kTextLen, "text"));
  }
};
struct IsfcCommandsAccept {
  uint32_t accept;  // 1: this connection takes IsfcCommand, 0: no more
  uint32_t reserved;
  absl::Status Validate() const { return FirstError(CheckBool(accept, "accept"), CheckZero(reserved, "reserved")); }
};
struct IsfcListRequest {
  uint32_t cursor;
  uint32_t reserved;
  absl::Status Validate() const { return CheckZero(reserved, "reserved"); }
};
struct WireIsfc {
  char lpar[kNameLen];
  char peer[kNameLen];
  uint32_t mode, count;
  uint32_t devices[16];
};
static_assert(sizeof(WireIsfc) == 136);
struct IsfcListReply {
  WireStatus status;
  uint32_t count, next_cursor;
  WireIsfc entries[kListPage];
  absl::Status Validate() const;
};

// ---------------------------------------------------------------- memory grants
//
// One NIC's owner hands a memfd it made to the owner of another NIC on the
// same CHPID, through hsid (a coupling facility's local validity vector,
// docs/cf.md): the granter sends it with MemGrantRequest{its NIC, the
// peer's address, a tag}; hsid checks that the granter owns the NIC, that
// the peer NIC exists on that CHPID, and that the fd is a memfd of 1 byte
// .. kMaxGrantBytes sealed F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE
// (invariant 1: only the granter's own earlier mapping can write it), and
// keeps it for the client that owns the peer NIC at that moment. That
// client fetches it with MemTakeRequest{its NIC, the granter's address, the
// tag}; a grant is taken once. Grants of a client that goes are dropped;
// one client has at most kMaxGrantsPerClient untaken grants to another at
// once (a new one beyond that: kResourceExhausted), so a peer that never
// takes its grants blocks none made to others.

inline constexpr uint64_t kMaxGrantBytes = 64ull << 20;
inline constexpr size_t kMaxGrantsPerClient = 256;

struct MemGrantRequest {  // + the memfd
  uint32_t nic_id;        // the granter's NIC
  uint32_t peer_address;  // the NIC whose owner may take it (same CHPID)
  uint64_t tag;           // the granter's name for it (any value)
  absl::Status Validate() const { return absl::OkStatus(); }
};
struct MemGrantReply {
  WireStatus status;
  absl::Status Validate() const { return CheckStatus(status, "status"); }
};
struct MemTakeRequest {
  uint32_t nic_id;        // the taker's NIC (the grant's peer)
  uint32_t from_address;  // the granter's NIC
  uint64_t tag;
  absl::Status Validate() const { return absl::OkStatus(); }
};
struct MemTakeReply {  // + the memfd (hsid checked its seals)
  WireStatus status;
  uint64_t size;  // its size in bytes, as hsid found it
  absl::Status Validate() const {
    if (status.code == 0 && (size == 0 || size > kMaxGrantBytes)) {
      return absl::InvalidArgumentError("MemTakeReply: size out of range");
    }
    return CheckStatus(status, "status");
  }
};

// ---------------------------------------------------------------- the table as types

// MessageTraits<T>: what the table says of body struct T.
template <typename T>
struct MessageTraits;

template <typename T>
constexpr bool StatusComesFirst() {
  if constexpr (requires { T::status; }) {
    return offsetof(T, status) == 0 && std::is_same_v<decltype(T::status), WireStatus>;
  } else {
    return false;
  }
}

#define HSI_WIRE_TRAITS(name, number, dir, kind_, fds, size)                                    \
  template <>                                                                                   \
  struct MessageTraits<name> {                                                                  \
    static constexpr MsgType kType = MsgType::k##name;                                          \
    static constexpr Direction kDirection = Direction::dir;                                     \
    static constexpr Kind kKind = Kind::kind_;                                                  \
    static constexpr size_t kFds = (fds);                                                       \
    static constexpr const char* kName = #name;                                                 \
  };                                                                                            \
  static_assert(std::is_standard_layout_v<name> && std::is_trivially_copyable_v<name>, #name);  \
  static_assert(sizeof(name) == (size), #name ": body size differs from the table");            \
  static_assert(sizeof(MsgHeader) + sizeof(name) <= kMaxMessage, #name ": too big");            \
  static_assert((fds) <= kMaxFds, #name ": too many fds");                                      \
  static_assert((Kind::kind_ != Kind::kReply && Kind::kind_ != Kind::kError) ||                 \
                    StatusComesFirst<name>(),                                                   \
                #name ": a reply's body starts with its WireStatus");
HSI_WIRE_MESSAGES(HSI_WIRE_TRAITS)
#undef HSI_WIRE_TRAITS

template <typename T>
inline constexpr MsgType kTypeOf = MessageTraits<T>::kType;

}  // namespace hsi::wire

#endif  // HSI_WIRE_MESSAGES_H_
