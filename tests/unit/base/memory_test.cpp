#include "lib/base/memory.h"

#include <doctest/doctest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

// The sanitizers bring their own allocator, which neither takes mallopt nor reports mallinfo.
#if defined(__SANITIZE_ADDRESS__)
#define SYNCD_OWN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SYNCD_OWN_ALLOCATOR 1
#endif
#endif

#if !defined(SYNCD_OWN_ALLOCATOR)
TEST_CASE("freed memory is kept for reuse and handed back on release") {
  using namespace syncd;
  base::keep_freed_memory();
  constexpr size_t kSize = 8u << 20;  // a BodyPipe's worth of chunks; glibc's default would mmap it
  const struct mallinfo2 before = ::mallinfo2();
  void* p = std::malloc(kSize);
  REQUIRE(p != nullptr);
  std::memset(p, 1, kSize);
  const struct mallinfo2 during = ::mallinfo2();
  CHECK(during.hblkhd == before.hblkhd);          // from the heap, not a mapping of its own
  CHECK(during.arena >= before.arena + kSize);
  std::free(p);
  const struct mallinfo2 freed = ::mallinfo2();
  CHECK(freed.arena == during.arena);            // kept: the next buffer needs no page faults
  CHECK(freed.fordblks >= kSize);
  base::release_freed_memory();
  const struct mallinfo2 released = ::mallinfo2();
  CHECK(released.arena + kSize / 2 < during.arena);  // handed back to the kernel
}
#endif
