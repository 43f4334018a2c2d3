// Load (issue 7, item 4): 64 NICs on one CHPID, every pair linked (2016
// links), 8 forked LPAR processes with 8 NICs each, every NIC streaming a
// fixed number of sequenced, checksummed frames to every other NIC under
// overflow policy `block`. Checked exactly: each of the 4032 directed flows
// arrives complete, in order, uncorrupted; hsid's per-link counters
// (AdminClient::ListLinks, what `hsictl stats` shows) agree with them; and
// once every client has exited, hsid's fd count is back to its baseline
// exactly and its RSS within a stated margin.
//
// Sanitizer builds send fewer frames; see kProcs below. HSI_LOAD_PROCS, HSI_LOAD_NICS_PER_PROC and HSI_LOAD_FRAMES override.
// Prints a "RELIABILITY load: ..." line (docs/reliability.md).
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "hsi/testing/child.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/admin.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/line_pipe.h"
#include "hsi/testing/process.h"
#include "hsi/testing/raw_client.h"

namespace hsi {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::FdCount;
using ::hsi::testing::Hsid;
using ::hsi::testing::LinePipe;
using ::hsi::testing::RssKiB;
using ::hsi::testing::Summary;

// Every build: 8 processes x 8 NICs. Release: 10000 frames per directed
// flow (40 M frames, ~6 s); sanitizer builds: 1000 (4 M frames; ASan ~8 s,
// TSan ~17 s on 2 cores). Either way the 32 KiB rings fill (full events).
#if defined(__SANITIZE_THREAD__)
constexpr const char* kBuild = "TSan";
constexpr int kProcs = 8, kNicsPerProc = 8, kFrames = 1000;
constexpr long kRssMarginKiB = 64 * 1024;  // TSan's shadow keeps freed memory resident
#elif defined(__SANITIZE_ADDRESS__)
constexpr const char* kBuild = "ASan+UBSan";
constexpr int kProcs = 8, kNicsPerProc = 8, kFrames = 1000;
constexpr long kRssMarginKiB = 64 * 1024;  // ASan's quarantine keeps freed memory resident
#else
constexpr const char* kBuild = "release";
constexpr int kProcs = 8, kNicsPerProc = 8, kFrames = 10000;
constexpr long kRssMarginKiB = 1024;
#endif

absl::Time In(absl::Duration d) { return absl::Now() + d; }

int EnvInt(const char* name, int dflt) {
  const char* e = std::getenv(name);
  int v = 0;
  return e != nullptr && absl::SimpleAtoi(e, &v) && v > 0 ? v : dflt;
}

constexpr char kConfig[] = R"toml(
[hsid]
admin_uids = ["self"]

[[chpid]]
id = "F0"
mfs = "16K"
subnet = "10.240.0.0/24"
queue_size = "32K"
overflow = "block"

[[lpar]]
name = "*"
uids = ["self"]
max_nics = 16
max_links = 1024
)toml";

// A frame: source index, destination index, sequence number, check word.
struct Frame {
  uint32_t src, dst;
  uint64_t seq;
  uint64_t check;
  uint64_t pad;
};
static_assert(sizeof(Frame) == 32);
uint64_t Check(uint32_t src, uint32_t dst, uint64_t seq) {
  return ((uint64_t{src} << 40) ^ (uint64_t{dst} << 20) ^ (seq + 1)) * 0x9E3779B97F4A7C15ULL;
}

// One LPAR process: attaches `nics` NICs, reports their addresses, gets
// every address, links its NICs to every higher-numbered NIC, waits for
// "go", streams `frames` frames to each peer of each NIC while receiving,
// verifies every flow, reports "done SENT RECEIVED BAD", and keeps its
// NICs until told "exit".
// The parent's commands, in memory shared with the LPAR processes: a
// phase to wait for (children keep answering hsid meanwhile) and every
// NIC's address in global order.
struct Control {
  enum Phase { kStart = 0, kAddresses = 1, kGo = 2, kExit = 3 };
  std::atomic<int> phase{kStart};
  uint32_t addresses[256] = {};
};

void AwaitPhase(Session& s, Control* ctl, int phase) {
  while (ctl->phase.load(std::memory_order_acquire) < phase) {
    (void)s.Poll();
    ::usleep(50);
  }
}

int Lpar(const std::string& socket, int proc, int nics, int total, uint64_t frames, const LinePipe& up,
         Control* ctl) {
  ::hsi::testing::RaiseNoFile(1 << 16);
  SessionOptions o;
  o.socket_path = socket;
  o.lpar = absl::StrCat("load", proc);
  o.timeout = absl::Seconds(60);
  absl::StatusOr<Session> s = Session::Connect(std::move(o));
  if (!s.ok()) return up.Write("ERR connect " + s.status().ToString()), 1;
  std::vector<Nic> mine;
  std::vector<std::string> addrs;
  for (int i = 0; i < nics; ++i) {
    absl::StatusOr<Nic> n = s->AttachNic(0xF0);
    if (!n.ok()) return up.Write("ERR attach " + n.status().ToString()), 1;
    addrs.push_back(n->address().ToString());
    mine.push_back(std::move(*n));
  }
  up.Write(absl::StrJoin(addrs, " "));
  AwaitPhase(*s, ctl, Control::kAddresses);
  std::vector<Address> all;
  absl::flat_hash_map<uint32_t, uint32_t> index;
  for (int i = 0; i < total; ++i) {
    index[ctl->addresses[i]] = static_cast<uint32_t>(i);
    all.push_back(Address(ctl->addresses[i]));
  }
  const int first = proc * nics;
  // Each pair is linked once, by its lower-numbered NIC.
  for (int l = 0; l < nics; ++l) {
    for (int j = first + l + 1; j < total; ++j) {
      absl::StatusOr<Link> k = mine[l].Link(all[j]);
      if (!k.ok()) return up.Write(absl::StrCat("ERR link ", first + l, "->", j, " ", k.status().ToString())), 2;
    }
  }
  up.Write("linked");
  AwaitPhase(*s, ctl, Control::kGo);
  // links[l][j]: NIC l's link to NIC j (none to itself).
  std::vector<std::vector<Link>> links(nics);
  for (int l = 0; l < nics; ++l) {
    links[l].resize(total);
    for (int j = 0; j < total; ++j) {
      if (j == first + l) continue;
      absl::StatusOr<Link> k = mine[l].Link(all[j]);
      if (!k.ok()) return up.Write(absl::StrCat("ERR link ", first + l, "->", j, " ", k.status().ToString())), 2;
      links[l][j] = std::move(*k);
    }
  }
  std::vector<std::vector<uint64_t>> sent(nics, std::vector<uint64_t>(total, 0));
  std::vector<std::vector<uint64_t>> expect(nics, std::vector<uint64_t>(total, 0));
  const uint64_t want = static_cast<uint64_t>(nics) * static_cast<uint64_t>(total - 1) * frames;
  uint64_t n_sent = 0, n_received = 0, bad = 0;
  uint8_t buf[64];
  const absl::Time deadline = In(absl::Seconds(240));
  while (n_sent < want || n_received < want) {
    bool progress = false;
    for (int l = 0; l < nics; ++l) {
      const uint32_t self = static_cast<uint32_t>(first + l);
      for (int j = 0; j < total; ++j) {
        if (j == static_cast<int>(self)) continue;
        for (int burst = 0; burst < 1024 && sent[l][j] < frames; ++burst) {
          const uint64_t seq = sent[l][j];
          Frame f{self, static_cast<uint32_t>(j), seq, Check(self, static_cast<uint32_t>(j), seq), 0};
          absl::Status st = links[l][j].Send(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&f), sizeof(f)),
                                             Wait::Never());
          if (st.code() == absl::StatusCode::kDeadlineExceeded) break;  // ring full: receive first
          if (!st.ok()) return up.Write(absl::StrCat("ERR send ", self, "->", j, " ", st.ToString())), 3;
          ++sent[l][j];
          ++n_sent;
          progress = true;
        }
      }
      for (int k = 0; k < 4096; ++k) {
        absl::StatusOr<Received> r = mine[l].Receive(absl::MakeSpan(buf), Wait::Never());
        if (r.status().code() == absl::StatusCode::kDeadlineExceeded) break;
        if (!r.ok()) return up.Write(absl::StrCat("ERR receive at ", self, " ", r.status().ToString())), 4;
        progress = true;
        ++n_received;
        Frame f;
        auto it = index.find(r->source.value());
        if (r->length != sizeof(f) || it == index.end()) {
          ++bad;
          continue;
        }
        std::memcpy(&f, buf, sizeof(f));
        const uint32_t src = it->second;
        // In order, exactly once, uncorrupted, from whom it says.
        if (f.src != src || f.dst != self || f.check != Check(f.src, f.dst, f.seq) || f.seq != expect[l][src]) {
          ++bad;
        }
        expect[l][src] = f.seq + 1;
      }
    }
    if (!progress) {
      if (absl::Now() > deadline) {
        return up.Write(absl::StrCat("ERR stuck: sent ", n_sent, " received ", n_received, " of ", want)), 5;
      }
      ::sched_yield();
    }
  }
  // Every flow complete: frames 0..frames-1 from each peer.
  for (int l = 0; l < nics; ++l) {
    for (int j = 0; j < total; ++j) {
      if (j != first + l && expect[l][j] != frames) ++bad;
    }
  }
  // Nothing more may arrive.
  for (int l = 0; l < nics; ++l) {
    absl::StatusOr<Received> r = mine[l].Receive(absl::MakeSpan(buf), Wait::Never());
    if (r.ok()) ++bad;
  }
  up.Write(absl::StrCat("done ", n_sent, " ", n_received, " ", bad));
  AwaitPhase(*s, ctl, Control::kExit);
  return 0;
}

TEST(LoadTest, AllToAllOnOneChpidExactCountsAndHsidReturnsToBaseline) {
  const int procs = EnvInt("HSI_LOAD_PROCS", kProcs);
  const int per = EnvInt("HSI_LOAD_NICS_PER_PROC", kNicsPerProc);
  const uint64_t frames = static_cast<uint64_t>(EnvInt("HSI_LOAD_FRAMES", kFrames));
  const int total = procs * per;
  ASSERT_LE(total, 254) << "the test CHPID's subnet is a /24";
  const uint64_t pairs = static_cast<uint64_t>(total) * (total - 1) / 2;
  const uint64_t flow_frames = 2 * pairs * frames;
  std::printf("%s build: %d processes x %d NICs = %d NICs, %llu links, %llu frames per directed flow\n", kBuild,
              procs, per, total, static_cast<unsigned long long>(pairs), static_cast<unsigned long long>(frames));
  std::fflush(stdout);  // before fork(): children must not flush it again
  ::hsi::testing::RaiseNoFile(1 << 16);  // hsid and the children inherit it
  Hsid d(kConfig);
  ASSERT_TRUE(d.Start()) << d.log();
  // Warm up hsid's allocator with one client, link and exit, then take
  // the baseline with no client connected: once hsid has logged the
  // departure of the warm-up client and of Hsid::Start()'s probe, and its
  // fd count holds still (it frees a client right after logging it).
  {
    SessionOptions o;
    o.socket_path = d.socket();
    o.lpar = "warmup";
    absl::StatusOr<Session> w = Session::Connect(std::move(o));
    ASSERT_TRUE(w.ok()) << w.status();
    absl::StatusOr<Nic> a = w->AttachNic(0xF0);
    absl::StatusOr<Nic> b = w->AttachNic(0xF0);
    ASSERT_TRUE(a.ok() && b.ok());
    uint8_t x[8] = {};
    ASSERT_TRUE(a->SendTo(b->address(), x, Wait::Block(In(absl::Seconds(10)))).ok());
  }
  auto settle = [&](int want_fds) {
    int fds = FdCount(d.pid());
    for (const absl::Time end = In(absl::Seconds(20)); fds != want_fds && absl::Now() < end; fds = FdCount(d.pid())) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    return fds;
  };
  auto departures = [&] {
    const std::string log = d.log();
    int n = 0;
    for (size_t at = 0; (at = log.find(" gone: ", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  for (const absl::Time end = In(absl::Seconds(20)); departures() < 2 && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GE(departures(), 2) << d.log();
  int base_fds = FdCount(d.pid());
  for (int prev = -1; prev != base_fds; base_fds = FdCount(d.pid())) {
    prev = base_fds;
    absl::SleepFor(absl::Milliseconds(20));
  }
  const long base_rss = RssKiB(d.pid());

  ::hsi::testing::Shared<Control> ctl;
  std::vector<std::unique_ptr<LinePipe>> up;
  std::vector<std::unique_ptr<Child>> kids;
  for (int p = 0; p < procs; ++p) up.push_back(std::make_unique<LinePipe>());
  const absl::Time t0 = absl::Now();
  for (int p = 0; p < procs; ++p) {
    kids.push_back(std::make_unique<Child>([&, p] { return Lpar(d.socket(), p, per, total, frames, *up[p], &*ctl); }));
  }
  std::vector<std::string> addrs;
  for (int p = 0; p < procs; ++p) {
    const std::string line = up[p]->Read(absl::Seconds(60));
    ASSERT_THAT(line, ::testing::Not(::testing::StartsWith("ERR"))) << line;
    ASSERT_FALSE(line.empty()) << "LPAR " << p << " did not attach\n" << d.log();
    for (absl::string_view a : absl::StrSplit(line, ' ')) addrs.emplace_back(a);
  }
  ASSERT_EQ(static_cast<int>(addrs.size()), total);
  for (int i = 0; i < total; ++i) {
    absl::StatusOr<Address> a = Address::Parse(addrs[i]);
    ASSERT_TRUE(a.ok()) << addrs[i];
    ctl->addresses[i] = a->value();
  }
  ctl->phase.store(Control::kAddresses, std::memory_order_release);
  for (int p = 0; p < procs; ++p) {
    const std::string line = up[p]->Read(absl::Seconds(120));
    ASSERT_EQ(line, "linked") << "LPAR " << p;
  }
  const absl::Time t_linked = absl::Now();
  const int fds_linked = FdCount(d.pid());
  ctl->phase.store(Control::kGo, std::memory_order_release);
  uint64_t sent = 0, received = 0, bad = 0;
  for (int p = 0; p < procs; ++p) {
    const std::string line = up[p]->Read(absl::Seconds(240));
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    ASSERT_EQ(f.size(), 4u) << "LPAR " << p << ": " << line;
    ASSERT_EQ(f[0], "done") << line;
    uint64_t s = 0, r = 0, b = 0;
    ASSERT_TRUE(absl::SimpleAtoi(f[1], &s) && absl::SimpleAtoi(f[2], &r) && absl::SimpleAtoi(f[3], &b)) << line;
    sent += s;
    received += r;
    bad += b;
  }
  const absl::Time t_done = absl::Now();
  EXPECT_EQ(sent, flow_frames);
  EXPECT_EQ(received, flow_frames);
  EXPECT_EQ(bad, 0u) << "frames lost, duplicated, reordered or corrupt";
  // hsid's view, read from the segments: every link ready, each direction
  // exactly `frames` committed and released, nothing dropped.
  const int fds_loaded = FdCount(d.pid());
  const long rss_loaded = RssKiB(d.pid());
  absl::StatusOr<AdminClient> admin = AdminClient::Connect(d.socket());
  ASSERT_TRUE(admin.ok()) << admin.status();
  absl::StatusOr<std::vector<NicListing>> nics = admin->ListNics();
  ASSERT_TRUE(nics.ok()) << nics.status();
  EXPECT_EQ(nics->size(), static_cast<size_t>(total));
  absl::StatusOr<std::vector<LinkStats>> stats = admin->ListLinks();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->size(), pairs);
  uint64_t st_frames = 0, st_rx = 0, st_drops = 0, st_full = 0, mismatched = 0, not_ready = 0;
  for (const LinkStats& l : *stats) {
    not_ready += l.state != LinkPhase::kReady;
    for (const DirectionStats* dir : {&l.a_to_b, &l.b_to_a}) {
      st_frames += dir->frames;
      st_rx += dir->rx_frames;
      st_drops += dir->drops;
      st_full += dir->full_events;
      mismatched += dir->frames != frames || dir->rx_frames != frames || dir->bytes != frames * sizeof(Frame) ||
                    dir->rx_bytes != dir->bytes;
    }
  }
  EXPECT_EQ(not_ready, 0u);
  EXPECT_EQ(mismatched, 0u) << "a link's counters in hsid disagree with the frames the LPARs counted";
  EXPECT_EQ(st_frames, sent);
  EXPECT_EQ(st_rx, received);
  EXPECT_EQ(st_drops, 0u);
  admin = absl::UnavailableError("closed");
  // Every client exits: hsid frees every link, NIC and connection.
  ctl->phase.store(Control::kExit, std::memory_order_release);
  int failed_exits = 0;
  for (auto& k : kids) failed_exits += k->Wait() != 0;
  EXPECT_EQ(failed_exits, 0);
  const int fds_after = settle(base_fds);
  // hsid trims its heap once it has freed the clients: wait for that (up
  // to 10 s), then judge.
  long rss_after = RssKiB(d.pid());
  for (const absl::Time end = In(absl::Seconds(10)); rss_after > base_rss + kRssMarginKiB && absl::Now() < end;
       rss_after = RssKiB(d.pid())) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(fds_after, base_fds) << "hsid kept fds after every client exited";
  EXPECT_LE(rss_after, base_rss + kRssMarginKiB) << "hsid's RSS did not return to its baseline";
  const double secs = absl::ToDoubleSeconds(t_done - t_linked);
  Summary("load (%s): NICs=%d (%d processes x %d) links=%llu frames-per-flow=%llu sent=%llu received=%llu lost=%lld "
          "bad(dup/reorder/corrupt/missing)=%llu | hsid stats: frames=%llu rx=%llu drops=%llu full-events=%llu "
          "mismatched-directions=%llu | link setup %.2f s, traffic %.2f s (%.2f M frames/s) | hsid fds "
          "base=%d linked=%d loaded=%d after-exit=%d | RSS KiB base=%ld loaded=%ld after-exit=%ld (margin %ld)",
          kBuild, total, procs, per, static_cast<unsigned long long>(pairs), static_cast<unsigned long long>(frames),
          static_cast<unsigned long long>(sent), static_cast<unsigned long long>(received),
          static_cast<long long>(sent) - static_cast<long long>(received), static_cast<unsigned long long>(bad),
          static_cast<unsigned long long>(st_frames), static_cast<unsigned long long>(st_rx),
          static_cast<unsigned long long>(st_drops), static_cast<unsigned long long>(st_full),
          static_cast<unsigned long long>(mismatched), absl::ToDoubleSeconds(t_linked - t0), secs,
          secs > 0 ? static_cast<double>(received) / secs / 1e6 : 0.0, base_fds, fds_linked, fds_loaded, fds_after,
          base_rss, rss_loaded, rss_after, kRssMarginKiB);
}

}  // namespace
}  // namespace hsi
