// hsi/fd.h: UniqueFd, a move-only owner of one file descriptor.
//
// Thread safety: a UniqueFd is not shared between threads; the fd it holds
// may be used from any thread like any fd.
#ifndef HSI_FD_H_
#define HSI_FD_H_

#include <utility>
#include "hsi/export.h"

namespace hsi {

class HSI_EXPORT UniqueFd {
 public:
  UniqueFd() = default;
  // Takes ownership of `fd` (-1 means empty).
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership; the caller closes the returned fd.
  int Release() { return std::exchange(fd_, -1); }
  // Closes the held fd, if any.
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

}  // namespace hsi

#endif  // HSI_FD_H_
