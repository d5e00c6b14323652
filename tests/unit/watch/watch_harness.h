// Test harness for the watcher: a real loop, a real tree, real inotify. Waiting is on events
// (a predicate checked after every batch) with a timeout, never on sleeps.
#pragma once

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/fs/root.h"
#include "lib/uvx/uvx.h"
#include "lib/watch/watcher.h"
#include "tests/support/tmpdir.h"

namespace syncd::test {

// Runs `loop` until `pred` holds (checked once first, then wherever the test's callbacks call
// `until` and stop the loop when it is true) or the timeout passes.
inline bool run_loop_until(uvx::Loop& loop, std::function<bool()>& until, std::function<bool()> pred,
                           uint64_t timeout_ms = 5000) {
  if (pred()) return true;
  until = pred;
  bool timed_out = false;
  uvx::Timer timeout(loop, [&] {
    timed_out = true;
    loop.stop();
  });
  timeout.start(timeout_ms);
  loop.run();
  timeout.stop();
  until = nullptr;
  return !timed_out && pred();
}

// A watched tree on a loop the test owns: several of them share the loop's inotify instance.
struct LoopTree {
  fs::Root root;
  std::vector<watch::Batch> batches;
  std::unique_ptr<watch::Watcher> w;

  LoopTree(uvx::Loop& loop, const std::string& path, std::function<bool()>& until) : root(open_root(path)) {
    w = std::make_unique<watch::Watcher>(loop, root, watch::Excludes{}, [this, &until, &loop](watch::Batch b) {
      batches.push_back(std::move(b));
      if (until && until()) loop.stop();
    });
  }
  static fs::Root open_root(const std::string& path) {
    ::mkdir(path.c_str(), 0755);
    auto r = fs::Root::open(path);
    REQUIRE(r.ok());
    return std::move(*r);
  }
  bool saw(watch::Event::Kind k, const std::string& path, const std::string& from = "") const {
    for (const auto& b : batches) {
      for (const auto& e : b.events) {
        if (e.kind == k && e.path == path && e.from == from) return true;
      }
    }
    return false;
  }
  bool overflowed() const {
    for (const auto& b : batches) {
      if (b.overflow) return true;
    }
    return false;
  }
};

struct WatchHarness {
  uvx::Loop loop;
  TempDir t{"watch"};
  std::string root_path = t / "root";
  fs::Root root;
  std::vector<watch::Batch> batches;
  std::function<bool()> until;
  std::unique_ptr<watch::Watcher> w;

  explicit WatchHarness(watch::Excludes ex = {}, watch::WatchOptions opts = {}) : root(make_root()) {
    w = std::make_unique<watch::Watcher>(loop, root, std::move(ex), [this](watch::Batch b) {
      batches.push_back(std::move(b));
      if (until && until()) loop.stop();
    }, opts);
  }
  ~WatchHarness() {
    w.reset();
    loop.run_once();  // let close callbacks run
  }
  fs::Root make_root() {
    ::mkdir(root_path.c_str(), 0755);
    auto r = fs::Root::open(root_path);
    REQUIRE(r.ok());
    return std::move(*r);
  }
  std::string p(const std::string& rel) const { return root_path + "/" + rel; }

  // Runs the loop until `pred` holds (checked after each batch and once first) or the timeout.
  bool run_until(std::function<bool()> pred, uint64_t timeout_ms = 5000) {
    return run_loop_until(loop, until, std::move(pred), timeout_ms);
  }

  std::vector<watch::Event> events() const {
    std::vector<watch::Event> all;
    for (const auto& b : batches) all.insert(all.end(), b.events.begin(), b.events.end());
    return all;
  }
  bool saw(watch::Event::Kind k, const std::string& path) const {
    for (const auto& e : events()) {
      if (e.kind == k && e.path == path) return true;
    }
    return false;
  }
  bool saw_any(const std::string& path) const {
    for (const auto& e : events()) {
      if (e.path == path || e.from == path) return true;
    }
    return false;
  }
  // Barrier: writes a cookie file and waits until its event comes back through the watcher.
  // inotify delivers in order, so everything done before is in `batches` afterwards.
  void barrier() {
    static int n = 0;
    const std::string name = "cookie-" + std::to_string(++n);
    write_file(p(name), "c");
    REQUIRE_MESSAGE(run_until([&] { return saw(watch::Event::Kind::changed, name); }),
                    "cookie " << name << " never came back");
  }
};

}  // namespace syncd::test
