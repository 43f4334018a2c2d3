#include "hsi/testing/raw_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/time/clock.h"

namespace hsi::testing {

RawClient::RawClient(const std::string& path) {
  fd_ = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  connected_ = fd_.valid() && ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
}

bool RawClient::SendRaw(const void* bytes, size_t len, const std::vector<int>& fds) {
  iovec iov = {const_cast<void*>(bytes), len};
  msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
  if (!fds.empty()) {
    if (fds.size() > 16) return false;
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    if (c == nullptr) return false;
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL) == static_cast<ssize_t>(len);
}

std::optional<wire::Message> RawClient::Receive(absl::Duration timeout, bool* eof) {
  const absl::Time deadline = absl::Now() + timeout;
  if (eof != nullptr) *eof = false;
  for (;;) {
    absl::StatusOr<std::optional<wire::Message>> m =
        wire::TryReceive(fd_.get(), wire::Direction::kToClient);
    if (!m.ok()) {
      if (eof != nullptr) *eof = true;
      return std::nullopt;
    }
    if (m->has_value() && ((**m).type != wire::MsgType::kSpareOffer || see_spares_)) return std::move(**m);
    if (m->has_value()) continue;
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0) return std::nullopt;
    pollfd p = {fd_.get(), POLLIN, 0};
    ::poll(&p, 1, ms);
  }
}

bool RawClient::WaitEof(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    bool eof = false;
    (void)Receive(deadline - absl::Now(), &eof);
    if (eof) return true;
  }
  return false;
}

absl::Status ReplyStatus(const wire::Message& m) {
  wire::WireStatus w;
  if (m.body.size() < sizeof(w)) return absl::InternalError("reply too short");
  std::memcpy(&w, m.body.data(), sizeof(w));
  return wire::FromWire(w);
}

UniqueFd RingEnd(UniqueFd* wait) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return {};
  *wait = UniqueFd(p[0]);
  return UniqueFd(p[1]);
}

absl::Status RawClaim(RawClient& c, const std::string& name, uint32_t req_id) {
  wire::ClaimRequest req = wire::Zeroed<wire::ClaimRequest>();
  wire::SetName(req.lpar, name);
  if (!c.Send(req_id, req)) return absl::UnavailableError("send failed");
  bool eof = false;
  std::optional<wire::Message> m = c.Receive(absl::Seconds(5), &eof);
  if (!m.has_value()) return absl::UnavailableError(eof ? "EOF" : "no answer");
  return ReplyStatus(*m);
}

absl::StatusOr<wire::AttachReply> RawAttachReply(RawClient& c, uint32_t req_id, UniqueFd* wait) {
  UniqueFd ring = RingEnd(wait);
  if (!ring.valid()) return absl::InternalError(std::strerror(errno));
  wire::AttachRequest a = wire::Zeroed<wire::AttachRequest>();
  a.chpid = 0xF0;
  if (!c.Send(req_id, a, {ring.get()})) return absl::UnavailableError("send failed");
  bool eof = false;
  std::optional<wire::Message> m = c.Receive(absl::Seconds(5), &eof);
  if (!m.has_value()) return absl::UnavailableError(eof ? "EOF" : "no answer");
  if (absl::Status s = ReplyStatus(*m); !s.ok()) return s;
  return m->As<wire::AttachReply>();
}

absl::StatusOr<Address> RawAttach(RawClient& c, uint32_t req_id, UniqueFd* wait) {
  absl::StatusOr<wire::AttachReply> r = RawAttachReply(c, req_id, wait);
  if (!r.ok()) return r.status();
  return Address(r->address);
}

}  // namespace hsi::testing
