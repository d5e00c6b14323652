// File: lib/delta/signature.h
//
// Block signatures of a base file (rsync algorithm): one weak rolling sum and one keyed XXH3-128
// strong sum per block of `block_len` bytes; the last block may be shorter (`remainder` bytes).
//
// Two block-size policies:
//   wire_block_len()   rsync's square-root rule, for signatures that cross the network
//                      (the classic round trip): small signature, coarser deltas.
//   cached_block_len() fine blocks for signatures the sender keeps locally for zero-RTT deltas
//                      (DESIGN.md §5): they never cross the wire, so a 1 KiB edit can cost ~1.5 KiB.
//
// Wire form (little-endian; limits from SECURITY.md §2.4 rule 2, checked by parse() before any
// allocation):
//   u32 magic 'SSG1' | u32 block_len | u32 block_count | u32 remainder | u8 strong_len (=16)
//   | u64 file_len | seed[32] | block_count x { u32 weak | u8 strong[16] }
//
// Thread affinity: SignatureBuilder is single-threaded; a finished Signature is immutable and may
// be shared between threads.
//
//   SignatureBuilder b(file_len, wire_block_len(file_len), HashKey::random());
//   while (read chunk) SYNCD_TRY(b.feed(chunk));
//   SYNCD_TRY_ASSIGN(sig, std::move(b).finish());
#pragma once

#include <cstdint>
#include <vector>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "lib/codec/strong_hash.h"

namespace syncd::delta {

inline constexpr uint32_t kMaxBlock = 128 * 1024;     // rsync's MAX_BLOCK_SIZE
inline constexpr uint32_t kMinWireBlock = 700;        // rsync's BLOCK_SIZE
inline constexpr uint32_t kMinCachedBlock = 512;
inline constexpr uint32_t kMaxBlocks = 1u << 22;
inline constexpr uint32_t kStrongLen = 16;
inline constexpr uint32_t kSignatureMagic = 0x31475353;  // "SSG1"
inline constexpr size_t kSignatureHeaderBytes = 4 + 4 + 4 + 4 + 1 + 8 + codec::HashKey::kSeedBytes;
inline constexpr size_t kSignatureEntryBytes = 4 + kStrongLen;

// Largest file a signature can describe within kMaxBlocks x kMaxBlock (512 GiB); larger files
// always travel whole.
inline constexpr uint64_t kMaxDeltaFile = uint64_t{kMaxBlocks} * kMaxBlock;
inline constexpr bool delta_supported(uint64_t file_len) noexcept { return file_len <= kMaxDeltaFile; }

uint32_t wire_block_len(uint64_t file_len) noexcept;
uint32_t cached_block_len(uint64_t file_len) noexcept;

struct SignatureHeader {
  uint32_t block_len = 0;
  uint32_t block_count = 0;
  uint32_t remainder = 0;  // length of the last block (== block_len when it is full); 0 iff empty
  uint64_t file_len = 0;
  codec::HashKey::Seed seed{};

  // Checks every rule of SECURITY.md §2.4 rule 2; the message names the rule broken.
  Status validate() const;
  uint64_t block_offset(uint32_t idx) const noexcept { return uint64_t{idx} * block_len; }
  uint32_t block_size(uint32_t idx) const noexcept {
    return idx + 1 == block_count ? remainder : block_len;
  }
  // Parses and validates the fixed-size header (first kSignatureHeaderBytes of `in`).
  static Result<SignatureHeader> parse(ByteSpan in);
  // Total serialized size of a signature with this header.
  uint64_t wire_size() const noexcept {
    return kSignatureHeaderBytes + uint64_t{block_count} * kSignatureEntryBytes;
  }
};

struct Signature {
  SignatureHeader header;
  codec::HashKey key = codec::HashKey::from_seed({});
  std::vector<uint32_t> weak;
  std::vector<codec::StrongSum> strong;

  Bytes serialize() const;
  static Result<Signature> parse(ByteSpan in);
};

class SignatureBuilder {
 public:
  SignatureBuilder(uint64_t file_len, uint32_t block_len, codec::HashKey key);
  // Feeds the next bytes of the file. More bytes than `file_len` is an error (the file grew).
  Status feed(ByteSpan data);
  // The next `len` bytes of the file are those of `old` at the same offsets: their entries are
  // taken from it instead of hashed. Needs the same key and block length as `old` and a block
  // boundary here; `len` whole blocks, or reaching the end of both files.
  Status feed_same(const Signature& old, uint64_t len);
  // Fails if fewer than `file_len` bytes were fed (the file shrank while being read).
  Result<Signature> finish() &&;

 private:
  void add_block(const uint8_t* p, size_t n);
  Signature sig_;
  Bytes partial_;
  uint64_t fed_ = 0;
};

// Convenience for whole buffers (tests, small files).
Signature sign(ByteSpan data, uint32_t block_len, const codec::HashKey& key);

}  // namespace syncd::delta
