// File: lib/runtime/push.h
//
// Push: `syncd -rsyncssh SRC HOST DIR` — keeps DIR on HOST a mirror of the local SRC over one
// long-lived SSH session to `syncd attach DIR` on HOST (DESIGN.md §9). The local side is a
// Sender (watcher, index, versions); the session is an OpenSSH client process today
// (lib/transport/ssh_process). When the session ends — ssh exits, the network goes, the peer
// dies — the link reconnects with capped exponential backoff and jitter; the peer asks for
// everything after its durable watermark, so changes made meanwhile are sent then, none lost.
// Thread affinity: loop thread.
//
//   Push p(loop, {.source = "/opt/x", .host = "root@node2", .target = "/opt/x", ...});
//   SYNCD_TRY(p.start());  loop.run();
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lib/fs/root.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/receiver.h"
#include "lib/runtime/sender.h"
#include "lib/store/index.h"
#include "lib/transport/ssh_command.h"
#include "lib/transport/ssh_process.h"
#include "lib/transport/ssh_session.h"

namespace syncd::runtime {

struct PushOptions {
  std::string source;
  std::string host;       // [user@]host
  std::string target;     // directory on the host
  std::string state_dir;  // the local index
  std::vector<std::string> excludes;
  std::string rsh = "ssh";               // ssh command line (lsyncd's rsync.rsh)
  std::string remote_syncd = "syncd";    // program on the host
  std::vector<std::string> remote_args;  // extra arguments for `attach`
  SenderOptions sender;
  // "auto" (libssh2 unless the key or the rsh line needs the OpenSSH client), "libssh2", "openssh".
  std::string transport = "auto";
  // Two-way (TWO-WAY.md): peer sessions that join this daemon (`syncd attach` on this host, run
  // by the peer's push) are reconciled into this tree, and what they bring is never echoed back.
  bool two_way = false;
  uint32_t max_delete_share = 50;  // two-way: the mass-delete brake (SenderOptions)
  apply::Options apply;  // for joined sessions
  uint64_t backoff_min_ms = 250;
  uint64_t backoff_max_ms = 30000;
};

class Push {
 public:
  Push(uvx::Loop& loop, PushOptions opts);
  ~Push();
  Push(const Push&) = delete;
  Push& operator=(const Push&) = delete;

  Status start();
  // Serves a peer session handed over by `syncd attach` (ControlServer::Handlers::attach): a
  // two-way receiver on (in, out) sharing this daemon's index. Returns how to end it early.
  std::function<void()> serve_peer(UniqueFd in, UniqueFd out, const std::string& args,
                                   std::function<void(const std::string&)> done);
  // Connected, caught up, and nothing queued, in flight or unacknowledged.
  bool idle() const noexcept;
  // Nothing left that could still complete before exiting: local work done, and (when connected)
  // everything sent acknowledged. A shutdown waits for this, not for a peer that is down.
  bool drained() const noexcept;
  bool connected() const noexcept { return conn_ != nullptr && session_up_; }
  bool native() const noexcept { return native_; }
  const std::string& last_error() const noexcept { return last_error_; }
  uint64_t sessions() const noexcept { return sessions_; }
  // For `syncd status`: peer, connection state, queue, last error, sync latency percentiles.
  std::string status(bool json) const;

 private:
  void connect();
  Status choose_transport();
  void lost(uint64_t session, const std::string& why);

  uvx::Loop& loop_;
  PushOptions opts_;
  transport::SshCommand rsh_;
  std::unique_ptr<fs::Root> root_;
  std::unique_ptr<store::Index> index_;
  std::unique_ptr<Sender> sender_;
  std::unique_ptr<transport::SshProcess> ssh_;
  std::unique_ptr<transport::SshSession> session_ssh_;
  bool native_ = false;
  transport::SshParams params_;  // for the native transport
  std::unique_ptr<Connection> conn_;
  std::unique_ptr<uvx::Timer> retry_;
  uint64_t session_ = 0;    // id of the current session (callbacks of older ones are ignored)
  uint64_t sessions_ = 0;   // sessions started
  uint64_t lost_ = 0;       // the last session whose end was handled
  bool session_up_ = false;
  uint64_t backoff_ms_;
  std::string last_error_;
  std::mt19937_64 rng_;
  // Peer sessions joined through the control socket.
  struct Joined {
    uint64_t id = 0;
    std::unique_ptr<Connection> conn;
    std::unique_ptr<Receiver> rx;
    std::function<void(const std::string&)> done;
    bool ended = false;
  };
  std::vector<std::unique_ptr<Joined>> joined_;
  uint64_t next_joined_ = 0;
  uint64_t conflicts_ended_ = 0;  // conflicts counted by sessions that are gone
  std::unique_ptr<uvx::Timer> reap_;
  void end_joined(uint64_t id, const std::string& end_line);
  uint64_t conflicts() const noexcept;
};

}  // namespace syncd::runtime
