// File: syncd/status_file.h
//
// lsyncd's statusFile (LSYNCD-COMPAT.md §4.1), byte-compatible for its block — header, per sync
// "SyncN source=..." / "There are N delays" / 7-column delay lines / "Filtering:" ... , then
// "Inotify watching N directories" with "  wd: dir/" lines — so check_lsyncd and greps keep
// working; syncd's own lines (per node: peers, state, idle) follow after that block. Written
// atomically (temp file + rename; lsyncd truncates in place) at most every statusInterval s.
// Thread affinity: pure function.
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "lib/runtime/sender.h"

namespace syncd::status_file {

struct SyncBlock {
  std::string name;    // Sync1
  std::string source;  // with a trailing '/'
  std::vector<runtime::Sender::Delay> delays;
};

struct Report {
  std::time_t now = 0;
  std::vector<SyncBlock> syncs;
  std::string root;  // the watched root of the first sync, for the watch lines (absolute, '/')
  std::vector<std::pair<int, std::string>> watches;  // wd, directory relative to `root`
  std::vector<std::string> extra;  // syncd's lines, after the lsyncd block
};

std::string format(const Report& r);
// Writes `text` to `path` through a temp file in the same directory and rename(2).
Status write_atomically(const std::string& path, const std::string& text);

}  // namespace syncd::status_file
