#include "lib/base/fd_wait.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>

namespace syncd {

int Deadline::left_ms() const noexcept {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at_ - std::chrono::steady_clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

int wait_readable(int fd, const Deadline& d) noexcept {
  for (;;) {
    const int left = d.left_ms();
    if (left == 0) return 0;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, left);
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return -1;
  }
}

}  // namespace syncd
