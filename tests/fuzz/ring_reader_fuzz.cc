// libFuzzer target: the ring consumer facing a hostile producer.
//
// The input is a program for the hostile side: each 16-byte step is
// {op, where, value} — write a word anywhere in the producer's segment, write
// a plausible frame header at the consumer's head, let an honest producer
// send a frame, or let the consumer peek/receive. After every consumer step
// the frame it accepted (if any) must lie inside the ring and respect the
// MTU; the copy into an MTU-sized heap buffer lets ASan see any overflow.
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
    switch (op % 5) {
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
    }
  }
  return 0;
}
