#include "hsi/admin.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "absl/strings/str_cat.h"
#include "hsi/session.h"
#include "internal/session_state.h"

namespace hsi {


AdminClient::AdminClient() = default;
AdminClient::~AdminClient() {
  if (state_) state_->Close();
}
AdminClient::AdminClient(AdminClient&&) noexcept = default;
AdminClient& AdminClient::operator=(AdminClient&& o) noexcept {
  if (this != &o) {
    if (state_) state_->Close();
    state_ = std::move(o.state_);
  }
  return *this;
}

absl::StatusOr<AdminClient> AdminClient::Connect(const std::string& socket_path) {
  absl::StatusOr<std::string> path = ResolveSocketPath(socket_path);
  if (!path.ok()) return path.status();
  SessionOptions o;
  o.reconnect = false;  // no LPAR: nothing to re-register
  auto state = std::make_shared<internal::SessionState>(std::move(o), *path);
  if (absl::Status s = state->Open(false); !s.ok()) return s;
  AdminClient c;
  c.state_ = std::move(state);
  return c;
}

bool AdminClient::is_admin() const { return state_ && state_->is_admin(); }

absl::Status AdminClient::DefineChpid(const ChpidSpec& spec) {
  if (!state_) return absl::FailedPreconditionError("admin: not connected");
  if (spec.lpars.size() > wire::kMaxChpidLpars) {
    return absl::InvalidArgumentError(absl::StrCat("define CHPID: at most ", wire::kMaxChpidLpars, " LPAR names"));
  }
  wire::DefineChpidRequest req = wire::Zeroed<wire::DefineChpidRequest>();
  req.chpid = spec.id;
  req.mfs = spec.mfs;
  req.subnet = spec.subnet.network().value();
  req.prefix = static_cast<uint32_t>(spec.subnet.prefix());
  req.capacity = spec.queue_size;
  req.overflow = spec.drop ? wire::kOverflowDrop : wire::kOverflowBlock;
  req.lpar_count = static_cast<uint32_t>(spec.lpars.size());
  for (size_t i = 0; i < spec.lpars.size(); ++i) wire::SetName(req.lpars[i], spec.lpars[i]);
  wire::AdminReply rep;
  return state_->Call(req, {}, &rep);
}

absl::Status AdminClient::UndefineChpid(uint32_t id) {
  if (!state_) return absl::FailedPreconditionError("admin: not connected");
  wire::UndefineChpidRequest req = wire::Zeroed<wire::UndefineChpidRequest>();
  req.chpid = id;
  wire::AdminReply rep;
  return state_->Call(req, {}, &rep);
}

absl::Status AdminClient::SetNicState(Address address, bool up) {
  if (!state_) return absl::FailedPreconditionError("admin: not connected");
  wire::SetNicRequest req = wire::Zeroed<wire::SetNicRequest>();
  req.address = address.value();
  req.up = up ? 1 : 0;
  wire::AdminReply rep;
  return state_->Call(req, {}, &rep);
}

namespace {

template <typename Rep, typename Out, typename Convert>
absl::StatusOr<std::vector<Out>> List(internal::SessionState* s, uint32_t what, Convert convert) {
  if (s == nullptr) return absl::FailedPreconditionError("admin: not connected");
  std::vector<Out> out;
  uint32_t cursor = 0;
  do {
    wire::ListRequest req = wire::Zeroed<wire::ListRequest>();
    req.what = what;
    req.cursor = cursor;
    Rep rep;
    if (absl::Status st = s->Call(req, {}, &rep); !st.ok()) return st;
    for (uint32_t i = 0; i < rep.count; ++i) out.push_back(convert(rep.entries[i]));
    cursor = rep.next_cursor;
  } while (cursor != 0);
  return out;
}

}  // namespace

absl::StatusOr<std::vector<ChpidInfo>> AdminClient::ListChpids() {
  return List<wire::ListChpidsReply, ChpidInfo>(state_.get(), wire::kListChpids, [](const wire::WireChpid& e) {
    ChpidInfo c;
    c.spec.id = e.chpid;
    c.spec.mfs = e.mfs;
    c.spec.subnet = Subnet(Address(e.subnet), static_cast<int>(e.prefix));
    c.spec.queue_size = e.capacity;
    c.spec.drop = e.overflow == wire::kOverflowDrop;
    c.spec.lpars.clear();
    c.mtu = e.mtu;
    c.nics = e.nics;
    c.links = e.links;
    return c;
  });
}

absl::StatusOr<std::vector<NicListing>> AdminClient::ListNics() {
  return List<wire::ListNicsReply, NicListing>(state_.get(), wire::kListNics, [](const wire::WireNic& e) {
    NicListing n{e.chpid, Address(e.address), e.up != 0, e.links, wire::NameOf(e.lpar), e.pid, e.uid, std::nullopt};
    if (e.if_layer != 0) {  // Decode checked: 2 or 3, NUL-terminated names
      n.interface = NicInterface{static_cast<int>(e.if_layer), std::string(e.if_name, strnlen(e.if_name, sizeof(e.if_name))),
                                 std::string(e.if_netns, strnlen(e.if_netns, sizeof(e.if_netns)))};
    }
    return n;
  });
}

absl::StatusOr<std::vector<LinkStats>> AdminClient::ListLinks() {
  return List<wire::ListStatsReply, LinkStats>(state_.get(), wire::kListStats, [](const wire::WireLinkStats& e) {
    auto dir = [](const wire::WireDirStats& d) {
      return DirectionStats{d.frames, d.bytes, d.full_events, d.drops, d.wakeups_sent,
                            d.rx_frames, d.rx_bytes, d.rx_wakeups_sent};
    };
    return LinkStats{e.link_id, e.chpid, Address(e.address_a), Address(e.address_b),
                     static_cast<LinkPhase>(e.state), dir(e.a_to_b), dir(e.b_to_a)};  // Decode checked state
  });
}

namespace {

std::string SockAddrText(const wire::WireSockAddr& a) {
  char buf[INET6_ADDRSTRLEN] = "?";
  ::inet_ntop(a.family == AF_INET ? AF_INET : AF_INET6, a.addr, buf, sizeof(buf));
  return a.family == AF_INET ? absl::StrCat(buf, ":", a.port) : absl::StrCat("[", buf, "]:", a.port);
}

}  // namespace

absl::StatusOr<std::vector<StreamListing>> AdminClient::ListStreams() {
  return List<wire::ListStreamsReply, StreamListing>(state_.get(), wire::kListStreams, [](const wire::WireStream& e) {
    StreamListing l;
    l.id = e.stream_id;
    l.state = e.state == wire::kStreamProposed ? "proposed" : e.state == wire::kStreamPaired ? "paired" : "half-closed";
    l.connector = SockAddrText(e.connector);
    l.acceptor = SockAddrText(e.acceptor);
    l.connector_pid = e.connector_pid;
    l.acceptor_pid = e.acceptor_pid;
    l.connector_uid = e.connector_uid;
    l.acceptor_uid = e.acceptor_uid;
    l.bytes_c_to_a = e.bytes_c_to_a;
    l.bytes_a_to_c = e.bytes_a_to_c;
    l.age_ms = e.age_ms;
    return l;
  });
}

absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>> AdminClient::ListFallbacks() {
  if (!state_) return absl::FailedPreconditionError("admin: not connected");
  wire::ListRequest req = wire::Zeroed<wire::ListRequest>();
  req.what = wire::kListFallbacks;
  wire::ListFallbacksReply rep;
  if (absl::Status st = state_->Call(req, {}, &rep); !st.ok()) return st;
  std::vector<std::pair<std::string, uint64_t>> out;
  for (uint32_t r = wire::kRunFallbackNoHsid; r <= wire::kRunFallbackGeometry; ++r) {
    out.emplace_back(wire::FallbackReasonName(r), rep.counts[r]);
  }
  return out;
}

const char* LinkPhaseName(LinkPhase phase) {
  switch (phase) {
    case LinkPhase::kSetup: return "setup";
    case LinkPhase::kReady: return "ready";
    case LinkPhase::kRelinkWait: return "relink-wait";
  }
  return "unknown";
}

}  // namespace hsi

namespace hsi {

absl::StatusOr<std::vector<CfStructureView>> AdminClient::ListCfs() {
  if (!state_) return absl::FailedPreconditionError("admin: not connected");
  const auto& kTypes = wire::kCfTypeNames;
  const auto& kRoles = wire::kCfRoleNames;
  std::vector<CfStructureView> out;
  uint32_t cursor = 0;
  do {
    wire::CfListRequest req = wire::Zeroed<wire::CfListRequest>();
    req.cursor = cursor;
    wire::CfListReply rep;
    if (absl::Status st = state_->Call(req, {}, &rep); !st.ok()) return st;
    for (uint32_t i = 0; i < rep.count; ++i) {  // validated: types, roles and counts are in range
      const wire::WireCfStructure& s = rep.entries[i].s;
      CfStructureView v;
      v.lpar = wire::NameOf(rep.entries[i].lpar);
      v.name = s.name;
      v.type = kTypes[s.type];
      v.duplex = kRoles[s.duplex_role];
      v.partner_up = s.partner_up != 0;
      v.size = s.size;
      v.in_use = s.in_use;
      v.connector_count = s.connectors;
      for (uint32_t k = 0; k < s.connectors && k < wire::kCfConnectorsShown; ++k) {
        v.connectors.emplace_back(s.connector[k], s.connector_lpar[k]);
      }
      v.retained = s.retained;
      v.failed_count = s.failed;
      for (uint32_t k = 0; k < s.failed && k < wire::kCfFailedShown; ++k) v.failed.emplace_back(s.failed_name[k]);
      v.requests = s.requests;
      v.queued = s.queued;
      v.granted_after_wait = s.granted_after_wait;
      v.refused = s.refused;
      out.push_back(std::move(v));
    }
    cursor = rep.next_cursor;
  } while (cursor != 0);
  return out;
}

}  // namespace hsi
