// The loop's shared inotify instance: subscribers sharing one kernel watch, letting go of it,
// and watchers of nested trees on one loop.
#include <sys/inotify.h>

#include <algorithm>
#include <cstdio>

#include "tests/unit/watch/watch_harness.h"

using namespace syncd;
using namespace syncd::watch;
using K = Event::Kind;

namespace {

// What one subscriber received: (event type bits, name) in order.
struct Seen {
  std::vector<std::pair<uint32_t, std::string>> events;
  bool has(uint32_t bits, const std::string& name) const {
    return std::any_of(events.begin(), events.end(),
                       [&](const auto& e) { return (e.first & bits) != 0 && e.second == name; });
  }
  std::function<void(const Delivery&)> handler(uvx::Loop& loop, std::function<bool()>* until) {
    return [this, &loop, until](const Delivery& d) {
      for (const inotify_event* ev : d.events) events.emplace_back(ev->mask, ev->len > 0 ? ev->name : "");
      if (*until && (*until)()) loop.stop();
    };
  }
};

bool run_until(uvx::Loop& loop, std::function<bool()>& until, std::function<bool()> pred) {
  return test::run_loop_until(loop, until, std::move(pred));
}

std::unique_ptr<Subscription> subscribe(uvx::Loop& loop, Seen& seen, std::function<bool()>* until) {
  auto s = Subscription::open(loop, seen.handler(loop, until));
  REQUIRE(s.ok());
  return std::move(*s);
}

}  // namespace

TEST_SUITE("watch.inotify_hub") {
  TEST_CASE("subscribers of one directory share its watch - each gets its own event types - the watch stays while one wants it") {
    uvx::Loop loop;
    test::TempDir t("hub");
    const std::string dir = t / "d", other = t / "o";
    ::mkdir(dir.c_str(), 0755);
    ::mkdir(other.c_str(), 0755);
    std::function<bool()> until;
    Seen a, b, c;
    auto sa = subscribe(loop, a, &until);
    auto sb = subscribe(loop, b, &until);
    auto sc = subscribe(loop, c, &until);
    auto wa = sa->add(dir, IN_CREATE);
    auto wb = sb->add(dir, IN_CLOSE_WRITE);  // not narrowing what `a` asked for
    REQUIRE(wa.ok());
    REQUIRE(wb.ok());
    CHECK(*wa == *wb);  // the kernel's one watch of the inode in this instance
    REQUIRE(sc->add(other, IN_CLOSE_WRITE).ok());

    test::write_file(dir + "/f1", "x");
    REQUIRE(run_until(loop, until, [&] { return b.has(IN_CLOSE_WRITE, "f1") && a.has(IN_CREATE, "f1"); }));
    CHECK_FALSE(a.has(IN_CLOSE_WRITE | IN_MODIFY, "f1"));  // asked for creations only
    CHECK_FALSE(b.has(IN_CREATE | IN_MODIFY, "f1"));
    CHECK(c.events.empty());

    // `a` lets go: `b` still hears the directory.
    sa->remove(*wa);
    test::write_file(dir + "/f2", "x");
    REQUIRE(run_until(loop, until, [&] { return b.has(IN_CLOSE_WRITE, "f2"); }));
    CHECK_FALSE(a.has(IN_CREATE, "f2"));
    sa.reset();
    test::write_file(dir + "/f3", "x");
    REQUIRE(run_until(loop, until, [&] { return b.has(IN_CLOSE_WRITE, "f3"); }));

    // The last one lets go: the kernel watch goes. The instance keeps its order, so once `c`
    // sees a file written after one in `d`, nothing from `d` is still on its way.
    sb->remove(*wb);
    b.events.clear();
    test::write_file(dir + "/f4", "x");
    test::write_file(other + "/cookie", "x");
    REQUIRE(run_until(loop, until, [&] { return c.has(IN_CLOSE_WRITE, "cookie"); }));
    CHECK(b.events.empty());
    // Watching it again works (a new watch for the same inode).
    auto again = sb->add(dir, IN_CLOSE_WRITE);
    REQUIRE(again.ok());
    test::write_file(dir + "/f5", "x");
    REQUIRE(run_until(loop, until, [&] { return b.has(IN_CLOSE_WRITE, "f5"); }));
  }

  TEST_CASE("a subscriber may end itself and another from its handler - the one left still hears its directory") {
    uvx::Loop loop;
    test::TempDir t("hub");
    const std::string dir = t / "d";
    ::mkdir(dir.c_str(), 0755);
    std::function<bool()> until;
    std::unique_ptr<Subscription> sa, sb, sc;
    int a_calls = 0;
    Seen c;
    auto ha = Subscription::open(loop, [&](const Delivery& d) {
      if (d.events.empty()) return;
      ++a_calls;
      sa.reset();  // itself
      sb.reset();  // and the next one, whose delivery was already made up
    });
    REQUIRE(ha.ok());
    sa = std::move(*ha);
    auto hb = Subscription::open(loop, [&](const Delivery&) { FAIL("ended before its turn"); });
    REQUIRE(hb.ok());
    sb = std::move(*hb);
    sc = subscribe(loop, c, &until);
    REQUIRE(sa->add(dir, IN_CLOSE_WRITE).ok());
    REQUIRE(sb->add(dir, IN_CLOSE_WRITE).ok());
    REQUIRE(sc->add(dir, IN_CLOSE_WRITE).ok());
    test::write_file(dir + "/f", "x");
    REQUIRE(run_until(loop, until, [&] { return c.has(IN_CLOSE_WRITE, "f"); }));
    CHECK(a_calls == 1);
    CHECK_FALSE(sa);
    CHECK_FALSE(sb);
    test::write_file(dir + "/g", "x");
    REQUIRE(run_until(loop, until, [&] { return c.has(IN_CLOSE_WRITE, "g"); }));
  }

  TEST_CASE("watchers of nested trees on one loop: each sees its own tree - a move between them - the outer one gone leaves the inner one working") {
    uvx::Loop loop;
    test::TempDir t("hub");
    const std::string outer_path = t / "outer", inner_path = t / "outer/inner";
    ::mkdir(outer_path.c_str(), 0755);
    ::mkdir(inner_path.c_str(), 0755);
    ::mkdir((inner_path + "/sub").c_str(), 0755);
    std::function<bool()> until;
    test::LoopTree outer_tree(loop, outer_path, until), inner_tree(loop, inner_path, until);
    auto& outer = outer_tree.w;
    auto& inner = inner_tree.w;
    REQUIRE(outer->start().ok());
    REQUIRE(inner->start().ok());
    auto outer_saw = [&](K k, const std::string& path, const std::string& from = "") { return outer_tree.saw(k, path, from); };
    auto inner_saw = [&](K k, const std::string& path, const std::string& from = "") { return inner_tree.saw(k, path, from); };

    // A rename inside the inner tree pairs in both.
    test::write_file(inner_path + "/sub/a", "a");
    REQUIRE(run_until(loop, until, [&] {
      return outer_saw(K::changed, "inner/sub/a") && inner_saw(K::changed, "sub/a");
    }));
    REQUIRE(::rename((inner_path + "/sub/a").c_str(), (inner_path + "/b").c_str()) == 0);
    REQUIRE(run_until(loop, until, [&] {
      return outer_saw(K::renamed, "inner/b", "inner/sub/a") && inner_saw(K::renamed, "b", "sub/a");
    }));
    // Outer-only to inner: a rename for the outer tree, a creation for the inner one.
    test::write_file(outer_path + "/x", "x");
    REQUIRE(run_until(loop, until, [&] { return outer_saw(K::changed, "x"); }));
    REQUIRE(::rename((outer_path + "/x").c_str(), (inner_path + "/x").c_str()) == 0);
    REQUIRE(run_until(loop, until, [&] {
      return outer_saw(K::renamed, "inner/x", "x") && inner_saw(K::changed, "x");
    }));
    CHECK_FALSE(inner_saw(K::removed, "x"));
    // And back out: a removal for the inner tree.
    REQUIRE(::rename((inner_path + "/x").c_str(), (outer_path + "/y").c_str()) == 0);
    REQUIRE(run_until(loop, until, [&] {
      return outer_saw(K::renamed, "y", "inner/x") && inner_saw(K::removed, "x");
    }));

    // The outer watcher ends; the watches it shared with the inner one stay.
    outer.reset();
    test::write_file(inner_path + "/sub/after", "z");
    REQUIRE(run_until(loop, until, [&] { return inner_saw(K::changed, "sub/after"); }));
    inner.reset();
    loop.run_once();
  }
}
