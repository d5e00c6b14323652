#include "tests/support/relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <utility>
#include <vector>

namespace syncd::test {

ByteRelay::ByteRelay(int target) : target_(target) {
  lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd_, 64) != 0 ||
      ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::perror("relay");
    std::exit(2);
  }
  port_ = ntohs(a.sin_port);
  ::pipe2(stop_, O_CLOEXEC);
  thread_ = std::thread([this] { run(); });
}

ByteRelay::~ByteRelay() {
  (void)!::write(stop_[1], "x", 1);
  thread_.join();
  ::close(lfd_);
  ::close(stop_[0]);
  ::close(stop_[1]);
}

void ByteRelay::run() {
  std::vector<std::pair<int, int>> pairs;  // client, server
  char buf[1 << 16];
  for (;;) {
    std::vector<pollfd> pf{{stop_[0], POLLIN, 0}, {lfd_, POLLIN, 0}};
    for (auto& [c, s] : pairs) {
      pf.push_back({c, POLLIN, 0});
      pf.push_back({s, POLLIN, 0});
    }
    if (::poll(pf.data(), pf.size(), -1) < 0) continue;
    if (pf[0].revents) break;
    if (pf[1].revents & POLLIN) {
      const int c = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(target_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (c >= 0 && ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        pairs.emplace_back(c, s);
      } else {
        ::close(c);
        ::close(s);
      }
    }
    std::vector<size_t> dead;
    for (size_t i = 0; i < pairs.size(); ++i) {
      for (int dir = 0; dir < 2; ++dir) {
        const pollfd& p = pf[2 + 2 * i + dir];
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const int from = dir == 0 ? pairs[i].first : pairs[i].second;
        const int to = dir == 0 ? pairs[i].second : pairs[i].first;
        const ssize_t n = ::read(from, buf, sizeof buf);
        if (n <= 0) {
          dead.push_back(i);
          break;
        }
        bytes_ += static_cast<uint64_t>(n);
        for (ssize_t off = 0; off < n;) {  // blocking write: the peer reads promptly
          const ssize_t w = ::write(to, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) break;
          off += w;
        }
      }
    }
    for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
      ::close(pairs[*it].first);
      ::close(pairs[*it].second);
      pairs.erase(pairs.begin() + static_cast<ptrdiff_t>(*it));
    }
  }
  for (auto& [c, s] : pairs) {
    ::close(c);
    ::close(s);
  }
}

std::string relay_known_hosts(const SshServer& sshd, int port, const std::string& path) {
  std::ifstream in(sshd.known_hosts());
  std::string host, rest;
  in >> host;
  std::getline(in, rest);
  std::ofstream(path) << "[127.0.0.1]:" << port << rest << "\n";
  return path;
}

std::string relay_rsh(const SshServer& sshd, int port, const std::string& known_hosts) {
  return "ssh -p " + std::to_string(port) + " -i " + sshd.client_key() + " -o UserKnownHostsFile=" + known_hosts +
         " -o StrictHostKeyChecking=yes";
}

}  // namespace syncd::test
