// hsid's composition: the parts of daemon/ wired together, requests routed
// to the part that owns them, and the timer's sweep.
//
// Who holds what (each header states its contract):
//   event_loop.h  the io_uring, signals, the timer
//   clients.h     connections: accept, identity, caps, send queues, hello
//   nics.h        the NIC table, doorbell rings, the peers list
//   links.h       the link set-up / relink state machine
//   policy.h      LPAR claims, attach with address allocation, detach,
//                 the reclaim holds and the state file
//   admin.h       define/undefine CHPID, set NIC state, lists and counters
//   sniffer.h     taps of a CHPID (hsi-dump)
//   cluster.h     SSI cluster membership in etcd: which guests' NICs this
//                 member serves (only with a [cluster] config table)
//   ctc.h         CTC connections: policy, half-channel memory, set-up (issue 19)
//   streams.h     hsi-run: listeners, proposed and paired TCP connections
// A new kind of object (a CTC device, a coupling facility structure) gets a
// part of its own beside these, with its messages routed in OnMessage and
// its teardown in OnClientGone.
#include "server.h"

#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "admin.h"
#include "clients.h"
#include "cluster.h"
#include "cf_views.h"
#include "ctc.h"
#include "event_loop.h"
#include "grants.h"
#include "hsi/support/service.h"
#include "hsi/wire/protocol.h"
#include "links.h"
#include "listen_socket.h"
#include "log.h"
#include "nics.h"
#include "policy.h"
#include "sniffer.h"
#include "streams.h"

namespace hsid {
namespace {

using wire::MsgType;
using Kind = EventLoop::Kind;

// While any deadline runs (a hello, a link setup, a relink, the holds, the
// recovery window), the timer sweeps them this often.
constexpr absl::Duration kSweep = absl::Milliseconds(100);

class ServerImpl final : public Server, Clients::Listener, EventLoop::Handler {
 public:
  explicit ServerImpl(ServerOptions o)
      : opt_(std::move(o)),
        config_(opt_.config),
        clients_(config_, loop_, *this, opt_.verbose),
        nics_(clients_, loop_),
        links_(config_, clients_, nics_, opt_.verbose),
        sniffer_(config_, clients_, links_),
        policy_(config_, clients_, nics_, links_),
        admin_(config_, clients_, nics_, links_),
        cluster_(config_, clients_, nics_, admin_),
        ctcs_(config_, clients_, opt_.verbose),
        streams_(config_, clients_),
        grants_(clients_, nics_),
        cf_views_(clients_, admin_) {
    links_.AddObserver(&sniffer_);
  }
  ~ServerImpl() override;
  absl::Status Init();
  absl::Status Run() override;

 private:
  // Clients::Listener
  void OnMessage(Client& c, Message& m) override;
  bool OnClientGone(Client& c, const std::string& why) override;
  // EventLoop::Handler
  void OnEvent(Kind kind, uint64_t id, int res) override;
  void AfterEvent() override { clients_.FlushClosing(); }
  void AfterTurn() override;
  bool ExpectSoon() const override { return links_.setups_pending() > 0; }

  void OnTimer();

  ServerOptions opt_;
  Config& config_;
  hsi::UniqueFd listen_;
  // The parts, each of which may use those declared before it (Links
  // reaches the Sniffer only as its Observer).
  EventLoop loop_;
  Clients clients_;
  Nics nics_;
  Links links_;
  Sniffer sniffer_;
  Policy policy_;
  Admin admin_;
  Cluster cluster_;
  Ctcs ctcs_;
  Streams streams_;
  Grants grants_;
  CfViews cf_views_;
};

absl::Status ServerImpl::Init() {
  // Not dumpable: no process of hsid's uid (short of CAP_SYS_PTRACE) may
  // open /proc/<hsid>/fd, where every segment lies writable until its owner
  // seals it (issue 13; docs/reliability.md says what remains within a uid).
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return absl::ErrnoToStatus(errno, "prctl(PR_SET_DUMPABLE, 0)");
  absl::StatusOr<ListenSocket> ls = OpenListenSocket(opt_.socket_path, ::geteuid());
  if (!ls.ok()) return ls.status();
  listen_ = std::move(ls->fd);
  opt_.socket_path = ls->path;
  policy_.Start(absl::StrCat(ls->path, ".state"), ls->stale);
  if (absl::Status s = clients_.Init(); !s.ok()) return s;
  // hsid holds two segment fds per link and a doorbell per NIC: a CHPID
  // with 64 NICs all linked needs over 4000. Raise the soft fd limit to the
  // hard one (hsid never uses select(), so high fd numbers are fine).
  if (rlimit lim{}; ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &lim) < 0) Log(absl::StrCat("raising RLIMIT_NOFILE: ", std::strerror(errno)));
  }
  if (absl::Status s = loop_.Init(); !s.ok()) return s;
  return cluster_.Start(opt_.socket_path);
}

ServerImpl::~ServerImpl() {
  cluster_.Stop();
  clients_.Clear();
  loop_.Close();
  if (listen_.valid()) ::unlink(opt_.socket_path.c_str());
}

absl::Status ServerImpl::Run() {
  Log(absl::StrCat("serving ", opt_.socket_path, " with config ", config_.source, " (",
                   config_.chpids.size(), " CHPIDs)"));
  loop_.ArmPoll(listen_.get(), POLLIN, Kind::kListen, 0);
  if (cluster_.enabled()) loop_.ArmPoll(cluster_.event_fd(), POLLIN, Kind::kCluster, 0);
  // The socket listens since Init(): units ordered after hsid.service
  // (Type=notify) may connect from here on.
  if (absl::Status s = hsi::support::NotifyReady(absl::StrCat("serving ", opt_.socket_path, ", ", config_.chpids.size(),
                                                         " CHPIDs"));
      !s.ok()) {
    Log(std::string(s.message()));
  }
  absl::Status run = loop_.Run(*this);
  hsi::support::NotifyStopping().IgnoreError();
  if (!run.ok()) return run;
  clients_.ShutdownAll();
  return absl::OkStatus();
}

void ServerImpl::OnEvent(Kind kind, uint64_t id, int res) {
  switch (kind) {
    case Kind::kListen:
      clients_.Accept(listen_.get());
      loop_.ArmPoll(listen_.get(), POLLIN, Kind::kListen, 0);
      break;
    case Kind::kClientIn:
      clients_.OnReadable(id, res);
      break;
    case Kind::kClientOut:
      clients_.OnWritable(id);
      break;
    case Kind::kTimer:
      OnTimer();
      break;
    case Kind::kBell:
      nics_.OnBellWritten(static_cast<uint32_t>(id));
      break;
    case Kind::kCluster:
      cluster_.OnEvent();
      loop_.ArmPoll(cluster_.event_fd(), POLLIN, Kind::kCluster, 0);
      break;
    case Kind::kSignal:
    case Kind::kIgnore:
      break;  // the loop's own
  }
}

void ServerImpl::AfterTurn() {
  if (links_.HasDeferred()) {
    // A link set up from spares: its requester, woken by the answer (on
    // this CPU, as a Unix socket wakes), finishes its set-up before hsid
    // tells the peer and makes new spares.
    ::sched_yield();
    links_.RunDeferred();
  }
  clients_.ArmAll();
  if (!loop_.timer_armed() &&
      (policy_.NeedsTimer() || clients_.unclaimed() > 0 || links_.AnyDeadline() || streams_.AnyDeadline())) {
    loop_.ArmTimer(kSweep);
  }
  policy_.SaveStateIfChanged();
}

void ServerImpl::OnTimer() {
  const absl::Time now = absl::Now();
  policy_.ExpireHolds(now);
  clients_.ExpireHellos(now);
  policy_.RetryDeferred(now);
  cluster_.Apply();  // NICs the deferred attaches made
  links_.Expire(now);
  streams_.Expire(now);
}

void ServerImpl::OnMessage(Client& c, Message& m) {
  switch (m.type) {
    case MsgType::kClaimRequest: return policy_.OnClaim(c, m);
    case MsgType::kAttachRequest:
      policy_.OnAttach(c, m);
      return cluster_.Apply();  // a guest's NIC is served only where it is logged on
    case MsgType::kDetachRequest: return policy_.OnDetach(c, m);
    case MsgType::kLinkRequest: return links_.OnLink(c, m);
    case MsgType::kLinkSealed: return links_.OnSealed(c, m);
    case MsgType::kSpareSealed: return links_.spares().OnSealed(c, m);
    case MsgType::kLinkClose: return links_.OnClose(c, m);
    case MsgType::kRelinkRequest: return links_.OnRelink(c, m);
    case MsgType::kPeersRequest: return nics_.OnPeers(c, m);
    case MsgType::kNicInterfaceRequest: return nics_.OnInterface(c, m);
    case MsgType::kOwnerRequest: return nics_.OnOwner(c, m);
    case MsgType::kDefineChpidRequest: return admin_.OnDefineChpid(c, m);
    case MsgType::kUndefineChpidRequest: return admin_.OnUndefineChpid(c, m);
    case MsgType::kSetNicRequest: return admin_.OnSetNic(c, m);
    case MsgType::kListRequest: {
      const uint32_t what = m.As<wire::ListRequest>().what;
      if (what == wire::kListStreams || what == wire::kListFallbacks) return streams_.OnList(c, m);
      return admin_.OnList(c, m);
    }
    case MsgType::kRunListenRequest: return streams_.OnListen(c, m);
    case MsgType::kRunUnlistenNotice: return streams_.OnUnlisten(c, m);
    case MsgType::kRunProposeRequest: return streams_.OnPropose(c, m);
    case MsgType::kRunClaimRequest: return streams_.OnClaim(c, m);
    case MsgType::kRunAwaitRequest: return streams_.OnAwait(c, m);
    case MsgType::kRunReattachRequest: return streams_.OnReattach(c, m);
    case MsgType::kRunFetchRequest: return streams_.OnFetch(c, m);
    case MsgType::kRunCloseNotice: return streams_.OnClose(c, m);
    case MsgType::kRunFallbackNotice: return streams_.OnFallback(c, m);
    case MsgType::kSniffRequest: return sniffer_.OnSniff(c, m);
    case MsgType::kCtcOpenRequest: return ctcs_.OnOpen(c, m);
    case MsgType::kCtcSealed: return ctcs_.OnSealed(c, m);
    case MsgType::kCtcClose: return ctcs_.OnClose(c, m);
    case MsgType::kCtcReattachRequest: return ctcs_.OnReattach(c, m);
    case MsgType::kCtcDefineRequest: return ctcs_.OnDefine(c, m);
    case MsgType::kCtcUndefineRequest: return ctcs_.OnUndefine(c, m);
    case MsgType::kCtcListRequest: return ctcs_.OnList(c, m);
    case MsgType::kIsfcDeclareRequest: return ctcs_.OnIsfcDeclare(c, m);
    case MsgType::kIsfcListRequest: return ctcs_.OnIsfcList(c, m);
    case MsgType::kCfDeclareRequest: return cf_views_.OnDeclare(c, m);
    case MsgType::kCfListRequest: return cf_views_.OnList(c, m);
    case MsgType::kMemGrantRequest: return grants_.OnGrant(c, m);
    case MsgType::kMemTakeRequest: return grants_.OnTake(c, m);
    case MsgType::kIsfcCommandRequest: return ctcs_.OnIsfcCommand(c, m);
    case MsgType::kIsfcCommandResult: return ctcs_.OnIsfcCommandResult(c, m);
    case MsgType::kIsfcCommandsAccept: return ctcs_.OnIsfcCommandsAccept(c, m);
    default:
      break;  // Decode() admits only client-to-daemon types
  }
}

bool ServerImpl::OnClientGone(Client& c, const std::string& why) {
  const bool had_nics = policy_.OnClientGone(c, why);
  ctcs_.OnClientGone(c);
  links_.EndSetupsOf(c.id);
  streams_.OnClientGone(c);
  grants_.OnClientGone(c);
  cf_views_.OnClientGone(c);
  return had_nics;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions options) {
  auto s = std::make_unique<ServerImpl>(std::move(options));
  if (absl::Status st = s->Init(); !st.ok()) return st;
  return std::unique_ptr<Server>(std::move(s));
}

}  // namespace hsid
