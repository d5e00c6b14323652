// File: tests/support/relay.h
//
// A TCP relay 127.0.0.1:port() -> 127.0.0.1:target on a thread of its own, counting the bytes
// it forwards both ways: what really crossed a connection to sshd, SSH framing included (benches
// count wire bytes with it). And the known_hosts line that lets ssh accept sshd's host key
// through the relay's port.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "tests/support/sshd.h"

namespace syncd::test {

class ByteRelay {
 public:
  explicit ByteRelay(int target);
  ~ByteRelay();
  ByteRelay(const ByteRelay&) = delete;
  ByteRelay& operator=(const ByteRelay&) = delete;
  int port() const { return port_; }
  uint64_t bytes() const { return bytes_.load(); }

 private:
  void run();
  int target_, lfd_ = -1, port_ = 0;
  int stop_[2] = {-1, -1};
  std::atomic<uint64_t> bytes_{0};
  std::thread thread_;
};

// Writes `path`: sshd's host key for [127.0.0.1]:port. Returns `path`.
std::string relay_known_hosts(const SshServer& sshd, int port, const std::string& path);

// "ssh -p PORT -i KEY -o UserKnownHostsFile=... -o StrictHostKeyChecking=yes" through the relay.
std::string relay_rsh(const SshServer& sshd, int port, const std::string& known_hosts);

}  // namespace syncd::test
