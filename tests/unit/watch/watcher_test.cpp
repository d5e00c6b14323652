#include <cstdio>

#include "tests/unit/watch/watch_harness.h"

using namespace syncd;
using namespace syncd::watch;
using K = Event::Kind;
using test::WatchHarness;

TEST_SUITE("watch.watcher") {
  TEST_CASE("a written and closed file arrives in one batch without a timer") {
    WatchHarness h;
    REQUIRE(h.w->start().ok());
    test::write_file(h.p("a.pem"), "cert");
    REQUIRE(h.run_until([&] { return h.saw(K::changed, "a.pem"); }));
    CHECK(h.w->pending_count() == 0);
  }

  TEST_CASE("the tree that exists at start is watched - and deep new trees are watched then rescanned") {
    WatchHarness h;
    ::mkdir(h.p("x").c_str(), 0755);
    ::mkdir(h.p("x/y").c_str(), 0755);
    REQUIRE(h.w->start().ok());
    CHECK(h.w->watch_count() == 3);
    // mkdir -p and files written immediately: some land before the new watches exist.
    REQUIRE(test::run("mkdir -p " + h.p("n/1/2/3") + " && echo hi > " + h.p("n/1/2/3/f")) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::rescan, "n"); }));
    h.barrier();
    CHECK(h.w->watch_count() == 7);
    // Nothing below the rescanned directory is reported separately: the walk covers it.
    for (const auto& e : h.events()) {
      if (e.path.rfind("n/", 0) == 0) CHECK(e.kind != K::changed);
    }
    // And the new watches work: a file deep inside is seen.
    test::write_file(h.p("n/1/2/3/g"), "g");
    REQUIRE(h.run_until([&] { return h.saw(K::changed, "n/1/2/3/g"); }));
  }

  TEST_CASE("renames pair into one event - files and directories - and the watches follow") {
    WatchHarness h;
    ::mkdir(h.p("d").c_str(), 0755);
    ::mkdir(h.p("d/sub").c_str(), 0755);
    test::write_file(h.p("f"), "f");
    REQUIRE(h.w->start().ok());
    REQUIRE(::rename(h.p("f").c_str(), h.p("g").c_str()) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::renamed, "g"); }));
    CHECK_FALSE(h.saw(K::removed, "f"));
    REQUIRE(::rename(h.p("d").c_str(), h.p("e").c_str()) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::renamed, "e"); }));
    for (const auto& e : h.events()) {
      if (e.kind == K::renamed && e.path == "e") {
        CHECK(e.from == "d");
        CHECK(e.is_dir);
      }
    }
    test::write_file(h.p("e/sub/new"), "n");
    REQUIRE(h.run_until([&] { return h.saw(K::changed, "e/sub/new"); }));
    CHECK_FALSE(h.saw_any("d/sub/new"));
    // A chain a -> b -> c inside one batch.
    test::write_file(h.p("a"), "a");
    h.barrier();
    REQUIRE(test::run("mv " + h.p("a") + " " + h.p("b") + " && mv " + h.p("b") + " " + h.p("c")) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::renamed, "c"); }));
  }

  TEST_CASE("moves out of the tree become removals and moves in become creates") {
    WatchHarness h;
    ::mkdir((h.t / "outside").c_str(), 0755);
    ::mkdir(h.p("d").c_str(), 0755);
    test::write_file(h.p("d/x"), "x");
    test::write_file(h.p("f"), "f");
    REQUIRE(h.w->start().ok());
    const size_t watches = h.w->watch_count();
    REQUIRE(::rename(h.p("f").c_str(), (h.t / "outside/f").c_str()) == 0);
    REQUIRE(::rename(h.p("d").c_str(), (h.t / "outside/d").c_str()) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::removed, "f") && h.saw(K::removed, "d"); }));
    CHECK(h.w->watch_count() == watches - 1);
    // Writes in the moved-out directory are not ours any more.
    test::write_file(h.t / "outside/d/later", "l");
    REQUIRE(::rename((h.t / "outside/f").c_str(), h.p("back").c_str()) == 0);
    REQUIRE(::rename((h.t / "outside/d").c_str(), h.p("dback").c_str()) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::changed, "back") && h.saw(K::rescan, "dback"); }));
    h.barrier();
    CHECK_FALSE(h.saw_any("d/later"));
    CHECK(h.w->watch_count() == watches);
  }

  TEST_CASE("delete - chmod - chown and touch are reported") {
    WatchHarness h;
    test::write_file(h.p("f"), "f");
    test::write_file(h.p("g"), "g");
    REQUIRE(h.w->start().ok());
    REQUIRE(::chmod(h.p("f").c_str(), 0600) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::changed, "f"); }));
    REQUIRE(::unlink(h.p("g").c_str()) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::removed, "g"); }));
    REQUIRE(test::run("touch -d '2001-01-01' " + h.p("f")) == 0);
    h.batches.clear();
    REQUIRE(test::run("touch -d '2002-02-02' " + h.p("f")) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::changed, "f"); }));
  }

  TEST_CASE("create then delete inside one batch reports both in order") {
    WatchHarness h;
    REQUIRE(h.w->start().ok());
    REQUIRE(test::run("echo x > " + h.p("tmp1") + " && rm " + h.p("tmp1")) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::removed, "tmp1"); }));
    auto ev = h.events();
    auto removed = std::find_if(ev.begin(), ev.end(), [](const Event& e) { return e.kind == K::removed; });
    // Whatever came before the removal, nothing about tmp1 comes after it.
    for (auto it = removed + 1; it != ev.end(); ++it) CHECK(it->path != "tmp1");
  }

  TEST_CASE("excluded paths and syncd's own temp files produce no events and no watches") {
    WatchHarness h(Excludes({"*.tmp", "/cache/", "skipme"}));
    ::mkdir(h.p("cache").c_str(), 0755);
    ::mkdir(h.p("a").c_str(), 0755);
    ::mkdir(h.p("a/skipme").c_str(), 0755);
    REQUIRE(h.w->start().ok());
    CHECK(h.w->watch_count() == 2);  // root and a/
    test::write_file(h.p("x.tmp"), "t");
    test::write_file(h.p("cache/c"), "c");
    test::write_file(h.p("a/skipme/s"), "s");
    test::write_file(h.p(".syncd.cert.pem.0123456789ab.tmp"), "ours");
    ::mkdir(h.p("a/skipme2").c_str(), 0755);  // not excluded: "skipme" must end at a '/'
    h.barrier();
    CHECK_FALSE(h.saw_any("x.tmp"));
    CHECK_FALSE(h.saw_any("cache/c"));
    CHECK_FALSE(h.saw_any("a/skipme/s"));
    CHECK_FALSE(h.saw_any(".syncd.cert.pem.0123456789ab.tmp"));
    CHECK(h.saw(K::rescan, "a/skipme2"));
    // A rename from an excluded name to a real one is a create.
    REQUIRE(::rename(h.p("x.tmp").c_str(), h.p("x.pem").c_str()) == 0);
    REQUIRE(h.run_until([&] { return h.saw(K::changed, "x.pem"); }));
  }

  TEST_CASE("a file still open for writing waits until it settles - then ships once") {
    WatchOptions o;
    o.settle_ms = 30;
    WatchHarness h({}, o);
    REQUIRE(h.w->start().ok());
    std::FILE* f = std::fopen(h.p("log").c_str(), "w");
    REQUIRE(f != nullptr);
    h.barrier();  // the create has been seen
    h.batches.clear();
    std::fputs("line\n", f);
    std::fflush(f);  // IN_MODIFY, no close
    h.barrier();
    CHECK(h.w->pending_count() == 1);
    CHECK_FALSE(h.saw(K::changed, "log"));
    REQUIRE(h.run_until([&] { return h.saw(K::changed, "log"); }));
    CHECK(h.w->pending_count() == 0);
    std::fclose(f);
  }

  TEST_CASE("a file written continuously still ships by the max delay") {
    WatchOptions o;
    o.settle_ms = 1000;
    o.max_delay_ms = 60;
    WatchHarness h({}, o);
    REQUIRE(h.w->start().ok());
    std::FILE* f = std::fopen(h.p("busy.log").c_str(), "w");
    REQUIRE(f != nullptr);
    h.barrier();
    h.batches.clear();
    // Keep writing on every loop turn (a 5 ms repeating timer) so the file never settles.
    uvx::Timer writer(h.loop, [&] {
      std::fputs("x\n", f);
      std::fflush(f);
    });
    writer.start(0, 5);
    REQUIRE(h.run_until([&] { return h.saw(K::changed, "busy.log"); }, 3000));
    writer.stop();
    std::fclose(f);
  }
}
