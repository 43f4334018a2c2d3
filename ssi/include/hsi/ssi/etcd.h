// hsi/ssi/etcd.h: a small, blocking etcd v3 client (the JSON gateway).
//
// hsi keeps the state of an SSI cluster of hsids in etcd (DESIGN.md 8): no
// home-made consensus. This is the client the cluster member in hsid, the
// hsi-relocate command and hsictl share. It speaks etcd's v3 JSON gateway
// (POST /v3/kv/range, /v3/kv/put, /v3/kv/deleterange, /v3/kv/txn,
// /v3/lease/grant, /v3/lease/keepalive, /v3/lease/revoke) over libcurl;
// keys and values are byte strings (base64 on the wire, done here).
//
// Contract:
// - Every call is one HTTP request that blocks for at most
//   EtcdOptions::timeout per endpoint. Endpoints are tried in order
//   (starting with the last one that answered); a connection failure or
//   timeout moves on to the next; an answer from etcd (even an error)
//   ends the call.
// - Errors: kUnavailable when no endpoint answered (the message names each
//   endpoint and why); kNotFound for a lease etcd does not know (expired
//   or revoked); kInternal for an answer that is not what the gateway
//   sends; otherwise the code and message etcd returned, prefixed with the
//   operation and key.
// - Txn() is etcd's atomic compare-and-swap: every compare holds, then the
//   success ops run, else the failure ops; returns which.
//
// Thread safety: an EtcdClient is used by one thread at a time (it owns a
// curl easy handle). Make one per thread. Move-only.
#ifndef HSI_SSI_ETCD_H_
#define HSI_SSI_ETCD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hsi::ssi {

struct EtcdOptions {
  // "http://HOST:PORT" each; at least one.
  std::vector<std::string> endpoints;
  absl::Duration timeout = absl::Seconds(2);
};

// Parses "http://a:2379,http://b:2379" (as flags and configs take it).
// kInvalidArgument naming `what` and the bad item.
absl::StatusOr<std::vector<std::string>> ParseEndpoints(absl::string_view what, absl::string_view text);

struct KeyValue {
  std::string key, value;
  int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct Compare {
  enum class Target { kValue, kCreateRevision, kModRevision, kVersion };
  enum class Result { kEqual, kNotEqual, kGreater, kLess };
  std::string key;
  Target target = Target::kValue;
  Result result = Result::kEqual;
  std::string value;   // for kValue
  int64_t number = 0;  // for the revisions and the version

  static Compare ValueIs(std::string key, std::string value) {
    return {std::move(key), Target::kValue, Result::kEqual, std::move(value), 0};
  }
  static Compare Absent(std::string key) {  // create_revision == 0
    return {std::move(key), Target::kCreateRevision, Result::kEqual, "", 0};
  }
  static Compare Present(std::string key) {  // create_revision > 0
    return {std::move(key), Target::kCreateRevision, Result::kGreater, "", 0};
  }
  static Compare ModRevisionIs(std::string key, int64_t rev) {
    return {std::move(key), Target::kModRevision, Result::kEqual, "", rev};
  }
};

struct Op {
  enum class Kind { kPut, kDelete };
  Kind kind = Kind::kPut;
  std::string key, value;
  int64_t lease = 0;  // kPut: attach the key to this lease (0: none)
  static Op Put(std::string key, std::string value, int64_t lease = 0) {
    return {Kind::kPut, std::move(key), std::move(value), lease};
  }
  static Op Delete(std::string key) { return {Kind::kDelete, std::move(key), "", 0}; }
};

class EtcdClient {
 public:
  // kInvalidArgument for no endpoints; contacts no one.
  static absl::StatusOr<EtcdClient> Create(EtcdOptions options);
  EtcdClient(EtcdClient&&) noexcept;
  EtcdClient& operator=(EtcdClient&&) noexcept;
  ~EtcdClient();

  // The keys starting with `prefix`, in key order.
  absl::StatusOr<std::vector<KeyValue>> RangePrefix(const std::string& prefix);
  // The key `key`, or kNotFound.
  absl::StatusOr<KeyValue> Get(const std::string& key);
  absl::Status Put(const std::string& key, const std::string& value, int64_t lease = 0);
  // Deletes `key` (absent is fine).
  absl::Status Delete(const std::string& key);
  // Returns whether the compares held (success ops ran) or not (failure ops ran).
  absl::StatusOr<bool> Txn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                           const std::vector<Op>& failure = {});
  // A lease of `ttl` seconds (etcd may raise it to its minimum); its id.
  absl::StatusOr<int64_t> Grant(int64_t ttl_seconds);
  // One keep-alive: the lease's TTL again. kNotFound if it expired.
  absl::Status KeepAlive(int64_t lease);
  absl::Status Revoke(int64_t lease);

  const std::vector<std::string>& endpoints() const;

 private:
  struct Impl;
  explicit EtcdClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hsi::ssi

#endif  // HSI_SSI_ETCD_H_
