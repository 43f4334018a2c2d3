// hsi-run: runs a program with libhsi-run.so preloaded, so that its TCP
// connections to other hsi-run programs on this host move onto hsi rings
// (docs/hsi-run.md, hsi-run(1)). Everything here is option parsing: the
// options become HSI_RUN_* environment variables and the program is exec'd.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifndef HSI_RUN_INSTALLED_LIB
#define HSI_RUN_INSTALLED_LIB "/usr/lib/libhsi-run.so"
#endif

namespace {

constexpr const char* kUsage = R"(usage: hsi-run [options] [--] PROGRAM [ARGS...]

Runs PROGRAM with libhsi-run.so preloaded: its TCP connections to other
programs run under hsi-run on this host move onto hsi shared-memory rings
after set-up; the program keeps a real TCP socket as its fd. Anything else
(remote peers, peers not under hsi-run, UDP, Unix sockets) stays on the
kernel. Needs a running hsid; without one every connection stays on TCP.

options (each also an environment variable, for using the library directly):
  --socket PATH         hsid's control socket            HSI_RUN_SOCKET (else HSI_SOCKET)
  --busy-poll USEC      spin this long in a blocking read before sleeping
                        (default 0: off, as SO_BUSY_POLL) HSI_RUN_BUSY_POLL_US
  --ring-kb N           ring size per direction, KiB, rounded up to a power
                        of two (default 1024; both ends must agree)  HSI_RUN_RING_KB
  --ports LIST          accelerate only these ports (comma-separated)  HSI_RUN_PORTS
  --exclude-ports LIST  never accelerate these ports      HSI_RUN_EXCLUDE_PORTS
  --pair-timeout-ms N   how long a connector waits for the accept before its
                        first byte (default 1000; then TCP) HSI_RUN_PAIR_TIMEOUT_MS
  --log N               0 quiet, 1 each connection's decision, 2 more  HSI_RUN_LOG
  --lib PATH            the preload library (default: beside this program,
                        else )" HSI_RUN_INSTALLED_LIB R"()
  -h, --help            this text

exit status: PROGRAM's, or 127 if it cannot be run, 2 for a bad option.
)";

std::string Dir(const std::string& p) {
  const size_t s = p.rfind('/');
  return s == std::string::npos ? "." : p.substr(0, s);
}

std::string FindLib() {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    const std::string dir = Dir(self);
    for (const std::string& c : {dir + "/../lib/libhsi-run.so", dir + "/libhsi-run.so"}) {
      if (::access(c.c_str(), R_OK) == 0) return c;
    }
  }
  return HSI_RUN_INSTALLED_LIB;
}

}  // namespace

int main(int argc, char** argv) {
  struct Opt {
    const char* flag;
    const char* env;
  };
  const Opt opts[] = {{"--socket", "HSI_RUN_SOCKET"},          {"--busy-poll", "HSI_RUN_BUSY_POLL_US"},
                      {"--ring-kb", "HSI_RUN_RING_KB"},         {"--ports", "HSI_RUN_PORTS"},
                      {"--exclude-ports", "HSI_RUN_EXCLUDE_PORTS"}, {"--pair-timeout-ms", "HSI_RUN_PAIR_TIMEOUT_MS"},
                      {"--log", "HSI_RUN_LOG"}};
  std::string lib;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a.empty() || a[0] != '-') break;
    std::string name = a, value;
    bool has_value = false;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    const Opt* o = nullptr;
    for (const Opt& x : opts) {
      if (name == x.flag) o = &x;
    }
    if (o == nullptr && name != "--lib") {
      std::fprintf(stderr, "hsi-run: unknown option '%s' (try --help)\n", a.c_str());
      return 2;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "hsi-run: option '%s' needs a value\n", name.c_str());
        return 2;
      }
      value = argv[++i];
    }
    if (o == nullptr) {
      lib = value;
    } else {
      ::setenv(o->env, value.c_str(), 1);
    }
  }
  if (i >= argc) {
    std::fputs("hsi-run: no program to run (try --help)\n", stderr);
    return 2;
  }
  if (lib.empty()) lib = FindLib();
  if (::access(lib.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "hsi-run: the preload library %s: %s\n", lib.c_str(), std::strerror(errno));
    return 127;
  }
  std::string preload = lib;
  if (const char* old = std::getenv("LD_PRELOAD"); old != nullptr && old[0] != '\0') preload += std::string(":") + old;
  ::setenv("LD_PRELOAD", preload.c_str(), 1);
  ::execvp(argv[i], argv + i);
  std::fprintf(stderr, "hsi-run: cannot run %s: %s\n", argv[i], std::strerror(errno));
  return 127;
}
