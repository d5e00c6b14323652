#include "lib/codec/content_hash.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace syncd::codec {

uint64_t chunk_count(uint64_t size) noexcept { return size == 0 ? 1 : (size + kContentChunk - 1) / kContentChunk; }

Digest content_root(uint64_t size, std::span<const Digest> chunks) {
  if (size <= kContentChunk && chunks.size() == 1) return chunks.front();
  struct Free {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx(EVP_MD_CTX_new());
  static constexpr char kLabel[] = "syncd content chunks v1";  // with its NUL
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(size >> (8 * i));
  Digest d{};
  unsigned int len = 0;
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha512_256(), nullptr) == 1 &&
            EVP_DigestUpdate(ctx.get(), kLabel, sizeof kLabel) == 1 && EVP_DigestUpdate(ctx.get(), le, sizeof le) == 1;
  for (const Digest& c : chunks) ok = ok && EVP_DigestUpdate(ctx.get(), c.data(), c.size()) == 1;
  if (!ok || EVP_DigestFinal_ex(ctx.get(), d.data(), &len) != 1 || len != d.size()) {
    // As in Sha256: a digest that cannot be computed is not recoverable in any caller.
    std::fprintf(stderr, "syncd: fatal: EVP sha512-256\n");
    std::abort();
  }
  return d;
}

Digest content_hash(ByteSpan data) {
  ContentHasher h;
  h.update(data);
  return h.finish();
}

void ContentHasher::update(ByteSpan data) {
  if (finished_) {
    done_.clear();
    size_ = 0;
    finished_ = false;
  }
  while (!data.empty()) {
    if (in_chunk_ == kContentChunk) {
      done_.push_back(chunk_.finish());
      in_chunk_ = 0;
    }
    const auto n = static_cast<size_t>(std::min<uint64_t>(data.size(), kContentChunk - in_chunk_));
    chunk_.update(data.first(n));
    in_chunk_ += n;
    size_ += n;
    data = data.subspan(n);
  }
}

Digest ContentHasher::finish() {
  if (finished_) {
    done_.clear();
    size_ = 0;
  }
  // The last chunk, also when it is empty (the empty file) — a full last chunk was not closed yet.
  done_.push_back(chunk_.finish());
  in_chunk_ = 0;
  finished_ = true;
  return content_root(size_, done_);
}

}  // namespace syncd::codec
