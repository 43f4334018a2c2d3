// hsi/testing/raw_client.h: a raw control-socket client that speaks hsid's
// wire protocol (libhsi's internal/protocol.h) byte for byte, for hostile-
// client and attack tests that must send what libhsi never would.
//
// Ownership: RawClient owns its socket. RingEnd() hands out a pipe as
// libhsi's split doorbell would. Every call that waits takes a timeout, so
// a silent hsid fails the test instead of hanging it.
//
// Thread safety: one thread at a time per RawClient.
#ifndef HSI_TESTING_RAW_CLIENT_H_
#define HSI_TESTING_RAW_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsi/address.h"
#include "hsi/fd.h"
#include "hsi/wire/protocol.h"

namespace hsi::testing {

// A SOCK_SEQPACKET connection to hsid, non-blocking (a connect to a full
// backlog fails with EAGAIN instead of hanging).
class RawClient {
 public:
  explicit RawClient(const std::string& path);
  bool connected() const { return connected_; }
  int fd() const { return fd_.get(); }
  void Close() { fd_.Reset(); }

  // Sends raw bytes with up to 16 `fds` attached (SCM_RIGHTS); false on a
  // send error or a short send.
  bool SendRaw(const void* bytes, size_t len, const std::vector<int>& fds = {});
  // Encodes `body` as a message with `request_id` and sends it.
  template <typename T>
  bool Send(uint32_t request_id, const T& body, const std::vector<int>& fds = {}) {
    wire::OutMessage m = wire::Encode(request_id, body);
    return SendRaw(m.bytes.data(), m.bytes.size(), fds);
  }

  // The next message from hsid (up to `timeout`): nullopt on EOF or timeout;
  // `eof`, if given, tells which. SpareOffers are skipped (hsid offers every
  // NIC spare segments, daemon/spares.h; a raw client that never seals one
  // gets its links by the offer/seal path) unless see_spares() was asked.
  std::optional<wire::Message> Receive(absl::Duration timeout = absl::Seconds(5), bool* eof = nullptr);
  // Receive() returns SpareOffers too from now on.
  void see_spares() { see_spares_ = true; }
  // Waits for hsid to close the connection (skipping messages); true if it
  // did within `timeout`.
  bool WaitEof(absl::Duration timeout = absl::Seconds(5));

 private:
  UniqueFd fd_;
  bool connected_ = false;
  bool see_spares_ = false;
};

// The status a reply carries (every reply body starts with a WireStatus);
// kInternal if the body is too short to hold one.
absl::Status ReplyStatus(const wire::Message& m);

// A split doorbell as libhsi makes one for a NIC (a pipe): `*wait` keeps
// the read end the NIC waits on; the returned write end is the ring end an
// AttachRequest carries. Invalid fds if pipe2() failed.
UniqueFd RingEnd(UniqueFd* wait);

// Claims LPAR `name`; the status hsid answered (kUnavailable on EOF, no
// answer within 5 s or a failed send).
absl::Status RawClaim(RawClient& c, const std::string& name, uint32_t req_id = 1);

// Attaches a NIC on F0 with a proper split doorbell (whose wait end `*wait`
// keeps): hsid's AttachReply, or its refusal.
absl::StatusOr<wire::AttachReply> RawAttachReply(RawClient& c, uint32_t req_id, UniqueFd* wait);

// The address of a new NIC on F0 (RawAttachReply).
absl::StatusOr<Address> RawAttach(RawClient& c, uint32_t req_id, UniqueFd* wait);

}  // namespace hsi::testing

#endif  // HSI_TESTING_RAW_CLIENT_H_
