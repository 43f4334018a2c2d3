#include "internal/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "hsi/ring.h"
#include "internal/syscall.h"

namespace hsi::internal {
namespace {

constexpr uint32_t kMaxCode = 16;  // absl::StatusCode::kUnauthenticated

absl::Status Bad(absl::string_view type, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("protocol: ", type, ": ", what));
}

// A text field: NUL-terminated inside, no control characters, zero padding.
absl::Status CheckText(const char* text, size_t size, const char* field) {
  size_t n = 0;
  while (n < size && text[n] != '\0') {
    const auto c = static_cast<unsigned char>(text[n]);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " has a control character 0x", absl::Hex(c), " at offset ", n));
    }
    ++n;
  }
  if (n == size) return absl::InvalidArgumentError(absl::StrCat(field, " is not NUL-terminated"));
  for (size_t i = n; i < size; ++i) {
    if (text[i] != '\0') {
      return absl::InvalidArgumentError(absl::StrCat(field, " has bytes after its NUL"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckStatus(const WireStatus& s, const char* field) {
  if (s.code > kMaxCode) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".code ", s.code, " is not a status code"));
  }
  if (s.reserved != 0) return absl::InvalidArgumentError(absl::StrCat(field, ".reserved is not 0"));
  return CheckText(s.message, kTextLen, "status message");
}

absl::Status CheckBool(uint32_t v, const char* field) {
  if (v > 1) return absl::InvalidArgumentError(absl::StrCat(field, " is ", v, ", not 0 or 1"));
  return absl::OkStatus();
}
absl::Status CheckZero(uint32_t v, const char* field) {
  if (v != 0) return absl::InvalidArgumentError(absl::StrCat(field, " is ", v, ", must be 0"));
  return absl::OkStatus();
}
absl::Status CheckChpid(uint32_t v) {
  if (v > 0xff) return absl::InvalidArgumentError(absl::StrCat("chpid ", v, " is not in 00..FF"));
  return absl::OkStatus();
}
absl::Status CheckPrefix(uint32_t v) {
  if (v > 32) return absl::InvalidArgumentError(absl::StrCat("prefix ", v, " exceeds 32"));
  return absl::OkStatus();
}
absl::Status CheckOverflow(uint32_t v) {
  if (v > kOverflowDrop) return absl::InvalidArgumentError(absl::StrCat("overflow policy ", v, " is not block(0) or drop(1)"));
  return absl::OkStatus();
}

#define HSI_CHECK(expr)                          \
  do {                                           \
    if (absl::Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)

absl::Status ValidateBody(const Message& m) {
  switch (m.type) {
    case MsgType::kClaimRequest: {
      auto b = m.As<ClaimRequest>();
      HSI_CHECK(ValidateName(b.lpar, "lpar", /*allow_empty=*/true));
      if (b.flags & ~uint32_t{kClaimReclaim}) {
        return absl::InvalidArgumentError(absl::StrCat("flags 0x", absl::Hex(b.flags), " has unknown bits"));
      }
      return CheckZero(b.reserved, "reserved");
    }
    case MsgType::kClaimReply: {
      auto b = m.As<ClaimReply>();
      HSI_CHECK(CheckStatus(b.status, "status"));
      return CheckBool(b.is_admin, "is_admin");
    }
    case MsgType::kAttachRequest:
      return CheckChpid(m.As<AttachRequest>().chpid);
    case MsgType::kAttachReply: {
      auto b = m.As<AttachReply>();
      HSI_CHECK(CheckStatus(b.status, "status"));
      HSI_CHECK(CheckPrefix(b.prefix));
      HSI_CHECK(CheckOverflow(b.overflow));
      HSI_CHECK(CheckZero(b.reserved, "reserved"));
      if (b.status.code == 0) {
        return RingGeometry{b.capacity, b.mtu}.Validate();
      }
      return absl::OkStatus();
    }
    case MsgType::kDetachRequest:
      return CheckZero(m.As<DetachRequest>().reserved, "reserved");
    case MsgType::kDetachReply:
      return CheckStatus(m.As<DetachReply>().status, "status");
    case MsgType::kLinkRequest:
      return absl::OkStatus();
    case MsgType::kLinkReply: {
      auto b = m.As<LinkReply>();
      HSI_CHECK(CheckStatus(b.status, "status"));
      return CheckZero(b.reserved, "reserved");
    }
    case MsgType::kLinkOffer: {
      auto b = m.As<LinkOffer>();
      HSI_CHECK(ValidateName(b.peer_lpar, "peer_lpar", false));
      return RingGeometry{b.capacity, b.mtu}.Validate();
    }
    case MsgType::kLinkSealed: {
      auto b = m.As<LinkSealed>();
      if (b.code > kMaxCode) return absl::InvalidArgumentError(absl::StrCat("code ", b.code, " is not a status code"));
      return CheckZero(b.reserved, "reserved");
    }
    case MsgType::kLinkPeer:
      return absl::OkStatus();
    case MsgType::kLinkDown: {
      auto b = m.As<LinkDown>();
      if (b.reason < kDownPeerGone || b.reason > kDownPeerClosed) {
        return absl::InvalidArgumentError(absl::StrCat("reason ", b.reason, " is unknown"));
      }
      HSI_CHECK(CheckZero(b.reserved, "reserved"));
      return CheckText(b.text, kTextLen, "text");
    }
    case MsgType::kLinkClose: {
      auto b = m.As<LinkClose>();
      if (b.code == 0 || b.code > kMaxCode) {
        return absl::InvalidArgumentError(absl::StrCat("code ", b.code, " is not an error status code"));
      }
      HSI_CHECK(CheckZero(b.reserved, "reserved"));
      return CheckText(b.text, kTextLen, "text");
    }
    case MsgType::kRelinkRequest:
      return absl::OkStatus();
    case MsgType::kNicStateEvent:
      return CheckBool(m.As<NicStateEvent>().up, "up");
    case MsgType::kPeersRequest:
      return absl::OkStatus();
    case MsgType::kPeersReply: {
      auto b = m.As<PeersReply>();
      HSI_CHECK(CheckStatus(b.status, "status"));
      if (b.count > kPeersPerPage) return absl::InvalidArgumentError(absl::StrCat("count ", b.count, " exceeds ", kPeersPerPage));
      return absl::OkStatus();
    }
    case MsgType::kDefineChpidRequest: {
      auto b = m.As<DefineChpidRequest>();
      HSI_CHECK(CheckChpid(b.chpid));
      if (b.mfs != 16384 && b.mfs != 24576 && b.mfs != 40960 && b.mfs != 65536) {
        return absl::InvalidArgumentError(absl::StrCat("mfs ", b.mfs, " is not one of 16K, 24K, 40K, 64K"));
      }
      HSI_CHECK(CheckPrefix(b.prefix));
      HSI_CHECK(CheckOverflow(b.overflow));
      if (b.lpar_count > kMaxChpidLpars) {
        return absl::InvalidArgumentError(absl::StrCat("lpar_count ", b.lpar_count, " exceeds ", kMaxChpidLpars));
      }
      for (uint32_t i = 0; i < kMaxChpidLpars; ++i) {
        if (i < b.lpar_count) {
          HSI_CHECK(ValidateName(b.lpars[i], "lpars[]", false));
        } else {
          for (char c : b.lpars[i]) {
            if (c != 0) return absl::InvalidArgumentError("unused lpars[] entries must be zero");
          }
        }
      }
      return RingGeometry{b.capacity, b.mfs - 8192}.Validate();
    }
    case MsgType::kUndefineChpidRequest: {
      auto b = m.As<UndefineChpidRequest>();
      HSI_CHECK(CheckChpid(b.chpid));
      return CheckZero(b.reserved, "reserved");
    }
    case MsgType::kSetNicRequest:
      return CheckBool(m.As<SetNicRequest>().up, "up");
    case MsgType::kAdminReply:
      return CheckStatus(m.As<AdminReply>().status, "status");
    case MsgType::kListRequest: {
      auto b = m.As<ListRequest>();
      if (b.what < kListChpids || b.what > kListStats) {
        return absl::InvalidArgumentError(absl::StrCat("what ", b.what, " is not a list kind"));
      }
      return absl::OkStatus();
    }
    case MsgType::kListChpidsReply: {
      auto b = m.As<ListChpidsReply>();
      HSI_CHECK(CheckStatus(b.status, "status"));
      if (b.count > kListPage) return absl::InvalidArgumentError("count exceeds the page");
      return absl::OkStatus();
    }
    case MsgType::kListNicsReply: {
      auto b = m.As<ListNicsReply>();
      HSI_CHECK(CheckStatus(b.status, "status"));
      if (b.count > kListPage) return absl::InvalidArgumentError("count exceeds the page");
      for (uint32_t i = 0; i < b.count; ++i) HSI_CHECK(ValidateName(b.entries[i].lpar, "lpar", true));
      return absl::OkStatus();
    }
    case MsgType::kListLinksReply: {
      auto b = m.As<ListLinksReply>();
      HSI_CHECK(CheckStatus(b.status, "status"));
      if (b.count > kListPage) return absl::InvalidArgumentError("count exceeds the page");
      return absl::OkStatus();
    }
    case MsgType::kErrorReply:
      return CheckStatus(m.As<ErrorReply>().status, "status");
    case MsgType::kListStatsReply: {
      auto b = m.As<ListStatsReply>();
      HSI_CHECK(CheckStatus(b.status, "status"));
      if (b.count > kListPage) return absl::InvalidArgumentError("count exceeds the page");
      for (uint32_t i = 0; i < b.count; ++i) {
        HSI_CHECK(CheckChpid(b.entries[i].chpid));
        if (b.entries[i].state > 2) {
          return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].state ", b.entries[i].state, " is unknown"));
        }
        HSI_CHECK(CheckZero(b.entries[i].reserved, "entries[].reserved"));
      }
      return absl::OkStatus();
    }
    case MsgType::kSniffRequest: {
      auto b = m.As<SniffRequest>();
      HSI_CHECK(CheckChpid(b.chpid));
      return CheckZero(b.reserved, "reserved");
    }
    case MsgType::kSniffReply: {
      auto b = m.As<SniffReply>();
      HSI_CHECK(CheckStatus(b.status, "status"));
      HSI_CHECK(CheckChpid(b.chpid));
      HSI_CHECK(CheckPrefix(b.prefix));
      if (b.status.code == 0) return RingGeometry{b.capacity, b.mtu}.Validate();
      return absl::OkStatus();
    }
    case MsgType::kSniffLink: {
      auto b = m.As<SniffLink>();
      HSI_CHECK(CheckChpid(b.chpid));
      if (b.flags & ~uint32_t{kSniffNew}) {
        return absl::InvalidArgumentError(absl::StrCat("flags 0x", absl::Hex(b.flags), " has unknown bits"));
      }
      if (b.address_a == b.address_b) return absl::InvalidArgumentError("address_a equals address_b");
      return RingGeometry{b.capacity, b.mtu}.Validate();
    }
    case MsgType::kSniffLinkGone:
      return CheckZero(m.As<SniffLinkGone>().reserved, "reserved");
  }
  return absl::InvalidArgumentError("unknown type");
}

bool IsEvent(MsgType t) {
  return t == MsgType::kLinkOffer || t == MsgType::kLinkPeer ||
         t == MsgType::kLinkDown || t == MsgType::kNicStateEvent ||
         t == MsgType::kSniffLink || t == MsgType::kSniffLinkGone;
}

}  // namespace

std::optional<TypeInfo> InfoOf(uint16_t type) {
  constexpr auto D = Direction::kToDaemon;
  constexpr auto C = Direction::kToClient;
#define HSI_INFO(T, dir) \
  case MsgType::k##T:    \
    return TypeInfo{dir, sizeof(T), T::kFds, #T};
  switch (static_cast<MsgType>(type)) {
    HSI_INFO(ClaimRequest, D)
    HSI_INFO(ClaimReply, C)
    HSI_INFO(AttachRequest, D)
    HSI_INFO(AttachReply, C)
    HSI_INFO(DetachRequest, D)
    HSI_INFO(DetachReply, C)
    HSI_INFO(LinkRequest, D)
    HSI_INFO(LinkReply, C)
    HSI_INFO(LinkOffer, C)
    HSI_INFO(LinkSealed, D)
    HSI_INFO(LinkPeer, C)
    HSI_INFO(LinkDown, C)
    HSI_INFO(LinkClose, D)
    HSI_INFO(RelinkRequest, D)
    HSI_INFO(NicStateEvent, C)
    HSI_INFO(PeersRequest, D)
    HSI_INFO(PeersReply, C)
    HSI_INFO(DefineChpidRequest, D)
    HSI_INFO(UndefineChpidRequest, D)
    HSI_INFO(SetNicRequest, D)
    HSI_INFO(AdminReply, C)
    HSI_INFO(ListRequest, D)
    HSI_INFO(ListChpidsReply, C)
    HSI_INFO(ListNicsReply, C)
    HSI_INFO(ListLinksReply, C)
    HSI_INFO(ErrorReply, C)
    HSI_INFO(ListStatsReply, C)
    HSI_INFO(SniffRequest, D)
    HSI_INFO(SniffReply, C)
    HSI_INFO(SniffLink, C)
    HSI_INFO(SniffLinkGone, C)
  }
#undef HSI_INFO
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
  const bool refusal = direction == Direction::kToClient && info->body_size >= sizeof(st) &&
                       (std::memcpy(&st, bytes.data() + sizeof(h), sizeof(st)), st.code != 0) &&
                       static_cast<MsgType>(h.type) != MsgType::kErrorReply && !IsEvent(static_cast<MsgType>(h.type));
  if (fds.size() != info->fds && !(refusal && fds.empty())) {
    return Bad(info->name, absl::StrCat("carries ", fds.size(), " fds, expected ", info->fds));
  }
  const auto type = static_cast<MsgType>(h.type);
  const bool event = IsEvent(type);
  if (event && h.request_id != 0) return Bad(info->name, "event with a non-zero request id");
  if (!event && type != MsgType::kLinkSealed && type != MsgType::kLinkClose && type != MsgType::kErrorReply &&
      h.request_id == 0) {
    return Bad(info->name, "request id 0");
  }
  Message m;
  m.type = type;
  m.request_id = h.request_id;
  m.body.assign(bytes.begin() + sizeof(h), bytes.end());
  if (absl::Status s = ValidateBody(m); !s.ok()) return Bad(info->name, s.message());
  m.fds = std::move(fds);
  return m;
}

absl::Status ValidateName(const char (&name)[kNameLen], const char* field, bool allow_empty) {
  size_t n = 0;
  while (n < kNameLen && name[n] != '\0') {
    const char c = name[n];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == '*';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " has character 0x", absl::Hex(static_cast<unsigned char>(c)),
          " at offset ", n, " (allowed: letters, digits, _ . - *)"));
    }
    ++n;
  }
  if (n == kNameLen) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is not NUL-terminated within ", kNameLen, " bytes"));
  }
  if (n == 0 && !allow_empty) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  for (size_t i = n; i < kNameLen; ++i) {
    if (name[i] != '\0') return absl::InvalidArgumentError(absl::StrCat(field, " has bytes after its NUL"));
  }
  return absl::OkStatus();
}

std::string NameOf(const char (&name)[kNameLen]) {
  return std::string(name, strnlen(name, kNameLen));
}

void SetName(char (&dst)[kNameLen], absl::string_view name) {
  std::memset(dst, 0, kNameLen);
  std::memcpy(dst, name.data(), std::min(name.size(), kNameLen - 1));
}

WireStatus ToWire(const absl::Status& status) {
  WireStatus w;
  std::memset(&w, 0, sizeof(w));
  w.code = static_cast<uint32_t>(status.code());
  absl::string_view msg = status.message();
  size_t n = 0;
  for (char c : msg) {
    if (n == kTextLen - 1) break;
    const auto u = static_cast<unsigned char>(c);
    w.message[n++] = (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  return w;
}

absl::Status FromWire(const WireStatus& wire) {
  if (wire.code == 0) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(wire.code),
                      absl::string_view(wire.message, strnlen(wire.message, kTextLen)));
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
    return ErrnoStatus(errno, "control socket sendmsg");
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
    return ErrnoStatus(errno, "control socket recvmsg");
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

}  // namespace hsi::internal
