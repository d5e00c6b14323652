#include "lib/watch/exclude.h"

namespace syncd::watch {
namespace {

std::string to_regex(std::string_view pat) {
  std::string re;
  bool anchored = false;
  if (!pat.empty() && pat.front() == '/') {
    anchored = true;
    pat.remove_prefix(1);
  }
  re += anchored ? "^/" : "(^|/)";
  for (size_t i = 0; i < pat.size(); ++i) {
    const char c = pat[i];
    if (c == '*') {
      if (i + 1 < pat.size() && pat[i + 1] == '*') {
        re += ".*";
        ++i;
      } else {
        re += "[^/]*";
      }
    } else if (c == '?') {
      re += "[^/]";
    } else if (std::string_view(".^$|()[]{}+\\").find(c) != std::string_view::npos) {
      re += '\\';
      re += c;
    } else {
      re += c;
    }
  }
  // A pattern that already ends in '/' ends at a directory boundary by itself.
  if (pat.empty() || pat.back() != '/') re += "(/|$)";
  return re;
}

}  // namespace

Excludes::Excludes(const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    if (p.empty()) continue;
    res_.emplace_back(to_regex(p), std::regex::ECMAScript | std::regex::optimize);
  }
}

bool Excludes::excluded(std::string_view rel, bool is_dir) const {
  if (res_.empty()) return false;
  std::string p = "/" + std::string(rel);
  if (is_dir) p += '/';
  for (const auto& re : res_) {
    if (std::regex_search(p, re)) return true;
  }
  return false;
}

}  // namespace syncd::watch
