// File: lib/runtime/tree_overlap.h
//
// Directories of a sync that must not lie inside one another: a state directory inside a synced
// tree makes syncd replicate its own index without end (each send writes the WAL, which is a
// change to send), or lets a mirror delete it as an extra; a -direct target inside its source
// copies itself into itself (lib/runtime/direct.cpp). Paths are compared resolved (realpath),
// so both must exist.
#pragma once

#include <optional>
#include <string>

#include "lib/base/result.h"
#include "lib/watch/exclude.h"

namespace syncd::runtime {

Result<std::string> real_path(const std::string& path);
// The part of `path` below `dir` ("" when they are the same), or nullopt when it is not below
// it. Both resolved.
std::optional<std::string> path_below(const std::string& dir, const std::string& path);
// An error naming both when `state_dir` is `tree` or inside it; `what` names the tree ("the
// source", "the target").
Status check_state_dir_outside(const std::string& state_dir, const std::string& tree, const std::string& what);

// Whether `rel` (a directory, relative to the tree `excludes` applies to) or a directory on the
// way to it is excluded: then nothing of it is synced, nor deleted where excludes protect.
bool excluded_on_the_way(const watch::Excludes& excludes, const std::string& rel);

// One sync writing into a target, for check_writers_apart.
struct TargetWriter {
  std::string name;    // "Sync1"
  std::string target;  // resolved (local) or as given (a peer's)
  std::string host;    // a peer's target: its host, for the message ("host:/dir"); empty when local
  bool deletes = false;          // removes what its source lacks (delete = true/startup/running)
  bool delete_excluded = false;  // rsync.delete_excluded: its excludes do not protect
  const watch::Excludes* excludes = nullptr;  // rsync's excludes protect from --delete
};
// Two syncs whose targets are one directory, or one inside the other, where the outer one
// deletes what its source lacks: it deletes the other's files at every start (lsyncd runs them
// so). An error naming both; ok when apart, or when the outer one's excludes keep the inner one's
// directory out.
Status check_writers_apart(const TargetWriter& a, const TargetWriter& b);

}  // namespace syncd::runtime
