#include "lib/watch/exclude.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <mutex>

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

struct Excludes::PerDir {
  std::string root, file;
  std::mutex mu;
  std::map<std::string, std::vector<std::string>, std::less<>> cache;  // dir -> its patterns
};

namespace {

constexpr size_t kMaxPerDirFile = 1u << 20;

// The patterns of one per-directory file; none when it is absent or unreadable (as rsync -C).
std::vector<std::string> read_patterns(const std::string& path) {
  std::vector<std::string> out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return out;
  std::string text;
  char buf[8192];
  for (ssize_t n; text.size() < kMaxPerDirFile && (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    size_t j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    if (j > i) {
      std::string w = text.substr(i, j - i);
      if (w == "!") {
        out.clear();
      } else {
        out.push_back(std::move(w));
      }
    }
    i = j;
  }
  return out;
}

}  // namespace

void Excludes::read_per_dir(std::string root, std::string file) {
  per_dir_ = std::make_shared<PerDir>();
  per_dir_->root = std::move(root);
  per_dir_->file = std::move(file);
}

const std::string& Excludes::per_dir_file() const noexcept {
  static const std::string none;
  return per_dir_ ? per_dir_->file : none;
}

void Excludes::forget(std::string_view dir) const {
  if (!per_dir_) return;
  std::lock_guard lk(per_dir_->mu);
  if (auto it = per_dir_->cache.find(dir); it != per_dir_->cache.end()) per_dir_->cache.erase(it);
}

// Each component is tested against its own directory's file: what is below an excluded
// directory is excluded too (a watch made before the directory was excluded still reports it).
bool Excludes::per_dir_excluded(std::string_view rel) const {
  std::lock_guard lk(per_dir_->mu);
  size_t start = 0;
  for (;;) {
    const size_t slash = rel.find('/', start);
    const std::string_view dir = start == 0 ? std::string_view() : rel.substr(0, start - 1);
    const std::string name(rel.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    auto it = per_dir_->cache.find(dir);
    if (it == per_dir_->cache.end()) {
      if (per_dir_->cache.size() >= 100000) per_dir_->cache.clear();  // bounded: re-read as needed
      const std::string path = per_dir_->root + "/" + (dir.empty() ? "" : std::string(dir) + "/") + per_dir_->file;
      it = per_dir_->cache.emplace(std::string(dir), read_patterns(path)).first;
    }
    for (const auto& p : it->second) {
      if (::fnmatch(p.c_str(), name.c_str(), 0) == 0) return true;
    }
    if (slash == std::string_view::npos) return false;
    start = slash + 1;
  }
}

bool Excludes::excluded(std::string_view rel, bool is_dir) const {
  if (patterns_.empty() && filters_.empty()) return per_dir_ && per_dir_excluded(rel);
  std::string path = "/" + std::string(rel);
  if (is_dir) path += '/';
  for (const auto& f : filters_) {
    if (matches(f.pattern, path)) return !f.include;
  }
  for (const auto& raw : patterns_) {
    if (matches(raw, path)) return true;
  }
  return per_dir_ && per_dir_excluded(rel);
}

}  // namespace syncd::watch
