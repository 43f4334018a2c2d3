#include "cluster.h"

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "hsi/ssi/cluster.h"
#include "hsi/ssi/etcd.h"

namespace hsi::tools {
namespace {

using json = nlohmann::ordered_json;
constexpr char kTool[] = "hsictl";

std::string Age(int64_t since_ms) {
  if (since_ms <= 0) return "-";
  const int64_t ms = ssi::NowMs() - since_ms;
  return ms < 10000 ? absl::StrCat(ms, " ms ago") : absl::StrCat(ms / 1000, " s ago");
}

}  // namespace

int ShowCluster(const Args& args) {
  const char* env_etcd = std::getenv("HSI_ETCD");
  const char* env_cluster = std::getenv("HSI_CLUSTER");
  absl::StatusOr<std::vector<std::string>> endpoints = ssi::ParseEndpoints(
      "--etcd", args.Get("--etcd").value_or(env_etcd != nullptr ? env_etcd : "http://127.0.0.1:2379"));
  if (!endpoints.ok()) return Usage(kTool, endpoints.status().message());
  const std::string name = args.Get("--cluster").value_or(env_cluster != nullptr ? env_cluster : "ssi");
  if (absl::Status s = ssi::CheckName("--cluster", name); !s.ok()) return Usage(kTool, s.message());
  absl::StatusOr<ssi::EtcdClient> etcd = ssi::EtcdClient::Create({*endpoints, absl::Seconds(2)});
  if (!etcd.ok()) return Fail(kTool, etcd.status().message(), kExitFailure);
  absl::StatusOr<ssi::ClusterView> v = ssi::ReadCluster(*etcd, ssi::Keys(name));
  if (!v.ok()) return Fail(kTool, v.status().message(), kExitFailure);

  json jm = json::array(), jg = json::array(), jr = json::array();
  Table members({"MEMBER", "LEASE", "PID", "SOCKET", "CHPIDS", "STARTED"});
  for (const auto& [m, r] : v->members) {
    std::vector<std::string> ch;
    json jc = json::array();
    for (const ssi::MemberChpid& c : r.chpids) {
      ch.push_back(absl::StrCat(ChpidText(c.id), " ", c.subnet));
      jc.push_back({{"chpid", ChpidText(c.id)}, {"subnet", c.subnet}, {"lpars", c.lpars}});
    }
    members.Add({m, absl::StrCat(r.lease), absl::StrCat(r.pid), r.socket, absl::StrJoin(ch, ", "), Age(r.started_ms)});
    jm.push_back({{"member", m}, {"lease", r.lease}, {"pid", r.pid}, {"socket", r.socket}, {"chpids", jc},
                  {"started_ms", r.started_ms}});
  }
  Table guests({"GUEST", "GROUP", "VIPA", "MEMBER", "INTERFACE", "HIPERSOCKETS", "LAST RELOCATION"});
  for (const auto& [g, r] : v->guests) {
    auto res = v->residency.find(g);
    const std::string where = res == v->residency.end() ? "" : res->second;
    std::vector<std::string> hsi;
    json jh = json::array();
    for (const ssi::HsiInterface& h : r.hsi) {
      hsi.push_back(absl::StrCat(h.member, ":", ChpidText(h.chpid), ":", h.ifname, ":", h.address));
      jh.push_back({{"member", h.member}, {"chpid", ChpidText(h.chpid)}, {"ifname", h.ifname}, {"address", h.address}});
    }
    const ssi::HsiInterface* active = where.empty() ? nullptr : r.On(where);
    std::string last = "-";
    json jo = nullptr;
    if (auto o = v->outcomes.find(g); o != v->outcomes.end()) {
      last = absl::StrCat(o->second.result, " ", o->second.from, "->", o->second.to, " (", o->second.duration_ms,
                          " ms, ", Age(o->second.finished_ms), ")");
      jo = {{"result", o->second.result}, {"from", o->second.from}, {"to", o->second.to},
            {"message", o->second.message}, {"duration_ms", o->second.duration_ms},
            {"finished_ms", o->second.finished_ms}};
    }
    guests.Add({g, r.group.empty() ? "-" : r.group, r.vipa.empty() ? "-" : r.vipa, where.empty() ? "(logged off)" : where,
                active == nullptr ? "-" : active->ifname, hsi.empty() ? "-" : absl::StrJoin(hsi, " "), last});
    jg.push_back({{"guest", g}, {"group", r.group}, {"netns", r.netns}, {"vipa", r.vipa},
                  {"member", where.empty() ? json(nullptr) : json(where)},
                  {"interface", active == nullptr ? json(nullptr) : json(active->ifname)}, {"hsi", jh},
                  {"last_relocation", jo}});
  }
  Table relocs({"GUEST", "FROM", "TO", "STEP", "PID", "STARTED"});
  for (const auto& [g, r] : v->relocations) {
    relocs.Add({g, r.from, r.to, r.step, absl::StrCat(r.pid), Age(r.started_ms)});
    jr.push_back({{"guest", g}, {"from", r.from}, {"to", r.to}, {"step", r.step}, {"pid", r.pid},
                  {"started_ms", r.started_ms}});
  }
  if (args.Has("--json")) {
    std::printf("%s\n", json{{"cluster", name},
                             {"etcd", *endpoints},
                             {"members", jm},
                             {"guests", jg},
                             {"relocations", jr},
                             {"unreadable", v->bad}}
                            .dump(2)
                            .c_str());
    return kExitOk;
  }
  std::printf("cluster %s (etcd %s)\n\nmembers:\n%s", name.c_str(), absl::StrJoin(*endpoints, ",").c_str(),
              members.empty() ? "  (no live member)\n" : members.Render().c_str());
  std::printf("\nguests:\n%s", guests.empty() ? "  (no guest in the directory)\n" : guests.Render().c_str());
  std::printf("\nrelocations in progress:\n%s", relocs.empty() ? "  (none)\n" : relocs.Render().c_str());
  for (const std::string& b : v->bad) std::printf("unreadable: %s\n", b.c_str());
  return kExitOk;
}

}  // namespace hsi::tools
