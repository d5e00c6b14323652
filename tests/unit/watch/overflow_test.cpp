// Tests that change system-wide inotify limits: run serially (CTest RUN_SERIAL), always restored.
#include <algorithm>
#include <fstream>

#include "tests/unit/watch/watch_harness.h"

using namespace syncd;
using namespace syncd::watch;

namespace {

// Sets /proc/sys/fs/inotify/<name> for the test's lifetime.
struct Sysctl {
  std::string path;
  std::string old;
  Sysctl(const std::string& name, const std::string& value) : path("/proc/sys/fs/inotify/" + name) {
    test::require_root();
    std::ifstream in(path);
    in >> old;
    std::ofstream(path) << value;
  }
  ~Sysctl() { std::ofstream(path) << old; }
};

}  // namespace

TEST_SUITE("watch.limits") {
  TEST_CASE("queue overflow is reported as a batch that asks for a full rescan") {
    test::WatchHarness h;
    {
      Sysctl small("max_queued_events", "16");  // applies to instances created now
      REQUIRE(h.w->start().ok());
    }
    for (int i = 0; i < 200; ++i) test::write_file(h.p("f" + std::to_string(i)), "x");
    REQUIRE(h.run_until([&] {
      for (const auto& b : h.batches) {
        if (b.overflow) return true;
      }
      return false;
    }));
    // And the watcher keeps working afterwards.
    test::write_file(h.p("after"), "a");
    REQUIRE(h.run_until([&] { return h.saw(Event::Kind::changed, "after"); }));
  }

  TEST_CASE("running out of watches is a clear error naming the sysctl - never silent") {
    test::WatchHarness h;
    for (int i = 0; i < 40; ++i) ::mkdir(h.p("d" + std::to_string(i)).c_str(), 0755);
    Sysctl few("max_user_watches", "20");
    auto st = h.w->start();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().is_errno(ENOSPC));
    CHECK(st.error().message().find("fs.inotify.max_user_watches") != std::string::npos);
    CHECK(st.error().message().find("needed") != std::string::npos);
  }
}

TEST_SUITE("watch.limits") {
  TEST_CASE("watchers sharing the loop's inotify instance each get the overflow - and each keeps working") {
    uvx::Loop loop;
    test::TempDir t("hub");
    std::function<bool()> until;
    test::LoopTree a(loop, t / "a", until), b(loop, t / "b", until);
    {
      Sysctl small("max_queued_events", "16");  // applies to the instance made now, the loop's
      REQUIRE(a.w->start().ok());
    }
    REQUIRE(b.w->start().ok());
    for (int i = 0; i < 200; ++i) test::write_file(t / ("a/f" + std::to_string(i)), "x");  // only a's tree
    REQUIRE(test::run_loop_until(loop, until, [&] { return a.overflowed() && b.overflowed(); }));
    test::write_file(t / "a/after", "a");
    test::write_file(t / "b/after", "b");
    REQUIRE(test::run_loop_until(loop, until, [&] {
      return a.saw(Event::Kind::changed, "after") && b.saw(Event::Kind::changed, "after");
    }));
  }

  TEST_CASE("no inotify instance left: a clear error naming fs.inotify.max_user_instances") {
    Sysctl none("max_user_instances", "0");  // inotify_init1 fails for every user now
    test::WatchHarness h;
    auto st = h.w->start();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().is_errno(EMFILE));
    CHECK(st.error().message().find("fs.inotify.max_user_instances") != std::string::npos);
  }
}
