// cf/server.h: hsi-cf's server: one LPAR with one NIC, serving the
// structures of its policy to connectors over CF links (hsi links).
//
// One thread. Each frame from a connector is parsed and validated
// (cf/protocol.h) before use; a bad one gets a kInvalidArgument reply
// naming the field and the CF serves on. A connector's identity is its NIC
// address: the CF asks hsid which LPAR owns it (Nic::PeerLpar, on
// Connect only: hsid is never on the data path) and checks the
// structure's `lpars`. A request whose connection token does not belong
// to the sending address is refused. When a connector's link goes down
// (libhsi reports kUnavailable: its process died or detached), each of its
// connections fails: its locks become retained (cf/lock_structure.h).
// Structures the policy duplexes go through cf/duplex.h first (Serve):
// mirrored to the partner CF before their replies leave.
//
// Thread safety: none; Run() on one thread. Stop() is async-signal-safe.
#ifndef HSI_CF_SERVER_H_
#define HSI_CF_SERVER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cache_structure.h"
#include "config.h"
#include "duplex.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "list_structure.h"
#include "lock_structure.h"
#include "protocol.h"

namespace hsi::cf {

struct ServerOptions {
  std::string socket_path;              // hsid's socket ("": the default)
  WaitMode wait = WaitMode::kAdaptive;  // how the CF waits for requests
  bool verbose = false;                 // log every request to stderr
  // Tests only (hsi-cf --fault): break cross-invalidation on purpose, so
  // that a test can show its checker catches a CF that does.
  XiFault fault = XiFault::kNone;
  bool duplex_fault_mirror_after_reply = false;  // tests only: cf/duplex.h
  bool duplex_fault_keep_vectors = false;        // tests only: cf/duplex.h
  absl::Duration duplex_wait = absl::Seconds(5);  // for the partner's link at start
};

class Server {
 public:
  // Claims the LPAR and attaches the NIC (hsid's policy decides both; no
  // admin rights needed).
  static absl::StatusOr<std::unique_ptr<Server>> Start(CfConfig config, ServerOptions options);

  // Serves until Stop(); returns the error that ended it, OK after Stop().
  absl::Status Run();
  void Stop() { stop_.store(true, std::memory_order_relaxed); }
  Address address() const { return nic_.address(); }

 private:
  friend class Duplex;  // cf/duplex.h: duplexing reads and applies to the structures
  struct Structure;
  struct Conn {
    uint32_t token;
    std::string structure;
    std::string connector;
    std::string lpar;
    Address peer;
    // structures_.at(structure), found once (StructureOf): map nodes are
    // stable and structures are never removed.
    mutable Structure* st = nullptr;
  };
  struct Structure {
    StructureConfig config;
    std::unique_ptr<LockStructure> lock;  // one of these three
    std::unique_ptr<ListStructure> list;
    std::unique_ptr<CacheStructure> cache;
    uint64_t requests = 0, refused = 0;  // requests on its connections, and those answered with an error
  };
  Server(CfConfig config, ServerOptions options) : config_(std::move(config)), options_(options) {}
  // Makes `st` new and empty as its config says (at start, and when a
  // duplex secondary discards its copy for a new one); its counters zero.
  void Reset(Structure& st);

  // One frame: duplexing's (cf/duplex.cc) if it takes it, else Handle().
  void Serve(Address from, absl::Span<const uint8_t> frame);
  void Handle(Address from, absl::Span<const uint8_t> frame);
  absl::StatusOr<std::vector<uint8_t>> Dispatch(Address from, const proto::Header& h,
                                                proto::Reader& r);
  absl::StatusOr<std::vector<uint8_t>> OnConnect(Address from, const proto::Header& h,
                                                 proto::Reader& r);
  // Lock requests: replies itself (an empty vector returned) or an error.
  absl::StatusOr<std::vector<uint8_t>> DispatchLock(Address from, const Conn& conn, Structure& st,
                                                    const proto::Header& h, proto::Reader& r);
  Structure& StructureOf(const Conn& c) {
    if (c.st == nullptr) c.st = &structures_.at(c.structure);
    return *c.st;
  }
  // List requests (server_list.cc); fills `w` with the reply body.
  absl::Status DispatchList(const Conn& conn, ListStructure& list, const proto::Header& h,
                            proto::Reader& r, proto::Writer& w);
  void SendTransitions(const std::vector<Transition>& out);
  // Cache requests (server_cache.cc); fills `w` with the reply body.
  absl::Status DispatchCache(const Conn& conn, CacheStructure& cache, const proto::Header& h,
                             proto::Reader& r, proto::Writer& w);
  // A new cache connection: its validity vector made, granted to `from`
  // through hsid (Nic::GrantMemory, tag = token) and attached.
  absl::Status AttachCache(CacheStructure& cache, Address from, uint32_t token,
                           const std::string& connector);
  // A cache connection ends (normally or failed; `why` for the log): its
  // registrations and vector go, its castout locks are released.
  void DetachCache(const Conn& conn, const std::string& why);
  absl::StatusOr<std::string> LparOf(Address a);
  void Reply(Address to, absl::Span<const uint8_t> frame);
  // Sends the PopNote of `t` (an entry popped for a waiting PopWait of
  // `c`) now, or holds or drops it as reply_mode_ says. One that cannot be
  // sent (the waiter's ring is full, its link down) puts the entry back at
  // the head of its list (PutBack), in both CFs of a duplexed structure.
  void SendPopNote(const Conn& c, const Transition& t);
  // Pushes `t`'s entry back at the head of its list (logged, naming why the
  // note was not sent); what that push causes (a transition, a hand-off to
  // the next waiter) into `again`. Not found or full: the Push's error.
  absl::Status PutBack(const Conn& c, const Transition& t, const absl::Status& why,
                       std::vector<Transition>* again);
  void SendNotes(const std::vector<Note>& notes);
  // Fails every connection of a peer whose link is down.
  void ReapDeadPeers();
  void Log(const std::string& line) const;
  // Declares each structure's state to hsid (Session::DeclareCfStructure;
  // hsictl cfs) when it changed, at most once a second (`now` is the loop's
  // clock): at start, then between requests, never inside one.
  void MaybeDeclare(absl::Time now);
  CfStructureView View(const std::string& name, const Structure& st) const;

  CfConfig config_;
  ServerOptions options_;
  Session session_;
  Nic nic_;
  std::map<std::string, Structure> structures_;
  absl::flat_hash_map<uint32_t, Conn> conns_;
  std::map<Address, hsi::Link> links_;  // peers with connections
  uint32_t next_token_ = 1;
  uint64_t replies_dropped_ = 0;
  std::vector<Transition> pending_transitions_;  // to send after the current reply
  std::vector<uint8_t> scratch_;  // the lock replies' frame, reused (no allocation per request)
  std::vector<Note> notes_;       // the lock requests' notes, reused
  std::atomic<bool> stop_{false};
  absl::Time next_declare_ = absl::InfinitePast();
  std::map<std::string, CfStructureView> declared_;  // what hsid has, as last declared
  // Duplexing (cf/duplex.h): null when no structure is duplexed. While a
  // duplexed request is applied, Reply() holds its frames (sent after the
  // secondary acknowledged) or, at the secondary, drops them.
  std::unique_ptr<Duplex> duplex_;
  enum class ReplyMode { kSend, kHold, kDrop } reply_mode_ = ReplyMode::kSend;
  std::vector<HeldFrame> held_;
};

}  // namespace hsi::cf

#endif  // HSI_CF_SERVER_H_
