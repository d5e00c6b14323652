#include "lib/fs/writers.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/base/unique_fd.h"
#include "tests/support/tmpdir.h"

using namespace syncd;

TEST_CASE("writers: a file open for writing elsewhere is told from one that is not") {
  ::signal(SIGIO, SIG_IGN);  // writers.h: the probe lease may be broken
  test::TempDir t("writers");
  const std::string f = t / "ca.pem";
  test::write_file(f, "cert\n");
  UniqueFd r(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(r);
  CHECK(fs::writers_of(r.get()) == fs::Writers::none);
  {
    // Another process holds it open for writing (as a program still writing it would).
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      const int w = ::open(f.c_str(), O_WRONLY | O_APPEND);
      (void)!::write(ready[1], "k", 1);
      ::pause();  // until killed
      ::_exit(w >= 0 ? 0 : 1);
    }
    ::close(ready[1]);
    char c = 0;
    REQUIRE(::read(ready[0], &c, 1) == 1);
    ::close(ready[0]);
    CHECK(fs::writers_of(r.get()) == fs::Writers::some);
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
  }
  CHECK(fs::writers_of(r.get()) == fs::Writers::none);  // the writer is gone
  // Readers are no writers; a second read-only open does not count.
  UniqueFd r2(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
  CHECK(fs::writers_of(r.get()) == fs::Writers::none);
}

TEST_CASE("writers: no answer where there are no leases") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  UniqueFd a(p[0]), b(p[1]);
  CHECK(fs::writers_of(a.get()) == fs::Writers::unknown);  // leases are for regular files only
}
