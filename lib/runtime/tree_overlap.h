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

namespace syncd::runtime {

Result<std::string> real_path(const std::string& path);
// The part of `path` below `dir` ("" when they are the same), or nullopt when it is not below
// it. Both resolved.
std::optional<std::string> path_below(const std::string& dir, const std::string& path);
// An error naming both when `state_dir` is `tree` or inside it; `what` names the tree ("the
// source", "the target").
Status check_state_dir_outside(const std::string& state_dir, const std::string& tree, const std::string& what);

}  // namespace syncd::runtime
