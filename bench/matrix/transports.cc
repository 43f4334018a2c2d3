// bench/matrix/transports.cc: every transport of hsi-bench but iceoryx
// (iceoryx.cc), the session API (session.cc) and the futex floor and the
// eventfd-bell ring (wakeup.cc): the cache-line floor, the hsi ring (three wait modes, copying
// and zero-copy calls), loopback TCP with plain syscalls and with io_uring, a
// Unix stream socket pair, pipes, and Boost.Interprocess message_queue.
#include <fcntl.h>
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cerrno>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/date_time/posix_time/posix_time_types.hpp"
#include "boost/interprocess/ipc/message_queue.hpp"
#include "harness.h"
#include "hsi/endpoint.h"
#include "hsi/ring.h"
#include "hsi/wait.h"
#include "transport.h"

namespace hsi::bench::matrix {
namespace {

absl::Status Errno(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, absl::StrCat(what));
}

absl::Status EchoMismatch(uint64_t want, uint64_t got) {
  return absl::DataLossError(
      absl::StrCat("echo of message ", want, " carries index ", got, " (lost or reordered)"));
}

absl::Status StreamMismatch(uint64_t want, uint64_t got) {
  return absl::DataLossError(absl::StrCat("stream: message ", got, " arrived where message ",
                                          want, " was due (lost or reordered)"));
}

// ------------------------------------------------------- cache-line floor

class FloorEnd : public End {
 public:
  explicit FloorEnd(std::atomic<uint64_t>* word) : word_(word), pinger_(word, /*pause=*/false) {}
  absl::Status RoundTrip(uint64_t index) override {
    if (!pinger_.RoundTrip()) {
      return absl::DeadlineExceededError(
          absl::StrCat("cache line: no answer to round trip ", index, " within ",
                       absl::FormatDuration(kPeerTimeout)));
    }
    return absl::OkStatus();
  }
  absl::Status StopEcho() override {
    pinger_.Stop();
    return absl::OkStatus();
  }
  absl::Status Echo() override { return CacheLinePong(word_, 0, /*pause=*/false); }
  absl::Status Source(const StreamStop&, Tally*) override {
    return absl::UnimplementedError("the cache-line floor has no stream");
  }
  absl::Status Sink(SinkTimer*, Tally*) override {
    return absl::UnimplementedError("the cache-line floor has no stream");
  }

 private:
  std::atomic<uint64_t>* word_;
  CacheLinePinger pinger_;
};

class FloorLink : public Link {
 public:
  explicit FloorLink(SharedMemory mem) : mem_(std::move(mem)) {}
  absl::StatusOr<std::unique_ptr<End>> Open(Side) override {
    return std::unique_ptr<End>(new FloorEnd(mem_.word()));
  }

 private:
  SharedMemory mem_;
};

class FloorTransport : public Transport {
 public:
  std::string key() const override { return "floor"; }
  std::string label() const override { return "cache-line floor"; }
  bool streams() const override { return false; }
  bool sized() const override { return false; }
  absl::StatusOr<std::unique_ptr<Link>> Prepare(size_t, const std::string&) override {
    absl::StatusOr<SharedMemory> mem = SharedMemory::Create(64);
    if (!mem.ok()) return mem.status();
    return std::unique_ptr<Link>(new FloorLink(std::move(*mem)));
  }
};

// ---------------------------------------------------------------- hsi ring

// The ring for `size`-byte frames: hsid's default queue size (1 MiB) with
// MTU 16K up to 16 KiB and MTU 64K up to 64 KiB, as a CHPID with 16K or 64K
// frames gets; then 4 MiB with MTU 1 MiB (beyond any CHPID's frame size;
// the ring itself allows it).
RingGeometry GeometryFor(size_t size) {
  if (size <= 16384) return RingGeometry{uint64_t{1} << 20, 16384};
  if (size <= 65536) return RingGeometry{uint64_t{1} << 20, 65536};
  return RingGeometry{uint64_t{4} << 20, 1u << 20};
}

class HsiEnd : public End {
 public:
  HsiEnd(Endpoint ep, size_t size, WaitMode mode, bool zero_copy)
      : ep_(std::move(ep)),
        size_(size),
        mode_(mode),
        zero_copy_(zero_copy),
        sliding_(mode, kPeerTimeout),
        pinger_(&ep_, size, zero_copy) {}

  absl::Status RoundTrip(uint64_t) override { return pinger_.RoundTrip(sliding_.Next()); }
  absl::Status StopEcho() override {
    return SendControl(&ep_.tx(), kTypeStop, {}, sliding_.Next());
  }
  absl::Status Echo() override { return RingEcho(&ep_, mode_, zero_copy_, 0); }

  absl::Status Source(const StreamStop& stop, Tally* sent) override {
    RingProducer& tx = ep_.tx();
    if (zero_copy_) {
      absl::StatusOr<StreamSource> src = StreamSource::Create(&tx, size_);
      if (!src.ok()) return src.status();
      const uint32_t batch = StreamBatch(tx.geometry(), size_);
      while (!StopRequested(stop)) {
        if (absl::Status s = src->Batch(batch, sliding_.Next()); !s.ok()) return s;
      }
      if (absl::Status s = src->End(sliding_.Next()); !s.ok()) return s;
      *sent = Tally{src->tally().frames, src->tally().checksum};
      return absl::OkStatus();
    }
    std::vector<uint8_t> buf(size_);
    for (uint64_t i = 0; !StopRequested(stop); ++i) {
      FillMessage(buf.data(), size_, i);
      if (absl::Status s = tx.Send(buf, sliding_.Next(), kTypeData); !s.ok()) return s;
      ++sent->frames;
      sent->checksum += MessageSum(size_, i);
    }
    return tx.Send({}, sliding_.Next(), kTypeEnd);
  }

  absl::Status Sink(SinkTimer* timer, Tally* got) override {
    RingConsumer& rx = ep_.rx();
    if (zero_copy_) {
      StreamSink sink(&rx, size_);
      const uint32_t batch = StreamBatch(rx.geometry(), size_);
      // One Due() per batch: the timer reads the clock every 16th call.
      while (!timer->Due()) {
        if (absl::Status s = sink.Batch(batch, sliding_.Next()); !s.ok()) return s;
      }
      absl::StatusOr<StreamTally> source = sink.DrainToEnd(sliding_.Next());
      if (!source.ok()) return source.status();
      *got = Tally{sink.tally().frames, sink.tally().checksum};
      return absl::OkStatus();
    }
    std::vector<uint8_t> buf(size_);
    for (;;) {
      uint16_t type = 0;
      absl::StatusOr<size_t> n = rx.Receive(absl::MakeSpan(buf), sliding_.Next(), &type);
      if (!n.ok()) return n.status();
      if (type == kTypeEnd) return absl::OkStatus();
      if (*n != size_) {
        return absl::DataLossError(
            absl::StrCat("stream: frame ", got->frames, " is ", *n, " bytes, sent ", size_));
      }
      const uint64_t index = IndexOf(buf.data());
      if (index != got->frames) return StreamMismatch(got->frames, index);
      got->checksum += WordSum(buf.data(), size_);
      ++got->frames;
      timer->Due();
    }
  }

 private:
  Endpoint ep_;
  size_t size_;
  WaitMode mode_;
  bool zero_copy_;
  SlidingWait sliding_;
  RingPinger pinger_;
};

class HsiLink : public Link {
 public:
  HsiLink(EndpointFdPair fds, size_t size, WaitMode mode, bool zero_copy)
      : fds_(std::move(fds)), size_(size), mode_(mode), zero_copy_(zero_copy) {}
  absl::StatusOr<std::unique_ptr<End>> Open(Side side) override {
    EndpointFds mine = side == Side::kA ? std::move(fds_.a) : std::move(fds_.b);
    fds_ = EndpointFdPair{};  // close the other end's fds in this process
    absl::StatusOr<Endpoint> ep = Endpoint::Open(std::move(mine), GeometryFor(size_));
    if (!ep.ok()) return ep.status();
    return std::unique_ptr<End>(new HsiEnd(std::move(*ep), size_, mode_, zero_copy_));
  }

 private:
  EndpointFdPair fds_;
  size_t size_;
  WaitMode mode_;
  bool zero_copy_;
};

class HsiTransport : public Transport {
 public:
  HsiTransport(WaitMode mode, bool zero_copy) : mode_(mode), zero_copy_(zero_copy) {}
  std::string key() const override {
    return absl::StrCat("hsi-", WaitModeName(mode_), zero_copy_ ? "-zc" : "-copy");
  }
  std::string label() const override {
    return absl::StrCat("hsi ", WaitModeName(mode_), zero_copy_ ? " zero-copy" : " copy");
  }
  absl::StatusOr<std::unique_ptr<Link>> Prepare(size_t size, const std::string&) override {
    absl::StatusOr<EndpointFdPair> fds = CreateEndpointFds(GeometryFor(size));
    if (!fds.ok()) return fds.status();
    return std::unique_ptr<Link>(new HsiLink(std::move(*fds), size, mode_, zero_copy_));
  }

 private:
  WaitMode mode_;
  bool zero_copy_;
};

// ------------------------------------------- byte streams: common parts

// Cuts a byte stream into `size`-byte messages and checks them, for the
// sink of every stream-socket and pipe transport.
class StreamParser {
 public:
  explicit StreamParser(size_t size)
      : size_(size), buf_(std::max<size_t>(256 * 1024, size) / size * size) {}
  // Where the next read() goes and how much it may take.
  uint8_t* space() { return buf_.data() + have_; }
  size_t room() const { return buf_.size() - have_; }
  // Takes `n` more bytes; checks each whole message. Sets *ended at the end
  // marker (which must be the last message).
  absl::Status Add(size_t n, SinkTimer* timer, Tally* got, bool* ended) {
    have_ += n;
    size_t off = 0;
    for (; have_ - off >= size_; off += size_) {
      const uint8_t* m = buf_.data() + off;
      const uint64_t index = IndexOf(m);
      if (index == kEndIndex) {
        if (have_ - off != size_) {
          return absl::DataLossError("stream: bytes after the end marker");
        }
        *ended = true;
        have_ = 0;
        return absl::OkStatus();
      }
      if (index != got->frames) return StreamMismatch(got->frames, index);
      got->checksum += WordSum(m, size_);
      ++got->frames;
      timer->Due();
    }
    if (off != 0 && off != have_) std::memmove(buf_.data(), buf_.data() + off, have_ - off);
    have_ -= off;
    return absl::OkStatus();
  }

 private:
  size_t size_;
  std::vector<uint8_t> buf_;
  size_t have_ = 0;
};

// TCP, Unix stream sockets and pipes with plain read()/write().
class FdEnd : public End {
 public:
  // `wfd` invalid: write to `rfd` (a socket).
  FdEnd(UniqueFd rfd, UniqueFd wfd, size_t size)
      : rfd_(std::move(rfd)), wfd_(std::move(wfd)), size_(size), out_(size), in_(size) {
    FillMessage(out_.data(), size_, 0);
  }
  int r() const { return rfd_.get(); }
  int w() const { return wfd_.valid() ? wfd_.get() : rfd_.get(); }

  absl::Status RoundTrip(uint64_t index) override {
    std::memcpy(out_.data(), &index, 8);
    if (absl::Status s = WriteFull(w(), out_.data(), size_); !s.ok()) return s;
    if (absl::Status s = ReadFull(r(), in_.data(), size_); !s.ok()) return s;
    if (IndexOf(in_.data()) != index) return EchoMismatch(index, IndexOf(in_.data()));
    return absl::OkStatus();
  }
  absl::Status StopEcho() override {
    FillMessage(out_.data(), size_, kStopIndex);
    return WriteFull(w(), out_.data(), size_);
  }
  absl::Status Echo() override {
    for (;;) {
      if (absl::Status s = ReadFull(r(), in_.data(), size_); !s.ok()) return s;
      if (IndexOf(in_.data()) == kStopIndex) return absl::OkStatus();
      if (absl::Status s = WriteFull(w(), in_.data(), size_); !s.ok()) return s;
    }
  }
  absl::Status Source(const StreamStop& stop, Tally* sent) override {
    for (uint64_t i = 0; !StopRequested(stop); ++i) {
      FillMessage(out_.data(), size_, i);
      if (absl::Status s = WriteFull(w(), out_.data(), size_); !s.ok()) return s;
      ++sent->frames;
      sent->checksum += MessageSum(size_, i);
    }
    FillMessage(out_.data(), size_, kEndIndex);
    return WriteFull(w(), out_.data(), size_);
  }
  absl::Status Sink(SinkTimer* timer, Tally* got) override {
    StreamParser parser(size_);
    for (bool ended = false; !ended;) {
      const ssize_t n = ::read(r(), parser.space(), parser.room());
      if (n < 0) {
        if (errno == EINTR) continue;
        return Errno(errno, "stream: read");
      }
      if (n == 0) return absl::UnavailableError("stream: EOF before the end marker");
      if (absl::Status s = parser.Add(static_cast<size_t>(n), timer, got, &ended); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

 private:
  UniqueFd rfd_, wfd_;
  size_t size_;
  std::vector<uint8_t> out_, in_;
};

// The fds of both ends; each child keeps its own and closes the rest.
struct FdPairs {
  UniqueFd a_r, a_w, b_r, b_w;  // *_w invalid: a socket, write to *_r
};

class FdLink : public Link {
 public:
  FdLink(FdPairs fds, size_t size, bool uring);
  absl::StatusOr<std::unique_ptr<End>> Open(Side side) override;

 private:
  FdPairs fds_;
  size_t size_;
  bool uring_;
};

// ----------------------------------------------------- io_uring over TCP

// Loopback TCP driven through io_uring: a round trip is one
// io_uring_submit_and_wait() per side (send and receive submitted
// together); the stream source submits linked batches of sends with
// MSG_WAITALL; the sink submits one receive at a time.
class UringEnd : public End {
 public:
  static absl::StatusOr<std::unique_ptr<End>> Create(UniqueFd fd, size_t size) {
    std::unique_ptr<UringEnd> e(new UringEnd(std::move(fd), size));
    const int r = io_uring_queue_init(64, &e->ring_, 0);
    if (r < 0) return Errno(-r, "io_uring_queue_init");
    e->ring_ok_ = true;
    return std::unique_ptr<End>(std::move(e));
  }
  ~UringEnd() override {
    if (ring_ok_) io_uring_queue_exit(&ring_);
  }

  absl::Status RoundTrip(uint64_t index) override {
    std::memcpy(out_.data(), &index, 8);
    if (absl::Status s = SendRecv(out_.data(), in_.data()); !s.ok()) return s;
    if (IndexOf(in_.data()) != index) return EchoMismatch(index, IndexOf(in_.data()));
    return absl::OkStatus();
  }
  absl::Status StopEcho() override {
    FillMessage(out_.data(), size_, kStopIndex);
    return Transfer(/*send=*/true, out_.data(), size_);
  }
  absl::Status Echo() override {
    // The echo of message k goes out in the same submission as the receive
    // of message k+1, so each side makes one system call per round trip.
    uint8_t* cur = in_.data();
    uint8_t* next = out_.data();
    if (absl::Status s = Transfer(/*send=*/false, cur, size_); !s.ok()) return s;
    while (IndexOf(cur) != kStopIndex) {
      if (absl::Status s = SendRecv(cur, next); !s.ok()) return s;
      std::swap(cur, next);
    }
    return absl::OkStatus();
  }
  absl::Status Source(const StreamStop& stop, Tally* sent) override {
    const size_t batch = std::clamp<size_t>(256 * 1024 / size_, 1, 16);
    std::vector<std::vector<uint8_t>> bufs(batch, std::vector<uint8_t>(size_));
    uint64_t i = 0;
    while (!StopRequested(stop)) {
      for (size_t j = 0; j < batch; ++j) {
        FillMessage(bufs[j].data(), size_, i + j);
        io_uring_sqe* sqe = Sqe();
        io_uring_prep_send(sqe, fd_.get(), bufs[j].data(), size_, MSG_WAITALL | MSG_NOSIGNAL);
        // Linked: each send starts after the one before it completed, so
        // the bytes stay in order.
        if (j + 1 < batch) sqe->flags |= IOSQE_IO_LINK;
      }
      if (absl::Status s = Submit(static_cast<unsigned>(batch)); !s.ok()) return s;
      for (size_t j = 0; j < batch; ++j) {
        io_uring_cqe* cqe = nullptr;
        const int r = io_uring_wait_cqe(&ring_, &cqe);
        if (r < 0) return Errno(-r, "io_uring_wait_cqe");
        const int res = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
        if (res < 0) return Errno(-res, "io_uring send");
        if (static_cast<size_t>(res) != size_) {
          return absl::InternalError(absl::StrCat("io_uring send: ", res, " of ", size_,
                                                  " bytes despite MSG_WAITALL"));
        }
      }
      for (size_t j = 0; j < batch; ++j) sent->checksum += MessageSum(size_, i + j);
      sent->frames += batch;
      i += batch;
    }
    FillMessage(out_.data(), size_, kEndIndex);
    return Transfer(/*send=*/true, out_.data(), size_);
  }
  absl::Status Sink(SinkTimer* timer, Tally* got) override {
    StreamParser parser(size_);
    for (bool ended = false; !ended;) {
      io_uring_sqe* sqe = Sqe();
      io_uring_prep_recv(sqe, fd_.get(), parser.space(), parser.room(), 0);
      absl::StatusOr<int> n = SubmitOne();
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::UnavailableError("stream: EOF before the end marker");
      if (absl::Status s = parser.Add(static_cast<size_t>(*n), timer, got, &ended); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

 private:
  UringEnd(UniqueFd fd, size_t size) : fd_(std::move(fd)), size_(size), out_(size), in_(size) {
    FillMessage(out_.data(), size_, 0);
  }

  // A free submission entry. The ring has 64 and at most 16 are ever
  // pending, so after a submit there is always one; running out is a bug.
  io_uring_sqe* Sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    if (sqe == nullptr) std::abort();
    return sqe;
  }

  absl::Status Submit(unsigned wait_for) {
    int r;
    while ((r = io_uring_submit_and_wait(&ring_, wait_for)) == -EINTR) {
    }
    if (r < 0) return Errno(-r, "io_uring_submit_and_wait");
    return absl::OkStatus();
  }
  absl::StatusOr<int> SubmitOne() {
    if (absl::Status s = Submit(1); !s.ok()) return s;
    io_uring_cqe* cqe = nullptr;
    const int r = io_uring_wait_cqe(&ring_, &cqe);
    if (r < 0) return Errno(-r, "io_uring_wait_cqe");
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (res < 0) return Errno(-res, "io_uring send/recv");
    return res;
  }
  // Sends or receives all `n` bytes, one operation at a time.
  absl::Status Transfer(bool send, uint8_t* p, size_t n) {
    size_t done = 0;
    while (done < n) {
      io_uring_sqe* sqe = Sqe();
      if (send) {
        io_uring_prep_send(sqe, fd_.get(), p + done, n - done, MSG_NOSIGNAL);
      } else {
        io_uring_prep_recv(sqe, fd_.get(), p + done, n - done, MSG_WAITALL);
      }
      absl::StatusOr<int> r = SubmitOne();
      if (!r.ok()) return r.status();
      if (*r == 0 && !send) return absl::UnavailableError("tcp (io_uring): peer closed");
      done += static_cast<size_t>(*r);
    }
    return absl::OkStatus();
  }
  // Sends `size_` bytes from `out` and receives `size_` into `in` in one
  // submission; finishes short transfers one by one.
  absl::Status SendRecv(uint8_t* out, uint8_t* in) {
    io_uring_sqe* s = Sqe();
    io_uring_prep_send(s, fd_.get(), out, size_, MSG_NOSIGNAL);
    s->user_data = 1;
    io_uring_sqe* r = Sqe();
    io_uring_prep_recv(r, fd_.get(), in, size_, MSG_WAITALL);
    r->user_data = 2;
    if (absl::Status st = Submit(2); !st.ok()) return st;
    int sent = 0, got = 0;
    for (int k = 0; k < 2; ++k) {
      io_uring_cqe* cqe = nullptr;
      const int e = io_uring_wait_cqe(&ring_, &cqe);
      if (e < 0) return Errno(-e, "io_uring_wait_cqe");
      (cqe->user_data == 1 ? sent : got) = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
    }
    if (sent < 0) return Errno(-sent, "io_uring send");
    if (got < 0) return Errno(-got, "io_uring recv");
    if (static_cast<size_t>(sent) < size_) {
      if (absl::Status st = Transfer(true, out + sent, size_ - static_cast<size_t>(sent));
          !st.ok()) {
        return st;
      }
    }
    if (got == 0) return absl::UnavailableError("tcp (io_uring): peer closed");
    if (static_cast<size_t>(got) < size_) {
      return Transfer(false, in + got, size_ - static_cast<size_t>(got));
    }
    return absl::OkStatus();
  }

  UniqueFd fd_;
  size_t size_;
  std::vector<uint8_t> out_, in_;
  io_uring ring_{};
  bool ring_ok_ = false;
};

FdLink::FdLink(FdPairs fds, size_t size, bool uring)
    : fds_(std::move(fds)), size_(size), uring_(uring) {}

absl::StatusOr<std::unique_ptr<End>> FdLink::Open(Side side) {
  UniqueFd r = side == Side::kA ? std::move(fds_.a_r) : std::move(fds_.b_r);
  UniqueFd w = side == Side::kA ? std::move(fds_.a_w) : std::move(fds_.b_w);
  fds_ = FdPairs{};  // the other end's fds: closed in this process
  if (uring_) return UringEnd::Create(std::move(r), size_);
  return std::unique_ptr<End>(new FdEnd(std::move(r), std::move(w), size_));
}

enum class FdKind { kTcp, kTcpUring, kUnix, kPipe };

class FdTransport : public Transport {
 public:
  explicit FdTransport(FdKind kind) : kind_(kind) {}
  std::string key() const override {
    switch (kind_) {
      case FdKind::kTcp: return "tcp";
      case FdKind::kTcpUring: return "tcp-uring";
      case FdKind::kUnix: return "unix";
      case FdKind::kPipe: return "pipe";
    }
    return "?";
  }
  std::string label() const override {
    switch (kind_) {
      case FdKind::kTcp: return "loopback TCP";
      case FdKind::kTcpUring: return "loopback TCP io_uring";
      case FdKind::kUnix: return "Unix stream socket";
      case FdKind::kPipe: return "pipe";
    }
    return "?";
  }
  absl::StatusOr<std::unique_ptr<Link>> Prepare(size_t size, const std::string&) override {
    FdPairs fds;
    switch (kind_) {
      case FdKind::kTcp:
      case FdKind::kTcpUring: {
        uint16_t port = 0;
        absl::StatusOr<UniqueFd> listener = TcpListenLoopback(&port);
        if (!listener.ok()) return listener.status();
        absl::StatusOr<UniqueFd> a = TcpConnectLoopback(port);
        if (!a.ok()) return a.status();
        absl::StatusOr<UniqueFd> b = TcpAccept(listener->get(), absl::Seconds(5));
        if (!b.ok()) return b.status();
        fds.a_r = std::move(*a);
        fds.b_r = std::move(*b);
        break;
      }
      case FdKind::kUnix: {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
          return Errno(errno, "socketpair(AF_UNIX, SOCK_STREAM)");
        }
        fds.a_r = UniqueFd(sv[0]);
        fds.b_r = UniqueFd(sv[1]);
        break;
      }
      case FdKind::kPipe: {
        // Default pipe buffers (64 KiB), as an application gets them.
        int ab[2], ba[2];
        if (::pipe2(ab, O_CLOEXEC) != 0) return Errno(errno, "pipe2");
        UniqueFd ab_r(ab[0]), ab_w(ab[1]);
        if (::pipe2(ba, O_CLOEXEC) != 0) return Errno(errno, "pipe2");
        fds.a_r = UniqueFd(ba[0]);
        fds.a_w = std::move(ab_w);
        fds.b_r = std::move(ab_r);
        fds.b_w = UniqueFd(ba[1]);
        break;
      }
    }
    return std::unique_ptr<Link>(
        new FdLink(std::move(fds), size, kind_ == FdKind::kTcpUring));
  }

 private:
  FdKind kind_;
};

// ------------------------------------- Boost.Interprocess message_queue

namespace bip = boost::interprocess;

// Two queues in POSIX shared memory (process-shared mutex and condition
// variables inside): A->B for pings, B->A for echoes and the stream. Made
// by the coordinator before fork(); both children use the inherited
// mappings. Every call copies.
class BoostMqEnd : public End {
 public:
  BoostMqEnd(bip::message_queue* tx, bip::message_queue* rx, size_t size)
      : tx_(tx), rx_(rx), size_(size), out_(size), in_(size) {
    FillMessage(out_.data(), size_, 0);
  }
  absl::Status RoundTrip(uint64_t index) override {
    std::memcpy(out_.data(), &index, 8);
    if (absl::Status s = Send(out_.data()); !s.ok()) return s;
    if (absl::Status s = Receive(); !s.ok()) return s;
    if (IndexOf(in_.data()) != index) return EchoMismatch(index, IndexOf(in_.data()));
    return absl::OkStatus();
  }
  absl::Status StopEcho() override {
    FillMessage(out_.data(), size_, kStopIndex);
    return Send(out_.data());
  }
  absl::Status Echo() override {
    for (;;) {
      if (absl::Status s = Receive(); !s.ok()) return s;
      if (IndexOf(in_.data()) == kStopIndex) return absl::OkStatus();
      if (absl::Status s = Send(in_.data()); !s.ok()) return s;
    }
  }
  absl::Status Source(const StreamStop& stop, Tally* sent) override {
    for (uint64_t i = 0; !StopRequested(stop); ++i) {
      FillMessage(out_.data(), size_, i);
      if (absl::Status s = Send(out_.data()); !s.ok()) return s;
      ++sent->frames;
      sent->checksum += MessageSum(size_, i);
    }
    FillMessage(out_.data(), size_, kEndIndex);
    return Send(out_.data());
  }
  absl::Status Sink(SinkTimer* timer, Tally* got) override {
    for (;;) {
      if (absl::Status s = Receive(); !s.ok()) return s;
      const uint64_t index = IndexOf(in_.data());
      if (index == kEndIndex) return absl::OkStatus();
      if (index != got->frames) return StreamMismatch(got->frames, index);
      got->checksum += WordSum(in_.data(), size_);
      ++got->frames;
      timer->Due();
    }
  }

 private:
  absl::Status Send(const uint8_t* p) {
    try {
      const bool ok = tx_->timed_send(p, size_, 0, Deadline());
      if (!ok) return absl::DeadlineExceededError("message_queue: send timed out (peer gone?)");
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("message_queue send: ", e.what()));
    }
    return absl::OkStatus();
  }
  absl::Status Receive() {
    try {
      bip::message_queue::size_type got = 0;
      unsigned prio = 0;
      const bool ok = rx_->timed_receive(in_.data(), size_, got, prio, Deadline());
      if (!ok) {
        return absl::DeadlineExceededError("message_queue: receive timed out (peer gone?)");
      }
      if (got != size_) {
        return absl::DataLossError(
            absl::StrCat("message_queue: got ", got, " bytes, expected ", size_));
      }
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("message_queue receive: ", e.what()));
    }
    return absl::OkStatus();
  }
  static boost::posix_time::ptime Deadline() {
    return boost::posix_time::microsec_clock::universal_time() +
           boost::posix_time::seconds(absl::ToInt64Seconds(kPeerTimeout));
  }

  bip::message_queue* tx_;
  bip::message_queue* rx_;
  size_t size_;
  std::vector<uint8_t> out_, in_;
};

class BoostMqLink : public Link {
 public:
  static absl::StatusOr<std::unique_ptr<Link>> Create(size_t size, const std::string& tag) {
    std::unique_ptr<BoostMqLink> link(new BoostMqLink(size, tag));
    // Stream depth: about 4 MiB of messages, 4..256 of them.
    const size_t depth = std::clamp<size_t>((size_t{4} << 20) / size, 4, 256);
    try {
      bip::message_queue::remove(link->ab_name_.c_str());
      bip::message_queue::remove(link->ba_name_.c_str());
      link->ab_ = std::make_unique<bip::message_queue>(bip::create_only, link->ab_name_.c_str(),
                                                       4, size);
      link->ba_ = std::make_unique<bip::message_queue>(bip::create_only, link->ba_name_.c_str(),
                                                       depth, size);
    } catch (const std::exception& e) {
      return absl::InternalError(
          absl::StrCat("message_queue ", link->ab_name_, ": ", e.what()));
    }
    return std::unique_ptr<Link>(std::move(link));
  }
  ~BoostMqLink() override {
    ab_.reset();
    ba_.reset();
    bip::message_queue::remove(ab_name_.c_str());
    bip::message_queue::remove(ba_name_.c_str());
  }
  absl::StatusOr<std::unique_ptr<End>> Open(Side side) override {
    if (side == Side::kA) return std::unique_ptr<End>(new BoostMqEnd(ab_.get(), ba_.get(), size_));
    return std::unique_ptr<End>(new BoostMqEnd(ba_.get(), ab_.get(), size_));
  }

 private:
  BoostMqLink(size_t size, const std::string& tag)
      : size_(size), ab_name_(absl::StrCat(tag, "-ab")), ba_name_(absl::StrCat(tag, "-ba")) {}
  size_t size_;
  std::string ab_name_, ba_name_;
  std::unique_ptr<bip::message_queue> ab_, ba_;
};

class BoostMqTransport : public Transport {
 public:
  std::string key() const override { return "boost-mq"; }
  std::string label() const override { return "Boost.Interprocess mq"; }
  absl::StatusOr<std::unique_ptr<Link>> Prepare(size_t size, const std::string& tag) override {
    return BoostMqLink::Create(size, tag);
  }
};

}  // namespace

#if !HSI_BENCH_HAVE_ICEORYX
bool IceoryxCompiledIn() { return false; }
std::unique_ptr<Transport> MakeIceoryxTransport() { return nullptr; }
absl::Status StartRouDi(const std::vector<size_t>&, const std::string&) {
  return absl::UnimplementedError("hsi-bench was built without iceoryx");
}
void StopRouDi() {}
#endif

absl::Status WriteFull(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::write(fd, p + done, n - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, absl::StrCat("write after ", done, " of ", n, " bytes"));
    }
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status ReadFull(int fd, void* data, size_t n) {
  auto* p = static_cast<uint8_t*>(data);
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::read(fd, p + done, n - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, absl::StrCat("read after ", done, " of ", n, " bytes"));
    }
    if (r == 0) {
      return absl::UnavailableError(
          absl::StrCat("EOF from the peer after ", done, " of ", n, " bytes"));
    }
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

std::vector<std::unique_ptr<Transport>> AllTransports() {
  std::vector<std::unique_ptr<Transport>> all;
  all.push_back(std::make_unique<FloorTransport>());
  all.push_back(MakeFutexTransport());
  for (WaitMode mode : {WaitMode::kSpin, WaitMode::kAdaptive, WaitMode::kBlock}) {
    all.push_back(std::make_unique<HsiTransport>(mode, /*zero_copy=*/true));
    all.push_back(std::make_unique<HsiTransport>(mode, /*zero_copy=*/false));
  }
  all.push_back(MakeHsiBellTransport());
  for (WaitMode mode : {WaitMode::kSpin, WaitMode::kAdaptive, WaitMode::kBlock}) {
    all.push_back(MakeSessionTransport(mode));
  }
  all.push_back(MakeSessionTransport(WaitMode::kSpin, /*batch=*/true));
  all.push_back(std::make_unique<FdTransport>(FdKind::kTcp));
  all.push_back(std::make_unique<FdTransport>(FdKind::kTcpUring));
  all.push_back(std::make_unique<FdTransport>(FdKind::kUnix));
  all.push_back(std::make_unique<FdTransport>(FdKind::kPipe));
  all.push_back(std::make_unique<BoostMqTransport>());
  if (IceoryxCompiledIn()) all.push_back(MakeIceoryxTransport());
  return all;
}

}  // namespace hsi::bench::matrix
