// libFuzzer target: the control-protocol decoder (hsid's and the library's
// first line of defence against a malformed peer).
//
// Input: byte 0 picks the direction (bit 0) and how many fds ride along
// (bits 1-2, 0..3: more than any message carries); the rest is one datagram.
// Decode must either accept a message whose body is exactly its type's size
// with exactly its fd count, or reject it with kInvalidArgument, closing
// every fd it was given either way it does not keep.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hsi/wire/protocol.h"

namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "protocol_decoder_fuzz: %s\n", what);
  std::abort();
}

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hsi::wire;
  if (size < 1) return 0;
  const Direction dir = (data[0] & 1) ? Direction::kToClient : Direction::kToDaemon;
  const size_t nfds = (data[0] >> 1) & 3;
  std::vector<hsi::UniqueFd> fds;
  std::vector<int> raw;
  for (size_t i = 0; i < nfds; ++i) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die("open /dev/null");
    raw.push_back(fd);
    fds.emplace_back(fd);
  }
  auto msg = Decode(absl::MakeConstSpan(data + 1, size - 1), std::move(fds), dir);
  if (msg.ok()) {
    auto info = InfoOf(static_cast<uint16_t>(msg->type));
    if (!info.has_value()) Die("accepted an unknown type");
    if (info->direction != dir) Die("accepted a message travelling the wrong way");
    if (msg->body.size() != info->body_size) Die("accepted a body of the wrong size");
    // A reply that refuses (non-OK status first in its body) carries none.
    WireStatus st{};
    if (msg->body.size() >= sizeof(st)) std::memcpy(&st, msg->body.data(), sizeof(st));
    const bool refusal = dir == Direction::kToClient && st.code != 0 && msg->type != MsgType::kErrorReply;
    if (msg->fds.size() != info->fds && !(refusal && msg->fds.empty())) Die("accepted the wrong number of fds");
    msg->fds.clear();  // closes them
  } else if (msg.status().code() != absl::StatusCode::kInvalidArgument) {
    Die("rejected with a code other than kInvalidArgument");
  }
  for (int fd : raw) {
    if (IsOpen(fd)) Die("an fd was leaked");
  }
  return 0;
}
