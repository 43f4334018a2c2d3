#include "hsi/ssi/cluster.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace hsi::ssi {
namespace {

using json = nlohmann::ordered_json;

template <typename T>
absl::StatusOr<T> Parse(const std::string& key, const std::string& text, void (*fill)(const json&, T&)) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("etcd key ", key, ": not a JSON object: ", text.substr(0, 80)));
  }
  T r;
  try {
    fill(j, r);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("etcd key ", key, ": ", e.what()));
  }
  return r;
}

}  // namespace

absl::Status CheckName(absl::string_view what, absl::string_view name) {
  if (name.empty() || name.size() > 31) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", name, "' must be 1..31 characters"));
  }
  for (char ch : name) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " '", name, "' may hold only letters, digits, '_', '.' and '-'"));
    }
  }
  return absl::OkStatus();
}

bool MemberChpid::Allows(const std::string& lpar) const {
  return std::find(lpars.begin(), lpars.end(), "*") != lpars.end() ||
         std::find(lpars.begin(), lpars.end(), lpar) != lpars.end();
}

const HsiInterface* GuestRecord::On(const std::string& m) const {
  for (const HsiInterface& h : hsi) {
    if (h.member == m) return &h;
  }
  return nullptr;
}

int64_t ClusterView::residency_mod(const std::string& g) const {
  auto it = residency_mods.find(g);
  return it == residency_mods.end() ? 0 : it->second;
}

std::string ToJson(const MemberRecord& r) {
  json ch = json::array();
  for (const MemberChpid& c : r.chpids) ch.push_back({{"id", c.id}, {"subnet", c.subnet}, {"lpars", c.lpars}});
  return json{{"name", r.name}, {"socket", r.socket}, {"pid", r.pid}, {"started_ms", r.started_ms}, {"chpids", ch}}
      .dump();
}

std::string ToJson(const GuestRecord& r) {
  json h = json::array();
  for (const HsiInterface& i : r.hsi) {
    h.push_back({{"member", i.member}, {"chpid", i.chpid}, {"ifname", i.ifname}, {"address", i.address}});
  }
  return json{{"name", r.name}, {"group", r.group}, {"netns", r.netns}, {"vipa", r.vipa}, {"hsi", h}}.dump();
}

std::string ToJson(const Relocation& r) {
  return json{{"guest", r.guest}, {"from", r.from},   {"to", r.to},
              {"step", r.step},   {"pid", r.pid},     {"started_ms", r.started_ms}}
      .dump();
}

std::string ToJson(const Outcome& r) {
  return json{{"guest", r.guest},     {"from", r.from},
              {"to", r.to},           {"result", r.result},
              {"message", r.message}, {"finished_ms", r.finished_ms},
              {"duration_ms", r.duration_ms}}
      .dump();
}

absl::StatusOr<MemberRecord> ParseMember(const std::string& key, const std::string& text) {
  return Parse<MemberRecord>(key, text, [](const json& j, MemberRecord& r) {
    r.name = j.at("name").get<std::string>();
    r.socket = j.value("socket", "");
    r.pid = j.value("pid", int64_t{0});
    r.started_ms = j.value("started_ms", int64_t{0});
    for (const json& c : j.value("chpids", json::array())) {
      r.chpids.push_back({c.at("id").get<uint32_t>(), c.value("subnet", ""),
                          c.value("lpars", std::vector<std::string>{})});
    }
  });
}

absl::StatusOr<GuestRecord> ParseGuest(const std::string& key, const std::string& text) {
  return Parse<GuestRecord>(key, text, [](const json& j, GuestRecord& r) {
    r.name = j.at("name").get<std::string>();
    r.group = j.value("group", "");
    r.netns = j.value("netns", "");
    r.vipa = j.value("vipa", "");
    for (const json& h : j.value("hsi", json::array())) {
      r.hsi.push_back({h.at("member").get<std::string>(), h.at("chpid").get<uint32_t>(),
                       h.at("ifname").get<std::string>(), h.value("address", "")});
    }
  });
}

absl::StatusOr<Relocation> ParseRelocation(const std::string& key, const std::string& text) {
  return Parse<Relocation>(key, text, [](const json& j, Relocation& r) {
    r.guest = j.at("guest").get<std::string>();
    r.from = j.value("from", "");
    r.to = j.value("to", "");
    r.step = j.value("step", "");
    r.pid = j.value("pid", int64_t{0});
    r.started_ms = j.value("started_ms", int64_t{0});
  });
}

absl::StatusOr<Outcome> ParseOutcome(const std::string& key, const std::string& text) {
  return Parse<Outcome>(key, text, [](const json& j, Outcome& r) {
    r.guest = j.at("guest").get<std::string>();
    r.from = j.value("from", "");
    r.to = j.value("to", "");
    r.result = j.value("result", "");
    r.message = j.value("message", "");
    r.finished_ms = j.value("finished_ms", int64_t{0});
    r.duration_ms = j.value("duration_ms", int64_t{0});
  });
}

absl::StatusOr<ClusterView> ReadCluster(EtcdClient& etcd, const Keys& keys) {
  absl::StatusOr<std::vector<KeyValue>> kvs = etcd.RangePrefix(keys.root());
  if (!kvs.ok()) return kvs.status();
  ClusterView v;
  auto tail = [](const std::string& key, const std::string& prefix) { return key.substr(prefix.size()); };
  for (const KeyValue& kv : *kvs) {
    v.revision_hint = std::max(v.revision_hint, kv.mod_revision);
    if (absl::StartsWith(kv.key, keys.Members())) {
      absl::StatusOr<MemberRecord> r = ParseMember(kv.key, kv.value);
      if (!r.ok()) {
        v.bad.push_back(std::string(r.status().message()));
        continue;
      }
      r->lease = kv.lease;
      v.members[tail(kv.key, keys.Members())] = std::move(*r);
    } else if (absl::StartsWith(kv.key, keys.Guests())) {
      absl::StatusOr<GuestRecord> r = ParseGuest(kv.key, kv.value);
      if (!r.ok()) {
        v.bad.push_back(std::string(r.status().message()));
        continue;
      }
      v.guests[tail(kv.key, keys.Guests())] = std::move(*r);
    } else if (absl::StartsWith(kv.key, keys.Residencies())) {
      const std::string g = tail(kv.key, keys.Residencies());
      v.residency[g] = kv.value;
      v.residency_mods[g] = kv.mod_revision;
    } else if (absl::StartsWith(kv.key, keys.Relocations())) {
      absl::StatusOr<Relocation> r = ParseRelocation(kv.key, kv.value);
      if (!r.ok()) {
        v.bad.push_back(std::string(r.status().message()));
        continue;
      }
      v.relocations[tail(kv.key, keys.Relocations())] = std::move(*r);
    } else if (absl::StartsWith(kv.key, keys.Outcomes())) {
      absl::StatusOr<Outcome> r = ParseOutcome(kv.key, kv.value);
      if (!r.ok()) {
        v.bad.push_back(std::string(r.status().message()));
        continue;
      }
      v.outcomes[tail(kv.key, keys.Outcomes())] = std::move(*r);
    }
  }
  return v;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace hsi::ssi
