#include "cluster.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hsi/ssi/cluster.h"
#include "hsi/ssi/etcd.h"
#include "log.h"

namespace hsid {

using hsi::ssi::Compare;
using hsi::ssi::Op;

absl::Status Cluster::Start(const std::string& socket_path) {
  if (!enabled()) return absl::OkStatus();
  socket_path_ = socket_path;
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return absl::ErrnoToStatus(errno, "cluster: eventfd");
  event_fd_ = hsi::UniqueFd(fd);
  Log(absl::StrCat("cluster ", config_.cluster.name, ": member ", config_.cluster.member, ", etcd ",
                   config_.cluster.etcd.front(), config_.cluster.etcd.size() > 1 ? " (and others)" : ""));
  // Read the directory once before serving, so that a restarted member
  // does not hold down (and so break) the links its clients re-register
  // (DESIGN invariant 4). The loop is not running yet: this wait blocks no
  // client. If etcd does not answer, every NIC waits for the thread's read.
  if (absl::StatusOr<hsi::ssi::EtcdClient> etcd =
          hsi::ssi::EtcdClient::Create({config_.cluster.etcd, absl::Seconds(2)});
      etcd.ok()) {
    absl::StatusOr<hsi::ssi::ClusterView> v = hsi::ssi::ReadCluster(*etcd, hsi::ssi::Keys(config_.cluster.name));
    if (v.ok()) {
      view_.known = true;
      for (const auto& [g, rec] : v->guests) view_.guests.insert(g);
      view_.residency = v->residency;
      Log(absl::StrCat("cluster: directory read: ", view_.guests.size(), " guests"));
    } else {
      Log(absl::StrCat("cluster: ", v.status().message(), "; serving no NIC until etcd answers"));
    }
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    published_ = view_;
  }
  try {
    thread_ = std::thread([this] { ThreadMain(); });
  } catch (const std::system_error& e) {
    return absl::InternalError(absl::StrCat("cluster: cannot start its thread: ", e.what()));
  }
  return absl::OkStatus();
}

void Cluster::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Cluster::OnEvent() {
  uint64_t n = 0;
  while (::read(event_fd_.get(), &n, sizeof(n)) == sizeof(n)) {
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    view_ = published_;
  }
  Apply();
}

std::string Cluster::NotServed(const std::string& lpar) const {
  if (!view_.known) return "the cluster directory has not been read from etcd yet";
  if (!view_.guests.contains(lpar)) return "";
  auto it = view_.residency.find(lpar);
  if (it == view_.residency.end()) return absl::StrCat("guest ", lpar, " is not logged on to any member");
  if (it->second != config_.cluster.member) {
    return absl::StrCat("guest ", lpar, " is logged on to member ", it->second, ", not ", config_.cluster.member);
  }
  return "";
}

void Cluster::Apply() {
  if (!enabled()) return;
  for (const auto& [id, nic] : nics_.all()) {
    Nic& n = nics_.Get(id);
    const Client* c = clients_.Find(n.client);
    if (c == nullptr) continue;
    const std::string why = NotServed(c->lpar);
    if (!why.empty() && n.cluster_down != why) {
      const bool was_down = !n.cluster_down.empty();
      n.cluster_down = why;
      if (!was_down) {
        admin_.SetNicState(n, false, absl::StrCat("cluster: NIC ", n.address.ToString(), " of LPAR ", c->lpar,
                                                  " held down: ", why),
                           why);
      }
    } else if (why.empty() && !n.cluster_down.empty()) {
      n.cluster_down.clear();
      admin_.SetNicState(n, true, absl::StrCat("cluster: NIC ", n.address.ToString(), " of LPAR ", c->lpar,
                                               " up: logged on to member ", config_.cluster.member),
                         "");
    }
  }
}

void Cluster::ThreadMain() {
  const ClusterConfig& cc = config_.cluster;
  const hsi::ssi::Keys keys(cc.name);
  absl::StatusOr<hsi::ssi::EtcdClient> made =
      hsi::ssi::EtcdClient::Create({cc.etcd, absl::Milliseconds(std::max<uint32_t>(500, cc.poll_ms * 5))});
  if (!made.ok()) {
    Log(absl::StrCat("cluster: ", made.status().message()));
    return;
  }
  hsi::ssi::EtcdClient& etcd = *made;
  hsi::ssi::MemberRecord me;
  me.name = cc.member;
  me.socket = socket_path_;
  me.pid = ::getpid();
  me.started_ms = hsi::ssi::NowMs();
  for (const auto& [id, ch] : config_.chpids) me.chpids.push_back({id, ch.subnet.ToString(), ch.lpars});
  const std::string member_key = keys.Member(cc.member);
  const std::string record = hsi::ssi::ToJson(me);

  int64_t lease = 0;
  absl::Time next_keepalive = absl::InfinitePast();
  std::string last_error;  // logged once until it changes
  auto report = [&](const std::string& e) {
    if (e != last_error && !e.empty()) Log(absl::StrCat("cluster: ", e));
    last_error = e;
  };
  View last;
  {
    std::lock_guard<std::mutex> l(mu_);
    last = published_;
  }
  bool published_once = last.known;
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) break;
    }
    std::string error;
    // 1. Membership: the member key on a live lease.
    if (lease == 0) {
      absl::StatusOr<int64_t> g = etcd.Grant(cc.lease_ttl_s);
      if (!g.ok()) {
        error = std::string(g.status().message());
      } else {
        absl::StatusOr<bool> put =
            etcd.Txn({Compare::Absent(member_key)}, {Op::Put(member_key, record, *g)});
        if (put.ok() && *put) {
          lease = *g;
          next_keepalive = absl::Now() + absl::Seconds(cc.lease_ttl_s) / 3;
          Log(absl::StrCat("cluster: member ", cc.member, " joined (lease ", lease, ", TTL ", cc.lease_ttl_s, " s)"));
        } else {
          (void)etcd.Revoke(*g);
          error = put.ok() ? absl::StrCat("member key ", member_key,
                                          " is held by another lease (a live hsid of member ", cc.member,
                                          ", or a killed one whose lease has not expired): retrying")
                           : std::string(put.status().message());
        }
      }
    } else if (absl::Now() >= next_keepalive) {
      absl::Status k = etcd.KeepAlive(lease);
      if (k.ok()) {
        next_keepalive = absl::Now() + absl::Seconds(cc.lease_ttl_s) / 3;
      } else if (k.code() == absl::StatusCode::kNotFound) {
        Log(absl::StrCat("cluster: lease ", lease, " expired (etcd was out of reach too long): joining again"));
        lease = 0;
      } else {
        error = std::string(k.message());
      }
    }
    // 2. The directory and the residencies.
    absl::StatusOr<hsi::ssi::ClusterView> v = hsi::ssi::ReadCluster(etcd, keys);
    if (v.ok()) {
      View now;
      now.known = true;
      for (const auto& [g, rec] : v->guests) now.guests.insert(g);
      now.residency = v->residency;
      if (!published_once || now.guests != last.guests || now.residency != last.residency) {
        if (!published_once) Log(absl::StrCat("cluster: directory read: ", now.guests.size(), " guests"));
        published_once = true;
        last = now;
        {
          std::lock_guard<std::mutex> l(mu_);
          published_ = std::move(now);
        }
        const uint64_t one = 1;
        if (::write(event_fd_.get(), &one, sizeof(one)) < 0 && errno != EAGAIN) {
          Log(absl::StrCat("cluster: eventfd write: ", std::strerror(errno)));
        }
      }
    } else if (error.empty()) {
      error = std::string(v.status().message());
    }
    report(error);
    std::unique_lock<std::mutex> l(mu_);
    wake_.wait_for(l, std::chrono::milliseconds(cc.poll_ms), [this] { return stop_; });
  }
  if (lease != 0) {
    // Leave at once rather than after the TTL.
    if (absl::Status s = etcd.Revoke(lease); !s.ok()) Log(absl::StrCat("cluster: leaving: ", s.message()));
  }
}

}  // namespace hsid
