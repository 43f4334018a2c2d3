#include "nics.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "log.h"

namespace hsid {

using Kind = EventLoop::Kind;

Nic& Nics::Add(Nic n) {
  n.id = next_nic_++;
  by_address_[n.address.value()] = n.id;
  const uint32_t id = n.id;
  return nics_.emplace(id, std::move(n)).first->second;
}

void Nics::Erase(uint32_t id) {
  auto it = nics_.find(id);
  if (it == nics_.end()) return;
  Nic& n = it->second;
  if (n.bell_pending) {
    // A write to a doorbell its owner made blocking and saturated never
    // completes on its own; cancelling it frees the io-wq worker.
    loop_.Cancel(Kind::kBell, n.id);
  }
  by_address_.erase(n.address.value());
  nics_.erase(it);
}

absl::StatusOr<Nic*> Nics::Own(const Client& c, uint32_t nic_id) {
  auto it = nics_.find(nic_id);
  if (it == nics_.end() || it->second.client != c.id) {
    return absl::NotFoundError(absl::StrCat("NIC id ", nic_id, " is not attached by this client"));
  }
  return &it->second;
}

uint32_t Nics::CountOf(uint64_t client) const {
  uint32_t n = 0;
  for (const auto& [id, nic] : nics_) n += nic.client == client;
  return n;
}

std::vector<uint32_t> Nics::IdsOf(uint64_t client) const {
  std::vector<uint32_t> ids;
  for (const auto& [id, n] : nics_) {
    if (n.client == client) ids.push_back(id);
  }
  return ids;
}

void Nics::Notify(uint32_t nic_id, OutMessage m) {
  auto it = nics_.find(nic_id);
  if (it == nics_.end()) return;
  Client* c = clients_.Find(it->second.client);
  if (c == nullptr) return;
  clients_.Send(*c, std::move(m));
  // A blocked Receive wakes and reads the event. The doorbell is the write
  // end of the client's pipe. hsid's own open file of it is non-blocking
  // for good, so a ring is a write that cannot block (-EAGAIN: full, so rung
  // already; -EPIPE: the reader is gone, and SIGPIPE is ignored here).
  // Without one (hsid could not reopen the pipe), the client can clear
  // O_NONBLOCK on the shared file and fill the pipe, and a write() would
  // block hsid's only thread: so that write goes through io_uring, which
  // completes it or parks it on a kernel worker, one at a time per NIC
  // (one pending write wakes the sleeper), cancelled when the NIC goes.
  Nic& n = it->second;
  if (n.bell_private) return n.bell.Ring();
  if (n.bell_pending) return;
  static const char kOne = 1;  // outlives every request
  loop_.Write(n.bell.fd(), &kOne, sizeof(kOne), Kind::kBell, n.id);
  n.bell_pending = true;
}

void Nics::OnBellWritten(uint32_t id) {
  if (Nic* n = Find(id)) n->bell_pending = false;
}

void Nics::OnPeers(Client& c, const Message& m) {
  const auto req = m.As<wire::PeersRequest>();
  absl::StatusOr<Nic*> own = Own(c, req.nic_id);
  if (!own.ok()) return clients_.ReplyError<wire::PeersReply>(c, m.request_id, own.status());
  std::vector<uint32_t> addrs;
  for (const auto& [id, n] : nics_) {
    if (n.chpid == (*own)->chpid && n.id != (*own)->id && n.up) addrs.push_back(n.address.value());
  }
  std::sort(addrs.begin(), addrs.end());
  wire::PeersReply r = wire::Zeroed<wire::PeersReply>();
  size_t i = req.cursor;
  for (; i < addrs.size() && r.count < wire::kPeersPerPage; ++i) r.addresses[r.count++] = addrs[i];
  r.next_cursor = i < addrs.size() ? static_cast<uint32_t>(i) : 0;
  clients_.Reply(c, m.request_id, r);
}

void Nics::OnInterface(Client& c, const Message& m) {
  const auto req = m.As<wire::NicInterfaceRequest>();
  absl::StatusOr<Nic*> own = Own(c, req.nic_id);
  if (!own.ok()) return clients_.ReplyError<wire::NicInterfaceReply>(c, m.request_id, own.status());
  Nic& n = **own;
  n.if_layer = req.layer;
  n.if_name = std::string(req.ifname, strnlen(req.ifname, sizeof(req.ifname)));
  n.if_netns = std::string(req.netns, strnlen(req.netns, sizeof(req.netns)));
  Log(absl::StrCat(c.Who(), ": NIC ", n.address.ToString(), " is layer-", n.if_layer, " interface ", n.if_name,
                   n.if_netns.empty() ? "" : absl::StrCat(" in netns ", n.if_netns)));
  clients_.Reply(c, m.request_id, wire::Zeroed<wire::NicInterfaceReply>());
}

void Nics::OnOwner(Client& c, const Message& m) {
  const auto req = m.As<wire::OwnerRequest>();
  absl::StatusOr<Nic*> own = Own(c, req.nic_id);
  if (!own.ok()) return clients_.ReplyError<wire::OwnerReply>(c, m.request_id, own.status());
  const hsi::Address address(req.address);
  for (const auto& [id, n] : nics_) {
    if (n.chpid != (*own)->chpid || n.address != address || !n.up) continue;
    const Client* owner = clients_.Find(n.client);
    if (owner == nullptr) break;
    wire::OwnerReply r = wire::Zeroed<wire::OwnerReply>();
    wire::SetName(r.lpar, owner->lpar);
    return clients_.Reply(c, m.request_id, r);
  }
  clients_.ReplyError<wire::OwnerReply>(
      c, m.request_id,
      absl::NotFoundError(absl::StrCat("no NIC ", address.ToString(), " is up on CHPID ",
                                       hsi::Chpid(static_cast<uint8_t>((*own)->chpid)).ToString())));
}

}  // namespace hsid
