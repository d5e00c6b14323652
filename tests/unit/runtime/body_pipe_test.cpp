#include "lib/runtime/body_pipe.h"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using namespace syncd;
using runtime::BodyPipe;

TEST_CASE("body pipe: chunks come out in order - then the end") {
  BodyPipe p({});
  p.push(Bytes{1, 2});
  p.push(Bytes{3});
  p.finish();
  auto a = p.pop();
  REQUIRE(a.ok());
  CHECK(**a == Bytes{1, 2});
  auto b = p.pop();
  REQUIRE(b.ok());
  CHECK(**b == Bytes{3});
  auto end = p.pop();
  REQUIRE(end.ok());
  CHECK_FALSE(end->has_value());
}

TEST_CASE("body pipe: abort wakes a reader blocked on an empty pipe with an error") {
  BodyPipe p({});
  std::atomic<int> state{0};
  std::thread reader([&] {
    auto r = p.pop();
    state = r.ok() ? 1 : 2;
  });
  p.abort();
  reader.join();
  CHECK(state == 2);
}

TEST_CASE("body pipe: the backlog is reported - on_low fires when it falls under kLow") {
  std::atomic<int> lows{0};
  BodyPipe p([&] { ++lows; });
  const size_t chunk = 1u << 20;
  size_t backlog = 0;
  for (size_t i = 0; i < BodyPipe::kHigh / chunk + 1; ++i) backlog = p.push(Bytes(chunk));
  CHECK(backlog > BodyPipe::kHigh);
  while (lows == 0) {
    auto c = p.pop();
    REQUIRE(c.ok());
    REQUIRE(c->has_value());
  }
  CHECK(lows == 1);
}

TEST_CASE("body pipe: after the reader closes - pushes are dropped and the loop is told to read on") {
  std::atomic<int> lows{0};
  BodyPipe p([&] { ++lows; });
  p.push(Bytes(100));
  p.close_reader();
  CHECK(lows == 1);
  CHECK(p.push(Bytes(1u << 20)) == 0);  // dropped: nothing waits
}
