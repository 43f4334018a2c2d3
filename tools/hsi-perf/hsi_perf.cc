// hsi-perf: throughput and frame rate between LPARs, like iperf3.
// See packaging/man/hsi-perf.1; --help says the same.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "nlohmann/json.hpp"

namespace {

using hsi::tools::Args;
using hsi::tools::kExitFailure;
using hsi::tools::kExitOk;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr char kTool[] = "hsi-perf";

constexpr char kHelp[] = R"(Usage: hsi-perf [OPTIONS]                  fork both ends and measure
       hsi-perf --server [OPTIONS]         serve clients until interrupted
       hsi-perf --client ADDRESS [OPTIONS] measure against a server

Measures throughput and frame rate between LPARs over one CHPID, like
iperf3. Without --server/--client it forks -P receiving LPARs and -P sending
LPARs (one link each) and reports both ends. The client sends for -t
seconds, then an end marker with its count; the receiver reports what
arrived, so loss (overflow policy drop) is visible. With --bidir both ends
of each link send and receive at once.

Options:
  -s, --size SIZE       frame payload bytes, 8..MTU (default 64; suffixes K, M)
  -t, --time SECS       how long to send (default 5)
  -P, --parallel LINKS  parallel links, each between two LPAR processes (default 1)
  --bidir               both directions at once (default one-way)
  --zero-copy           receive in place (Peek/Release: only the 8-byte sequence
                        word is read) instead of copying each frame out; the sender
                        always copies into the ring (libhsi has no zero-copy send)
  --wait MODE           spin, block or adaptive (default adaptive)
  --json                one JSON document at the end instead of progress lines
  --server              serve clients (any number, at once) until interrupted
  --client ADDRESS      the server's NIC address
  --chpid ID            CHPID to attach to, hex (default F0)
  --lpar NAME           LPAR name prefix (default hsi-perf-PID; each process adds
                        -sN or -cN)
  --socket PATH         hsid's control socket (see hsid(8))
  -h, --help            this text

Output: a progress line every second ([ 0.00- 1.00 s] frames/s, bytes/s of
what was received; of what was sent when only sending), then a summary with
frames and bytes sent and received, rates, and frames lost.

Exit status: 0 success, 1 runtime failure (or frames lost under policy
block), 2 usage error.
)";

const std::vector<hsi::tools::Option> kOptions = {
    {{"--size", "-s"}, "SIZE"}, {{"--time", "-t"}, "SECS"}, {{"--parallel", "-P"}, "LINKS"}, {{"--bidir"}},
    {{"--zero-copy"}},          {{"--wait"}, "MODE"},       {{"--json"}},                    {{"--server"}},
    {{"--client"}, "ADDRESS"},  {{"--chpid"}, "ID"},        {{"--lpar"}, "NAME"},            {{"--socket"}, "PATH"},
    {{"--help", "-h"}},
};

// In-band control frames: the first word marks them (data frames carry a
// sequence number, far below these).
constexpr uint64_t kHello = 0xFFFFFFFFFFFFFF10ULL;   // {kHello, flags, size, duration_ms}
constexpr uint64_t kEnd = 0xFFFFFFFFFFFFFF11ULL;     // {kEnd, frames, bytes}
constexpr uint64_t kResult = 0xFFFFFFFFFFFFFF12ULL;  // {kResult, frames, bytes, elapsed_ns}
constexpr uint64_t kFlagBidir = 1;

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Options {
  std::string socket, lpar;
  uint32_t chpid = 0xF0;
  size_t size = 64;
  double seconds = 5;
  uint32_t parallel = 1;
  bool bidir = false, zero_copy = false, json = false, server = false;
  std::optional<hsi::Address> client;
  hsi::WaitMode wait = hsi::WaitMode::kAdaptive;
};

void PutU64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t GetU64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}
hsi::Wait MakeWait(hsi::WaitMode m, absl::Time deadline) {
  hsi::Wait w;
  w.mode = m;
  w.deadline = deadline;
  return w;
}

// One peer of a worker: what we send it and what it sent us.
struct Peer {
  hsi::Address address;
  hsi::Link link;
  bool sending = false, tx_done = false;
  size_t size = 64;
  int64_t send_end_ns = 0;
  uint64_t seq = 0, tx_frames = 0, tx_bytes = 0, drops = 0;
  bool rx_started = false, rx_done = false, result_sent = false, have_result = false;
  int64_t rx_first_ns = 0, rx_last_ns = 0;
  uint64_t rx_frames = 0, rx_bytes = 0, expected_frames = 0;
  uint64_t peer_rx_frames = 0, peer_rx_bytes = 0, peer_elapsed_ns = 0;
};

// One process with one NIC: a server (answers HELLOs, any number of peers)
// or a client (one peer). Reports to `out` (forked modes) or prints.
class Worker {
 public:
  Worker(const Options& o, std::string lpar, std::string role, uint32_t index, hsi::tools::LinePipe* out)
      : o_(o), lpar_(std::move(lpar)), role_(std::move(role)), index_(index), out_(out) {}

  int Run(bool one_off, hsi::tools::LinePipe* address_out);

 private:
  void Report(const std::string& line) {
    if (out_ != nullptr) out_->Write(line);
  }
  int Error(const std::string& what) {
    if (out_ != nullptr) out_->Write(absl::StrCat("error ", role_, index_, ": ", what));
    return hsi::tools::Fail(kTool, what, kExitFailure);
  }
  absl::Status Control(Peer& p, std::initializer_list<uint64_t> words) {
    std::vector<uint8_t> f(words.size() * 8);
    size_t i = 0;
    for (uint64_t w : words) PutU64(f.data() + 8 * i++, w);
    return p.link.Send(f, MakeWait(o_.wait, absl::Now() + absl::Seconds(5)));
  }
  Peer* PeerFor(hsi::Address a);
  void OnFrame(hsi::Address src, absl::Span<const uint8_t> f);
  bool ReceiveSome(bool may_wait);
  absl::Status SendSome(Peer& p, bool may_wait);
  void Tick(bool final_line);

  const Options& o_;
  std::string lpar_, role_;
  uint32_t index_;
  hsi::tools::LinePipe* out_;
  std::optional<hsi::Session> session_;
  std::optional<hsi::Nic> nic_;
  std::map<hsi::Address, Peer> peers_;
  std::vector<uint8_t> buf_, payload_;
  int64_t start_ns_ = 0, last_tick_ns_ = 0;
};

Peer* Worker::PeerFor(hsi::Address a) {
  auto it = peers_.find(a);
  if (it != peers_.end()) return &it->second;
  absl::StatusOr<hsi::Link> l = nic_->Link(a);
  if (!l.ok()) return nullptr;
  Peer& p = peers_[a];
  p.address = a;
  p.link = std::move(*l);
  return &p;
}

void Worker::OnFrame(hsi::Address src, absl::Span<const uint8_t> f) {
  const uint64_t w0 = f.size() >= 8 ? GetU64(f.data()) : 0;
  if (w0 < kHello || w0 > kResult || f.size() < 24) {
    Peer* p = PeerFor(src);
    if (p == nullptr) return;
    const int64_t now = NowNs();
    if (!p->rx_started) {
      p->rx_started = true;
      p->rx_first_ns = now;
    }
    p->rx_last_ns = now;
    ++p->rx_frames;
    p->rx_bytes += f.size();
    return;
  }
  Peer* p = PeerFor(src);
  if (p == nullptr) return;
  if (w0 == kHello && f.size() >= 32) {
    const uint64_t flags = GetU64(f.data() + 8), size = GetU64(f.data() + 16), ms = GetU64(f.data() + 24);
    if ((flags & kFlagBidir) && size >= 8 && size <= nic_->info().mtu) {
      p->sending = true;
      p->size = size;
      p->send_end_ns = NowNs() + static_cast<int64_t>(std::min<uint64_t>(ms, 86400000)) * 1000000;
    }
  } else if (w0 == kEnd) {
    p->expected_frames = GetU64(f.data() + 8);
    p->rx_done = true;
    if (!p->rx_started) p->rx_first_ns = p->rx_last_ns = NowNs();
  } else if (w0 == kResult && f.size() >= 32) {
    p->peer_rx_frames = GetU64(f.data() + 8);
    p->peer_rx_bytes = GetU64(f.data() + 16);
    p->peer_elapsed_ns = GetU64(f.data() + 24);
    p->have_result = true;
  }
}

bool Worker::ReceiveSome(bool may_wait) {
  bool any = false;
  for (int k = 0; k < 1024; ++k) {
    const hsi::Wait w = (may_wait && k == 0) ? MakeWait(o_.wait, absl::Now() + absl::Milliseconds(20))
                                             : hsi::Wait::Never();
    if (o_.zero_copy) {
      absl::StatusOr<hsi::FrameView> v = nic_->Peek(w);
      if (!v.ok()) break;
      // Zero-copy: classify by the first word, read in place.
      OnFrame(v->source, v->payload.size() >= 24 || v->payload.size() < 8 ? v->payload : v->payload.subspan(0, 8));
      nic_->Release();
    } else {
      absl::StatusOr<hsi::Received> r = nic_->Receive(absl::MakeSpan(buf_), w);
      if (!r.ok()) break;
      OnFrame(r->source, absl::MakeConstSpan(buf_.data(), r->length));
    }
    any = true;
  }
  return any;
}

absl::Status Worker::SendSome(Peer& p, bool may_wait) {
  if (payload_.size() != p.size) payload_.assign(p.size, 0x5a);
  for (int k = 0; k < 1024; ++k) {
    if ((k & 255) == 0 && NowNs() >= p.send_end_ns) {
      p.tx_done = true;
      return Control(p, {kEnd, p.tx_frames, p.tx_bytes});
    }
    PutU64(payload_.data(), p.seq);
    const hsi::Wait w = may_wait ? MakeWait(o_.wait, absl::Now() + absl::Milliseconds(20)) : hsi::Wait::Never();
    absl::Status s = p.link.Send(payload_, w);
    if (s.ok()) {
      ++p.seq;
      ++p.tx_frames;
      p.tx_bytes += p.size;
    } else if (s.code() == absl::StatusCode::kResourceExhausted) {
      ++p.drops;  // overflow policy drop: counted by libhsi in the ring too
      ++p.seq;
    } else if (s.code() == absl::StatusCode::kDeadlineExceeded) {
      return absl::OkStatus();
    } else {
      return s;
    }
  }
  return absl::OkStatus();
}

void Worker::Tick(bool final_line) {
  const int64_t now = NowNs();
  if (!final_line && now - last_tick_ns_ < 250000000) return;
  last_tick_ns_ = now;
  uint64_t tf = 0, tb = 0, rf = 0, rb = 0;
  for (const auto& [a, p] : peers_) {
    tf += p.tx_frames;
    tb += p.tx_bytes;
    rf += p.rx_frames;
    rb += p.rx_bytes;
  }
  Report(absl::StrCat("tick ", role_, index_, " ", now - start_ns_, " ", tf, " ", tb, " ", rf, " ", rb));
}

int Worker::Run(bool one_off, hsi::tools::LinePipe* address_out) {
  hsi::SessionOptions so;
  so.socket_path = o_.socket;
  so.lpar = lpar_;
  absl::StatusOr<hsi::Session> s = hsi::Session::Connect(std::move(so));
  if (!s.ok()) return Error(std::string(s.status().message()));
  session_.emplace(std::move(*s));
  absl::StatusOr<hsi::Nic> n = session_->AttachNic(o_.chpid);
  if (!n.ok()) return Error(std::string(n.status().message()));
  nic_.emplace(std::move(*n));
  if (o_.size > nic_->info().mtu) {
    return Error(absl::StrCat("-s ", o_.size, " exceeds the MTU ", nic_->info().mtu, " of CHPID ",
                              hsi::tools::ChpidText(o_.chpid)));
  }
  buf_.resize(nic_->info().mtu);
  if (address_out != nullptr) address_out->Write(nic_->address().ToString());
  start_ns_ = last_tick_ns_ = NowNs();
  Peer* client_peer = nullptr;
  if (o_.client) {  // client: HELLO, then send for -t seconds
    client_peer = PeerFor(*o_.client);
    if (client_peer == nullptr) {
      absl::StatusOr<hsi::Link> l = nic_->Link(*o_.client);
      return Error(std::string(l.status().message()));
    }
    const uint64_t ms = static_cast<uint64_t>(o_.seconds * 1000);
    if (absl::Status st = Control(*client_peer, {kHello, o_.bidir ? kFlagBidir : 0, o_.size, ms}); !st.ok()) {
      return Error(std::string(st.message()));
    }
    start_ns_ = NowNs();
    client_peer->sending = true;
    client_peer->size = o_.size;
    client_peer->send_end_ns = start_ns_ + static_cast<int64_t>(o_.seconds * 1e9);
  } else if (address_out == nullptr) {
    std::printf("hsi-perf server: LPAR %s, NIC %s on CHPID %s\n", lpar_.c_str(), nic_->address().ToString().c_str(),
                hsi::tools::ChpidText(o_.chpid).c_str());
    std::fflush(stdout);
  }
  int64_t result_deadline = 0;
  while (!g_stop) {
    bool sending_any = false, receiving_any = false;
    for (auto& [a, p] : peers_) {
      sending_any |= p.sending && !p.tx_done;
      receiving_any |= !p.rx_done;
    }
    if (!client_peer) receiving_any = true;
    // Only-send or only-receive may wait inside the call; both must not.
    const bool both = sending_any && (receiving_any || o_.bidir);
    bool progress = ReceiveSome(!both && !sending_any);
    for (auto& [a, p] : peers_) {
      if (!p.sending || p.tx_done) continue;
      if (absl::Status st = SendSome(p, !both); !st.ok()) return Error(std::string(st.message()));
      progress = true;
    }
    // A finished sender to us gets our RESULT (what we received).
    for (auto& [a, p] : peers_) {
      if (p.rx_done && !p.result_sent && (!p.sending || p.tx_done)) {
        p.result_sent = true;
        const int64_t elapsed = p.rx_last_ns - p.rx_first_ns;
        (void)Control(p, {kResult, p.rx_frames, p.rx_bytes, static_cast<uint64_t>(std::max<int64_t>(elapsed, 0))});
        if (!client_peer && out_ == nullptr) {
          const double sec = static_cast<double>(std::max<int64_t>(elapsed, 1)) / 1e9;
          std::printf("client %s: received %lu of %lu frames (%lu bytes) in %.2f s: %.2f Mframes/s, %.3f GB/s\n",
                      a.ToString().c_str(), static_cast<unsigned long>(p.rx_frames),
                      static_cast<unsigned long>(p.expected_frames), static_cast<unsigned long>(p.rx_bytes), sec,
                      static_cast<double>(p.rx_frames) / sec / 1e6, static_cast<double>(p.rx_bytes) / sec / 1e9);
          std::fflush(stdout);
        }
      }
    }
    Tick(false);
    if (client_peer != nullptr) {
      Peer& p = *client_peer;
      if (p.tx_done && (!o_.bidir || p.rx_done)) {
        if (result_deadline == 0) result_deadline = NowNs() + 5000000000LL;
        if (p.have_result || NowNs() > result_deadline) break;
      }
    } else if (one_off && !peers_.empty()) {
      bool all = true;
      for (auto& [a, p] : peers_) all &= p.result_sent;
      if (all) break;
    }
    if (!progress && both && o_.wait != hsi::WaitMode::kSpin) {
      if (!nic_->PrepareWait()) {
        pollfd pf = {nic_->fd(), POLLIN, 0};
        ::poll(&pf, 1, 1);
      }
    }
  }
  Tick(true);
  for (auto& [a, p] : peers_) {
    const int64_t rx_elapsed = std::max<int64_t>(p.rx_last_ns - p.rx_first_ns, 0);
    Report(absl::StrCat("done ", role_, index_, " ", a.ToString(), " ", p.tx_frames, " ", p.tx_bytes, " ", p.drops, " ",
                        p.rx_frames, " ", p.rx_bytes, " ", p.expected_frames, " ", rx_elapsed, " ", p.peer_rx_frames,
                        " ", p.peer_rx_bytes, " ", p.peer_elapsed_ns, " ", p.have_result ? 1 : 0));
  }
  return kExitOk;
}

// ------------------------------------------------------------ the parent

struct Totals {
  uint64_t tx_frames = 0, tx_bytes = 0, drops = 0, rx_frames = 0, rx_bytes = 0, expected = 0;
  int64_t rx_ns = 0;  // longest receive span
};

std::string Rate(double frames, double bytes, double sec) {
  if (sec <= 0) sec = 1e-9;
  return absl::StrFormat("%8.3f Mframes/s  %8.3f GB/s  (%.2f Gbit/s)", frames / sec / 1e6, bytes / sec / 1e9,
                         bytes * 8 / sec / 1e9);
}

int Parent(const Options& o) {
  const std::string prefix = o.lpar.empty() ? absl::StrCat("hsi-perf-", ::getpid()) : o.lpar;
  hsi::tools::LinePipe reports;
  std::vector<hsi::tools::Child> children;
  const uint32_t workers = o.parallel;
  for (uint32_t i = 0; i < workers; ++i) {
    std::optional<hsi::Address> server = o.client;
    if (!o.client) {  // forked mode: a one-off server per link
      hsi::tools::LinePipe addr;
      children.emplace_back([&, i] {
        Options so = o;
        so.client.reset();
        Worker w(so, absl::StrCat(prefix, "-s", i), "s", i, &reports);
        return w.Run(/*one_off=*/true, &addr);
      });
      std::optional<std::string> a = addr.ReadLine(absl::Now() + absl::Seconds(10));
      absl::StatusOr<hsi::Address> parsed = a ? hsi::Address::Parse(*a) : absl::UnavailableError("");
      if (!parsed.ok()) {
        std::optional<std::string> why = reports.ReadLine(absl::Now() + absl::Milliseconds(200));
        return hsi::tools::Fail(kTool, why ? *why : "a receiving LPAR did not start", kExitFailure);
      }
      server = *parsed;
    }
    children.emplace_back([&, i, server] {
      Options co = o;
      co.client = server;
      Worker w(co, absl::StrCat(prefix, "-c", i), "c", i, &reports);
      return w.Run(false, nullptr);
    });
  }
  reports.CloseWrite();
  if (!o.json) {
    std::printf("hsi-perf: CHPID %s, %zu-byte frames, %u link(s), %s, %s receive, wait %s, %.1f s\n",
                hsi::tools::ChpidText(o.chpid).c_str(), o.size, o.parallel, o.bidir ? "bidirectional" : "one-way",
                o.zero_copy ? "zero-copy" : "copying", std::string(hsi::WaitModeName(o.wait)).c_str(), o.seconds);
    std::fflush(stdout);
  }
  // Latest cumulative counters per worker: {t, tf, tb, rf, rb}.
  std::map<std::string, std::vector<int64_t>> latest;
  std::vector<std::vector<std::string>> done;
  std::vector<std::string> errors;
  json intervals = json::array();
  const bool local_rx = !o.client || o.bidir;
  double last_frames = 0, last_bytes = 0;
  int64_t second = 1;
  const auto t0 = Clock::now();
  const absl::Time hard_deadline = absl::Now() + absl::Seconds(o.seconds + 30);
  size_t finished = 0;
  auto sums = [&] {
    double f = 0, b = 0;
    for (const auto& [k, v] : latest) {
      f += static_cast<double>(local_rx ? v[3] : v[1]);
      b += static_cast<double>(local_rx ? v[4] : v[2]);
    }
    return std::pair{f, b};
  };
  for (;;) {
    const absl::Time next = absl::Now() + absl::Milliseconds(50);
    std::optional<std::string> line = reports.ReadLine(std::min(next, hard_deadline));
    if (line) {
      std::vector<std::string> w = absl::StrSplit(*line, ' ');
      if (w[0] == "tick" && w.size() == 7) {
        std::vector<int64_t> v(5);
        for (int k = 0; k < 5; ++k) (void)absl::SimpleAtoi(w[2 + k], &v[k]);
        latest[w[1]] = v;
      } else if (w[0] == "done") {
        done.push_back(w);
      } else if (w[0] == "error") {
        errors.push_back(line->substr(6));
      }
    } else if (absl::Now() >= hard_deadline || g_stop) {
      break;
    }
    // Children exit after their last report; EOF on the pipe means all did.
    if (!line && ::poll(nullptr, 0, 0) == 0) {
      pollfd pf = {reports.read_fd(), POLLIN, 0};
      if (::poll(&pf, 1, 0) == 1 && (pf.revents & POLLHUP) && !(pf.revents & POLLIN)) break;
    }
    const double el = std::chrono::duration<double>(Clock::now() - t0).count();
    if (el >= static_cast<double>(second) && static_cast<double>(second) <= o.seconds + 0.5) {
      auto [f, b] = sums();
      intervals.push_back({{"start", second - 1}, {"end", second}, {"frames", f - last_frames},
                           {"bytes", b - last_bytes}});
      if (!o.json) {
        std::printf("[%5.2f-%5.2f s]  %s\n", static_cast<double>(second - 1), static_cast<double>(second),
                    Rate(f - last_frames, b - last_bytes, 1.0).c_str());
        std::fflush(stdout);
      }
      last_frames = f;
      last_bytes = b;
      ++second;
    }
    (void)finished;
  }
  int rc = kExitOk;
  for (auto& c : children) {
    const int s = c.Wait();
    if (s != 0) rc = kExitFailure;
  }
  // Sum both ends' views: a client's "done" has what it sent and, from the
  // server's RESULT, what arrived; a forked server's has what it received.
  Totals sent, recv;
  for (const auto& w : done) {
    if (w.size() != 14) continue;
    uint64_t v[11];
    for (int k = 0; k < 11; ++k) (void)absl::SimpleAtoi(w[3 + k], &v[k]);
    const bool is_client = w[1][0] == 'c';
    if (v[0] > 0 || is_client) {  // what this worker sent
      sent.tx_frames += v[0];
      sent.tx_bytes += v[1];
      sent.drops += v[2];
    }
    if (is_client && o.client) {  // against a remote server: its RESULT
      if (!o.bidir || true) {
        recv.rx_frames += v[7];
        recv.rx_bytes += v[8];
        recv.rx_ns = std::max<int64_t>(recv.rx_ns, static_cast<int64_t>(v[9]));
        recv.expected += v[0];
      }
      if (o.bidir) {
        recv.rx_frames += v[3];
        recv.rx_bytes += v[4];
        recv.expected += v[5];
        recv.rx_ns = std::max<int64_t>(recv.rx_ns, static_cast<int64_t>(v[6]));
      }
    } else if (!o.client) {  // forked: count every local receiver
      recv.rx_frames += v[3];
      recv.rx_bytes += v[4];
      recv.expected += v[5];
      recv.rx_ns = std::max<int64_t>(recv.rx_ns, static_cast<int64_t>(v[6]));
    }
  }
  const double send_sec = o.seconds;
  const double recv_sec = static_cast<double>(std::max<int64_t>(recv.rx_ns, 1)) / 1e9;
  const uint64_t lost = recv.expected > recv.rx_frames ? recv.expected - recv.rx_frames : 0;
  for (const std::string& e : errors) hsi::tools::Fail(kTool, e, kExitFailure);
  if (!errors.empty()) rc = kExitFailure;
  if (o.json) {
    json j = {{"chpid", hsi::tools::ChpidText(o.chpid)},
              {"size", o.size},
              {"links", o.parallel},
              {"bidir", o.bidir},
              {"zero_copy", o.zero_copy},
              {"wait", std::string(hsi::WaitModeName(o.wait))},
              {"seconds", o.seconds},
              {"sent", {{"frames", sent.tx_frames}, {"bytes", sent.tx_bytes}, {"dropped", sent.drops}}},
              {"received",
               {{"frames", recv.rx_frames},
                {"bytes", recv.rx_bytes},
                {"seconds", recv_sec},
                {"frames_per_second", static_cast<double>(recv.rx_frames) / recv_sec},
                {"bytes_per_second", static_cast<double>(recv.rx_bytes) / recv_sec}}},
              {"lost", lost},
              {"intervals", intervals}};
    if (!errors.empty()) j["errors"] = errors;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("- - - - - - - - - - - - - - - - - - - - - - - - -\n");
    std::printf("sent      %12lu frames  %14lu bytes  %s\n", static_cast<unsigned long>(sent.tx_frames),
                static_cast<unsigned long>(sent.tx_bytes),
                Rate(static_cast<double>(sent.tx_frames), static_cast<double>(sent.tx_bytes), send_sec).c_str());
    std::printf("received  %12lu frames  %14lu bytes  %s\n", static_cast<unsigned long>(recv.rx_frames),
                static_cast<unsigned long>(recv.rx_bytes),
                Rate(static_cast<double>(recv.rx_frames), static_cast<double>(recv.rx_bytes), recv_sec).c_str());
    std::printf("lost      %12lu frames%s\n", static_cast<unsigned long>(lost),
                sent.drops ? absl::StrCat(" (", sent.drops, " dropped by overflow policy drop)").c_str() : "");
  }
  if (lost > 0 && sent.drops == 0) rc = kExitFailure;  // loss under policy block is a failure
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  std::optional<Args> args = hsi::tools::StartTool(argc, argv, kTool, kOptions, kHelp,
                                                   /*allow_positional=*/false, &exit_code);
  if (!args) return exit_code;
  Options o;
  o.bidir = args->Has("--bidir");
  o.zero_copy = args->Has("--zero-copy");
  o.json = args->Has("--json");
  o.server = args->Has("--server");
  o.socket = args->Get("--socket").value_or("");
  o.lpar = args->Get("--lpar").value_or("");
  auto usage = [](const absl::Status& s) { return hsi::tools::Usage(kTool, s.message()); };
#define HSI_ARG(name, parse, dst)                        \
  if (std::optional<std::string> v_ = args->Get(name)) { \
    auto r_ = (parse);                                   \
    if (!r_.ok()) return usage(r_.status());             \
    dst = *r_;                                           \
  }
  HSI_ARG("--size", hsi::tools::ParseSize("-s/--size", *v_, 8, 1 << 20), o.size)
  HSI_ARG("--time", hsi::tools::ParseSeconds("-t/--time", *v_, 0.1, 86400), o.seconds)
  HSI_ARG("--parallel", hsi::tools::ParseCount("-P/--parallel", *v_, 1, 64), o.parallel)
  HSI_ARG("--wait", hsi::tools::ParseWait("--wait", *v_), o.wait)
  HSI_ARG("--chpid", hsi::tools::ParseChpid("--chpid", *v_), o.chpid)
  HSI_ARG("--client", hsi::tools::ParseAddress("--client", *v_), o.client)
#undef HSI_ARG
  if (o.server && o.client) return hsi::tools::Usage(kTool, "--server and --client exclude each other");
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  if (o.server) {
    for (const std::string& g : args->given()) {
      if (g == "--time" || g == "--parallel" || g == "--bidir" || g == "--json" || g == "--size") {
        return hsi::tools::Usage(kTool, absl::StrCat("option ", g, " is the client's; the server follows it"));
      }
    }
    Worker w(o, o.lpar.empty() ? absl::StrCat("hsi-perf-", ::getpid(), "-server") : o.lpar, "s", 0, nullptr);
    return w.Run(false, nullptr);
  }
  return Parent(o);
}
