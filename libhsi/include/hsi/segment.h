// hsi/segment.h: Segment, one mapped memfd of shared memory.
//
// Invariant 1 of DESIGN.md: every byte of shared memory has one writer.
// A segment is created sealed against shrink and grow. Its owner maps it
// read-write and then seals F_SEAL_FUTURE_WRITE | F_SEAL_SEAL, after which
// no one (not even a peer reopening /proc/self/fd/N with O_RDWR) can map it
// writable or write() to it again; the owner's own mapping stays writable.
// The peer maps it read-only, after checking the shrink/grow seals so that
// the owner cannot truncate it under the peer (which would be SIGBUS).
//
// Thread safety: the mapping is plain memory; what is stored in it and how
// it is ordered is the business of the layout on top (hsi/ring.h).
#ifndef HSI_SEGMENT_H_
#define HSI_SEGMENT_H_

#include <cstddef>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "hsi/fd.h"
#include "hsi/export.h"

namespace hsi {

class HSI_EXPORT Segment {
 public:
  // Creates an anonymous memfd of `size` bytes (zero-filled), close-on-exec,
  // sealed F_SEAL_SHRINK | F_SEAL_GROW, not mapped. `name` only shows in
  // /proc/PID/fd and /proc/PID/maps; it is not a path anyone can open.
  static absl::StatusOr<UniqueFd> CreateMemfd(absl::string_view name,
                                              size_t size);

  // Maps `fd` read-write as its owner, then seals it
  // F_SEAL_FUTURE_WRITE | F_SEAL_SEAL. Fails with kInvalidArgument if the
  // fd is not a memfd of exactly `size` bytes sealed against shrink and grow,
  // and with kFailedPrecondition if it is already sealed against writes.
  static absl::StatusOr<Segment> MapOwner(UniqueFd fd, size_t size);

  // Maps a peer's segment read-only. Fails with kInvalidArgument if the fd
  // is not a memfd of exactly `size` bytes sealed against shrink and grow.
  static absl::StatusOr<Segment> MapPeer(UniqueFd fd, size_t size);

  Segment() = default;
  ~Segment();
  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // The mapping. Writable only for a segment mapped with MapOwner().
  void* data() const { return data_; }
  size_t size() const { return size_; }
  bool writable() const { return writable_; }
  int fd() const { return fd_.get(); }
  // A new fd for the same memfd, to hand to a peer (e.g. by SCM_RIGHTS).
  absl::StatusOr<UniqueFd> DupFd() const;
  // Gives up the fd (the caller owns it; fd() is -1 afterwards); the
  // mapping stays until the Segment goes. For holders that must not keep
  // descriptors open in a program they do not own (hsi-run's preload).
  UniqueFd ReleaseFd() { return std::move(fd_); }
  // Unmaps the mapping in the calling process only, leaving the object as
  // it is: for a Segment in memory shared by the processes of a fork, when
  // one of them lets go while others keep using it. The object must not be
  // used by this process afterwards (nor destroyed by it).
  void UnmapView() const;

 private:
  void Unmap();
  UniqueFd fd_;
  void* data_ = nullptr;
  size_t size_ = 0;
  bool writable_ = false;
};

}  // namespace hsi

#endif  // HSI_SEGMENT_H_
