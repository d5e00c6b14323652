#include "tests/support/sshd.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "tests/support/tmpdir.h"

namespace syncd::test {
namespace {

constexpr const char* kSshd = "/usr/sbin/sshd";

void skip_without_openssh() {
  if (::access(kSshd, X_OK) != 0 || ::access("/usr/bin/ssh-keygen", X_OK) != 0 ||
      ::access("/usr/bin/ssh", X_OK) != 0) {
    std::fprintf(stderr, "SKIP: OpenSSH (openssh-server, openssh-client) is not installed\n");
    std::exit(77);
  }
}

void must(const std::string& cmd) {
  if (run(cmd) != 0) {
    std::fprintf(stderr, "test fixture: '%s' failed\n", cmd.c_str());
    std::abort();
  }
}

// A port for this fixture's sshd, for as long as the fixture lives (restarts keep it): below the
// kernel's ephemeral range, so no outgoing connection and no bind(0) elsewhere takes it, and held
// by a claim, so no other test fixture running in parallel picks it. (Before, a port from
// bind(0) could be handed to another test's sshd between our probe and sshd's own bind; our
// readiness probe then reached the other sshd.)
int reserve_port(UniqueFd& claim) {
  int low = 32768;
  if (std::ifstream r("/proc/sys/net/ipv4/ip_local_port_range"); r) r >> low;
  const int first = 10000, span = std::max(1000, low - first);
  const int start = static_cast<int>(::getpid() * 7919u % static_cast<unsigned>(span));
  for (int i = 0; i < span; ++i) {
    const int port = first + (start + i) % span;
    // The claim: an abstract unix socket named for the port (exclusive, gone with the process).
    UniqueFd l(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un u{};
    u.sun_family = AF_UNIX;
    const std::string name = "syncd-test-port-" + std::to_string(port);
    std::copy(name.begin(), name.end(), u.sun_path + 1);
    const auto ulen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    if (!l || ::bind(l.get(), reinterpret_cast<sockaddr*>(&u), ulen) != 0) continue;
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) continue;  // taken by something else
    claim = std::move(l);
    return port;
  }
  std::fprintf(stderr, "test fixture: no free port for sshd below %d\n", low);
  std::abort();
}

bool accepts(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

std::string first_line(const std::string& path) {
  std::ifstream f(path);
  std::string l;
  std::getline(f, l);
  return l;
}

}  // namespace

namespace {

// A /proc/PID/stat line, or "" when the process is gone.
std::string proc_stat(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buf[4096];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::map<int, std::vector<int>> process_children() {
  std::map<int, std::vector<int>> children;
  if (DIR* d = ::opendir("/proc")) {
    while (auto* e = ::readdir(d)) {
      const int p = std::atoi(e->d_name);
      if (p <= 0) continue;
      // read(2), not ifstream: a process that exits between open and read makes the read
      // fail with ESRCH, which libstdc++'s filebuf turns into an exception that no stream
      // state catches when read through istreambuf_iterator (CI aborted on exactly that).
      const std::string s = proc_stat("/proc/" + std::string(e->d_name) + "/stat");
      const size_t close = s.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(s.substr(close + 2));
      char state;
      int ppid = 0;
      rest >> state >> ppid;
      children[ppid].push_back(p);
    }
    ::closedir(d);
  }
  return children;
}

}  // namespace

std::vector<int> children_of(int pid) { return process_children()[pid]; }

void kill_tree(int pid) {
  auto children = process_children();
  std::vector<int> order;
  std::vector<int> todo{pid};
  while (!todo.empty()) {
    const int p = todo.back();
    todo.pop_back();
    order.push_back(p);
    for (int c : children[p]) todo.push_back(c);
  }
  for (auto it = order.rbegin(); it != order.rend(); ++it) ::kill(*it, SIGKILL);
}

SshServer::SshServer(std::string dir, Where where) : where_(std::move(where)), dir_(std::move(dir)) {
  skip_without_openssh();
  ::mkdir(dir_.c_str(), 0700);
  ::mkdir("/run/sshd", 0755);  // privilege separation directory (the service normally makes it)
  log_ = dir_ + "/sshd.log";
  config_ = dir_ + "/sshd_config";
  client_key_ = dir_ + "/id_ed25519";
  known_hosts_ = dir_ + "/known_hosts";
  must("ssh-keygen -q -t ed25519 -N '' -C syncd-test-host -f " + dir_ + "/host_ed25519");
  must("ssh-keygen -q -t ed25519 -N '' -C syncd-test-client -f " + client_key_);
  must("cp " + client_key_ + ".pub " + dir_ + "/authorized_keys");
  port_ = where_.port != 0 ? where_.port : reserve_port(port_claim_);
  std::ofstream c(config_);
  c << "Port " << port_ << "\n"
    << "ListenAddress " << where_.address << "\n"
    << "HostKey " << dir_ << "/host_ed25519\n"
    << "PidFile " << dir_ << "/sshd.pid\n"
    << "AuthorizedKeysFile " << dir_ << "/authorized_keys\n"
    << "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
    << "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
    << "LogLevel VERBOSE\nMaxStartups " << where_.max_startups << "\n";
  const std::string name = "[" + where_.address + "]:" + std::to_string(port_);
  if (where_.host_certificate) {
    must("ssh-keygen -q -t ed25519 -N '' -C syncd-test-ca -f " + dir_ + "/host_ca");
    must("ssh-keygen -q -s " + dir_ + "/host_ca -I syncd-test-host -h -n " + where_.address + " " + dir_ +
         "/host_ed25519.pub");
    c << "HostCertificate " << dir_ << "/host_ed25519-cert.pub\n";
    ca_known_hosts_ = dir_ + "/known_hosts.ca";
    std::ofstream(ca_known_hosts_) << "@cert-authority " << name << " " << first_line(dir_ + "/host_ca.pub") << "\n";
  }
  c.close();
  std::ofstream k(known_hosts_);
  k << name << " " << first_line(dir_ + "/host_ed25519.pub") << "\n";
}

SshServer::~SshServer() { stop(); }

void SshServer::start() {
  if (sshd_) return;
  std::vector<std::string> argv{kSshd, "-D", "-e", "-f", config_};
  if (!where_.netns.empty()) argv.insert(argv.begin(), {"/usr/sbin/ip", "netns", "exec", where_.netns});
  const size_t log_before = exists(log_) ? read_file(log_).size() : 0;
  sshd_ = std::make_unique<Child>(argv, log_);
  if (!where_.netns.empty() || where_.address != "127.0.0.1") {
    // Not probed over IPv4 loopback: sshd says when it listens.
    if (!wait_for_text(log_, "Server listening on", log_before, 20000)) {
      std::fprintf(stderr, "sshd did not start in %s; log:\n%s\n", where_.netns.c_str(), read_file(log_).c_str());
      std::abort();
    }
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!accepts(port_)) {
    // The only poll-wait in the fixture: sshd gives no readiness signal but its listening port.
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "sshd did not start; log:\n%s\n", read_file(log_).c_str());
      std::abort();
    }
    ::poll(nullptr, 0, 5);
  }
}

void SshServer::stop() {
  if (!sshd_) return;
  kill_tree(sshd_->pid());
  (void)sshd_->wait();
  sshd_.reset();
}

bool SshServer::wait_sessions_ended(int timeout_ms) const {
  if (!sshd_) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!children_of(sshd_->pid()).empty()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    ::poll(nullptr, 0, 10);  // sessions end when their clients go; no event to wait on
  }
  return true;
}

void SshServer::stop_gracefully(int timeout_ms) {
  if (!sshd_) return;
  (void)wait_sessions_ended(timeout_ms);
  (void)sshd_->stop(SIGTERM);
  sshd_.reset();
}

std::string SshServer::rsh(const std::string& key, const std::string& known_hosts) const {
  return "ssh -p " + std::to_string(port_) + " -i " + (key.empty() ? client_key_ : key) +
         " -o UserKnownHostsFile=" + (known_hosts.empty() ? known_hosts_ : known_hosts) +
         " -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes";
}

std::string SshServer::new_unlisted_key(const std::string& name) const {
  const std::string k = dir_ + "/" + name;
  must("ssh-keygen -q -t ed25519 -N '' -C unlisted -f " + k);
  return k;
}

std::string SshServer::wrong_known_hosts() const {
  const std::string other = dir_ + "/other_host";
  must("rm -f " + other + " " + other + ".pub && ssh-keygen -q -t ed25519 -N '' -C impostor -f " + other);
  const std::string kh = dir_ + "/known_hosts.wrong";
  std::ofstream k(kh);
  k << "[127.0.0.1]:" << port_ << " " << first_line(other + ".pub") << "\n";
  return kh;
}

}  // namespace syncd::test
