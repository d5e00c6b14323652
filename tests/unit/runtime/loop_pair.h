// File: tests/unit/runtime/loop_pair.h
//
// What the runtime unit tests share: a HELLO for a test node, and a real loop with a socketpair
// whose run_until() is the barrier (a condition checked every millisecond, with a timeout).
#pragma once

#include <doctest/doctest.h>
#include <sys/socket.h>

#include <functional>
#include <string>

#include "lib/uvx/uvx.h"
#include "protocol/limits.h"
#include "protocol/messages.h"

namespace syncd::test {

inline protocol::Hello hello(uint64_t node) {
  return protocol::Hello{protocol::kHelloMagic, protocol::kProtocolVersion, protocol::kProtocolVersion, node,
                         "n" + std::to_string(node), "c", node * 10, protocol::kAllCapabilities};
}

// Runs `loop` one turn at a time until `done`, or fails after `timeout_ms` (a lost wake-up must
// fail, not hang). Unlike Pair::run_until, no timer of its own ticks in between: the turns are
// the test's.
inline bool run_turns_until(uvx::Loop& loop, const std::function<bool()>& done, uint64_t timeout_ms = 20000) {
  bool timed_out = false;
  uvx::Timer watchdog(loop, [&] { timed_out = true; });
  watchdog.start(timeout_ms);
  while (!done() && !timed_out) loop.run_once();
  return !timed_out;
}

struct Pair {
  uvx::Loop loop;
  int sv[2];
  Pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0); }
  // Runs the loop until `pred` or the timeout.
  bool run_until(const std::function<bool()>& pred, uint64_t timeout_ms = 5000) {
    bool timed_out = false;
    uvx::Timer check(loop, [&] {
      if (pred()) loop.stop();
    });
    uvx::Timer timeout(loop, [&] {
      timed_out = true;
      loop.stop();
    });
    check.start(0, 1);
    timeout.start(timeout_ms);
    loop.run();
    return !timed_out && pred();
  }
};

}  // namespace syncd::test
