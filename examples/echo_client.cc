// echo_client: sends COUNT frames of SIZE bytes to the echo server at
// ADDRESS, checks every echo and prints the median round trip.
//   usage: echo_client ADDRESS COUNT SIZE
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common.h"
#include "hsi/nic.h"
#include "hsi/session.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: echo_client ADDRESS COUNT SIZE\n");
    return 2;
  }
  auto server = hsi::Address::Parse(argv[1]);
  if (!server.ok()) {
    std::fprintf(stderr, "ADDRESS: %s\n", server.status().ToString().c_str());
    return 2;
  }
  const long count = ParseCount(argv[2], "COUNT");
  const long size = ParseCount(argv[3], "SIZE");
  auto session = hsi::Session::Connect({.lpar = "echo-client"});
  Check(session.status(), "connect to hsid");
  auto nic = session->AttachNic(kChpid);
  Check(nic.status(), "attach to CHPID F0");
  if (size > static_cast<long>(nic->info().mtu)) {
    std::fprintf(stderr, "SIZE %ld exceeds the CHPID's MTU %u\n", size, nic->info().mtu);
    return 2;
  }

  std::vector<uint8_t> out(size), in(nic->info().mtu);
  std::vector<double> rtt_us;
  const hsi::Wait wait = hsi::Wait::Adaptive(absl::Now() + absl::Seconds(60));
  for (long i = 0; i < count; ++i) {
    std::memcpy(out.data(), &i, std::min<size_t>(sizeof(i), out.size()));
    const absl::Time t0 = absl::Now();
    Check(nic->SendTo(*server, out, wait), "send");
    auto got = nic->Receive(absl::MakeSpan(in), wait);
    Check(got.status(), "receive echo");
    rtt_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
    if (got->source != *server || got->length != out.size() ||
        std::memcmp(in.data(), out.data(), out.size()) != 0) {
      std::fprintf(stderr, "echo %ld does not match what was sent\n", i);
      return 1;
    }
  }
  std::nth_element(rtt_us.begin(), rtt_us.begin() + rtt_us.size() / 2, rtt_us.end());
  std::printf("echo_client: %ld echoes of %ld bytes verified, median round trip %.2f us\n",
              count, size, rtt_us[rtt_us.size() / 2]);
  return 0;
}
