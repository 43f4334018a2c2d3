#include "grants.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "hsi/wire/messages.h"

namespace hsid {

namespace {

// The fd is a memfd whose size and writers are fixed for good.
absl::StatusOr<uint64_t> CheckSealedMemfd(int fd) {
  constexpr int kNeed = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE;
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory grant: the fd is not a sealable memfd (F_GET_SEALS: ", std::strerror(errno), ")"));
  }
  if ((seals & kNeed) != kNeed) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory grant: the memfd's seals are 0x", absl::Hex(seals), "; it must be sealed against shrink, ",
                     "grow and future writes (0x", absl::Hex(kNeed), ") so that only its granter writes it"));
  }
  struct stat st;
  if (::fstat(fd, &st) < 0) return absl::InternalError(absl::StrCat("memory grant: fstat: ", std::strerror(errno)));
  if (st.st_size <= 0 || static_cast<uint64_t>(st.st_size) > hsi::wire::kMaxGrantBytes) {
    return absl::InvalidArgumentError(absl::StrCat("memory grant: the memfd has ", st.st_size, " bytes; 1..",
                                                   hsi::wire::kMaxGrantBytes, " allowed"));
  }
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

void Grants::OnGrant(Client& c, Message& m) {
  const auto req = m.As<hsi::wire::MemGrantRequest>();
  auto refuse = [&](const absl::Status& s) { clients_.ReplyError<hsi::wire::MemGrantReply>(c, m.request_id, s); };
  absl::StatusOr<Nic*> own = nics_.Own(c, req.nic_id);
  if (!own.ok()) return refuse(own.status());
  const hsi::Address peer_address(req.peer_address);
  const Nic* peer = nics_.At(peer_address);
  if (peer == nullptr || peer->chpid != (*own)->chpid) {
    return refuse(absl::NotFoundError(absl::StrCat("memory grant from ", (*own)->address.ToString(), ": no NIC ",
                                                   peer_address.ToString(), " on its CHPID")));
  }
  absl::StatusOr<uint64_t> size = CheckSealedMemfd(m.fds[0].get());
  if (!size.ok()) return refuse(size.status());
  const Key key{(*own)->chpid, (*own)->address.value(), req.peer_address, req.tag};
  // Counted per pair of clients: a peer that never takes its grants fills
  // only its own share, not the granter's grants to everyone else.
  size_t pending = 0;
  for (const auto& [k, g] : grants_) pending += g.from_client == c.id && g.to_client == peer->client;
  if (!grants_.contains(key) && pending >= hsi::wire::kMaxGrantsPerClient) {
    return refuse(absl::ResourceExhaustedError(absl::StrCat("memory grant from ", (*own)->address.ToString(),
                                                            " to ", peer_address.ToString(), ": ", pending,
                                                            " grants to its client not yet taken, at most ",
                                                            hsi::wire::kMaxGrantsPerClient)));
  }
  grants_[key] = Grant{c.id, peer->client, *size, std::move(m.fds[0])};
  clients_.Reply(c, m.request_id, hsi::wire::Zeroed<hsi::wire::MemGrantReply>());
}

void Grants::OnTake(Client& c, Message& m) {
  const auto req = m.As<hsi::wire::MemTakeRequest>();
  auto refuse = [&](const absl::Status& s) { clients_.ReplyError<hsi::wire::MemTakeReply>(c, m.request_id, s); };
  absl::StatusOr<Nic*> own = nics_.Own(c, req.nic_id);
  if (!own.ok()) return refuse(own.status());
  auto it = grants_.find(Key{(*own)->chpid, req.from_address, (*own)->address.value(), req.tag});
  if (it == grants_.end() || it->second.to_client != c.id) {
    return refuse(absl::NotFoundError(absl::StrCat("memory grant ", req.tag, " from ",
                                                   hsi::Address(req.from_address).ToString(), " to ",
                                                   (*own)->address.ToString(), ": none waits for this client")));
  }
  auto rep = hsi::wire::Zeroed<hsi::wire::MemTakeReply>();
  rep.size = it->second.size;
  std::vector<hsi::UniqueFd> fds;
  fds.push_back(std::move(it->second.fd));
  grants_.erase(it);
  clients_.Send(c, hsi::wire::Encode(m.request_id, rep, std::move(fds)));
}

void Grants::OnClientGone(const Client& c) {
  std::erase_if(grants_, [&](const auto& kv) { return kv.second.from_client == c.id || kv.second.to_client == c.id; });
}

}  // namespace hsid
