#include "lib/runtime/job_queue.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "lib/uvx/uvx.h"
#include "tests/unit/runtime/loop_pair.h"

using namespace syncd;


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
  REQUIRE(test::run_turns_until(loop, [&] { return seen == kSends; }));
  sender.join();
  CHECK(seen == kSends);
  CHECK(calls >= 1);
  CHECK(calls <= kSends);  // coalesced, never more calls than sends
}

TEST_CASE("JobQueue: every job's completion arrives on the loop once - in posting order") {
  uvx::Loop loop;
  std::vector<int> order;
  {
    runtime::JobQueue jobs(loop, "syncd-test");
    constexpr int kJobs = 5000;
    for (int i = 0; i < kJobs; ++i) {
      jobs.post([i, &order]() -> runtime::JobQueue::Done { return [i, &order] { order.push_back(i); }; });
    }
    REQUIRE(test::run_turns_until(loop, [&] { return jobs.in_flight() == 0; }));
    REQUIRE(order.size() == static_cast<size_t>(kJobs));
    for (int i = 0; i < kJobs; ++i) {
      if (order[static_cast<size_t>(i)] != i) FAIL("completion " << i << " out of order");
    }
  }
}

TEST_CASE("Poll: re-asserting the same interest keeps it - stop silences it - start brings it back") {
  uvx::Loop loop;
  int p[2];
  REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
  int readable = 0;
  uvx::Poll poll(loop, p[0], [&](int status, int events) {
    REQUIRE(status == 0);
    if (events & UV_READABLE) {
      ++readable;
      char buf[16];
      while (::read(p[0], buf, sizeof buf) > 0) {
      }
    }
  });
  REQUIRE(poll.start(UV_READABLE).ok());
  REQUIRE(poll.start(UV_READABLE).ok());  // a no-op now: must not drop the registration
  REQUIRE(::write(p[1], "x", 1) == 1);
  REQUIRE(test::run_turns_until(loop, [&] { return readable == 1; }));

  poll.stop();
  poll.stop();  // twice: harmless
  REQUIRE(::write(p[1], "y", 1) == 1);
  bool ticked = false;
  uvx::Timer tick(loop, [&] { ticked = true; });
  tick.start(50);
  REQUIRE(test::run_turns_until(loop, [&] { return ticked; }));
  CHECK(readable == 1);  // stopped: the byte waits

  REQUIRE(poll.start(UV_READABLE).ok());
  REQUIRE(test::run_turns_until(loop, [&] { return readable == 2; }));
  poll.stop();  // out of epoll before the fd closes
  ::close(p[0]);
  ::close(p[1]);
}
