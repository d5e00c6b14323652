#include "tests/support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "tests/support/tmpdir.h"
#include "tests/support/tree_diff.h"

namespace syncd::test {

Child::Child(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) std::abort();
  if (pid_ == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::setpgid(0, 0);  // its own group: a stray grandchild (ssh) can be killed with it
    ::execv(a[0], a.data());
    ::_exit(127);
  }
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void Child::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

int Child::stop(int sig) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, sig);
  return wait();
}

int Child::stop_within(int sig, int ms) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, sig);
  int st = 0;
  for (int waited = 0; waited < ms; waited += 10) {
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      ::kill(-pid_, SIGKILL);
      pid_ = -1;
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    ::usleep(10000);  // waiting for an exit, not for sync
  }
  ::kill(pid_, SIGKILL);
  return wait();
}

int Child::wait() {
  if (pid_ <= 0) return -1;
  int st = 0;
  ::waitpid(pid_, &st, 0);
  ::kill(-pid_, SIGKILL);  // whatever it left in its group
  pid_ = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool wait_until(const std::string& dir, const std::function<bool()>& done, int timeout_ms) {
  const int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) std::abort();
  ::inotify_add_watch(fd, dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool ok = false;
  while (!(ok = done())) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    struct pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) > 0) {
      char buf[4096];
      while (::read(fd, buf, sizeof buf) > 0) {
      }
    }
  }
  ::close(fd);
  return ok;
}

bool wait_for(const std::string& dir, const std::string& name, int timeout_ms) {
  return wait_until(dir, [&] { return exists(dir + "/" + name); }, timeout_ms);
}

bool wait_for_text(const std::string& file, const std::string& needle, size_t from, int timeout_ms) {
  return wait_until(file.substr(0, file.rfind('/')), [&] {
    if (!exists(file)) return false;
    const std::string text = read_file(file);
    return text.size() > from && text.find(needle, from) != std::string::npos;
  }, timeout_ms);
}

bool cookie_barrier(const std::string& src, const std::string& dst, const std::string& name,
                    std::vector<std::string>& diff, int timeout_ms, bool dir_mtimes) {
  write_file(src + "/" + name, "c");
  if (!wait_for(dst, name, timeout_ms)) return false;
  diff = tree_diff(src, dst, [](const std::string& rel) { return rel.rfind("cookie.", 0) == 0; }, dir_mtimes);
  return true;
}

size_t count_text(const std::string& file, const std::string& needle) {
  if (!exists(file)) return 0;
  const std::string text = read_file(file);
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

bool wait_processes_exited(const std::string& pattern, int timeout_ms) {
  FILE* p = ::popen(("pgrep -f '" + pattern + "'").c_str(), "r");
  if (p == nullptr) return false;
  std::vector<pid_t> pids;
  for (long pid; std::fscanf(p, "%ld", &pid) == 1;) pids.push_back(static_cast<pid_t>(pid));
  ::pclose(p);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (pid_t pid : pids) {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) continue;  // already gone
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd pf{fd, POLLIN, 0};
    const int rc = ::poll(&pf, 1, static_cast<int>(std::max<long long>(0, left.count())));
    ::close(fd);
    if (rc != 1) return false;
  }
  return true;
}

long vm_hwm_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

}  // namespace syncd::test
