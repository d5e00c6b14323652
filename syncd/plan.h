// File: syncd/plan.h
//
// What syncd runs for a configuration: lsyncd syncs (lib/config) plus syncd's own options
// (syncd/cli.h) become runtime nodes. default.direct and a local default.rsync target are a
// DirectMirror; default.rsyncssh and an rsync `host:dir` target are a Push. rsyncssh syncs of one
// source form one node with a peer each; they are two-way when the config says `bidirectional =
// true`, or — lsyncd's symmetric active/active setup, the acme2certifier config on both nodes —
// when `source` and `targetdir` are the same directory, unless `bidirectional = false`.
// Keys syncd does not honour get one warning each; lsyncd features syncd cannot run (custom
// layer-1/2/3 actions, rsync daemon targets) are errors naming the sync and its file:line.
// Thread affinity: pure function.
#pragma once

#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/config/config.h"
#include "lib/runtime/actions.h"
#include "lib/runtime/direct.h"
#include "lib/runtime/push.h"
#include "syncd/cli.h"

namespace syncd::plan {

struct Node {
  enum class Type { direct, push, actions } type = Type::direct;
  std::vector<config::Sync> syncs;  // the lsyncd syncs this node serves (status file, logs)
  runtime::DirectOptions direct;
  runtime::PushOptions push;
  runtime::ActionOptions actions;  // lsyncd layer 3: string actions
  std::string rundir;       // control socket directory
  std::string target_text;  // "host:dir" / "dir" for log lines
  bool init = true;         // lsyncd's init: false skips the startup transfer (logged only)
  std::string state_kind, state_key;  // what names its default state directory
};

struct Plan {
  std::vector<Node> nodes;
  std::vector<std::string> warnings;  // one per key syncd accepts but does not do as lsyncd
  std::vector<std::string> notes;     // what syncd chose (delay, two-way detection)
};

// `p` made absolute against the working directory (a daemon runs from "/"), no trailing '/'.
std::string absolute(const std::string& p);

// `default_state_dir(kind, key)` names a node's state directory when none is configured. A
// -statedir on the command line is the state directory of a single node, and the parent of
// each node's (named as by default) when the plan has several.
Result<Plan> make(const config::Config& cfg, const cli::Extras& x,
                  std::string (*default_state_dir)(const std::string& kind, const std::string& key));

}  // namespace syncd::plan
