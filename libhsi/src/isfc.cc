// isfc.cc: an ISFC logical link over CTC devices (hsi/isfc.h).
//
// One thread per device runs its "channel program": write the chunk the
// dispatcher assigned to it, else wait for the peer's write and take it.
// The dispatcher (under the link's mutex) hands the lowest queued chunk to
// the first free device in this side's write order, keeping a small queue
// on this side's reserved devices for up to spill_wait (a timer thread
// dispatches again when that runs out) and off devices the peer is
// writing.
#include "hsi/isfc.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace hsi {
namespace {

constexpr uint32_t kChunkMagic = 0x43465349;  // "ISFC"
enum : uint16_t { kData = 1, kHello = 2 };

// The 32-byte chunk header, first in every CTC write of a link.
struct ChunkHeader {
  uint32_t magic;
  uint16_t type;
  uint16_t mode;  // hello: the sender's IsfcMode
  uint64_t seq;
  uint32_t msg_len;
  uint32_t offset;
  uint32_t len;  // payload bytes after the header
  uint32_t reserved;
};
static_assert(sizeof(ChunkHeader) == kIsfcChunkHeader && std::is_trivially_copyable_v<ChunkHeader>);

// Waits on `cv` until `pred` or `deadline`; whether `pred` holds.
template <typename Pred>
bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& l, absl::Time deadline, Pred pred) {
  if (deadline == absl::InfiniteFuture()) {
    cv.wait(l, pred);
    return true;
  }
  return cv.wait_until(l, absl::ToChronoTime(deadline), pred);
}

struct Chunk {
  uint64_t seq = 0;
  std::vector<uint8_t> bytes;  // header + payload
  absl::Time queued;           // first queued (not reset by a give-back)
};

std::vector<uint8_t> MakeChunk(uint16_t type, uint16_t mode, uint64_t seq, uint32_t msg_len, uint32_t offset,
                               absl::Span<const uint8_t> payload) {
  std::vector<uint8_t> b(kIsfcChunkHeader + payload.size());
  const ChunkHeader h{kChunkMagic, type, mode, seq, msg_len, offset, static_cast<uint32_t>(payload.size()), 0};
  std::memcpy(b.data(), &h, sizeof(h));
  if (!payload.empty()) std::memcpy(b.data() + kIsfcChunkHeader, payload.data(), payload.size());
  return b;
}

}  // namespace

struct IsfcLink::State {
  struct Dev {
    std::shared_ptr<CtcDevice> ctc;
    DeviceNumber device, key;
    int self_rank = -1, peer_rank = -1;
    std::string why;
    bool up = true, removing = false;
    std::optional<Chunk> assigned;  // being written by this device's thread
    std::thread thread;
    // kConvention: this side writes it and the peer does not.
    bool reserved() const { return self_rank >= 0 && peer_rank < 0; }
  };
  struct Held {  // a chunk taken out of order, and the device it came on
    std::vector<uint8_t> bytes;
    std::shared_ptr<CtcDevice> from;
  };

  IsfcOptions opt;
  uint32_t block = 0;
  // mu guards everything below; cv is notified after any change a waiter
  // waits for (a chunk taken, a message ready, the hello, room, stopping).
  mutable std::mutex mu;
  std::condition_variable cv;
  // The spill timer: when a small queue may spill (InfiniteFuture: none
  // due); timer_cv is notified when it moves earlier or the link stops.
  absl::Time spill_at = absl::InfiniteFuture();
  std::condition_variable timer_cv;
  std::thread timer;
  std::vector<std::unique_ptr<Dev>> devs;  // ascending by key
  WritePlan plan;
  bool stopping = false;
  // Sender.
  uint64_t next_seq = 1;        // 0 is the hello
  std::map<uint64_t, Chunk> queue;  // waiting for a device
  size_t queued_bytes = 0;          // of `queue`
  std::set<uint64_t> unacked;   // queued or being written
  size_t unacked_bytes = 0;
  // Receiver.
  bool hello_seen = false;
  absl::Status hello_status;
  uint64_t recv_next = 1;
  std::map<uint64_t, Held> reorder;
  std::vector<uint8_t> assembling;
  uint32_t assembling_len = 0;
  std::deque<std::vector<uint8_t>> ready;
  size_t ready_bytes = 0;
  IsfcStats stats;

  size_t payload() const { return block - kIsfcChunkHeader; }
  DeviceNumber KeyOf(const CtcDevice& d) const {
    return opt.self < opt.peer ? d.options().device : d.options().peer_device;
  }

  absl::Status Replan() {
    std::vector<DeviceNumber> keys;
    for (const auto& d : devs) keys.push_back(d->key);
    if (keys.empty()) {
      plan = WritePlan{};
      return absl::OkStatus();
    }
    absl::StatusOr<WritePlan> p = PlanWrites(opt.self, opt.peer, keys, opt.mode);
    if (!p.ok()) return p.status();
    plan = std::move(*p);
    std::sort(devs.begin(), devs.end(), [](const auto& a, const auto& b) { return a->key < b->key; });
    for (size_t i = 0; i < devs.size(); ++i) {
      devs[i]->self_rank = plan.devices[i].self_rank;
      devs[i]->peer_rank = plan.devices[i].peer_rank;
      devs[i]->why = plan.devices[i].why;
    }
    return absl::OkStatus();
  }

  Dev* ByKey(DeviceNumber k) {
    for (auto& d : devs) {
      if (d->key == k) return d.get();
    }
    return nullptr;
  }

  // Hands the lowest queued chunks to the free devices, first in this
  // side's order first; never past the window. Under the convention a
  // device the peer also writes gets a chunk only if the queue is more
  // than this side's reserved devices carry in one round or its head has
  // waited spill_wait (else the timer is set for then), and only while the
  // peer has no write in flight on it.
  void Dispatch() {
    const bool convention = opt.mode == IsfcMode::kConvention;
    size_t reserved = 0;
    if (convention) {
      for (const auto& d : devs) reserved += d->reserved() && d->up && !d->removing;
    }
    for (DeviceNumber k : plan.self_order) {
      if (queue.empty()) return;
      Dev* d = ByKey(k);
      if (d == nullptr || !d->up || d->removing || d->assigned) continue;
      auto it = queue.begin();
      if (!unacked.empty() && it->first >= *unacked.begin() + opt.window) return;
      bool spill = false;
      if (convention && !d->reserved()) {
        if (queued_bytes <= reserved * block) {
          const absl::Time due = it->second.queued + opt.spill_wait;
          if (absl::Now() < due) {
            if (due < spill_at) {
              spill_at = due;
              timer_cv.notify_all();
            }
            return;  // the rest of this side's order is shared too
          }
          spill = true;
        }
        if (d->ctc->PeerBusy()) continue;  // its write would collide
      }
      if (spill) ++stats.spilled_chunks;
      queued_bytes -= it->second.bytes.size();
      d->assigned = std::move(it->second);
      queue.erase(it);
      d->ctc->Interrupt();  // out of WaitIncoming, to write
    }
  }

  // The spill timer's thread: dispatches again when a small queue's wait
  // for a reserved device runs out.
  void Timer() {
    std::unique_lock<std::mutex> l(mu);
    while (!stopping) {
      if (spill_at == absl::InfiniteFuture()) {
        timer_cv.wait(l);
      } else if (timer_cv.wait_until(l, absl::ToChronoTime(spill_at)) == std::cv_status::timeout) {
        spill_at = absl::InfiniteFuture();
        Dispatch();
      }
    }
  }

  void Enqueue(Chunk c) {
    queued_bytes += c.bytes.size();
    const uint64_t seq = c.seq;
    queue.emplace(seq, std::move(c));
  }

  // Gives `d`'s unfinished chunk back to the queue.
  void GiveBack(Dev& d) {
    if (!d.assigned) return;
    Enqueue(std::move(*d.assigned));
    d.assigned.reset();
    ++stats.resent_chunks;
  }

  void Acked(Dev& d) {
    unacked.erase(d.assigned->seq);
    unacked_bytes -= d.assigned->bytes.size();
    d.assigned.reset();
  }

  // A chunk the peer wrote on `from`: checked, then put in order. Waits
  // while receive_buffer bytes of messages wait for Receive().
  absl::Status Accept(std::vector<uint8_t>& buf, const std::shared_ptr<CtcDevice>& from,
                      std::unique_lock<std::mutex>& l) {
    ChunkHeader h;
    if (buf.size() < sizeof(h)) return absl::DataLossError(absl::StrCat("ISFC chunk of ", buf.size(), " bytes"));
    std::memcpy(&h, buf.data(), sizeof(h));
    if (h.magic != kChunkMagic || h.reserved != 0 || buf.size() != kIsfcChunkHeader + h.len) {
      return absl::DataLossError("ISFC chunk: bad magic, reserved field or length");
    }
    if (h.type == kHello) {
      const std::string name(reinterpret_cast<const char*>(buf.data() + kIsfcChunkHeader), h.len);
      if (name != opt.peer || h.mode != static_cast<uint16_t>(opt.mode)) {
        hello_status = absl::FailedPreconditionError(
            absl::StrCat("ISFC link ", opt.self, "<->", opt.peer, ": the other end is system \"", name, "\" in ",
                         h.mode == 0 ? "convention" : "naive", " mode"));
      }
      hello_seen = true;
      cv.notify_all();
      return absl::OkStatus();
    }
    if (h.type != kData) return absl::DataLossError(absl::StrCat("ISFC chunk type ", h.type));
    if (h.seq < recv_next || reorder.count(h.seq) != 0) {
      ++stats.duplicate_chunks;
      return absl::OkStatus();
    }
    if (h.seq >= recv_next + opt.window) {
      return absl::DataLossError(absl::StrCat("ISFC chunk ", h.seq, " outside the window [", recv_next, ", ",
                                              recv_next + opt.window, ")"));
    }
    if (h.len == 0 || h.len > payload() || h.msg_len == 0 || h.msg_len > opt.max_message ||
        uint64_t{h.offset} + h.len > h.msg_len) {
      return absl::DataLossError(absl::StrCat("ISFC chunk ", h.seq, ": length ", h.len, " at ", h.offset,
                                              " of a message of ", h.msg_len));
    }
    cv.wait(l, [this] { return stopping || ready_bytes < opt.receive_buffer; });
    if (stopping) return absl::CancelledError("ISFC link deactivated");
    reorder.emplace(h.seq, Held{std::move(buf), from});
    for (auto it = reorder.find(recv_next); it != reorder.end(); it = reorder.find(recv_next)) {
      ChunkHeader c;
      std::memcpy(&c, it->second.bytes.data(), sizeof(c));
      const bool first = assembling.empty() && assembling_len == 0;
      if ((first && c.offset != 0) || (!first && (c.offset != assembling.size() || c.msg_len != assembling_len))) {
        it->second.from->TakeDown(absl::DataLossError(absl::StrCat("ISFC chunk ", c.seq, ": offset ", c.offset,
                                                                   " does not continue the message")));
        reorder.erase(it);
        break;
      }
      if (first) {
        assembling_len = c.msg_len;
        assembling.reserve(c.msg_len);
      }
      assembling.insert(assembling.end(), it->second.bytes.begin() + kIsfcChunkHeader, it->second.bytes.end());
      reorder.erase(it);
      ++recv_next;
      if (assembling.size() == assembling_len) {
        ready_bytes += assembling.size();
        ++stats.messages_received;
        stats.bytes_received += assembling.size();
        ready.push_back(std::move(assembling));
        assembling = {};
        assembling_len = 0;
      }
    }
    return absl::OkStatus();
  }

  // The channel program of device `d`.
  void Run(Dev* d) {
    std::vector<uint8_t> buf;
    // Jitter for collision retries: a private xorshift, seeded per thread
    // (absl::BitGen's shared seed pool is invisible to TSan in Debian's
    // uninstrumented absl, and no randomness quality matters here).
    uint64_t rng = (static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^ reinterpret_cast<uintptr_t>(d)) | 1;
    auto uniform01 = [&rng] {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      return static_cast<double>(rng >> 11) / static_cast<double>(uint64_t{1} << 53);
    };
    // kNaive writes at once, as a link that ignores the device's state
    // would; only after a collision does it first take the peer's write
    // (else the two retries could collide for ever).
    const bool convention = opt.mode == IsfcMode::kConvention;
    bool after_collision = false;
    for (;;) {
      const std::vector<uint8_t>* work = nullptr;
      {
        std::unique_lock<std::mutex> l(mu);
        // Under mu, as every Interrupt() of the link is: one that comes
        // after this is for a Write this thread must not finish.
        d->ctc->ClearInterrupt();
        if (stopping || d->removing || !d->up) break;
        if (d->assigned) work = &d->assigned->bytes;  // only this thread resets it while it runs
      }
      absl::StatusOr<bool> got = false;
      if (work != nullptr) {
        // kConvention: the device is busy while the peer's write is
        // pending on it (a write started now would collide, as on the real
        // channel): take that write first, then write if it is still idle.
        // Two ends that both find it idle and start at once still collide.
        if (convention || after_collision) got = d->ctc->TryCopy(&buf);
        after_collision = false;
        if (got.ok() && !*got) {
          const absl::StatusOr<bool> started = convention
                                                   ? d->ctc->WriteIfIdle(*work, absl::InfiniteFuture())
                                                   : absl::StatusOr<bool>(true);
          if (started.ok() && !*started) continue;  // the peer's write came first: take it, then write
          const absl::Status s =
              convention ? started.status() : d->ctc->Write(*work, absl::InfiniteFuture());
          if (absl::IsAborted(s)) {
            after_collision = true;
            // Both sides recover alike; a random extra wait of up to one
            // recovery delay keeps two retries from colliding for ever.
            absl::SleepFor(d->ctc->options().recovery * uniform01());
          }
          std::unique_lock<std::mutex> l(mu);
          if (s.ok()) {
            Acked(*d);
          } else {
            GiveBack(*d);  // collision: resent after recovery; down: resent elsewhere
            if (!absl::IsAborted(s) && !absl::IsCancelled(s)) d->up = false;
          }
          Dispatch();
          cv.notify_all();
          continue;
        }
      } else {
        absl::Status w = d->ctc->WaitIncoming(absl::InfiniteFuture());
        if (absl::IsCancelled(w)) continue;
        got = w.ok() ? d->ctc->TryCopy(&buf) : absl::StatusOr<bool>(w);
      }
      if (got.ok() && !*got) continue;
      absl::Status a = got.status();
      if (a.ok()) {
        std::unique_lock<std::mutex> l(mu);
        a = Accept(buf, d->ctc, l);
        cv.notify_all();
        if (a.ok()) {
          d->ctc->Complete();
          // The device is idle until the peer writes again: the moment a
          // chunk that waits for a device the peer also writes may go.
          Dispatch();
          continue;
        }
      }
      if (absl::IsCancelled(a)) break;
      if (absl::IsDataLoss(a)) d->ctc->TakeDown(a);  // a broken chunk breaks its device only
      std::unique_lock<std::mutex> l(mu);
      d->up = false;
      break;
    }
    std::unique_lock<std::mutex> l(mu);
    GiveBack(*d);
    Dispatch();
    cv.notify_all();
  }

  void Start(Dev* d) { d->thread = std::thread([this, d] { Run(d); }); }

  // This side's devices, to declare to hsid.
  std::vector<DeviceNumber> DeviceNumbers() const {
    std::vector<DeviceNumber> v;
    for (const auto& d : devs) {
      if (!d->removing) v.push_back(d->device);
    }
    return v;
  }
  absl::Status Declare(bool active) {
    if (opt.host == nullptr) return absl::OkStatus();
    return opt.host->DeclareIsfc(opt.peer, opt.mode, DeviceNumbers(), active);
  }
};

absl::StatusOr<std::unique_ptr<IsfcLink>> IsfcLink::Activate(IsfcOptions options,
                                                             std::vector<std::shared_ptr<CtcDevice>> devices) {
  const std::string where = absl::StrCat("ISFC link ", options.self, "<->", options.peer);
  if (options.max_message < 1 || options.max_message > kMaxIsfcMessage) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": max_message must be 1..", kMaxIsfcMessage));
  }
  if (options.window < 1 || options.self.size() + kIsfcChunkHeader > 64) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": window must be >= 1 and names short"));
  }
  if (devices.empty() || devices.size() > static_cast<size_t>(kMaxIsfcDevices)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", devices.size(), " devices; a link has 1 to 16"));
  }
  auto s = std::make_shared<State>();
  s->opt = std::move(options);
  s->block = devices[0] ? devices[0]->options().block_size : 0;
  std::unique_lock<std::mutex> l(s->mu);
  for (auto& dev : devices) {
    if (!dev || !dev->valid()) return absl::InvalidArgumentError(absl::StrCat(where, ": a device is missing"));
    const CtcOptions& o = dev->options();
    if (o.block_size != s->block) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": device ", o.device.ToString(), " has block size ",
                                                     o.block_size, ", the others ", s->block));
    }
    if (!o.peer_lpar.empty() && o.peer_lpar != s->opt.peer) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": device ", o.device.ToString(), " leads to LPAR ", o.peer_lpar));
    }
    auto d = std::make_unique<State::Dev>();
    d->ctc = dev;
    d->device = o.device;
    d->key = s->KeyOf(*dev);
    s->devs.push_back(std::move(d));
  }
  if (absl::Status st = s->Replan(); !st.ok()) return st;
  if (absl::Status st = s->Declare(true); !st.ok()) return st;
  // The hello: first in the queue, so the first write of this side.
  const std::vector<uint8_t> name(s->opt.self.begin(), s->opt.self.end());
  Chunk hello{0, MakeChunk(kHello, static_cast<uint16_t>(s->opt.mode), 0, 0, 0, name), absl::Now()};
  s->unacked.insert(0);
  s->unacked_bytes += hello.bytes.size();
  s->Enqueue(std::move(hello));
  for (auto& d : s->devs) s->Start(d.get());
  State* raw = s.get();
  s->timer = std::thread([raw] { raw->Timer(); });
  s->Dispatch();
  return std::unique_ptr<IsfcLink>(new IsfcLink(std::move(s)));
}

IsfcLink::~IsfcLink() {
  std::vector<std::thread> threads;
  {
    std::unique_lock<std::mutex> l(state_->mu);
    state_->stopping = true;
    state_->cv.notify_all();
    state_->timer_cv.notify_all();
    threads.push_back(std::move(state_->timer));
    for (auto& d : state_->devs) {
      d->ctc->Interrupt();
      threads.push_back(std::move(d->thread));
    }
  }
  for (std::thread& t : threads) t.join();
  for (auto& d : state_->devs) d->ctc->ClearInterrupt();
  (void)state_->Declare(false);  // best effort: hsid forgets it with the client anyway
}

absl::Status IsfcLink::WaitActive(absl::Time deadline) {
  State& s = *state_;
  std::unique_lock<std::mutex> l(s.mu);
  if (!WaitUntil(s.cv, l, deadline, [&s] { return s.hello_seen; })) {
    return absl::DeadlineExceededError(absl::StrCat("ISFC link ", s.opt.self, "<->", s.opt.peer, ": system ",
                                                    s.opt.peer, " has not activated its side"));
  }
  return s.hello_status;
}

absl::Status IsfcLink::AddDevice(std::shared_ptr<CtcDevice> device) {
  State& s = *state_;
  std::unique_lock<std::mutex> l(s.mu);
  if (!device || !device->valid()) return absl::InvalidArgumentError("ISFC AddDevice: no device");
  const CtcOptions& o = device->options();
  if (s.devs.size() >= static_cast<size_t>(kMaxIsfcDevices)) {
    return absl::ResourceExhaustedError(absl::StrCat("ISFC link: has 16 devices; cannot add ", o.device.ToString()));
  }
  if (o.block_size != s.block) {
    return absl::InvalidArgumentError(absl::StrCat("ISFC link: device ", o.device.ToString(), " has block size ",
                                                   o.block_size, ", the link ", s.block));
  }
  for (const auto& d : s.devs) {
    if (d->device == o.device || d->key == s.KeyOf(*device)) {
      return absl::AlreadyExistsError(absl::StrCat("ISFC link: device ", o.device.ToString(), " is in it already"));
    }
  }
  auto d = std::make_unique<State::Dev>();
  d->ctc = std::move(device);
  d->device = o.device;
  d->key = s.KeyOf(*d->ctc);
  State::Dev* raw = d.get();
  s.devs.push_back(std::move(d));
  if (absl::Status st = s.Replan(); !st.ok()) return st;
  s.Start(raw);
  s.Dispatch();
  return s.Declare(true);
}

absl::Status IsfcLink::RemoveDevice(DeviceNumber device) {
  State& s = *state_;
  std::thread t;
  {
    std::unique_lock<std::mutex> l(s.mu);
    auto it = std::find_if(s.devs.begin(), s.devs.end(), [&](const auto& d) { return d->device == device; });
    if (it == s.devs.end() || (*it)->removing) {
      return absl::NotFoundError(absl::StrCat("ISFC link: device ", device.ToString(), " is not in it"));
    }
    (*it)->removing = true;
    (*it)->ctc->Interrupt();
    t = std::move((*it)->thread);
  }
  if (t.joinable()) t.join();  // its unfinished chunk is back in the queue
  std::unique_lock<std::mutex> l(s.mu);
  auto it = std::find_if(s.devs.begin(), s.devs.end(), [&](const auto& d) { return d->device == device; });
  if (it == s.devs.end()) return absl::OkStatus();  // the destructor got there first
  (*it)->ctc->ClearInterrupt();
  s.devs.erase(it);
  absl::Status st = s.Replan();
  s.Dispatch();
  if (st.ok()) st = s.Declare(true);
  return st;
}

absl::Status IsfcLink::Send(absl::Span<const uint8_t> message, absl::Time deadline) {
  State& s = *state_;
  if (message.empty() || message.size() > s.opt.max_message) {
    return absl::InvalidArgumentError(absl::StrCat("ISFC link ", s.opt.self, "<->", s.opt.peer, ": message of ",
                                                   message.size(), " bytes; the link carries 1..", s.opt.max_message));
  }
  std::unique_lock<std::mutex> l(s.mu);
  if (!WaitUntil(s.cv, l, deadline, [&s] { return s.unacked_bytes < s.opt.send_buffer; })) {
    return absl::DeadlineExceededError(absl::StrCat("ISFC link ", s.opt.self, "<->", s.opt.peer,
                                                    ": send buffer full until the deadline"));
  }
  // Room for one byte is room for the message: a message is never queued in part.
  const size_t step = s.payload();
  const absl::Time now = absl::Now();
  for (size_t off = 0; off < message.size(); off += step) {
    const size_t n = std::min(step, message.size() - off);
    const uint64_t seq = s.next_seq++;
    Chunk c{seq, MakeChunk(kData, 0, seq, static_cast<uint32_t>(message.size()), static_cast<uint32_t>(off),
                           message.subspan(off, n)),
            now};
    s.unacked.insert(c.seq);
    s.unacked_bytes += c.bytes.size();
    s.Enqueue(std::move(c));
  }
  ++s.stats.messages_sent;
  s.stats.bytes_sent += message.size();
  s.Dispatch();
  return absl::OkStatus();
}

absl::Status IsfcLink::Flush(absl::Time deadline) {
  State& s = *state_;
  std::unique_lock<std::mutex> l(s.mu);
  if (!WaitUntil(s.cv, l, deadline, [&s] { return s.unacked.empty(); })) {
    return absl::DeadlineExceededError(absl::StrCat("ISFC link ", s.opt.self, "<->", s.opt.peer, ": ",
                                                    s.unacked.size(), " chunks not yet taken"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> IsfcLink::Receive(absl::Time deadline) {
  State& s = *state_;
  std::unique_lock<std::mutex> l(s.mu);
  if (!WaitUntil(s.cv, l, deadline, [&s] { return !s.ready.empty(); })) {
    return absl::DeadlineExceededError(absl::StrCat("ISFC link ", s.opt.self, "<->", s.opt.peer, ": no message"));
  }
  std::vector<uint8_t> m = std::move(s.ready.front());
  s.ready.pop_front();
  s.ready_bytes -= m.size();
  s.cv.notify_all();  // room for a device thread waiting in Accept
  return m;
}

WritePlan IsfcLink::plan() const {
  std::unique_lock<std::mutex> l(state_->mu);
  return state_->plan;
}

std::vector<IsfcDeviceInfo> IsfcLink::devices() const {
  std::unique_lock<std::mutex> l(state_->mu);
  std::vector<IsfcDeviceInfo> out;
  for (const auto& d : state_->devs) {
    out.push_back(IsfcDeviceInfo{d->device, d->key, d->self_rank, d->peer_rank, d->why,
                                 d->up && d->ctc->status().ok(), d->ctc->counters()});
  }
  return out;
}

IsfcStats IsfcLink::stats() const {
  std::unique_lock<std::mutex> l(state_->mu);
  return state_->stats;
}

std::string IsfcLink::Describe() const {
  const std::vector<IsfcDeviceInfo> devs = devices();
  std::string out = absl::StrFormat("%-6s %-5s %-6s %-6s %-5s %10s %14s %10s %14s %6s %10s  %s\n", "DEVICE", "KEY",
                                    "SELF", "PEER", "STATE", "SENT", "SENT_BYTES", "TAKEN", "TAKEN_BYTES", "COLL",
                                    "RECOVERY", "WHY");
  auto rank = [](int r) { return r < 0 ? std::string("-") : absl::StrCat("#", r + 1); };
  for (const IsfcDeviceInfo& d : devs) {
    absl::StrAppend(&out, absl::StrFormat("%-6s %-5s %-6s %-6s %-5s %10d %14d %10d %14d %6d %10s  %s\n",
                                          d.device.ToString(), d.key.ToString(), rank(d.self_rank), rank(d.peer_rank),
                                          d.up ? "up" : "down", d.counters.writes, d.counters.bytes_written,
                                          d.counters.reads, d.counters.bytes_read, d.counters.collisions,
                                          absl::FormatDuration(absl::Nanoseconds(d.counters.recovery_ns)), d.why));
  }
  return out;
}

}  // namespace hsi
