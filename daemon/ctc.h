// daemon/ctc.h: CTC connections (issue 19): who may open which device, the
// memory of each connection, and its set-up and teardown.
//
// A connection (config [[ctc]], or an admin's CtcDefineRequest) joins
// device `device_a` of LPAR a and `device_b` of LPAR b. Policy: only the
// client that claimed LPAR a may open device_a of it, and likewise b; any
// other LPAR gets kPermissionDenied naming the two LPARs the device is
// defined for, an unknown number kNotFound, an end already open
// kAlreadyExists.
//
// Memory (invariant 1): on the first open of either end hsid makes the
// connection's two half-channels, each a sealable memfd
// (hsi::CreateCtcSegment), and hands each end only its own (CtcOpenReply),
// to map writable and seal. It believes a CtcSealed only after it has seen
// F_SEAL_FUTURE_WRITE itself; once both ends are sealed it hands each the
// other's half (CtcPeer), to map read-only. From then on writes flow
// without hsid (invariant 4).
//
// Teardown (invariant 5): when an end closes (CtcClose), fails to seal, or
// its client goes, the other end gets CtcDown at once naming why, and the
// connection's memory is dropped: both ends must open again.
//
// Counters: hsid keeps its fd of each half and preads the counter block
// its owner publishes (hsi::ReadCtcSegmentCounters); it maps nothing.
//
// Ownership: Ctcs owns the connection table (loaded from the config at
// start, changed by admins) and hsid's fds of the halves.
//
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_CTC_H_
#define HSI_DAEMON_CTC_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "clients.h"
#include "config.h"
#include "hsi/fd.h"
#include "hsi/wire/protocol.h"

namespace hsid {

class Ctcs {
 public:
  Ctcs(const Config& config, Clients& clients, bool verbose);

  void OnOpen(Client& c, const Message& m);
  void OnSealed(Client& c, const Message& m);
  void OnClose(Client& c, const Message& m);
  // After an hsid restart, an end still open re-registers (invariant 4)
  // with its own half (sealed, of the connection's size, else
  // kInvalidArgument); once both ends did, the connection is ready again.
  // kAlreadyExists if that end is open, kFailedPrecondition if the other
  // end was opened afresh since (its memory is new).
  void OnReattach(Client& c, Message& m);
  // Admin requests (answered with AdminReply / CtcListReply).
  void OnDefine(Client& c, const Message& m);
  void OnUndefine(Client& c, const Message& m);
  void OnList(Client& c, const Message& m);
  // ISFC links: an LPAR declares (or withdraws) its side of a link, so that
  // admins can list them (hsictl isfc). Each device must be a CTC device
  // defined for the LPAR that leads to the named peer; else kInvalidArgument
  // / kPermissionDenied naming it. A client's declarations go with it.
  void OnIsfcDeclare(Client& c, const Message& m);
  void OnIsfcList(Client& c, const Message& m);
  // z/VM's ACTIVATE/DEACTIVATE ISLINK from outside (wire "ISFC commands"):
  // an admin's IsfcCommandRequest is checked (admin; each device defined
  // for the LPAR and leading to the peer) and forwarded to the connection
  // of that LPAR that takes ISFC commands (IsfcCommandsAccept); its
  // IsfcCommandResult is the admin's AdminReply. kFailedPrecondition if no
  // connection of the LPAR takes them; kUnavailable to the admin if that
  // connection goes first. A result for a command the client was not sent
  // is a protocol violation (the client is dropped).
  void OnIsfcCommand(Client& c, const Message& m);
  void OnIsfcCommandResult(Client& c, const Message& m);
  void OnIsfcCommandsAccept(Client& c, const Message& m);
  // Client `c` is gone: every connection it had an end of goes down.
  void OnClientGone(const Client& c);

 private:
  struct End {
    uint64_t client = 0;  // 0: closed
    bool sealed = false;
    bool reattached = false;  // re-registered after hsid's restart, with its memory from before
    hsi::UniqueFd segment;  // hsid's copy of this end's half
  };
  struct Conn {
    CtcConfig def;
    End end[2];  // a, b
    bool ready = false;
  };

  // The connection and side of `device` of LPAR `lpar`, or a refusal.
  absl::StatusOr<std::pair<uint32_t, int>> Find(const std::string& lpar, uint32_t device) const;
  // "CTC LPAR1:D000<->LPAR2:D000"
  static std::string Name(const CtcConfig& d);
  // The end of connection `id` that `c` says is its own in notice `what`;
  // nullptr (and `c` dropped for a protocol violation) if it is not.
  int NoticeSide(Client& c, const char* what, uint32_t id, uint32_t device);
  void FinishSetup(uint32_t id, Conn& k);
  // Drops both ends' memory; tells each end still open but `except` (its
  // client id) why.
  void Down(uint32_t id, Conn& k, uint32_t reason, const std::string& why, uint64_t except);
  absl::Status CheckAdmin(const Client& c, const char* op) const;
  // The first `count` of `devices`, each defined for `lpar` and leading to
  // `peer`, none twice; else the refusal, prefixed with `where`.
  absl::StatusOr<std::vector<uint32_t>> IsfcDevices(const std::string& lpar, const std::string& peer,
                                                    const std::string& where, uint32_t count,
                                                    const uint32_t (&devices)[16]) const;

  const Config& config_;
  Clients& clients_;
  const bool verbose_;
  uint32_t next_id_ = 1;
  std::map<uint32_t, Conn> conns_;
  struct Isfc {
    std::string lpar, peer;
    uint32_t mode = 0;
    std::vector<uint32_t> devices;
  };
  std::map<std::pair<uint64_t, std::string>, Isfc> isfcs_;  // (client, peer) -> its side of the link
  std::set<uint64_t> command_takers_;  // clients that take IsfcCommand
  struct PendingCommand {
    uint64_t admin = 0;       // who asked
    uint32_t request_id = 0;  // its request, to answer
    uint64_t taker = 0;       // the LPAR's connection asked
    std::string what;         // "ISFC command activate LPAR1<->LPAR2", for messages
  };
  uint32_t next_command_ = 1;
  std::map<uint32_t, PendingCommand> commands_;
};

}  // namespace hsid

#endif  // HSI_DAEMON_CTC_H_
