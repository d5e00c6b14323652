// File: tests/support/process.h
//
// Test helpers for real processes and barriers (no sleeps):
//   Child        fork/exec of argv with stdout+stderr appended to a log; killed (SIGKILL) and
//                reaped by the destructor if still running, so a failing test leaves nothing.
//   wait_until   re-checks a condition whenever something in a directory changes (inotify),
//                up to a timeout.
//   wait_for / wait_for_text   the two barriers tests use: a name appearing in a directory, a
//                line appearing in a log after an offset.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace syncd::test {

class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const noexcept { return pid_; }
  void signal(int sig);
  // Sends `sig`, reaps, returns the exit status (128+signal if it died of one).
  int stop(int sig);
  // The same, but SIGKILL after `ms` (for programs that may miss a signal: lsyncd 2.2.3 can lose
  // a SIGTERM that arrives while it is not in its select, and would then never exit).
  int stop_within(int sig, int ms);
  // Reaps without signalling (waits for it to exit by itself).
  int wait();

 private:
  pid_t pid_ = -1;
};

bool wait_until(const std::string& dir, const std::function<bool()>& done, int timeout_ms = 30000);
bool wait_for(const std::string& dir, const std::string& name, int timeout_ms = 30000);
// `needle` in `file` at or after byte `from`.
bool wait_for_text(const std::string& file, const std::string& needle, size_t from, int timeout_ms = 30000);
// The cookie barrier the integration tests share: writes `src/name`, waits for it in `dst`
// (everything written before it was applied, one ordered stream), then compares the trees,
// ignoring cookie.* names. False if the cookie never came; `diff` gets one line per difference.
bool cookie_barrier(const std::string& src, const std::string& dst, const std::string& name,
                    std::vector<std::string>& diff, int timeout_ms = 30000, bool dir_mtimes = false);
// How often `needle` occurs in `file`.
size_t count_text(const std::string& file, const std::string& needle);
// Waits until every process whose command line matches `pattern` (pgrep -f) has exited: a
// pidfd per process, polled. False on timeout.
bool wait_processes_exited(const std::string& pattern, int timeout_ms = 30000);
// The peak resident set of a running process (VmHWM), in KiB; -1 if it cannot be read.
long vm_hwm_kib(pid_t pid);

}  // namespace syncd::test
