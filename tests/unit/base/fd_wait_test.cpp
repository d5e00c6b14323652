// Deadline waits on a real pipe: what a peer that never answers, answers, or goes away looks like.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include "lib/base/fd_wait.h"
#include "lib/base/unique_fd.h"

using namespace syncd;

TEST_SUITE("base.fd_wait") {
  TEST_CASE("a silent writer times out - a byte or the writer's end makes the fd ready") {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    UniqueFd rd(p[0]), wr(p[1]);
    CHECK(wait_readable(rd.get(), Deadline(30)) == 0);
    const Deadline passed(0);
    CHECK(passed.left_ms() == 0);
    REQUIRE(::write(wr.get(), "x", 1) == 1);
    CHECK(wait_readable(rd.get(), passed) == 0);  // a deadline that passed does not look
    CHECK(wait_readable(rd.get(), Deadline(5000)) == 1);
    char c = 0;
    REQUIRE(::read(rd.get(), &c, 1) == 1);
    wr.reset();
    CHECK(wait_readable(rd.get(), Deadline(5000)) == 1);  // end of file: the read says 0
    CHECK(::read(rd.get(), &c, 1) == 0);
    const Deadline long_one(60000);
    CHECK(long_one.left_ms() > 59000);
    CHECK(long_one.left_ms() <= 60000);
  }
}
