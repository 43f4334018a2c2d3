#include "hsi/ssi/etcd.h"

#include <curl/curl.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"

namespace hsi::ssi {
namespace {

using json = nlohmann::json;

std::string B64(absl::string_view s) { return absl::Base64Escape(s); }

std::string UnB64(const json& j) {
  std::string out;
  if (j.is_string()) absl::Base64Unescape(j.get<std::string>(), &out);
  return out;
}

// The gateway prints 64-bit integers as strings; accept either.
int64_t Int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  int64_t v = 0;
  if (it->is_string() && absl::SimpleAtoi(it->get<std::string>(), &v)) return v;
  return 0;
}

// The key just past every key with `prefix` (etcd's range_end for a prefix).
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) < 0xff) {
      prefix.back() = static_cast<char>(prefix.back() + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // the whole key space
}

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

json OpJson(const Op& op) {
  if (op.kind == Op::Kind::kPut) {
    json p = {{"key", B64(op.key)}, {"value", B64(op.value)}};
    if (op.lease != 0) p["lease"] = std::to_string(op.lease);
    return json{{"requestPut", p}};
  }
  return json{{"requestDeleteRange", {{"key", B64(op.key)}}}};
}

const char* TargetName(Compare::Target t) {
  switch (t) {
    case Compare::Target::kValue: return "VALUE";
    case Compare::Target::kCreateRevision: return "CREATE";
    case Compare::Target::kModRevision: return "MOD";
    case Compare::Target::kVersion: return "VERSION";
  }
  return "VALUE";
}

const char* ResultName(Compare::Result r) {
  switch (r) {
    case Compare::Result::kEqual: return "EQUAL";
    case Compare::Result::kNotEqual: return "NOT_EQUAL";
    case Compare::Result::kGreater: return "GREATER";
    case Compare::Result::kLess: return "LESS";
  }
  return "EQUAL";
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseEndpoints(absl::string_view what, absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view e : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    e = absl::StripAsciiWhitespace(e);
    if (!absl::StartsWith(e, "http://") || e.size() <= 7 || absl::StrContains(e.substr(7), "/")) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": '", e, "' is not an etcd endpoint (http://HOST:PORT; https is not supported)"));
    }
    out.emplace_back(e);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": no etcd endpoint given"));
  return out;
}

struct EtcdClient::Impl {
  EtcdOptions opt;
  CURL* curl = nullptr;
  size_t preferred = 0;  // the endpoint that answered last

  ~Impl() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }

  // POSTs `body` to `path` at the endpoints in turn; the parsed answer.
  absl::StatusOr<json> Call(const char* path, const json& body, absl::string_view what) {
    const std::string payload = body.dump();
    std::vector<std::string> failures;
    for (size_t k = 0; k < opt.endpoints.size(); ++k) {
      const size_t i = (preferred + k) % opt.endpoints.size();
      const std::string url = opt.endpoints[i] + path;
      std::string reply;
      curl_easy_reset(curl);
      curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
      curl_easy_setopt(curl, CURLOPT_POST, 1L);
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
      curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // hsid's thread: no SIGALRM
      curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(opt.timeout)));
      curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(opt.timeout)));
      curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Collect);
      curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
      const CURLcode rc = curl_easy_perform(curl);
      if (rc != CURLE_OK) {
        failures.push_back(absl::StrCat(opt.endpoints[i], ": ", curl_easy_strerror(rc)));
        continue;
      }
      preferred = i;
      long http = 0;
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
      json j = json::parse(reply, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) {
        return absl::InternalError(absl::StrCat("etcd ", opt.endpoints[i], ": ", what, ": HTTP ", http,
                                                ", not a JSON object: ", reply.substr(0, 200)));
      }
      if (j.contains("error")) {
        const int64_t code = Int(j, "code");
        const std::string msg = j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump();
        const auto sc = code > 0 && code <= 16 ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown;
        return absl::Status(sc, absl::StrCat("etcd ", opt.endpoints[i], ": ", what, ": ", msg));
      }
      if (http != 200) {
        return absl::InternalError(absl::StrCat("etcd ", opt.endpoints[i], ": ", what, ": HTTP ", http));
      }
      return j;
    }
    return absl::UnavailableError(
        absl::StrCat("etcd unreachable for ", what, ": ", absl::StrJoin(failures, "; ")));
  }
};

absl::StatusOr<EtcdClient> EtcdClient::Create(EtcdOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("etcd: no endpoint given");
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(options);
  impl->curl = curl_easy_init();
  if (impl->curl == nullptr) return absl::ResourceExhaustedError("etcd: curl_easy_init failed");
  return EtcdClient(std::move(impl));
}

EtcdClient::EtcdClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdClient::EtcdClient(EtcdClient&&) noexcept = default;
EtcdClient& EtcdClient::operator=(EtcdClient&&) noexcept = default;
EtcdClient::~EtcdClient() = default;

const std::vector<std::string>& EtcdClient::endpoints() const { return impl_->opt.endpoints; }

absl::StatusOr<std::vector<KeyValue>> EtcdClient::RangePrefix(const std::string& prefix) {
  absl::StatusOr<json> j = impl_->Call("/v3/kv/range", {{"key", B64(prefix)}, {"range_end", B64(PrefixEnd(prefix))}},
                                       absl::StrCat("range ", prefix, "*"));
  if (!j.ok()) return j.status();
  std::vector<KeyValue> out;
  if (auto it = j->find("kvs"); it != j->end() && it->is_array()) {
    for (const json& kv : *it) {
      KeyValue v;
      v.key = UnB64(kv.value("key", json()));
      v.value = UnB64(kv.value("value", json()));
      v.create_revision = Int(kv, "create_revision");
      v.mod_revision = Int(kv, "mod_revision");
      v.version = Int(kv, "version");
      v.lease = Int(kv, "lease");
      out.push_back(std::move(v));
    }
  }
  return out;
}

absl::StatusOr<KeyValue> EtcdClient::Get(const std::string& key) {
  absl::StatusOr<json> j = impl_->Call("/v3/kv/range", {{"key", B64(key)}}, absl::StrCat("get ", key));
  if (!j.ok()) return j.status();
  auto it = j->find("kvs");
  if (it == j->end() || !it->is_array() || it->empty()) return absl::NotFoundError(absl::StrCat("etcd: no key ", key));
  const json& kv = (*it)[0];
  KeyValue v;
  v.key = key;
  v.value = UnB64(kv.value("value", json()));
  v.create_revision = Int(kv, "create_revision");
  v.mod_revision = Int(kv, "mod_revision");
  v.version = Int(kv, "version");
  v.lease = Int(kv, "lease");
  return v;
}

absl::Status EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease) {
  json body = {{"key", B64(key)}, {"value", B64(value)}};
  if (lease != 0) body["lease"] = std::to_string(lease);
  return impl_->Call("/v3/kv/put", body, absl::StrCat("put ", key)).status();
}

absl::Status EtcdClient::Delete(const std::string& key) {
  return impl_->Call("/v3/kv/deleterange", {{"key", B64(key)}}, absl::StrCat("delete ", key)).status();
}

absl::StatusOr<bool> EtcdClient::Txn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                                     const std::vector<Op>& failure) {
  json cmp = json::array();
  for (const Compare& c : compares) {
    json x = {{"key", B64(c.key)}, {"target", TargetName(c.target)}, {"result", ResultName(c.result)}};
    switch (c.target) {
      case Compare::Target::kValue: x["value"] = B64(c.value); break;
      case Compare::Target::kCreateRevision: x["create_revision"] = std::to_string(c.number); break;
      case Compare::Target::kModRevision: x["mod_revision"] = std::to_string(c.number); break;
      case Compare::Target::kVersion: x["version"] = std::to_string(c.number); break;
    }
    cmp.push_back(std::move(x));
  }
  json ok = json::array(), fail = json::array();
  for (const Op& o : success) ok.push_back(OpJson(o));
  for (const Op& o : failure) fail.push_back(OpJson(o));
  std::string what = "txn";
  if (!compares.empty()) what = absl::StrCat("txn on ", compares[0].key);
  absl::StatusOr<json> j = impl_->Call("/v3/kv/txn", {{"compare", cmp}, {"success", ok}, {"failure", fail}}, what);
  if (!j.ok()) return j.status();
  return j->value("succeeded", false);
}

absl::StatusOr<int64_t> EtcdClient::Grant(int64_t ttl_seconds) {
  absl::StatusOr<json> j = impl_->Call("/v3/lease/grant", {{"TTL", std::to_string(ttl_seconds)}}, "lease grant");
  if (!j.ok()) return j.status();
  const int64_t id = Int(*j, "ID");
  if (id == 0) return absl::InternalError(absl::StrCat("etcd: lease grant: no ID in ", j->dump()));
  return id;
}

absl::Status EtcdClient::KeepAlive(int64_t lease) {
  absl::StatusOr<json> j =
      impl_->Call("/v3/lease/keepalive", {{"ID", std::to_string(lease)}}, absl::StrCat("keepalive ", lease));
  if (!j.ok()) return j.status();
  // The stream's one message; a lease etcd no longer has comes back with
  // no TTL (0).
  const json& r = j->contains("result") ? (*j)["result"] : *j;
  if (Int(r, "TTL") <= 0) return absl::NotFoundError(absl::StrCat("etcd: lease ", lease, " has expired"));
  return absl::OkStatus();
}

absl::Status EtcdClient::Revoke(int64_t lease) {
  return impl_->Call("/v3/lease/revoke", {{"ID", std::to_string(lease)}}, absl::StrCat("revoke lease ", lease))
      .status();
}

}  // namespace hsi::ssi
