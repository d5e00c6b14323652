#define XXH_INLINE_ALL
#include "lib/codec/strong_hash.h"

#include <xxhash.h>

#include "lib/codec/sha256.h"

namespace syncd::codec {

static_assert(sizeof(StrongSum) == sizeof(XXH128_canonical_t));

HashKey HashKey::random() {
  Seed s;
  random_bytes(s.data(), s.size());
  return from_seed(s);
}

HashKey HashKey::from_seed(const Seed& seed) {
  HashKey k;
  k.seed_ = seed;
  // XXH3_generateSecret spreads any seed into a full-entropy secret of the default size.
  (void)XXH3_generateSecret(k.secret_.data(), k.secret_.size(), seed.data(), seed.size());
  return k;
}

StrongSum HashKey::hash(ByteSpan data) const noexcept {
  XXH128_hash_t h = XXH3_128bits_withSecret(data.data(), data.size(), secret_.data(), secret_.size());
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  StrongSum out;
  std::memcpy(out.data(), c.digest, out.size());
  return out;
}

}  // namespace syncd::codec
