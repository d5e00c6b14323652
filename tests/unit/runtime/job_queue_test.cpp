#include "lib/runtime/job_queue.h"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "lib/uvx/uvx.h"

using namespace syncd;

namespace {

// Runs the loop until `done` or a 20 s watchdog (a lost wake-up must fail, not hang).
bool run_until(uvx::Loop& loop, const std::function<bool()>& done) {
  bool timed_out = false;
  uvx::Timer watchdog(loop, [&] {
    timed_out = true;
    loop.stop();
  });
  watchdog.start(20000);
  while (!done() && !timed_out) loop.run_once();
  return !timed_out;
}

}  // namespace

TEST_CASE("Async: sends from another thread reach the loop - and what was published before each is seen") {
  uvx::Loop loop;
  constexpr int kSends = 20000;
  std::atomic<int> published{0};
  int seen = 0;
  int calls = 0;
  uvx::Async wake(loop, [&] {
    ++calls;
    seen = published.load(std::memory_order_relaxed);
  });
  std::thread sender([&] {
    for (int i = 1; i <= kSends; ++i) {
      published.store(i, std::memory_order_relaxed);
      wake.send();
    }
  });
  REQUIRE(run_until(loop, [&] { return seen == kSends; }));
  sender.join();
  CHECK(seen == kSends);
  CHECK(calls >= 1);
  CHECK(calls <= kSends);  // coalesced, never more calls than sends
}

TEST_CASE("JobQueue: every job's completion arrives on the loop once - in posting order") {
  uvx::Loop loop;
  std::vector<int> order;
  {
    runtime::JobQueue jobs(loop);
    constexpr int kJobs = 5000;
    for (int i = 0; i < kJobs; ++i) {
      jobs.post([i, &order]() -> runtime::JobQueue::Done { return [i, &order] { order.push_back(i); }; });
    }
    REQUIRE(run_until(loop, [&] { return jobs.in_flight() == 0; }));
    REQUIRE(order.size() == static_cast<size_t>(kJobs));
    for (int i = 0; i < kJobs; ++i) {
      if (order[static_cast<size_t>(i)] != i) FAIL("completion " << i << " out of order");
    }
  }
}
