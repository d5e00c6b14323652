// File: lib/store/chunk_cache.h
//
// What the scanner remembers of the big files it hashed, so that re-hashing one after a small edit
// costs a read and a fast keyed hash of each chunk plus SHA-256 of the chunks that changed, not
// SHA-256 of the whole file (codec/content_hash.h). Per chunk: a keyed XXH3-128 of its bytes and
// their SHA-256. A chunk whose keyed hash is unchanged reuses its SHA-256; the key is random per
// process and never leaves it, so a local user cannot aim a collision at it (as with block sums,
// DESIGN.md §5). It also keeps which chunks the last hash found unchanged from the one before,
// so the sender's delta pass can skip them when the peer holds that earlier version.
// In memory only: after a restart the first hash of each file is a full one.
// Thread affinity: any thread (one mutex); bounded to kMaxFiles files, the oldest dropped first.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lib/codec/sha256.h"
#include "lib/codec/strong_hash.h"

namespace syncd::store {

class ChunkCache {
 public:
  struct Chunk {
    codec::StrongSum quick{};
    codec::Digest sha{};
  };
  static constexpr size_t kMaxFiles = 4096;

  // Chunks whose SHA-256 the scanner computed (not reused): tests and benchmarks read it.
  std::atomic<uint64_t> chunks_hashed{0};

  // The process-wide cache the scanner uses.
  static ChunkCache& shared();
  // The cache's name for `rel` under the tree at `root_path`.
  static std::string file_name(std::string_view root_path, std::string_view rel);

  const codec::HashKey& key() const noexcept { return key_; }
  std::vector<Chunk> get(const std::string& file) const;
  // Records the chunks of `file`'s content `root` as just hashed.
  void put(const std::string& file, std::vector<Chunk> chunks, const codec::Digest& root);
  // If `file` was last hashed with content `now` and the content hashed before that was
  // `before`: for each chunk of `now`, whether it is byte for byte that chunk of `before`.
  std::optional<std::vector<bool>> same_since(const std::string& file, const codec::Digest& now,
                                              const codec::Digest& before) const;

 private:
  struct Entry {
    std::vector<Chunk> chunks;
    codec::Digest root{};
    std::optional<codec::Digest> prev_root;  // the content hashed before `root`
    std::vector<bool> same;                  // chunk i equal to that content's chunk i
  };
  codec::HashKey key_ = codec::HashKey::random();
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> files_;
  std::deque<std::string> order_;  // insertion order, for the bound
};

}  // namespace syncd::store
