// hsid: the hsi supervisor daemon. Parses flags and runs daemon/server.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
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

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hsid: the hsi supervisor (PR/SM role). Runs in the foreground; stops on SIGTERM/SIGINT.\n"
      "Usage: hsid [--socket PATH] [--config FILE] [--verbose]\n"
      "Exit status: 0 after a signal, 1 on a runtime error, 2 on a bad command line or config.");
  absl::FlagsUsageConfig uc;
  uc.contains_help_flags = [](absl::string_view) { return true; };
  absl::SetFlagsUsageConfig(uc);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "hsid: unexpected argument '%s' (try --help)\n", rest[1]);
    return 2;
  }
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
