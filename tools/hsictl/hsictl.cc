// hsictl: the administrator's view of and levers on hsid (lsqeth, znetconf
// and `vmcp q` for hsi). See packaging/man/hsictl.8; --help says the same.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli.h"
#include "cluster.h"
#include "ctc_commands.h"
#include "hsi/admin.h"
#include "nlohmann/json.hpp"

namespace {

using hsi::tools::Args;
using hsi::tools::ChpidText;
using hsi::tools::kExitFailure;
using hsi::tools::kExitOk;
using hsi::tools::kExitUsage;
using hsi::tools::Table;
using json = nlohmann::ordered_json;

constexpr char kTool[] = "hsictl";

constexpr char kHelp[] = R"(Usage: hsictl [--socket PATH] [--json] COMMAND [ARGS]

The administrator's view of hsid and its levers. Every command needs an
admin uid (hsid's [hsid] admin_uids/admin_gids, or root).

Commands:
  chpids                      list the CHPIDs (MFS, MTU, subnet, queue, overflow, NICs, links)
  nics                        list the NICs (CHPID, address, state, links, LPAR, pid, uid)
  links                       list the links (both ends, state, frames each way)
  stats                       counters per link direction and per NIC: frames, bytes,
                              full events, drops, wake-ups
  streams                     hsi-run's accelerated TCP connections: 4-tuple, pids,
                              uids, bytes each way, state (hsi-run(1))
  fallbacks                   hsi-run's fallbacks to TCP counted by reason
  cfs                         the coupling facilities' structures as each CF (hsi-cf)
                              declares them: type, entries in use/size, duplexing,
                              connectors, retained locks and the failed connectors
                              holding them, requests, queued (contention), granted
                              after waiting, refused (updated at most once a second)
  define-chpid ID --mfs 16K|24K|40K|64K --subnet CIDR [--queue BYTES]
               [--overflow block|drop] [--lpars NAME,NAME...]
                              define a CHPID at run time (not written to the config)
  undefine-chpid ID           remove a CHPID that has no NIC attached
  down NIC                    take a NIC offline: its links go down, its owner's
                              calls fail until it is set up again
  up NIC                      bring a NIC back online
  cluster [--etcd URLS] [--cluster NAME]
                              the SSI cluster from etcd (not from hsid): members and
                              their leases, guests and the member each is logged on
                              to, relocations in progress, each guest's last outcome
  ctcs                        list the CTC connections: both ends, state, writes and
                              bytes each way, collisions and recovery time per end
  define-ctc LPAR:DEVS LPAR:DEVS [--recovery-us N] [--block-size SIZE]
                              define CTC connections at run time, e.g.
                              LPAR1:D000-D00F LPAR2:D000-D00F (not written to the config)
  undefine-ctc LPAR:DEV       remove a CTC connection neither end has open
  isfc                        list the ISFC links the LPARs activated: per device who
                              writes it and why, writes and bytes each way, collisions
                              and recovery time on each end
  isfc-plan SELF PEER DEVS [--naive]
                              z/VM's write convention for an ISFC link of DEVS between
                              systems SELF and PEER: who writes which device, and why
                              (needs no hsid)
  isfc-activate LPAR PEER DEVS [--naive] [--timeout S]
                              z/VM's ACTIVATE ISLINK: LPAR's process activates its side
                              of the ISFC link to PEER over its devices DEVS; waits until
                              PEER's side is activated too (up to --timeout, default 30)
  isfc-deactivate LPAR PEER   DEACTIVATE ISLINK: LPAR's side goes, its devices close
  isfc-add LPAR PEER DEVS     add devices to LPAR's side of a running link
  isfc-remove LPAR PEER DEVS  remove devices from it (their chunks go on the others)

ID is a hex CHPID (F0). NIC is the NIC's address (10.240.0.2), optionally
prefixed with its CHPID (F0:10.240.0.2, checked); addresses are unique on a
host because CHPID subnets never overlap.

Options:
  --socket PATH   hsid's control socket (default: $HSI_SOCKET, else
                  /run/hsi/hsid.sock for root, $XDG_RUNTIME_DIR/hsi/hsid.sock otherwise)
  --json          print one JSON document instead of a table
  --mfs SIZE      define-chpid: maximum frame size, 16K, 24K, 40K or 64K (MTU = MFS - 8K)
  --subnet CIDR   define-chpid: IPv4 subnet, prefix 8..30, not overlapping another CHPID's
  --queue BYTES   define-chpid: ring capacity per link direction, a power of two
                  (default 1M; suffixes K, M, G)
  --overflow P    define-chpid: block (default, lossless) or drop (counted on the sender)
  --lpars LIST    define-chpid: LPAR names that may attach, comma separated (default *: any)
  --etcd URLS     cluster: etcd endpoints, comma separated (default: $HSI_ETCD, else
                  http://127.0.0.1:2379)
  --cluster NAME  cluster: the cluster's name, etcd prefix /hsi/NAME/ (default:
                  $HSI_CLUSTER, else ssi)
  --recovery-us N define-ctc: write-collision recovery delay (default 200)
  --block-size S  define-ctc: largest single write (default 64K)
  --naive         isfc-plan, isfc-activate: the mode without the convention (both write
                  every device)
  --timeout S     isfc-activate, isfc-add: seconds LPAR's process may take (1-600,
                  default 30)
  -h, --help      this text

Exit status: 0 success, 1 failure (hsid unreachable, refused, not found),
2 usage error.
)";

const std::vector<hsi::tools::Option> kOptions = {
    {{"--socket"}, "PATH"}, {{"--json"}}, {{"--help", "-h"}}, {{"--mfs"}, "SIZE"}, {{"--subnet"}, "CIDR"},
    {{"--queue"}, "BYTES"}, {{"--overflow"}, "block|drop"}, {{"--lpars"}, "LIST"},
    {{"--etcd"}, "URLS"}, {{"--cluster"}, "NAME"},
    {{"--recovery-us"}, "N"}, {{"--block-size"}, "SIZE"}, {{"--naive"}}, {{"--timeout"}, "S"},
};

std::string SizeText(uint64_t v) {
  if (v >= (uint64_t{1} << 30) && v % (uint64_t{1} << 30) == 0) return absl::StrCat(v >> 30, "G");
  if (v >= (uint64_t{1} << 20) && v % (uint64_t{1} << 20) == 0) return absl::StrCat(v >> 20, "M");
  if (v >= 1024 && v % 1024 == 0) return absl::StrCat(v >> 10, "K");
  return absl::StrCat(v);
}

void Print(const Args& args, const json& j, const Table& t, const std::string& empty_note) {
  if (args.Has("--json")) {
    std::printf("%s\n", j.dump(2).c_str());
  } else if (t.empty()) {
    std::printf("%s", Table(t).Render().c_str());
    std::printf("(%s)\n", empty_note.c_str());
  } else {
    std::printf("%s", t.Render().c_str());
  }
}

int Chpids(hsi::AdminClient& admin, const Args& args) {
  absl::StatusOr<std::vector<hsi::ChpidInfo>> v = admin.ListChpids();
  if (!v.ok()) return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
  json j = json::array();
  Table t({"CHPID", "MFS", "MTU", "SUBNET", "QUEUE", "OVERFLOW", "NICS", "LINKS"});
  for (const hsi::ChpidInfo& c : *v) {
    j.push_back({{"chpid", ChpidText(c.spec.id)}, {"mfs", c.spec.mfs}, {"mtu", c.mtu},
                 {"subnet", c.spec.subnet.ToString()}, {"queue_size", c.spec.queue_size},
                 {"overflow", c.spec.drop ? "drop" : "block"}, {"nics", c.nics}, {"links", c.links}});
    t.Add({ChpidText(c.spec.id), SizeText(c.spec.mfs), SizeText(c.mtu), c.spec.subnet.ToString(),
           SizeText(c.spec.queue_size), c.spec.drop ? "drop" : "block", absl::StrCat(c.nics),
           absl::StrCat(c.links)});
  }
  Print(args, json{{"chpids", j}}, t, "no CHPIDs defined");
  return kExitOk;
}

int Nics(hsi::AdminClient& admin, const Args& args) {
  absl::StatusOr<std::vector<hsi::NicListing>> v = admin.ListNics();
  if (!v.ok()) return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
  json j = json::array();
  Table t({"CHPID", "NIC", "STATE", "LINKS", "LPAR", "PID", "UID", "INTERFACE"});
  for (const hsi::NicListing& n : *v) {
    json iface = nullptr;
    std::string iface_text = "-";
    if (n.interface) {
      iface = json{{"name", n.interface->name}, {"netns", n.interface->netns}, {"layer", n.interface->layer}};
      // "hsi0@lpar1 L3": the device, its namespace (none: the owner's own), the layer.
      iface_text = absl::StrCat(n.interface->name, n.interface->netns.empty() ? "" : "@", n.interface->netns, " L",
                                n.interface->layer);
    }
    j.push_back({{"chpid", ChpidText(n.chpid)}, {"address", n.address.ToString()}, {"up", n.up},
                 {"links", n.links}, {"lpar", n.lpar}, {"pid", n.pid}, {"uid", n.uid}, {"interface", iface}});
    t.Add({ChpidText(n.chpid), n.address.ToString(), n.up ? "up" : "down", absl::StrCat(n.links), n.lpar,
           absl::StrCat(n.pid), absl::StrCat(n.uid), iface_text});
  }
  Print(args, json{{"nics", j}}, t, "no NICs attached");
  return kExitOk;
}

int Links(hsi::AdminClient& admin, const Args& args) {
  absl::StatusOr<std::vector<hsi::LinkStats>> v = admin.ListLinks();
  if (!v.ok()) return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
  json j = json::array();
  Table t({"LINK", "CHPID", "A", "B", "STATE", "A->B FRAMES", "B->A FRAMES"});
  for (const hsi::LinkStats& l : *v) {
    auto dir = [](const hsi::DirectionStats& d) {
      return json{{"frames", d.frames}, {"bytes", d.bytes}, {"full_events", d.full_events}, {"drops", d.drops},
                  {"received", d.rx_frames}};
    };
    const char* state = hsi::LinkPhaseName(l.state);
    j.push_back({{"id", l.id}, {"chpid", ChpidText(l.chpid)}, {"a", l.a.ToString()}, {"b", l.b.ToString()},
                 {"state", state}, {"a_to_b", dir(l.a_to_b)}, {"b_to_a", dir(l.b_to_a)}});
    t.Add({absl::StrCat(l.id), ChpidText(l.chpid), l.a.ToString(), l.b.ToString(), state,
           absl::StrCat(l.a_to_b.frames), absl::StrCat(l.b_to_a.frames)});
  }
  Print(args, json{{"links", j}}, t, "no links");
  return kExitOk;
}

struct NicTotals {
  uint32_t chpid = 0;
  uint64_t tx_frames = 0, tx_bytes = 0, rx_frames = 0, rx_bytes = 0;
  uint64_t full_events = 0, drops = 0, wakeups = 0, rx_wakeups = 0;
  uint32_t links = 0;
};

int Stats(hsi::AdminClient& admin, const Args& args) {
  absl::StatusOr<std::vector<hsi::LinkStats>> v = admin.ListLinks();
  if (!v.ok()) return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
  absl::StatusOr<std::vector<hsi::NicListing>> nics = admin.ListNics();
  if (!nics.ok()) return hsi::tools::Fail(kTool, nics.status().message(), kExitFailure);
  std::map<hsi::Address, NicTotals> per_nic;
  for (const hsi::NicListing& n : *nics) per_nic[n.address].chpid = n.chpid;
  json jl = json::array();
  Table lt({"LINK", "CHPID", "FROM", "TO", "FRAMES", "BYTES", "FULL", "DROPS", "WAKEUPS", "RX-FRAMES", "RX-WAKEUPS"});
  for (const hsi::LinkStats& l : *v) {
    auto dir = [](const hsi::DirectionStats& d) {
      return json{{"frames", d.frames}, {"bytes", d.bytes}, {"full_events", d.full_events}, {"drops", d.drops},
                  {"wakeups", d.wakeups}, {"rx_frames", d.rx_frames}, {"rx_bytes", d.rx_bytes},
                  {"rx_wakeups", d.rx_wakeups}};
    };
    jl.push_back({{"id", l.id}, {"chpid", ChpidText(l.chpid)}, {"a", l.a.ToString()}, {"b", l.b.ToString()},
                  {"state", hsi::LinkPhaseName(l.state)}, {"a_to_b", dir(l.a_to_b)}, {"b_to_a", dir(l.b_to_a)}});
    for (auto [from, to, d] : {std::tuple{l.a, l.b, &l.a_to_b}, std::tuple{l.b, l.a, &l.b_to_a}}) {
      lt.Add({absl::StrCat(l.id), ChpidText(l.chpid), from.ToString(), to.ToString(), absl::StrCat(d->frames),
              absl::StrCat(d->bytes), absl::StrCat(d->full_events), absl::StrCat(d->drops), absl::StrCat(d->wakeups),
              absl::StrCat(d->rx_frames), absl::StrCat(d->rx_wakeups)});
      NicTotals& s = per_nic[from];
      s.chpid = l.chpid;
      s.tx_frames += d->frames;
      s.tx_bytes += d->bytes;
      s.full_events += d->full_events;
      s.drops += d->drops;
      s.wakeups += d->wakeups;
      ++s.links;
      NicTotals& r = per_nic[to];
      r.chpid = l.chpid;
      r.rx_frames += d->rx_frames;
      r.rx_bytes += d->rx_bytes;
      r.rx_wakeups += d->rx_wakeups;
    }
  }
  json jn = json::array();
  Table nt({"NIC", "CHPID", "TX-FRAMES", "TX-BYTES", "RX-FRAMES", "RX-BYTES", "FULL", "DROPS", "WAKEUPS",
            "RX-WAKEUPS"});
  for (const auto& [addr, s] : per_nic) {
    jn.push_back({{"address", addr.ToString()}, {"chpid", ChpidText(s.chpid)}, {"tx_frames", s.tx_frames},
                  {"tx_bytes", s.tx_bytes}, {"rx_frames", s.rx_frames}, {"rx_bytes", s.rx_bytes},
                  {"full_events", s.full_events}, {"drops", s.drops}, {"wakeups", s.wakeups},
                  {"rx_wakeups", s.rx_wakeups}});
    nt.Add({addr.ToString(), ChpidText(s.chpid), absl::StrCat(s.tx_frames), absl::StrCat(s.tx_bytes),
            absl::StrCat(s.rx_frames), absl::StrCat(s.rx_bytes), absl::StrCat(s.full_events), absl::StrCat(s.drops),
            absl::StrCat(s.wakeups), absl::StrCat(s.rx_wakeups)});
  }
  if (args.Has("--json")) {
    std::printf("%s\n", json{{"links", jl}, {"nics", jn}}.dump(2).c_str());
    return kExitOk;
  }
  std::printf("Per link direction (sender's counters; RX- columns are the receiver's):\n%s",
              lt.Render().c_str());
  if (lt.empty()) std::printf("(no links)\n");
  std::printf("\nPer NIC (sum over its current links):\n%s", nt.Render().c_str());
  if (nt.empty()) std::printf("(no NICs)\n");
  return kExitOk;
}

// "10.240.0.2" or "F0:10.240.0.2".
absl::StatusOr<std::pair<std::optional<uint32_t>, hsi::Address>> ParseNic(const std::string& text) {
  std::optional<uint32_t> chpid;
  std::string addr = text;
  if (size_t colon = text.find(':'); colon != std::string::npos) {
    absl::StatusOr<uint32_t> c = hsi::tools::ParseChpid("NIC", text.substr(0, colon));
    if (!c.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("NIC '", text, "': '", text.substr(0, colon),
                                                     "' is not a hex CHPID (NIC is ADDRESS or CHPID:ADDRESS)"));
    }
    chpid = *c;
    addr = text.substr(colon + 1);
  }
  absl::StatusOr<hsi::Address> a = hsi::Address::Parse(addr);
  if (!a.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("NIC '", text, "' is not ADDRESS or CHPID:ADDRESS "
                                                   "(like 10.240.0.2 or F0:10.240.0.2)"));
  }
  return std::make_pair(chpid, *a);
}

int SetNic(hsi::AdminClient& admin, const Args& args,
           const std::pair<std::optional<uint32_t>, hsi::Address>* nic, bool up) {
  if (nic->first) {
    absl::StatusOr<std::vector<hsi::NicListing>> v = admin.ListNics();
    if (!v.ok()) return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
    for (const hsi::NicListing& n : *v) {
      if (n.address == nic->second && n.chpid != *nic->first) {
        return hsi::tools::Fail(kTool, absl::StrCat("NIC ", nic->second.ToString(), " is on CHPID ",
                                                    ChpidText(n.chpid), ", not ", ChpidText(*nic->first)),
                                kExitFailure);
      }
    }
  }
  if (absl::Status s = admin.SetNicState(nic->second, up); !s.ok()) {
    return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  }
  if (args.Has("--json")) {
    std::printf("%s\n", json{{"ok", true}, {"nic", nic->second.ToString()}, {"up", up}}.dump(2).c_str());
  } else {
    std::printf("NIC %s is %s\n", nic->second.ToString().c_str(), up ? "up" : "down");
  }
  return kExitOk;
}

// The define-chpid arguments, checked before hsid is asked: usage errors
// (exit 2) are the command line's, whatever hsid would say.
absl::StatusOr<hsi::ChpidSpec> ParseSpec(const Args& args, const std::string& id_text) {
  hsi::ChpidSpec spec;
  absl::StatusOr<uint32_t> id = hsi::tools::ParseChpid("define-chpid ID", id_text);
  if (!id.ok()) return id.status();
  spec.id = *id;
  std::optional<std::string> mfs = args.Get("--mfs"), subnet = args.Get("--subnet");
  if (!mfs) return absl::InvalidArgumentError("define-chpid needs --mfs 16K|24K|40K|64K");
  if (!subnet) return absl::InvalidArgumentError("define-chpid needs --subnet CIDR (like 10.241.0.0/24)");
  absl::StatusOr<uint64_t> m = hsi::tools::ParseSize("--mfs", *mfs, 1, uint64_t{1} << 20);
  if (!m.ok() || (*m != 16384 && *m != 24576 && *m != 40960 && *m != 65536)) {
    return absl::InvalidArgumentError(absl::StrCat("--mfs: '", *mfs, "' is not one of 16K, 24K, 40K, 64K"));
  }
  spec.mfs = static_cast<uint32_t>(*m);
  absl::StatusOr<hsi::Subnet> sn = hsi::Subnet::Parse(*subnet);
  if (!sn.ok()) return absl::InvalidArgumentError(absl::StrCat("--subnet: ", sn.status().message()));
  spec.subnet = *sn;
  if (std::optional<std::string> q = args.Get("--queue")) {
    absl::StatusOr<uint64_t> v = hsi::tools::ParseSize("--queue", *q, 4096, uint64_t{1} << 30);
    if (!v.ok()) return v.status();
    if ((*v & (*v - 1)) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--queue: '", *q, "' is not a power of two (like 256K, 1M)"));
    }
    spec.queue_size = *v;
  }
  if (std::optional<std::string> o = args.Get("--overflow")) {
    if (*o != "block" && *o != "drop") {
      return absl::InvalidArgumentError(absl::StrCat("--overflow: '", *o, "' is not one of block, drop"));
    }
    spec.drop = *o == "drop";
  }
  if (std::optional<std::string> l = args.Get("--lpars")) {
    spec.lpars = absl::StrSplit(*l, ',', absl::SkipEmpty());
    if (spec.lpars.empty() || spec.lpars.size() > 8) {
      return absl::InvalidArgumentError("--lpars: give 1 to 8 LPAR names separated by commas (or *)");
    }
  }
  return spec;
}

int Define(hsi::AdminClient& admin, const Args& args, const hsi::ChpidSpec& spec) {
  if (absl::Status s = admin.DefineChpid(spec); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  if (args.Has("--json")) {
    std::printf("%s\n", json{{"ok", true}, {"chpid", ChpidText(spec.id)}}.dump(2).c_str());
  } else {
    std::printf("CHPID %s defined: MFS %s (MTU %s), subnet %s, queue %s, overflow %s, LPARs %s\n",
                ChpidText(spec.id).c_str(), SizeText(spec.mfs).c_str(), SizeText(spec.mfs - 8192).c_str(),
                spec.subnet.ToString().c_str(), SizeText(spec.queue_size).c_str(), spec.drop ? "drop" : "block",
                absl::StrJoin(spec.lpars, ",").c_str());
  }
  return kExitOk;
}

int Undefine(hsi::AdminClient& admin, const Args& args, uint32_t id_value) {
  const std::optional<uint32_t> id = id_value;
  if (absl::Status s = admin.UndefineChpid(*id); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
  if (args.Has("--json")) {
    std::printf("%s\n", json{{"ok", true}, {"chpid", ChpidText(*id)}}.dump(2).c_str());
  } else {
    std::printf("CHPID %s undefined\n", ChpidText(*id).c_str());
  }
  return kExitOk;
}

}  // namespace

int Streams(hsi::AdminClient& admin, const Args& args) {
  absl::StatusOr<std::vector<hsi::StreamListing>> v = admin.ListStreams();
  if (!v.ok()) return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
  json j = json::array();
  Table t({"ID", "CONNECTOR", "ACCEPTOR", "STATE", "PIDS", "UIDS", "C->A BYTES", "A->C BYTES", "AGE"});
  for (const hsi::StreamListing& s : *v) {
    j.push_back({{"id", s.id}, {"connector", s.connector}, {"acceptor", s.acceptor}, {"state", s.state},
                 {"connector_pid", s.connector_pid}, {"acceptor_pid", s.acceptor_pid},
                 {"connector_uid", s.connector_uid}, {"acceptor_uid", s.acceptor_uid},
                 {"bytes_c_to_a", s.bytes_c_to_a}, {"bytes_a_to_c", s.bytes_a_to_c}, {"age_ms", s.age_ms}});
    t.Add({absl::StrCat(s.id), s.connector, s.acceptor, s.state, absl::StrCat(s.connector_pid, "/", s.acceptor_pid),
           absl::StrCat(s.connector_uid, "/", s.acceptor_uid), absl::StrCat(s.bytes_c_to_a),
           absl::StrCat(s.bytes_a_to_c), absl::StrCat(s.age_ms / 1000, "s")});
  }
  Print(args, json{{"streams", j}}, t, "no hsi-run connections");
  return kExitOk;
}

int Cfs(hsi::AdminClient& admin, const Args& args) {
  absl::StatusOr<std::vector<hsi::CfStructureView>> v = admin.ListCfs();
  if (!v.ok()) return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
  json j = json::array();
  Table t({"CF", "STRUCTURE", "TYPE", "IN USE/SIZE", "DUPLEX", "CONNECTORS", "RETAINED", "REQUESTS", "QUEUED",
           "GRANTED AFTER WAIT", "REFUSED"});
  for (const hsi::CfStructureView& s : *v) {
    json conns = json::array();
    std::vector<std::string> names;
    for (const auto& [name, lpar] : s.connectors) {
      conns.push_back({{"name", name}, {"lpar", lpar}});
      names.push_back(absl::StrCat(name, "@", lpar));
    }
    if (s.connector_count > s.connectors.size()) names.push_back(absl::StrCat("+", s.connector_count - s.connectors.size()));
    std::string failed = absl::StrJoin(s.failed, ",");
    if (s.failed_count > s.failed.size()) absl::StrAppend(&failed, ",+", s.failed_count - s.failed.size());
    const std::string duplex = s.duplex == "simplex" ? s.duplex
                                                     : absl::StrCat(s.duplex, s.partner_up ? " (partner up)" : " (partner down)");
    j.push_back({{"cf", s.lpar}, {"structure", s.name}, {"type", s.type}, {"size", s.size}, {"in_use", s.in_use},
                 {"duplex", s.duplex}, {"partner_up", s.partner_up}, {"connector_count", s.connector_count},
                 {"connectors", conns}, {"retained_locks", s.retained}, {"failed_connector_count", s.failed_count},
                 {"failed_connectors", s.failed}, {"requests", s.requests}, {"queued", s.queued},
                 {"granted_after_wait", s.granted_after_wait}, {"refused", s.refused}});
    t.Add({s.lpar, s.name, s.type, absl::StrCat(s.in_use, "/", s.size), duplex,
           names.empty() ? "-" : absl::StrJoin(names, ","),
           s.retained == 0 ? "0" : absl::StrCat(s.retained, " (", failed, ")"), absl::StrCat(s.requests),
           absl::StrCat(s.queued), absl::StrCat(s.granted_after_wait), absl::StrCat(s.refused)});
  }
  Print(args, json{{"cf_structures", j}}, t, "no coupling facility declared a structure");
  return kExitOk;
}

int Fallbacks(hsi::AdminClient& admin, const Args& args) {
  absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>> v = admin.ListFallbacks();
  if (!v.ok()) return hsi::tools::Fail(kTool, v.status().message(), kExitFailure);
  json j = json::object();
  Table t({"REASON", "COUNT"});
  for (const auto& [reason, n] : *v) {
    j[reason] = n;
    t.Add({reason, absl::StrCat(n)});
  }
  Print(args, json{{"fallbacks", j}}, t, "");
  return kExitOk;
}

int main(int argc, char** argv) {
  int exit_code = 0;
  std::optional<Args> args = hsi::tools::StartTool(argc, argv, kTool, kOptions, kHelp,
                                                   /*allow_positional=*/true, &exit_code);
  if (!args) return exit_code;
  const std::vector<std::string>& pos = args->positional();
  if (pos.empty()) return hsi::tools::Usage(kTool, "no command given");
  const std::string& cmd = pos[0];
  if (hsi::hsictl::IsCtcCommand(cmd)) return hsi::hsictl::RunCtcCommand(*args, pos);
  struct Cmd {
    size_t args;
    bool define_options;
  };
  static const std::map<std::string, Cmd> kCommands = {
      {"chpids", {0, false}}, {"nics", {0, false}}, {"links", {0, false}},         {"stats", {0, false}},
      {"streams", {0, false}}, {"fallbacks", {0, false}}, {"cfs", {0, false}},
      {"define-chpid", {1, true}}, {"undefine-chpid", {1, false}}, {"down", {1, false}}, {"up", {1, false}},
      {"cluster", {0, false}},
  };
  auto it = kCommands.find(cmd);
  if (it == kCommands.end()) {
    return hsi::tools::Usage(kTool, absl::StrCat("unknown command '", cmd,
                                                 "' (commands: chpids, nics, links, stats, streams, fallbacks, cfs, "
                                                 "define-chpid, undefine-chpid, down, up, cluster, ctcs, define-ctc, "
                                                 "undefine-ctc, isfc, isfc-plan, isfc-activate, isfc-deactivate, "
                                                 "isfc-add, isfc-remove)"));
  }
  if (pos.size() - 1 != it->second.args) {
    return hsi::tools::Usage(kTool, it->second.args == 0
                                        ? absl::StrCat(cmd, " takes no argument, got '", pos[1], "'")
                                        : absl::StrCat(cmd, " takes exactly one argument",
                                                       cmd == "define-chpid" || cmd == "undefine-chpid"
                                                           ? " (a hex CHPID ID)"
                                                           : " (a NIC: ADDRESS or CHPID:ADDRESS)"));
  }
  if (!it->second.define_options) {
    for (const std::string& o : args->given()) {
      if (o == "--mfs" || o == "--subnet" || o == "--queue" || o == "--overflow" || o == "--lpars") {
        return hsi::tools::Usage(kTool, absl::StrCat("option ", o, " applies to define-chpid only"));
      }
    }
  }
  for (const std::string& o : args->given()) {
    if ((o == "--etcd" || o == "--cluster") && cmd != "cluster") {
      return hsi::tools::Usage(kTool, absl::StrCat("option ", o, " applies to cluster only"));
    }
  }
  if (cmd == "cluster") return hsi::tools::ShowCluster(*args);
  // Arguments first: a usage error is reported without asking hsid.
  std::optional<hsi::ChpidSpec> spec;
  std::optional<uint32_t> undefine_id;
  std::optional<std::pair<std::optional<uint32_t>, hsi::Address>> nic;
  if (cmd == "define-chpid") {
    absl::StatusOr<hsi::ChpidSpec> sp = ParseSpec(*args, pos[1]);
    if (!sp.ok()) return hsi::tools::Usage(kTool, sp.status().message());
    spec = *sp;
  } else if (cmd == "undefine-chpid") {
    absl::StatusOr<uint32_t> id = hsi::tools::ParseChpid("undefine-chpid ID", pos[1]);
    if (!id.ok()) return hsi::tools::Usage(kTool, id.status().message());
    undefine_id = *id;
  } else if (cmd == "up" || cmd == "down") {
    absl::StatusOr<std::pair<std::optional<uint32_t>, hsi::Address>> n = ParseNic(pos[1]);
    if (!n.ok()) return hsi::tools::Usage(kTool, n.status().message());
    nic = *n;
  }
  absl::StatusOr<hsi::AdminClient> admin = hsi::AdminClient::Connect(args->Get("--socket").value_or(""));
  if (!admin.ok()) return hsi::tools::Fail(kTool, admin.status().message(), kExitFailure);
  if (cmd == "chpids") return Chpids(*admin, *args);
  if (cmd == "nics") return Nics(*admin, *args);
  if (cmd == "cfs") return Cfs(*admin, *args);
  if (cmd == "links") return Links(*admin, *args);
  if (cmd == "stats") return Stats(*admin, *args);
  if (cmd == "streams") return Streams(*admin, *args);
  if (cmd == "fallbacks") return Fallbacks(*admin, *args);
  if (cmd == "define-chpid") return Define(*admin, *args, *spec);
  if (cmd == "undefine-chpid") return Undefine(*admin, *args, *undefine_id);
  return SetNic(*admin, *args, &*nic, cmd == "up");
}
