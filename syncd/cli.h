// File: syncd/cli.h
//
// lsyncd's command line (LSYNCD-COMPAT.md §3): one or two dashes, option arguments as the next
// words, one config file or command-line syncs (-rsync, -rsyncssh, -direct, repeatable), lsyncd's
// error texts. syncd's own options (state directory, two-way peers, transport, ...) ride along
// and apply to every sync.
// Thread affinity: pure function.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/config/config.h"

namespace syncd::cli {

// syncd's additions to lsyncd's options (each also has a `syncd = {...}` key in configs).
struct Extras {
  bool fsync = true;
  bool two_way = false;
  bool hard_links = false;  // -hard-links: rsync.hard_links for command-line syncs
  struct Peer {
    std::string host, dir;
    std::optional<std::string> remote_rundir;
  };
  // -peer HOST DIR (two-way mesh nodes besides the -rsyncssh one) and -remote-rundir belong to
  // the command-line sync they follow: remotes[i + 1] to the i-th; remotes[0] holds those given
  // before any sync (with a config file: all of them), which go to the first sync to a host.
  struct Remote {
    std::optional<std::string> remote_rundir;  // -remote-rundir right after -rsyncssh
    std::vector<Peer> peers;
  };
  std::vector<Remote> remotes{Remote{}};
  std::optional<std::string> state_dir, remote_state_dir, rsh, remote_syncd, transport, rundir, conflict_hook;
  std::vector<std::string> excludes;
  std::optional<long> max_delete_share;
  std::optional<long> tombstone_min_age, tombstone_max_age;
};

struct Invocation {
  enum class Action { run, help, version } action = Action::run;
  config::CommandLine cl;
  std::optional<std::string> config_file;
  std::vector<std::string> log;  // -log categories
  Extras extras;
};

// The error's context is lsyncd's message (printed as "Error: <message>", exit 255).
Result<Invocation> parse(const std::vector<std::string>& args);

const char* usage_text();

}  // namespace syncd::cli
