// uring_loop: one LPAR serves NICS NICs from a single io_uring event loop
// (liburing, IORING_OP_POLL_ADD on each NIC's doorbell fd and on the
// session's control socket, so that the loop also sees hsid die and come
// back), echoing every frame. A forked client LPAR sends FRAMES frames to
// every NIC and checks the echoes.
//   usage: uring_loop NICS FRAMES
#include <liburing.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common.h"
#include "hsi/nic.h"
#include "hsi/session.h"

namespace {

int Client(int addr_fd, long nics, long frames) {
  std::vector<hsi::Address> servers(nics);
  for (auto& a : servers) {
    uint32_t v;
    if (::read(addr_fd, &v, sizeof(v)) != sizeof(v)) return 1;
    a = hsi::Address(v);
  }
  auto session = hsi::Session::Connect({.lpar = "uring-client"});
  Check(session.status(), "client: connect to hsid");
  auto nic = session->AttachNic(kChpid);
  Check(nic.status(), "client: attach");
  std::vector<uint8_t> buf(nic->info().mtu);
  const hsi::Wait wait = hsi::Wait::Adaptive(absl::Now() + absl::Seconds(60));
  for (long i = 0; i < frames; ++i) {
    for (const hsi::Address& s : servers) {
      Check(nic->SendTo(s, absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&i), sizeof(i)), wait), "client: send");
    }
    for (long k = 0; k < nics; ++k) {
      auto got = nic->Receive(absl::MakeSpan(buf), wait);
      Check(got.status(), "client: receive echo");
      long seq;
      std::memcpy(&seq, buf.data(), sizeof(seq));
      if (got->length != sizeof(seq) || seq != i) {
        std::fprintf(stderr, "client: unexpected echo\n");
        return 1;
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: uring_loop NICS FRAMES\n");
    return 2;
  }
  const long nics = ParseCount(argv[1], "NICS");
  const long frames = ParseCount(argv[2], "FRAMES");
  int pipefd[2];
  if (::pipe(pipefd) != 0) return 1;
  pid_t client = ::fork();
  if (client == 0) {
    ::close(pipefd[1]);
    ::_exit(Client(pipefd[0], nics, frames));
  }
  ::close(pipefd[0]);

  auto session = hsi::Session::Connect({.lpar = "uring-server"});
  Check(session.status(), "server: connect to hsid");
  std::vector<hsi::Nic> nic;
  for (long i = 0; i < nics; ++i) {
    auto n = session->AttachNic(kChpid);
    Check(n.status(), "server: attach");
    uint32_t v = n->address().value();
    if (::write(pipefd[1], &v, sizeof(v)) != sizeof(v)) return 1;
    nic.push_back(std::move(*n));
  }

  io_uring ring;
  if (int r = io_uring_queue_init(static_cast<unsigned>(nics) * 2, &ring, 0); r < 0) {
    std::fprintf(stderr, "io_uring_queue_init: %s\n", std::strerror(-r));
    return 1;
  }
  // Arms NIC i: poll its doorbell unless something is already waiting.
  // The session's control socket is polled too (user data kControl): when
  // it is readable, or while hsid is away and a reconnect is due,
  // Session::Poll() handles it.
  constexpr uint64_t kControl = ~uint64_t{0};
  bool control_armed = false;
  auto arm_control = [&] {
    if (control_armed || session->fd() < 0) return;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_poll_add(sqe, session->fd(), POLLIN);
    io_uring_sqe_set_data64(sqe, kControl);
    control_armed = true;
  };
  std::vector<size_t> ready;
  std::vector<bool> armed(nic.size(), false);  // a doorbell poll is in the ring
  auto arm = [&](size_t i) {
    if (nic[i].PrepareWait()) {
      ready.push_back(i);
      return;
    }
    if (armed[i]) return;
    armed[i] = true;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_poll_add(sqe, nic[i].fd(), POLLIN);
    io_uring_sqe_set_data64(sqe, i);
  };
  for (size_t i = 0; i < nic.size(); ++i) arm(i);
  arm_control();

  std::vector<uint8_t> buf(nic[0].info().mtu);
  const long want = nics * frames;
  long echoed = 0;
  while (echoed < want) {
    if (ready.empty()) {
      io_uring_submit(&ring);
      io_uring_cqe* cqe;
      __kernel_timespec ts{};
      const absl::Time next = session->next_poll();  // a reconnect due while hsid is away
      if (next != absl::InfiniteFuture()) {
        const absl::Duration left = std::max(next - absl::Now(), absl::ZeroDuration());
        ts.tv_sec = absl::ToInt64Seconds(left);
        ts.tv_nsec = absl::ToInt64Nanoseconds(left - absl::Seconds(ts.tv_sec));
      }
      int r = io_uring_wait_cqe_timeout(&ring, &cqe, next != absl::InfiniteFuture() ? &ts : nullptr);
      if (r == -ETIME) {
        (void)session->Poll();  // reconnect attempt
        arm_control();
        continue;
      }
      if (r < 0) {
        std::fprintf(stderr, "io_uring_wait_cqe: %s\n", std::strerror(-r));
        return 1;
      }
      const uint64_t what = io_uring_cqe_get_data64(cqe);
      io_uring_cqe_seen(&ring, cqe);
      if (what == kControl) {
        control_armed = false;
        (void)session->Poll();  // link offers, link-down events, hsid's death
        arm_control();
        // Control events may have made NICs ready (a new link, a link down).
        for (size_t i = 0; i < nic.size(); ++i) ready.push_back(i);
        continue;
      }
      armed[what] = false;
      ready.push_back(what);
    }
    const size_t i = ready.back();
    ready.pop_back();
    // Drain NIC i, then re-arm it.
    for (;;) {
      auto got = nic[i].Receive(absl::MakeSpan(buf), hsi::Wait::Never());
      if (absl::IsDeadlineExceeded(got.status())) break;
      Check(got.status(), "server: receive");
      Check(nic[i].SendTo(got->source, absl::MakeConstSpan(buf.data(), got->length),
                          hsi::Wait::Adaptive(absl::Now() + absl::Seconds(30))),
            "server: echo");
      ++echoed;
    }
    arm(i);
  }
  int status = 0;
  ::waitpid(client, &status, 0);
  io_uring_queue_exit(&ring);
  const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::printf("uring_loop: one io_uring served %ld NICs, %ld frames echoed, client %s\n",
              nics, echoed, ok ? "verified every echo" : "FAILED");
  return ok ? 0 : 1;
}
