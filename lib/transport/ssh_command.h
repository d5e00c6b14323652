// File: lib/transport/ssh_command.h
//
// An ssh command line as lsyncd users write it in `rsync.rsh` / `-rsh` ("ssh -l root -i
// /root/.ssh/id_lsyncd -p 2222 -o StrictHostKeyChecking=accept-new"), split like a POSIX shell
// would (quotes, backslashes; no expansion), and what it asks for: login, identity, port, -o
// options, address family. Every option applies to every connection (LSYNCD-COMPAT: never only
// some). `needs_openssh` is set when the line uses what only the OpenSSH client can do (a wrapper
// program, ProxyJump/ProxyCommand, ControlMaster, an option we do not model); what ssh_config
// does for a host is asked separately (ssh_config_changes).
// Thread affinity: plain values and pure functions.
//
//   SYNCD_TRY_ASSIGN(cmd, SshCommand::parse("ssh -p 2222 -i /root/.ssh/id_ed25519"));
//   auto argv = cmd.argv_for("node2", remote_command({"syncd", "attach", "/opt/x"}));
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"

namespace syncd::transport {

// Splits `line` into words like sh does for a simple command: '…' literal, "…" with \-escapes
// for \ " $ `, backslash outside quotes; no variables, globs or operators (those are errors).
Result<std::vector<std::string>> split_command_line(std::string_view line);

// Quotes one word for a POSIX shell (the remote side runs the command through the user's shell).
std::string shell_quote(std::string_view word);

// argv joined into one remote command string, each word quoted.
std::string remote_command(const std::vector<std::string>& argv);

struct SshCommand {
  std::vector<std::string> words;           // as given; words[0] is the program
  std::optional<std::string> login;         // -l
  std::vector<std::string> identities;      // -i (in order)
  std::optional<int> port;                  // -p
  std::map<std::string, std::string> options;  // -o Key=Value (keys lower-cased)
  int family = 0;                           // 4, 6 or 0
  bool needs_openssh = false;
  std::string needs_openssh_why;

  static Result<SshCommand> parse(std::string_view line);
  // The option's value, if given (key case-insensitive, like ssh_config).
  std::optional<std::string> option(std::string_view key) const;
  // Full argv to run the command on `host` (user@host allowed): our own safety options first
  // (BatchMode: never prompt; a missing key or passphrase is an error, not a hang), then the
  // user's words, then the host and the remote command.
  std::vector<std::string> argv_for(const std::string& host, const std::string& remote) const;
};

// What ssh_config (~/.ssh/config, /etc/ssh/ssh_config and their includes) changes about a
// connection to `host` with this command line — a HostName alias, Port, User, IdentityFile,
// ProxyJump, ControlMaster, known_hosts files, ... — as "hostname 10.0.0.2, port 2222"; empty
// when it changes none of them, or when `ssh -G` cannot say (no OpenSSH client). The native
// transport does not read ssh_config, so such a host needs the OpenSSH client. Runs `ssh -G`
// with and without the config files (a few ms; answers are kept for 10 s, so a config of many
// syncs to one host asks once). Algorithm lists (crypto policies) are not compared.
std::string ssh_config_changes(const SshCommand& cmd, const std::string& host);

}  // namespace syncd::transport
