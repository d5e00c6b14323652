// File: lib/base/unique_fd.h
//
// UniqueFd owns one file descriptor and closes it on destruction. Move-only.
// Thread affinity: none (an fd is a plain value; do not share one object between threads).
//
//   UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
//   if (!fd) return Error::from_errno("open " + path);
//   ::read(fd.get(), buf, n);
#pragma once

#include <unistd.h>

#include <utility>

#include "lib/base/result.h"

namespace syncd {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // Closes and reports close()'s own error (it matters after writes: NFS, quota).
  Status close() noexcept {
    int fd = std::exchange(fd_, -1);
    if (fd >= 0 && ::close(fd) != 0) return Error::from_errno("close");
    return {};
  }

 private:
  int fd_ = -1;
};

}  // namespace syncd
