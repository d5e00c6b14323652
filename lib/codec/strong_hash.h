// File: lib/codec/strong_hash.h
//
// Keyed XXH3-128 for block strong sums (SECURITY.md §2.4 rule 4). XXH3 is not cryptographic, so
// the hash is keyed with a secret derived from a random 32-byte seed chosen per session: neither a
// peer that did not choose the seed nor a local user can aim collisions at it. The seed travels
// in the signature header so both ends hash with the same key.
// Thread affinity: const methods are safe from any thread.
//
//   HashKey key = HashKey::random();
//   StrongSum s = key.hash(block);
#pragma once

#include <array>
#include <cstdint>

#include "lib/base/bytes.h"

namespace syncd::codec {

using StrongSum = std::array<uint8_t, 16>;  // canonical (big-endian) XXH128 form

class HashKey {
 public:
  static constexpr size_t kSeedBytes = 32;
  using Seed = std::array<uint8_t, kSeedBytes>;

  static HashKey random();
  static HashKey from_seed(const Seed& seed);

  const Seed& seed() const noexcept { return seed_; }
  StrongSum hash(ByteSpan data) const noexcept;

 private:
  Seed seed_{};
  std::array<uint8_t, 192> secret_{};  // XXH3_SECRET_DEFAULT_SIZE
};

}  // namespace syncd::codec
