#include <doctest/doctest.h>

#include "lib/codec/sha256.h"
#include "lib/codec/strong_hash.h"

using namespace syncd;
using namespace syncd::codec;

TEST_SUITE("codec.hash") {
  TEST_CASE("SHA-256 known answers - one-shot and streamed") {
    CHECK(to_hex(Sha256::of(as_bytes(""))) ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(to_hex(Sha256::of(as_bytes("abc"))) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    Sha256 h;
    h.update(as_bytes("a"));
    h.update(as_bytes("bc"));
    CHECK(to_hex(h.finish()) == to_hex(Sha256::of(as_bytes("abc"))));
    // finish() resets: the object is reusable.
    h.update(as_bytes("abc"));
    CHECK(h.finish() == Sha256::of(as_bytes("abc")));
  }

  TEST_CASE("keyed strong hash depends on the key and is reproducible from the seed") {
    HashKey a = HashKey::random();
    HashKey b = HashKey::random();
    HashKey a2 = HashKey::from_seed(a.seed());
    auto data = as_bytes("the same block of bytes");
    CHECK(a.hash(data) == a2.hash(data));
    CHECK(a.hash(data) != b.hash(data));
    CHECK(a.hash(data) != a.hash(as_bytes("the same block of byteS")));
  }

  TEST_CASE("random bytes are not constant") {
    CHECK(random_u64() != random_u64());
  }
}
