#include "lib/delta/signature.h"

#include <cmath>
#include <string>

#include "lib/delta/rollsum.h"

namespace syncd::delta {
namespace {

Error bad(const std::string& what) { return Error::make(errc::corrupt, "signature: " + what); }

}  // namespace

uint32_t wire_block_len(uint64_t file_len) noexcept {
  // rsync's sum_sizes_sqroot(): sqrt(len) rounded down to a multiple of 8, at least 700.
  if (file_len <= uint64_t{kMinWireBlock} * kMinWireBlock) return kMinWireBlock;
  auto b = static_cast<uint64_t>(std::sqrt(static_cast<double>(file_len)));
  b &= ~uint64_t{7};
  if (b > kMaxBlock) b = kMaxBlock;
  // Very large files: keep the block count under kMaxBlocks.
  while (b < kMaxBlock && (file_len + b - 1) / b > kMaxBlocks) b += 8;
  return static_cast<uint32_t>(b);
}

uint32_t cached_block_len(uint64_t file_len) noexcept {
  // Target at most 2^20 blocks (20 MiB of signature at the very most), never below 512 B.
  constexpr uint64_t kTargetBlocks = 1u << 20;
  uint64_t b = (file_len + kTargetBlocks - 1) / kTargetBlocks;
  b = (b + 63) & ~uint64_t{63};
  if (b < kMinCachedBlock) b = kMinCachedBlock;
  if (b > kMaxBlock) b = kMaxBlock;
  return static_cast<uint32_t>(b);
}

Status SignatureHeader::validate() const {
  if (block_len == 0 || block_len > kMaxBlock) {
    return bad("block_len " + std::to_string(block_len) + " outside (0, " +
               std::to_string(kMaxBlock) + "]");
  }
  if (block_count > kMaxBlocks) return bad("block_count above " + std::to_string(kMaxBlocks));
  const uint64_t need = (file_len + block_len - 1) / block_len;  // no overflow: block_len >= 1
  if (block_count != need) {
    return bad("block_count " + std::to_string(block_count) + " != ceil(file_len/block_len) " +
               std::to_string(need));
  }
  if (block_count == 0) {
    if (remainder != 0) return bad("remainder must be 0 for an empty file");
    return {};
  }
  if (remainder == 0 || remainder > block_len) return bad("remainder outside [1, block_len]");
  if (uint64_t{block_count - 1} * block_len + remainder != file_len) {
    return bad("(count-1)*block_len + remainder != file_len");
  }
  return {};
}

Result<SignatureHeader> SignatureHeader::parse(ByteSpan in) {
  ByteReader r(in);
  SignatureHeader h;
  uint32_t magic = 0;
  uint8_t strong_len = 0;
  if (!r.u32(magic) || !r.u32(h.block_len) || !r.u32(h.block_count) || !r.u32(h.remainder) ||
      !r.u8(strong_len) || !r.u64(h.file_len) || !r.raw_into(h.seed.data(), h.seed.size())) {
    return Error::make(errc::truncated, "signature: header truncated");
  }
  if (magic != kSignatureMagic) return bad("bad magic");
  if (strong_len != kStrongLen) {
    return bad("strong_len " + std::to_string(strong_len) + " != negotiated 16");
  }
  SYNCD_TRY(h.validate());
  return h;
}

Bytes Signature::serialize() const {
  Bytes out;
  out.reserve(header.wire_size());
  ByteWriter w(out);
  w.u32(kSignatureMagic);
  w.u32(header.block_len);
  w.u32(header.block_count);
  w.u32(header.remainder);
  w.u8(static_cast<uint8_t>(kStrongLen));
  w.u64(header.file_len);
  w.raw(ByteSpan(header.seed));
  for (size_t i = 0; i < weak.size(); ++i) {
    w.u32(weak[i]);
    w.raw(ByteSpan(strong[i]));
  }
  return out;
}

Result<Signature> Signature::parse(ByteSpan in) {
  SYNCD_TRY_ASSIGN(h, SignatureHeader::parse(in));
  // Size check before allocating: count was bounded by validate(), so no overflow here.
  if (in.size() != h.wire_size()) {
    return bad("length " + std::to_string(in.size()) + " != " + std::to_string(h.wire_size()));
  }
  Signature s;
  s.header = h;
  s.key = codec::HashKey::from_seed(h.seed);
  s.weak.resize(h.block_count);
  s.strong.resize(h.block_count);
  ByteReader r(in.subspan(kSignatureHeaderBytes));
  for (uint32_t i = 0; i < h.block_count; ++i) {
    if (!r.u32(s.weak[i]) || !r.raw_into(s.strong[i].data(), kStrongLen)) {
      return Error::make(errc::internal, "signature: size was checked");
    }
  }
  return s;
}

SignatureBuilder::SignatureBuilder(uint64_t file_len, uint32_t block_len, codec::HashKey key) {
  auto& h = sig_.header;
  h.block_len = block_len == 0 ? 1 : block_len;
  h.file_len = file_len;
  h.block_count = static_cast<uint32_t>((file_len + h.block_len - 1) / h.block_len);
  h.remainder = h.block_count == 0
                    ? 0
                    : static_cast<uint32_t>(file_len - uint64_t{h.block_count - 1} * h.block_len);
  h.seed = key.seed();
  sig_.key = std::move(key);
  sig_.weak.reserve(h.block_count);
  sig_.strong.reserve(h.block_count);
}

void SignatureBuilder::add_block(const uint8_t* p, size_t n) {
  sig_.weak.push_back(Rollsum::of(p, n));
  sig_.strong.push_back(sig_.key.hash(ByteSpan(p, n)));
}

Status SignatureBuilder::feed(ByteSpan data) {
  if (fed_ + data.size() > sig_.header.file_len) {
    return Error::make(errc::unexpected_target, "signature: file grew while being read");
  }
  fed_ += data.size();
  const size_t bl = sig_.header.block_len;
  size_t i = 0;
  if (!partial_.empty()) {
    size_t take = std::min(bl - partial_.size(), data.size());
    partial_.insert(partial_.end(), data.begin(), data.begin() + static_cast<ptrdiff_t>(take));
    i = take;
    if (partial_.size() == bl) {
      add_block(partial_.data(), bl);
      partial_.clear();
    }
  }
  for (; i + bl <= data.size(); i += bl) add_block(data.data() + i, bl);
  partial_.insert(partial_.end(), data.begin() + static_cast<ptrdiff_t>(i), data.end());
  return {};
}

Status SignatureBuilder::feed_same(const Signature& old, uint64_t len) {
  const auto& h = sig_.header;
  const uint32_t bl = h.block_len;
  if (old.header.block_len != bl || old.header.seed != h.seed || !partial_.empty() || fed_ % bl != 0) {
    return Error::make(errc::internal, "signature: reused blocks need the same key, block length and a block boundary");
  }
  if (fed_ + len > h.file_len) return Error::make(errc::unexpected_target, "signature: file grew while being read");
  const uint64_t first = fed_ / bl;
  const uint64_t whole = len / bl;
  const auto tail = static_cast<uint32_t>(len % bl);
  const uint64_t count = whole + (tail ? 1 : 0);
  // A short piece is the last block of both files, of the same length.
  if (first + count > old.header.block_count || first + count > h.block_count ||
      (tail && (fed_ + len != h.file_len || first + count != old.header.block_count || old.header.remainder != tail))) {
    return Error::make(errc::internal, "signature: reused blocks do not line up");
  }
  for (uint64_t k = first; k < first + count; ++k) {
    sig_.weak.push_back(old.weak[static_cast<size_t>(k)]);
    sig_.strong.push_back(old.strong[static_cast<size_t>(k)]);
  }
  fed_ += len;
  return {};
}

Result<Signature> SignatureBuilder::finish() && {
  if (fed_ != sig_.header.file_len) {
    return Error::make(errc::unexpected_target, "signature: file shrank while being read");
  }
  if (!partial_.empty()) add_block(partial_.data(), partial_.size());
  if (sig_.weak.size() != sig_.header.block_count) {
    return Error::make(errc::internal, "signature: block count mismatch");
  }
  return std::move(sig_);
}

Signature sign(ByteSpan data, uint32_t block_len, const codec::HashKey& key) {
  SignatureBuilder b(data.size(), block_len, key);
  (void)b.feed(data);  // cannot fail: exactly file_len bytes
  return std::move(std::move(b).finish().value());
}

}  // namespace syncd::delta
