// libFuzzer target: the ring's record reader (internal::ReadRecord, the one
// the consumer and the sniffer use) facing a hostile producer.
//
// The input is a program for the hostile side: each 16-byte step is
// {op, where, value} — write a word anywhere in the producer's segment, write
// a plausible frame header at the consumer's head, let an honest producer
// send a frame, let the consumer peek/receive, or read any record of the ring
// with ReadRecord directly (as the sniffer does, at any position). After
// every reading step the frame accepted (if any) must lie inside the ring and
// respect the MTU; the copy into an MTU-sized heap buffer lets ASan see any
// overflow.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hsi/endpoint.h"
#include "internal/ring_layout.h"

namespace {

using namespace hsi;
using internal::FrameHeader;
using internal::kDataOffset;
using internal::kFrameHeaderSize;
using internal::Record;
using internal::SegmentLayout;

constexpr RingGeometry kGeometry{4096, 256};

struct Rig {
  Segment a_own, a_view, b_own, b_view;
  Doorbell a_bell, b_bell;
  RingProducer tx;
  RingConsumer rx;
};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "ring_reader_fuzz: %s\n", what);
  std::abort();
}

// Reads the record at `pos` with ReadRecord, as the sniffer does, and
// checks that what it accepts lies inside the ring: a frame within the MTU,
// a padding record exactly to the end.
void ReadAnyRecord(const Rig& r, uint64_t pos, std::vector<uint8_t>& buf) {
  const auto* lo = static_cast<const uint8_t*>(r.a_view.data()) + kDataOffset;
  const auto* hi = lo + kGeometry.capacity;
  const uint64_t nonce = static_cast<const SegmentLayout*>(r.a_view.data())->header.nonce;
  const Record rec = internal::ReadRecord(lo, kGeometry.capacity, pos, nonce, kGeometry.mtu);
  const uint64_t room = kGeometry.capacity - (pos & (kGeometry.capacity - 1));
  if (rec.room != 0 && rec.room != room) Die("record room is not what remains of the ring");
  if (rec.verdict == Record::kPad && (rec.size != room || rec.len + kFrameHeaderSize != room)) {
    Die("accepted a padding record of the wrong length");
  }
  if (rec.verdict == Record::kData) {
    if (rec.len > kGeometry.mtu) Die("ReadRecord accepted a frame over the MTU");
    if (rec.payload < lo || rec.payload + rec.len > hi || rec.size > room) {
      Die("ReadRecord accepted a frame outside the ring");
    }
    std::memcpy(buf.data(), rec.payload, rec.len);
  }
  if (!internal::RecordUnchanged(lo, kGeometry.capacity, pos, rec)) Die("a record changed with no writer");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto fds = CreateEndpointFds(kGeometry);
  if (!fds.ok()) Die("CreateEndpointFds failed");
  Rig r;
  r.a_own = *Segment::MapOwner(std::move(fds->a.own_segment), kGeometry.segment_size());
  r.b_own = *Segment::MapOwner(std::move(fds->b.own_segment), kGeometry.segment_size());
  r.a_view = *Segment::MapPeer(std::move(fds->b.peer_segment), kGeometry.segment_size());
  r.b_view = *Segment::MapPeer(std::move(fds->a.peer_segment), kGeometry.segment_size());
  r.a_bell = *Doorbell::Adopt(std::move(fds->a.own_bell));
  r.b_bell = *Doorbell::Adopt(std::move(fds->b.own_bell));
  r.tx = *RingProducer::Create(r.a_own, r.b_view, r.a_bell, r.b_bell, kGeometry);
  r.rx = *RingConsumer::Create(r.b_own, r.a_view, r.b_bell, r.a_bell, kGeometry);

  auto* words = static_cast<uint64_t*>(r.a_own.data());
  const size_t nwords = kGeometry.segment_size() / 8;
  const uint64_t nonce = static_cast<SegmentLayout*>(r.a_own.data())->header.nonce;
  const auto* lo = static_cast<const uint8_t*>(r.a_view.data()) + kDataOffset;
  const auto* hi = lo + kGeometry.capacity;
  std::vector<uint8_t> buf(kGeometry.mtu);
  std::vector<uint8_t> payload(kGeometry.mtu, 0xab);

  for (size_t i = 0; i + 16 <= size; i += 16) {
    uint32_t op, where;
    uint64_t value;
    std::memcpy(&op, data + i, 4);
    std::memcpy(&where, data + i + 4, 4);
    std::memcpy(&value, data + i + 8, 8);
    switch (op % 6) {
      case 0:  // any word of the producer's segment
        words[where % nwords] = value;
        break;
      case 1: {  // a header with the right seq at the head (+ a few records)
        const uint64_t pos = r.b_own.data() != nullptr
            ? static_cast<SegmentLayout*>(r.b_own.data())->rx.head.load() + 16 * (where % 4)
            : 0;
        auto* h = reinterpret_cast<FrameHeader*>(
            static_cast<uint8_t*>(r.a_own.data()) + kDataOffset + (pos & (kGeometry.capacity - 1)));
        h->meta = value;
        __atomic_store_n(&h->seq, pos ^ nonce, __ATOMIC_RELEASE);
        break;
      }
      case 2:  // an honest frame
        r.tx.TrySend(absl::MakeConstSpan(payload.data(), where % (kGeometry.mtu + 1)));
        break;
      case 3: {  // zero-copy peek
        Frame f;
        if (r.rx.TryPeek(&f)) {
          if (f.payload.size() > kGeometry.mtu) Die("accepted a frame over the MTU");
          if (f.payload.data() < lo || f.payload.data() + f.payload.size() > hi) {
            Die("accepted a frame outside the ring");
          }
          if (where & 1) r.rx.Release();
        }
        break;
      }
      case 4: {  // copying receive into an MTU-sized buffer
        auto n = r.rx.TryReceive(absl::MakeSpan(buf));
        if (n.ok() && *n > kGeometry.mtu) Die("received more than the MTU");
        if (!n.ok() && n.status().code() != absl::StatusCode::kUnavailable &&
            n.status().code() != absl::StatusCode::kDataLoss) {
          Die("unexpected status from TryReceive");
        }
        break;
      }
      case 5:  // the sniffer's way: any record, at a position of any lap
        ReadAnyRecord(r, (value & ~uint64_t{15}) + 16 * uint64_t{where}, buf);
        break;
    }
  }
  return 0;
}
