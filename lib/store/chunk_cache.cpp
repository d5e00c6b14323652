#include "lib/store/chunk_cache.h"

namespace syncd::store {

ChunkCache& ChunkCache::shared() {
  static ChunkCache cache;
  return cache;
}

std::vector<ChunkCache::Chunk> ChunkCache::get(const std::string& file) const {
  std::lock_guard lock(mu_);
  auto it = files_.find(file);
  return it == files_.end() ? std::vector<Chunk>{} : it->second;
}

void ChunkCache::put(const std::string& file, std::vector<Chunk> chunks) {
  std::lock_guard lock(mu_);
  auto [it, fresh] = files_.insert_or_assign(file, std::move(chunks));
  (void)it;
  if (!fresh) return;
  order_.push_back(file);
  while (files_.size() > kMaxFiles && !order_.empty()) {
    files_.erase(order_.front());
    order_.pop_front();
  }
}

}  // namespace syncd::store
