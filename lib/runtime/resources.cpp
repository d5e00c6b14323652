#include "lib/runtime/resources.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "lib/base/log.h"  // fmt

namespace syncd::runtime {
namespace {

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20)); }

}  // namespace

Resources process_memory() {
  Resources r;
  FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) return r;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "VmRSS:", 6) == 0) r.rss_bytes = std::strtoull(line + 6, nullptr, 10) * 1024;
    if (std::strncmp(line, "VmHWM:", 6) == 0) r.peak_rss_bytes = std::strtoull(line + 6, nullptr, 10) * 1024;
  }
  std::fclose(f);
  return r;
}

Resources ResourceGauge::read(uint64_t watches) {
  Resources r = process_memory();
  r.watches = watches;
  std::unique_lock lk(index_.mutex(), std::try_to_lock);
  // Counting takes 10-20 ms per 100,000 records on this loop thread: only again after a record
  // was written (every put takes a new seq; only tombstones are ever removed, uncounted).
  if (lk.owns_lock() && (!files_ || index_.max_seq() != counted_at_)) {
    if (auto n = index_.live_count(); n.ok()) {
      files_ = *n;
      counted_at_ = index_.max_seq();
    }
  }
  r.files = files_;
  return r;
}

std::string resources_text(const Resources& r) {
  std::string t = "memory: " + mib(r.rss_bytes) + " resident (peak " + mib(r.peak_rss_bytes) + "), ";
  if (!r.files) {
    t += "paths tracked: not counted yet (busy)";
  } else {
    t += std::to_string(*r.files) + " paths tracked";
    // Per path only where the tree, not the fixed part (code, zstd windows, SQLite's cache), dominates.
    if (*r.files >= 1000) t += fmt::format(" ({:.1f} KiB resident each)", static_cast<double>(r.rss_bytes) / 1024.0 / static_cast<double>(*r.files));
  }
  return t + ", " + std::to_string(r.watches) + " directories watched";
}

std::string resources_json(const Resources& r) {
  const std::string files = r.files ? std::to_string(*r.files) : "null";
  const std::string per = r.files && *r.files > 0 ? std::to_string(r.rss_bytes / *r.files) : "null";
  return "\"memory\": {\"rss_bytes\": " + std::to_string(r.rss_bytes) + ", \"peak_rss_bytes\": " +
         std::to_string(r.peak_rss_bytes) + ", \"files\": " + files + ", \"watches\": " + std::to_string(r.watches) +
         ", \"bytes_per_path\": " + per + "}";
}

}  // namespace syncd::runtime
