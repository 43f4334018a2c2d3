#include "relocate.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli.h"

namespace hsi::relocate {
namespace {

using ssi::Compare;
using ssi::Op;

// Runs argv (no shell), returns its exit status and its stdout+stderr.
absl::StatusOr<std::pair<int, std::string>> Run(const std::vector<std::string>& argv) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return absl::ErrnoToStatus(errno, "pipe");
  const pid_t pid = ::fork();
  if (pid < 0) return absl::ErrnoToStatus(errno, "fork");
  if (pid == 0) {
    ::dup2(p[1], 1);
    ::dup2(p[1], 2);
    std::vector<char*> a;
    for (const std::string& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    ::execvp(a[0], a.data());
    std::fprintf(stderr, "cannot run %s: %s\n", a[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(p[1]);
  std::string out;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(p[0], buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(p[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out);
}

void Say(const Context& ctx, const std::string& line) {
  if (!ctx.verbose) return;
  std::printf("%s %s\n", absl::FormatTime("%H:%M:%E3S", absl::Now(), absl::LocalTimeZone()).c_str(), line.c_str());
  std::fflush(stdout);
}

void MaybeStop(const Context& ctx, const std::string& step) {
  if (ctx.stop_after != step) return;
  Say(ctx, absl::StrCat("stopped after step ", step, " (HSI_RELOCATE_STOP_AFTER)"));
  ::raise(SIGSTOP);
}

absl::StatusOr<ssi::ClusterView> Read(Context& ctx) { return ssi::ReadCluster(*ctx.etcd, ctx.keys); }

absl::StatusOr<ssi::GuestRecord> FindGuest(const ssi::ClusterView& v, const std::string& guest) {
  auto it = v.guests.find(guest);
  if (it == v.guests.end()) {
    return absl::NotFoundError(absl::StrCat("guest ", guest, " is not in the cluster directory (hsi-relocate --define)"));
  }
  return it->second;
}

// Every interface of `g` down except the one of member `resident` (none if "").
absl::Status MatchInterfaces(Context& /*ctx*/, const ssi::GuestRecord& g, const std::string& resident,
                             std::vector<std::string>* did) {
  std::vector<std::string> errors;
  // Down first: never two up at once.
  for (int pass = 0; pass < 2; ++pass) {
    for (const ssi::HsiInterface& h : g.hsi) {
      const bool up = h.member == resident;
      if ((pass == 0) == up) continue;
      if (absl::Status s = SetLink(g.netns, h.ifname, up); !s.ok()) {
        errors.push_back(std::string(s.message()));
      } else if (did != nullptr) {
        did->push_back(absl::StrCat(h.ifname, up ? " up" : " down"));
      }
    }
  }
  if (!errors.empty()) return absl::UnavailableError(absl::StrJoin(errors, "; "));
  return absl::OkStatus();
}

ssi::Outcome Finish(Context& ctx, ssi::Outcome o, absl::Time start) {
  o.finished_ms = ssi::NowMs();
  o.duration_ms = absl::ToInt64Milliseconds(absl::Now() - start);
  if (absl::Status s = ctx.etcd->Put(ctx.keys.Outcome(o.guest), ssi::ToJson(o)); !s.ok()) {
    Say(ctx, absl::StrCat("could not record the outcome: ", s.message()));
  }
  return o;
}

}  // namespace

absl::Status SetLink(const std::string& netns, const std::string& ifname, bool up) {
  absl::StatusOr<std::pair<int, std::string>> r =
      Run({"ip", "-n", netns, "link", "set", "dev", ifname, up ? "up" : "down"});
  if (!r.ok()) return r.status();
  if (r->first != 0) {
    return absl::UnavailableError(absl::StrCat("ip -n ", netns, " link set dev ", ifname, up ? " up" : " down",
                                               ": ", absl::StripTrailingAsciiWhitespace(r->second)));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> LinkIsUp(const std::string& netns, const std::string& ifname) {
  absl::StatusOr<std::pair<int, std::string>> r = Run({"ip", "-n", netns, "-o", "link", "show", "dev", ifname});
  if (!r.ok()) return r.status();
  if (r->first != 0) {
    return absl::NotFoundError(absl::StrCat("netns ", netns, ": no interface ", ifname, ": ",
                                            absl::StripTrailingAsciiWhitespace(r->second)));
  }
  // "5: hsi0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu ..."
  const size_t open = r->second.find('<'), close = r->second.find('>');
  if (open == std::string::npos || close == std::string::npos) return false;
  const std::string flags = absl::StrCat(",", r->second.substr(open + 1, close - open - 1), ",");
  return flags.find(",UP,") != std::string::npos;
}

absl::Status Define(Context& ctx, const ssi::GuestRecord& g) {
  return ctx.etcd->Put(ctx.keys.Guest(g.name), ssi::ToJson(g));
}

absl::Status Logon(Context& ctx, const std::string& guest, const std::string& member) {
  absl::StatusOr<ssi::ClusterView> v = Read(ctx);
  if (!v.ok()) return v.status();
  absl::StatusOr<ssi::GuestRecord> g = FindGuest(*v, guest);
  if (!g.ok()) return g.status();
  absl::StatusOr<bool> done = ctx.etcd->Txn(
      {Compare::Absent(ctx.keys.Residency(guest)), Compare::Present(ctx.keys.Member(member))},
      {Op::Put(ctx.keys.Residency(guest), member)});
  if (!done.ok()) return done.status();
  if (!*done) {
    absl::StatusOr<ssi::ClusterView> now = Read(ctx);
    if (now.ok() && now->residency.contains(guest)) {
      return absl::FailedPreconditionError(absl::StrCat("guest ", guest, " is already logged on to member ",
                                                        now->residency.at(guest), " (one member at a time)"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("member ", member, " is not in the cluster (no live hsid holds its lease)"));
  }
  Say(ctx, absl::StrCat(guest, " logged on to ", member));
  if (!ctx.automation) return absl::OkStatus();
  return MatchInterfaces(ctx, *g, member, nullptr);
}

absl::Status Logoff(Context& ctx, const std::string& guest) {
  absl::StatusOr<ssi::ClusterView> v = Read(ctx);
  if (!v.ok()) return v.status();
  absl::StatusOr<ssi::GuestRecord> g = FindGuest(*v, guest);
  if (!g.ok()) return g.status();
  if (absl::Status s = MatchInterfaces(ctx, *g, "", nullptr); !s.ok()) return s;
  return ctx.etcd->Delete(ctx.keys.Residency(guest));
}

std::vector<std::string> Ineligible(const ssi::ClusterView& v, const std::string& guest, const std::string& to) {
  std::vector<std::string> missing;
  auto g = v.guests.find(guest);
  if (g == v.guests.end()) return {absl::StrCat("guest ", guest, " is not in the directory")};
  auto m = v.members.find(to);
  if (m == v.members.end()) {
    missing.push_back(absl::StrCat("member ", to, " is not in the cluster (no live hsid holds its lease)"));
  }
  if (g->second.hsi.empty()) return missing;  // no HiperSockets: nothing else to match
  const ssi::HsiInterface* h = g->second.On(to);
  if (h == nullptr) {
    std::vector<std::string> has;
    for (const ssi::HsiInterface& i : g->second.hsi) has.push_back(absl::StrCat(i.ifname, " on ", i.member));
    missing.push_back(absl::StrCat("guest ", guest, " has no HiperSockets interface for member ", to,
                                   " (it has ", absl::StrJoin(has, ", "), ")"));
    return missing;
  }
  if (m == v.members.end()) return missing;
  const ssi::MemberChpid* ch = nullptr;
  for (const ssi::MemberChpid& c : m->second.chpids) {
    if (c.id == h->chpid) ch = &c;
  }
  const std::string chname = hsi::tools::ChpidText(h->chpid);
  if (ch == nullptr) {
    missing.push_back(absl::StrCat("member ", to, " defines no CHPID ", chname, " (for ", guest, "'s ", h->ifname, ")"));
  } else if (!ch->Allows(guest)) {
    missing.push_back(absl::StrCat("CHPID ", chname, " of member ", to, " does not allow LPAR ", guest,
                                   " (its lpars: ", absl::StrJoin(ch->lpars, ", "), ")"));
  }
  return missing;
}

absl::StatusOr<std::string> Recover(Context& ctx, const std::string& guest) {
  absl::StatusOr<ssi::ClusterView> v = Read(ctx);
  if (!v.ok()) return v.status();
  absl::StatusOr<ssi::GuestRecord> g = FindGuest(*v, guest);
  if (!g.ok()) return g.status();
  const auto r = v->residency.find(guest);
  const std::string resident = r == v->residency.end() ? "" : r->second;
  std::vector<std::string> did;
  if (absl::Status s = MatchInterfaces(ctx, *g, resident, &did); !s.ok()) return s;
  std::string what = absl::StrCat(guest, resident.empty() ? " is logged on nowhere" : " is on " + resident, ": ",
                                  did.empty() ? "no HiperSockets interface" : absl::StrJoin(did, ", "));
  if (auto rel = v->relocations.find(guest); rel != v->relocations.end()) {
    absl::StrAppend(&what, "; cleared the interrupted relocation ", rel->second.from, " -> ", rel->second.to,
                    " (step ", rel->second.step, ", pid ", rel->second.pid, ")");
    ssi::Outcome o{guest, rel->second.from, rel->second.to, "recovered",
                   absl::StrCat("interrupted after step '", rel->second.step, "'; ", guest, " left on ",
                                resident.empty() ? "no member" : resident),
                   0, 0};
    o.finished_ms = ssi::NowMs();
    o.duration_ms = o.finished_ms - rel->second.started_ms;
    if (absl::Status s = ctx.etcd->Put(ctx.keys.Outcome(guest), ssi::ToJson(o)); !s.ok()) return s;
    if (absl::Status s = ctx.etcd->Delete(ctx.keys.Relocation(guest)); !s.ok()) return s;
  }
  return what;
}

absl::StatusOr<ssi::Outcome> Relocate(Context& ctx, const std::string& guest, const std::string& to) {
  const absl::Time start = absl::Now();
  absl::StatusOr<ssi::ClusterView> v = Read(ctx);
  if (!v.ok()) return v.status();
  absl::StatusOr<ssi::GuestRecord> g = FindGuest(*v, guest);
  if (!g.ok()) return g.status();
  // 0. An interrupted relocation first.
  if (auto rel = v->relocations.find(guest); rel != v->relocations.end()) {
    const int64_t pid = rel->second.pid;
    if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) == 0) {
      return absl::FailedPreconditionError(absl::StrCat("a relocation of ", guest, " by pid ", pid, " (",
                                                        rel->second.from, " -> ", rel->second.to,
                                                        ") is under way"));
    }
    absl::StatusOr<std::string> rec = Recover(ctx, guest);
    if (!rec.ok()) return rec.status();
    Say(ctx, absl::StrCat("recovered: ", *rec));
    v = Read(ctx);
    if (!v.ok()) return v.status();
  }
  auto res = v->residency.find(guest);
  if (res == v->residency.end()) {
    return absl::FailedPreconditionError(absl::StrCat("guest ", guest, " is not logged on (hsi-relocate --logon)"));
  }
  const std::string from = res->second;
  ssi::Outcome o{guest, from, to, "", "", 0, 0};
  if (from == to) {
    o.result = "relocated";
    o.message = absl::StrCat(guest, " is already on ", to);
    return o;
  }
  // 1. Eligibility.
  if (std::vector<std::string> missing = Ineligible(*v, guest, to); !missing.empty()) {
    o.result = "refused";
    o.message = absl::StrJoin(missing, "; ");
    Finish(ctx, o, start);
    return absl::FailedPreconditionError(absl::StrCat("relocation of ", guest, " from ", from, " to ", to,
                                                      " refused: ", o.message));
  }
  // 2. One relocation at a time.
  ssi::Relocation rec{guest, from, to, "start", ::getpid(), ssi::NowMs()};
  absl::StatusOr<bool> created = ctx.etcd->Txn({Compare::Absent(ctx.keys.Relocation(guest))},
                                               {Op::Put(ctx.keys.Relocation(guest), ssi::ToJson(rec))});
  if (!created.ok()) return created.status();
  if (!*created) return absl::FailedPreconditionError(absl::StrCat("another relocation of ", guest, " has begun"));
  Say(ctx, absl::StrCat(guest, ": relocating from ", from, " to ", to, ctx.automation ? "" : " (automation off)"));
  const ssi::HsiInterface* src = g->On(from);
  const ssi::HsiInterface* dst = g->On(to);
  // 3. The source member's interface down.
  if (ctx.automation && src != nullptr) {
    if (absl::Status s = SetLink(g->netns, src->ifname, false); !s.ok()) {
      (void)ctx.etcd->Delete(ctx.keys.Relocation(guest));
      o.result = "failed";
      o.message = absl::StrCat("step down: ", s.message());
      Finish(ctx, o, start);
      return s;
    }
    rec.step = "down";
    (void)ctx.etcd->Put(ctx.keys.Relocation(guest), ssi::ToJson(rec));
    Say(ctx, absl::StrCat(guest, ": ", src->ifname, " down (", from, "'s HiperSockets; OSPF withdraws it)"));
  }
  MaybeStop(ctx, "down");
  // 4. Residency, atomically.
  rec.step = "moved";
  absl::StatusOr<bool> moved = ctx.etcd->Txn(
      {Compare::ValueIs(ctx.keys.Residency(guest), from), Compare::Present(ctx.keys.Member(to))},
      {Op::Put(ctx.keys.Residency(guest), to), Op::Put(ctx.keys.Relocation(guest), ssi::ToJson(rec))});
  if (!moved.ok()) {
    return absl::UnavailableError(absl::StrCat(moved.status().message(), "; ", guest,
                                               "'s HiperSockets interfaces may be down: run hsi-relocate --recover ",
                                               guest, " when etcd answers"));
  }
  if (!*moved) {
    // The residency changed under us, or the target left: back to the truth.
    absl::StatusOr<std::string> r = Recover(ctx, guest);
    o.result = "failed";
    o.message = absl::StrCat("residency of ", guest, " was no longer ", from, " or member ", to,
                             " left the cluster; ", r.ok() ? *r : std::string(r.status().message()));
    Finish(ctx, o, start);
    return absl::AbortedError(o.message);
  }
  Say(ctx, absl::StrCat(guest, ": logged on to ", to, " (etcd)"));
  MaybeStop(ctx, "moved");
  // 5. The target member's interface up.
  if (ctx.automation && dst != nullptr) {
    if (absl::Status s = SetLink(g->netns, dst->ifname, true); !s.ok()) {
      o.result = "failed";
      o.message = absl::StrCat("step up: ", s.message(), " (", guest, " is on ", to, "; run hsi-relocate --recover)");
      Finish(ctx, o, start);
      return s;
    }
    rec.step = "up";
    (void)ctx.etcd->Put(ctx.keys.Relocation(guest), ssi::ToJson(rec));
    Say(ctx, absl::StrCat(guest, ": ", dst->ifname, " up (", to, "'s HiperSockets; OSPF announces it)"));
  }
  MaybeStop(ctx, "up");
  // 6. Done.
  o.result = "relocated";
  o.message = absl::StrCat(guest, " moved from ", from, " to ", to,
                           ctx.automation ? "" : " without automation (the old interface stays up)");
  o = Finish(ctx, o, start);
  if (absl::Status s = ctx.etcd->Delete(ctx.keys.Relocation(guest)); !s.ok()) {
    return absl::UnavailableError(absl::StrCat(s.message(), "; ", guest, " is on ", to, " with ",
                                               dst != nullptr ? dst->ifname : "no HiperSockets interface",
                                               " up, but its relocation record is left: run hsi-relocate --recover ",
                                               guest, " when etcd answers"));
  }
  Say(ctx, absl::StrCat(guest, ": relocated in ", o.duration_ms, " ms"));
  return o;
}

absl::StatusOr<std::vector<ssi::Outcome>> Evacuate(Context& ctx, const std::string& group, const std::string& to) {
  absl::StatusOr<ssi::ClusterView> v = Read(ctx);
  if (!v.ok()) return v.status();
  std::vector<std::string> guests;
  for (const auto& [name, g] : v->guests) {
    auto r = v->residency.find(name);
    if (g.group == group && r != v->residency.end() && r->second != to) guests.push_back(name);
  }
  if (guests.empty()) {
    return absl::NotFoundError(absl::StrCat("no guest of group ", group, " is logged on to a member other than ", to));
  }
  std::vector<ssi::Outcome> out;
  for (const std::string& name : guests) {
    absl::StatusOr<ssi::Outcome> o = Relocate(ctx, name, to);
    if (o.ok()) {
      out.push_back(*o);
    } else {
      const bool refused = absl::StrContains(o.status().message(), " refused: ");
      out.push_back({name, v->residency.at(name), to, refused ? "refused" : "failed",
                     std::string(o.status().message()), 0, 0});
    }
  }
  return out;
}

}  // namespace hsi::relocate
