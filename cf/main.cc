// hsi-cf: a coupling facility partition. Parses the command line and runs
// cf/server. See packaging/man/hsi-cf.8; --help says the same.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "config.h"
#include "hsi/support/service.h"
#include "server.h"

namespace {

constexpr char kHelp[] =
    R"(Usage: hsi-cf --config FILE [--socket PATH] [--wait spin|adaptive|block] [--verbose]
              [--fault xi-skip|xi-late]
              [--duplex-fault mirror-after-reply|takeover-keeps-vectors]
       hsi-cf --check --config FILE

A coupling facility partition: registers with hsid as the LPAR its policy
names, attaches a NIC on the policy's CHPID and serves the structures the
policy defines (lock, list and cache structures) to connectors over CF
links (hsi links; frames never pass through hsid). Each cache connector
gets a local validity vector, memory the CF alone writes, granted through
hsid. A connector's death is seen at once: the locks it held become
retained until a peer or the restarted connector recovers them; its cache
registrations end and its castout locks are released. Lock and list
structures may be duplexed in two CFs (the policy's `duplex` keys): every
update applied in both before it completes; a secondary that comes back
after its death gets a copy and is duplexed again by itself. Runs in the foreground, logs
to stderr, stops on SIGTERM or SIGINT. It asks hsid which LPAR owns a
connector's NIC
(a question any NIC on the CHPID may ask: no admin rights needed).

Options:
  --config FILE     the CF policy (TOML; see hsi-cf(8))
  --socket PATH     hsid's control socket (default: $HSI_SOCKET, else the
                    default path, as for every hsi client)
  --wait MODE       how the CF waits for requests: spin, adaptive (default)
                    or block
  --check           check the config and exit
  --duplex-fault mirror-after-reply|takeover-keeps-vectors
                    TESTS ONLY: a deliberate duplexing bug that the
                    duplexing tests must catch (mirror-after-reply: the
                    primary replies before the secondary has the update;
                    takeover-keeps-vectors: a secondary taking over leaves
                    the cache connectors' local copies valid)
  --verbose         log every refused request
  --fault KIND      for tests only: break cache cross-invalidation on
                    purpose (xi-skip: never flip a vector bit; xi-late:
                    flip after the write's reply), so that a test can show
                    its checker catches such a CF
  -h, --help        this text
Options with a value also take the form --config=FILE.

Exit status: 0 after SIGTERM/SIGINT (and for --help, --check of a good
config), 1 on a runtime error (hsid refused the LPAR or the NIC), 2 on a
bad command line or config.

See hsi-cf(8), docs/cf.md.
)";

hsi::cf::Server* g_server = nullptr;
void OnSignal(int) {
  if (g_server != nullptr) g_server->Stop();
}

int Usage(const std::string& m) {
  std::fprintf(stderr, "hsi-cf: %s (try 'hsi-cf --help')\n", m.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config, socket;
  hsi::cf::ServerOptions opts;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::optional<std::string> inline_value;  // --opt=value
    if (const size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto value = [&](std::string* out) {
      if (inline_value) {
        *out = *inline_value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (a == "--config") {
      if (!value(&config)) return Usage("option --config needs a value (FILE)");
    } else if (a == "--socket") {
      if (!value(&socket)) return Usage("option --socket needs a value (PATH)");
    } else if (a == "--wait") {
      std::string w;
      if (!value(&w)) return Usage("option --wait needs a value (spin, adaptive or block)");
      absl::StatusOr<hsi::WaitMode> m = hsi::ParseWaitMode(w);
      if (!m.ok()) return Usage(absl::StrCat("--wait: ", m.status().message()));
      opts.wait = *m;
    } else if (a == "--fault") {
      std::string f;
      if (!value(&f)) return Usage("option --fault needs a value (xi-skip or xi-late)");
      if (f == "xi-skip") {
        opts.fault = hsi::cf::XiFault::kSkip;
      } else if (f == "xi-late") {
        opts.fault = hsi::cf::XiFault::kLate;
      } else {
        return Usage(absl::StrCat("--fault: '", f, "' is not xi-skip or xi-late"));
      }
    } else if (a == "--check") {
      check = true;
    } else if (a == "--verbose") {
      opts.verbose = true;
    } else if (a == "--duplex-fault") {
      std::string f;
      if (!value(&f) || (f != "mirror-after-reply" && f != "takeover-keeps-vectors"))
        return Usage(
            "option --duplex-fault takes one value: mirror-after-reply or takeover-keeps-vectors "
            "(tests only)");
      opts.duplex_fault_mirror_after_reply = f == "mirror-after-reply";
      opts.duplex_fault_keep_vectors = f == "takeover-keeps-vectors";
    } else {
      return Usage(absl::StrCat("unknown argument '", a, "'"));
    }
  }
  if (config.empty()) return Usage("--config FILE is required (the CF policy)");
  absl::StatusOr<hsi::cf::CfConfig> cfg = hsi::cf::LoadConfig(config);
  if (!cfg.ok()) {
    std::fprintf(stderr, "hsi-cf: %s\n", std::string(cfg.status().message()).c_str());
    return 2;
  }
  if (check) {
    std::printf("%s: LPAR %s, CHPID %s, %zu structure(s)\n", config.c_str(), cfg->lpar.c_str(),
                hsi::Chpid(static_cast<uint8_t>(cfg->chpid)).ToString().c_str(),
                cfg->structures.size());
    return 0;
  }
  opts.socket_path = socket;
  absl::StatusOr<std::unique_ptr<hsi::cf::Server>> server =
      hsi::cf::Server::Start(*std::move(cfg), opts);
  if (!server.ok()) {
    std::fprintf(stderr, "hsi-cf: %s\n", server.status().ToString().c_str());
    return 1;
  }
  g_server = server->get();
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSignal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  // Tests and scripts wait for this line (the address connectors use).
  std::printf("READY %s\n", (*server)->address().ToString().c_str());
  std::fflush(stdout);
  // And systemd (hsi-cf@.service is Type=notify): connectors may come.
  if (absl::Status n = hsi::support::NotifyReady(absl::StrCat("serving at ", (*server)->address().ToString()));
      !n.ok()) {
    std::fprintf(stderr, "hsi-cf: %s\n", std::string(n.message()).c_str());
  }
  absl::Status s = (*server)->Run();
  hsi::support::NotifyStopping().IgnoreError();
  g_server = nullptr;
  if (!s.ok()) {
    std::fprintf(stderr, "hsi-cf: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
