// tests/cf/xi_checker.h: the cross-invalidation checker of the hsi-cf
// tests (docs/cf.md "The checker"), shared by cf_cache_test (one CF, and
// CFs broken on purpose) and cf_duplex_test (across the kill -9 of either
// CF of a duplexed cache structure).
//
// A writer (the caller's client) writes versions 1..kWrites of entry PAGE
// of structure GBP1; kReaders readers in forked children loop: load the
// last completed version (acquire; the writer stores it with release after
// WriteEntry returned), copy their local buffer, test their bit, and count
// a valid copy older than that version as stale; an invalid bit makes them
// read and register again. The writer's next write waits until each reader
// has tested a valid copy against the last version. A request whose CF
// died in flight ("outcome unknown", kUnavailable: the client failed over)
// is issued again; any other error fails the run.
//
// Thread safety: gtest's; one checker at a time.
#ifndef HSI_TESTS_CF_XI_CHECKER_H_
#define HSI_TESTS_CF_XI_CHECKER_H_

#include <sched.h>
#include <sys/mman.h>

#include <atomic>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hsi/cf.h"
#include "hsi/testing/child.h"
#include "hsi/testing/line_pipe.h"

namespace hsi::cf::xi {

inline constexpr int kReaders = 2;
inline constexpr uint64_t kWrites = 200;
inline constexpr uint32_t kBase = 10;  // reader k's local buffer index: kBase + k

// Shared between the writer (this process) and the readers (children):
// MAP_SHARED before fork.
struct Board {
  std::atomic<uint64_t> completed{0};  // the last version whose write completed
  std::atomic<uint64_t> acked[kReaders];
  std::atomic<uint64_t> stale[kReaders];   // valid-but-stale copies seen
  std::atomic<uint64_t> checks[kReaders];  // copies tested valid
  std::atomic<uint64_t> reregs[kReaders];  // re-registrations after an invalidation
};

struct CheckResult {
  uint64_t stale = 0, checks = 0, reregs = 0, invalidated = 0;
  bool ok = false;
  std::string error;
};

struct CheckOptions {
  std::string socket;  // hsid's
  Address cf;          // where the readers connect
  Address secondary;   // the duplex secondary (Address(): none)
  // Called after version v completed and every reader tested it (for
  // example, to kill a CF while the readers hold valid copies of v).
  std::function<void(uint64_t v)> after = [](uint64_t) {};
};

// `s` is OK, or the "outcome unknown" of a request whose CF died after it
// reached it (the client failed over): issue it again.
inline bool Again(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable && s.message().find("outcome") != std::string::npos;
}

inline uint64_t Version(const std::string& data) {
  uint64_t v = 0;
  return absl::SimpleAtoi(data, &v) ? v : UINT64_MAX;
}

// Read and register, issued again after a failover in flight.
inline absl::StatusOr<CacheRead> Register(CfClient& c, const Connection& conn, uint32_t idx) {
  absl::StatusOr<CacheRead> got = c.ReadAndRegister(conn, "PAGE", idx);
  if (!got.ok() && Again(got.status())) got = c.ReadAndRegister(conn, "PAGE", idx);
  return got;
}

// One reader: copies its local buffer, then tests its bit; a valid copy
// older than a write that had completed before the copy is stale.
inline int Reader(int k, Board* board, const CheckOptions& opt, hsi::testing::LinePipe& rep) {
  CfClientOptions o;
  o.socket_path = opt.socket;
  o.lpar = absl::StrCat("RDR", k);
  o.cf = opt.cf;
  o.secondary = opt.secondary;
  o.timeout = absl::Seconds(10);
  absl::StatusOr<CfClient> c = CfClient::Open(std::move(o));
  if (!c.ok()) return rep.Write(absl::StrCat("ERR ", c.status().ToString())), 1;
  absl::StatusOr<Connection> conn = c->Connect("GBP1", absl::StrCat("RDR", k));
  if (!conn.ok()) return rep.Write(absl::StrCat("ERR ", conn.status().ToString())), 1;
  const uint32_t idx = kBase + static_cast<uint32_t>(k);
  absl::StatusOr<CacheRead> got = Register(*c, *conn, idx);
  if (!got.ok() || !got->hit) return rep.Write("ERR first read"), 1;
  std::string local = got->data;  // the local buffer
  rep.Write("READY");
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (absl::Now() < deadline) {
    // Acquire: pairs with the writer's release after its write returned.
    const uint64_t done = board->completed.load(std::memory_order_acquire);
    const std::string copy = local;  // copy first ...
    if (conn->vector->IsValid(idx)) {  // ... then test the bit
      board->checks[k].fetch_add(1, std::memory_order_relaxed);
      if (Version(copy) < done) board->stale[k].fetch_add(1, std::memory_order_relaxed);
      // Acked only after a copy tested valid: every version is checked.
      board->acked[k].store(done, std::memory_order_release);
      if (done == kWrites) return 0;
    } else {
      got = Register(*c, *conn, idx);
      if (!got.ok() || !got->hit) {
        return rep.Write(absl::StrCat("ERR re-read: ", got.ok() ? "miss" : got.status().ToString())), 1;
      }
      local = got->data;
      board->reregs[k].fetch_add(1, std::memory_order_relaxed);
    }
    ::sched_yield();  // two cores, shared: let the writer and the CF run
  }
  return rep.Write("ERR deadline"), 1;
}

// `w` is the writer's client.
inline CheckResult RunChecker(CfClient& w, const CheckOptions& opt) {
  using ::hsi::testing::Child;
  using ::hsi::testing::LinePipe;
  CheckResult out;
  void* mem = ::mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return out.error = "mmap", out;
  Board* board = new (mem) Board();
  absl::StatusOr<Connection> cw = w.Connect("GBP1", "WRITER");
  if (!cw.ok()) return out.error = cw.status().ToString(), out;
  if (!w.WriteEntry(*cw, "PAGE", "0", true).ok()) return out.error = "first write", out;
  std::vector<std::unique_ptr<LinePipe>> pipes;
  std::vector<std::unique_ptr<Child>> readers;
  for (int k = 0; k < kReaders; ++k) {
    pipes.push_back(std::make_unique<LinePipe>());
    LinePipe& p = *pipes.back();
    readers.push_back(std::make_unique<Child>([&, k] { return Reader(k, board, opt, p); }));
  }
  for (auto& p : pipes) {
    if (std::string l = p->Read(absl::Seconds(30)); l != "READY") return out.error = "reader: " + l, out;
  }
  out.ok = true;
  for (uint64_t v = 1; v <= kWrites && out.ok; ++v) {
    const std::string data = absl::StrCat(v);
    absl::StatusOr<uint32_t> n = w.WriteEntry(*cw, "PAGE", data, true);
    if (!n.ok() && Again(n.status())) n = w.WriteEntry(*cw, "PAGE", data, true);
    if (!n.ok()) {
      out.error = absl::StrCat("write ", v, ": ", n.status().ToString());
      out.ok = false;
      break;
    }
    out.invalidated += *n;
    // Release: the write returned; a reader that sees v tests after it.
    board->completed.store(v, std::memory_order_release);
    // Each reader tests a valid copy against v before the next write.
    const absl::Time until = absl::Now() + absl::Seconds(30);
    for (int k = 0; k < kReaders; ++k) {
      while (board->acked[k].load(std::memory_order_acquire) < v && absl::Now() < until) ::sched_yield();
      if (board->acked[k].load(std::memory_order_acquire) < v) {
        out.error = absl::StrCat("reader ", k, " did not test version ", v, " in 30 s");
        out.ok = false;
      }
    }
    if (out.ok) opt.after(v);
  }
  for (int k = 0; k < kReaders; ++k) {
    if (readers[k]->Wait() != 0) {
      out.ok = false;
      out.error += absl::StrCat(" reader ", k, ": ", pipes[k]->Read(absl::Seconds(1)));
    }
    out.stale += board->stale[k].load();
    out.checks += board->checks[k].load();
    out.reregs += board->reregs[k].load();
  }
  ::munmap(mem, sizeof(Board));
  return out;
}

}  // namespace hsi::cf::xi

#endif  // HSI_TESTS_CF_XI_CHECKER_H_
