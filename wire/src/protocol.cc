// hsi/wire/protocol.h: framing, decoding and the longer Validate()s.
#include "hsi/wire/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "hsi/ctc.h"
#include "hsi/ring.h"

namespace hsi::wire {
namespace {

absl::Status Bad(absl::string_view type, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("protocol: ", type, ": ", what));
}

// The body's own checks: its struct's Validate(), chosen by the table.
absl::Status ValidateBody(MsgType type, absl::Span<const uint8_t> body) {
  switch (type) {
#define HSI_WIRE_VALIDATE(name, number, dir, kind, fds, size) \
  case MsgType::k##name: {                                   \
    name b;                                                  \
    std::memcpy(&b, body.data(), sizeof(b));                 \
    return b.Validate();                                     \
  }
    HSI_WIRE_MESSAGES(HSI_WIRE_VALIDATE)
#undef HSI_WIRE_VALIDATE
  }
  return absl::InvalidArgumentError("unknown type");
}

}  // namespace

absl::Status CheckOverflow(uint32_t v) {
  if (v > kOverflowDrop) {
    return absl::InvalidArgumentError(absl::StrCat("overflow policy ", v, " is not block(0) or drop(1)"));
  }
  return absl::OkStatus();
}

absl::Status CheckDownReason(uint32_t v) {
  if (v < kDownPeerGone || v > kDownPeerClosed) return absl::InvalidArgumentError(absl::StrCat("reason ", v, " is unknown"));
  return absl::OkStatus();
}

// ------------------------------------------------------------ the longer Validate()s

absl::Status DefineChpidRequest::Validate() const {
  if (absl::Status s = FirstError(CheckChpid(chpid), CheckPrefix(prefix), CheckOverflow(overflow),
                                  CheckCount(lpar_count, kMaxChpidLpars, "lpar_count"));
      !s.ok()) {
    return s;
  }
  if (mfs != 16384 && mfs != 24576 && mfs != 40960 && mfs != 65536) {
    return absl::InvalidArgumentError(absl::StrCat("mfs ", mfs, " is not one of 16K, 24K, 40K, 64K"));
  }
  for (uint32_t i = 0; i < kMaxChpidLpars; ++i) {
    if (i < lpar_count) {
      if (absl::Status s = ValidateName(lpars[i], "lpars[]", false); !s.ok()) return s;
    } else if (std::any_of(std::begin(lpars[i]), std::end(lpars[i]), [](char c) { return c != 0; })) {
      return absl::InvalidArgumentError("unused lpars[] entries must be zero");
    }
  }
  return RingGeometry{capacity, mfs - 8192}.Validate();
}

absl::Status ListRequest::Validate() const {
  if (what != kListChpids && what != kListNics && what != kListStats && what != kListStreams &&
      what != kListFallbacks) {
    return absl::InvalidArgumentError(absl::StrCat("what ", what, " is not a list kind"));
  }
  return absl::OkStatus();
}

namespace {
constexpr const char* kFallbackNames[kRunFallbackCount] = {
    "none",     "no_hsid",    "no_listener", "policy",    "timeout",  "not_local", "bad_socket", "option",
    "filtered", "plain_peer", "internal",    "duplicate", "geometry", "reason13",  "reason14",   "reason15"};
}  // namespace

absl::Status CheckFallbackReason(uint32_t v, bool allow_none) {
  if (v > kRunFallbackGeometry || (v == kRunFallbackNone && !allow_none)) {
    return absl::InvalidArgumentError(absl::StrCat("fallback reason ", v, " is unknown"));
  }
  return absl::OkStatus();
}

const char* FallbackReasonName(uint32_t v) { return v < kRunFallbackCount ? kFallbackNames[v] : "unknown"; }

absl::Status WireSockAddr::Validate(const char* field) const {
  if (family != 2 && family != 10) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": family ", family, " is not AF_INET (2) or AF_INET6 (10)"));
  }
  if (port == 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat(field, ": port ", port, " is not 1..65535"));
  if (family == 2 && std::any_of(addr + 4, addr + 16, [](uint8_t b) { return b != 0; })) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": an IPv4 address must leave bytes 4..15 zero"));
  }
  return absl::OkStatus();
}

absl::Status ListStreamsReply::Validate() const {
  if (absl::Status s = FirstError(CheckStatus(status, "status"), CheckCount(count, kListPage, "count")); !s.ok()) return s;
  for (uint32_t i = 0; i < count; ++i) {
    const WireStream& e = entries[i];
    if (e.state > kStreamHalfClosed) return absl::InvalidArgumentError(absl::StrCat("stream state ", e.state, " is unknown"));
    if (absl::Status s = FirstError(e.connector.Validate("connector"), e.acceptor.Validate("acceptor")); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ListNicsReply::Validate() const {
  if (absl::Status s = FirstError(CheckStatus(status, "status"), CheckCount(count, kListPage, "count")); !s.ok()) {
    return s;
  }
  for (uint32_t i = 0; i < count; ++i) {
    const WireNic& e = entries[i];
    if (e.if_layer != 0 && e.if_layer != 2 && e.if_layer != 3) {
      return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].if_layer ", e.if_layer, " is not 0, 2 or 3"));
    }
    if (absl::Status s = FirstError(ValidateName(e.lpar, "lpar", true), CheckZero(e.reserved, "entries[].reserved"),
                                    CheckDeviceName(e.if_netns, kNameLen, "if_netns", true),
                                    CheckDeviceName(e.if_name, kIfNameLen, "if_name", e.if_layer == 0));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status NicInterfaceRequest::Validate() const {
  if (layer != 2 && layer != 3) return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " is not 2 or 3"));
  return FirstError(CheckDeviceName(netns, kNameLen, "netns", /*allow_empty=*/true),
                    CheckDeviceName(ifname, kIfNameLen, "ifname", /*allow_empty=*/false));
}

absl::Status ListStatsReply::Validate() const {
  if (absl::Status s = FirstError(CheckStatus(status, "status"), CheckCount(count, kListPage, "count")); !s.ok()) {
    return s;
  }
  for (uint32_t i = 0; i < count; ++i) {
    const WireLinkStats& e = entries[i];
    if (e.state > kStateRelinkWait) {
      return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].state ", e.state, " is unknown"));
    }
    if (absl::Status s = FirstError(CheckChpid(e.chpid), CheckZero(e.reserved, "entries[].reserved")); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

namespace {
absl::Status CheckDevice(uint32_t v, const char* field) {
  if (v > 0xFFFF) return absl::InvalidArgumentError(absl::StrCat(field, " ", v, " is not a device number (0..FFFF)"));
  return absl::OkStatus();
}
}  // namespace

namespace {
// An ISFC side's mode and devices: mode 0 or 1, `count` (<= 16, checked
// by the caller) device numbers, zeros past them.
absl::Status CheckIsfcSide(uint32_t mode, uint32_t count, const uint32_t (&devices)[16]) {
  if (mode > 1) return absl::InvalidArgumentError(absl::StrCat("mode ", mode, " is not 0 (convention) or 1 (naive)"));
  for (uint32_t i = 0; i < 16; ++i) {
    if (absl::Status s = CheckDevice(i < count ? devices[i] : 0, "devices[]"); !s.ok()) return s;
    if (i >= count && devices[i] != 0) return absl::InvalidArgumentError("devices[] past count must be 0");
  }
  return absl::OkStatus();
}

// An ISFC command's op, device count (0 for deactivate, else 1..16) and timeout.
absl::Status CheckIsfcCommand(uint32_t op, uint32_t count, uint32_t timeout_ms) {
  if (op < kIsfcActivate || op > kIsfcRemoveDevices) {
    return absl::InvalidArgumentError(absl::StrCat("ISFC command op ", op, " is not 1..4"));
  }
  if (op == kIsfcDeactivate ? count != 0 : (count < 1 || count > 16)) {
    return absl::InvalidArgumentError(absl::StrCat("ISFC command op ", op, " with ", count, " devices"));
  }
  if (timeout_ms < 1 || timeout_ms > kMaxIsfcCommandMs) {
    return absl::InvalidArgumentError(absl::StrCat("ISFC command timeout_ms ", timeout_ms, " is not 1..",
                                                   kMaxIsfcCommandMs));
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status CtcOpenRequest::Validate() const {
  return FirstError(CheckDevice(device, "device"), CheckZero(reserved, "reserved"));
}

absl::Status CtcReattachRequest::Validate() const {
  return FirstError(CheckDevice(device, "device"), CheckZero(reserved, "reserved"));
}

absl::Status CtcOpenReply::Validate() const {
  if (status.code != 0) return CheckStatus(status, "status");
  return FirstError(CheckStatus(status, "status"), CheckDevice(peer_device, "peer_device"),
                    ValidateName(peer_lpar, "peer_lpar", false), hsi::CheckCtcBlockSize(block_size));
}

absl::Status CtcDefineRequest::Validate() const {
  if (absl::Status s = FirstError(ValidateName(lpar_a, "lpar_a", false), ValidateName(lpar_b, "lpar_b", false),
                                  CheckDevice(device_a, "device_a"), CheckDevice(device_b, "device_b"),
                                  CheckZero(reserved, "reserved"));
      !s.ok()) {
    return s;
  }
  if (count < 1 || count > kMaxCtcRange) {
    return absl::InvalidArgumentError(absl::StrCat("count ", count, " is outside 1..", kMaxCtcRange));
  }
  if (device_a + count - 1 > 0xFFFF || device_b + count - 1 > 0xFFFF) {
    return absl::InvalidArgumentError("the device range runs past FFFF");
  }
  if (block_size != 0) return hsi::CheckCtcBlockSize(block_size);
  return absl::OkStatus();
}

absl::Status CtcUndefineRequest::Validate() const {
  return FirstError(ValidateName(lpar, "lpar", false), CheckDevice(device, "device"), CheckZero(reserved, "reserved"));
}

absl::Status CtcListReply::Validate() const {
  if (absl::Status s = FirstError(CheckStatus(status, "status"), CheckCount(count, kListPage, "count")); !s.ok()) {
    return s;
  }
  for (uint32_t i = 0; i < count; ++i) {
    const WireCtc& e = entries[i];
    if (absl::Status s = FirstError(ValidateName(e.lpar_a, "entries[].lpar_a", false),
                                    ValidateName(e.lpar_b, "entries[].lpar_b", false),
                                    CheckDevice(e.device_a, "entries[].device_a"),
                                    CheckDevice(e.device_b, "entries[].device_b"));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status IsfcDeclareRequest::Validate() const {
  if (absl::Status s = FirstError(ValidateName(peer, "peer", false), CheckBool(active, "active"),
                                  CheckZero(reserved, "reserved"), CheckCount(count, 16, "count"));
      !s.ok()) {
    return s;
  }
  if (active == 1 && count == 0) return absl::InvalidArgumentError("an active ISFC link has 1 to 16 devices");
  return CheckIsfcSide(mode, count, devices);
}

absl::Status ValidateCfStructure(const WireCfStructure& s, bool withdraw) {
  if (absl::Status st = CheckText(s.name, kNameLen, "s.name"); !st.ok()) return st;
  if (s.name[0] == 0) return absl::InvalidArgumentError("s.name is empty");
  if (withdraw) return absl::OkStatus();
  if (s.type < kCfLock || s.type > kCfCache) return absl::InvalidArgumentError("s.type is not 1 (lock), 2 (list) or 3 (cache)");
  if (s.duplex_role > kCfSecondary) return absl::InvalidArgumentError("s.duplex_role is not 0, 1 or 2");
  if (absl::Status st = CheckBool(s.partner_up, "s.partner_up"); !st.ok()) return st;
  if (s.duplex_role == kCfSimplex && s.partner_up != 0) return absl::InvalidArgumentError("s.partner_up is set for a simplex structure");
  if (s.in_use > s.size) return absl::InvalidArgumentError("s.in_use exceeds s.size");
  if (s.failed > s.retained) return absl::InvalidArgumentError("s.failed exceeds s.retained");
  if (s.queued > s.requests || s.granted_after_wait > s.queued) {
    return absl::InvalidArgumentError("s.queued exceeds s.requests or s.granted_after_wait exceeds s.queued");
  }
  // Named up to the count shown, empty after it.
  auto names = [](const char (*n)[kNameLen], size_t shown, uint32_t count, const char* field) -> absl::Status {
    for (size_t i = 0; i < shown; ++i) {
      if (absl::Status st = CheckText(n[i], kNameLen, field); !st.ok()) return st;
      if ((n[i][0] != 0) != (i < count)) {
        return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "] is ", i < count ? "empty" : "set past the count"));
      }
    }
    return absl::OkStatus();
  };
  return FirstError(names(s.connector, kCfConnectorsShown, s.connectors, "s.connector"),
                    names(s.connector_lpar, kCfConnectorsShown, s.connectors, "s.connector_lpar"),
                    names(s.failed_name, kCfFailedShown, s.failed, "s.failed_name"));
}

absl::Status CfDeclareRequest::Validate() const {
  if (absl::Status st = FirstError(CheckBool(active, "active"), CheckZero(reserved, "reserved")); !st.ok()) return st;
  return ValidateCfStructure(s, active == 0);
}

absl::Status CfListReply::Validate() const {
  if (absl::Status st = FirstError(CheckStatus(status, "status"), CheckCount(count, kCfListPage, "count")); !st.ok()) {
    return st;
  }
  for (uint32_t i = 0; i < count; ++i) {
    if (absl::Status st = FirstError(ValidateName(entries[i].lpar, "entries[].lpar", false),
                                     ValidateCfStructure(entries[i].s, false));
        !st.ok()) {
      return st;
    }
  }
  return absl::OkStatus();
}

absl::Status IsfcCommandRequest::Validate() const {
  if (absl::Status s = FirstError(ValidateName(lpar, "lpar", false), ValidateName(peer, "peer", false),
                                  CheckIsfcCommand(op, count, timeout_ms));
      !s.ok()) {
    return s;
  }
  return CheckIsfcSide(mode, count, devices);
}

absl::Status IsfcCommand::Validate() const {
  if (absl::Status s = FirstError(ValidateName(peer, "peer", false), CheckZero(reserved, "reserved"),
                                  CheckIsfcCommand(op, count, timeout_ms));
      !s.ok()) {
    return s;
  }
  return CheckIsfcSide(mode, count, devices);
}

absl::Status IsfcListReply::Validate() const {
  if (absl::Status s = FirstError(CheckStatus(status, "status"), CheckCount(count, kListPage, "count")); !s.ok()) {
    return s;
  }
  for (uint32_t i = 0; i < count; ++i) {
    const WireIsfc& e = entries[i];
    if (absl::Status s = FirstError(ValidateName(e.lpar, "entries[].lpar", false),
                                    ValidateName(e.peer, "entries[].peer", false),
                                    CheckCount(e.count, 16, "entries[].count"));
        !s.ok()) {
      return s;
    }
    if (e.mode > 1) return absl::InvalidArgumentError("entries[].mode is not 0 or 1");
    for (uint32_t k = 0; k < e.count; ++k) {
      if (absl::Status s = CheckDevice(e.devices[k], "entries[].devices[]"); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status SniffLink::Validate() const {
  if (absl::Status s = FirstError(CheckChpid(chpid), CheckFlags(flags, kSniffNew, "flags")); !s.ok()) return s;
  if (address_a == address_b) return absl::InvalidArgumentError("address_a equals address_b");
  return RingGeometry{capacity, mtu}.Validate();
}

// ------------------------------------------------------------ framing

std::optional<TypeInfo> InfoOf(uint16_t type) {
  switch (static_cast<MsgType>(type)) {
#define HSI_WIRE_INFO(name, number, dir, kind, fds, size) \
  case MsgType::k##name:                                 \
    return TypeInfo{Direction::dir, Kind::kind, sizeof(name), (fds), #name};
    HSI_WIRE_MESSAGES(HSI_WIRE_INFO)
#undef HSI_WIRE_INFO
  }
  return std::nullopt;
}

const char* MsgTypeName(uint16_t type) {
  std::optional<TypeInfo> info = InfoOf(type);
  return info ? info->name : "unknown";
}

absl::StatusOr<Message> Decode(absl::Span<const uint8_t> bytes,
                               std::vector<UniqueFd> fds, Direction direction) {
  // `fds` is owned here: every return path closes them unless moved out.
  MsgHeader h;
  if (bytes.size() < sizeof(h)) {
    return Bad("message", absl::StrCat("truncated: ", bytes.size(),
                                       " bytes, the header alone is ", sizeof(h)));
  }
  if (bytes.size() > kMaxMessage) {
    return Bad("message", absl::StrCat("oversize: ", bytes.size(), " bytes, limit ", kMaxMessage));
  }
  std::memcpy(&h, bytes.data(), sizeof(h));
  if (h.magic != kProtoMagic) {
    return Bad("message", absl::StrCat("bad magic 0x", absl::Hex(h.magic)));
  }
  if (h.version != kProtoVersion) {
    return Bad("message", absl::StrCat("protocol version ", h.version,
                                       " is not supported (this side speaks ", kProtoVersion, ")"));
  }
  std::optional<TypeInfo> info = InfoOf(h.type);
  if (!info) return Bad("message", absl::StrCat("unknown message type ", h.type));
  if (info->direction != direction) {
    return Bad(info->name, direction == Direction::kToDaemon
                               ? "is a daemon-to-client message"
                               : "is a client-to-daemon message");
  }
  if (h.body_len != bytes.size() - sizeof(h)) {
    return Bad(info->name, absl::StrCat("header says body is ", h.body_len, " bytes, datagram carries ",
                                        bytes.size() - sizeof(h)));
  }
  if (h.body_len != info->body_size) {
    return Bad(info->name, absl::StrCat("body is ", h.body_len, " bytes, expected ", info->body_size));
  }
  // A reply that refuses (its body starts with a non-OK status) carries no fds.
  WireStatus st{};
  const bool refusal = info->kind == Kind::kReply &&
                       (std::memcpy(&st, bytes.data() + sizeof(h), sizeof(st)), st.code != 0);
  if (fds.size() != info->fds && !(refusal && fds.empty())) {
    return Bad(info->name, absl::StrCat("carries ", fds.size(), " fds, expected ", info->fds));
  }
  if (info->kind == Kind::kEvent && h.request_id != 0) return Bad(info->name, "event with a non-zero request id");
  if ((info->kind == Kind::kRequest || info->kind == Kind::kReply) && h.request_id == 0) {
    return Bad(info->name, "request id 0");
  }
  const auto type = static_cast<MsgType>(h.type);
  Message m;
  m.type = type;
  m.request_id = h.request_id;
  m.body.assign(bytes.begin() + sizeof(h), bytes.end());
  if (absl::Status s = ValidateBody(type, m.body); !s.ok()) return Bad(info->name, s.message());
  m.fds = std::move(fds);
  return m;
}

absl::StatusOr<bool> TrySend(int fd, const OutMessage& msg) {
  struct iovec iov;
  iov.iov_base = const_cast<uint8_t*>(msg.bytes.data());
  iov.iov_len = msg.bytes.size();
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!msg.fds.empty()) {
    if (msg.fds.size() > kMaxFds) return absl::InternalError("protocol: too many fds to send");
    std::memset(control, 0, sizeof(control));
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * msg.fds.size());
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * msg.fds.size());
    int raw[kMaxFds];
    for (size_t i = 0; i < msg.fds.size(); ++i) raw[i] = msg.fds[i].get();
    std::memcpy(CMSG_DATA(c), raw, sizeof(int) * msg.fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return true;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return false;
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
      return absl::UnavailableError("control socket closed by the other side");
    }
    return absl::ErrnoToStatus(errno, "control socket sendmsg");
  }
}

absl::Status SendUntil(int fd, const OutMessage& msg, absl::Time deadline) {
  for (;;) {
    absl::StatusOr<bool> sent = TrySend(fd, msg);
    if (!sent.ok()) return sent.status();
    if (*sent) return absl::OkStatus();
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("control socket: send buffer full until the deadline");
    }
    struct pollfd p = {fd, POLLOUT, 0};
    int ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1000));
    ::poll(&p, 1, ms);
  }
}

absl::StatusOr<std::optional<Message>> TryReceive(int fd, Direction direction) {
  uint8_t buf[kMaxMessage + 1];
  struct iovec iov = {buf, sizeof(buf)};
  // Room for more fds than any message carries, so that we see (and close)
  // extra fds instead of losing them to MSG_CTRUNC silently.
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  ssize_t n;
  bool reset = false;
  for (;;) {
    n = ::recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN && reset) return absl::UnavailableError("closed");
    if (errno == EAGAIN) return std::optional<Message>();
    // A peer that closed with our message unread leaves ECONNRESET pending,
    // and the kernel reports it before the messages still queued for us (it
    // clears it as it reports it): read on, so that the last thing the peer
    // said (hsid's refusal, say) is not lost to the reset.
    if (errno == ECONNRESET && !reset) {
      reset = true;
      continue;
    }
    if (errno == ECONNRESET || errno == ENOTCONN) return absl::UnavailableError("closed");
    return absl::ErrnoToStatus(errno, "control socket recvmsg");
  }
  std::vector<UniqueFd> fds;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int raw;
        std::memcpy(&raw, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.emplace_back(raw);
      }
    }
  }
  if (n == 0 && fds.empty()) return absl::UnavailableError("closed");
  if (mh.msg_flags & MSG_CTRUNC) {
    // The kernel stops installing fds at the first failure (EMFILE/ENFILE):
    // fewer fds than the control buffer holds means we are out of fds, not
    // that the peer attached too many.
    constexpr size_t kRoom = (sizeof(control) - CMSG_LEN(0)) / sizeof(int);
    if (fds.size() < kRoom) {
      MsgHeader h{};
      if (n >= static_cast<ssize_t>(sizeof(h))) std::memcpy(&h, buf, sizeof(h));
      return absl::ResourceExhaustedError(absl::StrCat(
          "control socket: this process is out of file descriptors (RLIMIT_NOFILE): the fds that came with a ",
          MsgTypeName(h.type), " message could not be received"));
    }
    return Bad("message", "control data truncated (too many fds attached)");
  }
  if (mh.msg_flags & MSG_TRUNC) {
    return Bad("message", absl::StrCat("oversize: more than ", kMaxMessage, " bytes"));
  }
  absl::StatusOr<Message> m =
      Decode(absl::Span<const uint8_t>(buf, static_cast<size_t>(n)), std::move(fds), direction);
  if (!m.ok()) return m.status();
  return std::optional<Message>(std::move(*m));
}

std::optional<absl::Status> QueuedRefusal(int fd) {
  for (int i = 0; i < 64; ++i) {
    absl::StatusOr<std::optional<Message>> m = TryReceive(fd, Direction::kToClient);
    if (!m.ok() || !m->has_value()) return std::nullopt;
    if ((*m)->type == MsgType::kErrorReply) return FromWire((*m)->As<ErrorReply>().status);
  }
  return std::nullopt;
}

}  // namespace hsi::wire
