#include "hsi/sniffer.h"

#include <poll.h>
#include <time.h>

#include <cstring>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "hsi/fd.h"
#include "hsi/ring.h"
#include "hsi/segment.h"
#include "hsi/session.h"
#include "internal/control_channel.h"
#include "hsi/wire/protocol.h"
#include "internal/ring_layout.h"
#include "internal/session_state.h"

namespace hsi {
namespace {

using internal::kRecordAlign;
using internal::Record;
using internal::SegmentHeader;
using internal::SegmentLayout;

// How far (in bytes) the producer's published tail may be ahead of a frame
// the tap copies before the copy is distrusted: 3/4 of the ring. The margin
// covers frames the producer committed but has not published yet.
uint64_t LapLimit(uint64_t capacity) { return capacity - capacity / 4; }

// One direction of a link: the producer's segment, read-only.
struct Tap {
  TapDirection info;
  const uint8_t* data = nullptr;       // data area of the producer's segment
  const SegmentLayout* layout = nullptr;
  uint64_t capacity = 0, mask = 0, nonce = 0;
  uint32_t mtu = 0;
  uint64_t pos = 0;          // next ring position to read
  uint64_t base_frames = 0;  // producer's frame counter when we started
  bool broadcast_dst = false;

  uint64_t Tail() const {
    // Acquire pairs with the producer's release of tail in Publish().
    return layout->tx.tail.load(std::memory_order_acquire);
  }
  // The producer may have come round the ring onto the record at `pos`:
  // its published tail is more than LapLimit ahead. (A record that starts
  // where this one does is caught by the seqlock re-check; this catches one
  // that starts before it and runs over it.)
  bool Lapped() const {
    const uint64_t tail = Tail();
    return tail > pos && tail - pos > LapLimit(capacity);
  }
  std::string Name() const {
    return absl::StrCat("link ", info.source.ToString(), "->", info.destination.ToString());
  }
  // Acquire pairs with the producer's release of the count in Publish(),
  // which follows its release of the tail: a Tail() read after Frames()
  // covers at least the frames counted.
  uint64_t Frames() const { return layout->tx_counters.frames.load(std::memory_order_acquire); }
  // Frames the producer says it committed since we started, from a count
  // `now` it wrote: one that went backwards (a hostile or broken peer)
  // counts as nothing produced, not as 2^64 missed.
  uint64_t ProducedSince(uint64_t now) const { return now >= base_frames ? now - base_frames : 0; }
  // Whatever the producer counted that we neither captured nor counted yet
  // was overwritten before we read it.
  void SettleMissed(uint64_t now) {
    const uint64_t produced = ProducedSince(now);
    if (produced > info.captured + info.missed) info.missed = produced - info.captured;
  }
  void Break(absl::Status s) {
    if (info.status.ok()) info.status = std::move(s);
  }
  // The producer lapped us (or may have): jump to its tail, count the skip.
  void Resync() {
    // The count first, then the tail: frames counted lie before the tail we
    // jump to, so none of them is read later as well (which would count it
    // twice, captured and missed). Retire() settles the exact count.
    const uint64_t now = Frames();
    const uint64_t tail = Tail();
    if (tail < pos || tail % kRecordAlign != 0) {
      return Break(absl::DataLossError(
          absl::StrCat(Name(), ": producer tail ", tail, " is behind position ", pos, " or misaligned")));
    }
    SettleMissed(now);
    pos = tail;
  }
};

struct TapLink {
  uint32_t id = 0;
  bool gone = false;  // hsid freed it: drain what is left, then retire
  Segment a, b;  // read-only mappings (the kernel refuses anything else)
  Tap ab, ba;
};

// The producer's segment header, checked against the CHPID's geometry.
absl::StatusOr<SegmentHeader> CheckHeader(const Segment& seg, const RingGeometry& g) {
  SegmentHeader h;
  std::memcpy(&h, seg.data(), sizeof(h));
  if (absl::StatusOr<RingGeometry> checked = internal::CheckSegmentHeader(h, &g, "producer's"); !checked.ok()) {
    return checked.status();
  }
  return h;
}

void Nap(absl::Duration d) {
  timespec ts{0, static_cast<long>(absl::ToInt64Nanoseconds(d))};
  ::nanosleep(&ts, nullptr);
}

}  // namespace

struct HSI_LOCAL Sniffer::State final : internal::ControlChannel::Handler {
  State(const SnifferOptions& o, std::string path) : opt(o), ctl(std::move(path), o.hsid_uid, this) {
    ctl.set_timeout(o.timeout);
  }

  SnifferOptions opt;
  internal::ControlChannel ctl;
  absl::Status ctl_status;
  uint32_t chpid = 0, mtu = 0;
  uint64_t capacity = 0;
  Subnet subnet;
  std::map<uint32_t, std::unique_ptr<TapLink>> links;
  std::vector<uint8_t> buf;
  uint64_t retired_captured = 0, retired_missed = 0;
  std::vector<TapDirection> retired;

  // ControlChannel::Handler: SniffLink and SniffLinkGone events.
  void OnEvent(wire::Message& m) override;
  void OnStrayReply(wire::Message&) override {}
  void OnLost(const absl::Status& why) override {
    ctl_status = absl::UnavailableError(absl::StrCat("hsid at ", ctl.path(), ": ", why.message(),
                                                     "; the tap keeps reading the links it has but sees no new ones"));
  }
  void AddLink(wire::Message& m);
  void Retire(std::map<uint32_t, std::unique_ptr<TapLink>>::iterator it);
  size_t Drain(Tap& t, absl::FunctionRef<void(const CapturedFrame&)> on_frame, size_t budget);
  // Hands the frame just copied into `buf` to on_frame and moves past it.
  void Deliver(Tap& t, const Record& r, absl::FunctionRef<void(const CapturedFrame&)> on_frame);
};

void Sniffer::State::OnEvent(wire::Message& m) {
  if (m.type == wire::MsgType::kSniffLinkGone) {
    // Our mappings keep the memory: Poll() reads the frames still there,
    // then retires the link (Retire()).
    auto it = links.find(m.As<wire::SniffLinkGone>().link_id);
    if (it != links.end()) it->second->gone = true;
    return;
  }
  if (m.type == wire::MsgType::kSniffLink) AddLink(m);
}

void Sniffer::State::AddLink(wire::Message& m) {
  const auto e = m.As<wire::SniffLink>();
  if (e.chpid != chpid || e.mtu != mtu || e.capacity != capacity || links.contains(e.link_id)) return;
  const RingGeometry g{e.capacity, e.mtu};
  auto l = std::make_unique<TapLink>();
  l->id = e.link_id;
  absl::StatusOr<Segment> a = Segment::MapPeer(std::move(m.fds[0]), g.segment_size());
  absl::StatusOr<Segment> b = Segment::MapPeer(std::move(m.fds[1]), g.segment_size());
  const Address addr_a(e.address_a), addr_b(e.address_b);
  struct Side {
    Tap* tap;
    absl::StatusOr<Segment>* seg;
    Segment* keep;
    Address src, dst;
  };
  for (Side s : {Side{&l->ab, &a, &l->a, addr_a, addr_b}, Side{&l->ba, &b, &l->b, addr_b, addr_a}}) {
    Tap& t = *s.tap;
    t.info.link_id = e.link_id;
    t.info.source = s.src;
    t.info.destination = s.dst;
    if (!s.seg->ok()) {
      t.Break(absl::Status(s.seg->status().code(), absl::StrCat("link ", s.src.ToString(), "->", s.dst.ToString(),
                                                                ": ", s.seg->status().message())));
      continue;
    }
    *s.keep = std::move(**s.seg);
    absl::StatusOr<SegmentHeader> h = CheckHeader(*s.keep, g);
    if (!h.ok()) {
      t.Break(absl::DataLossError(absl::StrCat("link ", s.src.ToString(), "->", s.dst.ToString(), ": ",
                                               h.status().message())));
      continue;
    }
    t.layout = internal::LayoutOf(static_cast<const void*>(s.keep->data()));
    t.data = static_cast<const uint8_t*>(s.keep->data()) + internal::kDataOffset;
    t.capacity = e.capacity;
    t.mask = e.capacity - 1;
    t.nonce = h->nonce;
    t.mtu = e.mtu;
    const uint64_t frames = t.Frames();
    const uint64_t tail = t.Tail();
    if (tail % kRecordAlign != 0) {
      t.Break(absl::DataLossError(absl::StrCat("link ", s.src.ToString(), "->", s.dst.ToString(),
                                               ": producer tail ", tail, " is misaligned")));
      continue;
    }
    if ((e.flags & wire::kSniffNew) == 0) {
      t.base_frames = frames;  // an old link: account from now on
      t.pos = tail;
    } else if (tail <= LapLimit(t.capacity)) {
      t.pos = 0;  // a new link: read it from its first frame, still in the ring
    } else {
      t.pos = tail;  // a new link, but we came late: its first frames are missed
      t.info.missed = frames;
    }
  }
  links.emplace(e.link_id, std::move(l));
}

void Sniffer::State::Retire(std::map<uint32_t, std::unique_ptr<TapLink>>::iterator it) {
  for (Tap* t : {&it->second->ab, &it->second->ba}) {
    // Both ends are gone: whatever the producer counted and we did not read
    // was overwritten before we got to it.
    if (t->layout != nullptr && t->info.status.ok()) {
      t->SettleMissed(t->Frames());
    }
    retired_captured += t->info.captured;
    retired_missed += t->info.missed;
    retired.push_back(t->info);
  }
  links.erase(it);
}

size_t Sniffer::State::Drain(Tap& t, absl::FunctionRef<void(const CapturedFrame&)> on_frame, size_t budget) {
  size_t n = 0;
  // `steps` bounds the work even if a hostile producer keeps forcing resyncs.
  for (size_t steps = 0; n < budget && steps < 2 * budget && t.info.status.ok() && t.layout != nullptr; ++steps) {
    const Record r = internal::ReadRecord(t.data, t.capacity, t.pos, t.nonce, t.mtu);
    if (r.verdict == Record::kNotWritten) {
      // Not written yet, or overwritten by a later lap.
      if (t.Tail() > t.pos) {
        t.Resync();
        continue;
      }
      break;
    }
    if (r.verdict == Record::kData) {
      buf.resize(r.len);
      std::memcpy(buf.data(), r.payload, r.len);
    }
    // What was read of the record (meta, payload) is the producer's only if
    // the record is unchanged now (the seqlock re-check) and the producer
    // has not lapped it; otherwise a record torn by a lap is not the
    // producer's fault, and the tap jumps to the tail.
    if (!internal::RecordUnchanged(t.data, t.capacity, t.pos, r) || t.Lapped()) {
      t.Resync();
      continue;
    }
    if (r.bad()) {
      t.Break(absl::DataLossError(
          absl::StrCat(t.Name(), ": ", internal::DescribeBadRecord(r, t.pos, t.mtu))));
      break;
    }
    if (r.verdict == Record::kPad) {
      t.pos += r.size;
      continue;
    }
    Deliver(t, r, on_frame);
    ++n;
  }
  return n;
}

void Sniffer::State::Deliver(Tap& t, const Record& r, absl::FunctionRef<void(const CapturedFrame&)> on_frame) {
  t.pos += r.size;
  ++t.info.captured;
  CapturedFrame f;
  f.time = absl::Now();
  f.link_id = t.info.link_id;
  f.source = t.info.source;
  f.broadcast = internal::IsBroadcast(r.type);
  f.tag = internal::FrameTag(r.type);
  f.destination = f.broadcast ? subnet.broadcast() : t.info.destination;
  f.type = r.type;
  f.payload = absl::MakeConstSpan(buf.data(), r.len);
  on_frame(f);
}

Sniffer::Sniffer() = default;
Sniffer::~Sniffer() = default;
Sniffer::Sniffer(Sniffer&&) noexcept = default;
Sniffer& Sniffer::operator=(Sniffer&&) noexcept = default;

absl::StatusOr<Sniffer> Sniffer::Open(const SnifferOptions& options) {
  if (options.chpid > 0xff) return absl::InvalidArgumentError(absl::StrCat("CHPID ", options.chpid, " is not in 00..FF"));
  absl::StatusOr<std::string> path = ResolveSocketPath(options.socket_path);
  if (!path.ok()) return path.status();
  auto st = std::make_unique<State>(options, *path);
  const wire::ClaimRequest claim = wire::Zeroed<wire::ClaimRequest>();  // no LPAR: a tap is no partition
  if (absl::StatusOr<wire::ClaimReply> c = st->ctl.Open(claim); !c.ok()) return c.status();
  wire::SniffRequest req = wire::Zeroed<wire::SniffRequest>();
  req.chpid = options.chpid;
  wire::SniffReply rep;
  if (absl::Status s = st->ctl.Call(req, {}, &rep); !s.ok()) return s;
  st->chpid = rep.chpid;
  st->mtu = rep.mtu;
  st->capacity = rep.capacity;
  st->subnet = Subnet(Address(rep.subnet), static_cast<int>(rep.prefix));
  st->buf.reserve(rep.mtu);
  Sniffer s;
  s.state_ = std::move(st);
  return s;
}

absl::StatusOr<size_t> Sniffer::Poll(absl::FunctionRef<void(const CapturedFrame&)> on_frame, absl::Time deadline) {
  if (!state_) return absl::FailedPreconditionError("sniffer: not open");
  State& s = *state_;
  // Nap short while links exist (a ring of 1 MiB fills in well under a
  // millisecond at full speed), longer when there is nothing to watch.
  for (;;) {
    s.ctl.Pump();
    size_t n = 0;
    for (auto it = s.links.begin(); it != s.links.end();) {
      TapLink& l = *it->second;
      const bool gone = l.gone;  // read before draining: frames before it are all there
      const size_t got = s.Drain(l.ab, on_frame, 1 << 16) + s.Drain(l.ba, on_frame, 1 << 16);
      n += got;
      auto next = std::next(it);
      if (gone && got < (1 << 16)) s.Retire(it);
      it = next;
    }
    if (n > 0) return n;
    const absl::Time now = absl::Now();
    if (now >= deadline) return size_t{0};
    const absl::Duration nap = std::min(deadline - now, s.links.empty() ? absl::Milliseconds(5)
                                                                         : absl::Microseconds(100));
    if (s.links.empty() && s.ctl.connected()) {
      pollfd p = {s.ctl.fd(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(nap)) + 1);
    } else {
      Nap(nap);
    }
  }
}

uint64_t Sniffer::captured() const {
  uint64_t n = state_->retired_captured;
  for (const auto& [id, l] : state_->links) n += l->ab.info.captured + l->ba.info.captured;
  return n;
}
uint64_t Sniffer::missed() const {
  uint64_t n = state_->retired_missed;
  for (const auto& [id, l] : state_->links) n += l->ab.info.missed + l->ba.info.missed;
  return n;
}
uint32_t Sniffer::chpid() const { return state_->chpid; }
uint32_t Sniffer::mtu() const { return state_->mtu; }
Subnet Sniffer::subnet() const { return state_->subnet; }
absl::Status Sniffer::control_status() const { return state_->ctl_status; }
std::vector<TapDirection> Sniffer::directions() const {
  std::vector<TapDirection> out = state_->retired;
  for (const auto& [id, l] : state_->links) {
    out.push_back(l->ab.info);
    out.push_back(l->ba.info);
  }
  return out;
}

}  // namespace hsi
