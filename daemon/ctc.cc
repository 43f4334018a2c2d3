// daemon/ctc.cc: CTC connections (ctc.h).
#include "ctc.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hsi/ctc.h"
#include "hsi/isfc_convention.h"
#include "hsi/ring.h"
#include "log.h"

namespace hsid {

using hsi::UniqueFd;

namespace {
std::string Dev(uint32_t d) { return hsi::DeviceNumber(static_cast<uint16_t>(d)).ToString(); }
// The size of the file behind `fd`; -1 if fstat fails.
off_t FdSize(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? st.st_size : -1;
}
}  // namespace

Ctcs::Ctcs(const Config& config, Clients& clients, bool verbose)
    : config_(config), clients_(clients), verbose_(verbose) {
  for (const CtcConfig& d : config.ctcs) conns_[next_id_++].def = d;
}

std::string Ctcs::Name(const CtcConfig& d) {
  return absl::StrCat("CTC ", d.lpar_a, ":", Dev(d.device_a), "<->", d.lpar_b, ":", Dev(d.device_b));
}

absl::StatusOr<std::pair<uint32_t, int>> Ctcs::Find(const std::string& lpar, uint32_t device) const {
  std::string owners;
  for (const auto& [id, k] : conns_) {
    if (k.def.lpar_a == lpar && k.def.device_a == device) return std::pair{id, 0};
    if (k.def.lpar_b == lpar && k.def.device_b == device) return std::pair{id, 1};
    if (k.def.device_a == device) absl::StrAppend(&owners, owners.empty() ? "" : ", ", k.def.lpar_a);
    if (k.def.device_b == device) absl::StrAppend(&owners, owners.empty() ? "" : ", ", k.def.lpar_b);
  }
  if (!owners.empty()) {
    return absl::PermissionDeniedError(absl::StrCat("CTC device ", Dev(device), " is defined for LPAR ", owners,
                                                    ", not for LPAR \"", lpar, "\" ([[ctc]] in config ",
                                                    config_.source, ", or an admin's definition)"));
  }
  return absl::NotFoundError(absl::StrCat("no CTC device ", Dev(device), " is defined for LPAR \"", lpar, "\""));
}

void Ctcs::OnOpen(Client& c, const Message& m) {
  const auto req = m.As<wire::CtcOpenRequest>();
  auto fail = [&](const absl::Status& s) { clients_.ReplyError<wire::CtcOpenReply>(c, m.request_id, s); };
  if (c.lpar.empty()) return fail(absl::FailedPreconditionError("open CTC device: claim an LPAR first"));
  absl::StatusOr<std::pair<uint32_t, int>> where = Find(c.lpar, req.device);
  if (!where.ok()) return fail(where.status());
  const auto [id, side] = *where;
  Conn& k = conns_.at(id);
  End& e = k.end[side];
  if (e.client != 0) {
    return fail(absl::AlreadyExistsError(absl::StrCat(Name(k.def), ": LPAR \"", c.lpar, "\"'s end ",
                                                      Dev(side == 0 ? k.def.device_a : k.def.device_b),
                                                      " is open already")));
  }
  if (k.end[1 - side].reattached) {
    // The other end still holds the memory from before hsid's restart,
    // which this end has lost: that connection is over; a new one begins.
    Down(id, k, wire::kDownPeerClosed,
         absl::StrCat(Name(k.def), ": ", c.Public(), " opened its end afresh after hsid's restart"), 0);
  }
  if (!k.end[0].segment.valid()) {  // first open: the connection's memory
    absl::StatusOr<UniqueFd> a = hsi::CreateCtcSegment(k.def.block_size, "hsi-ctc-a");
    absl::StatusOr<UniqueFd> b = hsi::CreateCtcSegment(k.def.block_size, "hsi-ctc-b");
    if (!a.ok() || !b.ok()) {
      return fail(absl::ResourceExhaustedError(
          absl::StrCat(Name(k.def), ": creating half-channels: ", (!a.ok() ? a.status() : b.status()).message())));
    }
    k.end[0].segment = std::move(*a);
    k.end[1].segment = std::move(*b);
  }
  std::vector<UniqueFd> fds;
  fds.emplace_back(::fcntl(e.segment.get(), F_DUPFD_CLOEXEC, 0));
  if (!fds[0].valid()) {
    return fail(absl::ResourceExhaustedError(absl::StrCat(Name(k.def), ": hsid is out of file descriptors")));
  }
  e.client = c.id;
  e.sealed = false;
  wire::CtcOpenReply r = wire::Zeroed<wire::CtcOpenReply>();
  r.conn_id = id;
  r.block_size = k.def.block_size;
  r.recovery_us = k.def.recovery_us;
  r.peer_device = side == 0 ? k.def.device_b : k.def.device_a;
  wire::SetName(r.peer_lpar, side == 0 ? k.def.lpar_b : k.def.lpar_a);
  if (verbose_) Log(absl::StrCat(Name(k.def), ": ", c.Who(), " opens its end"));
  clients_.Send(c, wire::Encode(m.request_id, r, std::move(fds)));
}

int Ctcs::NoticeSide(Client& c, const char* what, uint32_t id, uint32_t device) {
  auto it = conns_.find(id);
  if (it != conns_.end()) {
    for (int side : {0, 1}) {
      const End& e = it->second.end[side];
      const uint32_t dev = side == 0 ? it->second.def.device_a : it->second.def.device_b;
      if (e.client == c.id && dev == device) return side;
    }
  }
  // Gone meanwhile (the other end went down) is a race, not a fault: the
  // client learns it from CtcDown. Anything else was never this client's.
  if (it != conns_.end() || id < next_id_) return -1;
  clients_.AnswerAndClose(c, absl::InvalidArgumentError(absl::StrCat("protocol: ", what, ": no CTC connection ", id)),
                          absl::StrCat("protocol violation: ", what, " for unknown CTC connection ", id));
  return -1;
}

void Ctcs::OnSealed(Client& c, const Message& m) {
  const auto req = m.As<wire::CtcSealed>();
  const int side = NoticeSide(c, "CtcSealed", req.conn_id, req.device);
  if (side < 0) return;
  Conn& k = conns_.at(req.conn_id);
  End& e = k.end[side];
  if (req.code != 0) {
    return Down(req.conn_id, k, wire::kDownSetupFailed,
                absl::StrCat(Name(k.def), ": set-up failed: ", c.Public(), " could not map its half (status code ",
                             req.code, ")"),
                0);
  }
  if (!hsi::IsSealedAgainstWrites(e.segment.get())) {  // invariant 1
    return Down(req.conn_id, k, wire::kDownSetupFailed,
                absl::StrCat(Name(k.def), ": set-up failed: ", c.Public(), " said its half was sealed; it is not"), 0);
  }
  e.sealed = true;
  if (k.end[0].sealed && k.end[1].sealed && !k.ready) FinishSetup(req.conn_id, k);
}

void Ctcs::FinishSetup(uint32_t id, Conn& k) {
  std::vector<std::pair<uint64_t, OutMessage>> out;
  for (int side : {0, 1}) {
    std::vector<UniqueFd> fds;
    fds.emplace_back(::fcntl(k.end[1 - side].segment.get(), F_DUPFD_CLOEXEC, 0));
    if (!fds[0].valid()) {
      return Down(id, k, wire::kDownSetupFailed, absl::StrCat(Name(k.def), ": hsid is out of file descriptors"), 0);
    }
    wire::CtcPeer p = wire::Zeroed<wire::CtcPeer>();
    p.conn_id = id;
    p.device = side == 0 ? k.def.device_a : k.def.device_b;
    out.emplace_back(k.end[side].client, wire::Encode(0, p, std::move(fds)));
  }
  k.ready = true;
  if (verbose_) Log(absl::StrCat(Name(k.def), " ready"));
  for (auto& [client, msg] : out) {
    if (Client* c = clients_.Find(client)) clients_.Send(*c, std::move(msg));
  }
}

void Ctcs::Down(uint32_t id, Conn& k, uint32_t reason, const std::string& why, uint64_t except) {
  if (verbose_) Log(why);
  for (int side : {0, 1}) {
    End& e = k.end[side];
    if (e.client != 0 && e.client != except) {
      if (Client* c = clients_.Find(e.client)) {
        wire::CtcDown d = wire::Zeroed<wire::CtcDown>();
        d.conn_id = id;
        d.device = side == 0 ? k.def.device_a : k.def.device_b;
        d.reason = reason;
        std::strncpy(d.text, why.c_str(), sizeof(d.text) - 1);
        clients_.Send(*c, wire::Encode(0, d));
      }
    }
    e = End{};
  }
  k.ready = false;
}

void Ctcs::OnClose(Client& c, const Message& m) {
  const auto req = m.As<wire::CtcClose>();
  const int side = NoticeSide(c, "CtcClose", req.conn_id, req.device);
  if (side < 0) return;
  Conn& k = conns_.at(req.conn_id);
  Down(req.conn_id, k, wire::kDownPeerClosed, absl::StrCat(Name(k.def), ": ", c.Public(), " closed its end"), c.id);
}

void Ctcs::OnReattach(Client& c, Message& m) {
  const auto req = m.As<wire::CtcReattachRequest>();
  auto reply = [&](const absl::Status& s, uint32_t id) {
    if (!s.ok()) return clients_.ReplyError<wire::CtcReattachReply>(c, m.request_id, s);
    wire::CtcReattachReply r = wire::Zeroed<wire::CtcReattachReply>();
    r.conn_id = id;
    clients_.Reply(c, m.request_id, r);
  };
  if (c.lpar.empty()) return reply(absl::FailedPreconditionError("re-register CTC device: claim an LPAR first"), 0);
  absl::StatusOr<std::pair<uint32_t, int>> where = Find(c.lpar, req.device);
  if (!where.ok()) return reply(where.status(), 0);
  const auto [id, side] = *where;
  Conn& k = conns_.at(id);
  End& e = k.end[side];
  const std::string name = absl::StrCat(Name(k.def), ": re-registering LPAR \"", c.lpar, "\"'s end");
  if (e.client != 0) return reply(absl::AlreadyExistsError(absl::StrCat(name, ": it is open already")), 0);
  if (k.end[1 - side].client != 0 && !k.end[1 - side].reattached) {
    return reply(absl::FailedPreconditionError(absl::StrCat(name, ": the other end was opened afresh since")), 0);
  }
  UniqueFd half = std::move(m.fds[0]);
  if (FdSize(half.get()) != static_cast<off_t>(hsi::CtcSegmentSize(k.def.block_size)) || !hsi::IsSealedAgainstWrites(half.get())) {
    return reply(absl::InvalidArgumentError(absl::StrCat(name, ": the half it handed in is not a sealed half-channel of ",
                                                         hsi::CtcSegmentSize(k.def.block_size), " bytes")),
                 0);
  }
  e.client = c.id;
  e.sealed = true;
  e.reattached = true;
  e.segment = std::move(half);
  k.ready = k.end[1 - side].reattached;
  if (verbose_) Log(absl::StrCat(name, k.ready ? ": ready again" : ""));
  reply(absl::OkStatus(), id);
}

void Ctcs::OnClientGone(const Client& c) {
  std::erase_if(isfcs_, [&](const auto& e) { return e.first.first == c.id; });
  command_takers_.erase(c.id);
  for (auto it = commands_.begin(); it != commands_.end();) {
    if (it->second.taker == c.id) {
      if (Client* admin = clients_.Find(it->second.admin)) {
        clients_.ReplyError<wire::AdminReply>(
            *admin, it->second.request_id,
            absl::UnavailableError(absl::StrCat(it->second.what, ": ", c.Public(), " went before it answered")));
      }
    }
    it = it->second.taker == c.id || it->second.admin == c.id ? commands_.erase(it) : std::next(it);
  }
  for (auto& [id, k] : conns_) {
    if (k.end[0].client == c.id || k.end[1].client == c.id) {
      Down(id, k, wire::kDownPeerGone, absl::StrCat(Name(k.def), ": ", c.Public(), " is gone"), c.id);
    }
  }
}

absl::Status Ctcs::CheckAdmin(const Client& c, const char* op) const {
  if (c.admin) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("admin operation ", op, ": uid ", c.uid,
                                                  " is not an admin (root, or admin_uids/admin_gids in config ",
                                                  config_.source, ")"));
}

void Ctcs::OnDefine(Client& c, const Message& m) {
  const auto req = m.As<wire::CtcDefineRequest>();
  auto reply = [&](const absl::Status& s) { clients_.ReplyError<wire::AdminReply>(c, m.request_id, s); };
  if (absl::Status s = CheckAdmin(c, "define CTC"); !s.ok()) return reply(s);
  std::vector<CtcConfig> all;
  for (const auto& [id, k] : conns_) all.push_back(k.def);
  std::vector<CtcConfig> add;
  for (uint32_t i = 0; i < req.count; ++i) {
    CtcConfig d;
    d.lpar_a = wire::NameOf(req.lpar_a);
    d.lpar_b = wire::NameOf(req.lpar_b);
    d.device_a = req.device_a + i;
    d.device_b = req.device_b + i;
    if (req.block_size != 0) d.block_size = req.block_size;
    d.recovery_us = req.recovery_us;
    if (absl::Status s = ValidateCtc(d, all); !s.ok()) return reply(s);  // nothing defined: all or none
    all.push_back(d);
    add.push_back(d);
  }
  for (CtcConfig& d : add) {
    Log(absl::StrCat(c.Who(), " defines ", Name(d)));
    conns_[next_id_++].def = std::move(d);
  }
  reply(absl::OkStatus());
}

void Ctcs::OnUndefine(Client& c, const Message& m) {
  const auto req = m.As<wire::CtcUndefineRequest>();
  auto reply = [&](const absl::Status& s) { clients_.ReplyError<wire::AdminReply>(c, m.request_id, s); };
  if (absl::Status s = CheckAdmin(c, "undefine CTC"); !s.ok()) return reply(s);
  absl::StatusOr<std::pair<uint32_t, int>> where = Find(wire::NameOf(req.lpar), req.device);
  if (!where.ok()) return reply(absl::NotFoundError(std::string(where.status().message())));
  Conn& k = conns_.at(where->first);
  if (k.end[0].client != 0 || k.end[1].client != 0) {
    return reply(absl::FailedPreconditionError(absl::StrCat(Name(k.def), " is open; its LPARs must close it first")));
  }
  Log(absl::StrCat(c.Who(), " undefines ", Name(k.def)));
  conns_.erase(where->first);
  reply(absl::OkStatus());
}

void Ctcs::OnList(Client& c, const Message& m) {
  const auto req = m.As<wire::CtcListRequest>();
  if (absl::Status s = CheckAdmin(c, "list CTCs"); !s.ok()) {
    return clients_.ReplyError<wire::CtcListReply>(c, m.request_id, s);
  }
  wire::CtcListReply r = wire::Zeroed<wire::CtcListReply>();
  auto it = conns_.lower_bound(req.cursor);
  for (; it != conns_.end() && r.count < wire::kListPage; ++it) {
    const Conn& k = it->second;
    wire::WireCtc& e = r.entries[r.count++];
    wire::SetName(e.lpar_a, k.def.lpar_a);
    wire::SetName(e.lpar_b, k.def.lpar_b);
    e.device_a = k.def.device_a;
    e.device_b = k.def.device_b;
    e.block_size = k.def.block_size;
    e.recovery_us = k.def.recovery_us;
    uint32_t* state[2] = {&e.state_a, &e.state_b};
    uint64_t* counters[2] = {e.counters_a, e.counters_b};
    for (int side : {0, 1}) {
      const End& end = k.end[side];
      *state[side] = end.client == 0 ? wire::kCtcEndClosed : k.ready ? wire::kCtcEndReady : wire::kCtcEndOpening;
      if (!end.segment.valid()) continue;
      if (std::optional<hsi::CtcCounters> n = hsi::ReadCtcSegmentCounters(end.segment.get())) {
        const uint64_t v[8] = {n->writes, n->bytes_written, n->reads,     n->bytes_read,
                               n->collisions, n->recovery_ns, n->withdrawn, n->broken};
        std::memcpy(counters[side], v, sizeof(v));
      }
    }
  }
  r.next_cursor = it != conns_.end() ? it->first : 0;
  clients_.Reply(c, m.request_id, r);
}

void Ctcs::OnIsfcDeclare(Client& c, const Message& m) {
  const auto req = m.As<wire::IsfcDeclareRequest>();
  auto reply = [&](const absl::Status& s) { clients_.ReplyError<wire::AdminReply>(c, m.request_id, s); };
  if (c.lpar.empty()) return reply(absl::FailedPreconditionError("declare ISFC link: claim an LPAR first"));
  const std::string peer = wire::NameOf(req.peer);
  const std::string where = absl::StrCat("ISFC link ", c.lpar, "<->", peer);
  if (req.active == 0) {
    isfcs_.erase({c.id, peer});
    return reply(absl::OkStatus());
  }
  absl::StatusOr<std::vector<uint32_t>> devices = IsfcDevices(c.lpar, peer, where, req.count, req.devices);
  if (!devices.ok()) return reply(devices.status());
  isfcs_[{c.id, peer}] = Isfc{c.lpar, peer, req.mode, std::move(*devices)};
  reply(absl::OkStatus());
}

absl::StatusOr<std::vector<uint32_t>> Ctcs::IsfcDevices(const std::string& lpar, const std::string& peer,
                                                        const std::string& where, uint32_t count,
                                                        const uint32_t (&devices)[16]) const {
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < count && i < 16; ++i) {
    absl::StatusOr<std::pair<uint32_t, int>> at = Find(lpar, devices[i]);
    if (!at.ok()) return absl::Status(at.status().code(), absl::StrCat(where, ": ", at.status().message()));
    const CtcConfig& d = conns_.at(at->first).def;
    const std::string& other = at->second == 0 ? d.lpar_b : d.lpar_a;
    if (other != peer) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": device ", Dev(devices[i]), " leads to LPAR ", other, ", not ", peer));
    }
    if (std::find(out.begin(), out.end(), devices[i]) != out.end()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": device ", Dev(devices[i]), " twice"));
    }
    out.push_back(devices[i]);
  }
  return out;
}

void Ctcs::OnIsfcCommand(Client& c, const Message& m) {
  const auto req = m.As<wire::IsfcCommandRequest>();
  auto reply = [&](const absl::Status& s) { clients_.ReplyError<wire::AdminReply>(c, m.request_id, s); };
  static constexpr const char* kOps[] = {"", "activate", "deactivate", "add devices to", "remove devices from"};
  const std::string lpar = wire::NameOf(req.lpar), peer = wire::NameOf(req.peer);
  const std::string what = absl::StrCat("ISFC command \"", kOps[req.op], "\" link ", lpar, "<->", peer);
  if (absl::Status s = CheckAdmin(c, "ISFC command"); !s.ok()) return reply(s);
  absl::StatusOr<std::vector<uint32_t>> devices = IsfcDevices(lpar, peer, what, req.count, req.devices);
  if (!devices.ok()) return reply(devices.status());
  Client* taker = nullptr;
  for (uint64_t id : command_takers_) {
    Client* t = clients_.Find(id);
    if (t != nullptr && t->lpar == lpar) taker = t;
  }
  if (taker == nullptr) {
    return reply(absl::FailedPreconditionError(absl::StrCat(
        what, ": no process of LPAR \"", lpar, "\" takes ISFC commands (hsi::CtcHost::AcceptIsfcCommands)")));
  }
  const uint32_t id = next_command_++;
  wire::IsfcCommand cmd = wire::Zeroed<wire::IsfcCommand>();
  cmd.command_id = id;
  cmd.op = req.op;
  std::memcpy(cmd.peer, req.peer, sizeof(cmd.peer));
  cmd.mode = req.mode;
  cmd.count = req.count;
  cmd.timeout_ms = req.timeout_ms;
  std::memcpy(cmd.devices, req.devices, sizeof(cmd.devices));
  commands_[id] = PendingCommand{c.id, m.request_id, taker->id, what};
  Log(absl::StrCat(c.Who(), ": ", what, " (to ", taker->Who(), ")"));
  clients_.Send(*taker, wire::Encode(0, cmd));
}

void Ctcs::OnIsfcCommandResult(Client& c, const Message& m) {
  const auto res = m.As<wire::IsfcCommandResult>();
  auto it = commands_.find(res.command_id);
  if (it == commands_.end() || it->second.taker != c.id) {
    if (res.command_id < next_command_) return;  // its admin went meanwhile
    return clients_.AnswerAndClose(
        c, absl::InvalidArgumentError(absl::StrCat("protocol: IsfcCommandResult for command ", res.command_id)),
        absl::StrCat("protocol violation: result for ISFC command ", res.command_id, " it was not sent"));
  }
  const PendingCommand p = std::move(it->second);
  commands_.erase(it);
  Client* admin = clients_.Find(p.admin);
  if (admin == nullptr) return;
  const absl::Status s = res.code == 0 ? absl::OkStatus()
                                       : absl::Status(static_cast<absl::StatusCode>(res.code),
                                                      absl::StrCat(p.what, ": ", c.Public(), ": ", std::string(res.text)));
  clients_.ReplyError<wire::AdminReply>(*admin, p.request_id, s);
}

void Ctcs::OnIsfcCommandsAccept(Client& c, const Message& m) {
  const auto req = m.As<wire::IsfcCommandsAccept>();
  if (c.lpar.empty()) {
    return clients_.AnswerAndClose(c, absl::FailedPreconditionError("protocol: IsfcCommandsAccept without an LPAR"),
                                   "protocol violation: takes ISFC commands without an LPAR");
  }
  if (req.accept != 0) {
    command_takers_.insert(c.id);
  } else {
    command_takers_.erase(c.id);
  }
}

void Ctcs::OnIsfcList(Client& c, const Message& m) {
  const auto req = m.As<wire::IsfcListRequest>();
  if (absl::Status s = CheckAdmin(c, "list ISFC links"); !s.ok()) {
    return clients_.ReplyError<wire::IsfcListReply>(c, m.request_id, s);
  }
  std::vector<const Isfc*> all;
  for (const auto& [key, l] : isfcs_) all.push_back(&l);
  wire::IsfcListReply r = wire::Zeroed<wire::IsfcListReply>();
  size_t i = req.cursor;
  for (; i < all.size() && r.count < wire::kListPage; ++i) {
    wire::WireIsfc& e = r.entries[r.count++];
    wire::SetName(e.lpar, all[i]->lpar);
    wire::SetName(e.peer, all[i]->peer);
    e.mode = all[i]->mode;
    e.count = static_cast<uint32_t>(all[i]->devices.size());
    for (size_t k = 0; k < all[i]->devices.size(); ++k) e.devices[k] = all[i]->devices[k];
  }
  r.next_cursor = i < all.size() ? static_cast<uint32_t>(i) : 0;
  clients_.Reply(c, m.request_id, r);
}

}  // namespace hsid
