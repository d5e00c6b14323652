// Every bound of SECURITY.md §2.4 rules 3 and 4 on the delta side: hostile deltas fail with an
// error (never UB: these also run under ASan/UBSan), and crafted bases cost linear work.
#include <doctest/doctest.h>

#include <random>

#include "lib/delta/delta.h"
#include "lib/delta/patch.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::delta;

namespace {

struct DeltaBuilder {
  Bytes b;
  DeltaBuilder(uint32_t block_len, uint32_t count, uint64_t base_len, uint32_t magic = kDeltaMagic) {
    ByteWriter w(b);
    w.u32(magic);
    w.u32(block_len);
    w.u32(count);
    w.u64(base_len);
  }
  DeltaBuilder& copy(uint32_t first, uint32_t n) {
    ByteWriter w(b);
    w.u8(0x01);
    w.u32(first);
    w.u32(n);
    return *this;
  }
  DeltaBuilder& literal(uint32_t len, size_t actual) {
    ByteWriter w(b);
    w.u8(0x02);
    w.u32(len);
    b.insert(b.end(), actual, 'L');
    return *this;
  }
  DeltaBuilder& end(uint64_t total) {
    ByteWriter w(b);
    w.u8(0x03);
    w.u64(total);
    return *this;
  }
};

Error patch_error(ByteSpan base, ByteSpan delta, uint64_t declared) {
  auto r = apply_delta(base, delta, declared);
  REQUIRE_FALSE(r.ok());
  return r.error();
}

}  // namespace

TEST_SUITE("delta.bounds") {
  const Bytes base(2500, 'B');  // blocks of 1000: count 3, remainder 500

  TEST_CASE("a well-formed hand-made delta applies") {
    auto d = DeltaBuilder(1000, 3, 2500).copy(0, 3).literal(3, 3).end(2503);
    auto r = apply_delta(base, d.b, 2503);
    REQUIRE(r.ok());
    CHECK(r->size() == 2503);
  }

  TEST_CASE("COPY index at or beyond the block count") {
    auto e = patch_error(base, DeltaBuilder(1000, 3, 2500).copy(3, 1).end(1000).b, 1000);
    CHECK(e.is(errc::corrupt));
    CHECK(e.message().find("beyond block count") != std::string::npos);
  }

  TEST_CASE("COPY run that overflows 32 bits") {
    auto e = patch_error(base, DeltaBuilder(1000, 3, 2500).copy(0xFFFFFFFF, 2).end(1000).b, 1000);
    CHECK(e.is(errc::corrupt));
  }

  TEST_CASE("COPY of zero blocks") {
    CHECK(patch_error(base, DeltaBuilder(1000, 3, 2500).copy(0, 0).end(0).b, 0).is(errc::corrupt));
  }

  TEST_CASE("COPY when the receiver has no base (empty signature)") {
    auto e = patch_error({}, DeltaBuilder(1000, 0, 0).copy(0, 1).end(1000).b, 1000);
    CHECK(e.is(errc::corrupt));
  }

  TEST_CASE("literal larger than the maximum - and empty literal") {
    auto e = patch_error(base, DeltaBuilder(1000, 3, 2500).literal(kMaxLiteral + 1, 10).b, 1 << 20);
    CHECK(e.message().find("literal length") != std::string::npos);
    CHECK(patch_error(base, DeltaBuilder(1000, 3, 2500).literal(0, 0).end(0).b, 0).is(errc::corrupt));
  }

  TEST_CASE("running output above the declared size") {
    auto e = patch_error(base, DeltaBuilder(1000, 3, 2500).copy(0, 3).end(2500).b, 2000);
    CHECK(e.is(errc::limit_exceeded));
    auto e2 = patch_error(base, DeltaBuilder(1000, 3, 2500).literal(100, 100).end(100).b, 99);
    CHECK(e2.is(errc::limit_exceeded));
  }

  TEST_CASE("output shorter than declared at END - END disagreeing - bytes after END") {
    CHECK(patch_error(base, DeltaBuilder(1000, 3, 2500).copy(0, 1).end(1000).b, 1001).is(errc::corrupt));
    CHECK(patch_error(base, DeltaBuilder(1000, 3, 2500).copy(0, 1).end(999).b, 1000).is(errc::corrupt));
    auto d = DeltaBuilder(1000, 3, 2500).copy(0, 1).end(1000);
    d.b.push_back(0x03);
    CHECK(patch_error(base, d.b, 1000).message().find("after END") != std::string::npos);
  }

  TEST_CASE("header: bad magic - block_len 0 or too big - count inconsistent - other base") {
    CHECK(patch_error(base, DeltaBuilder(1000, 3, 2500, 0x12345678).end(0).b, 0).is(errc::corrupt));
    CHECK(patch_error(base, DeltaBuilder(0, 3, 2500).end(0).b, 0).is(errc::corrupt));
    CHECK(patch_error(base, DeltaBuilder((128 << 10) + 1, 1, 2500).end(0).b, 0).is(errc::corrupt));
    CHECK(patch_error(base, DeltaBuilder(1000, 4, 2500).end(0).b, 0).is(errc::corrupt));
    // A delta made against a different base length: the receiver answers with its signature.
    CHECK(patch_error(base, DeltaBuilder(1000, 3, 2600).end(0).b, 0).is(errc::base_mismatch));
  }

  TEST_CASE("unknown op and truncated streams") {
    auto d = DeltaBuilder(1000, 3, 2500);
    d.b.push_back(0x7F);
    CHECK(patch_error(base, d.b, 0).message().find("unknown op") != std::string::npos);
    const Bytes full = DeltaBuilder(1000, 3, 2500).copy(0, 2).literal(10, 10).end(2010).b;
    for (size_t n = 0; n < full.size(); ++n) {
      auto r = apply_delta(base, ByteSpan(full).first(n), 2010);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().is(errc::truncated));
    }
  }

  TEST_CASE("10^6 blocks with one weak sum: bounded strong-hash work - no quadratic search") {
    // A signature whose blocks all share the weak sum of a zero block, with distinct strong sums,
    // and a new file of zeros: every offset is a weak hit and a strong miss.
    constexpr uint32_t B = 512;
    constexpr uint32_t kBlocks = 1'000'000;
    auto key = codec::HashKey::random();
    Signature sig;
    sig.key = key;
    sig.header.block_len = B;
    sig.header.block_count = kBlocks;
    sig.header.file_len = uint64_t{kBlocks} * B;
    sig.header.remainder = B;
    sig.header.seed = key.seed();
    REQUIRE(sig.header.validate().ok());
    const Bytes zeros_block(B, 0);
    const uint32_t w = Rollsum::of(zeros_block.data(), B);
    std::mt19937_64 rng(1);
    sig.weak.assign(kBlocks, w);
    sig.strong.resize(kBlocks);
    for (auto& s : sig.strong) {
      store_le(s.data(), rng(), 8);
      store_le(s.data() + 8, rng(), 8);
    }
    const size_t n = 4 << 20;
    const Bytes zeros(n, 0);
    DeltaGenerator g(sig);
    Bytes out;
    REQUIRE(g.feed(zeros, out).ok());
    REQUIRE(g.finish(out).ok());
    CHECK(g.search_gave_up());
    CHECK(g.literal_bytes() == n);
    // Each false alarm costs one strong hash of B bytes; their number is capped linearly.
    CHECK(g.strong_hashes() <= kFalseAlarmBase + kFalseAlarmPerBlock * (n / B + 1) + 1);
    CHECK(g.strong_hashes() < n / 2);  // far fewer than one per offset
  }
}
