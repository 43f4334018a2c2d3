// broadcast: forks LISTENERS listener LPARs on CHPID F0, then sends FRAMES
// frames to the CHPID's broadcast address; every listener must receive
// every frame, flagged as broadcast.
//   usage: broadcast LISTENERS FRAMES
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "hsi/nic.h"
#include "hsi/session.h"

namespace {

int Listen(int index, long frames, int ready_fd) {
  auto session = hsi::Session::Connect({.lpar = "bcast-listener-" + std::to_string(index)});
  Check(session.status(), "listener: connect to hsid");
  auto nic = session->AttachNic(kChpid);
  Check(nic.status(), "listener: attach to CHPID F0");
  char ok = 1;
  if (::write(ready_fd, &ok, 1) != 1) return 1;
  std::vector<uint8_t> buf(nic->info().mtu);
  for (long i = 0; i < frames; ++i) {
    auto got = nic->Receive(absl::MakeSpan(buf), hsi::Wait::Block(absl::Now() + absl::Seconds(30)));
    Check(got.status(), "listener: receive");
    long seq = -1;
    if (got->length == sizeof(seq)) std::memcpy(&seq, buf.data(), sizeof(seq));
    if (!got->broadcast || seq != i) {
      std::fprintf(stderr, "listener %d: frame %ld is not the expected broadcast\n", index, i);
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: broadcast LISTENERS FRAMES\n");
    return 2;
  }
  const long listeners = ParseCount(argv[1], "LISTENERS");
  const long frames = ParseCount(argv[2], "FRAMES");
  int ready[2];
  if (::pipe(ready) != 0) return 1;
  std::vector<pid_t> pids;
  for (long i = 0; i < listeners; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(ready[0]);
      ::_exit(Listen(static_cast<int>(i), frames, ready[1]));
    }
    pids.push_back(pid);
  }
  ::close(ready[1]);
  for (long i = 0; i < listeners; ++i) {
    char c;
    if (::read(ready[0], &c, 1) != 1) {
      std::fprintf(stderr, "a listener failed to start\n");
      return 1;
    }
  }
  auto session = hsi::Session::Connect({.lpar = "bcast-sender"});
  Check(session.status(), "sender: connect to hsid");
  auto nic = session->AttachNic(kChpid);
  Check(nic.status(), "sender: attach to CHPID F0");
  for (long i = 0; i < frames; ++i) {
    Check(nic->SendTo(nic->broadcast(), absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&i), sizeof(i)),
                      hsi::Wait::Block(absl::Now() + absl::Seconds(30))),
          "sender: broadcast");
  }
  int failed = 0;
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  std::printf("broadcast: %ld frames to %s reached %ld of %ld listeners\n", frames,
              nic->broadcast().ToString().c_str(), listeners - failed, listeners);
  return failed == 0 ? 0 : 1;
}
