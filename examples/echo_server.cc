// echo_server: attaches LPAR "echo-server" to CHPID F0, prints its address
// and sends every frame back to where it came from, COUNT frames in all.
//   usage: echo_server COUNT        (hsid's socket: $HSI_SOCKET or default)
#include <cstdio>
#include <vector>

#include "common.h"
#include "hsi/nic.h"
#include "hsi/session.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: echo_server COUNT\n");
    return 2;
  }
  const long count = ParseCount(argv[1], "COUNT");
  auto session = hsi::Session::Connect({.lpar = "echo-server"});
  Check(session.status(), "connect to hsid");
  auto nic = session->AttachNic(kChpid);
  Check(nic.status(), "attach to CHPID F0");
  std::printf("%s\n", nic->address().ToString().c_str());
  std::fflush(stdout);

  std::vector<uint8_t> buf(nic->info().mtu);
  const hsi::Wait wait = hsi::Wait::Adaptive(absl::Now() + absl::Seconds(60));
  for (long i = 0; i < count; ++i) {
    auto got = nic->Receive(absl::MakeSpan(buf), wait);
    Check(got.status(), "receive");
    Check(nic->SendTo(got->source, absl::MakeConstSpan(buf.data(), got->length), wait), "echo");
  }
  std::fprintf(stderr, "echo_server: echoed %ld frames\n", count);
  return 0;
}
