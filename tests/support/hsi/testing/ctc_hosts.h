// hsi/testing/ctc_hosts.h: CtcHosts and device pairs against a private
// hsid, for the tests of CTC devices through hsid (tests/hsid, tests/tools).
// Header-only: it needs libhsi, which hsi::testing does not link; the tests
// that include it do.
//
// Thread safety: the functions may be called from any thread; each opens
// what it returns.
#ifndef HSI_TESTING_CTC_HOSTS_H_
#define HSI_TESTING_CTC_HOSTS_H_

#include <future>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "hsi/ctc_host.h"

namespace hsi::testing {

// A CtcHost of LPAR `lpar` ("" for admin calls only) on hsid at `socket`.
inline absl::StatusOr<std::unique_ptr<CtcHost>> ConnectCtcHost(const std::string& socket, const std::string& lpar) {
  CtcHostOptions o;
  o.socket_path = socket;
  o.lpar = lpar;
  return CtcHost::Connect(o);
}

// hsid's config for a CTC test: LPARs of any name for this uid, this uid
// an admin if `admin`, and one [[ctc]] between LPAR1 and LPAR2 with the
// TOML lines `ctc` (e.g. "devices = \"D000-D00F\"\nblock_size = \"4K\"").
inline std::string CtcConfig(const std::string& ctc, bool admin = true) {
  return absl::StrCat(admin ? "[hsid]\nadmin_uids = [\"self\"]\n" : "",
                      "[[lpar]]\nname = \"*\"\nuids = [\"self\"]\n"
                      "[[ctc]]\nlpars = [\"LPAR1\", \"LPAR2\"]\n",
                      ctc, "\n");
}

// Opens device `a` on h1 and `b` on h2 at once (each Open waits for the
// other end), by `deadline`. The first error, naming which end.
inline absl::StatusOr<std::pair<std::shared_ptr<CtcDevice>, std::shared_ptr<CtcDevice>>> OpenBothEnds(
    CtcHost& h1, DeviceNumber a, CtcHost& h2, DeviceNumber b, absl::Time deadline) {
  auto f = std::async(std::launch::async, [&] { return h2.Open(b, deadline); });
  absl::StatusOr<std::shared_ptr<CtcDevice>> d1 = h1.Open(a, deadline);
  absl::StatusOr<std::shared_ptr<CtcDevice>> d2 = f.get();
  if (!d1.ok()) return absl::Status(d1.status().code(), absl::StrCat(h1.lpar(), ": ", d1.status().message()));
  if (!d2.ok()) return absl::Status(d2.status().code(), absl::StrCat(h2.lpar(), ": ", d2.status().message()));
  return std::pair{*d1, *d2};
}

}  // namespace hsi::testing

#endif  // HSI_TESTING_CTC_HOSTS_H_
