// hsictl's CTC and ISFC commands (ctc_commands.h).
#include "ctc_commands.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "hsi/ctc_host.h"
#include "hsi/isfc_convention.h"
#include "nlohmann/json.hpp"

namespace hsi::hsictl {
namespace {

using hsi::tools::Args;
using hsi::tools::kExitFailure;
using hsi::tools::kExitOk;
using hsi::tools::Table;
using json = nlohmann::ordered_json;

constexpr char kTool[] = "hsictl";

const char* StateName(CtcEndState s) {
  return s == CtcEndState::kReady ? "ready" : s == CtcEndState::kOpening ? "opening" : "closed";
}

json CountersJson(const CtcCounters& c) {
  return json{{"writes", c.writes},         {"bytes_written", c.bytes_written}, {"reads", c.reads},
              {"bytes_read", c.bytes_read}, {"collisions", c.collisions},       {"recovery_ns", c.recovery_ns},
              {"withdrawn", c.withdrawn},   {"broken", c.broken != 0}};
}

// "LPAR1:D000-D00F" -> name, first device, count (a contiguous range).
absl::StatusOr<std::tuple<std::string, DeviceNumber, uint32_t>> ParseEnd(const std::string& what,
                                                                         const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 1));
  if (parts.size() != 2 || parts[0].empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not LPAR:DEVICES (LPAR1:D000-D00F)"));
  }
  absl::StatusOr<std::vector<DeviceNumber>> devs = DeviceNumber::ParseList(parts[1]);
  if (!devs.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", devs.status().message()));
  for (size_t i = 1; i < devs->size(); ++i) {
    if ((*devs)[i].value() != (*devs)[0].value() + i) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": '", parts[1], "' is not one contiguous range"));
    }
  }
  return std::tuple{parts[0], (*devs)[0], static_cast<uint32_t>(devs->size())};
}

int List(CtcHost& host, const Args& args) {
  absl::StatusOr<std::vector<CtcListing>> v = host.List();
  if (!v.ok()) return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
  json j = json::array();
  Table t({"A", "DEV-A", "B", "DEV-B", "STATE-A", "STATE-B", "A->B WRITES", "A->B BYTES", "B->A WRITES",
           "B->A BYTES", "COLLISIONS A/B", "RECOVERY A/B"});
  for (const CtcListing& c : *v) {
    j.push_back({{"lpar_a", c.lpar_a}, {"device_a", c.device_a.ToString()}, {"lpar_b", c.lpar_b},
                 {"device_b", c.device_b.ToString()}, {"block_size", c.block_size},
                 {"recovery_us", absl::ToInt64Microseconds(c.recovery)}, {"state_a", StateName(c.state_a)},
                 {"state_b", StateName(c.state_b)}, {"counters_a", CountersJson(c.counters_a)},
                 {"counters_b", CountersJson(c.counters_b)}});
    t.Add({c.lpar_a, c.device_a.ToString(), c.lpar_b, c.device_b.ToString(), StateName(c.state_a),
           StateName(c.state_b), absl::StrCat(c.counters_a.writes), absl::StrCat(c.counters_a.bytes_written),
           absl::StrCat(c.counters_b.writes), absl::StrCat(c.counters_b.bytes_written),
           absl::StrCat(c.counters_a.collisions, "/", c.counters_b.collisions),
           absl::StrCat(absl::FormatDuration(absl::Nanoseconds(c.counters_a.recovery_ns)), "/",
                        absl::FormatDuration(absl::Nanoseconds(c.counters_b.recovery_ns)))});
  }
  if (args.Has("--json")) {
    std::printf("%s\n", json{{"ctcs", j}}.dump(2).c_str());
  } else {
    std::printf("%s", t.Render().c_str());
    if (t.empty()) std::printf("(no CTC connections defined)\n");
  }
  return kExitOk;
}

// The write plan: pure, no hsid.
int Plan(const Args& args, const std::vector<std::string>& pos) {
  absl::StatusOr<std::vector<DeviceNumber>> devs = DeviceNumber::ParseList(pos[3]);
  if (!devs.ok()) return hsi::tools::Usage(kTool, absl::StrCat("isfc-plan DEVICES: ", devs.status().message()));
  const IsfcMode mode = args.Has("--naive") ? IsfcMode::kNaive : IsfcMode::kConvention;
  absl::StatusOr<WritePlan> p = PlanWrites(pos[1], pos[2], *devs, mode);
  if (!p.ok()) return hsi::tools::Usage(kTool, p.status().message());
  auto order = [](const std::vector<DeviceNumber>& v) {
    std::string s;
    for (DeviceNumber d : v) absl::StrAppend(&s, s.empty() ? "" : " ", d.ToString());
    return s;
  };
  const std::string& self = pos[1];
  const std::string& peer = pos[2];
  if (args.Has("--json")) {
    json j = json::array();
    for (const DeviceUse& u : p->devices) {
      json writers = json::array();
      if (u.self_rank >= 0) writers.push_back(self);
      if (u.peer_rank >= 0) writers.push_back(peer);
      j.push_back({{"device", u.device.ToString()}, {"writers", writers},
                   {"self_rank", u.self_rank < 0 ? json(nullptr) : json(u.self_rank + 1)},
                   {"peer_rank", u.peer_rank < 0 ? json(nullptr) : json(u.peer_rank + 1)}, {"why", u.why}});
    }
    std::vector<std::string> so, po;
    for (DeviceNumber d : p->self_order) so.push_back(d.ToString());
    for (DeviceNumber d : p->peer_order) po.push_back(d.ToString());
    std::printf("%s\n", json{{"self", self}, {"peer", peer}, {"mode", mode == IsfcMode::kNaive ? "naive" : "convention"},
                             {"usable", p->usable}, {"self_order", so}, {"peer_order", po}, {"devices", j}}
                            .dump(2)
                            .c_str());
    return kExitOk;
  }
  std::printf("%s writes: %s\n%s writes: %s\n", self.c_str(), order(p->self_order).c_str(), peer.c_str(),
              order(p->peer_order).c_str());
  Table t({"DEVICE", "WRITTEN BY", absl::StrCat(self, " ORDER"), absl::StrCat(peer, " ORDER"), "WHY"});
  for (const DeviceUse& u : p->devices) {
    std::string by = u.self_rank >= 0 && u.peer_rank >= 0 ? absl::StrCat(self, ", ", peer)
                     : u.self_rank >= 0                   ? self
                                                          : peer;
    t.Add({u.device.ToString(), by, u.self_rank < 0 ? "-" : absl::StrCat("#", u.self_rank + 1),
           u.peer_rank < 0 ? "-" : absl::StrCat("#", u.peer_rank + 1), u.why});
  }
  std::printf("%s", t.Render().c_str());
  return kExitOk;
}

// The ISFC links the LPARs declared, each once, joined with the CTC
// counters: per device, who writes it and why, writes and bytes each way,
// collisions and recovery time on each end.
int Isfc(CtcHost& host, const Args& args) {
  absl::StatusOr<std::vector<IsfcListing>> links = host.ListIsfc();
  if (!links.ok()) return hsi::tools::Fail(kTool, links.status().message(), kExitFailure);
  absl::StatusOr<std::vector<CtcListing>> ctcs = host.List();
  if (!ctcs.ok()) return hsi::tools::Fail(kTool, ctcs.status().message(), kExitFailure);
  // One entry per link: the lesser-named side's declaration if there is one.
  std::map<std::pair<std::string, std::string>, std::vector<const IsfcListing*>> by_link;
  for (const IsfcListing& l : *links) by_link[std::minmax(l.lpar, l.peer)].push_back(&l);
  json jl = json::array();
  std::string text;
  for (const auto& [names, sides] : by_link) {
    const IsfcListing& l =
        **std::min_element(sides.begin(), sides.end(), [](auto* a, auto* b) { return a->lpar < b->lpar; });
    // Each device of l.lpar: its connection, the peer's number, both ends' counters.
    struct Row {
      DeviceNumber mine, theirs;
      CtcCounters me, peer;
    };
    std::vector<Row> rows;
    std::vector<DeviceNumber> keys;
    for (DeviceNumber d : l.devices) {
      Row r{d, DeviceNumber(), {}, {}};
      for (const CtcListing& c : *ctcs) {
        if (c.lpar_a == l.lpar && c.device_a == d) r = Row{d, c.device_b, c.counters_a, c.counters_b};
        if (c.lpar_b == l.lpar && c.device_b == d) r = Row{d, c.device_a, c.counters_b, c.counters_a};
      }
      rows.push_back(r);
      keys.push_back(l.lpar < l.peer ? r.mine : r.theirs);
    }
    absl::StatusOr<WritePlan> plan = PlanWrites(l.lpar, l.peer, keys, l.mode);
    if (!plan.ok()) return hsi::tools::Fail(kTool, plan.status().message(), kExitFailure);
    const bool both = sides.size() == 2;
    Table t({"DEVICE", absl::StrCat(l.peer, " DEV"), "WRITTEN BY", absl::StrCat(l.lpar, " #"), absl::StrCat(l.peer, " #"),
             absl::StrCat("->", l.peer, " WRITES/BYTES"), absl::StrCat("<-", l.peer, " WRITES/BYTES"), "COLLISIONS",
             "RECOVERY", "WHY"});
    json jd = json::array();
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      const DeviceUse& u = *std::find_if(plan->devices.begin(), plan->devices.end(),
                                         [&](const DeviceUse& x) { return x.device == keys[i]; });
      const std::string by = u.self_rank >= 0 && u.peer_rank >= 0 ? absl::StrCat(l.lpar, ", ", l.peer)
                             : u.self_rank >= 0                   ? l.lpar
                                                                  : l.peer;
      t.Add({r.mine.ToString(), r.theirs.ToString(), by, u.self_rank < 0 ? "-" : absl::StrCat(u.self_rank + 1),
             u.peer_rank < 0 ? "-" : absl::StrCat(u.peer_rank + 1), absl::StrCat(r.me.writes, "/", r.me.bytes_written),
             absl::StrCat(r.peer.writes, "/", r.peer.bytes_written), absl::StrCat(r.me.collisions, "/", r.peer.collisions),
             absl::StrCat(absl::FormatDuration(absl::Nanoseconds(r.me.recovery_ns)), "/",
                          absl::FormatDuration(absl::Nanoseconds(r.peer.recovery_ns))),
             u.why});
      jd.push_back({{"device", r.mine.ToString()}, {"peer_device", r.theirs.ToString()},
                    {"self_rank", u.self_rank < 0 ? json(nullptr) : json(u.self_rank + 1)},
                    {"peer_rank", u.peer_rank < 0 ? json(nullptr) : json(u.peer_rank + 1)}, {"why", u.why},
                    {"self", CountersJson(r.me)}, {"peer", CountersJson(r.peer)}});
    }
    const char* mode = l.mode == IsfcMode::kNaive ? "naive" : "convention";
    absl::StrAppend(&text, "ISFC link ", l.lpar, " <-> ", l.peer, " (", mode, ", ", rows.size(), " devices, ",
                    both ? "active on both sides" : absl::StrCat("declared by ", l.lpar, " only"), ")\n", t.Render(),
                    "\n");
    jl.push_back({{"lpar", l.lpar}, {"peer", l.peer}, {"mode", mode}, {"both_sides", both}, {"devices", jd}});
  }
  if (args.Has("--json")) {
    std::printf("%s\n", json{{"isfc_links", jl}}.dump(2).c_str());
  } else {
    std::printf("%s", text.empty() ? "(no ISFC links declared)\n" : text.c_str());
  }
  return kExitOk;
}

// isfc-activate / isfc-deactivate / isfc-add / isfc-remove LPAR PEER [DEVS]:
// the command goes through hsid to LPAR's process (CtcHost::SendIsfcCommand).
int IsfcCommandCli(const Args& args, const std::vector<std::string>& pos) {
  const std::string& cmd = pos[0];
  const bool deactivate = cmd == "isfc-deactivate";
  if (pos.size() != (deactivate ? 3u : 4u)) {
    return hsi::tools::Usage(kTool, absl::StrCat(cmd, " takes ", deactivate ? "LPAR PEER" : "LPAR PEER DEVICES"));
  }
  IsfcCommand c;
  c.op = cmd == "isfc-activate" ? IsfcCommandOp::kActivate
         : deactivate          ? IsfcCommandOp::kDeactivate
         : cmd == "isfc-add"   ? IsfcCommandOp::kAddDevices
                               : IsfcCommandOp::kRemoveDevices;
  c.peer = pos[2];
  c.mode = args.Has("--naive") ? IsfcMode::kNaive : IsfcMode::kConvention;
  if (pos[1].empty() || c.peer.empty() || pos[1] == c.peer) {
    return hsi::tools::Usage(kTool, absl::StrCat(cmd, ": LPAR and PEER must be two different names"));
  }
  if (!deactivate) {
    absl::StatusOr<std::vector<DeviceNumber>> devs = DeviceNumber::ParseList(pos[3]);
    if (!devs.ok()) return hsi::tools::Usage(kTool, absl::StrCat(cmd, " DEVICES: ", devs.status().message()));
    if (devs->size() > static_cast<size_t>(kMaxIsfcDevices)) {
      return hsi::tools::Usage(kTool, absl::StrCat(cmd, " DEVICES: ", devs->size(), " devices; a link has 1 to 16"));
    }
    c.devices = std::move(*devs);
  }
  if (std::optional<std::string> t = args.Get("--timeout")) {
    uint32_t sec = 0;
    if (!absl::SimpleAtoi(*t, &sec) || sec < 1 || sec > 600) {
      return hsi::tools::Usage(kTool, absl::StrCat("--timeout: '", *t, "' is not 1..600 seconds"));
    }
    c.timeout = absl::Seconds(sec);
  }
  CtcHostOptions o;
  o.socket_path = args.Get("--socket").value_or("");
  absl::StatusOr<std::unique_ptr<CtcHost>> host = CtcHost::Connect(o);
  if (!host.ok()) return hsi::tools::Fail(kTool, host.status().message(), kExitFailure);
  const absl::Status s = (*host)->SendIsfcCommand(pos[1], c);
  if (!s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  if (args.Has("--json")) {
    std::printf("%s\n", json{{"ok", true}}.dump(2).c_str());
    return kExitOk;
  }
  const char* done = c.op == IsfcCommandOp::kActivate     ? "activated"
                     : c.op == IsfcCommandOp::kDeactivate ? "deactivated"
                     : c.op == IsfcCommandOp::kAddDevices ? "devices added"
                                                          : "devices removed";
  std::printf("ISFC link %s <-> %s: %s on %s's side", pos[1].c_str(), c.peer.c_str(), done, pos[1].c_str());
  for (DeviceNumber d : c.devices) std::printf(" %s", d.ToString().c_str());
  std::printf("\n");
  return kExitOk;
}

}  // namespace

bool IsCtcCommand(const std::string& cmd) {
  return cmd == "ctcs" || cmd == "define-ctc" || cmd == "undefine-ctc" || cmd == "isfc-plan" || cmd == "isfc" ||
         cmd == "isfc-activate" || cmd == "isfc-deactivate" || cmd == "isfc-add" || cmd == "isfc-remove";
}

int RunCtcCommand(const Args& args, const std::vector<std::string>& pos) {
  const std::string& cmd = pos[0];
  if (cmd.rfind("isfc-", 0) == 0 && cmd != "isfc-plan") return IsfcCommandCli(args, pos);
  const size_t want = cmd == "ctcs" || cmd == "isfc" ? 1 : cmd == "define-ctc" ? 3 : cmd == "undefine-ctc" ? 2 : 4;
  if (pos.size() != want) {
    return hsi::tools::Usage(kTool, absl::StrCat(cmd, " takes ", want - 1, " argument(s): ",
                                                 cmd == "ctcs" || cmd == "isfc" ? "none"
                                                 : cmd == "define-ctc"   ? "LPAR:DEVICES LPAR:DEVICES"
                                                 : cmd == "undefine-ctc" ? "LPAR:DEVICE"
                                                                         : "SELF PEER DEVICES"));
  }
  if (cmd == "isfc-plan") return Plan(args, pos);
  // Arguments first: a usage error is reported without asking hsid.
  CtcDefinition def;
  if (cmd == "define-ctc") {
    auto a = ParseEnd("define-ctc first end", pos[1]);
    auto b = ParseEnd("define-ctc second end", pos[2]);
    if (!a.ok()) return hsi::tools::Usage(kTool, a.status().message());
    if (!b.ok()) return hsi::tools::Usage(kTool, b.status().message());
    if (std::get<2>(*a) != std::get<2>(*b)) {
      return hsi::tools::Usage(kTool, "define-ctc: both ends need the same number of devices");
    }
    std::tie(def.lpar_a, def.device_a, def.count) = *a;
    std::tie(def.lpar_b, def.device_b, std::ignore) = *b;
    if (std::optional<std::string> r = args.Get("--recovery-us")) {
      uint32_t us = 0;
      if (!absl::SimpleAtoi(*r, &us) || us > 1000000) {
        return hsi::tools::Usage(kTool, absl::StrCat("--recovery-us: '", *r, "' is not 0..1000000"));
      }
      def.recovery = absl::Microseconds(us);
    }
    if (std::optional<std::string> s = args.Get("--block-size")) {
      absl::StatusOr<uint64_t> v = hsi::tools::ParseSize("--block-size", *s, 64, kMaxCtcBlockSize);
      if (!v.ok()) return hsi::tools::Usage(kTool, v.status().message());
      def.block_size = static_cast<uint32_t>(*v);
    }
  }
  std::optional<std::tuple<std::string, DeviceNumber, uint32_t>> gone;
  if (cmd == "undefine-ctc") {
    auto e = ParseEnd("undefine-ctc", pos[1]);
    if (!e.ok()) return hsi::tools::Usage(kTool, e.status().message());
    gone = *e;
  }
  CtcHostOptions o;
  o.socket_path = args.Get("--socket").value_or("");
  absl::StatusOr<std::unique_ptr<CtcHost>> host = CtcHost::Connect(o);
  if (!host.ok()) return hsi::tools::Fail(kTool, host.status().message(), kExitFailure);
  if (cmd == "ctcs") return List(**host, args);
  if (cmd == "isfc") return Isfc(**host, args);
  absl::Status s = cmd == "define-ctc" ? (*host)->Define(def) : (*host)->Undefine(std::get<0>(*gone), std::get<1>(*gone));
  if (!s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  if (args.Has("--json")) {
    std::printf("%s\n", json{{"ok", true}}.dump(2).c_str());
  } else if (cmd == "define-ctc") {
    std::printf("CTC defined: %s:%s <-> %s:%s, %u device(s), recovery %s\n", def.lpar_a.c_str(),
                def.device_a.ToString().c_str(), def.lpar_b.c_str(), def.device_b.ToString().c_str(), def.count,
                absl::FormatDuration(def.recovery).c_str());
  } else {
    std::printf("CTC %s:%s undefined\n", std::get<0>(*gone).c_str(), std::get<1>(*gone).ToString().c_str());
  }
  return kExitOk;
}

}  // namespace hsi::hsictl
