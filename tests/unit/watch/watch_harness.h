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
