// hsid's config: the [cluster] table (SSI membership, docs/ssi.md).
#include <string>
#include <toml.hpp>

#include "absl/strings/str_cat.h"
#include "config.h"
#include "config_reader.h"
#include "hsi/ssi/cluster.h"
#include "hsi/ssi/etcd.h"

namespace hsid {
namespace config_internal {

absl::Status ParseCluster(const Reader& r, const toml::value& t, Config& config) {
  if (!t.is_table()) return r.Error("cluster", &t, "must be a table");
  if (absl::Status s = r.OnlyKeys("cluster.", t, {"name", "member", "etcd", "lease_ttl_s", "poll_ms"}); !s.ok()) {
    return s;
  }
  ClusterConfig& c = config.cluster;
  c.enabled = true;
  const auto& tab = t.as_table();
  if (auto i = tab.find("name"); i != tab.end()) {
    HSI_ASSIGN(c.name, r.String("cluster.name", i->second));
    if (absl::Status s = hsi::ssi::CheckName("the cluster name", c.name); !s.ok()) {
      return r.Error("cluster.name", &i->second, std::string(s.message()));
    }
  }
  auto i = tab.find("member");
  if (i == tab.end()) return r.Error("cluster.member", &t, "is missing (this hsid's member name, like \"VM9\")");
  HSI_ASSIGN(c.member, r.String("cluster.member", i->second));
  if (absl::Status s = hsi::ssi::CheckName("the member name", c.member); !s.ok()) {
    return r.Error("cluster.member", &i->second, std::string(s.message()));
  }
  i = tab.find("etcd");
  if (i == tab.end()) return r.Error("cluster.etcd", &t, "is missing (etcd endpoints, like \"http://127.0.0.1:2379\")");
  std::string endpoints;
  if (i->second.is_array()) {
    for (const toml::value& e : i->second.as_array()) {
      std::string one;
      HSI_ASSIGN(one, r.String("cluster.etcd[]", e));
      absl::StrAppend(&endpoints, endpoints.empty() ? "" : ",", one);
    }
  } else {
    HSI_ASSIGN(endpoints, r.String("cluster.etcd", i->second));
  }
  absl::StatusOr<std::vector<std::string>> eps = hsi::ssi::ParseEndpoints("cluster.etcd", endpoints);
  if (!eps.ok()) return r.Error("cluster.etcd", &i->second, std::string(eps.status().message()));
  c.etcd = *eps;
  if ((i = tab.find("lease_ttl_s")) != tab.end()) {
    uint64_t v = 0;
    HSI_ASSIGN(v, r.Integer("cluster.lease_ttl_s", i->second, 60));
    if (v < 2) return r.Error("cluster.lease_ttl_s", &i->second, "must be 2..60 (etcd grants no lease under 2 s)");
    c.lease_ttl_s = static_cast<uint32_t>(v);
  }
  if ((i = tab.find("poll_ms")) != tab.end()) {
    uint64_t v = 0;
    HSI_ASSIGN(v, r.Integer("cluster.poll_ms", i->second, 10000));
    if (v < 10) return r.Error("cluster.poll_ms", &i->second, "must be 10..10000");
    c.poll_ms = static_cast<uint32_t>(v);
  }
  return absl::OkStatus();
}

}  // namespace config_internal
}  // namespace hsid
