// cf/client_internal.h: what connector.cc and connector_list.cc share:
// CfClient's state and the synchronous call. Not installed.
#ifndef HSI_CF_CLIENT_INTERNAL_H_
#define HSI_CF_CLIENT_INTERNAL_H_

#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "hsi/cf.h"
#include "protocol.h"

namespace hsi::cf {

struct CfClient::State {
  Session session;
  Nic nic;
  hsi::Link link;
  absl::Duration timeout;
  absl::Duration spin;  // CfClientOptions::spin
  // How a synchronous request waits for its reply until `deadline`.
  Wait CallWait(absl::Time deadline) const {
    return spin == absl::InfiniteDuration() ? Wait::Spin(deadline)
                                            : Wait{WaitMode::kAdaptive, deadline, spin};
  }
  uint64_t next_id = 1;
  std::deque<Event> events;
  absl::flat_hash_map<uint64_t, uint8_t> async;  // asynchronous requests in flight: id -> type
  std::vector<uint8_t> buf;
  // The lock requests' frame and reply, reused (no allocation per request).
  std::vector<uint8_t> wbuf, reply;
  Address secondary;                // duplexing: the CF to fail over to (Address(): none)
  bool failed_over = false;         // it happened (once)
  std::vector<Connection> open;     // connections made and not disconnected
  std::string Name() const {
    return absl::StrCat("CF link ", link.local().ToString(), "->", link.peer().ToString());
  }
};

// Receives one frame from the CF, waiting as `wait` says: a note goes to
// the event queue; the reply to `want` is copied to *reply (*matched set).
absl::Status ReceiveOne(CfClient::State& s, const Wait& wait, uint64_t want,
                        std::vector<uint8_t>* reply, bool* matched);
// Sends the request in `w` (request id `id`) and spins for its reply until
// the client's timeout: the reply frame, or the CF's status and message.
absl::StatusOr<std::vector<uint8_t>> Call(CfClient::State& s, const proto::Writer& w, uint64_t id);
// Call's form that fills *reply (its capacity reused) instead of returning
// a new vector.
absl::Status CallInto(CfClient::State& s, const proto::Writer& w, uint64_t id,
                      std::vector<uint8_t>* reply);
// The CF link went down (`cause`, kUnavailable) around `request` (a frame
// this client built; `in_flight`: it was sent). With a secondary not yet
// used: fails over (cf/connector_duplex.cc) and returns OK when the request
// may be re-sent (it was not in flight), kUnavailable "outcome unknown"
// when it was. Else kUnavailable naming the structure that is lost.
absl::Status LinkDown(CfClient::State& s, const absl::Status& cause,
                      absl::Span<const uint8_t> request, bool in_flight);
// Duplexed cache structures (cf/connector_duplex.cc): takes the second
// half of connection `token`'s vector, granted by the secondary CF at
// `secondary`, and adds it to `v`.
absl::StatusOr<LocalVector> TakeSecondHalf(CfClient::State& s, Address secondary, uint32_t token,
                                           LocalVector v);
// A DuplexEndNote for connection `token`: its vector's secondary half goes.
absl::Status DuplexEnded(CfClient::State& s, uint32_t token);
// A reply frame's status: OK, or the CF's code and message.
absl::Status ReplyStatus(CfClient::State& s, absl::Span<const uint8_t> reply);
// A Lock reply's body (status OK), validated.
absl::StatusOr<LockReply> ParseLockReply(CfClient::State& s, absl::Span<const uint8_t> reply,
                                         uint64_t id);

}  // namespace hsi::cf

#endif  // HSI_CF_CLIENT_INTERNAL_H_
