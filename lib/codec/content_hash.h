// File: lib/codec/content_hash.h
//
// A file's identity (DESIGN.md §5). Up to kContentChunk bytes it is the SHA-256 of the content
// (what `sha256sum` prints). Above, it is SHA-512/256 over a label, the size and the SHA-256 of
// each kContentChunk-byte chunk in order: a small edit of a big file changes one chunk digest,
// so an end that cached the others re-hashes one chunk instead of the file (the scanner on the
// sending side, the applier verifying a patch on the receiving side). SHA-512/256 starts from its
// own IV, so a chunked root can never equal a small file's plain SHA-256; both stay
// collision-resistant (unprivileged local users may write into the tree).
// Thread affinity: one ContentHasher per thread; the free functions are pure.
//
//   ContentHasher h; h.update(a); h.update(b); Digest d = h.finish();  // == content_hash(a ++ b)
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lib/base/bytes.h"
#include "lib/codec/sha256.h"

namespace syncd::codec {

inline constexpr uint64_t kContentChunk = 1 << 20;

// Chunks a file of `size` bytes has: at least one (the empty file is one empty chunk).
uint64_t chunk_count(uint64_t size) noexcept;
// The identity of a file of `size` bytes from its chunk digests (chunks.size() == chunk_count(size)).
Digest content_root(uint64_t size, std::span<const Digest> chunks);
Digest content_hash(ByteSpan data);

class ContentHasher {
 public:
  void update(ByteSpan data);
  // The identity of everything updated so far; chunks() then holds its chunk digests until the
  // next update(), which starts a new content.
  Digest finish();
  const std::vector<Digest>& chunks() const noexcept { return done_; }
  uint64_t size() const noexcept { return size_; }

 private:
  Sha256 chunk_;
  uint64_t in_chunk_ = 0;
  uint64_t size_ = 0;
  bool finished_ = false;
  std::vector<Digest> done_;
};

}  // namespace syncd::codec
