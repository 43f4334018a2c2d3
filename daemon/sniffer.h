// daemon/sniffer.h: the Network Traffic Analyzer's side in hsid: who may tap
// a CHPID, and what a tap is handed.
//
// A SniffRequest opens a tap of one CHPID on the asker's connection (one
// CHPID per connection) if the asker is an admin or one of the CHPID's
// `sniffers`/`sniffer_gids` (DESIGN.md invariant 3); a refusal names the
// config key and is logged. A tap is handed, as SniffLink, both segments of
// every ready link on its CHPID: those ready now, and each that becomes
// ready later (flagged kSniffNew); and a SniffLinkGone when a ready link
// goes. Invariant 1: a tap gets only segments whose owners sealed them
// against new writers, so the kernel keeps the tap read-only; a link with
// an unsealed segment is not handed out at all (logged). The tap reads the
// rings itself; frames never pass through hsid.
//
// Ownership: Sniffer keeps no table of its own: a tap is its connection's
// Client::sniff_chpid, which only Sniffer writes, and goes with it.
//
// Thread safety: none; hsid is single-threaded.
#ifndef HSI_DAEMON_SNIFFER_H_
#define HSI_DAEMON_SNIFFER_H_

#include "clients.h"
#include "config.h"
#include "hsi/wire/protocol.h"
#include "links.h"

namespace hsid {

class Sniffer : public Links::Observer {
 public:
  Sniffer(const Config& config, Clients& clients, const Links& links)
      : config_(config), clients_(clients), links_(links) {}

  // SniffRequest: opens a tap on the client's connection.
  void OnSniff(Client& c, const Message& m);

  // Links::Observer: hands a newly ready link to every tap of its CHPID;
  // tells them when a ready link goes.
  void LinkReady(const Link& l) override { Offer(l, nullptr); }
  void LinkGone(const Link& l) override;

 private:
  // Hands a ready link's two sealed segments, read-only by the seals, to
  // every sniffer of its CHPID (or only to `only`).
  void Offer(const Link& l, Client* only);

  const Config& config_;
  Clients& clients_;
  const Links& links_;
};

}  // namespace hsid

#endif  // HSI_DAEMON_SNIFFER_H_
