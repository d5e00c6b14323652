// lib/config: lsyncd configs executed by the embedded Lua (settings{}, sync{}, the defaults,
// inheritance, key gauges, the command-line forms). The same configs are also run through a real
// lsyncd 2.2.3 in tests/integration/lsyncd_compat_test.cpp; here the decoded values are checked.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdlib>

#include "lib/config/config.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::config;

namespace {

struct Fixture {
  test::TempDir dir{"cfg"};
  std::string src = dir / "src";
  Fixture() { ::mkdir(src.c_str(), 0755); }
  std::string write(const std::string& name, const std::string& text) {
    test::write_file(dir / name, text);
    return dir / name;
  }
  Result<Config> load(const std::string& text, const CommandLine& cl = {}) { return load_file(write("c.lua", text), cl); }
};

}  // namespace

TEST_CASE("acme2certifier's config: default.rsyncssh with an rsh line, lsyncd's defaults") {
  Fixture f;
  auto c = f.load("settings { logfile = \"/var/log/lsyncd/lsyncd.log\", statusFile = \"/var/log/lsyncd/lsyncd.status\",\n"
                  "           statusInterval = 20, nodaemon = false }\n"
                  "sync { default.rsyncssh, source = \"" + f.src + "/\", host = \"alma9-c2\",\n"
                  "       targetdir = \"/opt/acme2certifier/volume/\",\n"
                  "       rsync = { rsh = \"/usr/bin/ssh -l root -i /root/.ssh/id_lsyncd -o StrictHostKeyChecking=no\",\n"
                  "                 compress = true, owner = true, group = true, archive = true } }\n");
  REQUIRE_MESSAGE(c.ok(), c.error().context);
  CHECK(c->settings.logfile == "/var/log/lsyncd/lsyncd.log");
  CHECK(c->settings.status_file == "/var/log/lsyncd/lsyncd.status");
  CHECK(c->settings.status_interval == 20);
  CHECK_FALSE(c->settings.nodaemon);
  REQUIRE(c->syncs.size() == 1);
  const auto& s = c->syncs[0];
  CHECK(s.name == "Sync1");
  CHECK(s.kind == Kind::rsyncssh);
  CHECK(s.source == f.src + "/");
  CHECK(s.host == "alma9-c2");
  CHECK(s.targetdir == "/opt/acme2certifier/volume/");
  CHECK(s.delay == 15);  // lsyncd's default, inherited from default.rsync
  CHECK_FALSE(s.delay_given);
  CHECK(s.max_delays == 1000);
  CHECK(s.del == DeleteMode::all);
  CHECK(s.rsync.at("compress") == "true");
  CHECK(s.rsync.at("links") == "true");  // from default.rsync's rsync table, merged
  CHECK(s.rsync.at("binary") == "/usr/bin/rsync");
  CHECK(ssh_command_line(s) == "/usr/bin/ssh -l root -i /root/.ssh/id_lsyncd -o StrictHostKeyChecking=no");
  CHECK(s.where == f.dir / "c.lua:3");
}

TEST_CASE("Lua features real configs use: loops, concatenation, os.getenv, dofile, debug.getinfo") {
  Fixture f;
  ::setenv("SYNCD_TEST_TARGETS", "n2,n3", 1);
  f.write("defs.lua", "PORT = 2222\n");
  auto c = f.load(
      "local here = string.gsub(debug.getinfo(1).source, '^@(.+/)[^/]+$', '%1')\n"
      "dofile(here .. 'defs.lua')\n"
      "settings { 'insist', 'nodaemon' }\n"
      "assert(settings('insist') == true)\n"
      "for host in os.getenv('SYNCD_TEST_TARGETS'):gmatch('[^,]+') do\n"
      "  sync { default.rsyncssh, source = here .. 'src', host = 'root@' .. host, targetdir = '/srv/' .. host,\n"
      "         delay = .2, ssh = { port = PORT, identityFile = '/k', options = { User = 'x' } },\n"
      "         exclude = { '*.tmp', '/cache/' } }\n"
      "end\n");
  REQUIRE_MESSAGE(c.ok(), c.error().context);
  CHECK(c->settings.insist);
  CHECK(c->settings.nodaemon);
  REQUIRE(c->syncs.size() == 2);
  CHECK(c->syncs[1].name == "Sync2");
  CHECK(c->syncs[0].host == "root@n2");
  CHECK(c->syncs[1].targetdir == "/srv/n3/");
  CHECK(c->syncs[0].delay == doctest::Approx(0.2));
  CHECK(c->syncs[0].delay_given);
  CHECK(c->syncs[0].excludes == std::vector<std::string>{"*.tmp", "/cache/"});
  CHECK(ssh_command_line(c->syncs[0]) == "/usr/bin/ssh -i /k -p 2222 -o User=x");
}

TEST_CASE("lsyncd's errors: unknown setting and parameter, the 2.0 settings form, no syncs") {
  Fixture f;
  auto e1 = f.load("settings {\n logfil = '/tmp/x' }\n");
  REQUIRE_FALSE(e1.ok());
  CHECK(e1.error().context == "error preparing " + f.dir / "c.lua: " + f.dir / "c.lua:1: setting \"logfil\" unknown.");
  auto e2 = f.load("sync { default.rsync, source = '" + f.src + "', target = '/t', rsync = { archiv = true } }\n");
  REQUIRE_FALSE(e2.ok());
  CHECK(e2.error().context.find("Parameter \"rsync.archiv\" unknown. ( if this is not a typo add it to checkgauge )") != std::string::npos);
  auto e3 = f.load("settings = { nodaemon = true }\nsync { default.direct, source = '" + f.src + "', target = '/t' }\n");
  REQUIRE_FALSE(e3.ok());
  CHECK(e3.error().context.find("Do not use settings = { ... }") == 0);
  auto e4 = f.load("settings { nodaemon = true }\n");
  REQUIRE_FALSE(e4.ok());
  CHECK(e4.error().context == "Nothing to watch!");
  auto e5 = f.load("sync { default.rsyncssh, source = '" + f.src + "', host = 'h', targetdir = '/x', target = '/y' }\n");
  REQUIRE_FALSE(e5.ok());
  CHECK(e5.error().context.find("Parameter \"target\" unknown.") != std::string::npos);
  auto e6 = f.load("local x =\n");
  REQUIRE_FALSE(e6.ok());
  CHECK(e6.error().context.find("error loading " + f.dir / "c.lua: ") == 0);
  auto e7 = f.load("sync { default.rsync, source = '" + f.dir / "nope" + "', target = '/t' }\n");
  REQUIRE_FALSE(e7.ok());
  CHECK(e7.error().context == "Cannot access source directory: " + f.dir / "nope");
  auto e8 = f.load("sync { default.rsyncssh, source = '" + f.src + "', host = 'h', targetdir = '/x', maxProcesses = 2 }\n");
  REQUIRE_FALSE(e8.ok());
  CHECK(e8.error().context.find("default.rsyncssh must have maxProcesses set to 1.") != std::string::npos);
  auto e9 = f.load("sync { default.rsync, source = '" + f.src + "', target = '/t', delay = -1 }\n");
  REQUIRE_FALSE(e9.ok());
  CHECK(e9.error().context.find("delay must be a number and >= 0") != std::string::npos);
  auto e10 = load_file(f.dir / "missing.lua", {});
  REQUIRE_FALSE(e10.ok());
  CHECK(e10.error().context == "Cannot find config file at '" + f.dir / "missing.lua" + "'.");
}

TEST_CASE("delete modes, excludeFrom, filter, init = false, inherited user tables") {
  Fixture f;
  f.write("ex.txt", "# comment\n\n*.bak\n- /logs/\n+ keep\n");
  auto c = f.load("local mine = { default.direct, delay = 3, delete = 'running' }\n"
                  "sync { mine, source = '" + f.src + "', target = '/t', excludeFrom = '" + f.dir / "ex.txt" + "',\n"
                  "       filter = { '+ *.c', '- *.o' }, init = false }\n"
                  "sync { default.rsync, source = '" + f.src + "', target = 'h:/t', delete = 'startup' }\n"
                  "sync { default.rsync, source = '" + f.src + "', target = 'h:', delete = 'sometimes' }\n");
  REQUIRE_MESSAGE(c.ok(), c.error().context);
  REQUIRE(c->syncs.size() == 3);
  const auto& s = c->syncs[0];
  CHECK(s.kind == Kind::direct);
  CHECK(s.delay == 3);
  CHECK(s.delay_given);
  CHECK(s.del == DeleteMode::running);
  CHECK_FALSE(s.init);
  CHECK(s.target == "/t/");
  CHECK(s.excludes == std::vector<std::string>{"*.bak", "/logs/"});
  REQUIRE(s.filters.size() == 2);
  CHECK(s.filters[0] == std::pair<char, std::string>{'+', "*.c"});
  CHECK(c->syncs[1].del == DeleteMode::startup);
  CHECK(c->syncs[1].target == "h:/t/");
  CHECK(c->syncs[2].target == "h:");
  CHECK(c->syncs[2].del == DeleteMode::none);  // lsyncd 2.2.3: anything else deletes nothing
  CHECK(c->warnings.size() == 1);
}

TEST_CASE("actions: layer 3 strings and layer 2 functions are recorded, and syncd's own keys") {
  Fixture f;
  auto c = f.load("bash = { delay = 5, maxProcesses = 1, onCreate = 'cp -r ^sourcePathname ^targetPathname',\n"
                  "         onModify = function(event) end }\n"
                  "sync { bash, source = '" + f.src + "', target = '/t' }\n"
                  "sync { default.rsyncssh, source = '" + f.src + "', host = 'n2', targetdir = '/v', bidirectional = true,\n"
                  "       syncd = { stateDir = '/var/lib/x', maxDeleteShare = 30, peers = { { host = 'n3', targetdir = '/v' } } } }\n");
  REQUIRE_MESSAGE(c.ok(), c.error().context);
  const auto& b = c->syncs[0];
  CHECK(b.kind == Kind::custom);
  CHECK(b.string_actions.at("onCreate") == "cp -r ^sourcePathname ^targetPathname");
  CHECK(b.user_actions.at("onModify") == "function");
  const auto& s = c->syncs[1];
  CHECK(s.bidirectional == true);
  CHECK(s.syncd.state_dir == "/var/lib/x");
  CHECK(s.syncd.max_delete_share == 30);
  REQUIRE(s.syncd.peers.size() == 1);
  CHECK(s.syncd.peers[0] == std::pair<std::string, std::string>{"n3", "/v/"});
  auto bad = f.load("sync { default.rsyncssh, source = '" + f.src + "', host = 'n2', targetdir = '/v', syncd = { statedir = 'x' } }\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().context.find("Parameter \"syncd.statedir\" unknown.") != std::string::npos);
}

TEST_CASE("lsyncd's runtime globals: now(), readdir(), event.status and event.inlet in an on* function") {
  Fixture f;
  ::mkdir((f.src + "/sub").c_str(), 0755);
  test::write_file(f.src + "/file", "x");
  REQUIRE(::symlink("sub", (f.src + "/link").c_str()) == 0);
  auto c = f.load("fn = { onCreate = function(e)\n"
                  "  local t = readdir('" + f.src + "')\n"
                  "  local n = 0\n"
                  "  for _ in pairs(t) do n = n + 1 end\n"
                  "  local a = now()\n"
                  "  local b = a + 2.5\n"
                  "  spawn(e, '/bin/echo', tostring(t.sub), tostring(t.file), tostring(t.link), n, tostring(readdir('/nonexistent')),\n"
                  "        b - a, tostring(a < b), tostring(b <= a), tostring(a == a + 0), tostring(a):match('^Lsyncd.jiffies: ') ~= nil,\n"
                  "        select(2, pcall(function() return a + b end)):match('Cannot add two timestamps!') ~= nil,\n"
                  "        select(2, pcall(function() return a < 1 end)):match('Lsyncd.jiffies expected, got number') ~= nil,\n"
                  "        e.status, e.inlet.getConfig().source, type(a),\n"
                  "        select(2, pcall(function() return e.inlet.getEvents() end)):match('layer%-1') ~= nil)\n"
                  "end }\n"
                  "sync { fn, source = '" + f.src + "', target = '/t' }\n");
  REQUIRE_MESSAGE(c.ok(), c.error().context);
  REQUIRE(c->lua);
  LuaActions::Event e{"Create", false, {{"pathname", "x"}, {"source", f.src + "/"}}};
  auto r = c->lua->call(1, "onCreate", e);
  REQUIRE_MESSAGE(r.ok(), r.error().context);
  REQUIRE(r->size() == 1);
  std::string got;
  for (const auto& a : r->at(0).argv) got += a + "|";
  INFO(got);
  CHECK(r->at(0).argv == std::vector<std::string>{"/bin/echo", "true", "false", "false", "3", "nil", "2.5", "true", "false", "true",
                                                   "true", "true", "true", "wait", f.src + "/", "userdata", "true"});
}

TEST_CASE("alarm(): due alarms run soonest first, errors are reported, the hooks see the next one") {
  Fixture f;
  // Set up while loading (lsyncd allows that); the state is kept for them even without on* functions.
  const std::string order = f.dir / "order";
  auto c = f.load("local function rec(ts, x) local fh = io.open('" + order + "', 'a'); fh:write(x, '\\n'); fh:close() end\n"
                  "local t0 = now()\n"
                  "alarm(t0 + 200, rec, 'late')\n"
                  "alarm(t0 + 100, function(ts, x) rec(ts, x)\n"
                  "  alarm(ts + 50, rec, 'added')  -- due at t0 + 150\n"
                  "end, 'early')\n"
                  "alarm(t0 + 120, function() error('boom') end)\n"
                  "alarm(t0 + 300, function() spawn({}, '/bin/true') end)\n"
                  "sync { default.rsync, source = '" + f.src + "', target = '/t' }\n");
  REQUIRE_MESSAGE(c.ok(), c.error().context);
  REQUIRE(c->lua);
  std::vector<std::optional<double>> next;
  LuaActions::Hooks h;
  h.next_alarm = [&](std::optional<double> t) { next.push_back(t); };
  c->lua->set_hooks(h);
  REQUIRE(!next.empty());
  REQUIRE(next.back().has_value());
  const double t0 = *next.back() - 100;  // the soonest: t0 + 100
  CHECK(c->lua->run_alarms(t0 + 99).empty());
  auto errs = c->lua->run_alarms(t0 + 160);  // early, boom, added (added was scheduled while running)
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].find("boom") != std::string::npos);
  REQUIRE(next.back().has_value());
  CHECK(*next.back() == doctest::Approx(t0 + 200));
  CHECK(test::read_file(order) == "early\nadded\n");
  CHECK(c->lua->run_alarms(t0 + 200).empty());
  CHECK(test::read_file(order) == "early\nadded\nlate\n");
  errs = c->lua->run_alarms(t0 + 1000);  // spawn() outside an action is an error, as in lsyncd
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].find("spawn() can only be called from an action") != std::string::npos);
  CHECK_FALSE(next.back().has_value());  // none left
  c->lua->clear_hooks();
}

TEST_CASE("terminate(): the daemon is told the code, and nothing of the config runs after it") {
  Fixture f;
  auto c = f.load("fn = { onCreate = function(e)\n"
                  "  if e.pathname == 'stop' then terminate(7) end\n"
                  "  spawn(e, '/bin/echo', e.pathname)\n"
                  "end }\n"
                  "alarm(now(), function() spawn({}, '/bin/true') end)\n"
                  "sync { fn, source = '" + f.src + "', target = '/t' }\n");
  REQUIRE_MESSAGE(c.ok(), c.error().context);
  std::optional<int> code;
  LuaActions::Hooks h;
  h.terminate = [&](int v) { code = v; };
  c->lua->set_hooks(h);
  auto go = c->lua->call(1, "onCreate", LuaActions::Event{"Create", false, {{"pathname", "go"}}});
  REQUIRE(go.ok());
  CHECK(go->size() == 1);
  auto stop = c->lua->call(1, "onCreate", LuaActions::Event{"Create", false, {{"pathname", "stop"}}});
  REQUIRE_MESSAGE(stop.ok(), stop.error().context);  // not an error: the function was cut short
  CHECK(stop->empty());                               // its spawn() after terminate() did not count
  CHECK(code == std::optional<int>(7));
  auto later = c->lua->call(1, "onCreate", LuaActions::Event{"Create", false, {{"pathname", "go"}}});
  REQUIRE(later.ok());
  CHECK(later->empty());
  CHECK(c->lua->run_alarms(LuaActions::clock() + 1).empty());  // the due alarm does not run (it would fail)
  c->lua->clear_hooks();
}

TEST_CASE("command-line syncs get the same defaults, -delay and flags override settings") {
  Fixture f;
  CommandLine cl;
  cl.delay = 0;
  cl.nodaemon = true;
  cl.syncs.push_back({Kind::rsyncssh, {f.src, "node2", "/x"}});
  cl.syncs.push_back({Kind::direct, {f.src, f.dir / "dst"}});
  auto c = from_command_line(cl);
  REQUIRE_MESSAGE(c.ok(), c.error().context);
  REQUIRE(c->syncs.size() == 2);
  CHECK(c->syncs[0].kind == Kind::rsyncssh);
  CHECK(c->syncs[0].delay == 0);
  CHECK(c->syncs[0].delay_given);
  CHECK(c->syncs[1].kind == Kind::direct);
  CHECK(c->syncs[1].target == f.dir / "dst/");
  CHECK(c->settings.nodaemon);
  CommandLine none;
  none.syncs.push_back({Kind::direct, {f.src, f.dir / "dst"}});
  auto d = from_command_line(none);
  REQUIRE(d.ok());
  CHECK(d->syncs[0].delay == 1);  // default.direct's
  CHECK_FALSE(d->syncs[0].delay_given);
}

TEST_CASE("the configs in conf/ load: acme2certifier's guide verbatim, the three-node example") {
  Fixture f;
  auto with_volume = [&](const std::string& file) {
    std::string text = test::read_file(std::string(SYNCD_CONF_DIR) + "/" + file);
    const std::string vol = "/opt/acme2certifier/volume/";
    for (size_t p; (p = text.find(vol)) != std::string::npos;) text.replace(p, vol.size(), f.src + "/");
    return text;
  };
  auto acme = f.load(with_volume("acme2certifier/lsyncd.conf"));
  REQUIRE_MESSAGE(acme.ok(), acme.error().context);
  REQUIRE(acme->syncs.size() == 1);
  CHECK(acme->syncs[0].kind == Kind::rsyncssh);
  CHECK(acme->syncs[0].host == "alma9-c2");
  CHECK(acme->syncs[0].targetdir == f.src + "/");
  CHECK(acme->settings.status_interval == 20);
  auto three = f.load(with_volume("examples/three-node-two-way.lua"));
  REQUIRE_MESSAGE(three.ok(), three.error().context);
  REQUIRE(three->syncs.size() == 2);
  CHECK(three->syncs[0].host == "node2");
  CHECK(three->syncs[1].host == "node3");
  CHECK(three->syncs[1].bidirectional == true);
  CHECK(three->syncs[1].syncd.conflict_hook == "logger -t syncd-conflict");
  CHECK(three->syncs[1].excludes == std::vector<std::string>{"*.swp", "/tmp/"});
}
