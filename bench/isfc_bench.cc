// hsi-isfc-bench: ISFC logical links over CTC devices, two processes
// (LPAR1, the parent, and LPAR2, a forked child), one run of each scenario:
//   bulk   LPAR1 streams one way (LPAR2 only takes), 1/2/4/8/16 devices,
//          with the convention and in the naive mode;
//   reloc  the relocation-like load: LPAR1 streams 1 GiB in 1 MiB messages,
//          LPAR2 answers each with a 64-byte acknowledgement;
//   sym    both stream at once, each the same bytes;
// and prints a markdown table: throughput, collisions (both ends), the
// time both ends spent in collision recovery, how many devices carried
// LPAR1's chunks, and how many of LPAR2's chunks went on devices both
// sides write (under the convention: its spills). docs/benchmarks.md ("ISFC logical links") has a run.
// The devices are made here (CreateCtcPairFds, as hsid would make them);
// hsid is not on the data path, so it is not needed to measure it.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "hsi/ctc.h"
#include "hsi/isfc.h"

namespace {

using hsi::CtcDevice;
using hsi::DeviceNumber;
using hsi::IsfcLink;
using hsi::IsfcMode;

enum class Load { kBulk, kReloc, kSym };

struct Scenario {
  Load load;
  int devices;
  IsfcMode mode;
  size_t total;  // bytes each sending side streams
};

struct Result {
  double seconds = 0;
  uint64_t collisions = 0;
  absl::Duration recovery;
  int bulk_devices = 0;  // devices that carried more than 1% of LPAR1's chunks
  uint64_t resent = 0;
  uint64_t lpar2_shared = 0;  // LPAR2's chunks on devices LPAR1 writes too
};

constexpr size_t kMsg = size_t{1} << 20;
constexpr absl::Duration kLong = absl::Seconds(600);

std::shared_ptr<CtcDevice> Open(hsi::CtcEndFds fds, uint16_t dev, uint16_t peer, const char* peer_lpar) {
  hsi::CtcOptions o{.device = DeviceNumber(dev), .peer_device = DeviceNumber(peer), .peer_lpar = peer_lpar};
  absl::StatusOr<CtcDevice> d = CtcDevice::OpenFds(std::move(fds), o);
  if (!d.ok()) {
    std::fprintf(stderr, "open CTC %04X: %s\n", dev, d.status().ToString().c_str());
    std::exit(1);
  }
  return std::make_shared<CtcDevice>(std::move(*d));
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

// Streams `n` messages of `size` bytes on `l`.
void Stream(IsfcLink& l, size_t n, size_t size) {
  std::vector<uint8_t> m(size, 0x5A);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(m.data(), &i, sizeof(i));
    Check(l.Send(m, absl::Now() + kLong), "send");
  }
}
void Take(IsfcLink& l, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    absl::StatusOr<std::vector<uint8_t>> m = l.Receive(absl::Now() + kLong);
    Check(m.status(), "receive");
    size_t got;
    std::memcpy(&got, m->data(), sizeof(got));
    if (got != i) {
      std::fprintf(stderr, "message %zu arrived as %zu: out of order\n", i, got);
      std::exit(1);
    }
  }
}

// LPAR2's part, in the child.
int Lpar2(const Scenario& sc, std::vector<std::shared_ptr<CtcDevice>> devs) {
  auto link = IsfcLink::Activate({.self = "LPAR2", .peer = "LPAR1", .mode = sc.mode}, std::move(devs));
  Check(link.status(), "activate LPAR2");
  Check((*link)->WaitActive(absl::Now() + kLong), "LPAR2 active");
  const size_t n = sc.total / kMsg;
  switch (sc.load) {
    case Load::kBulk:
      Take(**link, n);
      break;
    case Load::kReloc:
      for (size_t i = 0; i < n; ++i) {
        Check((*link)->Receive(absl::Now() + kLong).status(), "receive");
        std::vector<uint8_t> ack(64, 0);
        std::memcpy(ack.data(), &i, sizeof(i));
        Check((*link)->Send(ack, absl::Now() + kLong), "ack");
      }
      break;
    case Load::kSym: {
      std::thread t([&] { Stream(**link, n, kMsg); });
      Take(**link, n);
      t.join();
      break;
    }
  }
  Check((*link)->Flush(absl::Now() + kLong), "LPAR2 flush");
  return 0;
}

Result Run(const Scenario& sc) {
  std::vector<std::shared_ptr<CtcDevice>> mine;
  std::vector<hsi::UniqueFd> theirs_for_counters;
  std::vector<hsi::CtcEndFds> theirs;
  for (int i = 0; i < sc.devices; ++i) {
    absl::StatusOr<hsi::CtcPairFds> p = hsi::CreateCtcPairFds(hsi::kDefaultCtcBlockSize);
    Check(p.status(), "CreateCtcPairFds");
    theirs_for_counters.emplace_back(::dup(p->b.own.get()));
    theirs.push_back(std::move(p->b));
    mine.push_back(Open(std::move(p->a), static_cast<uint16_t>(0xD000 + i), static_cast<uint16_t>(0xD000 + i),
                        "LPAR2"));
  }
  const pid_t child = ::fork();
  if (child == 0) {
    std::vector<std::shared_ptr<CtcDevice>> devs;
    for (int i = 0; i < sc.devices; ++i) {
      devs.push_back(Open(std::move(theirs[i]), static_cast<uint16_t>(0xD000 + i),
                          static_cast<uint16_t>(0xD000 + i), "LPAR1"));
    }
    ::_exit(Lpar2(sc, std::move(devs)));
  }
  theirs.clear();
  Result r;
  {
    auto link = IsfcLink::Activate({.self = "LPAR1", .peer = "LPAR2", .mode = sc.mode}, mine);
    Check(link.status(), "activate LPAR1");
    Check((*link)->WaitActive(absl::Now() + kLong), "LPAR1 active");
    const size_t n = sc.total / kMsg;
    const absl::Time t0 = absl::Now();
    switch (sc.load) {
      case Load::kBulk:
        Stream(**link, n, kMsg);
        break;
      case Load::kReloc: {
        std::thread t([&] { Stream(**link, n, kMsg); });
        Take(**link, n);  // the acks, in order
        t.join();
        break;
      }
      case Load::kSym: {
        std::thread t([&] { Stream(**link, n, kMsg); });
        Take(**link, n);
        t.join();
        break;
      }
    }
    Check((*link)->Flush(absl::Now() + kLong), "LPAR1 flush");
    r.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
    r.resent = (*link)->stats().resent_chunks;
    uint64_t chunks = 0;
    for (const auto& d : mine) chunks += d->counters().writes;
    for (const auto& d : mine) r.bulk_devices += d->counters().writes * 100 > chunks;
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "LPAR2 failed (status %d)\n", status);
    std::exit(1);
  }
  for (const auto& d : mine) {
    r.collisions += d->counters().collisions;
    r.recovery += absl::Nanoseconds(d->counters().recovery_ns);
  }
  std::vector<DeviceNumber> numbers;
  for (int i = 0; i < sc.devices; ++i) numbers.push_back(DeviceNumber(static_cast<uint16_t>(0xD000 + i)));
  const hsi::WritePlan plan = hsi::PlanWrites("LPAR1", "LPAR2", numbers, sc.mode).value();
  for (size_t i = 0; i < theirs_for_counters.size(); ++i) {
    if (std::optional<hsi::CtcCounters> c = hsi::ReadCtcSegmentCounters(theirs_for_counters[i].get())) {
      r.collisions += c->collisions;
      r.recovery += absl::Nanoseconds(c->recovery_ns);
      if (plan.devices[i].self_rank >= 0 && plan.devices[i].peer_rank >= 0) r.lpar2_shared += c->writes;
    }
  }
  return r;
}

const char* Name(Load l) { return l == Load::kBulk ? "bulk one way" : l == Load::kReloc ? "relocation-like" : "symmetric"; }

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--help") == 0) {
      std::printf("usage: hsi-isfc-bench [--quick]\n"
                  "ISFC logical links over CTC devices between two processes: bulk over 1-16 devices,\n"
                  "the relocation-like load (1 GiB in 1 MiB messages, 64 B acks) and symmetric bulk,\n"
                  "convention vs naive mode; prints a markdown table. --quick: 1/8 of the bytes.\n");
      return 0;
    } else {
      std::fprintf(stderr, "hsi-isfc-bench: unknown argument %s (--help)\n", argv[i]);
      return 2;
    }
  }
  const size_t gib = quick ? (size_t{1} << 27) : (size_t{1} << 30);
  std::vector<Scenario> all;
  for (int n : {1, 2, 4, 8, 16}) {
    for (IsfcMode m : {IsfcMode::kConvention, IsfcMode::kNaive}) all.push_back({Load::kBulk, n, m, gib / 2});
  }
  for (int n : {2, 4, 16}) {
    for (IsfcMode m : {IsfcMode::kConvention, IsfcMode::kNaive}) all.push_back({Load::kReloc, n, m, gib});
  }
  for (int n : {2, 4, 16}) {
    for (IsfcMode m : {IsfcMode::kConvention, IsfcMode::kNaive}) all.push_back({Load::kSym, n, m, gib / 4});
  }
  std::printf("| load | devices | mode | MiB each way | seconds | GiB/s (LPAR1->LPAR2) | collisions | recovery | "
              "devices carrying LPAR1's chunks | chunks resent | LPAR2's chunks on devices both write |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Scenario& sc : all) {
    const Result r = Run(sc);
    std::printf("| %s | %d | %s | %zu | %.3f | %.2f | %llu | %s | %d | %llu | %llu |\n", Name(sc.load), sc.devices,
                sc.mode == IsfcMode::kConvention ? "convention" : "naive", sc.total >> 20, r.seconds,
                static_cast<double>(sc.total) / r.seconds / (1 << 30), static_cast<unsigned long long>(r.collisions),
                absl::FormatDuration(absl::Trunc(r.recovery, absl::Microseconds(1))).c_str(), r.bulk_devices,
                static_cast<unsigned long long>(r.resent), static_cast<unsigned long long>(r.lpar2_shared));
    std::fflush(stdout);
  }
  return 0;
}
