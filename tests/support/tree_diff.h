// File: tests/support/tree_diff.h
//
// Compares two trees the way a mirror must match: the same relative paths, types, content,
// symlink targets, device numbers, permission bits, owner, group, and mtimes to the nanosecond for files and
// symlinks; directory mtimes (below the roots) only with `dir_mtimes` — one-way syncs restore
// them after applying entries inside, as rsync does; two-way syncs never replicate them. Returns
// one line per difference; empty means equal. `ignore` skips names (e.g. barrier cookies).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace syncd::test {

// A small tree with what a mirror must carry: nested dirs, an empty dir, a 0600 file owned by
// 1234:5678 with an old ns mtime, setgid and sticky dirs, a relative symlink with its own mtime,
// directories with old mtimes.
void make_sample_tree(const std::string& root);

std::vector<std::string> tree_diff(const std::string& a, const std::string& b,
                                   const std::function<bool(const std::string&)>& ignore = {},
                                   bool dir_mtimes = false);

}  // namespace syncd::test
