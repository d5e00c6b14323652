#include <doctest/doctest.h>

#include <random>

#include "lib/delta/signature.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::delta;

TEST_SUITE("delta.signature") {
  TEST_CASE("block length rules") {
    CHECK(wire_block_len(0) == 700);
    CHECK(wire_block_len(490000) == 700);
    CHECK(wire_block_len(100ull << 20) == 10240);  // sqrt(100 MiB) = 10240
    CHECK(wire_block_len(1ull << 40) == kMaxBlock);
    CHECK(delta_supported(kMaxDeltaFile));
    CHECK_FALSE(delta_supported(kMaxDeltaFile + 1));
    CHECK(wire_block_len(1000001) % 8 == 0);
    CHECK(cached_block_len(100ull << 20) == 512);
    CHECK(cached_block_len(10ull << 30) == 10240);
    for (uint64_t len : std::initializer_list<uint64_t>{0, 1, 1ull << 20, 1ull << 33, kMaxDeltaFile}) {
      CHECK((len + wire_block_len(len) - 1) / wire_block_len(len) <= kMaxBlocks);
      CHECK((len + cached_block_len(len) - 1) / cached_block_len(len) <= kMaxBlocks);
    }
  }

  TEST_CASE("streamed signature equals the whole-buffer one and round-trips the wire form") {
    std::mt19937_64 rng(3);
    auto key = codec::HashKey::random();
    for (size_t len : {0, 1, 699, 700, 701, 1400, 100000}) {
      Bytes data = test::random_bytes(rng, len);
      Signature whole = sign(data, 700, key);
      SignatureBuilder b(len, 700, key);
      for (size_t i = 0; i < len; i += 333) {
        REQUIRE(b.feed(ByteSpan(data).subspan(i, std::min<size_t>(333, len - i))).ok());
      }
      auto streamed = std::move(b).finish();
      REQUIRE(streamed.ok());
      CHECK(streamed->weak == whole.weak);
      CHECK(streamed->strong == whole.strong);
      CHECK(whole.header.block_count == (len + 699) / 700);
      Bytes wire = whole.serialize();
      CHECK(wire.size() == whole.header.wire_size());
      auto back = Signature::parse(wire);
      REQUIRE(back.ok());
      CHECK(back->weak == whole.weak);
      CHECK(back->strong == whole.strong);
      CHECK(back->header.file_len == len);
      CHECK(back->key.hash(as_bytes("x")) == key.hash(as_bytes("x")));
    }
  }

  TEST_CASE("a file that grows or shrinks while signed is an error") {
    auto key = codec::HashKey::random();
    SignatureBuilder grow(10, 4, key);
    CHECK_FALSE(grow.feed(Bytes(11, 1)).ok());
    SignatureBuilder shrink(10, 4, key);
    REQUIRE(shrink.feed(Bytes(9, 1)).ok());
    CHECK_FALSE(std::move(shrink).finish().ok());
  }

  TEST_CASE("every header bound of SECURITY.md 2.4 rule 2 is enforced") {
    auto base = [] {
      SignatureHeader h;
      h.block_len = 1000;
      h.file_len = 2500;
      h.block_count = 3;
      h.remainder = 500;
      return h;
    };
    CHECK(base().validate().ok());
    auto bad = [](SignatureHeader h, const char* what) {
      auto st = h.validate();
      REQUIRE_FALSE(st.ok());
      CHECK(st.error().is(errc::corrupt));
      CHECK(st.error().message().find(what) != std::string::npos);
    };
    SignatureHeader h = base();
    h.block_len = 0;
    bad(h, "block_len");
    h = base();
    h.block_len = kMaxBlock + 1;
    bad(h, "block_len");
    h = base();
    h.block_count = 4;  // more than ceil(len/blen)
    bad(h, "block_count");
    h = base();
    h.block_count = kMaxBlocks + 1;
    h.file_len = uint64_t{kMaxBlocks + 1} * 1000;
    h.remainder = 1000;
    bad(h, "block_count above");
    h = base();
    h.remainder = 1001;
    bad(h, "remainder");
    h = base();
    h.remainder = 0;
    bad(h, "remainder");
    h = base();
    h.remainder = 499;  // (count-1)*blen + rem != len
    bad(h, "(count-1)");
    h = base();
    h.file_len = UINT64_MAX;  // products must not overflow
    bad(h, "block_count");
    h = base();
    h.file_len = 0;
    h.block_count = 0;
    h.remainder = 0;
    CHECK(h.validate().ok());
    h.remainder = 1;
    bad(h, "remainder");
  }

  TEST_CASE("parse rejects bad magic - wrong strong length - wrong size - truncation") {
    auto key = codec::HashKey::random();
    Bytes wire = sign(Bytes(3000, 7), 1000, key).serialize();
    REQUIRE(Signature::parse(wire).ok());
    Bytes b = wire;
    b[0] ^= 1;
    CHECK(Signature::parse(b).error().message().find("magic") != std::string::npos);
    b = wire;
    b[16] = 8;  // strong_len
    CHECK(Signature::parse(b).error().message().find("strong_len") != std::string::npos);
    b = wire;
    b.push_back(0);
    CHECK_FALSE(Signature::parse(b).ok());
    for (size_t n = 0; n < wire.size(); n += 7) {
      CHECK_FALSE(Signature::parse(ByteSpan(wire).first(n)).ok());
    }
  }
}
