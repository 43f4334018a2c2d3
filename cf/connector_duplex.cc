// connector_duplex.cc: what a CfClient does when its CF link goes down
// (hsi/cf.h "Failure", docs/cf.md "Duplexing"): fail over to the secondary
// of duplexed structures, or say which structure is lost.
#include <poll.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client_internal.h"

namespace hsi::cf {

using proto::Header;
using proto::Writer;

namespace {

// The structure a request frame of this client is about ("" if unknown).
std::string StructureOf(const CfClient::State& s, absl::Span<const uint8_t> request) {
  absl::StatusOr<Header> h = proto::ParseHeader(request);
  if (!h.ok()) return "";
  if (h->type == proto::kConnect) {
    proto::Reader r(request);
    return r.Str("structure", proto::kMaxName);
  }
  for (const Connection& c : s.open)
    if (c.token == h->conn) return c.structure;
  return "";
}

// Connects every open connection again at the secondary, which gives each
// its old token back (cf/duplex.h). The secondary may not have seen its
// primary's death yet ("holds the duplex secondary"): asked again until
// the timeout.
absl::Status Reconnect(CfClient::State& s) {
  const absl::Time deadline = absl::Now() + s.timeout;
  for (const Connection& c : s.open) {
    while (true) {
      const uint64_t id = s.next_id++;
      Writer w(Header{proto::kConnect, id, 0, 0});
      w.Str(c.structure).Str(c.connector);
      absl::StatusOr<std::vector<uint8_t>> rep = Call(s, w, id);
      if (rep.ok()) {
        const uint32_t token = proto::ParseHeader(*rep)->conn;
        if (token != c.token) {
          return absl::DataLossError(
              absl::StrCat(s.Name(), ": connector ", c.connector, " of ", c.structure,
                           " got connection token ", token, " at the secondary, not its own ",
                           c.token, ": the secondary did not hold its connection"));
        }
        // A cache connection: the survivor's fresh vector (every copy
        // invalid) goes in place of both halves; the Connection values the
        // application holds see it at once.
        if (c.cache) {
          uint64_t size = 0;
          absl::StatusOr<UniqueFd> fd =
              s.nic.TakeMemory(s.link.peer(), c.token, &size, Wait::Block(deadline));
          absl::Status st = fd.ok() ? c.vector->Replace(std::move(*fd)) : fd.status();
          if (!st.ok()) {
            return absl::Status(st.code(), absl::StrCat(s.Name(), ": the fresh validity vector of ",
                                                        c.connector, " of ", c.structure, ": ",
                                                        st.message()));
          }
        }
        break;
      }
      const bool not_yet = rep.status().code() == absl::StatusCode::kUnavailable &&
                           rep.status().message().find("duplex secondary") != std::string::npos;
      if (!not_yet || absl::Now() >= deadline) return rep.status();
      struct pollfd p {
        s.nic.fd(), POLLIN, 0
      };
      ::poll(&p, 1, 5);  // the secondary takes over when hsid tells it: a retry, not an order
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LocalVector> TakeSecondHalf(CfClient::State& s, Address secondary, uint32_t token,
                                           LocalVector v) {
  uint64_t size = 0;
  absl::StatusOr<UniqueFd> fd =
      s.nic.TakeMemory(secondary, token, &size, Wait::Block(absl::Now() + s.timeout));
  if (!fd.ok()) {
    return absl::Status(fd.status().code(), absl::StrCat("its second half, from the secondary CF at ",
                                                         secondary.ToString(), ": ", fd.status().message()));
  }
  if (absl::Status st = v.AddSecondary(std::move(*fd)); !st.ok()) return st;
  return v;
}

absl::Status DuplexEnded(CfClient::State& s, uint32_t token) {
  for (const Connection& c : s.open) {
    if (c.token != token || !c.vector) continue;
    if (absl::Status st = c.vector->DropSecondary(); !st.ok())
      return absl::Status(st.code(), absl::StrCat(s.Name(), ": duplexing of ", c.structure,
                                                  " ended: ", st.message()));
  }
  return absl::OkStatus();  // a connection not (yet) open here: nothing to do
}

absl::Status LinkDown(CfClient::State& s, const absl::Status& cause,
                      absl::Span<const uint8_t> request, bool in_flight) {
  const std::string dead = s.link.peer().ToString();
  if (s.secondary == Address() || s.failed_over) {
    std::string what = StructureOf(s, request);
    what = what.empty() ? "the structure(s)" : absl::StrCat("structure ", what);
    return absl::UnavailableError(absl::StrCat(what, " in the CF at ", dead, " is lost (",
                                               cause.message(),
                                               "): rebuild it in another CF (docs/cf.md)"));
  }
  s.failed_over = true;
  absl::StatusOr<hsi::Link> l = s.nic.Link(s.secondary, Wait::Adaptive(absl::Now() + s.timeout));
  if (!l.ok()) {
    return absl::UnavailableError(absl::StrCat("the CF at ", dead, " died (", cause.message(),
                                               ") and its secondary at ", s.secondary.ToString(),
                                               " cannot be reached: ", l.status().message()));
  }
  s.link = std::move(*l);
  // Asynchronous requests in flight: their outcome is not known.
  for (const auto& [id, type] : s.async) {
    Event e;
    e.kind = Event::Kind::kReply;
    e.request = id;
    e.status = absl::UnavailableError(absl::StrCat("the CF at ", dead, " died with request ", id,
                                                   " in flight: outcome unknown"));
    s.events.push_back(std::move(e));
  }
  s.async.clear();
  if (absl::Status st = Reconnect(s); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("failing over from the CF at ", dead, " to ",
                                                s.secondary.ToString(), ": ", st.message()));
  }
  Event e;
  e.kind = Event::Kind::kFailedOver;
  e.status = absl::UnavailableError(absl::StrCat("the CF at ", dead, " died (", cause.message(),
                                                 "); failed over to its secondary at ",
                                                 s.secondary.ToString(), ", ", s.open.size(),
                                                 " connection(s) made again"));
  s.events.push_back(std::move(e));
  if (!in_flight) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "the CF at ", dead, " died with this request in flight; failed over to the secondary at ",
      s.secondary.ToString(), " (connections made again): the outcome is unknown, re-issue it"));
}

}  // namespace hsi::cf
