// File: lib/transport/ssh_process.h
//
// The OpenSSH-client transport (DESIGN.md §9, second implementation): one `ssh ... HOST
// 'syncd attach DIR'` process per peer connection, its stdin and stdout one end of a socketpair
// whose other end is the stream syncd speaks the protocol on. ssh's stderr is read on the loop
// and each line logged ("ssh[node2]: Permission denied (publickey)."), and kept: the last lines
// explain an exit. on_exit runs once the process is reaped.
// Thread affinity: loop thread.
//
//   SYNCD_TRY_ASSIGN(p, SshProcess::start(loop, argv, "node2", [&](std::string why) { ... }));
//   Connection c(loop, p->take_stream(), ...);
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/uvx/uvx.h"

namespace syncd::transport {

class SshProcess {
 public:
  // why: "ssh exited with status 255: <last stderr line>" and the like.
  using OnExit = std::function<void(const std::string& why)>;
  static Result<std::unique_ptr<SshProcess>> start(uvx::Loop& loop, const std::vector<std::string>& argv,
                                                   std::string peer, OnExit on_exit);
  ~SshProcess();
  SshProcess(const SshProcess&) = delete;
  SshProcess& operator=(const SshProcess&) = delete;

  // Our end of the stream (non-blocking socket). Once.
  UniqueFd take_stream() { return std::move(stream_); }
  bool running() const noexcept { return proc_ && proc_->running(); }
  // What ssh wrote to stderr last (reads whatever is pending first).
  const std::string& last_error_line() {
    read_stderr();
    return last_line_;
  }
  void terminate() {
    if (proc_) proc_->kill(SIGTERM);
  }

 private:
  SshProcess(uvx::Loop& loop, std::string peer) : loop_(loop), peer_(std::move(peer)) {}
  void read_stderr();
  void exited(int64_t status, int sig);

  uvx::Loop& loop_;
  std::string peer_;
  OnExit on_exit_;
  UniqueFd stream_;
  UniqueFd err_;
  std::unique_ptr<uvx::Poll> err_poll_;
  std::unique_ptr<uvx::Process> proc_;
  std::string partial_;
  std::string last_line_;
};

}  // namespace syncd::transport
