#include "lib/runtime/memory_release.h"

#include <utility>

#include "lib/base/log.h"
#include "lib/base/memory.h"
#include "lib/runtime/resources.h"

namespace syncd::runtime {
namespace {

void release_and_log() {
  const uint64_t before = process_memory().rss_bytes >> 10;
  base::release_freed_memory();
  log::get(log::Module::runtime).debug("work over: freed memory handed back, resident {} -> {} KiB", before,
                                       process_memory().rss_bytes >> 10);
}

}  // namespace

MemoryRelease::MemoryRelease(uvx::Loop& loop, std::function<bool()> idle, uint64_t after_ms,
                             std::function<void()> release)
    : idle_(std::move(idle)),
      release_(release ? std::move(release) : std::function<void()>(release_and_log)),
      after_ms_(after_ms),
      timer_(loop, [this] { release_(); }),
      check_(loop, [this] { after_turn(); }) {}

void MemoryRelease::after_turn() {
  // A turn runs timers, then polls, then checks: the release's own timer is always followed by a
  // poll that waits for something else before this runs again, so it never re-arms itself.
  if (!idle_()) {
    was_busy_ = true;
    if (!timer_.active()) timer_.start(after_ms_);
  } else if (was_busy_) {
    was_busy_ = false;
    timer_.start(after_ms_);  // restarted: counted from the end of the work
  }
}

}  // namespace syncd::runtime
