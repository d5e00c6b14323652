#include "lib/runtime/control.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "tests/support/tmpdir.h"

using namespace syncd;

namespace {

// A control server on its own loop thread; stop() ends it.
struct Served {
  uvx::Loop loop;
  std::atomic<bool> idle{false};
  std::unique_ptr<runtime::ControlServer> server;
  std::unique_ptr<uvx::Async> stopper;
  std::thread thread;
  Status started;
  explicit Served(const std::string& path) {
    server = std::make_unique<runtime::ControlServer>(
        loop, runtime::ControlServer::Handlers{
                  [this](bool json) {
                    return json ? std::string("{\"idle\": ") + (idle ? "true" : "false") + "}\n"
                                : std::string("idle: ") + (idle ? "yes" : "no") + "\n";
                  },
                  [this] { return idle.load(); }, {}});
    started = server->listen(path);
    stopper = std::make_unique<uvx::Async>(loop, [this] { loop.stop(); });
    thread = std::thread([this] { loop.run(); });
  }
  ~Served() {
    stopper->send();
    thread.join();
    server.reset();
  }
};

}  // namespace

TEST_CASE("control socket: status in both forms - wait-idle answers when idle or at its deadline") {
  test::require_root();
  test::TempDir t;
  const std::string path = t / "run/root-test.sock";
  Served s(path);
  REQUIRE(s.started.ok());
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto j = runtime::control_request(path, "status json", 5000);
  REQUIRE(j.ok());
  CHECK(*j == "{\"idle\": false}\n");
  auto txt = runtime::control_request(path, "status text", 5000);
  REQUIRE(txt.ok());
  CHECK(*txt == "idle: no\n");
  auto late = runtime::control_request(path, "wait-idle 100 json", 5000);
  REQUIRE(late.ok());
  CHECK(*late == "{\"idle\": false}\n");  // answered at the deadline, still busy
  std::thread flip([&] { s.idle = true; });
  auto w = runtime::control_request(path, "wait-idle 20000 json", 25000);
  flip.join();
  REQUIRE(w.ok());
  CHECK(*w == "{\"idle\": true}\n");
}

TEST_CASE("control socket: a live daemon's socket is not taken over - a stale one is") {
  test::require_root();
  test::TempDir t;
  const std::string path = t / "root-x.sock";
  {
    Served first(path);
    REQUIRE(first.started.ok());
    uvx::Loop other;
    runtime::ControlServer second(other, {[](bool) { return std::string(); }, [] { return true; }, {}});
    auto st = second.listen(path);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("already owns") != std::string::npos);
  }
  // A socket file left by a daemon killed -9 (bound, nobody listening).
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  ::close(fd);
  Served again(path);
  CHECK(again.started.ok());
}

TEST_CASE("control socket: a client that is not root gets nothing") {
  test::require_root();
  test::TempDir t;
  const std::string path = t / "root-y.sock";
  ::chmod(t.path().c_str(), 0755);
  Served s(path);
  REQUIRE(s.started.ok());
  ::chmod(path.c_str(), 0666);  // even if someone loosened the mode, the uid check holds
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    auto r = runtime::control_request(path, "status json", 3000);
    ::_exit(r.ok() && !r->empty() ? 1 : 0);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
}

TEST_CASE("json_string: any file name gives valid JSON - bytes that are not UTF-8 as the log spells them") {
  using syncd::runtime::json_string;
  CHECK(json_string("certs/a.pem") == "\"certs/a.pem\"");
  CHECK(json_string("q\"b\\s") == "\"q\\\"b\\\\s\"");
  CHECK(json_string("new\nline\x1b") == "\"new\\u000aline\\u001b\"");
  CHECK(json_string("\xe2\x82\xac euro") == "\"\xe2\x82\xac euro\"");  // UTF-8 passes as is
  CHECK(json_string("bad\xff\xfe") == "\"bad\\\\xff\\\\xfe\"");
  CHECK(json_string("cut\xe2\x82") == "\"cut\\\\xe2\\\\x82\"");  // a sequence the name ends inside
  CHECK(json_string("\xc0\xaf") == "\"\\\\xc0\\\\xaf\"");       // overlong '/'
}
