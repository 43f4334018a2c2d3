// hsi-relocate: live guest relocation in an SSI cluster of hsids (issue 18).
// Parses the command line; relocate.h does the work. See
// packaging/man/hsi-relocate.8; --help says the same.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli.h"
#include "hsi/ssi/cluster.h"
#include "hsi/ssi/etcd.h"
#include "relocate.h"

namespace {

using hsi::tools::Args;
using hsi::tools::kExitFailure;
using hsi::tools::kExitOk;

constexpr char kTool[] = "hsi-relocate";

constexpr char kHelp[] = R"(Usage: hsi-relocate [OPTIONS] GUEST --to MEMBER
       hsi-relocate [OPTIONS] --evacuate GROUP --to MEMBER
       hsi-relocate [OPTIONS] --recover GUEST
       hsi-relocate [OPTIONS] --define GUEST --netns NS [--group G] [--vipa A]
                    [--hsi MEMBER:CHPID:IFNAME:ADDR/LEN[,...]]
       hsi-relocate [OPTIONS] --logon GUEST --to MEMBER
       hsi-relocate [OPTIONS] --logoff GUEST

Moves a guest (a network namespace with hsi-ifd interfaces) between the
members (hsids) of an SSI cluster whose state is in etcd, as z/VM's live
guest relocation with the paper's automation: the eligibility check (the
target is a live member with a CHPID for each of the guest's HiperSockets
interfaces, whose policy admits the guest), then the guest's current
HiperSockets interface down, its residency moved in one etcd transaction
(the old member's hsid then holds its NICs down, the new one raises them),
and the target member's interface up. Needs CAP_NET_ADMIN (ip -n NS link).

Modes:
  GUEST --to MEMBER      relocate GUEST to MEMBER (recovers an interrupted
                         relocation of GUEST first)
  --evacuate GROUP       relocate every guest of workload group GROUP that is
                         not on MEMBER (--to) to it, one at a time, and print a
                         report (the paper's LGREVACA/LGREVACB)
  --recover GUEST        make GUEST's interfaces agree with etcd after a crash:
                         its member's interface up, every other one down
  --define GUEST         add or replace GUEST in the cluster directory
  --logon GUEST          log GUEST on to MEMBER (--to), only if it is logged on
                         nowhere (one member at a time), and set its interfaces
  --logoff GUEST         log GUEST off: every interface down

Options:
  --to MEMBER            the target member
  --no-automation        relocate without taking interfaces down or up (the
                         paper's section 5.4.1: the wrong interface stays up)
  --netns NS             --define: the guest's network namespace
  --group G              --define: its workload group (for --evacuate)
  --vipa A               --define: its VIPA (shown by hsictl cluster)
  --hsi LIST             --define: its HiperSockets interfaces, one per member:
                         MEMBER:CHPID:IFNAME:ADDR/LEN, comma separated
  --etcd URLS            etcd endpoints, comma separated (default: $HSI_ETCD,
                         else http://127.0.0.1:2379)
  --cluster NAME         the cluster's name, the etcd prefix /hsi/NAME/
                         (default: $HSI_CLUSTER, else ssi)
  -q, --quiet            print only errors and the result
  -h, --help             this text

Environment: HSI_RELOCATE_STOP_AFTER=down|moved|up stops the command
(SIGSTOP) after that step, for fault-injection tests.

Exit status: 0 done; 1 refused or failed (the message names what is
missing or what failed); 2 bad command line.
)";

const std::vector<hsi::tools::Option> kOptions = {
    {{"--help", "-h"}},     {{"--to"}, "MEMBER"},   {{"--evacuate"}, "GROUP"}, {{"--recover"}, "GUEST"},
    {{"--define"}, "GUEST"}, {{"--logon"}, "GUEST"}, {{"--logoff"}, "GUEST"},   {{"--no-automation"}},
    {{"--netns"}, "NS"},     {{"--group"}, "G"},     {{"--vipa"}, "A"},         {{"--hsi"}, "LIST"},
    {{"--etcd"}, "URLS"},    {{"--cluster"}, "NAME"}, {{"--quiet", "-q"}},
};

int Main(int argc, char** argv) {
  int exit_code = 0;
  std::optional<Args> args = hsi::tools::StartTool(argc, argv, kTool, kOptions, kHelp, true, &exit_code);
  if (!args) return exit_code;
  const auto& pos = args->positional();
  int modes = (args->Has("--evacuate") ? 1 : 0) + (args->Has("--recover") ? 1 : 0) + (args->Has("--define") ? 1 : 0) +
              (args->Has("--logon") ? 1 : 0) + (args->Has("--logoff") ? 1 : 0) + (pos.empty() ? 0 : 1);
  if (modes != 1) {
    return hsi::tools::Usage(kTool, modes == 0 ? "no GUEST and no mode given"
                                               : "give one of GUEST, --evacuate, --recover, --define, --logon, --logoff");
  }
  if (pos.size() > 1) return hsi::tools::Usage(kTool, absl::StrCat("unexpected argument '", pos[1], "'"));
  const bool needs_to = !pos.empty() || args->Has("--evacuate") || args->Has("--logon");
  if (needs_to && !args->Has("--to")) return hsi::tools::Usage(kTool, "--to MEMBER is required");
  if (!needs_to && args->Has("--to")) return hsi::tools::Usage(kTool, "--to applies to a relocation, --evacuate and --logon");
  for (const char* o : {"--netns", "--group", "--vipa", "--hsi"}) {
    if (args->Has(o) && !args->Has("--define")) return hsi::tools::Usage(kTool, absl::StrCat(o, " applies to --define only"));
  }
  const std::string to = args->Get("--to").value_or("");
  if (needs_to) {
    if (auto s = hsi::ssi::CheckName("--to MEMBER", to); !s.ok()) return hsi::tools::Usage(kTool, s.message());
  }
  std::string guest = !pos.empty() ? pos[0] : "";
  for (const char* m : {"--recover", "--define", "--logon", "--logoff"}) {
    if (args->Has(m)) guest = *args->Get(m);
  }
  if (!guest.empty()) {
    if (auto s = hsi::ssi::CheckName("GUEST", guest); !s.ok()) return hsi::tools::Usage(kTool, s.message());
  }
  const char* env_etcd = std::getenv("HSI_ETCD");
  const char* env_cluster = std::getenv("HSI_CLUSTER");
  absl::StatusOr<std::vector<std::string>> endpoints = hsi::ssi::ParseEndpoints(
      "--etcd", args->Get("--etcd").value_or(env_etcd != nullptr ? env_etcd : "http://127.0.0.1:2379"));
  if (!endpoints.ok()) return hsi::tools::Usage(kTool, endpoints.status().message());
  const std::string cluster = args->Get("--cluster").value_or(env_cluster != nullptr ? env_cluster : "ssi");
  if (auto s = hsi::ssi::CheckName("--cluster", cluster); !s.ok()) return hsi::tools::Usage(kTool, s.message());

  hsi::ssi::GuestRecord def;
  if (args->Has("--define")) {
    def.name = guest;
    if (!args->Has("--netns")) return hsi::tools::Usage(kTool, "--define needs --netns NS");
    def.netns = *args->Get("--netns");
    def.group = args->Get("--group").value_or("");
    def.vipa = args->Get("--vipa").value_or("");
    const std::vector<std::string> items = absl::StrSplit(args->Get("--hsi").value_or(""), ',', absl::SkipEmpty());
    for (const std::string& item : items) {
      std::vector<std::string> f = absl::StrSplit(item, ':');
      if (f.size() != 4) {
        return hsi::tools::Usage(kTool, absl::StrCat("--hsi '", item, "': expected MEMBER:CHPID:IFNAME:ADDR/LEN"));
      }
      if (auto s = hsi::ssi::CheckName("--hsi MEMBER", f[0]); !s.ok()) return hsi::tools::Usage(kTool, s.message());
      absl::StatusOr<uint32_t> chpid = hsi::tools::ParseChpid("--hsi CHPID", f[1]);
      if (!chpid.ok()) return hsi::tools::Usage(kTool, chpid.status().message());
      if (f[2].empty() || f[2].size() > 15) return hsi::tools::Usage(kTool, absl::StrCat("--hsi '", item, "': bad interface name"));
      if (def.On(f[0]) != nullptr) {
        return hsi::tools::Usage(kTool, absl::StrCat("--hsi: two interfaces for member ", f[0], " (one per member)"));
      }
      def.hsi.push_back({f[0], *chpid, f[2], f[3]});
    }
  }

  absl::StatusOr<hsi::ssi::EtcdClient> etcd = hsi::ssi::EtcdClient::Create({*endpoints, absl::Seconds(2)});
  if (!etcd.ok()) return hsi::tools::Fail(kTool, etcd.status());
  hsi::relocate::Context ctx{&*etcd, hsi::ssi::Keys(cluster), true, "", true};
  ctx.automation = !args->Has("--no-automation");
  ctx.verbose = !args->Has("--quiet");
  if (const char* stop = std::getenv("HSI_RELOCATE_STOP_AFTER")) ctx.stop_after = stop;

  if (args->Has("--define")) {
    if (auto s = hsi::relocate::Define(ctx, def); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
    std::printf("guest %s defined (%zu HiperSockets interfaces)\n", guest.c_str(), def.hsi.size());
    return kExitOk;
  }
  if (args->Has("--logon")) {
    if (auto s = hsi::relocate::Logon(ctx, guest, to); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
    return kExitOk;
  }
  if (args->Has("--logoff")) {
    if (auto s = hsi::relocate::Logoff(ctx, guest); !s.ok()) return hsi::tools::Fail(kTool, s.message(), kExitFailure);
    std::printf("%s logged off\n", guest.c_str());
    return kExitOk;
  }
  if (args->Has("--recover")) {
    absl::StatusOr<std::string> r = hsi::relocate::Recover(ctx, guest);
    if (!r.ok()) return hsi::tools::Fail(kTool, r.status().message(), kExitFailure);
    std::printf("%s\n", r->c_str());
    return kExitOk;
  }
  if (args->Has("--evacuate")) {
    absl::StatusOr<std::vector<hsi::ssi::Outcome>> out = hsi::relocate::Evacuate(ctx, *args->Get("--evacuate"), to);
    if (!out.ok()) return hsi::tools::Fail(kTool, out.status().message(), kExitFailure);
    hsi::tools::Table t({"GUEST", "FROM", "TO", "RESULT", "MS", "MESSAGE"});
    int failed = 0;
    for (const hsi::ssi::Outcome& o : *out) {
      failed += o.result == "relocated" ? 0 : 1;
      t.Add({o.guest, o.from, o.to, o.result, std::to_string(o.duration_ms), o.message});
    }
    std::printf("%s", t.Render().c_str());
    std::printf("relocated %zu, not moved %d, attempts %zu\n", out->size() - failed, failed, out->size());
    return failed == 0 ? kExitOk : kExitFailure;
  }
  absl::StatusOr<hsi::ssi::Outcome> o = hsi::relocate::Relocate(ctx, guest, to);
  if (!o.ok()) return hsi::tools::Fail(kTool, o.status().message(), kExitFailure);
  std::printf("%s\n", o->message.c_str());
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
