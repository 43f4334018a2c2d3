// hsi/stream.h: the byte stream over a ring pair, bells on the TCP socket.
#include "hsi/stream.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "internal/futex.h"

namespace hsi {
namespace {

// Raw syscalls: hsi-run's preload interposes the libc socket calls, and
// this code runs inside it; bells must reach the kernel, not the interposer.
ssize_t RawSend(int fd, const void* buf, size_t len, int flags) {
  return ::syscall(SYS_sendto, fd, buf, len, flags, nullptr, 0);
}
ssize_t RawRecv(int fd, void* buf, size_t len, int flags) {
  return ::syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr);
}

// Copies up to `n` bytes of `src` into the iovecs, starting `skip` bytes
// into them. Returns the bytes copied.
size_t CopyOut(const struct iovec* iov, int iovcnt, size_t skip, const uint8_t* src, size_t n) {
  size_t done = 0;
  for (int i = 0; i < iovcnt && done < n; ++i) {
    size_t len = iov[i].iov_len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    const size_t k = std::min(len - skip, n - done);
    std::memcpy(static_cast<uint8_t*>(iov[i].iov_base) + skip, src + done, k);
    done += k;
    skip = 0;
  }
  return done;
}

size_t IovTotal(const struct iovec* iov, int iovcnt) {
  size_t t = 0;
  for (int i = 0; i < iovcnt; ++i) t += iov[i].iov_len;
  return t;
}

// The rings' own doorbells are never used here (bells travel on the TCP
// socket), but a ring wants two. One wait end of a pipe per process serves
// every ring: ringing a wait end does nothing (hsi/doorbell.h), so even a
// peer that sets its need flags cannot make us write to any descriptor.
// Never destroyed; after a fork the child's copy is the same.
const Doorbell* SilentBell() {
  static const Doorbell* bell = [] {
    UniqueFd ring_end;
    absl::StatusOr<Doorbell> d = Doorbell::CreateSplit(&ring_end);
    return d.ok() ? new Doorbell(std::move(*d)) : nullptr;
  }();
  return bell;
}

// The waiter ids this process has rung a bell for (StreamPage::data_waiter):
// one slot per id hash, one atomic word each (an exact id, never a partial
// match). Two producers may both ring for one id (a race): one bell more.
// A slot taken by another id only makes the next bell for the first one
// ring again. Shared by every stream of the process; after a fork the
// child's copy still names waits that were rung.
class RungWaiters {
 public:
  // Whether `waiter` was rung already; if not, records it (the caller rings).
  static bool TestAndSet(uint64_t waiter) {
    std::atomic<uint64_t>& slot = slots_[(waiter * 0x9E3779B97F4A7C15ull) >> (64 - kBits)];
    if (slot.load(std::memory_order_relaxed) == waiter) return true;
    slot.store(waiter, std::memory_order_relaxed);
    return false;
  }

 private:
  static constexpr int kBits = 8;
  static inline std::atomic<uint64_t> slots_[1 << kBits] = {};
};

}  // namespace

absl::StatusOr<Segment> CreateStreamPage() {
  absl::StatusOr<UniqueFd> fd = Segment::CreateMemfd("hsi-run-page", kStreamPageSize);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<Segment> seg = Segment::MapOwner(std::move(*fd), kStreamPageSize);
  if (!seg.ok()) return seg.status();
  auto* page = new (seg->data()) StreamPage{};
  page->magic = kStreamPageMagic;
  // Armed before anyone sees the page: the peer may commit its first bytes
  // before this side has built its StreamEnd, and that commit must ring.
  page->data_arm.store(1, std::memory_order_release);
  return seg;
}

absl::Status CheckStreamPage(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return absl::InvalidArgumentError(absl::StrCat("stream page: fstat: ", std::strerror(errno)));
  if (!S_ISREG(st.st_mode) || st.st_size != static_cast<off_t>(kStreamPageSize)) {
    return absl::InvalidArgumentError(absl::StrCat("stream page: not a ", kStreamPageSize, "-byte memfd"));
  }
  const int seals = ::fcntl(fd, F_GET_SEALS);
  const int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE;
  if (seals < 0 || (seals & need) != need) {
    return absl::InvalidArgumentError("stream page: not sealed against shrink, grow and new writers");
  }
  uint64_t magic = 0;
  if (::pread(fd, &magic, sizeof(magic), 0) != sizeof(magic) || magic != kStreamPageMagic) {
    return absl::InvalidArgumentError("stream page: bad magic");
  }
  return absl::OkStatus();
}

absl::StatusOr<Segment> CreateOwnRing(const RingGeometry& geometry) {
  absl::StatusOr<UniqueFd> fd = CreateRingSegment(geometry, "hsi-run-ring");
  if (!fd.ok()) return fd.status();
  return Segment::MapOwner(std::move(*fd), geometry.segment_size());
}

absl::Status StreamEnd::Init(Segment my_ring, Segment their_ring, Segment my_page, Segment their_page,
                             const RingGeometry& geometry) {
  if (my_page.size() != kStreamPageSize || their_page.size() != kStreamPageSize) {
    return absl::InvalidArgumentError("stream: a control page is not 4 KiB");
  }
  if (static_cast<const StreamPage*>(their_page.data())->magic != kStreamPageMagic) {
    return absl::DataLossError("stream: the peer's control page has a bad magic");
  }
  own_ring_ = std::move(my_ring);
  peer_ring_ = std::move(their_ring);
  own_page_ = std::move(my_page);
  peer_page_ = std::move(their_page);
  const Doorbell* bell = SilentBell();
  if (bell == nullptr) return absl::InternalError("stream: cannot make a pipe for the rings' doorbells");
  absl::StatusOr<RingProducer> tx = RingProducer::Create(own_ring_, peer_ring_, *bell, *bell, geometry);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<RingConsumer> rx = RingConsumer::Create(own_ring_, peer_ring_, *bell, *bell, geometry);
  if (!rx.ok()) return rx.status();
  tx_ = std::move(*tx);
  rx_ = std::move(*rx);
  // Keep no descriptors: a program may close or dup2 over any fd number.
  for (Segment* s : {&own_ring_, &peer_ring_, &own_page_, &peer_page_}) s->ReleaseFd();
  // Armed from the start (CreateStreamPage): the peer's first commit rings.
  data_arm_ = own_page()->data_arm.load(std::memory_order_relaxed);
  return absl::OkStatus();
}

ssize_t StreamEnd::SendBell(int sock, int flags) {
  // Counted before it is sent, and counted and sent as one under a spin
  // lock (a reader thread's space bell and a writer thread's data bell must
  // reach the socket in the order they were counted): a bell the peer sees
  // in the socket is always in the count it loads afterwards, so a reader
  // that emptied the ring drains the bell that woke it (no spurious
  // readiness left for a blocking reader to hang on). A send that fails
  // leaves the count one high: that only happens on a dead connection.
  while (bell_lock_.exchange(1, std::memory_order_acquire) != 0) {
  }
  own_page()->bells_sent.fetch_add(1, std::memory_order_release);
  const char b = 'B';
  const ssize_t n = RawSend(sock, &b, 1, MSG_DONTWAIT | flags);
  bell_lock_.store(0, std::memory_order_release);
  return n;
}

ssize_t StreamEnd::TryWrite(const struct iovec* iov, int iovcnt, int sock) {
  if (failed_ || !tx_.ok()) return -ECONNRESET;
  const size_t want = IovTotal(iov, iovcnt);
  size_t done = 0;
  int i = 0;
  size_t off = 0;  // into iov[i]
  while (done < want) {
    const size_t n = std::min<size_t>(want - done, tx_.mtu());
    uint8_t* p = tx_.TryReserve(n);
    if (p == nullptr) break;
    size_t k = 0;
    while (k < n) {
      while (off == iov[i].iov_len) {
        ++i;
        off = 0;
      }
      const size_t c = std::min(n - k, iov[i].iov_len - off);
      std::memcpy(p + k, static_cast<const uint8_t*>(iov[i].iov_base) + off, c);
      k += c;
      off += c;
    }
    tx_.CommitDeferred(n);
    done += n;
  }
  if (done == 0) return tx_.ok() ? 0 : -ECONNRESET;
  tx_.Publish();
  own_page()->bytes_out.fetch_add(done, std::memory_order_relaxed);
  // Pairs with the consumer's fence in ArmData: either it sees the frames
  // or we see its arm.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint64_t arm = peer_page()->data_arm.load(std::memory_order_acquire);  // loaded once (invariant 2)
  if (PeerMoving()) {
    // The peer's new image arms on a page this side does not have yet:
    // ring every commit until it switches (io.cc asks hsid for it).
    Bell(sock);
  } else if (arm > own_page()->data_rung.load(std::memory_order_relaxed)) {
    own_page()->data_rung.store(arm, std::memory_order_relaxed);
    // The waiter stored with this arm (or with a newer one: then this arm's
    // wait is over or was joined by another sleeper, which stores 0).
    const uint64_t waiter = peer_page()->data_waiter.load(std::memory_order_relaxed);
    if (waiter == 0 || !RungWaiters::TestAndSet(waiter)) Bell(sock);
  }
  return static_cast<ssize_t>(done);
}

ssize_t StreamEnd::TryRead(const struct iovec* iov, int iovcnt, bool peek, int sock) {
  if (failed_ || !rx_.ok()) return -ECONNRESET;
  const size_t want = IovTotal(iov, iovcnt);
  size_t done = 0;
  bool released = false;
  Frame f;
  while (done < want && PeekFrame(&f)) {
    const size_t avail = f.payload.size() - rx_offset_;
    const size_t k = CopyOut(iov, iovcnt, done, f.payload.data() + rx_offset_, std::min(avail, want - done));
    done += k;
    if (peek) break;
    if (k == avail) {
      rx_.ReleaseDeferred();
      rx_offset_ = 0;
      released = true;
    } else {
      rx_offset_ += k;
    }
  }
  if (failed_ || !rx_.ok()) return -ECONNRESET;
  if (released) {
    rx_.Publish();
    // Pairs with the producer's fence in ArmSpace.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint64_t arm = peer_page()->space_arm.load(std::memory_order_acquire);
    if (arm > own_page()->space_rung.load(std::memory_order_relaxed)) {
      own_page()->space_rung.store(arm, std::memory_order_relaxed);
      own_page()->space_futex.fetch_add(1, std::memory_order_release);
      internal::FutexWake(reinterpret_cast<const uint32_t*>(&own_page()->space_futex));
      Bell(sock);
    }
  }
  if (!peek) own_page()->bytes_in.fetch_add(done, std::memory_order_relaxed);
  return static_cast<ssize_t>(done);
}

bool StreamEnd::ArmData(int sock, uint64_t waiter) {
  // Bells the peer counted before this arm: those are ours to drain. A bell
  // it sends for this arm is counted later and stays in the socket.
  const uint64_t counted = peer_page()->bells_sent.load(std::memory_order_acquire);
  own_page()->data_waiter.store(waiter, std::memory_order_relaxed);  // published by the arm below
  own_page()->data_arm.store(++data_arm_, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  Frame f;
  if (PeekFrame(&f) || !rx_.ok() || failed_) return false;
  DrainBells(sock, counted);
  return true;
}

bool StreamEnd::DrainStale(int sock) {
  // As in ArmData: a bell counted before the ring is seen empty announced a
  // frame that is consumed already, so it is stale; a later one stays.
  const uint64_t counted = peer_page()->bells_sent.load(std::memory_order_acquire);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  Frame f;
  if (PeekFrame(&f) || !rx_.ok() || failed_) return false;
  DrainBells(sock, counted);
  return true;
}

void StreamEnd::DrainBells(int sock, uint64_t counted) {
  // A hostile count (below what we drained, or huge) only changes how many
  // bells of this connection we read; every byte on it is a bell.
  uint64_t owed = counted > bells_drained_ ? counted - bells_drained_ : 0;
  char buf[256];
  while (owed > 0) {
    const ssize_t n = RawRecv(sock, buf, std::min<uint64_t>(owed, sizeof(buf)), MSG_DONTWAIT);
    if (n <= 0) break;  // not arrived yet (drained next time), EOF or an error: the caller looks
    bells_drained_ += static_cast<uint64_t>(n);
    owed -= static_cast<uint64_t>(n);
  }
}

bool StreamEnd::ArmSpace(size_t need) {
  // One request at a time: while the consumer has not answered the last
  // one (its space_rung is below it), asking again would only make it send
  // one more bell per release to a producer that spins (a non-blocking
  // writer whose POLLOUT is always true).
  const uint64_t rung = peer_page()->space_rung.load(std::memory_order_acquire);
  if (rung >= space_arm_) {
    // Read before arming, so that a ring between the arm and WaitSpace()
    // is not missed (the futex compares against it).
    space_ticket_ = peer_page()->space_futex.load(std::memory_order_acquire);
    own_page()->space_arm.store(++space_arm_, std::memory_order_seq_cst);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return tx_.ok() && tx_.TryReserve(std::min<size_t>(std::max<size_t>(need, 1), tx_.mtu())) == nullptr;
}

void StreamEnd::WaitSpace(int timeout_ms) const {
  // A shared futex on the peer's read-only page (internal/futex.h): the
  // consumer wakes it through its own mapping of the same memfd page.
  internal::FutexWaitUntil(reinterpret_cast<const uint32_t*>(&peer_page()->space_futex), space_ticket_,
                           absl::Now() + absl::Milliseconds(timeout_ms));
}

size_t StreamEnd::Readable() {
  Frame f;
  if (!PeekFrame(&f)) return 0;
  return f.payload.size() - rx_offset_;
}

bool StreamEnd::PeekFrame(Frame* f) {
  if (rx_.TryPeek(f)) return true;
  if (!rx_switch_pending_ || !rx_.ok() || failed_ || rx_offset_ != 0) return false;
  // The old ring is drained and final (its writer's image is gone: hsid
  // had the next generation): continue on the new ring at the same
  // position, with the head published so the new writer sees it.
  rx_.Publish();
  const Doorbell* bell = SilentBell();
  absl::StatusOr<RingConsumer> rx = RingConsumer::Create(own_ring_, peer_ring_, *bell, *bell, rx_.geometry());
  if (!rx.ok()) {
    failed_ = true;  // a bad new ring breaks this stream only
    return false;
  }
  rx_ = std::move(*rx);
  old_peer_ring_ = Segment();
  rx_switch_pending_ = false;
  own_page()->peer_gen.store(peer_gen_fetched_, std::memory_order_release);
  return rx_.TryPeek(f);
}

absl::Status StreamEnd::Export(StreamCarry* out) {
  if (rx_switch_pending_) {
    return absl::FailedPreconditionError("stream: the peer's ring from before its own exec is not drained yet");
  }
  if (broken()) return absl::FailedPreconditionError("stream: broken");
  rx_.Publish();  // the head the new image continues from is in the segment too
  const StreamPage* p = own_page();
  out->tail = tx_.position();
  out->head = rx_.position();
  out->rx_offset = rx_offset_;
  out->bells_drained = bells_drained_;
  out->bells_sent = p->bells_sent.load(std::memory_order_relaxed);
  out->data_arm = p->data_arm.load(std::memory_order_relaxed);
  out->data_rung = p->data_rung.load(std::memory_order_relaxed);
  out->space_arm = p->space_arm.load(std::memory_order_relaxed);
  out->space_rung = p->space_rung.load(std::memory_order_relaxed);
  out->bytes_out = p->bytes_out.load(std::memory_order_relaxed);
  out->bytes_in = p->bytes_in.load(std::memory_order_relaxed);
  out->gen = gen_;
  out->peer_gen = p->peer_gen.load(std::memory_order_relaxed);
  // After the last commit (TryWrite published under the caller's lock):
  // a peer that sees the mark and then an empty ring has every frame.
  own_page()->moving.store(1, std::memory_order_seq_cst);
  return absl::OkStatus();
}

absl::Status StreamEnd::Seed(const Segment& own_ring, const Segment& own_page, const StreamCarry& c) {
  if (absl::Status s = SeedRingPositions(own_ring, c.tail, c.head); !s.ok()) return s;
  if (own_page.size() != kStreamPageSize || !own_page.writable()) return absl::InvalidArgumentError("stream: bad own page");
  auto* p = static_cast<StreamPage*>(own_page.data());
  p->bells_sent.store(c.bells_sent, std::memory_order_relaxed);
  // Armed from the start, as a new page is: the peer's next commit rings.
  p->data_arm.store(c.data_arm + 1, std::memory_order_relaxed);
  p->data_rung.store(c.data_rung, std::memory_order_relaxed);
  p->space_arm.store(c.space_arm, std::memory_order_relaxed);
  p->space_rung.store(c.space_rung, std::memory_order_relaxed);
  p->bytes_out.store(c.bytes_out, std::memory_order_relaxed);
  p->bytes_in.store(c.bytes_in, std::memory_order_relaxed);
  p->peer_gen.store(c.peer_gen, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status StreamEnd::Resume(Segment own_ring, Segment peer_ring, Segment own_page, Segment peer_page,
                               const RingGeometry& geometry, const StreamCarry& c, uint64_t gen) {
  if (absl::Status s = Init(std::move(own_ring), std::move(peer_ring), std::move(own_page), std::move(peer_page), geometry);
      !s.ok()) {
    return s;
  }
  if (tx_.position() != c.tail || rx_.position() != c.head) {
    return absl::DataLossError("stream: the new segments do not continue at the carried positions");
  }
  rx_offset_ = c.rx_offset;
  if (rx_offset_ != 0) {
    // The carried offset is into the frame at `head`: it must be inside it
    // (CopyOut would read past the frame otherwise).
    Frame f;
    if (!rx_.TryPeek(&f) || rx_offset_ >= f.payload.size()) {
      return absl::DataLossError("stream: the carried read offset is not inside the peer's next frame");
    }
  }
  bells_drained_ = c.bells_drained;
  space_arm_ = c.space_arm;
  gen_ = gen;
  peer_gen_fetched_ = c.peer_gen;
  return absl::OkStatus();
}

absl::Status StreamEnd::SwitchPeer(Segment peer_ring, Segment peer_page, uint64_t peer_gen) {
  if (rx_switch_pending_) return absl::FailedPreconditionError("stream: a switch is pending already");
  if (peer_page.size() != kStreamPageSize ||
      static_cast<const StreamPage*>(peer_page.data())->magic != kStreamPageMagic) {
    return absl::DataLossError("stream: the peer's new control page has a bad magic");
  }
  const Doorbell* bell = SilentBell();
  // The writer's side switches at once: the peer's new image keeps its
  // consumer state in the new segment (tx_ continues at its own tail).
  absl::StatusOr<RingProducer> tx = RingProducer::Create(own_ring_, peer_ring, *bell, *bell, tx_.geometry());
  if (!tx.ok()) return tx.status();
  tx_ = std::move(*tx);
  old_peer_ring_ = std::move(peer_ring_);
  peer_ring_ = std::move(peer_ring);
  peer_page_ = std::move(peer_page);
  for (Segment* s : {&peer_ring_, &peer_page_}) s->ReleaseFd();
  peer_gen_fetched_ = peer_gen;
  rx_switch_pending_ = true;
  return absl::OkStatus();
}

}  // namespace hsi
