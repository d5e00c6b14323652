#include "lib/watch/exclude.h"

#include <algorithm>

namespace syncd::watch {
namespace {

// Does `pat` match text[0..n) exactly? `?` = one non-'/', `*` = a run without '/', `**` = any.
// Dynamic programming over (pattern index, text index): O(|pat| * n), no backtracking blow-up.
bool glob_exact(std::string_view pat, std::string_view text) {
  const size_t m = pat.size(), n = text.size();
  std::vector<char> prev(n + 1, 0), cur(n + 1, 0);
  prev[0] = 1;  // empty pattern matches empty text
  for (size_t i = 0; i < m; ++i) {
    const char c = pat[i];
    const bool dstar = c == '*' && i + 1 < m && pat[i + 1] == '*';
    std::fill(cur.begin(), cur.end(), 0);
    if (c == '*') {
      // cur[j] = prev[j] (empty run) or cur[j-1] extended by one allowed char
      for (size_t j = 0; j <= n; ++j) {
        cur[j] = prev[j] || (j > 0 && cur[j - 1] && (dstar || text[j - 1] != '/'));
      }
      if (dstar) ++i;  // consumed both stars
    } else {
      for (size_t j = 1; j <= n; ++j) {
        const bool ok = c == '?' ? text[j - 1] != '/' : text[j - 1] == c;
        cur[j] = prev[j - 1] && ok;
      }
    }
    prev.swap(cur);
  }
  return prev[n] != 0;
}

// Does lsyncd pattern `raw` match `path` ("/rel", "/dir/" for directories)?
bool matches(std::string_view raw, const std::string& path) {
  std::string_view pat(raw);
  const bool anchored = pat.front() == '/';
  if (anchored) pat.remove_prefix(1);
  const bool ends_dir = !pat.empty() && pat.back() == '/';
  // Start positions: right after the root '/', or (unanchored) after any '/'.
  for (size_t s = 1; s <= path.size(); ++s) {
    if (path[s - 1] != '/') continue;
    // End positions: a '/' follows, or the end of the path (a pattern ending in '/' ends right
    // after a '/').
    for (size_t e = s; e <= path.size(); ++e) {
      const bool boundary = ends_dir ? (e > s && path[e - 1] == '/') : (e == path.size() || path[e] == '/');
      if (boundary && glob_exact(pat, std::string_view(path).substr(s, e - s))) return true;
    }
    if (anchored) break;
  }
  return false;
}

}  // namespace

Excludes::Excludes(const std::vector<std::string>& patterns, std::vector<FilterRule> filters) {
  for (const auto& p : patterns) {
    if (!p.empty()) patterns_.push_back(p);
  }
  for (auto& f : filters) {
    if (!f.pattern.empty()) filters_.push_back(std::move(f));
  }
}

bool Excludes::excluded(std::string_view rel, bool is_dir) const {
  if (patterns_.empty() && filters_.empty()) return false;
  std::string path = "/" + std::string(rel);
  if (is_dir) path += '/';
  for (const auto& f : filters_) {
    if (matches(f.pattern, path)) return !f.include;
  }
  for (const auto& raw : patterns_) {
    if (matches(raw, path)) return true;
  }
  return false;
}

}  // namespace syncd::watch
