// hsi-ifd robustness (issue 16, item 5), with a real TCP connection over
// hsi0 between two namespaces whose every byte is checked (count and FNV
// hash of a known pattern):
//
//   * kill -9 of hsid while the stream runs: hsid is off the data path
//     (DESIGN invariant 4), the link between the two NICs keeps moving
//     frames while hsid is dead, and the connection neither resets nor
//     loses a byte; hsid, restarted by the test, gets both NICs back from
//     the reconnecting hsi-ifds.
//   * a native-API peer that breaks its ring (a record whose length
//     exceeds the MTU, written where the next frame goes): hsi-ifd moves
//     that link to BROKEN with a status that says what was wrong, and
//     serves its other peers on.
//   * kill -9 of hsi-ifd --persist during an open connection and a restart:
//     the persistent device keeps its address and routes, the new hsi-ifd
//     re-attaches to it, and TCP resends what was lost while no one read
//     the device: every byte arrives, the connection never resets.
//
// The sender writes in phases; the test opens each phase's gate itself
// (after the kill, after the restart), and waits on the receiver's byte
// count, never on time.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "hsi/admin.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "ifd_util.h"

namespace {

using namespace hsi::ifd_testing;  // NOLINT: the helpers of this test family

constexpr uint64_t kMiB = uint64_t{1} << 20;

// A TCP stream A -> B over hsi0 in phases: the receiver (in `server_ns`)
// counts bytes in shared memory as they arrive and reports "count hash"
// at EOF; the sender (in `client_ns`) writes phase 0 at once and each
// later phase once the test calls Open().
class PhasedStream {
 public:
  PhasedStream(const std::string& client_ns, const std::string& server_ns, std::vector<uint64_t> phases)
      : phases_(std::move(phases)) {
    void* m = ::mmap(nullptr, sizeof(std::atomic<uint64_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    received_ = new (m) std::atomic<uint64_t>(0);
    for (uint64_t p : phases_) total_ += p;
    server_ = ForkInNetns(server_ns, [&] { return Serve(); });
    ok_ = report_.Read(absl::Seconds(10)) == "listening";
    if (!ok_) return;
    client_ = ForkInNetns(client_ns, [&] { return Send(); });
  }
  ~PhasedStream() {
    if (client_ > 0) Reap(client_, absl::ZeroDuration());
    if (server_ > 0) Reap(server_, absl::ZeroDuration());
    ::munmap(received_, sizeof(*received_));
  }

  bool ok() const { return ok_; }
  uint64_t total() const { return total_; }
  // Bytes the receiver has read so far.
  uint64_t received() const { return received_->load(std::memory_order_relaxed); }
  // Lets the sender write its next phase.
  void Open() { gate_.Write("go"); }

  // Waits for both ends; empty if every byte arrived in order, else what
  // went wrong.
  std::string Finish(absl::Duration timeout) {
    std::string err;
    const int c = Reap(client_, timeout);
    client_ = -1;
    if (c != 0) err += absl::StrCat("sender exited ", c, " (3 connect, 4 write failed: reset?, 5 gate); ");
    const std::string got = report_.Read(timeout);
    const int s = Reap(server_, absl::Seconds(10));
    server_ = -1;
    if (s != 0) err += absl::StrCat("receiver exited ", s, " (2 accept, 6 read error: reset?); ");
    uint64_t hash = kFnvBasis;
    std::vector<uint8_t> buf(4096);
    for (uint64_t off = 0; off < total_; off += buf.size()) {
      for (size_t i = 0; i < buf.size(); ++i) buf[i] = PatternByte(off + i);
      hash = Fnv(hash, buf.data(), buf.size());
    }
    if (got != absl::StrCat(total_, " ", hash)) {
      err += absl::StrCat("receiver saw '", got, "', expected '", total_, " ", hash, "'");
    }
    return err;
  }

 private:
  static sockaddr_in AddrB() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(5203);
    ::inet_pton(AF_INET, kB, &a.sin_addr);
    return a;
  }
  int Serve() {
    const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a = AddrB();
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(l, 1) != 0) return 1;
    report_.Write("listening");
    const int c = ::accept(l, nullptr, nullptr);
    if (c < 0) return 2;
    uint64_t count = 0, hash = kFnvBasis;
    std::vector<uint8_t> buf(65536);
    for (;;) {
      const ssize_t n = ::read(c, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return 6;
      if (n == 0) break;
      hash = Fnv(hash, buf.data(), static_cast<size_t>(n));
      count += static_cast<uint64_t>(n);
      received_->store(count, std::memory_order_relaxed);
    }
    report_.Write(absl::StrCat(count, " ", hash));
    return 0;
  }
  int Send() {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = AddrB();
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return 3;
    std::vector<uint8_t> buf(65536);
    uint64_t off = 0;
    for (size_t phase = 0; phase < phases_.size(); ++phase) {
      if (phase > 0 && gate_.Read(absl::Seconds(120)) != "go") return 5;
      const uint64_t end = off + phases_[phase];
      while (off < end) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - off));
        for (size_t i = 0; i < n; ++i) buf[i] = PatternByte(off + i);
        size_t done = 0;
        while (done < n) {
          const ssize_t w = ::write(s, buf.data() + done, n - done);
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) return 4;
          done += static_cast<size_t>(w);
        }
        off += n;
      }
    }
    ::close(s);
    return 0;
  }

  std::vector<uint64_t> phases_;
  uint64_t total_ = 0;
  std::atomic<uint64_t>* received_ = nullptr;
  hsi::testing::LinePipe report_, gate_;
  pid_t server_ = -1, client_ = -1;
  bool ok_ = false;
};

using IfdRobustTest = IfdTest;

// How many NICs hsid lists (-1 if it cannot be asked).
int NicCount(const Hsid& hsid) {
  auto admin = hsi::AdminClient::Connect(hsid.socket());
  if (!admin.ok()) return -1;
  auto nics = admin->ListNics();
  return nics.ok() ? static_cast<int>(nics->size()) : -1;
}

TEST_F(IfdRobustTest, Kill9OfHsidDuringATcpStreamLosesNothing) {
  StartBoth();
  ASSERT_EQ(NicCount(hsid_), 2);
  // 64 MiB with hsid alive (killed once 4 MiB are in), 64 MiB while it is
  // dead, 32 MiB after its restart.
  PhasedStream stream(a_->name(), b_->name(), {64 * kMiB, 64 * kMiB, 32 * kMiB});
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE(Eventually([&] { return stream.received() >= 4 * kMiB; }, absl::Seconds(30))) << stream.received();
  const int status = hsid_.Stop(SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  const uint64_t at_kill = stream.received();
  std::printf("hsid killed with %llu of %llu bytes received\n", static_cast<unsigned long long>(at_kill),
              static_cast<unsigned long long>(stream.total()));
  // Without hsid: the rest of phase 0 and all of phase 1 cross the link.
  stream.Open();
  ASSERT_TRUE(Eventually([&] { return stream.received() >= 128 * kMiB; }, absl::Seconds(60)))
      << stream.received() << " bytes received\n" << ifd_a_->log() << ifd_b_->log();
  EXPECT_TRUE(ifd_a_->running() && ifd_b_->running()) << ifd_a_->log() << ifd_b_->log();
  // hsid again: both hsi-ifds reconnect and hand it their NICs back.
  ASSERT_TRUE(hsid_.Start()) << hsid_.log();
  EXPECT_TRUE(Eventually([&] { return NicCount(hsid_) == 2; }, absl::Seconds(20)))
      << NicCount(hsid_) << " NICs\n" << hsid_.log() << ifd_a_->log() << ifd_b_->log();
  stream.Open();
  const std::string err = stream.Finish(absl::Seconds(60));
  EXPECT_EQ(err, "") << ifd_a_->log() << ifd_b_->log();
  // And the interfaces still carry new traffic.
  const Result r = a_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 2 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out;
}

TEST_F(IfdRobustTest, Kill9OfPersistentIfdKeepsTheDeviceAndAnOpenTcpConnection) {
  StartBoth({"--persist"});
  // A route through the interface: it must survive the restart too.
  ASSERT_TRUE(b_->Exec("ip addr add 10.20.7.101/32 dev lo").ok());
  ASSERT_TRUE(a_->Exec(absl::StrCat("ip route add 10.20.7.101/32 via ", kB, " dev hsi0")).ok());
  PhasedStream stream(a_->name(), b_->name(), {64 * kMiB, 16 * kMiB, 16 * kMiB});
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE(Eventually([&] { return stream.received() >= 4 * kMiB; }, absl::Seconds(30))) << stream.received();
  const int status = ifd_a_->Stop(SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  std::printf("hsi-ifd A killed with %llu of %llu bytes received\n",
              static_cast<unsigned long long>(stream.received()), static_cast<unsigned long long>(stream.total()));
  // The device stays, with its address and the route; the sender writes
  // on into a device no one reads.
  EXPECT_TRUE(Exists(*a_)) << "hsi0 went with hsi-ifd despite --persist";
  EXPECT_TRUE(Shell("ip -n " + a_->name() + " -4 addr show dev hsi0 | grep -q 'inet " + kA + "/24'").ok());
  EXPECT_TRUE(Shell("ip -n " + a_->name() + " route show 10.20.7.101 | grep -q 'via " + kB + " dev hsi0'").ok())
      << Shell("ip -n " + a_->name() + " route").out;
  stream.Open();
  // Restart: the same LPAR, address and device name; it re-attaches.
  ifd_a_ = StartIfd(*a_, "A", kA, {"--persist"});
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(ifd_a_->log(), "re-attached (persistent)") || !ifd_a_->running();
  })) << ifd_a_->log();
  ASSERT_TRUE(ifd_a_->running()) << ifd_a_->log();
  stream.Open();
  const std::string err = stream.Finish(absl::Seconds(90));
  EXPECT_EQ(err, "") << ifd_a_->log() << ifd_b_->log();
  // The route learned before the kill still carries packets.
  const Result r = a_->Exec("ping -c 2 -i 0.2 -W 2 10.20.7.101");
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out << ifd_a_->log();
  // SIGTERM keeps a persistent device too.
  EXPECT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  EXPECT_TRUE(Exists(*a_));
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "keeping hsi0 (persistent")) << ifd_a_->log();
}

// The starts of this process's read-write mappings of memfd `name` (hsid
// names each ring segment after its owner's address: a link's segment and
// the NIC's spare segments for the next links, docs/ring.md, share it).
std::vector<uint8_t*> OwnMappings(const std::string& name) {
  std::vector<uint8_t*> out;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    // "start-end perms offset dev inode   /memfd:NAME (deleted)"
    if (!absl::StrContains(line, "/memfd:" + name + " ") || line.find(" rw-s ") == std::string::npos) continue;
    out.push_back(reinterpret_cast<uint8_t*>(std::stoull(line.substr(0, line.find('-')), nullptr, 16)));
  }
  return out;
}

// A well-formed IPv4/UDP packet from `src` to `dst`, port 9 (discard).
uint64_t RxPackets(const Netns& ns) {
  const Result r = ns.Exec("cat /sys/class/net/hsi0/statistics/rx_packets");
  return r.ok() ? std::stoull(r.out) : 0;
}

TEST_F(IfdRobustTest, APeerThatBreaksItsRingIsCutOffAndTheOthersServedOn) {
  StartBoth();
  // The native peer: this process, through libhsi, on the same CHPID.
  absl::StatusOr<NativePeer> peer = AttachNativePeer(hsid_.socket(), "breaker");
  ASSERT_TRUE(peer.ok()) << peer.status();
  hsi::Nic* nic = &peer->nic;
  const hsi::Address a = *hsi::Address::Parse(kA);
  // One good packet first: the link is up and A's device gets it.
  const uint64_t rx_before = RxPackets(*a_);
  ASSERT_TRUE(nic->SendTo(a, UdpPacket(nic->address(), a, 100), hsi::Wait::Adaptive(absl::Now() + absl::Seconds(5))).ok());
  ASSERT_TRUE(Eventually([&] { return RxPackets(*a_) > rx_before; })) << ifd_a_->log();
  // Break the ring: in our own segment of the link (mapped read-write, as
  // its producer), a record at the tail that says "written" with a length
  // beyond the MTU. Layout: libhsi/src/internal/ring_layout.h.
  // The link's segment is the one whose producer position (offset 128)
  // moved: the spares have carried nothing yet.
  uint8_t* seg = nullptr;
  int used = 0;
  for (uint8_t* m : OwnMappings("hsi-" + nic->address().ToString())) {
    uint64_t t = 0;
    std::memcpy(&t, m + 128, 8);
    if (t != 0) seg = m, ++used;
  }
  ASSERT_EQ(used, 1) << "not exactly one read-write mapping of this NIC's ring segments that carried a frame";
  uint64_t capacity = 0, nonce = 0, tail = 0;
  uint32_t mtu = 0, data_offset = 0;
  std::memcpy(&data_offset, seg + 12, 4);
  std::memcpy(&capacity, seg + 16, 8);
  std::memcpy(&mtu, seg + 24, 4);
  std::memcpy(&nonce, seg + 32, 8);
  std::memcpy(&tail, seg + 128, 8);
  ASSERT_EQ(data_offset, 4096u);
  ASSERT_EQ(mtu, 8192u);
  ASSERT_TRUE(capacity != 0 && (capacity & (capacity - 1)) == 0) << capacity;
  uint8_t* record = seg + data_offset + (tail & (capacity - 1));
  const uint64_t meta = uint64_t{mtu + 1000} | (uint64_t{0x4446} << 32);  // a data frame, too long
  std::memcpy(record + 8, &meta, 8);
  __atomic_store_n(reinterpret_cast<uint64_t*>(record), tail ^ nonce, __ATOMIC_RELEASE);
  // B's pings wake A's pump, which reads every link and finds the bad one.
  Result r = b_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 2 ", kA));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ifd_a_->log();
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(ifd_a_->log(), absl::StrCat("length ", mtu + 1000, " exceeding MTU")); }))
      << ifd_a_->log();
  // A is still running and serves B both ways.
  EXPECT_TRUE(ifd_a_->running()) << ifd_a_->log();
  r = a_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 2 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ifd_a_->log();
  r = b_->Exec(absl::StrCat("ping -c 3 -i 0.2 -W 2 ", kA));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "3 received")) << r.out << ifd_a_->log();
  EXPECT_EQ(ifd_a_->Stop(SIGTERM), 0) << ifd_a_->log();
  const std::string log = ifd_a_->log();
  EXPECT_TRUE(absl::StrContains(log, "DATA_LOSS")) << log;
  EXPECT_FALSE(absl::StrContains(log, "peers gone 0\n")) << log;
}

TEST_F(IfdRobustTest, PersistRefusesADeviceItDidNotLeave) {
  // A persistent TAP device with some other MAC: not ours, not taken over.
  ASSERT_TRUE(Shell("ip -n " + a_->name() + " tuntap add dev hsi0 mode tap").ok());
  ifd_a_ = StartIfd(*a_, "A", kA, {"--persist"});
  const int status = ifd_a_->WaitExit(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status << ifd_a_->log();
  EXPECT_TRUE(absl::StrContains(ifd_a_->log(), "is not one hsi-ifd --persist left")) << ifd_a_->log();
  EXPECT_TRUE(Exists(*a_));
}

}  // namespace
