// hsid: the hsi supervisor daemon. Parses flags and runs daemon/server.
// See packaging/man/hsid.8; --help says the same.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "config.h"
#include "hsi/session.h"
#include "server.h"

ABSL_FLAG(std::string, socket, "",
          "control socket path; default: $HSI_SOCKET, else /run/hsi/hsid.sock for root, "
          "$XDG_RUNTIME_DIR/hsi/hsid.sock otherwise");
ABSL_FLAG(std::string, config, "", "TOML configuration file; default: the built-in one "
                                   "(CHPID F0, 16K frames, open to the uid that starts hsid)");
ABSL_FLAG(bool, print_default_config, false, "print the built-in configuration and exit");
ABSL_FLAG(bool, verbose, false, "log every request");

namespace {

constexpr char kHelp[] = R"(Usage: hsid [--socket PATH] [--config FILE] [--verbose]
       hsid --print_default_config

The hsi supervisor (the PR/SM role): defines the CHPIDs, decides by its
policy which uid may claim which LPAR, creates and grants the shared memory
of each link, and takes links up and down. Frames never pass through it.
It runs in the foreground, logs to stderr and stops on SIGTERM or SIGINT;
links keep flowing while it is down, and clients re-register when it is
back (also after SIGKILL).

Options:
  --socket PATH           control socket (default: $HSI_SOCKET, else
                          /run/hsi/hsid.sock for root, $XDG_RUNTIME_DIR/hsi/hsid.sock otherwise)
  --config FILE           TOML configuration (default: the built-in one: CHPID F0,
                          16K frames, open to the uid that starts hsid)
  --print_default_config  print the built-in configuration and exit
  --verbose               log every request
  -h, --help              this text

--socket and --config also take the form --socket=PATH, --config=FILE.

Exit status: 0 after SIGTERM/SIGINT (and for --help, --print_default_config),
1 on a runtime error (another hsid on the socket, cannot bind), 2 on a bad
command line or config.

See hsid(8) for the configuration file.
)";

// Prints "hsid: message (try 'hsid --help')" and returns the usage exit code.
int Usage(const std::string& message) {
  std::fprintf(stderr, "hsid: %s (try 'hsid --help')\n", message.c_str());
  return 2;
}

// Checks argv before absl sees it: absl would print its generic flag dump
// for --help and exit 1 on an unknown flag, where hsid, like the tools,
// prints its own usage (exit 0) and reports usage errors with exit 2.
// Returns -1 to go on, else the exit code.
int PreParse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view a = argv[i];
    if (a == "--") break;  // the rest is positional: rejected after parsing
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if (a.size() < 2 || a[0] != '-') continue;  // positional
    if (a == "--socket" || a == "--config") {
      if (i + 1 >= argc) {
        return Usage(absl::StrCat("option ", a, " needs a value (", a == "--socket" ? "PATH" : "FILE", ")"));
      }
      ++i;
      continue;
    }
    if (absl::StartsWith(a, "--socket=") || absl::StartsWith(a, "--config=") || a == "--print_default_config" ||
        a == "--verbose") {
      continue;
    }
    return Usage(absl::StrCat("unknown option '", a, "'"));
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = PreParse(argc, argv); rc >= 0) return rc;
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) return Usage(absl::StrCat("unexpected argument '", rest[1], "'"));
  if (absl::GetFlag(FLAGS_print_default_config)) {
    std::fputs(hsid::kDefaultConfig, stdout);
    return 0;
  }
  absl::StatusOr<hsid::Config> config = hsid::LoadConfig(absl::GetFlag(FLAGS_config), ::getuid());
  if (!config.ok()) {
    std::fprintf(stderr, "hsid: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<std::string> path = hsi::ResolveSocketPath(absl::GetFlag(FLAGS_socket));
  if (!path.ok()) {
    std::fprintf(stderr, "hsid: %s\n", std::string(path.status().message()).c_str());
    return 2;
  }
  hsid::ServerOptions opt;
  opt.socket_path = *path;
  opt.config = std::move(*config);
  opt.verbose = absl::GetFlag(FLAGS_verbose);
  absl::StatusOr<std::unique_ptr<hsid::Server>> server = hsid::Server::Create(std::move(opt));
  if (!server.ok()) {
    std::fprintf(stderr, "hsid: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  absl::Status s = (*server)->Run();
  if (!s.ok()) {
    std::fprintf(stderr, "hsid: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
