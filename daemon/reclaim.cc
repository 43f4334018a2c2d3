#include "reclaim.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hsi/fd.h"

namespace hsid {

absl::StatusOr<HeldState> StateFile::Open(const std::string& path) {
  path_ = path;
  fd_ = hsi::UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd_.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  std::string text;
  char buf[4096];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd_.get(), buf, sizeof(buf), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("read ", path));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    at += n;
    if (text.size() > (size_t{64} << 20)) return absl::InvalidArgumentError(absl::StrCat(path, ": larger than 64 MiB"));
  }
  return ParseHeldState(text, path);
}

absl::Status StateFile::Save(const HeldState& state) {
  if (!fd_.valid()) return absl::FailedPreconditionError(absl::StrCat(path_, " is not open"));
  std::string text = "# hsid state: LPAR names and NIC addresses held for their owners after a restart\n";
  for (const auto& [name, uid] : state.lpars) absl::StrAppend(&text, "lpar ", name, " ", uid, "\n");
  for (const auto& [key, name] : state.nics) {
    absl::StrAppend(&text, "nic ", name, " ", key.first, " ", hsi::Address(key.second).ToString(), "\n");
  }
  text += "# end\n";
  ssize_t n;
  do {
    n = ::pwrite(fd_.get(), text.data(), text.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(text.size())) {
    return absl::ErrnoToStatus(n < 0 ? errno : EIO, absl::StrCat("write ", path_));
  }
  if (::ftruncate(fd_.get(), static_cast<off_t>(text.size())) < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("truncate ", path_));
  }
  return absl::OkStatus();
}

absl::StatusOr<HeldState> ParseHeldState(const std::string& text, const std::string& path) {
  HeldState st;
  int line_no = 0;
  // Splits on `sep` (absl::StrSplit into a vector trips GCC 12's
  // -Wnull-dereference at -O3).
  auto split = [](absl::string_view v, char sep) {
    std::vector<absl::string_view> out;
    for (size_t at = 0;;) {
      const size_t end = v.find(sep, at);
      out.push_back(v.substr(at, end == absl::string_view::npos ? absl::string_view::npos : end - at));
      if (end == absl::string_view::npos) return out;
      at = end + 1;
    }
  };
  for (absl::string_view line : split(text, '\n')) {
    ++line_no;
    if (line == "# end") break;  // what follows is a longer, older save's tail
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = split(line, ' ');
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(path, " line ", line_no, ": ", what));
    };
    uint32_t n = 0;
    if (f[0] == "lpar" && f.size() == 3 && !f[1].empty() && absl::SimpleAtoi(f[2], &n)) {
      st.lpars[std::string(f[1])] = n;
    } else if (f[0] == "nic" && f.size() == 4 && !f[1].empty() && absl::SimpleAtoi(f[2], &n) && n <= 0xff) {
      absl::StatusOr<hsi::Address> a = hsi::Address::Parse(f[3]);
      if (!a.ok()) return bad(a.status().message());
      st.nics[{n, a->value()}] = std::string(f[1]);
    } else {
      return bad("not \"lpar NAME UID\" or \"nic LPAR CHPID ADDRESS\"");
    }
  }
  return st;
}

void ReclaimHolds::Hold(HeldState state, absl::Time until) {
  held_ = std::move(state);
  until_ = until;
}

void ReclaimHolds::Expire(absl::Time now) {
  if (now < until_) return;
  held_ = HeldState{};
}

std::optional<uint32_t> ReclaimHolds::NameHeldFromOthers(const std::string& lpar, uint32_t uid) const {
  auto it = held_.lpars.find(lpar);
  if (it == held_.lpars.end() || it->second == uid) return std::nullopt;
  return it->second;
}

std::optional<std::string> ReclaimHolds::AddressHeldFromOthers(uint32_t chpid, hsi::Address address,
                                                               const std::string& lpar) const {
  auto it = held_.nics.find({chpid, address.value()});
  if (it == held_.nics.end() || it->second == lpar) return std::nullopt;
  return it->second;
}

bool ReclaimHolds::AddressHeld(uint32_t chpid, hsi::Address address) const {
  return held_.nics.contains({chpid, address.value()});
}

void ReclaimHolds::ReleaseName(const std::string& lpar) { held_.lpars.erase(lpar); }

void ReclaimHolds::ReleaseAddress(uint32_t chpid, hsi::Address address) { held_.nics.erase({chpid, address.value()}); }

std::string ReclaimHolds::Why(const std::string& what_for) const {
  return absl::StrCat("held for ", what_for, " to reclaim after hsid restarted (",
                      absl::FormatDuration(absl::Trunc(until_ - absl::Now(), absl::Milliseconds(100))),
                      " more); try again later");
}

}  // namespace hsid
