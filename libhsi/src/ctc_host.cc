// ctc_host.cc: an LPAR's CTC devices through hsid (hsi/ctc_host.h).
#include "hsi/ctc_host.h"

#include <poll.h>

#include <algorithm>
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
    // hsid is gone: open devices keep working (invariant 4), nothing new opens.
    lost = why;
  }

  // The listener: waits for hsid's messages and handles them.
  void Listen() {
    for (;;) {
      int fd;
      {
        std::unique_lock<std::mutex> l(mu);
        if (stop || !ctl.connected()) return;
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

  struct Open {
    uint32_t conn_id;
    std::weak_ptr<CtcDevice> device;
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
  absl::Status lost;
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
  }
  if (state_->listener.joinable()) state_->listener.join();
  std::unique_lock<std::mutex> l(state_->mu);
  for (auto& [dev, o] : state_->open) {
    if (std::shared_ptr<CtcDevice> d = o.device.lock()) {
      d->TakeDown(absl::UnavailableError(absl::StrCat("CTC ", DeviceNumber(dev).ToString(), ": its host closed")));
    }
  }
  state_->ctl.Close();
}

const std::string& CtcHost::lpar() const { return state_->opt.lpar; }

absl::StatusOr<std::shared_ptr<CtcDevice>> CtcHost::Open(DeviceNumber device, absl::Time deadline) {
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
  const size_t size = CtcSegmentSize(rep.block_size);
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
  s.downs.erase(rep.conn_id);
  const uint32_t conn = rep.conn_id;
  auto arrived = [&s, conn]() {
    return s.peers.count(conn) != 0 || s.downs.count(conn) != 0 || !s.lost.ok();
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
  s.open[device.value()] = State::Open{conn, shared};
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
  return state_->ctl.Call(req, {}, &rep);
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
