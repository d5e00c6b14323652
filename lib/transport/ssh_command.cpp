#include "lib/transport/ssh_command.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>

#include "lib/base/fd_wait.h"
#include "lib/base/unique_fd.h"

extern char** environ;

namespace syncd::transport {
namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return std::tolower(c); });
  return r;
}

// ssh options that take an argument (OpenSSH 9 ssh(1)); a following word is their value.
bool takes_arg(char c) { return std::string_view("BbcDEeFIiJLlmOoPpQRSWw").find(c) != std::string_view::npos; }

// -o keys that syncd's own SSH session models; anything else makes the line OpenSSH-only.
bool modelled_option(const std::string& key) {
  static const char* const known[] = {"stricthostkeychecking", "userknownhostsfile", "port", "user",
                                      "identityfile", "connecttimeout", "serveraliveinterval",
                                      "serveralivecountmax", "batchmode", "addressfamily",
                                      "globalknownhostsfile", "loglevel", "compression", "identitiesonly",
                                      "passwordauthentication", "kbdinteractiveauthentication",
                                      "pubkeyauthentication"};
  return std::any_of(std::begin(known), std::end(known), [&](const char* k) { return key == k; });
}

}  // namespace

Result<std::vector<std::string>> split_command_line(std::string_view line) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\'') {
      const size_t end = line.find('\'', i + 1);
      if (end == std::string_view::npos) return Error::make(errc::corrupt, "unbalanced ' in command line");
      cur.append(line.substr(i + 1, end - i - 1));
      i = end;
    } else if (c == '"') {
      size_t j = i + 1;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size() &&
            std::string_view("\\\"$`").find(line[j + 1]) != std::string_view::npos) {
          ++j;
        } else if (line[j] == '$' || line[j] == '`') {
          return Error::make(errc::unsupported, "shell expansion ($ or `) in command line");
        }
        cur.push_back(line[j]);
      }
      if (j >= line.size()) return Error::make(errc::corrupt, "unbalanced \" in command line");
      i = j;
    } else if (c == '\\') {
      if (i + 1 >= line.size()) return Error::make(errc::corrupt, "command line ends with a backslash");
      cur.push_back(line[++i]);
    } else if (std::string_view("|&;<>()$`*?[#~").find(c) != std::string_view::npos) {
      return Error::make(errc::unsupported,
                         std::string("shell syntax '") + c + "' in command line: write a wrapper script");
    } else {
      cur.push_back(c);
    }
  }
  if (in_word) words.push_back(std::move(cur));
  if (words.empty()) return Error::make(errc::corrupt, "empty command line");
  return words;
}

std::string shell_quote(std::string_view word) {
  const bool plain = !word.empty() && std::all_of(word.begin(), word.end(), [](unsigned char c) {
    return std::isalnum(c) || std::string_view("/._-+=:,@%").find(static_cast<char>(c)) != std::string_view::npos;
  });
  if (plain) return std::string(word);
  std::string r = "'";
  for (char c : word) {
    if (c == '\'') {
      r += "'\\''";
    } else {
      r += c;
    }
  }
  return r + "'";
}

std::string remote_command(const std::vector<std::string>& argv) {
  std::string r;
  for (const auto& a : argv) {
    if (!r.empty()) r += ' ';
    r += shell_quote(a);
  }
  return r;
}

Result<SshCommand> SshCommand::parse(std::string_view line) {
  SshCommand c;
  SYNCD_TRY_ASSIGN(words, split_command_line(line));
  c.words = std::move(words);
  const std::string prog = c.words[0].substr(c.words[0].rfind('/') + 1);
  if (prog != "ssh") {
    c.needs_openssh = true;
    c.needs_openssh_why = "the command runs '" + c.words[0] + "', not ssh";
    return c;  // a wrapper (sshpass, ...): its arguments are its own business
  }
  auto openssh_only = [&](std::string why) {
    if (!c.needs_openssh) c.needs_openssh_why = std::move(why);
    c.needs_openssh = true;
  };
  for (size_t i = 1; i < c.words.size(); ++i) {
    const std::string& w = c.words[i];
    if (w.size() < 2 || w[0] != '-') return Error::make(errc::unsupported, "unexpected word '" + w + "' in the ssh command (host and command are added by syncd)");
    // Clustered flags: -4C, -vp 22, -p22.
    for (size_t k = 1; k < w.size(); ++k) {
      const char f = w[k];
      if (!takes_arg(f)) {
        if (f == '4' || f == '6') {
          c.family = f - '0';
        } else if (f != 'q' && f != 'C' && f != 'T' && f != 'n' && f != 'x' && f != 'a' && f != 'v') {
          openssh_only(std::string("ssh flag -") + f);
        }
        continue;
      }
      std::string val = w.substr(k + 1);
      if (val.empty()) {
        if (i + 1 >= c.words.size()) return Error::make(errc::corrupt, std::string("ssh option -") + f + " needs a value");
        val = c.words[++i];
      }
      switch (f) {
        case 'l': c.login = val; break;
        case 'i': c.identities.push_back(val); break;
        case 'p': {
          char* end = nullptr;
          const long p = std::strtol(val.c_str(), &end, 10);
          if (*end != '\0' || p < 1 || p > 65535) return Error::make(errc::corrupt, "bad ssh port '" + val + "'");
          c.port = static_cast<int>(p);
          break;
        }
        case 'o': {
          const size_t eq = val.find_first_of("= ");
          if (eq == std::string::npos) return Error::make(errc::corrupt, "ssh -o needs Key=Value, got '" + val + "'");
          const std::string key = lower(val.substr(0, eq));
          std::string v = val.substr(eq + 1);
          c.options[key] = v;
          if (key == "port") c.port = std::atoi(v.c_str());
          if (key == "user") c.login = v;
          if (key == "identityfile") c.identities.push_back(v);
          if (!modelled_option(key)) openssh_only("ssh option " + val.substr(0, eq));
          break;
        }
        default: openssh_only(std::string("ssh option -") + f); break;
      }
      break;  // the rest of this word was the value
    }
  }
  return c;
}

std::optional<std::string> SshCommand::option(std::string_view key) const {
  auto it = options.find(lower(key));
  if (it == options.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> SshCommand::argv_for(const std::string& host, const std::string& remote) const {
  std::vector<std::string> a;
  a.push_back(words[0]);
  const std::string prog = words[0].substr(words[0].rfind('/') + 1);
  if (prog == "ssh") {
    // First value wins in ssh: ours go before the user's only where they cannot conflict.
    if (!option("batchmode")) a.insert(a.end(), {"-o", "BatchMode=yes"});
    if (!option("serveraliveinterval")) a.insert(a.end(), {"-o", "ServerAliveInterval=10"});
    a.push_back("-T");  // no pty: the stream is binary
  }
  a.insert(a.end(), words.begin() + 1, words.end());
  a.push_back(host);
  a.push_back(remote);
  return a;
}

namespace {

// stdout of `argv` (stdin and stderr /dev/null), or nullopt if it cannot run, fails, or takes
// longer than 5 s (a `Match exec` in ssh_config runs what it likes).
std::optional<std::string> capture(const std::vector<std::string>& argv) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return std::nullopt;
  UniqueFd rd(p[0]), wr(p[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  wr.reset();
  if (rc != 0) return std::nullopt;
  std::string out;
  const Deadline deadline(5000);
  bool timed_out = false;
  for (;;) {
    if (wait_readable(rd.get(), deadline) <= 0) {
      timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    char buf[4096];
    const ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

// `ssh -G` output: key -> values (a key may repeat, as identityfile does), for the keys that
// decide where and how a connection goes.
std::map<std::string, std::string> connection_keys(const std::string& g) {
  static const char* const keys[] = {"hostname", "port", "user", "identityfile", "certificatefile", "identitiesonly",
                                     "proxycommand", "proxyjump", "controlmaster", "controlpath", "hostkeyalias",
                                     "userknownhostsfile", "globalknownhostsfile", "stricthostkeychecking",
                                     "addressfamily", "bindaddress", "bindinterface", "pkcs11provider",
                                     "identityagent", "remotecommand"};
  std::map<std::string, std::string> m;
  size_t at = 0;
  while (at < g.size()) {
    size_t nl = g.find('\n', at);
    if (nl == std::string::npos) nl = g.size();
    const std::string line = g.substr(at, nl - at);
    at = nl + 1;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    const std::string key = line.substr(0, sp);
    if (std::none_of(std::begin(keys), std::end(keys), [&](const char* k) { return key == k; })) continue;
    std::string& v = m[key];
    v += v.empty() ? line.substr(sp + 1) : " " + line.substr(sp + 1);
  }
  return m;
}

}  // namespace

std::string ssh_config_changes(const SshCommand& cmd, const std::string& host) {
  if (cmd.words.empty()) return {};
  std::vector<std::string> with = {cmd.words[0], "-G"};
  std::vector<std::string> without = {cmd.words[0], "-F", "/dev/null", "-G"};
  for (size_t i = 1; i < cmd.words.size(); ++i) {
    with.push_back(cmd.words[i]);
    without.push_back(cmd.words[i]);
  }
  with.push_back(host);
  without.push_back(host);
  std::string key;
  for (const auto& w : with) key += w + '\0';
  struct Kept {
    std::string changes;
    std::chrono::steady_clock::time_point at;
  };
  static std::mutex mu;
  static std::map<std::string, Kept> kept;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu);
    auto it = kept.find(key);
    if (it != kept.end() && now - it->second.at < std::chrono::seconds(10)) return it->second.changes;
  }
  std::string changes;
  const auto a = capture(with);
  const auto b = a ? capture(without) : std::nullopt;
  if (a && b) {
    const auto ca = connection_keys(*a), cb = connection_keys(*b);
    for (const auto& [k, v] : ca) {
      auto it = cb.find(k);
      if (it != cb.end() && it->second == v) continue;
      if (!changes.empty()) changes += ", ";
      changes += k + " " + v;
    }
    for (const auto& [k, v] : cb) {
      if (ca.count(k) == 0) changes += (changes.empty() ? "" : ", ") + k + " (unset)";
    }
  }
  std::lock_guard lock(mu);
  kept[key] = Kept{changes, now};
  return changes;
}

}  // namespace syncd::transport
