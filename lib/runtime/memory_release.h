// File: lib/runtime/memory_release.h
//
// MemoryRelease: hands the heap memory a burst of work freed back to the system once the work is
// over (base/memory.h keeps it for reuse while work goes on). It looks at the node after every
// turn of the loop: while the node is busy, a release is due kReleaseAfterMs later (at most one
// pending); when it turns idle, the release moves to kReleaseAfterMs after that. A node with
// nothing to do runs no timer for it, so an idle daemon sleeps until a watch, a peer or a
// keepalive wakes it (DESIGN.md §11).
// Thread affinity: loop thread.
//
//   runtime::MemoryRelease r(loop, [&] { return node.idle(); });
#pragma once

#include <cstdint>
#include <functional>

#include "lib/uvx/uvx.h"

namespace syncd::runtime {

class MemoryRelease {
 public:
  static constexpr uint64_t kReleaseAfterMs = 15'000;

  // idle(): the node has nothing left to do. release: what frees memory (tests count calls).
  MemoryRelease(uvx::Loop& loop, std::function<bool()> idle, uint64_t after_ms = kReleaseAfterMs,
                std::function<void()> release = {});
  MemoryRelease(const MemoryRelease&) = delete;
  MemoryRelease& operator=(const MemoryRelease&) = delete;

  bool pending() const noexcept { return timer_.active(); }

 private:
  void after_turn();

  std::function<bool()> idle_;
  std::function<void()> release_;
  const uint64_t after_ms_;
  bool was_busy_ = false;
  uvx::Timer timer_;
  uvx::Check check_;
};

}  // namespace syncd::runtime
