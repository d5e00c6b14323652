#include <doctest/doctest.h>

#include "lib/codec/content_hash.h"

using namespace syncd;
using namespace syncd::codec;

TEST_SUITE("codec.content_hash") {
  TEST_CASE("up to one chunk a file's identity is its plain SHA-256") {
    CHECK(to_hex(content_hash(as_bytes(""))) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(content_hash(as_bytes("abc")) == Sha256::of(as_bytes("abc")));
    Bytes full(kContentChunk, 7);
    CHECK(content_hash(full) == Sha256::of(full));
    CHECK(chunk_count(0) == 1);
    CHECK(chunk_count(kContentChunk) == 1);
    CHECK(chunk_count(kContentChunk + 1) == 2);
  }

  TEST_CASE("above one chunk: SHA-512/256 of label - size - chunk digests (known answer from the openssl CLI)") {
    // { printf 'syncd content chunks v1\0'; printf '\x01\x00\x10\x00\x00\x00\x00\x00';
    //   head -c 1048576 /dev/zero | openssl dgst -sha256 -binary;
    //   head -c 1 /dev/zero | openssl dgst -sha256 -binary; } | openssl dgst -sha512-256
    Bytes zeros(kContentChunk + 1, 0);
    CHECK(to_hex(content_hash(zeros)) == "8763b399cf9905bb4c41e8101647faf0c36414b7bb025ae17e0c5838862de3cd");
    CHECK(content_hash(zeros) != Sha256::of(zeros));
  }

  TEST_CASE("streamed in any pieces equals one-shot - chunks() are the chunk SHA-256s - one changed byte changes the root") {
    Bytes data(3 * kContentChunk + 12345);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
    const Digest whole = content_hash(data);
    for (size_t piece : {size_t{1} << 12, size_t{999'983}, size_t{kContentChunk}, data.size()}) {
      CAPTURE(piece);
      ContentHasher h;
      for (size_t off = 0; off < data.size(); off += piece) h.update(ByteSpan(data).subspan(off, std::min(piece, data.size() - off)));
      CHECK(h.finish() == whole);
      REQUIRE(h.chunks().size() == 4);
      CHECK(h.chunks()[2] == Sha256::of(ByteSpan(data).subspan(2 * kContentChunk, kContentChunk)));
      CHECK(h.chunks()[3] == Sha256::of(ByteSpan(data).subspan(3 * kContentChunk)));
      CHECK(content_root(data.size(), h.chunks()) == whole);
      // Reusable: the next update starts a new content.
      h.update(as_bytes("abc"));
      CHECK(h.finish() == Sha256::of(as_bytes("abc")));
    }
    data[2 * kContentChunk + 5] ^= 1;
    CHECK(content_hash(data) != whole);
    // The size is part of the root: a file one zero byte longer at the end differs.
    Bytes longer(kContentChunk + 2, 0), shorter(kContentChunk + 1, 0);
    CHECK(content_hash(longer) != content_hash(shorter));
  }
}
