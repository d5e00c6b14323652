// File: lib/delta/delta_format.h
//
// The delta stream (the body of a delta transfer; protocol/SPEC.md §6 carries it in DATA frames):
//   header: u32 magic 'SDL1' | u32 block_len | u32 block_count | u64 base_len
//   ops:    0x01 COPY    u32 first_block | u32 n_blocks     (first + n <= block_count)
//           0x02 LITERAL u32 len | len bytes                (1 <= len <= kMaxLiteral)
//           0x03 END     u64 target_len                     (nothing may follow)
// Limits are SECURITY.md §2.4 rule 3. All integers little-endian.
#pragma once

#include <cstddef>
#include <cstdint>

namespace syncd::delta {

inline constexpr uint32_t kDeltaMagic = 0x314C4453;  // "SDL1"
inline constexpr size_t kDeltaHeaderBytes = 4 + 4 + 4 + 8;
inline constexpr uint32_t kMaxLiteral = 64 * 1024;

enum class Op : uint8_t { copy = 0x01, literal = 0x02, end = 0x03 };

}  // namespace syncd::delta
