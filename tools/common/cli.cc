#include "cli.h"

#include <fcntl.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace hsi::tools {

absl::StatusOr<Args> Args::Parse(int argc, char** argv, const std::vector<Option>& options) {
  auto find = [&](absl::string_view name) -> const Option* {
    for (const Option& o : options) {
      if (std::find(o.names.begin(), o.names.end(), name) != o.names.end()) return &o;
    }
    return nullptr;
  };
  Args a;
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (only_positional || arg.size() < 2 || arg[0] != '-' ||
        (arg[1] >= '0' && arg[1] <= '9')) {  // "-1" is a value, not an option
      a.positional_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    std::string name = arg, value;
    bool inline_value = false;
    if (size_t eq = arg.find('='); absl::StartsWith(arg, "--") && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inline_value = true;
    }
    const Option* o = find(name);
    if (o == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "'"));
    const std::string& canon = o->names.front();
    if (o->value == nullptr) {
      if (inline_value) return absl::InvalidArgumentError(absl::StrCat("option ", canon, " takes no value"));
    } else if (!inline_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("option ", canon, " needs a value (", o->value, ")"));
      }
      value = argv[++i];
    }
    a.values_[canon] = value;
    a.given_.push_back(canon);
  }
  return a;
}

bool Args::Has(absl::string_view name) const { return values_.find(name) != values_.end(); }

std::optional<std::string> Args::Get(absl::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<uint64_t> ParseCount(absl::string_view what, absl::string_view text, uint64_t min, uint64_t max) {
  uint64_t v;
  if (!absl::SimpleAtoi(text, &v) || v < min || v > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", text, "' is not a whole number in ", min, "..", max));
  }
  return v;
}

absl::StatusOr<uint64_t> ParseSize(absl::string_view what, absl::string_view text, uint64_t min, uint64_t max) {
  std::string s = absl::AsciiStrToUpper(text);
  uint64_t mult = 1;
  if (!s.empty() && (s.back() == 'K' || s.back() == 'M' || s.back() == 'G')) {
    mult = s.back() == 'K' ? 1024 : s.back() == 'M' ? 1024 * 1024 : 1024 * 1024 * 1024;
    s.pop_back();
  }
  uint64_t n;
  if (!absl::SimpleAtoi(s, &n) || n > max / mult || n * mult < min) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not a size in ", min, "..", max,
                                                   " bytes (suffixes K, M, G allowed)"));
  }
  return n * mult;
}

absl::StatusOr<double> ParseSeconds(absl::string_view what, absl::string_view text, double min, double max) {
  double v;
  if (!absl::SimpleAtod(text, &v) || !std::isfinite(v) || v < min || v > max) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not a number of seconds in ",
                                                   min, "..", max));
  }
  return v;
}

absl::StatusOr<uint32_t> ParseChpid(absl::string_view what, absl::string_view text) {
  absl::StatusOr<hsi::Chpid> id = hsi::Chpid::Parse(text);
  if (!id.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", id.status().message()));
  return uint32_t{id->value()};
}

absl::StatusOr<hsi::WaitMode> ParseWait(absl::string_view what, absl::string_view text) {
  absl::StatusOr<hsi::WaitMode> m = hsi::ParseWaitMode(text);
  if (!m.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not one of spin, block, adaptive"));
  }
  return m;
}

namespace {

// The first `n` CPUs this process may run on (fewer if it may use fewer).
std::vector<int> AllowedCpus(size_t n) {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < n; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

}  // namespace

absl::StatusOr<std::vector<int>> ParseCpus(absl::string_view what, absl::string_view text, size_t max) {
  std::vector<int> cpus;
  const std::vector<int> allowed = AllowedCpus(CPU_SETSIZE);
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int cpu = -1;
    if (!absl::SimpleAtoi(part, &cpu) || cpu < 0 || cpu >= CPU_SETSIZE) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": '", part, "' is not a CPU number"));
    }
    if (std::find(allowed.begin(), allowed.end(), cpu) == allowed.end()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": CPU ", cpu, " is not one this process may run on (",
                                                     absl::StrJoin(allowed, ","), ")"));
    }
    cpus.push_back(cpu);
  }
  if (cpus.empty() || cpus.size() > max) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": give ", max == 1 ? "one CPU" : "one or two CPUs",
                                                   ", not '", text, "'"));
  }
  return cpus;
}

absl::StatusOr<hsi::Address> ParseAddress(absl::string_view what, absl::string_view text) {
  absl::StatusOr<hsi::Address> a = hsi::Address::Parse(text);
  if (!a.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not an IPv4 address like 10.240.0.2"));
  }
  return a;
}

std::string ChpidText(uint32_t id) { return hsi::Chpid(static_cast<uint8_t>(id)).ToString(); }

int Fail(absl::string_view tool, absl::string_view message, int code) {
  std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(tool.size()), tool.data(), static_cast<int>(message.size()),
               message.data());
  return code;
}

int Usage(absl::string_view tool, absl::string_view message) {
  return Fail(tool, absl::StrCat(message, " (try '", tool, " --help')"), kExitUsage);
}

std::optional<Args> StartTool(int argc, char** argv, absl::string_view tool, const std::vector<Option>& options,
                              const char* help, bool allow_positional, int* exit_code) {
  absl::StatusOr<Args> args = Args::Parse(argc, argv, options);
  if (!args.ok()) {
    *exit_code = Usage(tool, args.status().message());
    return std::nullopt;
  }
  if (args->Has("--help")) {
    std::fputs(help, stdout);
    *exit_code = kExitOk;
    return std::nullopt;
  }
  if (!allow_positional && !args->positional().empty()) {
    *exit_code = Usage(tool, absl::StrCat("unexpected argument '", args->positional()[0], "'"));
    return std::nullopt;
  }
  return std::move(*args);
}

std::string Table::Render() const {
  std::vector<size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  };
  measure(header_);
  for (const auto& r : rows_) measure(r);
  std::string out;
  auto line = [&](const std::vector<std::string>& r, bool head) {
    std::string l;
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < r.size() ? r[i] : "";
      const bool right = !head && !cell.empty() && absl::ascii_isdigit(static_cast<unsigned char>(cell[0])) &&
                         cell.find('.') == std::string::npos && cell.find(':') == std::string::npos;
      const std::string pad(width[i] - cell.size(), ' ');
      if (i > 0) l += "  ";
      l += right ? pad + cell : (i + 1 == width.size() ? cell : cell + pad);
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line(header_, true);
  for (const auto& r : rows_) line(r, false);
  return out;
}

Summary Summarize(std::vector<double> ns) {
  Summary s;
  s.count = ns.size();
  if (ns.empty()) return s;
  std::sort(ns.begin(), ns.end());
  double sum = 0, sq = 0;
  for (double v : ns) {
    sum += v;
    sq += v * v;
  }
  const double n = static_cast<double>(ns.size());
  s.min = ns.front();
  s.max = ns.back();
  s.avg = sum / n;
  s.mdev = std::sqrt(std::max(0.0, sq / n - s.avg * s.avg));
  auto pct = [&](double p) {
    // Nearest rank: the smallest sample with at least p of them at or below.
    size_t rank = static_cast<size_t>(std::ceil(p * n));
    return ns[std::min(ns.size() - 1, rank == 0 ? 0 : rank - 1)];
  };
  s.p50 = pct(0.50);
  s.p99 = pct(0.99);
  s.p999 = pct(0.999);
  return s;
}

std::string FormatNs(double ns) {
  if (ns < 1e3) return absl::StrFormat("%.0f ns", ns);
  if (ns < 1e6) return absl::StrFormat("%.3f us", ns / 1e3);
  if (ns < 1e9) return absl::StrFormat("%.3f ms", ns / 1e6);
  return absl::StrFormat("%.3f s", ns / 1e9);
}

}  // namespace hsi::tools
