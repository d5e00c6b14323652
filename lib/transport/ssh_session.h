// File: lib/transport/ssh_session.h
//
// The native SSH transport (DESIGN.md §9, the default): a libssh2 session over a non-blocking TCP
// socket, driven by the loop (no blocking calls, no thread per connection): name resolution on
// the thread pool, connect, handshake, host key check against known_hosts (syncd's own parser,
// StrictHostKeyChecking yes / accept-new / no), public-key auth with the given identities, one
// channel (4 MiB window) exec'ing the remote command. The channel is bridged to one end of a
// socketpair; the other end, take_stream(), is the byte stream the protocol runs on — the same
// shape as the OpenSSH-process transport, so everything above is shared.
// Dead peers: TCP keepalive + TCP_USER_TIMEOUT on the socket (the kernel ends a connection whose
// data goes unacknowledged) and SSH keepalives (libssh2_keepalive_send on a timer); a connect+auth
// deadline. The channel's stderr (the remote syncd's log) is logged line by line.
// Thread affinity: loop thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/uvx/uvx.h"

namespace syncd::transport {

enum class StrictHostKeys { yes, accept_new, no };

// The libssh2 this binary runs with, and whether it can sign RSA user auth with rsa-sha2-256/512
// (1.11 and later; Debian 12 ships 1.10, which signs only with SHA-1 ssh-rsa).
std::string libssh2_version();
bool libssh2_signs_rsa_sha2();

struct SshParams {
  std::string host;
  int port = 22;
  std::string user;
  std::vector<std::string> identities;   // private key files, tried in order
  std::vector<std::string> known_hosts;  // files; accept-new appends to the first
  StrictHostKeys strict = StrictHostKeys::yes;
  int family = 0;                        // 4, 6 or 0 (either)
  uint64_t connect_timeout_ms = 15000;   // until the remote command runs
  uint64_t keepalive_s = 10;
  std::string command;                   // remote command line
  std::string peer;                      // name for log lines
};

class SshSession {
 public:
  using OnEnd = std::function<void(const std::string& why)>;
  static Result<std::unique_ptr<SshSession>> start(uvx::Loop& loop, SshParams params, OnEnd on_end);
  ~SshSession();
  SshSession(const SshSession&) = delete;
  SshSession& operator=(const SshSession&) = delete;

  // Our end of the stream; bytes written before the channel is up wait in the socket. Once.
  UniqueFd take_stream() { return std::move(stream_); }
  bool running() const noexcept { return stage_ == Stage::running; }
  uint64_t wire_bytes_in() const noexcept { return wire_in_; }
  uint64_t wire_bytes_out() const noexcept { return wire_out_; }

 private:
  enum class Stage { resolving, connecting, handshake, auth, channel, exec, running, closing, done };
  SshSession(uvx::Loop& loop, SshParams p, OnEnd on_end);
  void resolved(std::vector<std::string> addrs, std::string err);
  void try_connect();
  void step();
  bool check_host_key(std::string& why);
  void pump();
  void wait_closed();
  void update_polls();
  void fail(const std::string& why);
  void drain_stderr();

  struct Handles;  // libssh2's session and channel (only the .cpp sees libssh2.h)

  uvx::Loop& loop_;
  SshParams p_;
  OnEnd on_end_;
  Stage stage_ = Stage::resolving;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for the resolver's callback
  std::vector<std::string> addrs_;  // numeric addresses left to try
  UniqueFd tcp_;
  UniqueFd stream_;  // handed out
  UniqueFd local_;   // our side of the bridge
  std::unique_ptr<uvx::Poll> tcp_poll_, local_poll_;
  std::unique_ptr<uvx::Timer> deadline_, keepalive_, close_wait_;
  std::unique_ptr<Handles> h_;
  size_t identity_ = 0;
  std::string auth_errors_;
  Bytes to_local_;          // channel bytes not yet written to the local socket
  size_t to_local_pos_ = 0;
  Bytes to_remote_;         // local bytes not yet accepted by the channel
  size_t to_remote_pos_ = 0;
  bool local_eof_ = false, eof_sent_ = false, remote_eof_ = false;
  std::string stderr_partial_;
  uint64_t wire_in_ = 0, wire_out_ = 0;
};

}  // namespace syncd::transport
