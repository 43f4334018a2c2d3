// tools/common/cli.h: what hsictl, hsi-ping, hsi-perf and hsi-dump share:
// a strict command-line parser (exit 2 with a message naming the option and
// the accepted values), value parsers, aligned tables, latency summaries and
// forked children that are always reaped.
//
// Exit status convention of every tool: 0 success, 1 runtime failure,
// 2 usage error.
//
// Thread safety: none needed; each tool is single-threaded.
#ifndef HSI_TOOLS_COMMON_CLI_H_
#define HSI_TOOLS_COMMON_CLI_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hsi/address.h"
#include "hsi/support/process.h"
#include "hsi/wait.h"

namespace hsi::tools {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// One option: its names ("--count", "-c"), whether it takes a value, and
// the value's name for messages ("COUNT").
struct Option {
  std::vector<std::string> names;
  const char* value = nullptr;  // nullptr: a switch
};

// The parsed command line. Options may come before, between or after the
// positional arguments; "--name=value" and "--name value" both work; "--"
// ends the options.
class Args {
 public:
  // Parses argv[1..]. A usage error (unknown option, missing value) is
  // kInvalidArgument with the message to print.
  static absl::StatusOr<Args> Parse(int argc, char** argv, const std::vector<Option>& options);

  bool Has(absl::string_view name) const;  // by its first (canonical) name
  std::optional<std::string> Get(absl::string_view name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // The canonical names of every option given, in order.
  const std::vector<std::string>& given() const { return given_; }

 private:
  std::map<std::string, std::string, std::less<>> values_;
  std::vector<std::string> given_;
  std::vector<std::string> positional_;
};

// The start of every tool's main(): parses argv against `options` and
// handles --help (prints `help` on stdout) and usage errors (one line on
// stderr). Returns the Args to go on with, or nullopt with `*exit_code`
// set: kExitOk after --help, kExitUsage after a bad command line.
// `allow_positional` false refuses any argument that is not an option.
std::optional<Args> StartTool(int argc, char** argv, absl::string_view tool, const std::vector<Option>& options,
                              const char* help, bool allow_positional, int* exit_code);

// Value parsers: kInvalidArgument naming `what` (the option) and what is
// accepted.
absl::StatusOr<uint64_t> ParseCount(absl::string_view what, absl::string_view text, uint64_t min, uint64_t max);
// "65536", "64K", "1M", "2G" (powers of 1024).
absl::StatusOr<uint64_t> ParseSize(absl::string_view what, absl::string_view text, uint64_t min, uint64_t max);
absl::StatusOr<double> ParseSeconds(absl::string_view what, absl::string_view text, double min, double max);
// A hex CHPID "F0", "0xf0", "3".
absl::StatusOr<uint32_t> ParseChpid(absl::string_view what, absl::string_view text);
absl::StatusOr<hsi::WaitMode> ParseWait(absl::string_view what, absl::string_view text);
absl::StatusOr<hsi::Address> ParseAddress(absl::string_view what, absl::string_view text);
std::string ChpidText(uint32_t id);  // "F0"
// "3" or "0,1": up to `max` CPU numbers, each one this process may run on.
absl::StatusOr<std::vector<int>> ParseCpus(absl::string_view what, absl::string_view text, size_t max);

// Prints "TOOL: message" to stderr and returns `code`.
int Fail(absl::string_view tool, absl::string_view message, int code);
inline int Fail(absl::string_view tool, const absl::Status& s) {
  return Fail(tool, s.message().empty() ? s.ToString() : s.message(),
              s.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure);
}
// For usage errors: "TOOL: message (try 'TOOL --help')".
int Usage(absl::string_view tool, absl::string_view message);

// A table for people: columns padded to their widest cell; numbers (cells
// that start with a digit) right-aligned.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Latency distribution of samples in nanoseconds.
struct Summary {
  size_t count = 0;
  double min = 0, avg = 0, max = 0, mdev = 0;  // mdev: standard deviation, as ping's
  double p50 = 0, p99 = 0, p999 = 0;
};
Summary Summarize(std::vector<double> ns);
// "1.234 us" with a unit that fits.
std::string FormatNs(double ns);

// Forked children and line pipes (hsi/support/process.h).
using Child = hsi::support::Child;
using LinePipe = hsi::support::LinePipe;

}  // namespace hsi::tools

#endif  // HSI_TOOLS_COMMON_CLI_H_
