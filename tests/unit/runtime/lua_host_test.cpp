#include "lib/runtime/lua_host.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>

#include "tests/support/tmpdir.h"

using namespace syncd;

namespace {

// A config with a layer-2 sync and `extra` Lua, loaded; its host on a loop that runs until the
// config calls terminate() (or a 20 s guard timer fires).
struct Hosted {
  test::TempDir dir{"luahost"};
  uvx::Loop loop;
  std::shared_ptr<config::LuaActions> lua;
  std::optional<int> code;

  explicit Hosted(const std::string& extra) {
    const std::string src = dir / "src";
    ::mkdir(src.c_str(), 0755);
    test::write_file(dir / "c.lua", "rec = '" + dir / "rec" + "'\n"
                                    "function put(s) local fh = io.open(rec, 'a'); fh:write(s, '\\n'); fh:close() end\n" +
                                    extra + "sync { { onCreate = function(e) end }, source = '" + src + "', target = '/t' }\n");
    auto c = config::load_file(dir / "c.lua", {});
    REQUIRE_MESSAGE(c.ok(), c.error().context);
    REQUIRE(c->lua);
    lua = c->lua;
  }
  std::string run() {
    runtime::LuaHost host(loop, lua, [&](int c) {
      code = c;
      loop.stop();
    });
    uvx::Timer guard(loop, [&] { loop.stop(); });
    guard.start(20000);
    loop.run();
    return test::exists(dir / "rec") ? test::read_file(dir / "rec") : "";
  }
};

}  // namespace

TEST_CASE("LuaHost: alarms fire on the loop in time order, terminate() ends the run with its code") {
  Hosted h("local t0 = now()\n"
           "alarm(t0 + 0.06, function(ts, x) put(x); terminate(4); put('not reached') end, 'second')\n"
           "alarm(t0 + 0.06, function() put('not run either') end)\n"
           "alarm(t0 + 0.02, function(ts, x) put(x .. ' ' .. tostring(now() - t0 >= 0.02)) end, 'first')\n");
  CHECK(h.run() == "first true\nsecond\n");
  CHECK(h.code == std::optional<int>(4));
}

TEST_CASE("LuaHost: observefd calls ready(fd) when the fd is readable, nonobservefd stops it") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  Hosted h("observefd(" + std::to_string(p[0]) + ", function(fd)\n"
           "  put('ready ' .. fd)\n"
           "  nonobservefd(fd)\n"
           "  alarm(now() + 0.05, function() put('alarm'); terminate(5) end)\n"
           "end)\n");
  REQUIRE(::write(p[1], "x", 1) == 1);  // stays unread: a still-observed fd would call ready again
  CHECK(h.run() == "ready " + std::to_string(p[0]) + "\nalarm\n");
  CHECK(h.code == std::optional<int>(5));
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("LuaHost: an alarm that raises is logged and the others still run") {
  Hosted h("alarm(now(), function() error('boom') end)\n"
           "alarm(now() + 0.01, function() put('after'); terminate(0) end)\n");
  CHECK(h.run() == "after\n");
  CHECK(h.code == std::optional<int>(0));
}
