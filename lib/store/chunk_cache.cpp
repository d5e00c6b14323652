#include "lib/store/chunk_cache.h"

namespace syncd::store {

ChunkCache& ChunkCache::shared() {
  static ChunkCache cache;
  return cache;
}

std::string ChunkCache::file_name(std::string_view root_path, std::string_view rel) {
  std::string s(root_path);
  s += '\0';
  s += rel;
  return s;
}

std::vector<ChunkCache::Chunk> ChunkCache::get(const std::string& file) const {
  std::lock_guard lock(mu_);
  auto it = files_.find(file);
  return it == files_.end() ? std::vector<Chunk>{} : it->second.chunks;
}

void ChunkCache::put(const std::string& file, std::vector<Chunk> chunks, const codec::Digest& root) {
  std::lock_guard lock(mu_);
  auto it = files_.find(file);
  if (it != files_.end()) {
    Entry& e = it->second;
    // The same content hashed again (a metadata change): what it differs from stays known.
    if (e.root == root) return;
    e.same.assign(chunks.size(), false);
    for (size_t i = 0; i < chunks.size() && i < e.chunks.size(); ++i) e.same[i] = chunks[i].quick == e.chunks[i].quick;
    e.prev_root = e.root;
    e.root = root;
    e.chunks = std::move(chunks);
    return;
  }
  files_.emplace(file, Entry{std::move(chunks), root, std::nullopt, {}});
  order_.push_back(file);
  while (files_.size() > kMaxFiles && !order_.empty()) {
    files_.erase(order_.front());
    order_.pop_front();
  }
}

std::optional<std::vector<bool>> ChunkCache::same_since(const std::string& file, const codec::Digest& now,
                                                        const codec::Digest& before) const {
  std::lock_guard lock(mu_);
  auto it = files_.find(file);
  if (it == files_.end() || it->second.root != now || it->second.prev_root != before) return std::nullopt;
  return it->second.same;
}

}  // namespace syncd::store
