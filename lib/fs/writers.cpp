#include "lib/fs/writers.h"

#include <fcntl.h>

#include <cerrno>

namespace syncd::fs {

Writers writers_of(int fd) noexcept {
  if (::fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
    (void)::fcntl(fd, F_SETLEASE, F_UNLCK);
    return Writers::none;
  }
  return errno == EAGAIN ? Writers::some : Writers::unknown;
}

}  // namespace syncd::fs
