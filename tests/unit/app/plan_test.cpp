// syncd/cli and syncd/plan: what an lsyncd command line or config turns into (which nodes, one-
// or two-way, which peers, warnings for keys syncd does not honour, errors for what it cannot run),
// and the status file's format.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>

#include "syncd/cli.h"
#include "syncd/plan.h"
#include "syncd/status_file.h"
#include "tests/support/tmpdir.h"

using namespace syncd;

namespace {

// Distinct keys get distinct directories, as syncd's own namer gives them.
std::string state_dir(const std::string& kind, const std::string& key) {
  std::string k = key;
  std::replace(k.begin(), k.end(), '/', '_');
  return "/var/lib/syncd/" + kind + "-" + k;
}

struct Fixture {
  test::TempDir dir{"plan"};
  std::string src = dir / "src";
  Fixture() { ::mkdir(src.c_str(), 0755); }
  Result<plan::Plan> plan(const std::string& lua, const cli::Extras& x = {}) {
    test::write_file(dir / "c.lua", lua);
    auto cfg = config::load_file(dir / "c.lua", {});
    if (!cfg.ok()) return cfg.error();
    return plan::make(*cfg, x, state_dir);
  }
  bool warned(const plan::Plan& p, const std::string& needle) {
    for (const auto& w : p.warnings) {
      if (w.find(needle) != std::string::npos) return true;
    }
    return false;
  }
};

}  // namespace

TEST_CASE("acme2certifier's symmetric config is a two-way pair, bidirectional = false makes it a push") {
  Fixture f;
  const std::string sync = "sync { default.rsyncssh, source = '" + f.src + "/', host = 'alma9-c2', targetdir = '" + f.src +
                           "/', rsync = { rsh = '/usr/bin/ssh -l root -i /k -o StrictHostKeyChecking=no', archive = true, compress = true";
  auto p = f.plan(sync + " } }\n");
  REQUIRE_MESSAGE(p.ok(), p.error().context);
  REQUIRE(p->nodes.size() == 1);
  const auto& n = p->nodes[0];
  CHECK(n.type == plan::Node::Type::push);
  CHECK(n.push.two_way);
  REQUIRE(n.push.peers.size() == 1);
  CHECK(n.push.peers[0].host == "alma9-c2");
  CHECK(n.push.peers[0].target == f.src);
  // archive = true: devices and specials too (lsyncd's archive sets both), on both nodes.
  CHECK(n.push.peers[0].remote_args == std::vector<std::string>{"-bidirectional", "-devices", "-specials"});
  CHECK(n.push.devices);
  CHECK(n.push.specials);
  CHECK(n.push.rsh == "/usr/bin/ssh -l root -i /k -o StrictHostKeyChecking=no");
  CHECK(n.push.sender.delay_ms == 0);  // no delay in the config: syncd's own (immediate)
  CHECK(p->warnings.empty());
  auto one = f.plan("sync { default.rsyncssh, source = '" + f.src + "/', host = 'alma9-c2', targetdir = '" + f.src +
                    "/', bidirectional = false }\n");
  REQUIRE(one.ok());
  CHECK_FALSE(one->nodes[0].push.two_way);
  auto other = f.plan("sync { default.rsyncssh, source = '" + f.src + "', host = 'h', targetdir = '/elsewhere', delay = 2 }\n");
  REQUIRE(other.ok());
  CHECK_FALSE(other->nodes[0].push.two_way);
  CHECK(other->nodes[0].push.sender.delay_ms == 2000);
}

TEST_CASE("syncs of one source: one node with a peer each (a mesh), never mixed one-/two-way") {
  Fixture f;
  auto p = f.plan("for _, h in ipairs { 'n2', 'n3' } do\n"
                  "  sync { default.rsyncssh, source = '" + f.src + "', host = h, targetdir = '" + f.src + "' }\n"
                  "end\n");
  REQUIRE_MESSAGE(p.ok(), p.error().context);
  REQUIRE(p->nodes.size() == 1);
  REQUIRE(p->nodes[0].push.peers.size() == 2);
  CHECK(p->nodes[0].push.peers[1].host == "n3");
  CHECK(p->nodes[0].syncs.size() == 2);
  auto mixed = f.plan("sync { default.rsyncssh, source = '" + f.src + "', host = 'n2', targetdir = '" + f.src + "' }\n"
                      "sync { default.rsyncssh, source = '" + f.src + "', host = 'n3', targetdir = '/other' }\n");
  REQUIRE_FALSE(mixed.ok());
  CHECK(mixed.error().context.find("a source is either one-way or two-way") != std::string::npos);
}

TEST_CASE("two syncs on one state directory are refused when the plan is made") {
  Fixture f;
  const std::string sd = f.dir / "state";
  auto p = f.plan("sync { default.direct, source = '" + f.src + "', target = '" + f.dir / "d1" + "', syncd = { stateDir = '" + sd + "' } }\n"
                  "sync { default.direct, source = '" + f.src + "', target = '" + f.dir / "d2" + "', syncd = { stateDir = '" + sd + "' } }\n");
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().context.find("share the state directory " + sd) != std::string::npos);
  // Each its own: fine.
  auto q = f.plan("sync { default.direct, source = '" + f.src + "', target = '" + f.dir / "d1" + "', syncd = { stateDir = '" + sd + "1' } }\n"
                  "sync { default.direct, source = '" + f.src + "', target = '" + f.dir / "d2" + "', syncd = { stateDir = '" + sd + "2' } }\n");
  CHECK_MESSAGE(q.ok(), q.error().context);
}

TEST_CASE("two one-way pushes into one directory of a host (or one inside the other's) are refused where the outer one deletes") {
  Fixture f;
  const std::string src2 = f.dir / "src2";
  ::mkdir(src2.c_str(), 0755);
  const auto two = [&](const std::string& t1, const std::string& t2, const std::string& extra1) {
    return f.plan("sync { default.rsyncssh, source = '" + f.src + "', host = 'root@node2', targetdir = '" + t1 + "'" + extra1 + " }\n"
                  "sync { default.rsyncssh, source = '" + src2 + "', host = 'node2', targetdir = '" + t2 + "' }\n");
  };
  auto p = two("/srv/x", "/srv/x/", "");
  REQUIRE_FALSE(p.ok());
  CHECK_MESSAGE(p.error().context.find("Sync1 and Sync2 both write into node2:/srv/x, and Sync1 deletes there what its source "
                                       "lacks: it would delete Sync2's files at every start") != std::string::npos,
                p.error().context);
  p = two("/srv/x", "/srv/x/sub", "");
  REQUIRE_FALSE(p.ok());
  CHECK_MESSAGE(p.error().context.find("both write into node2:/srv/x/sub (inside Sync1's target root@node2:/srv/x)") != std::string::npos,
                p.error().context);
  // Apart, excluded by the outer one, or the outer one not deleting: fine.
  for (const auto& q : {two("/srv/x", "/srv/y", ""), two("/srv/x", "/srv/x/sub", ", exclude = { 'sub' }"),
                        two("/srv/x", "/srv/x/sub", ", delete = false"), two("/srv/x", "/srv/xy", "")}) {
    CHECK_MESSAGE(q.ok(), q.error().context);
  }
  // Another host: fine.
  auto other = f.plan("sync { default.rsyncssh, source = '" + f.src + "', host = 'node2', targetdir = '/srv/x' }\n"
                      "sync { default.rsyncssh, source = '" + src2 + "', host = 'node3', targetdir = '/srv/x' }\n");
  CHECK_MESSAGE(other.ok(), other.error().context);
}

TEST_CASE("targets: direct and local rsync mirror, rsync host:dir pushes, rsync daemons are refused") {
  Fixture f;
  auto p = f.plan("sync { default.direct, source = '" + f.src + "', target = '" + f.dir / "d1" + "', delete = 'startup' }\n"
                  "sync { default.rsync, source = '" + f.src + "', target = '" + f.dir / "d2" + "', delete = false }\n"
                  "sync { default.rsync, source = '" + f.src + "', target = 'root@n4:/srv/x', delete = 'running' }\n");
  REQUIRE_MESSAGE(p.ok(), p.error().context);
  REQUIRE(p->nodes.size() == 3);
  CHECK(p->nodes[0].type == plan::Node::Type::direct);
  CHECK(p->nodes[0].direct.target == f.dir / "d1");
  CHECK(p->nodes[0].direct.rules.delete_startup);
  CHECK_FALSE(p->nodes[0].direct.rules.delete_running);
  CHECK_FALSE(p->nodes[1].direct.rules.delete_startup);
  CHECK_FALSE(p->nodes[1].direct.rules.delete_running);
  CHECK(p->nodes[2].type == plan::Node::Type::push);
  CHECK(p->nodes[2].push.peers[0].host == "root@n4");
  CHECK(p->nodes[2].push.peers[0].target == "/srv/x");
  CHECK(p->nodes[2].push.peers[0].remote_args == std::vector<std::string>{"-delete", "running"});
  auto daemon = f.plan("sync { default.rsync, source = '" + f.src + "', target = 'host::module' }\n");
  REQUIRE_FALSE(daemon.ok());
  CHECK(daemon.error().context.find("rsync daemon targets") != std::string::npos);
}

TEST_CASE("rsync chmod/chown/usermap/groupmap map the metadata sent, existing/update reach the target") {
  Fixture f;
  auto p = f.plan("sync { default.rsync, source = '" + f.src + "', target = '" + f.dir / "d" + "',\n"
                  "       rsync = { chmod = 'D2775,F664', chown = 'nobody:nogroup', existing = true } }\n"
                  "sync { default.rsyncssh, source = '" + f.dir / "" + "', host = 'h', targetdir = '/x', delete = 'running',\n"
                  "       rsync = { usermap = '0-99:root,*:1000', update = true } }\n");
  REQUIRE_MESSAGE(p.ok(), p.error().context);
  REQUIRE(p->nodes.size() == 2);
  const auto& d = p->nodes[0].direct;
  CHECK(d.rules.existing);
  CHECK_FALSE(d.rules.update);
  protocol::FileMeta m;
  m.type = protocol::FileType::file;
  m.mode = 0600;
  m.user = "alice";
  d.sender.meta_rules.apply(m);
  CHECK(m.mode == 0664);
  CHECK(m.user == "nobody");
  CHECK(m.group == "nogroup");
  const auto& push = p->nodes[1].push;
  CHECK(push.peers[0].remote_args == std::vector<std::string>{"-delete", "running", "-update"});
  CHECK(push.bwlimit_bytes_per_s == 0);
  auto limits = f.plan("sync { default.rsyncssh, source = '" + f.src + "', host = 'h', targetdir = '/x', rsync = { bwlimit = '1.5m', timeout = 30 } }\n"
                       "sync { default.direct, source = '" + f.dir / "" + "', target = '/t', rsync = { bwlimit = 100 } }\n");
  REQUIRE_MESSAGE(limits.ok(), limits.error().context);
  CHECK(limits->nodes[0].push.bwlimit_bytes_per_s == 1572864);
  CHECK(limits->nodes[0].push.io_timeout_s == 30);
  CHECK(limits->nodes[1].direct.bwlimit_bytes_per_s == 102400);
  CHECK(limits->warnings.empty());
  auto fast = f.plan("sync { default.direct, source = '" + f.src + "', target = '/t', rsync = { bwlimit = 'fast' } }\n");
  REQUIRE_FALSE(fast.ok());
  CHECK(fast.error().context.find("rsync.bwlimit = fast: expected a rate") != std::string::npos);
  CHECK_FALSE(push.sender.meta_rules.empty());
  CHECK(p->warnings.empty());
  auto bad = f.plan("sync { default.direct, source = '" + f.src + "', target = '/t', rsync = { chmod = 'u+q' } }\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().context.find("rsync.chmod = \"u+q\": unknown permission 'q'") != std::string::npos);
  auto two_way = f.plan("sync { default.rsyncssh, source = '" + f.src + "', host = 'h', targetdir = '" + f.src +
                        "', rsync = { chmod = 'F600', update = true } }\n");
  REQUIRE_MESSAGE(two_way.ok(), two_way.error().context);
  CHECK(two_way->nodes[0].push.sender.meta_rules.empty());
  CHECK(f.warned(*two_way, "rsync.chmod = F600 does not apply to two-way sync"));
  CHECK(f.warned(*two_way, "rsync.update = true does not apply to two-way sync"));
}

TEST_CASE("dry_run reaches the target: -direct's receiver and a remote attach (-dry-run) - two-way is refused") {
  Fixture f;
  REQUIRE(::mkdir((f.dir / "a").c_str(), 0755) == 0);
  auto p = f.plan("sync { default.rsync, source = '" + f.src + "', target = '/u', rsync = { dry_run = true } }\n"
                  "sync { default.rsyncssh, source = '" + f.dir / "a" + "', host = 'h', targetdir = '/x', rsync = { dry_run = true } }\n");
  REQUIRE_MESSAGE(p.ok(), p.error().context);
  REQUIRE(p->nodes.size() == 2);
  CHECK(p->nodes[0].direct.rules.dry_run);
  CHECK(p->nodes[1].push.peers[0].remote_args == std::vector<std::string>{"-dry-run"});
  CHECK(p->warnings.empty());
  auto two = f.plan("sync { default.rsyncssh, source = '" + f.src + "', host = 'h', targetdir = '/x', bidirectional = true, rsync = { dry_run = true } }\n");
  REQUIRE_FALSE(two.ok());
  CHECK(two.error().context.find("rsync.dry_run = true cannot be honoured by a two-way sync") != std::string::npos);
}

TEST_CASE("directory and symlink times: one-way syncs replicate them unless omit_dir_times / omit_link_times") {
  Fixture f;
  REQUIRE(::mkdir((f.dir / "a").c_str(), 0755) == 0);
  auto p = f.plan("sync { default.direct, source = '" + f.src + "', target = '/t' }\n"
                  "sync { default.rsync, source = '" + f.dir / "" + "', target = '/u', rsync = { omit_dir_times = true, omit_link_times = true } }\n"
                  "sync { default.rsyncssh, source = '" + f.dir / "a" + "', host = 'h', targetdir = '/x', rsync = { omit_dir_times = true, sparse = true } }\n");
  REQUIRE_MESSAGE(p.ok(), p.error().context);
  REQUIRE(p->nodes.size() == 3);
  CHECK(p->nodes[0].direct.sender.dir_times);
  CHECK(p->nodes[0].direct.rules.dir_times);
  CHECK(p->nodes[0].direct.rules.link_times);
  CHECK_FALSE(p->nodes[1].direct.sender.dir_times);
  CHECK_FALSE(p->nodes[1].direct.rules.dir_times);
  CHECK_FALSE(p->nodes[1].direct.rules.link_times);
  CHECK_FALSE(p->nodes[2].push.sender.dir_times);
  CHECK(p->nodes[2].push.peers[0].remote_args == std::vector<std::string>{"-sparse", "-omit-dir-times"});
  CHECK(p->nodes[2].push.apply.sparse);
  CHECK_FALSE(p->nodes[0].direct.sparse);
  CHECK(p->warnings.empty());
  // Two-way: directory times never travel (both nodes add entries); omit_link_times cannot apply.
  auto two_way = f.plan("sync { default.rsyncssh, source = '" + f.src + "', host = 'h', targetdir = '" + f.src +
                        "', rsync = { omit_dir_times = true, omit_link_times = true } }\n");
  REQUIRE_MESSAGE(two_way.ok(), two_way.error().context);
  CHECK_FALSE(two_way->nodes[0].push.sender.dir_times);
  CHECK_FALSE(f.warned(*two_way, "omit_dir_times"));
  CHECK(f.warned(*two_way, "rsync.omit_link_times = true does not apply to two-way sync"));
  // Hard links likewise one-way only.
  auto hl = f.plan("sync { default.direct, source = '" + f.src + "', target = '/t', rsync = { hard_links = true } }\n");
  REQUIRE_MESSAGE(hl.ok(), hl.error().context);
  CHECK(hl->nodes[0].direct.sender.hard_links);
  CHECK(hl->warnings.empty());
}

TEST_CASE("keys syncd does not honour are warned about once each, custom actions are refused") {
  Fixture f;
  auto p = f.plan("sync { default.rsyncssh, source = '" + f.src + "', host = 'h', targetdir = '/x',\n"
                  "       rsync = { owner = false, prune_empty_dirs = true, copy_links = true, keep_dirlinks = true, binary = '/usr/local/bin/rsync', _extra = { '-u' },\n"
                  "                 ignore_times = true, append = true, append_verify = true },\n"
                  "       filter = { '+ *.c', '- *.o' } }\n");
  REQUIRE_MESSAGE(p.ok(), p.error().context);
  CHECK(f.warned(*p, "rsync.owner = false is not honoured"));
  CHECK_FALSE(f.warned(*p, "prune_empty_dirs"));  // honoured one-way, on the target
  CHECK(p->nodes[0].push.peers[0].remote_args.end() !=
        std::find(p->nodes[0].push.peers[0].remote_args.begin(), p->nodes[0].push.peers[0].remote_args.end(), "-prune-empty-dirs"));
  // What syncd does anyway: decided by content (ignore_times), verified whole (append_verify).
  CHECK_FALSE(f.warned(*p, "rsync.ignore_times"));
  CHECK_FALSE(f.warned(*p, "rsync.append_verify"));
  CHECK(f.warned(*p, "rsync.append = true: syncd sends a grown file's new bytes as a delta and verifies the whole file"));
  CHECK_FALSE(f.warned(*p, "copy_links"));  // honoured one-way: the source follows links
  CHECK(p->nodes[0].push.follow_links.all);
  CHECK_FALSE(p->nodes[0].push.follow_links.unsafe);
  CHECK(f.warned(*p, "rsync.keep_dirlinks = true is not honoured: syncd never writes through a symlink on the target"));
  CHECK(f.warned(*p, "rsync.binary = /usr/local/bin/rsync"));
  CHECK(f.warned(*p, "rsync._extra (-u)"));
  CHECK(p->nodes[0].push.excludes.empty());
  CHECK(p->nodes[0].push.filters == std::vector<watch::FilterRule>{{true, "*.c"}, {false, "*.o"}});
  auto layer1 = f.plan("sync { default.rsync, source = '" + f.src + "', target = '/t', action = function(inlet) end }\n");
  REQUIRE_FALSE(layer1.ok());
  CHECK(layer1.error().context.find("Sync1 (" + f.dir / "c.lua:1): a custom action (lsyncd layer 1) is not supported") == 0);
  auto layer2 = f.plan("sync { source = '" + f.src + "', target = '/t', onCreate = function(event) end }\n");
  REQUIRE_MESSAGE(layer2.ok(), layer2.error().context);
  CHECK(layer2->nodes[0].actions.functions == std::set<std::string>{"onCreate"});
  CHECK(static_cast<bool>(layer2->nodes[0].actions.call));
  auto layer3 = f.plan("bash = { delay = 2, onCreate = 'cp ^sourcePathname ^targetPathname', onMove = 'mv ^o.targetPathname ^d.targetPathname' }\n"
                       "sync { bash, source = '" + f.src + "', target = '/t' }\n");
  REQUIRE_MESSAGE(layer3.ok(), layer3.error().context);
  REQUIRE(layer3->nodes.size() == 1);
  CHECK(layer3->nodes[0].type == plan::Node::Type::actions);
  CHECK(layer3->nodes[0].actions.target == "/t");  // custom syncs keep the target as written
  CHECK(layer3->nodes[0].actions.delay_ms == 2000);
  CHECK(layer3->nodes[0].actions.actions.at("onMove") == "mv ^o.targetPathname ^d.targetPathname");
  auto none = f.plan("sync { source = '" + f.src + "', target = '/t' }\n");
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().context.find("no actions specified.") != std::string::npos);
}

TEST_CASE("layer-3 commands: lsyncd's argv, positional arguments for the shell, direct exec for /paths") {
  const std::map<std::string, std::string> vars{{"sourcePathname", "/s//a b"}, {"targetPathname", "/t/a b"}, {"o.pathname", "x"}};
  CHECK(runtime::action_argv("cp -r ^sourcePathname ^targetPathname; echo ^sourcePathname", vars) ==
        std::vector<std::string>{"/bin/sh", "-c", "cp -r \"$1\" \"$2\"; echo \"$1\"", "/bin/sh", "/s//a b", "/t/a b"});
  // Run directly: the template's words are split first, so a value with a blank stays one word.
  CHECK(runtime::action_argv("/bin/cp ^sourcePathname ^targetPathname", vars) == std::vector<std::string>{"/bin/cp", "/s//a b", "/t/a b"});
  CHECK(runtime::action_argv("echo ^o.pathname ^basename", vars) == std::vector<std::string>{"/bin/sh", "-c", "echo \"$1\" ^basename", "/bin/sh", "x"});
  CHECK(runtime::action_text("mv ^o.pathname ^targetPathname", vars) == "mv x /t/a b");
}

TEST_CASE("lsyncd's command line: shapes, one or two dashes, errors") {
  auto ok = cli::parse({"--nodaemon", "-delay", "0.5", "-rsyncssh", "/a", "h", "/b", "-rsyncssh", "/a", "h2", "/b", "-bidirectional"});
  REQUIRE(ok.ok());
  CHECK(ok->cl.nodaemon);
  CHECK(ok->cl.delay == 0.5);
  CHECK(ok->cl.syncs.size() == 2);
  CHECK(ok->extras.two_way);
  CHECK(cli::parse({})->action == cli::Invocation::Action::help);
  CHECK(cli::parse({"-version"})->action == cli::Invocation::Action::version);
  CHECK(cli::parse({"/etc/lsyncd.conf"})->config_file == "/etc/lsyncd.conf");
  CHECK(cli::parse({"-bogus"}).error().context == "unknown option command line option -bogus");
  CHECK(cli::parse({"a", "b"}).error().context == "There can only be one config file in the command line.");
  CHECK(cli::parse({"-direct", "/a", "/b", "c.lua"}).error().context == "There cannot be command line syncs and a config file together.");
  CHECK(cli::parse({"-log", "exec"}).error().context == "'exec' is not a valid logging category");
  CHECK(cli::parse({"-delay", "-1", "c"}).error().context == "delay must be a number and >= 0");
  CHECK_FALSE(cli::parse({"-rsyncssh", "/a", "h"}).ok());
}

TEST_CASE("command line: -peer and -remote-rundir belong to the -rsyncssh they follow") {
  Fixture f;
  const std::string a = f.dir / "a", b = f.dir / "b";
  ::mkdir(a.c_str(), 0755);
  ::mkdir(b.c_str(), 0755);
  auto inv = cli::parse({"-remote-rundir", "/r0"});
  CHECK(inv.error().context == "-remote-rundir must follow -rsyncssh or -peer");
  CHECK(cli::parse({"-direct", "/a", "/b", "-peer", "h", "/c"}).error().context == "-peer must follow -rsyncssh");
  inv = cli::parse({"-rsyncssh", a, "h1", "/x", "-remote-rundir", "/r1", "-peer", "h2", "/y", "-remote-rundir", "/r2",
                    "-rsyncssh", b, "h3", "/z", "-remote-rundir", "/r3", "-bidirectional"});
  REQUIRE_MESSAGE(inv.ok(), inv.error().context);
  auto cfg = config::from_command_line(inv->cl);
  REQUIRE_MESSAGE(cfg.ok(), cfg.error().context);
  auto p = plan::make(*cfg, inv->extras, state_dir);
  REQUIRE_MESSAGE(p.ok(), p.error().context);
  REQUIRE(p->nodes.size() == 2);
  const auto rundir = [](const runtime::PeerSpec& ps) {
    const auto it = std::find(ps.remote_args.begin(), ps.remote_args.end(), "-rundir");
    return it == ps.remote_args.end() || it + 1 == ps.remote_args.end() ? std::string() : *(it + 1);
  };
  const auto& first = p->nodes[0].push.peers;
  REQUIRE(first.size() == 2);
  CHECK(first[0].host == "h1");
  CHECK(rundir(first[0]) == "/r1");
  CHECK(first[1].host == "h2");
  CHECK(rundir(first[1]) == "/r2");
  // Before, the second sync got neither its own -remote-rundir (the first one's was overwritten
  // with it) nor anything else.
  const auto& second = p->nodes[1].push.peers;
  REQUIRE(second.size() == 1);
  CHECK(second[0].host == "h3");
  CHECK(rundir(second[0]) == "/r3");
}

TEST_CASE("status file: lsyncd's block byte for byte, syncd's lines after it") {
  status_file::Report r;
  r.now = 0;
  r.syncs.push_back({"Sync1", "/v/", {{"wait", "Modify", "a.txt", "", false}, {"active", "Move", "d", "e", true}}});
  r.root = "/v/";
  r.watches = {{1, ""}, {2, "sub"}};
  r.extra = {"syncd: push /v/ -> n2:/v/ (busy)"};
  const std::string s = status_file::format(r);
  const std::string body = s.substr(s.find('\n') + 1);
  CHECK(s.rfind("Lsyncd status report at ", 0) == 0);
  CHECK(body == "\nSync1 source=/v/\nThere are 2 delays\nwait   Modify /a.txt\nactive Move /d/ -> /e/\nFiltering:\n  nothing.\n\n\n"
                "Inotify watching 2 directories\n  1: /v/\n  2: /v/sub/\nsyncd: push /v/ -> n2:/v/ (busy)\n");
}
