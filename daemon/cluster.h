// daemon/cluster.h: hsid as a member of an SSI cluster (issue 18).
//
// With a [cluster] table in the config, hsid is member `member` of the
// cluster whose state lives in etcd (hsi/ssi/cluster.h has the keys):
// - It holds the key members/MEMBER on a lease of lease_ttl_s, kept alive,
//   with its socket, pid and CHPIDs (what hsi-relocate's eligibility check
//   reads). If hsid dies, the lease expires and the member is seen gone.
//   If the key is still held by an earlier lease (a killed predecessor,
//   within its TTL, or another live hsid of the same member name), it
//   retries every poll until that lease is gone, and says so in the log.
// - It reads the cluster (one range) every poll_ms. A guest of the
//   directory (guests/G) is served here only while residency/G names this
//   member: NICs of LPAR G are held down otherwise ("detached from the
//   CPC": links dropped, no peer sees them, the owner's calls fail with
//   kUnavailable), and raised again when G logs on here. An LPAR that is
//   no guest is served as by a lone hsid. Start() reads the directory once
//   (up to 2 s) before hsid serves anyone, so that clients re-registering
//   after a restart keep their links (DESIGN invariant 4); if etcd does not
//   answer then, the member does not know who is a guest and holds every
//   NIC down until it does.
// - Without [cluster], Start() does nothing: no thread, no etcd.
//
// Threads: the etcd work (HTTP, blocking) runs on a thread of its own;
// the event loop never waits on etcd. The thread publishes each changed
// view under a mutex and writes an eventfd that the loop polls
// (EventLoop::Kind::kCluster); OnEvent() then applies it on the loop's
// thread. Everything but the thread's own state is the loop thread's.
#ifndef HSI_DAEMON_CLUSTER_H_
#define HSI_DAEMON_CLUSTER_H_

#include <condition_variable>
#include <map>
#include <mutex>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "admin.h"
#include "clients.h"
#include "config.h"
#include "hsi/fd.h"
#include "nics.h"

namespace hsid {

class Cluster {
 public:
  Cluster(const Config& config, Clients& clients, Nics& nics, Admin& admin)
      : config_(config), clients_(clients), nics_(nics), admin_(admin) {}
  ~Cluster() { Stop(); }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  bool enabled() const { return config_.cluster.enabled; }
  // Reads the directory (blocking, before the loop runs), then starts the
  // member thread (if enabled); `socket_path` goes in the member record.
  // Errors only for a failed eventfd or thread.
  absl::Status Start(const std::string& socket_path);
  // Ends the thread and revokes the lease (so the member is seen gone at
  // once, not after the TTL). Idempotent.
  void Stop();
  // The eventfd the loop polls; -1 when disabled.
  int event_fd() const { return event_fd_.get(); }
  // The eventfd was readable: takes the newest view and applies it.
  void OnEvent();
  // Raises or holds down each NIC as its LPAR's residency says. Cheap
  // enough to call after every attach.
  void Apply();

 private:
  // What the loop needs from a read of etcd.
  struct View {
    bool known = false;                            // read etcd at least once
    std::set<std::string> guests;                  // the directory
    std::map<std::string, std::string> residency;  // guest -> member
  };
  // Why LPAR `lpar` is not served here, or "" if it is.
  std::string NotServed(const std::string& lpar) const;
  void ThreadMain();

  const Config& config_;
  Clients& clients_;
  Nics& nics_;
  Admin& admin_;
  std::string socket_path_;
  hsi::UniqueFd event_fd_;
  std::thread thread_;
  View view_;  // the loop's copy

  // std::mutex rather than absl::Mutex: Debian's abseil is not built for
  // TSan, which then cannot see absl::Mutex and reports races it orders.
  std::mutex mu_;
  std::condition_variable wake_;  // Stop() wakes the thread's poll wait
  View published_;                // guarded by mu_
  bool stop_ = false;             // guarded by mu_
};

}  // namespace hsid

#endif  // HSI_DAEMON_CLUSTER_H_
