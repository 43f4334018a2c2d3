// ctc_host.cc: an LPAR's CTC devices through hsid (hsi/ctc_host.h).
#include "hsi/ctc_host.h"

#include <fcntl.h>
#include <poll.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "hsi/session.h"
#include "internal/control_channel.h"

namespace hsi {

using internal::ControlChannel;

struct CtcHost::State final : ControlChannel::Handler {
  State(std::string path, const CtcHostOptions& o) : opt(o), ctl(std::move(path), o.hsid_uid, this) {
    ctl.set_timeout(o.timeout);
  }

  // ControlChannel::Handler; called with mu held (from Call or Pump).
  void OnEvent(wire::Message& m) override {
    if (m.type == wire::MsgType::kCtcPeer) {
      const auto p = m.As<wire::CtcPeer>();
      if (m.fds.size() == 1) peers[p.conn_id] = std::move(m.fds[0]);
    } else if (m.type == wire::MsgType::kIsfcCommand) {
      commands.push_back(m.As<wire::IsfcCommand>());
      cv.notify_all();  // the command thread
    } else if (m.type == wire::MsgType::kCtcDown) {
      const auto d = m.As<wire::CtcDown>();
      const absl::Status why = absl::UnavailableError(std::string(d.text));
      downs[d.conn_id] = why;
      for (auto it = open.begin(); it != open.end(); ++it) {
        if (it->second.conn_id != d.conn_id) continue;
        if (std::shared_ptr<CtcDevice> dev = it->second.device.lock()) dev->TakeDown(why);
        open.erase(it);
        break;
      }
    }
  }
  void OnStrayReply(wire::Message&) override {}
  void OnLost(const absl::Status& why) override {
    // hsid is gone: open devices keep working (invariant 4), nothing new
    // opens until the listener has reconnected.
    lost = why;
    backoff = absl::Milliseconds(10);
    next_reconnect = absl::Now();
  }

  // The listener: waits for hsid's messages and handles them; while hsid
  // is gone, reconnects with a backoff (10 ms doubling to 100 ms, as a
  // Session does).
  void Listen() {
    for (;;) {
      int fd = -1;
      {
        std::unique_lock<std::mutex> l(mu);
        if (stop) return;
        if (!ctl.connected()) {
          if (absl::Now() >= next_reconnect) Reconnect();
          cv.notify_all();
          if (!ctl.connected()) {
            cv.wait_until(l, absl::ToChronoTime(next_reconnect), [this] { return stop; });
            continue;
          }
        }
        fd = ctl.fd();
      }
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 50);
      std::unique_lock<std::mutex> l(mu);
      if (stop) return;
      if (ctl.connected()) ctl.Pump();
      cv.notify_all();
    }
  }

  // Claims the LPAR again (kClaimReclaim) and re-registers every device
  // still open here and every ISFC side declared (hsid rebuilds its tables
  // from its clients, invariant 4). A device hsid refuses (undefined, or
  // its other end opened afresh) keeps working but is no longer known to
  // hsid (its conn_id is 0: no CtcDown can come for it). With mu held.
  void Reconnect() {
    ctl.set_timeout(std::min(opt.timeout, absl::Milliseconds(500)));
    wire::ClaimRequest claim = wire::Zeroed<wire::ClaimRequest>();
    wire::SetName(claim.lpar, opt.lpar);
    claim.flags = wire::kClaimReclaim;
    absl::Status st = ctl.Open(claim).status();
    for (auto it = open.begin(); st.ok() && it != open.end();) {
      std::shared_ptr<CtcDevice> dev = it->second.device.lock();
      if (!dev || !dev->status().ok()) {
        it = open.erase(it);
        continue;
      }
      std::vector<UniqueFd> fds;
      fds.emplace_back(::fcntl(it->second.own_half.get(), F_DUPFD_CLOEXEC, 0));
      if (!fds[0].valid()) {
        st = absl::ErrnoToStatus(errno, "dup of a CTC half-channel");
        break;
      }
      wire::CtcReattachRequest req = wire::Zeroed<wire::CtcReattachRequest>();
      req.device = it->first;
      wire::CtcReattachReply rep;
      const absl::Status r = ctl.Call(req, std::move(fds), &rep);
      if (!ctl.connected()) st = r.ok() ? absl::UnavailableError("hsid went away while re-registering") : r;
      if (st.ok() && absl::IsFailedPrecondition(r)) {  // the other end opened afresh: this connection is over
        dev->TakeDown(absl::UnavailableError(std::string(r.message())));
        it = open.erase(it);
        continue;
      }
      it->second.conn_id = r.ok() ? rep.conn_id : 0;
      ++it;
    }
    if (st.ok() && handler) st = SendAccept(true);
    for (auto it = declared.begin(); st.ok() && it != declared.end(); ++it) {
      wire::AdminReply rep;
      (void)ctl.Call(it->second, {}, &rep);  // refused: it no longer matches hsid's devices; shown no more
      if (!ctl.connected()) st = absl::UnavailableError("hsid went away while re-registering");
    }
    ctl.set_timeout(opt.timeout);
    if (st.ok()) {
      lost = absl::OkStatus();
      peers.clear();
      downs.clear();
      return;
    }
    ctl.Close();
    next_reconnect = absl::Now() + backoff;
    backoff = std::min(backoff * 2, absl::Milliseconds(100));
  }

  // With mu held.
  absl::Status SendAccept(bool accept) {
    wire::IsfcCommandsAccept a = wire::Zeroed<wire::IsfcCommandsAccept>();
    a.accept = accept ? 1 : 0;
    return ctl.Send(wire::Encode(ctl.NextRequestId(), a), absl::Now() + opt.timeout);
  }

  // The command thread: runs the handler on each IsfcCommand hsid sent,
  // without mu (the handler may Open devices), and sends the result.
  void RunCommands() {
    std::unique_lock<std::mutex> l(mu);
    for (;;) {
      cv.wait(l, [this] { return stop || !commands.empty(); });
      if (stop) return;
      const wire::IsfcCommand c = commands.front();
      commands.pop_front();
      IsfcCommand cmd;
      cmd.op = static_cast<IsfcCommandOp>(c.op);
      cmd.peer = wire::NameOf(c.peer);
      cmd.mode = c.mode == 1 ? IsfcMode::kNaive : IsfcMode::kConvention;
      for (uint32_t i = 0; i < c.count; ++i) cmd.devices.push_back(DeviceNumber(static_cast<uint16_t>(c.devices[i])));
      cmd.timeout = absl::Milliseconds(c.timeout_ms);
      IsfcCommandHandler h = handler;
      running = true;
      l.unlock();
      const absl::Status s =
          h ? h(cmd)
            : absl::UnavailableError(absl::StrCat("LPAR \"", opt.lpar, "\" no longer takes ISFC commands"));
      l.lock();
      running = false;
      cv.notify_all();
      wire::IsfcCommandResult r = wire::Zeroed<wire::IsfcCommandResult>();
      r.command_id = c.command_id;
      r.code = static_cast<uint32_t>(s.code());
      const std::string text(s.message().substr(0, sizeof(r.text) - 1));
      std::memcpy(r.text, text.data(), text.size());
      // Lost with hsid: the admin's request went with it.
      if (ctl.connected()) (void)ctl.Send(wire::Encode(ctl.NextRequestId(), r), absl::Now() + opt.timeout);
    }
  }

  struct Open {
    uint32_t conn_id;
    std::weak_ptr<CtcDevice> device;
    UniqueFd own_half;  // a dup of this end's half, to hand hsid again after a restart
  };

  CtcHostOptions opt;
  // mu guards the channel and the tables below; cv is notified after the
  // listener handled hsid's messages (a CtcPeer or CtcDown may have come).
  std::mutex mu;
  std::condition_variable cv;
  ControlChannel ctl;
  std::map<uint32_t, UniqueFd> peers;        // conn -> the peer's half, not yet taken
  std::map<uint32_t, absl::Status> downs;    // conn -> why it went down
  std::map<uint16_t, Open> open;             // device -> open end
  std::map<std::string, wire::IsfcDeclareRequest> declared;  // peer -> this side's ISFC declaration
  IsfcCommandHandler handler;                 // set: this host takes ISFC commands
  std::deque<wire::IsfcCommand> commands;     // from hsid, for the command thread
  bool running = false;                       // the command thread runs a handler
  std::thread command_thread;
  absl::Status lost;
  absl::Time next_reconnect = absl::InfiniteFuture();
  absl::Duration backoff = absl::Milliseconds(10);
  bool stop = false;
  std::thread listener;
};

CtcHost::CtcHost(std::unique_ptr<State> s) : state_(std::move(s)) {}

absl::StatusOr<std::unique_ptr<CtcHost>> CtcHost::Connect(CtcHostOptions options) {
  absl::StatusOr<std::string> path = ResolveSocketPath(options.socket_path);
  if (!path.ok()) return path.status();
  auto s = std::make_unique<State>(*path, options);
  {
    std::unique_lock<std::mutex> l(s->mu);
    wire::ClaimRequest claim = wire::Zeroed<wire::ClaimRequest>();
    wire::SetName(claim.lpar, options.lpar);
    absl::StatusOr<wire::ClaimReply> r = s->ctl.Open(claim);
    if (!r.ok()) return r.status();
  }
  State* raw = s.get();
  s->listener = std::thread([raw] { raw->Listen(); });
  return std::unique_ptr<CtcHost>(new CtcHost(std::move(s)));
}

CtcHost::~CtcHost() {
  if (!state_) return;
  {
    std::unique_lock<std::mutex> l(state_->mu);
    state_->stop = true;
    state_->cv.notify_all();
  }
  if (state_->listener.joinable()) state_->listener.join();
  if (state_->command_thread.joinable()) state_->command_thread.join();
  std::unique_lock<std::mutex> l(state_->mu);
  for (auto& [dev, o] : state_->open) {
    if (std::shared_ptr<CtcDevice> d = o.device.lock()) {
      d->TakeDown(absl::UnavailableError(absl::StrCat("CTC ", DeviceNumber(dev).ToString(), ": its host closed")));
    }
  }
  state_->ctl.Close();
}

const std::string& CtcHost::lpar() const { return state_->opt.lpar; }

absl::Status CtcHost::WaitConnected(absl::Time deadline) {
  State& s = *state_;
  std::unique_lock<std::mutex> l(s.mu);
  if (!s.cv.wait_until(l, absl::ToChronoTime(std::min(deadline, absl::Now() + absl::Hours(24))),
                       [&s] { return s.ctl.connected() && s.lost.ok(); })) {
    return absl::UnavailableError(absl::StrCat("CtcHost of LPAR \"", s.opt.lpar, "\": hsid at ", s.ctl.path(),
                                               " not reachable in time: ", s.lost.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<CtcDevice>> CtcHost::Open(DeviceNumber device, absl::Time deadline,
                                                         CtcOpenAccepted* accepted) {
  State& s = *state_;
  const std::string name = absl::StrCat("CTC ", device.ToString(), " of LPAR \"", s.opt.lpar, "\"");
  std::unique_lock<std::mutex> l(s.mu);
  if (!s.lost.ok()) return absl::UnavailableError(absl::StrCat(name, ": hsid is gone: ", s.lost.message()));
  if (s.open.count(device.value()) != 0) return absl::AlreadyExistsError(absl::StrCat(name, ": open already"));
  wire::CtcOpenRequest req = wire::Zeroed<wire::CtcOpenRequest>();
  req.device = device.value();
  wire::Message m;
  if (absl::Status st = s.ctl.CallRaw(wire::MsgType::kCtcOpenRequest, &req, sizeof(req), {},
                                      wire::MsgType::kCtcOpenReply, &m, deadline);
      !st.ok()) {
    return st;
  }
  const auto rep = m.As<wire::CtcOpenReply>();
  if (accepted != nullptr) {
    accepted->block_size = rep.block_size;
    accepted->peer_lpar = wire::NameOf(rep.peer_lpar);
    accepted->peer_device = DeviceNumber(static_cast<uint16_t>(rep.peer_device));
  }
  const size_t size = CtcSegmentSize(rep.block_size);
  UniqueFd own_half(::fcntl(m.fds[0].get(), F_DUPFD_CLOEXEC, 0));
  if (!own_half.valid()) return absl::ErrnoToStatus(errno, absl::StrCat(name, ": dup of its half"));
  absl::StatusOr<Segment> own = Segment::MapOwner(std::move(m.fds[0]), size);
  wire::CtcSealed sealed = wire::Zeroed<wire::CtcSealed>();
  sealed.conn_id = rep.conn_id;
  sealed.device = device.value();
  sealed.code = own.ok() ? 0 : static_cast<uint32_t>(own.status().code());
  if (absl::Status st = s.ctl.Send(wire::Encode(s.ctl.NextRequestId(), sealed), absl::Now() + s.opt.timeout);
      !st.ok()) {
    return st;
  }
  if (!own.ok()) return absl::Status(own.status().code(), absl::StrCat(name, ": mapping its half: ", own.status().message()));
  // A connection keeps its id from one open to the next: a down or a
  // peer's half still here is of an earlier open (hsid sends this open's
  // only after our CtcSealed, and events are taken only under s.mu, held
  // since before the request). A stale half taken for this open's would
  // pair this end with a segment the other end no longer writes (an Open
  // whose deadline passed as the half came left it here).
  s.downs.erase(rep.conn_id);
  s.peers.erase(rep.conn_id);
  const uint32_t conn = rep.conn_id;
  auto arrived = [&s, conn]() {
    return s.peers.count(conn) != 0 || s.downs.count(conn) != 0 || !s.lost.ok() || s.stop;
  };
  if (!s.cv.wait_until(l, absl::ToChronoTime(std::min(deadline, absl::Now() + absl::Hours(24))), arrived)) {
    wire::CtcClose close = wire::Zeroed<wire::CtcClose>();
    close.conn_id = conn;
    close.device = device.value();
    (void)s.ctl.Send(wire::Encode(s.ctl.NextRequestId(), close), absl::Now() + s.opt.timeout);
    return absl::DeadlineExceededError(absl::StrCat(name, ": LPAR \"", wire::NameOf(rep.peer_lpar), "\" did not open ",
                                                    DeviceNumber(static_cast<uint16_t>(rep.peer_device)).ToString(),
                                                    ", its end, in time"));
  }
  if (s.stop) return absl::CancelledError(absl::StrCat(name, ": the host is closing"));
  if (auto d = s.downs.find(conn); d != s.downs.end()) {
    absl::Status why = d->second;
    s.downs.erase(d);
    return why;
  }
  if (!s.lost.ok()) return absl::UnavailableError(absl::StrCat(name, ": hsid is gone: ", s.lost.message()));
  UniqueFd peer_fd = std::move(s.peers[conn]);
  s.peers.erase(conn);
  absl::StatusOr<Segment> peer = Segment::MapPeer(std::move(peer_fd), size);
  if (!peer.ok()) return absl::Status(peer.status().code(), absl::StrCat(name, ": mapping the peer's half: ", peer.status().message()));
  CtcOptions o;
  o.device = device;
  o.peer_device = DeviceNumber(static_cast<uint16_t>(rep.peer_device));
  o.peer_lpar = wire::NameOf(rep.peer_lpar);
  o.block_size = rep.block_size;
  o.recovery = absl::Microseconds(rep.recovery_us);
  absl::StatusOr<CtcDevice> dev = CtcDevice::Open(std::move(*own), std::move(*peer), o);
  if (!dev.ok()) return dev.status();
  auto shared = std::make_shared<CtcDevice>(std::move(*dev));
  s.open[device.value()] = State::Open{conn, shared, std::move(own_half)};
  return shared;
}

absl::Status CtcHost::Close(DeviceNumber device) {
  State& s = *state_;
  std::unique_lock<std::mutex> l(s.mu);
  auto it = s.open.find(device.value());
  if (it == s.open.end()) return absl::NotFoundError(absl::StrCat("CTC ", device.ToString(), ": not open here"));
  wire::CtcClose close = wire::Zeroed<wire::CtcClose>();
  close.conn_id = it->second.conn_id;
  close.device = device.value();
  if (std::shared_ptr<CtcDevice> d = it->second.device.lock()) {
    d->TakeDown(absl::UnavailableError(absl::StrCat("CTC ", device.ToString(), ": closed by this end")));
  }
  s.open.erase(it);
  return s.ctl.Send(wire::Encode(s.ctl.NextRequestId(), close), absl::Now() + s.opt.timeout);
}

absl::Status CtcHost::Define(const CtcDefinition& def) {
  wire::CtcDefineRequest req = wire::Zeroed<wire::CtcDefineRequest>();
  if (def.lpar_a.size() >= wire::kNameLen || def.lpar_b.size() >= wire::kNameLen) {
    return absl::InvalidArgumentError("define CTC: an LPAR name has at most 31 characters");
  }
  wire::SetName(req.lpar_a, def.lpar_a);
  wire::SetName(req.lpar_b, def.lpar_b);
  req.device_a = def.device_a.value();
  req.device_b = def.device_b.value();
  req.count = def.count;
  req.block_size = def.block_size;
  req.recovery_us = static_cast<uint32_t>(absl::ToInt64Microseconds(def.recovery));
  wire::AdminReply rep;
  std::unique_lock<std::mutex> l(state_->mu);
  return state_->ctl.Call(req, {}, &rep);
}

absl::Status CtcHost::Undefine(const std::string& lpar, DeviceNumber device) {
  wire::CtcUndefineRequest req = wire::Zeroed<wire::CtcUndefineRequest>();
  if (lpar.size() >= wire::kNameLen) return absl::InvalidArgumentError("undefine CTC: LPAR name too long");
  wire::SetName(req.lpar, lpar);
  req.device = device.value();
  wire::AdminReply rep;
  std::unique_lock<std::mutex> l(state_->mu);
  return state_->ctl.Call(req, {}, &rep);
}

absl::StatusOr<std::vector<CtcListing>> CtcHost::List() {
  std::vector<CtcListing> out;
  uint32_t cursor = 0;
  std::unique_lock<std::mutex> l(state_->mu);
  do {
    wire::CtcListRequest req = wire::Zeroed<wire::CtcListRequest>();
    req.cursor = cursor;
    wire::CtcListReply rep;
    if (absl::Status s = state_->ctl.Call(req, {}, &rep); !s.ok()) return s;
    for (uint32_t i = 0; i < rep.count; ++i) {
      const wire::WireCtc& e = rep.entries[i];
      CtcListing c;
      c.lpar_a = wire::NameOf(e.lpar_a);
      c.lpar_b = wire::NameOf(e.lpar_b);
      c.device_a = DeviceNumber(static_cast<uint16_t>(e.device_a));
      c.device_b = DeviceNumber(static_cast<uint16_t>(e.device_b));
      c.block_size = e.block_size;
      c.recovery = absl::Microseconds(e.recovery_us);
      c.state_a = static_cast<CtcEndState>(std::min<uint32_t>(e.state_a, 2));
      c.state_b = static_cast<CtcEndState>(std::min<uint32_t>(e.state_b, 2));
      auto fill = [](const uint64_t* v, CtcCounters* n) { *n = CtcCounters{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}; };
      fill(e.counters_a, &c.counters_a);
      fill(e.counters_b, &c.counters_b);
      out.push_back(std::move(c));
    }
    cursor = rep.next_cursor;
  } while (cursor != 0);
  return out;
}

absl::Status CtcHost::DeclareIsfc(const std::string& peer, IsfcMode mode, const std::vector<DeviceNumber>& devices,
                                  bool active) {
  wire::IsfcDeclareRequest req = wire::Zeroed<wire::IsfcDeclareRequest>();
  if (peer.size() >= wire::kNameLen || devices.size() > 16) {
    return absl::InvalidArgumentError("declare ISFC link: peer name too long or more than 16 devices");
  }
  wire::SetName(req.peer, peer);
  req.mode = static_cast<uint32_t>(mode);
  req.count = active ? static_cast<uint32_t>(devices.size()) : 0;
  for (uint32_t i = 0; i < req.count; ++i) req.devices[i] = devices[i].value();
  req.active = active ? 1 : 0;
  wire::AdminReply rep;
  std::unique_lock<std::mutex> l(state_->mu);
  const absl::Status s = state_->ctl.Call(req, {}, &rep);
  if (s.ok() && active) state_->declared[peer] = req;
  if (s.ok() && !active) state_->declared.erase(peer);
  return s;
}

absl::Status CtcHost::AcceptIsfcCommands(IsfcCommandHandler handler) {
  State& s = *state_;
  if (s.opt.lpar.empty()) return absl::FailedPreconditionError("ISFC commands: this CtcHost claims no LPAR");
  if (!handler) return absl::InvalidArgumentError("ISFC commands: no handler");
  std::unique_lock<std::mutex> l(s.mu);
  const bool taking = static_cast<bool>(s.handler);
  s.handler = std::move(handler);
  if (!taking) {
    if (absl::Status st = s.SendAccept(true); !st.ok()) {
      s.handler = nullptr;
      return st;
    }
  }
  if (!s.command_thread.joinable()) {
    State* raw = &s;
    s.command_thread = std::thread([raw] { raw->RunCommands(); });
  }
  return absl::OkStatus();
}

absl::Status CtcHost::StopIsfcCommands() {
  State& s = *state_;
  std::unique_lock<std::mutex> l(s.mu);
  if (!s.handler) return absl::OkStatus();
  s.handler = nullptr;
  const absl::Status st = s.ctl.connected() ? s.SendAccept(false) : absl::OkStatus();
  s.cv.wait(l, [&s] { return !s.running; });
  return st;
}

absl::Status CtcHost::SendIsfcCommand(const std::string& lpar, const IsfcCommand& command) {
  wire::IsfcCommandRequest req = wire::Zeroed<wire::IsfcCommandRequest>();
  if (lpar.size() >= wire::kNameLen || command.peer.size() >= wire::kNameLen || command.devices.size() > 16) {
    return absl::InvalidArgumentError("ISFC command: an LPAR name has at most 31 characters, a link 16 devices");
  }
  wire::SetName(req.lpar, lpar);
  wire::SetName(req.peer, command.peer);
  req.op = static_cast<uint32_t>(command.op);
  req.mode = static_cast<uint32_t>(command.mode);
  req.count = static_cast<uint32_t>(command.devices.size());
  req.timeout_ms = static_cast<uint32_t>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(command.timeout), 1, wire::kMaxIsfcCommandMs));
  for (size_t i = 0; i < command.devices.size(); ++i) req.devices[i] = command.devices[i].value();
  if (absl::Status s = req.Validate(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("ISFC command: ", s.message()));
  wire::AdminReply rep;
  std::unique_lock<std::mutex> l(state_->mu);
  state_->ctl.set_timeout(command.timeout + state_->opt.timeout);  // the LPAR's time, then hsid's answer
  const absl::Status s = state_->ctl.Call(req, {}, &rep);
  state_->ctl.set_timeout(state_->opt.timeout);
  return s;
}

absl::StatusOr<std::vector<IsfcListing>> CtcHost::ListIsfc() {
  std::vector<IsfcListing> out;
  uint32_t cursor = 0;
  std::unique_lock<std::mutex> l(state_->mu);
  do {
    wire::IsfcListRequest req = wire::Zeroed<wire::IsfcListRequest>();
    req.cursor = cursor;
    wire::IsfcListReply rep;
    if (absl::Status s = state_->ctl.Call(req, {}, &rep); !s.ok()) return s;
    for (uint32_t i = 0; i < rep.count; ++i) {
      const wire::WireIsfc& e = rep.entries[i];
      IsfcListing x{wire::NameOf(e.lpar), wire::NameOf(e.peer), e.mode == 1 ? IsfcMode::kNaive : IsfcMode::kConvention,
                    {}};
      for (uint32_t k = 0; k < e.count; ++k) x.devices.push_back(DeviceNumber(static_cast<uint16_t>(e.devices[k])));
      out.push_back(std::move(x));
    }
    cursor = rep.next_cursor;
  } while (cursor != 0);
  return out;
}

}  // namespace hsi
