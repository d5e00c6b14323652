// File: syncd/daemon.h
//
// Becoming a daemon the way lsyncd does (fork, setsid, chdir /, stdio to /dev/null), but with
// the starting process waiting until the daemon holds its pidfile, and the pidfile itself
// (written and lockf-locked by the daemon, also under -nodaemon; removed on exit).
// Thread affinity: main thread, before any other thread exists.
#pragma once

#include <string>

#include "lib/base/result.h"

namespace syncd::daemon {

// Returns the exit code for the starting process (0, or 255 if the daemon failed early), or -1
// in the daemon. The starting process returns only once ready() ran in the daemon.
int detach();
// The daemon is detached, holds its pidfile and answers on its control sockets: lets the
// starting process exit 0 (so `syncd status` right after it finds the daemon).
void ready();

// systemd's notify protocol (sd_notify(3), without libsystemd: one datagram to the unix socket
// named by $NOTIFY_SOCKET, '@' for the abstract namespace): "READY=1" once the control sockets
// listen (Type=notify units), "RELOADING=1" at a SIGHUP. Nothing without $NOTIFY_SOCKET.
Status notify(const std::string& state);

class PidFile {
 public:
  PidFile() = default;
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;
  ~PidFile();
  // Creates (0644), locks (a second daemon with the same pidfile refuses to start), writes.
  Status take(const std::string& path);

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace syncd::daemon
