// hsi/poller.h: waits on many NICs at once, with io_uring.
//
// Each registered NIC is armed (Nic::PrepareWait) and its doorbell
// polled through one io_uring; Wait() returns the NICs that have a frame,
// a status or a control event waiting. Drain each with
// Nic::Receive(..., Wait::Never()) until kDeadlineExceeded, then Wait()
// again. Nothing spins: an idle Poller sleeps in the kernel.
//
// Wait() also watches the control socket of each NIC's Session: when hsid
// dies it wakes, and while hsid is away it wakes when the Session is due to
// reconnect, so an idle process re-registers its NICs and links with a
// restarted hsid (DESIGN invariant 4) without any frame to wake it.
//
// Thread safety: one thread at a time, the same thread that uses the NICs'
// Session. The NICs must outlive their registration.
#ifndef HSI_POLLER_H_
#define HSI_POLLER_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsi/nic.h"
#include "hsi/export.h"

namespace hsi {

class HSI_EXPORT Poller {
 public:
  // An io_uring with room for `entries` NICs' polls.
  static absl::StatusOr<Poller> Create(unsigned entries = 64);
  Poller();
  ~Poller();
  Poller(Poller&&) noexcept;
  Poller& operator=(Poller&&) noexcept;

  // Registers `nic` (not owned). kAlreadyExists if it is registered.
  absl::Status Add(Nic* nic);
  // Unregisters `nic`; a no-op if it is not registered.
  void Remove(Nic* nic);
  // The NICs with something waiting, as soon as there is one, or an empty
  // list at `deadline`.
  absl::StatusOr<std::vector<Nic*>> Wait(absl::Time deadline = absl::InfiniteFuture());

 private:
  struct HSI_LOCAL State;
  std::unique_ptr<State> state_;
};

}  // namespace hsi

#endif  // HSI_POLLER_H_
