// isfc_convention.cc: device numbers and the write-direction convention
// (hsi/isfc_convention.h).
#include "hsi/isfc_convention.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace hsi {

absl::StatusOr<DeviceNumber> DeviceNumber::Parse(absl::string_view text) {
  const absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t.empty() || t.size() > 4 || !std::all_of(t.begin(), t.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return absl::InvalidArgumentError(
        absl::StrCat("device number \"", text, "\": want 1 to 4 hex digits (e.g. D000)"));
  }
  uint32_t v = 0;
  for (char c : t) v = v * 16 + static_cast<uint32_t>(absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10);
  return DeviceNumber(static_cast<uint16_t>(v));
}

absl::StatusOr<std::vector<DeviceNumber>> DeviceNumber::ParseList(absl::string_view text) {
  std::vector<DeviceNumber> out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> ends = absl::StrSplit(item, absl::MaxSplits('-', 1));
    absl::StatusOr<DeviceNumber> lo = Parse(ends[0]);
    if (!lo.ok()) return absl::InvalidArgumentError(absl::StrCat("device list \"", text, "\": ", lo.status().message()));
    DeviceNumber hi = *lo;
    if (ends.size() == 2) {
      absl::StatusOr<DeviceNumber> h = Parse(ends[1]);
      if (!h.ok()) return absl::InvalidArgumentError(absl::StrCat("device list \"", text, "\": ", h.status().message()));
      if (*h < *lo) {
        return absl::InvalidArgumentError(absl::StrCat("device list \"", text, "\": range ", item, " runs backwards"));
      }
      if (h->value() - lo->value() >= 4096) {
        return absl::InvalidArgumentError(absl::StrCat("device list \"", text, "\": range ", item, " is too long"));
      }
      hi = *h;
    }
    for (uint32_t v = lo->value(); v <= hi.value(); ++v) {
      const DeviceNumber d(static_cast<uint16_t>(v));
      if (std::find(out.begin(), out.end(), d) != out.end()) {
        return absl::InvalidArgumentError(absl::StrCat("device list \"", text, "\": ", d.ToString(), " twice"));
      }
      out.push_back(d);
    }
  }
  return out;
}

std::string DeviceNumber::ToString() const { return absl::StrFormat("%04X", value_); }

int UsableDevices(int n) {
  if (n < 1 || n > kMaxIsfcDevices) return 0;
  if (n == 1) return 1;
  return n <= 8 ? n - 1 : n - 2;
}

absl::StatusOr<WritePlan> PlanWrites(absl::string_view self, absl::string_view peer,
                                     absl::Span<const DeviceNumber> devices, IsfcMode mode) {
  const std::string where = absl::StrCat("ISFC link ", self, "<->", peer);
  if (self.empty() || peer.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": a system name is empty"));
  if (self == peer) return absl::InvalidArgumentError(absl::StrCat(where, ": both ends have the same system name"));
  const int n = static_cast<int>(devices.size());
  if (n < 1 || n > kMaxIsfcDevices) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", n, " devices; a link has 1 to ", kMaxIsfcDevices));
  }
  std::vector<DeviceNumber> sorted(devices.begin(), devices.end());
  std::sort(sorted.begin(), sorted.end());
  if (auto d = std::adjacent_find(sorted.begin(), sorted.end()); d != sorted.end()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": device ", d->ToString(), " given twice"));
  }

  WritePlan plan;
  plan.mode = mode;
  plan.self_lesser = self < peer;
  const absl::string_view lesser = plan.self_lesser ? self : peer;
  const absl::string_view greater = plan.self_lesser ? peer : self;
  plan.usable = mode == IsfcMode::kNaive ? n : UsableDevices(n);
  // The lesser name writes sorted[0..usable), the greater sorted[n-usable..n) from the top.
  std::vector<int> lesser_rank(n, -1), greater_rank(n, -1);
  for (int i = 0; i < plan.usable; ++i) lesser_rank[i] = i;
  if (mode == IsfcMode::kNaive) {
    for (int i = 0; i < n; ++i) greater_rank[i] = i;  // lowest free up, as the lesser
  } else {
    for (int i = 0; i < plan.usable; ++i) greater_rank[n - 1 - i] = i;
  }
  const std::string rule = n == 1    ? "1 device: both write it"
                           : n <= 8  ? absl::StrCat(n, " devices (2-8): each writes at most ", n - 1)
                                     : absl::StrCat(n, " devices (9-16): each writes at most ", n - 2);
  for (int i = 0; i < n; ++i) {
    DeviceUse u;
    u.device = sorted[i];
    const int lr = lesser_rank[i], gr = greater_rank[i];
    u.self_rank = plan.self_lesser ? lr : gr;
    u.peer_rank = plan.self_lesser ? gr : lr;
    if (mode == IsfcMode::kNaive) {
      u.why = "naive mode: both write every device, lowest free first (collisions possible)";
    } else if (lr >= 0 && gr >= 0) {
      u.why = absl::StrCat("both: ", lesser, " (lesser name) from ", sorted[0].ToString(), " up, ", greater,
                           " (greater) from ", sorted[n - 1].ToString(), " down; ", rule);
    } else if (lr >= 0) {
      u.why = absl::StrCat(lesser, " only: ", greater, " (greater name) leaves the lowest ", n - plan.usable,
                           " to it; ", rule);
    } else {
      u.why = absl::StrCat(greater, " only: ", lesser, " (lesser name) leaves the highest ", n - plan.usable,
                           " to it; ", rule);
    }
    plan.devices.push_back(std::move(u));
  }
  plan.self_order.resize(plan.usable);
  plan.peer_order.resize(plan.usable);
  for (const DeviceUse& u : plan.devices) {
    if (u.self_rank >= 0) plan.self_order[u.self_rank] = u.device;
    if (u.peer_rank >= 0) plan.peer_order[u.peer_rank] = u.device;
  }
  return plan;
}

}  // namespace hsi
