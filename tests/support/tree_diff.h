// File: tests/support/tree_diff.h
//
// Compares two trees the way a mirror must match: the same relative paths, types, content,
// symlink targets, permission bits, owner, group, and mtimes to the nanosecond for files and
// symlinks. Directory mtimes are not compared: every entry the receiver adds moves them (rsync
// fixes them up in a final pass; syncd does not yet, see the closing note). Returns one line per
// difference; empty means equal. `ignore` skips names (e.g. barrier cookies).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace syncd::test {

// A small tree with what a mirror must carry: nested dirs, an empty dir, a 0600 file owned by
// 1234:5678 with an old ns mtime, setgid and sticky dirs, a relative symlink with its own mtime.
void make_sample_tree(const std::string& root);

std::vector<std::string> tree_diff(const std::string& a, const std::string& b,
                                   const std::function<bool(const std::string&)>& ignore = {});

}  // namespace syncd::test
