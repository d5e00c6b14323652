#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "lib/delta/delta.h"
#include "lib/delta/patch.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::delta;

namespace {

Bytes edit(std::mt19937_64& rng, Bytes data, int kind) {
  auto pos = [&] { return data.empty() ? 0 : static_cast<size_t>(rng() % (data.size() + 1)); };
  auto len = [&] { return static_cast<size_t>(rng() % 3000); };
  switch (kind) {
    case 0: {  // insert
      Bytes ins = test::random_bytes(rng, len() + 1);
      size_t p = pos();
      data.insert(data.begin() + static_cast<ptrdiff_t>(p), ins.begin(), ins.end());
      break;
    }
    case 1: {  // delete
      size_t p = pos();
      size_t n = std::min(len(), data.size() - p);
      data.erase(data.begin() + static_cast<ptrdiff_t>(p), data.begin() + static_cast<ptrdiff_t>(p + n));
      break;
    }
    case 2: {  // overwrite
      size_t p = pos();
      size_t n = std::min(len(), data.size() - p);
      for (size_t i = 0; i < n; ++i) data[p + i] = static_cast<uint8_t>(rng());
      break;
    }
    case 3: {  // append
      Bytes a = test::random_bytes(rng, len());
      data.insert(data.end(), a.begin(), a.end());
      break;
    }
    case 4:  // truncate
      data.resize(pos());
      break;
    case 5:  // block moved
      if (data.size() > 2000) {
        Bytes chunk(data.begin(), data.begin() + 1000);
        data.erase(data.begin(), data.begin() + 1000);
        data.insert(data.end(), chunk.begin(), chunk.end());
      }
      break;
  }
  return data;
}

Bytes roundtrip(const Bytes& base, const Bytes& target, uint32_t block_len,
                const codec::HashKey& key, Bytes* delta_out = nullptr) {
  Signature sig = sign(base, block_len, key);
  Bytes delta = make_delta(sig, target);
  if (delta_out) *delta_out = delta;
  auto out = apply_delta(base, delta, target.size());
  REQUIRE_MESSAGE(out.ok(), out.error().message());
  return *out;
}

}  // namespace

TEST_SUITE("delta.roundtrip") {
  TEST_CASE("the SIMD search and the portable search produce identical deltas") {
    if (!simd_search_active()) {
      MESSAGE("no AVX2 on this CPU: only the portable search exists here");
      CHECK_FALSE(simd_search_active());
      return;
    }
    auto key = codec::HashKey::random();
    for (uint64_t seed = 0; seed < 300; ++seed) {
      std::mt19937_64 rng(seed * 7 + 1);
      Bytes base = test::random_bytes(rng, rng() % 200000);
      Bytes target = base;
      for (int e = 0; e < 3; ++e) target = edit(rng, target, static_cast<int>(rng() % 6));
      if (seed % 3 == 0) target = test::random_bytes(rng, target.size());  // mostly misses
      const uint32_t bl = seed % 2 ? 700 : 64;
      Signature sig = sign(base, bl, key);
      allow_simd_search(false);
      const Bytes portable = make_delta(sig, target);
      allow_simd_search(true);
      const Bytes simd = make_delta(sig, target);
      if (portable != simd) FAIL("seed " << seed << ": deltas differ");
    }
    CHECK(simd_search_active());
  }

  TEST_CASE("patch(base - delta(signature(base) - new)) == new for thousands of seeded edits") {
    auto key = codec::HashKey::random();
    int cases = 0;
    for (uint64_t seed = 0; seed < 2500; ++seed) {
      std::mt19937_64 rng(seed);
      const size_t base_len = seed % 10 == 0 ? rng() % 300000 : rng() % 20000;
      Bytes base = test::random_bytes(rng, base_len);
      if (seed % 7 == 0) {  // low-entropy bases: repeated blocks, runs of zeros
        for (size_t i = 0; i < base.size(); ++i) base[i] = static_cast<uint8_t>((i / 97) % 3);
      }
      Bytes target = base;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) target = edit(rng, target, static_cast<int>(rng() % 6));
      const uint32_t choices[] = {1, 7, 64, 512, 700, wire_block_len(base_len),
                                  cached_block_len(base_len)};
      uint32_t bl = choices[rng() % std::size(choices)];
      if (bl < 64 && base_len > 30000) bl = 700;  // keep tiny blocks to small files (speed)
      Bytes got = roundtrip(base, target, bl, key);
      if (got != target) FAIL("seed " << seed << " block_len " << bl << " mismatch");
      ++cases;
    }
    CHECK(cases == 2500);
  }

  TEST_CASE("edge cases") {
    auto key = codec::HashKey::random();
    std::mt19937_64 rng(42);
    const uint32_t B = 700;
    Bytes one_block = test::random_bytes(rng, B);
    Bytes two_blocks = test::random_bytes(rng, 2 * B);
    struct Case {
      const char* name;
      Bytes base, target;
    };
    std::vector<Case> cases = {
        {"both empty", {}, {}},
        {"empty base", {}, test::random_bytes(rng, 5000)},
        {"empty new", test::random_bytes(rng, 5000), {}},
        {"identical", two_blocks, two_blocks},
        {"one byte", {1}, {2}},
        {"one byte same", {9}, {9}},
        {"exactly one block", one_block, one_block},
        {"block - 1", one_block, Bytes(one_block.begin(), one_block.end() - 1)},
        {"block + 1", one_block, [&] { Bytes b = one_block; b.push_back(5); return b; }()},
        {"base block - 1", Bytes(one_block.begin(), one_block.end() - 1), one_block},
        {"base block + 1", [&] { Bytes b = one_block; b.push_back(5); return b; }(), one_block},
        {"swap blocks", two_blocks, [&] {
           Bytes b(two_blocks.begin() + B, two_blocks.end());
           b.insert(b.end(), two_blocks.begin(), two_blocks.begin() + B);
           return b;
         }()},
        {"all zeros", Bytes(10 * B, 0), Bytes(10 * B + 3, 0)},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      Bytes delta;
      CHECK(roundtrip(c.base, c.target, B, key, &delta) == c.target);
    }
    // Identical data is all COPY: the delta is tiny.
    Bytes delta;
    Bytes big = test::random_bytes(rng, 1 << 20);
    roundtrip(big, big, 1024, key, &delta);
    CHECK(delta.size() < 64);
  }

  TEST_CASE("a small edit to a large file produces a small delta") {
    auto key = codec::HashKey::random();
    std::mt19937_64 rng(5);
    Bytes base = test::random_bytes(rng, 8 << 20);
    Bytes target = base;
    Bytes ins = test::random_bytes(rng, 1024);
    target.insert(target.begin() + 4096, ins.begin(), ins.end());
    Bytes delta;
    const uint32_t bl = cached_block_len(base.size());
    CHECK(roundtrip(base, target, bl, key, &delta) == target);
    CHECK(delta.size() <= 1024 + bl + 64);
  }

  TEST_CASE("an edit in place is matched block by block: one strong hash per block, no search") {
    auto key = codec::HashKey::random();
    std::mt19937_64 rng(6);
    constexpr uint32_t B = 512;
    const Bytes base = test::random_bytes(rng, 4 << 20);
    const Signature sig = sign(base, B, key);
    const uint64_t blocks = base.size() / B;
    struct Case {
      size_t at, len;
      uint64_t max_literal;
    };
    // Inside one block: that block goes as a literal, every other block by prediction; the
    // blocks an overwrite spans are passed over, the one after it is predicted at its offset.
    // An overwrite of 3 KiB: seven blocks, all passed over by prediction.
    for (const Case c : {Case{1000 * B + 7, 400, B}, Case{2000 * B - 50, 100, 2 * B}, Case{0, 10, B},
                         Case{base.size() - 20, 20, B}, Case{3000 * B + 300, 3072, 7 * B}}) {
      CAPTURE(c.at);
      Bytes target = base;
      for (size_t i = 0; i < c.len; ++i) target[c.at + i] ^= 0x5a;
      DeltaGenerator g(sig);
      Bytes delta;
      REQUIRE(g.feed(target, delta).ok());
      REQUIRE(g.finish(delta).ok());
      CHECK(g.literal_bytes() <= c.max_literal);
      CHECK(g.literal_bytes() >= c.len);
      // Every block hashed about once: the weak-sum search (a strong hash per weak hit, and a
      // rolling sum at every offset of the edited blocks) is not what found them.
      CHECK(g.strong_hashes() <= blocks + 8);
      auto r = apply_delta(base, delta, target.size());
      REQUIRE(r.ok());
      CHECK(*r == target);
    }
  }

  TEST_CASE("buffer-size sweep: any chunking of input gives the same delta and the same result") {
    auto key = codec::HashKey::random();
    std::mt19937_64 rng(9);
    Bytes base = test::random_bytes(rng, 300000);
    Bytes target = edit(rng, edit(rng, base, 0), 2);
    Signature sig = sign(base, 1024, key);
    const Bytes reference = make_delta(sig, target);
    for (size_t chunk : {1, 2, 3, 7, 15, 100, 10000, 200000}) {
      CAPTURE(chunk);
      DeltaGenerator g(sig);
      Bytes d;
      for (size_t i = 0; i < target.size(); i += chunk) {
        REQUIRE(g.feed(ByteSpan(target).subspan(i, std::min(chunk, target.size() - i)), d).ok());
      }
      REQUIRE(g.finish(d).ok());
      CHECK(d == reference);
      // And the patcher, fed the delta in the same pieces.
      MemoryBaseReader br(base);
      BytesSink sink;
      Patcher p(br, sink, target.size());
      for (size_t i = 0; i < d.size(); i += chunk) {
        REQUIRE(p.feed(ByteSpan(d).subspan(i, std::min(chunk, d.size() - i))).ok());
      }
      auto digest = p.finish();
      REQUIRE(digest.ok());
      CHECK(*digest == codec::content_hash(target));
      CHECK(sink.out == target);
    }
  }
}

// ---- > 4 GiB: 64-bit offsets everywhere, without holding 4 GiB in memory -------------------

namespace {

constexpr uint32_t kBigBlock = 128 * 1024;
constexpr uint64_t kBigLen = (4ull << 30) + 3 * kBigBlock + 12345;  // > 4 GiB, short last block

// Content that is a function of the offset: period kBigBlock, so every full block is equal.
const Bytes& period() {
  static const Bytes p = [] {
    std::mt19937_64 rng(4242);
    return test::random_bytes(rng, kBigBlock);
  }();
  return p;
}

void fill(uint64_t off, uint8_t* dst, size_t n) {
  while (n > 0) {
    const size_t at = static_cast<size_t>(off % kBigBlock);
    const size_t k = std::min(n, kBigBlock - at);
    std::memcpy(dst, period().data() + at, k);
    dst += k;
    off += k;
    n -= k;
  }
}

class BigBase final : public BaseReader {
 public:
  uint64_t size() const override { return kBigLen; }
  Status read_at(uint64_t off, uint8_t* dst, size_t n) override {
    if (off + n > kBigLen) return Error::make(errc::base_mismatch, "short");
    fill(off, dst, n);
    return {};
  }
};

// Checks the patched output against the expected stream (base with `edit` at `edit_off`).
class CheckingSink final : public OutputSink {
 public:
  CheckingSink(uint64_t edit_off, Bytes edit) : edit_off_(edit_off), edit_(std::move(edit)) {}
  Status write(ByteSpan data) override {
    want_.resize(data.size());
    fill(at_, want_.data(), data.size());
    for (size_t i = 0; i < data.size(); ++i) {  // overlay the edit where it intersects
      const uint64_t o = at_ + i;
      if (o >= edit_off_ && o < edit_off_ + edit_.size()) want_[i] = edit_[o - edit_off_];
    }
    if (std::memcmp(want_.data(), data.data(), data.size()) != 0) {
      return Error::make(errc::verify_failed, "mismatch in chunk at " + std::to_string(at_));
    }
    at_ += data.size();
    return {};
  }
  uint64_t at_ = 0;

 private:
  uint64_t edit_off_;
  Bytes edit_;
  Bytes want_;
};

}  // namespace

TEST_SUITE("delta.big") {
  TEST_CASE("a delta of an edit beyond 4 GiB round-trips with 64-bit offsets") {
    // Signature of the periodic base, built from one block's sums (all full blocks are equal).
    auto key = codec::HashKey::random();
    Signature sig;
    sig.key = key;
    sig.header.block_len = kBigBlock;
    sig.header.file_len = kBigLen;
    sig.header.block_count = static_cast<uint32_t>((kBigLen + kBigBlock - 1) / kBigBlock);
    sig.header.remainder = static_cast<uint32_t>(kBigLen - uint64_t{sig.header.block_count - 1} * kBigBlock);
    sig.header.seed = key.seed();
    REQUIRE(sig.header.validate().ok());
    Bytes block(kBigBlock);
    fill(0, block.data(), kBigBlock);
    Bytes last(sig.header.remainder);
    fill(uint64_t{sig.header.block_count - 1} * kBigBlock, last.data(), last.size());
    for (uint32_t i = 0; i < sig.header.block_count; ++i) {
      const bool is_last = i + 1 == sig.header.block_count;
      const Bytes& b = is_last ? last : block;
      sig.weak.push_back(Rollsum::of(b.data(), b.size()));
      sig.strong.push_back(key.hash(b));
    }

    // The new file: the same bytes with 4 KiB overwritten past the 4 GiB mark.
    const uint64_t edit_off = (4ull << 30) + 1000;
    std::mt19937_64 rng(77);
    const Bytes patch_bytes = test::random_bytes(rng, 4096);
    DeltaGenerator gen(sig);
    Bytes delta, out;
    Bytes chunk(8 << 20);
    for (uint64_t off = 0; off < kBigLen; off += chunk.size()) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), kBigLen - off));
      fill(off, chunk.data(), n);
      if (off <= edit_off && edit_off < off + n) {
        REQUIRE(edit_off + patch_bytes.size() <= off + n);
        std::memcpy(chunk.data() + (edit_off - off), patch_bytes.data(), patch_bytes.size());
      }
      out.clear();
      REQUIRE(gen.feed(ByteSpan(chunk.data(), n), out).ok());
      delta.insert(delta.end(), out.begin(), out.end());
    }
    out.clear();
    REQUIRE(gen.finish(out).ok());
    delta.insert(delta.end(), out.begin(), out.end());
    CHECK(gen.matched_bytes() + gen.literal_bytes() == kBigLen);
    CHECK(gen.literal_bytes() <= 4096 + 2 * kBigBlock);
    CHECK(delta.size() < 4096 + 2 * kBigBlock + 1024);

    BigBase base;
    CheckingSink sink(edit_off, patch_bytes);
    Patcher p(base, sink, kBigLen);
    auto st = p.feed(delta);
    REQUIRE_MESSAGE(st.ok(), st.error().message());
    auto digest = p.finish();
    REQUIRE(digest.ok());
    CHECK(sink.at_ == kBigLen);
  }
}

TEST_SUITE("delta.same") {
  // A new file fed chunk by chunk, the chunks marked `same` through feed_same: the patch of the
  // base must give the new file, and the next signature must be the one a full pass would build.
  struct Pass {
    Bytes delta;
    Signature next;
    uint64_t literal = 0;
  };
  Pass by_chunks(const Signature& base_sig, const Bytes& now, const std::vector<bool>& same, size_t chunk) {
    DeltaGenerator g(base_sig);
    SignatureBuilder b(now.size(), base_sig.header.block_len, codec::HashKey::from_seed(base_sig.header.seed));
    Pass p;
    for (size_t off = 0, i = 0; off < now.size(); off += chunk, ++i) {
      const size_t n = std::min(chunk, now.size() - off);
      if (i < same.size() && same[i]) {
        REQUIRE(g.feed_same(n, p.delta).ok());
        REQUIRE(b.feed_same(base_sig, n).ok());
      } else {
        const ByteSpan part(now.data() + off, n);
        REQUIRE(g.feed(part, p.delta).ok());
        REQUIRE(b.feed(part).ok());
      }
    }
    REQUIRE(g.finish(p.delta).ok());
    p.literal = g.literal_bytes();
    auto s = std::move(b).finish();
    REQUIRE(s.ok());
    p.next = std::move(*s);
    return p;
  }

  TEST_CASE("unchanged chunks become copies unread - the patch gives the new file - the next signature equals a full pass's") {
    std::mt19937_64 rng(31);
    constexpr size_t kChunk = 64 * 1024;
    const Bytes base = test::random_bytes(rng, 6 * kChunk + 777);
    const auto key = codec::HashKey::random();
    const Signature sig = sign(base, 512, key);
    SUBCASE("an overwrite inside chunk 2") {
      Bytes now = base;
      for (size_t i = 0; i < 1024; ++i) now[2 * kChunk + 4000 + i] ^= 0x3c;
      auto p = by_chunks(sig, now, {true, true, false, true, true, true, true}, kChunk);
      auto out = apply_delta(base, p.delta, now.size());
      REQUIRE(out.ok());
      CHECK(*out == now);
      CHECK(p.literal <= 1536);  // the three 512-byte blocks the edit touches
      CHECK(p.next.serialize() == sign(now, 512, key).serialize());
    }
    SUBCASE("an edit at the very end of a changed chunk and in the short last chunk") {
      Bytes now = base;
      now[3 * kChunk - 1] ^= 1;
      now[now.size() - 5] ^= 1;
      auto p = by_chunks(sig, now, {true, true, false, true, true, true, false}, kChunk);
      auto out = apply_delta(base, p.delta, now.size());
      REQUIRE(out.ok());
      CHECK(*out == now);
      CHECK(p.literal <= 512 + 777);
      CHECK(p.next.serialize() == sign(now, 512, key).serialize());
    }
    SUBCASE("the unchanged last chunk of a file that kept its length") {
      Bytes now = base;
      now[10] ^= 1;
      auto p = by_chunks(sig, now, {false, true, true, true, true, true, true}, kChunk);
      auto out = apply_delta(base, p.delta, now.size());
      REQUIRE(out.ok());
      CHECK(*out == now);
      CHECK(p.next.serialize() == sign(now, 512, key).serialize());
    }
  }

  TEST_CASE("feed_same refuses what does not line up with the base's blocks") {
    std::mt19937_64 rng(32);
    const Bytes base = test::random_bytes(rng, 10000);
    const Signature sig = sign(base, 512, codec::HashKey::random());
    {
      DeltaGenerator g(sig);
      Bytes d;
      REQUIRE(g.feed(ByteSpan(base.data(), 100), d).ok());
      CHECK_FALSE(g.feed_same(512, d).ok());  // not at a block boundary
    }
    {
      DeltaGenerator g(sig);
      Bytes d;
      CHECK_FALSE(g.feed_same(10000 + 512, d).ok());  // past the base's end
      DeltaGenerator g2(sig);
      CHECK_FALSE(g2.feed_same(700, d).ok());  // a short piece that is not the base's last block
    }
    {
      SignatureBuilder b(10000, 512, codec::HashKey::random());  // another key
      CHECK_FALSE(b.feed_same(sig, 512).ok());
      SignatureBuilder b2(10000, 1024, codec::HashKey::from_seed(sig.header.seed));  // another block length
      CHECK_FALSE(b2.feed_same(sig, 1024).ok());
    }
  }
}
