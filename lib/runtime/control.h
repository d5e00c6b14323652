// File: lib/runtime/control.h
//
// The daemon's control socket (DESIGN.md §9): a unix stream socket, root-only (mode 0600 in a
// 0755 directory, and the peer's SO_PEERCRED uid must be 0), one per daemon, named for the synced
// root it owns: <rundir>/root-<12 hex of SHA-256(realpath)>.sock, so `syncd status` finds every
// daemon and `syncd attach DIR` finds the one that owns DIR. One request line per connection:
//   status               -> one JSON object, then close
//   wait-idle <ms>       -> the same JSON once the daemon is idle (or the time is up), then close
//   attach <args>        -> with the session's stdin/stdout passed as SCM_RIGHTS: the daemon serves
//                           that peer session itself; "ok", and "end <code> <why>" when it is over
// Thread affinity: loop thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/uvx/uvx.h"

namespace syncd::runtime {

inline constexpr const char* kDefaultRunDir = "/run/syncd";

// <rundir>/root-XXXXXXXXXXXX.sock for the directory (resolved with realpath).
Result<std::string> control_socket_path(const std::string& rundir, const std::string& root);

class ControlServer {
 public:
  struct Handlers {
    std::function<std::string(bool json)> status;
    std::function<bool()> idle;
    // Serves a joined peer session on (in, out); calls `done` once with the end line when it is
    // over. Returns how to end it early (the attach process went away), or nullptr when refused
    // (after calling done with an "error ..." line). Unset: attach requests are refused.
    using Done = std::function<void(const std::string& end_line)>;
    std::function<std::function<void()>(UniqueFd in, UniqueFd out, const std::string& args, Done done)> attach;
  };
  ControlServer(uvx::Loop& loop, Handlers h) : loop_(loop), h_(std::move(h)) {}
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds `path` (a stale socket of a dead daemon is replaced; a live one is an error).
  Status listen(const std::string& path);
  const std::string& path() const noexcept { return path_; }

 private:
  struct Client {
    UniqueFd fd;
    std::unique_ptr<uvx::Poll> poll;
    std::string in;
    std::string out;
    size_t out_pos = 0;
    bool waiting_idle = false;
    bool json = true;
    uint64_t deadline_ms = 0;
    uint64_t id = 0;
    std::vector<UniqueFd> fds;       // received with the request (SCM_RIGHTS)
    bool joined = false;             // serving an attach session
    std::function<void()> cancel;    // ends that session
  };
  void accept_all();
  void on_client(Client* c, int events);
  void answer(Client* c, const std::string& body);
  void drop(Client* c);
  void check_waiters();

  uvx::Loop& loop_;
  Handlers h_;
  std::string path_;
  UniqueFd fd_;
  std::unique_ptr<uvx::Poll> poll_;
  std::unique_ptr<uvx::Timer> waiters_, reaper_;
  std::vector<std::unique_ptr<Client>> clients_, graveyard_;
  uint64_t next_id_ = 0;
};

// A JSON string literal for `s` (quotes included).
std::string json_string(std::string_view s);

// Client side of `attach`: hands (in_fd, out_fd) to the daemon behind `path` and waits until it
// has finished serving that session; returns the session's exit code. A daemon that does not
// answer within `take_ms` (a ping, then its "ok") is stopped or hung: ETIMEDOUT, and the caller
// must not serve the session itself, as the tree is still that daemon's.
Result<int> control_join(const std::string& path, const std::string& args, int in_fd, int out_fd, int take_ms);

// Client side: sends one request to the socket and returns the whole answer.
Result<std::string> control_request(const std::string& path, const std::string& request, int timeout_ms);

}  // namespace syncd::runtime
