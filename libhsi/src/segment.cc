#include "hsi/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "internal/ring_layout.h"
#include "internal/syscall.h"

namespace hsi {
namespace {

using internal::ErrnoStatus;

constexpr size_t kGuard = 4096;  // PROT_NONE page after every mapping

// Checks that `fd` is a memfd of `size` bytes that cannot shrink or grow.
absl::Status CheckSealedMemfd(int fd, size_t size, const char* who) {
  if (absl::Status s = internal::CheckSeals(fd, F_SEAL_SHRINK | F_SEAL_GROW, who); !s.ok()) return s;
  struct stat st;
  if (::fstat(fd, &st) < 0) return ErrnoStatus(errno, absl::StrCat(who, ": fstat"));
  if (static_cast<size_t>(st.st_size) != size) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, ": memfd is ", st.st_size, " bytes, expected ", size));
  }
  return absl::OkStatus();
}

// Maps `fd` at the start of a reserved region one guard page longer, so that
// an access past the end faults instead of reading a neighbouring mapping.
absl::StatusOr<void*> MapWithGuard(int fd, size_t size, int prot, const char* who) {
  void* region = ::mmap(nullptr, size + kGuard, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (region == MAP_FAILED) return ErrnoStatus(errno, absl::StrCat(who, ": mmap reserve"));
  void* p = ::mmap(region, size, prot, MAP_SHARED | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    ::munmap(region, size + kGuard);
    return ErrnoStatus(err, absl::StrCat(who, ": mmap"));
  }
  return p;
}

}  // namespace

absl::StatusOr<UniqueFd> Segment::CreateMemfd(absl::string_view name, size_t size) {
  std::string n(name.substr(0, 200));
  UniqueFd fd(::memfd_create(n.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return ErrnoStatus(errno, "memfd_create");
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0) {
    return ErrnoStatus(errno, absl::StrCat("ftruncate memfd to ", size, " bytes"));
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
    return ErrnoStatus(errno, "seal memfd shrink|grow");
  }
  return fd;
}

absl::StatusOr<Segment> Segment::MapOwner(UniqueFd fd, size_t size) {
  if (absl::Status s = CheckSealedMemfd(fd.get(), size, "owner segment"); !s.ok()) return s;
  int seals = ::fcntl(fd.get(), F_GET_SEALS);
  if (seals & (F_SEAL_FUTURE_WRITE | F_SEAL_WRITE)) {
    return absl::FailedPreconditionError(
        "owner segment: memfd is already sealed against writes; only its "
        "owner maps it writable, once");
  }
  absl::StatusOr<void*> p = MapWithGuard(fd.get(), size, PROT_READ | PROT_WRITE, "owner segment");
  if (!p.ok()) return p.status();
  Segment seg;
  seg.fd_ = std::move(fd);
  seg.data_ = *p;
  seg.size_ = size;
  seg.writable_ = true;
  // From here no one can map it writable or write() to it again; our own
  // mapping stays writable (invariant 1).
  if (::fcntl(seg.fd_.get(), F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0) {
    return ErrnoStatus(errno, "owner segment: seal future-write");
  }
  return seg;
}

absl::StatusOr<Segment> Segment::MapPeer(UniqueFd fd, size_t size) {
  if (absl::Status s = CheckSealedMemfd(fd.get(), size, "peer segment"); !s.ok()) return s;
  absl::StatusOr<void*> p = MapWithGuard(fd.get(), size, PROT_READ, "peer segment");
  if (!p.ok()) return p.status();
  Segment seg;
  seg.fd_ = std::move(fd);
  seg.data_ = *p;
  seg.size_ = size;
  seg.writable_ = false;
  return seg;
}

Segment::~Segment() { Unmap(); }

Segment::Segment(Segment&& other) noexcept
    : fd_(std::move(other.fd_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      writable_(std::exchange(other.writable_, false)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    Unmap();
    fd_ = std::move(other.fd_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    writable_ = std::exchange(other.writable_, false);
  }
  return *this;
}

void Segment::UnmapView() const {
  if (data_ != nullptr) ::munmap(data_, size_ + kGuard);
}

void Segment::Unmap() {
  if (data_ != nullptr) ::munmap(data_, size_ + kGuard);
  data_ = nullptr;
  size_ = 0;
}

absl::StatusOr<UniqueFd> Segment::DupFd() const {
  int fd = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "segment: dup");
  return UniqueFd(fd);
}

}  // namespace hsi
