#include "syncd/daemon.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "lib/base/unique_fd.h"

namespace syncd::daemon {
namespace {
int g_ready_fd = -1;
}

int detach() {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    std::perror("syncd: pipe");
    return 255;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("syncd: fork");
    return 255;
  }
  if (pid > 0) {
    ::close(pipefd[1]);
    char ok = 0;
    ssize_t n;
    do {
      n = ::read(pipefd[0], &ok, 1);
    } while (n < 0 && errno == EINTR);
    if (n == 1 && ok == 'k') return 0;
    std::fprintf(stderr, "syncd: the daemon did not start (see its log)\n");
    return 255;
  }
  ::close(pipefd[0]);
  g_ready_fd = pipefd[1];
  ::setsid();
  if (::chdir("/") != 0) std::perror("syncd: chdir /");
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
    if (null > 2) ::close(null);
  }
  return -1;
}

void ready() {
  if (g_ready_fd < 0) return;
  (void)!::write(g_ready_fd, "k", 1);
  ::close(g_ready_fd);
  g_ready_fd = -1;
}

Status notify(const std::string& state) {
  const char* where = std::getenv("NOTIFY_SOCKET");
  if (where == nullptr || where[0] == '\0') return {};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(where);
  if ((where[0] != '/' && where[0] != '@') || len >= sizeof addr.sun_path) {
    return Error::make(errc::unsupported, std::string("NOTIFY_SOCKET \"") + where + "\" is not a unix socket path");
  }
  std::memcpy(addr.sun_path, where, len);
  if (where[0] == '@') addr.sun_path[0] = '\0';  // abstract: the name is not NUL-terminated
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket for NOTIFY_SOCKET");
  const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  if (::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), addr_len) < 0) {
    return Error::from_errno(std::string("notify systemd at ") + where);
  }
  return {};
}

PidFile::~PidFile() {
  if (fd_ >= 0) {
    ::unlink(path_.c_str());
    ::close(fd_);
  }
}

Status PidFile::take(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return Error::from_errno("pidfile " + path);
  if (::lockf(fd, F_TLOCK, 0) != 0) {
    ::close(fd);
    return Error::make(errc::unsupported, "pidfile " + path + " is locked: another syncd runs with it");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size())) {
    const auto e = Error::from_errno("write pidfile " + path);
    ::close(fd);
    return e;
  }
  fd_ = fd;
  path_ = path;
  return {};
}

}  // namespace syncd::daemon
