// File: lib/base/fd_wait.h
//
// Blocking waits with a deadline, for the few places that talk to another process without a
// loop (`syncd status`, attach joining its daemon, `ssh -G`): each must give up on a peer that
// is stopped or hung instead of waiting for good.
// Thread affinity: none.
//
//   const Deadline d(5000);
//   for (;;) {
//     const int r = wait_readable(fd, d);
//     if (r == 0) return timed_out();
//     if (r < 0) return Error::from_errno("poll");
//     ... read(fd) ...
//   }
#pragma once

#include <chrono>

namespace syncd {

class Deadline {
 public:
  explicit Deadline(int ms) noexcept : at_(std::chrono::steady_clock::now() + std::chrono::milliseconds(ms)) {}
  // Milliseconds left, 0 once it passed.
  int left_ms() const noexcept;

 private:
  std::chrono::steady_clock::time_point at_;
};

// Waits until `fd` is readable (or at its end, or in error: a read says which) or `d` passes:
// 1 ready, 0 the deadline passed, -1 poll failed (errno). Interrupted waits go on.
int wait_readable(int fd, const Deadline& d) noexcept;

}  // namespace syncd
