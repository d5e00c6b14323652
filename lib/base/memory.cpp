#include "lib/base/memory.h"

#include <cstddef>  // defines __GLIBC__ on glibc, which the test below needs

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace syncd::base {

void keep_freed_memory() noexcept {
#if defined(__GLIBC__)
  // Setting either fixes both: glibc stops adjusting them itself.
  (void)::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  (void)::mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
}

void release_freed_memory() noexcept {
#if defined(__GLIBC__)
  (void)::malloc_trim(0);
#endif
}

}  // namespace syncd::base
