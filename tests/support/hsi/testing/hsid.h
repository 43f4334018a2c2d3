// hsi/testing/hsid.h: a private hsid for one test.
//
// Hsid runs the build's bin/hsid (the path is compiled into hsi::testing)
// on a socket in a fresh mkdtemp directory (mode 0755, so that tests that
// drop to another uid reach the socket), with an optional TOML config, and
// its stderr in <dir>/hsid.log. The destructor SIGKILLs and reaps it and
// removes the directory, so a failing test leaves nothing behind; hsid
// also dies with the test process (PR_SET_PDEATHSIG).
//
// Thread safety: one thread at a time; the accessors may be read from forked
// children (they are plain values after Start()).
#ifndef HSI_TESTING_HSID_H_
#define HSI_TESTING_HSID_H_

#include <sys/types.h>

#include <string>

namespace hsi::testing {

// The absolute path of the hsid this library was built with.
const char* HsidPath();

class Hsid {
 public:
  // `config` is TOML text; empty means hsid's built-in default. Makes the
  // directory (and writes hsid.toml); does not start hsid.
  explicit Hsid(std::string config = "");
  ~Hsid();
  Hsid(const Hsid&) = delete;
  Hsid& operator=(const Hsid&) = delete;

  // Starts hsid and waits until it accepts connections from its own pid.
  // False if it exited or did not listen within 10 s (see log()).
  bool Start();
  // Sends `sig` and reaps hsid; returns its wait status, or -1 if it is not
  // running.
  int Stop(int sig);
  // True if a connect to socket() succeeds and, while this hsid runs, the
  // answer comes from its pid (a killed hsid's socket lingers while the
  // kernel tears down its io_uring).
  bool Connectable() const;

  // hsid's stderr so far (for failure messages).
  std::string log() const;
  const std::string& socket() const { return socket_; }
  const std::string& dir() const { return dir_; }
  // "" when started with the built-in default.
  const std::string& config_path() const { return config_path_; }
  // -1 when not running.
  pid_t pid() const { return pid_; }

 private:
  std::string config_;
  std::string dir_;
  std::string socket_;
  std::string config_path_;
  pid_t pid_ = -1;
};

}  // namespace hsi::testing

#endif  // HSI_TESTING_HSID_H_
