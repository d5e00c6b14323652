// File: lib/codec/sha256.h
//
// Streaming SHA-256 (OpenSSL EVP): a file's identity on the wire and the end-to-end check of
// every reconstructed file (DESIGN.md §5). Thread affinity: one object per thread.
//
//   Sha256 h; h.update(a); h.update(b); Digest d = h.finish();
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "lib/base/bytes.h"

namespace syncd::codec {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void update(ByteSpan data);
  // Returns the digest and resets the object for reuse.
  Digest finish();
  static Digest of(ByteSpan data);

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

std::string to_hex(ByteSpan b);

// Fills `out` with cryptographically random bytes (OpenSSL RAND_bytes). Aborts if the RNG fails:
// continuing without randomness would make temp names and hash keys predictable.
void random_bytes(uint8_t* out, size_t n);
uint64_t random_u64();

// Overwrites a buffer in a way the compiler may not elide (OPENSSL_cleanse). Buffers that held
// file content are wiped before release: they may hold CA keys (SECURITY.md §5.2).
void wipe(void* p, size_t n) noexcept;

}  // namespace syncd::codec
