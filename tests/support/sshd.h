// File: tests/support/sshd.h
//
// A real OpenSSH sshd for tests (Debian's openssh-server): its own config, a generated ed25519
// host key and client key in a temp dir, listening on 127.0.0.1 and a free port. start() returns
// once the port accepts connections; stop() kills sshd and every session process it started
// (sessions setsid() away from sshd's group, so they are found through /proc's parent links).
// The destructor stops it, so a failing test leaves no sshd behind. Without sshd/ssh-keygen on
// the machine, the test is skipped (exit 77; CI installs openssh-server and fails on skips).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lib/base/unique_fd.h"
#include "tests/support/process.h"

namespace syncd::test {

class SshServer {
 public:
  // Where it listens: 127.0.0.1 on a free port by default; inside a network namespace
  // (ip netns exec) on that namespace's address when `netns` is set.
  struct Where {
    std::string netns;
    std::string address = "127.0.0.1";
    int port = 0;  // 0: a free port on 127.0.0.1
    // Tests dial many sessions at once; sshd's own default ("10:30:100") drops some of them.
    std::string max_startups = "100";
    // The host key also comes as a certificate signed by a CA of the fixture's own;
    // ca_known_hosts() then trusts that CA (@cert-authority) instead of listing the key.
    bool host_certificate = false;
  };
  explicit SshServer(std::string dir) : SshServer(std::move(dir), Where{}) {}
  SshServer(std::string dir, Where where);
  ~SshServer();
  SshServer(const SshServer&) = delete;
  SshServer& operator=(const SshServer&) = delete;

  void start();
  // Kills sshd and its sessions at once (a "crash": nothing is reaped in order).
  void stop();
  // Waits (up to timeout_ms) for every session to end, then SIGTERMs the listener and reaps it,
  // so the CPU time of the whole tree is accounted to our RUSAGE_CHILDREN.
  void stop_gracefully(int timeout_ms = 10000);
  // Waits (up to timeout_ms) until no session runs (their remote commands exited): what a
  // session had open on this machine is closed then. False on timeout.
  bool wait_sessions_ended(int timeout_ms = 10000) const;
  int pid() const noexcept { return sshd_ ? sshd_->pid() : -1; }
  bool running() const noexcept { return static_cast<bool>(sshd_); }
  int port() const noexcept { return port_; }
  const std::string& dir() const noexcept { return dir_; }
  const std::string& log() const noexcept { return log_; }
  const std::string& client_key() const noexcept { return client_key_; }
  const std::string& known_hosts() const noexcept { return known_hosts_; }
  // "ssh -p PORT -i KEY -o UserKnownHostsFile=KH -o StrictHostKeyChecking=yes", for -rsh.
  std::string rsh(const std::string& key = {}, const std::string& known_hosts = {}) const;
  // A fresh key pair that sshd does not know (for the unknown-key test).
  std::string new_unlisted_key(const std::string& name) const;
  // A known_hosts file naming this server with a different host key (for the wrong-key test).
  std::string wrong_known_hosts() const;
  // With Where::host_certificate: a known_hosts file whose only line is "@cert-authority" for
  // this server's name and the CA that signed its host certificate.
  const std::string& ca_known_hosts() const noexcept { return ca_known_hosts_; }

 private:
  Where where_;
  std::string dir_, log_, config_, client_key_, known_hosts_, ca_known_hosts_;
  int port_ = 0;
  UniqueFd port_claim_;  // holds port_ for this fixture (reserve_port)
  std::unique_ptr<Child> sshd_;
};

// Kills (SIGKILL) every descendant of `pid`, deepest first, and then `pid` itself.
void kill_tree(int pid);
// The direct children of `pid`.
std::vector<int> children_of(int pid);

}  // namespace syncd::test
