// The KVM paper's setup over hsi0 (issue 16, item 6): an LPAR that acts as
// a KVM host routes, with IP forwarding and no NAT, between its guests
// behind a Linux bridge and its layer-3 hsi0, so that
//
//   * a server in a guest is reachable from another LPAR over HiperSockets
//     (the guest sees the other LPAR's own address: nothing translated),
//   * and the guest reaches another subnet through the host's other
//     interface (the "OSA" network), also without NAT.
//
// Namespaces (unique names, always deleted), each an LPAR or a guest:
//
//   guest G 10.77.0.10 --veth-- [bridge 10.77.0.1 | host H | hsi0 10.240.0.1] ==CHPID F0== [hsi0 10.240.0.2 | LPAR O]
//                                                   | osa 10.88.0.1 --veth-- 10.88.0.2 network X
//
// O routes 10.77.0.0/24 via 10.240.0.1 dev hsi0 (next hop = the host's
// NIC, destination = the guest), X routes it via 10.88.0.1; the guest's
// default route is the bridge address. Needs root, /dev/net/tun and the
// bridge and veth drivers; skips with the reason otherwise.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "hsi/testing/line_pipe.h"
#include "ifd_util.h"

namespace {

using namespace hsi::ifd_testing;  // NOLINT: the helpers of this test family

constexpr char kGuest[] = "10.77.0.10";
constexpr char kBridge[] = "10.77.0.1";
constexpr char kOsaHost[] = "10.88.0.1";
constexpr char kOsaPeer[] = "10.88.0.2";
constexpr int kPort = 8080;

class IfdKvmHostTest : public IfdTest {
 protected:
  void SetUp() override {
    IfdTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    guest_ = std::make_unique<Netns>();
    osa_ = std::make_unique<Netns>();
    ASSERT_TRUE(guest_->made() && osa_->made()) << "ip netns add failed";
    StartBoth();  // hsi-ifd: A = the KVM host H, B = the other LPAR O
    const std::string tag = absl::StrCat(::getpid() % 100000);
    const std::string& h = a_->name();
    // The guest behind a bridge in the host (what libvirt's default
    // network is, minus its NAT).
    const Result bridge = Shell(absl::StrCat("ip -n ", h, " link add br", tag, " type bridge"));
    if (!bridge.ok()) GTEST_SKIP() << "no Linux bridge in this kernel: " << bridge.out;
    const Result veth = Shell(absl::StrCat("ip link add vh", tag, " netns ", h, " type veth peer name eth0 netns ",
                                           guest_->name()));
    if (!veth.ok()) GTEST_SKIP() << "no veth in this kernel: " << veth.out;
    for (const std::string& cmd : std::vector<std::string>{
             absl::StrCat("ip -n ", h, " link set vh", tag, " master br", tag),
             absl::StrCat("ip -n ", h, " addr add ", kBridge, "/24 dev br", tag),
             absl::StrCat("ip -n ", h, " link set br", tag, " up"),
             absl::StrCat("ip -n ", h, " link set vh", tag, " up"),
             absl::StrCat("ip -n ", guest_->name(), " addr add ", kGuest, "/24 dev eth0"),
             absl::StrCat("ip -n ", guest_->name(), " link set eth0 up"),
             absl::StrCat("ip -n ", guest_->name(), " route add default via ", kBridge),
             // The host's other interface ("OSA") to network X.
             absl::StrCat("ip link add osa", tag, " netns ", h, " type veth peer name osa0 netns ", osa_->name()),
             absl::StrCat("ip -n ", h, " addr add ", kOsaHost, "/24 dev osa", tag),
             absl::StrCat("ip -n ", h, " link set osa", tag, " up"),
             absl::StrCat("ip -n ", osa_->name(), " addr add ", kOsaPeer, "/24 dev osa0"),
             absl::StrCat("ip -n ", osa_->name(), " link set osa0 up"),
             absl::StrCat("ip -n ", osa_->name(), " route add 10.77.0.0/24 via ", kOsaHost),
             // The other LPAR reaches the guests through the host's hsi0.
             absl::StrCat("ip -n ", b_->name(), " route add 10.77.0.0/24 via ", kA, " dev hsi0"),
             // The KVM host routes; no NAT rule anywhere.
             absl::StrCat("ip netns exec ", h, " sysctl -qw net.ipv4.ip_forward=1"),
         }) {
      const Result r = Shell(cmd);
      ASSERT_TRUE(r.ok()) << cmd << ": " << r.out;
    }
  }

  std::unique_ptr<Netns> guest_, osa_;
};

TEST_F(IfdKvmHostTest, ServerInAGuestIsReachableFromAnotherLparOverHsi0WithoutNat) {
  constexpr uint64_t kBytes = uint64_t{16} << 20;
  const uint64_t rx_before = Hsi0RxBytes(*a_);
  // The server in the guest, the client in the other LPAR, to the
  // guest's own address; every byte checked.
  const TransferResult t = CheckedTcpTransfer(guest_->name(), b_->name(), kGuest, kPort, kBytes);
  EXPECT_EQ(t.error, "") << ifd_a_->log() << ifd_b_->log();
  // The guest sees the other LPAR's hsi address: routed, not translated.
  EXPECT_EQ(t.peer, kB);
  // The stream came in over the host's hsi0 (not some other path).
  EXPECT_GE(Hsi0RxBytes(*a_) - rx_before, kBytes);
  // And the guest answers ping from the other LPAR, both ways.
  Result r = b_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 2 ", kGuest));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out;
  r = guest_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 2 ", kB));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out;
}

TEST_F(IfdKvmHostTest, GuestAlsoReachesOtherSubnetsThroughTheHostsOtherInterface) {
  // X answers the guest's own address (X has a route back, no NAT on H).
  Result r = guest_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 2 ", kOsaPeer));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out;
  // Unsolicited, from X to the guest's own address: only routing (no
  // NAT, which would hide the guest) lets this through.
  r = osa_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 2 ", kGuest));
  EXPECT_TRUE(r.ok() && absl::StrContains(r.out, "2 received")) << r.out;
}

}  // namespace
