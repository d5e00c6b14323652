#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

using namespace syncd;

namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return Error::make(errc::limit_exceeded, "value " + std::to_string(v));
  return v;
}

Result<int> doubled(int v) {
  SYNCD_TRY_ASSIGN(x, parse_positive(v));
  return x * 2;
}

Status check(int v) {
  SYNCD_TRY(parse_positive(v));
  return {};
}

}  // namespace

TEST_SUITE("base.result") {
  TEST_CASE("values and errors propagate through the macros") {
    auto ok = doubled(21);
    REQUIRE(ok.ok());
    CHECK(*ok == 42);
    auto bad = doubled(-1);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().is(errc::limit_exceeded));
    CHECK(bad.error().message() == "value -1: limit exceeded");
    CHECK(check(3).ok());
    CHECK_FALSE(check(0).ok());
  }

  TEST_CASE("errno errors carry the errno text and a retry condition") {
    Error e = Error::from_errno("open a/b", ENOENT);
    CHECK(e.message() == "open a/b: No such file or directory");
    CHECK(e.is_errno(ENOENT));
    CHECK(e.cond() == Cond::rescan);
    CHECK(Error::from_errno("write x", ENOSPC).cond() == Cond::needs_operator);
    CHECK(Error::make(errc::corrupt, "frame").cond() == Cond::corrupt);
    CHECK(Error::from_errno("x", EINTR).cond() == Cond::retry_call);
  }

  TEST_CASE("wrap prepends outer context") {
    Error e = Error::make(errc::verify_failed, "inner").wrap("apply certs/a.pem");
    CHECK(e.message() == "apply certs/a.pem: inner: SHA-256 verification failed");
  }

  TEST_CASE("UniqueFd closes once and reports close errors") {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    {
      UniqueFd a(p[0]);
      UniqueFd b(std::move(a));
      CHECK_FALSE(a);
      CHECK(b.get() == p[0]);
    }
    CHECK(::fcntl(p[0], F_GETFD) == -1);  // closed by b's destructor
    UniqueFd w(p[1]);
    CHECK(w.close().ok());
    CHECK_FALSE(w);
  }
}
