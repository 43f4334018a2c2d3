// Helpers for the reliability tests: hsid's fd count and RSS from /proc,
// raw control-socket clients speaking the wire protocol, counters shared
// with forked children, and the one-line figure summaries the tests print
// (docs/reliability.md quotes them).
#ifndef HSI_TESTS_RELIABILITY_REL_UTIL_H_
#define HSI_TESTS_RELIABILITY_REL_UTIL_H_

#include <dirent.h>
#include <grp.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "hsi/address.h"
#include "hsi/fd.h"
#include "internal/protocol.h"

namespace hsi::testing {

// Open fds of `pid` (entries of /proc/PID/fd), -1 if unreadable.
inline int FdCount(pid_t pid) {
  DIR* d = ::opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

// VmRSS of `pid` in KiB, -1 if unreadable.
inline long RssKiB(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// One line of figures, prefixed so that it can be grepped from ctest -V.
inline void Summary(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void Summary(const char* fmt, ...) {
  std::va_list ap;
  va_start(ap, fmt);
  std::printf("RELIABILITY ");
  std::vprintf(fmt, ap);
  std::printf("\n");
  std::fflush(stdout);
  va_end(ap);
}

// A raw SOCK_SEQPACKET connection to hsid, for hostile clients.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    // Non-blocking: a connect to a full backlog fails (EAGAIN) instead of hanging.
    fd_ = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
    connected_ = fd_.valid() && ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  bool connected() const { return connected_; }
  int fd() const { return fd_.get(); }
  void Close() { fd_.Reset(); }

  // Sends raw bytes with `fds` attached; false on a send error.
  bool SendRaw(const void* bytes, size_t len, const std::vector<int>& fds = {}) {
    iovec iov = {const_cast<void*>(bytes), len};
    msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    if (!fds.empty()) {
      mh.msg_control = control;
      mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      if (c == nullptr || fds.size() > 16) return false;
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    return ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL) == static_cast<ssize_t>(len);
  }
  template <typename T>
  bool Send(uint32_t request_id, const T& body, const std::vector<int>& fds = {}) {
    internal::OutMessage m = internal::Encode(request_id, body);
    return SendRaw(m.bytes.data(), m.bytes.size(), fds);
  }

  // The next message from hsid (up to `timeout`): nullopt on EOF or timeout;
  // `eof` tells which.
  std::optional<internal::Message> Receive(absl::Duration timeout = absl::Seconds(5), bool* eof = nullptr) {
    const absl::Time deadline = absl::Now() + timeout;
    if (eof != nullptr) *eof = false;
    for (;;) {
      absl::StatusOr<std::optional<internal::Message>> m =
          internal::TryReceive(fd_.get(), internal::Direction::kToClient);
      if (!m.ok()) {
        if (eof != nullptr) *eof = true;
        return std::nullopt;
      }
      if (m->has_value()) return std::move(**m);
      const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (ms <= 0) return std::nullopt;
      pollfd p = {fd_.get(), POLLIN, 0};
      ::poll(&p, 1, ms);
    }
  }
  // Waits for hsid to close the connection (skipping messages); true if it did.
  bool WaitEof(absl::Duration timeout = absl::Seconds(5)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      bool eof = false;
      (void)Receive(deadline - absl::Now(), &eof);
      if (eof) return true;
    }
    return false;
  }

 private:
  UniqueFd fd_;
  bool connected_ = false;
};

// The status a reply carries (every reply body starts with a WireStatus).
inline absl::Status ReplyStatus(const internal::Message& m) {
  internal::WireStatus w;
  if (m.body.size() < sizeof(w)) return absl::InternalError("reply too short");
  std::memcpy(&w, m.body.data(), sizeof(w));
  return internal::FromWire(w);
}

// Memory shared with forked children (MAP_SHARED before fork()).
template <typename T>
class Shared {
 public:
  Shared() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    p_ = p == MAP_FAILED ? nullptr : new (p) T();
  }
  ~Shared() {
    if (p_ != nullptr) ::munmap(p_, sizeof(T));
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  T* operator->() { return p_; }
  T& operator*() { return *p_; }

 private:
  T* p_ = nullptr;
};

// Raises the soft RLIMIT_NOFILE to min(hard, want); returns the new soft limit.
inline rlim_t RaiseNoFile(rlim_t want) {
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  if (r.rlim_cur < want) {
    r.rlim_cur = r.rlim_max == RLIM_INFINITY ? want : std::min(want, r.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
  ::getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_cur;
}

// Fills every unused fd number below this process's highest open fd with
// /dev/null, so that a RLIMIT_NOFILE of highest + 1 + n leaves exactly n
// free fds. Returns the highest open fd.
inline int FillFdGaps() {
  int top = -1;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const int fd = std::atoi(e->d_name);
      if (fd != ::dirfd(d)) top = std::max(top, fd);
    }
    ::closedir(d);
  }
  for (;;) {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    if (fd > top) {
      ::close(fd);
      break;
    }
  }
  return top;
}

// Drops to uid/gid `id` with no supplementary groups; false if not allowed.
inline bool DropTo(uint32_t id) {
  return ::setgroups(0, nullptr) == 0 && ::setresgid(id, id, id) == 0 && ::setresuid(id, id, id) == 0;
}

// A split doorbell as libhsi makes one for a NIC (a pipe): `*wait` keeps
// the read end the NIC waits on; the returned write end is the ring end an
// AttachRequest carries.
inline UniqueFd RingEnd(UniqueFd* wait) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return {};
  *wait = UniqueFd(p[0]);
  return UniqueFd(p[1]);
}

// A raw client's claim; the status hsid answered (or kUnavailable on EOF).
inline absl::Status RawClaim(RawClient& c, const std::string& name, uint32_t req_id = 1) {
  internal::ClaimRequest req = internal::Zeroed<internal::ClaimRequest>();
  internal::SetName(req.lpar, name);
  if (!c.Send(req_id, req)) return absl::UnavailableError("send failed");
  bool eof = false;
  std::optional<internal::Message> m = c.Receive(absl::Seconds(5), &eof);
  if (!m.has_value()) return absl::UnavailableError(eof ? "EOF" : "no answer");
  return ReplyStatus(*m);
}

// A raw client's NIC on F0 with a proper split doorbell (whose wait end
// `*wait` keeps): hsid's AttachReply, or its refusal.
inline absl::StatusOr<internal::AttachReply> RawAttachReply(RawClient& c, uint32_t req_id, UniqueFd* wait) {
  UniqueFd ring = RingEnd(wait);
  if (!ring.valid()) return absl::InternalError(std::strerror(errno));
  internal::AttachRequest a = internal::Zeroed<internal::AttachRequest>();
  a.chpid = 0xF0;
  if (!c.Send(req_id, a, {ring.get()})) return absl::UnavailableError("send failed");
  bool eof = false;
  std::optional<internal::Message> m = c.Receive(absl::Seconds(5), &eof);
  if (!m.has_value()) return absl::UnavailableError(eof ? "EOF" : "no answer");
  if (absl::Status s = ReplyStatus(*m); !s.ok()) return s;
  return m->As<internal::AttachReply>();
}

// The address of a raw client's new NIC on F0 (RawAttachReply).
inline absl::StatusOr<Address> RawAttach(RawClient& c, uint32_t req_id, UniqueFd* wait) {
  absl::StatusOr<internal::AttachReply> r = RawAttachReply(c, req_id, wait);
  if (!r.ok()) return r.status();
  return Address(r->address);
}

}  // namespace hsi::testing

#endif  // HSI_TESTS_RELIABILITY_REL_UTIL_H_
