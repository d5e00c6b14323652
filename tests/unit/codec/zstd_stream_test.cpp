// Frame-header inspection (ZSTD_getFrameHeader) lives in zstd's experimental section.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "lib/codec/zstd_stream.h"
#include "protocol/frame.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::codec;

namespace {

Result<Bytes> decode_all(ZstdDecoder& dec, ByteSpan in, size_t piece = 4096) {
  Bytes out;
  for (size_t i = 0; i < in.size(); i += piece) {
    auto part = in.subspan(i, std::min(piece, in.size() - i));
    SYNCD_TRY(dec.feed(part, [&](ByteSpan b) -> Status {
      out.insert(out.end(), b.begin(), b.end());
      return {};
    }));
  }
  return out;
}

Bytes one_shot(ByteSpan data, bool content_size, int window_log = 20) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, content_size ? 1 : 0);
  ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, window_log);
  if (window_log > 27) ZSTD_CCtx_setParameter(c, ZSTD_c_enableLongDistanceMatching, 1);
  if (content_size) ZSTD_CCtx_setPledgedSrcSize(c, data.size());
  Bytes out(ZSTD_compressBound(data.size()) + 64);
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  // First pass with e_continue: with no pledged size, zstd cannot shrink the window to the input.
  ZSTD_inBuffer ib{data.data(), data.size(), 0};
  REQUIRE_FALSE(ZSTD_isError(ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_continue)));
  size_t rc = ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_end);
  REQUIRE(rc == 0);
  out.resize(ob.pos);
  ZSTD_freeCCtx(c);
  return out;
}

}  // namespace

TEST_SUITE("codec.zstd_stream") {
  TEST_CASE("batches flushed on one stream decode to the same bytes - piece by piece") {
    std::mt19937_64 rng(7);
    ZstdEncoder enc;
    ZstdDecoder dec;
    Bytes expected, got;
    for (int batch = 0; batch < 20; ++batch) {
      Bytes wire;
      Bytes data = test::random_bytes(rng, 1000 + batch * 37);
      data.insert(data.end(), 5000, static_cast<uint8_t>(batch));  // compressible part
      REQUIRE(enc.write(data, wire).ok());
      REQUIRE(enc.flush(wire).ok());
      expected.insert(expected.end(), data.begin(), data.end());
      // After a flush, everything written so far is decodable: no waiting for later batches.
      auto part = decode_all(dec, wire, 1 + batch * 13);
      REQUIRE(part.ok());
      got.insert(got.end(), part->begin(), part->end());
      CHECK(got.size() == expected.size());
    }
    CHECK(got == expected);
  }

  TEST_CASE("similar small files compress against each other on one stream") {
    ZstdEncoder enc;
    Bytes wire;
    std::string pem = "-----BEGIN CERTIFICATE-----\n";
    for (int i = 0; i < 30; ++i) pem += "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n";
    size_t raw = 0;
    for (int i = 0; i < 50; ++i) {
      std::string f = pem + std::to_string(i);
      raw += f.size();
      REQUIRE(enc.write(as_bytes(f), wire).ok());
      REQUIRE(enc.flush(wire).ok());
    }
    CHECK(wire.size() * 20 < raw);
  }

  TEST_CASE("zstd bomb: decoding stops at the ratio cap - memory bounded by chunks") {
    ZstdEncoder enc;
    Bytes wire;
    Bytes zeros(1 << 20, 0);
    for (int i = 0; i < 256; ++i) REQUIRE(enc.write(zeros, wire).ok());  // 256 MiB of zeros
    REQUIRE(enc.flush(wire).ok());
    REQUIRE(wire.size() < 64 * 1024);
    ZstdDecoder dec;
    uint64_t seen = 0;
    size_t biggest = 0;
    auto st = dec.feed(wire, [&](ByteSpan b) -> Status {
      seen += b.size();
      biggest = std::max(biggest, b.size());
      return {};
    });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().is(errc::limit_exceeded));
    CHECK(seen <= kMaxRatio * wire.size() + kRatioSlack);
    CHECK(seen < (256ull << 20));
    CHECK(biggest <= kChunk);
    // The failure is final.
    CHECK_FALSE(dec.feed(wire, [](ByteSpan) -> Status { return {}; }).ok());
  }

  TEST_CASE("zeros (a sparse file) pass the peer's bomb bound where raw frames are allowed - at about 0.2 % of their size") {
    ZstdEncoder enc;
    enc.allow_raw(true);
    ZstdDecoder dec;
    dec.allow_frames(true);
    Bytes zeros(1 << 20, 0);
    uint64_t seen = 0, wire_total = 0;
    bool all_zero = true;
    for (int i = 0; i < 256; ++i) {  // 256 MiB of zeros, fed to the decoder as it goes out
      Bytes wire;
      REQUIRE(enc.write(zeros, wire).ok());
      if (i % 16 == 15) REQUIRE(enc.flush(wire).ok());
      wire_total += wire.size();
      auto st = dec.feed(wire, [&](ByteSpan b) -> Status {
        all_zero = all_zero && std::all_of(b.begin(), b.end(), [](uint8_t c) { return c == 0; });
        seen += b.size();
        return {};
      });
      REQUIRE_MESSAGE(st.ok(), "MiB " << i << ": " << st.error().message());
    }
    CHECK(seen == (256ull << 20));
    CHECK(all_zero);
    CHECK(dec.decoded_out() <= kMaxRatio * dec.compressed_in() + kRatioSlack);
    CHECK(wire_total < (256ull << 20) / 200);  // not sent raw: about 2 KiB per MiB past the slack
    MESSAGE("256 MiB of zeros: " << wire_total << " bytes on the wire");
  }

  TEST_CASE("a bomb through the frame decoder fails at the first decoded frame header") {
    ZstdEncoder enc;
    Bytes wire;
    Bytes ones(4 << 20, 0xFF);  // decodes to a frame length of 0xFFFFFFFF
    REQUIRE(enc.write(ones, wire).ok());
    REQUIRE(enc.flush(wire).ok());
    ZstdDecoder dec;
    protocol::FrameDecoder frames;
    uint64_t seen = 0;
    auto st = dec.feed(wire, [&](ByteSpan b) -> Status {
      seen += b.size();
      return frames.feed(b);
    });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().is(errc::limit_exceeded));
    CHECK(seen <= kChunk);
  }

  TEST_CASE("the encoder's frames declare a 2 MiB window - what each end of a connection holds") {
    ZstdEncoder enc;
    Bytes wire;
    Bytes data(16u << 20);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
    REQUIRE(enc.write(data, wire).ok());
    REQUIRE(enc.flush(wire).ok());
    ZSTD_frameHeader fh{};
    REQUIRE(ZSTD_getFrameHeader(&fh, wire.data(), wire.size()) == 0);
    CHECK(fh.windowSize == (1ull << kWindowLog));
    CHECK(kWindowLog == 21);
    ZstdDecoder dec;
    auto back = decode_all(dec, wire);
    REQUIRE(back.ok());
    CHECK(*back == data);
  }

  TEST_CASE("frames declaring a big window - a content size - or skippable frames are refused") {
    Bytes data(100000, 'x');
    SUBCASE("window log 31") {
      ZstdDecoder dec;
      auto r = decode_all(dec, one_shot(data, false, 31));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().is(errc::limit_exceeded));
    }
    SUBCASE("the largest window accepted: 2^23, what syncd sent before it used 2^21 - and one above it") {
      const Bytes big(12u << 20, 'y');  // longer than the window, so the header declares it whole
      ZstdDecoder ok_dec;
      auto ok = decode_all(ok_dec, one_shot(big, false, kWindowLogMax));
      REQUIRE(ok.ok());
      CHECK(*ok == big);
      ZstdDecoder dec;
      auto r = decode_all(dec, one_shot(big, false, kWindowLogMax + 1));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().is(errc::limit_exceeded));
    }
    SUBCASE("content size declared") {
      ZstdDecoder dec;
      auto r = decode_all(dec, one_shot(data, true));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().is(errc::corrupt));
    }
    SUBCASE("skippable frame") {
      Bytes skip = {0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4};
      ZstdDecoder dec;
      auto r = decode_all(dec, skip);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().message().find("skippable") != std::string::npos);
    }
    SUBCASE("bytes after the frame end") {
      Bytes f = one_shot(data, false);
      f.push_back(0x28);
      ZstdDecoder dec;
      auto r = decode_all(dec, f);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().message().find("after the end") != std::string::npos);
    }
    SUBCASE("garbage") {
      Bytes g = {'G', 'A', 'R', 'B', 'A', 'G', 'E', '!', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
      ZstdDecoder dec;
      CHECK_FALSE(decode_all(dec, g).ok());
    }
    SUBCASE("a valid frame with no content size is accepted") {
      ZstdDecoder dec;
      auto r = decode_all(dec, one_shot(data, false));
      REQUIRE(r.ok());
      CHECK(*r == data);
    }
  }

  TEST_CASE("frames: compressed and raw parts alternate on one stream - decoded in order, piece by piece") {
    std::mt19937_64 rng(21);
    ZstdEncoder enc;
    Bytes wire, expected;
    for (int round = 0; round < 6; ++round) {
      Bytes text;
      for (int i = 0; i < 200; ++i) {
        std::string line = "cert " + std::to_string(round * 1000 + i) + " valid\n";
        text.insert(text.end(), line.begin(), line.end());
      }
      REQUIRE(enc.write(text, wire).ok());
      expected.insert(expected.end(), text.begin(), text.end());
      Bytes noise = test::random_bytes(rng, 300000 + static_cast<size_t>(round) * 777);  // > one raw block
      REQUIRE(enc.write_raw(noise, wire).ok());
      expected.insert(expected.end(), noise.begin(), noise.end());
      if (round % 2 == 0) REQUIRE(enc.flush(wire).ok());
    }
    REQUIRE(enc.write(Bytes{'e', 'n', 'd'}, wire).ok());
    REQUIRE(enc.flush(wire).ok());
    expected.insert(expected.end(), {'e', 'n', 'd'});
    for (size_t piece : {size_t{1} << 20, size_t{4096}, size_t{7}}) {
      CAPTURE(piece);
      ZstdDecoder dec;
      dec.allow_frames(true);
      auto got = decode_all(dec, wire, piece);
      REQUIRE_MESSAGE(got.ok(), got.error().message());
      CHECK(*got == expected);
      // The raw parts cost their size plus a 3-byte header per 128 KiB block, nothing more.
      CHECK(wire.size() < expected.size() + 4096);
    }
    // A decoder that did not offer `frames` refuses the second frame, as before.
    ZstdDecoder strict;
    auto r = decode_all(strict, wire);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message().find("after the end") != std::string::npos);
  }

  TEST_CASE("frames: each frame's header is checked - a skippable or oversized second frame is refused") {
    Bytes data(100000, 'x');
    for (int which = 0; which < 3; ++which) {
      CAPTURE(which);
      Bytes wire = one_shot(data, false);
      Bytes second = which == 0   ? Bytes{0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4}
                     : which == 1 ? one_shot(data, false, 31)
                                  : one_shot(data, true);
      wire.insert(wire.end(), second.begin(), second.end());
      ZstdDecoder dec;
      dec.allow_frames(true);
      auto r = decode_all(dec, wire, 999);
      REQUIRE_FALSE(r.ok());
    }
    // Two good frames back to back, the second's header split across feeds.
    Bytes two = one_shot(data, false);
    Bytes b = one_shot(data, false);
    two.insert(two.end(), b.begin(), b.end());
    for (size_t piece : {size_t{1}, size_t{5}, size_t{999}}) {
      ZstdDecoder dec;
      dec.allow_frames(true);
      auto r = decode_all(dec, two, piece);
      REQUIRE(r.ok());
      CHECK(r->size() == 2 * data.size());
    }
  }

  TEST_CASE("looks_incompressible: random bytes yes - text, base64, zeros and small inputs no") {
    std::mt19937_64 rng(5);
    CHECK(looks_incompressible(test::random_bytes(rng, 1 << 20)));
    CHECK_FALSE(looks_incompressible(Bytes(1 << 20, 0)));
    CHECK_FALSE(looks_incompressible(test::random_bytes(rng, 8000)));  // below the sample: compressor decides
    Bytes b64;
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    while (b64.size() < (1u << 20)) {
      b64.push_back(static_cast<uint8_t>(alphabet[rng() % 64]));
      if (b64.size() % 65 == 64) b64.push_back('\n');
    }
    CHECK_FALSE(looks_incompressible(b64));  // PEM bodies: 6 bits a byte
    Bytes text;
    while (text.size() < (1u << 20)) {
      std::string line = "2026-12-04 22:00:00 INFO issued certificate serial " + std::to_string(rng() % 1000000) + "\n";
      text.insert(text.end(), line.begin(), line.end());
    }
    CHECK_FALSE(looks_incompressible(text));
  }

  TEST_CASE("a corrupted stream gives an error - never a crash") {
    std::mt19937_64 rng(11);
    ZstdEncoder enc;
    Bytes wire;
    // Entropy-coded text (mostly structure, few raw bytes), like PEM files and frame headers.
    Bytes data;
    for (int i = 0; i < 3000; ++i) {
      std::string line = "serial=" + std::to_string(rng() % 100000) + " status=valid\n";
      data.insert(data.end(), line.begin(), line.end());
    }
    REQUIRE(enc.write(data, wire).ok());
    REQUIRE(enc.flush(wire).ok());
    int errors = 0;
    for (int i = 0; i < 300; ++i) {
      Bytes bad = wire;
      bad[rng() % bad.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
      ZstdDecoder dec;
      auto r = decode_all(dec, bad, 1 + rng() % 5000);
      if (!r.ok()) {
        ++errors;
        CHECK(r.error().is(errc::corrupt));
      } else {
        CHECK(r->size() <= data.size() + kChunk);  // bounded even when not detected
      }
    }
    // zstd detects most damage; what it cannot (flipped literal bytes) the frame decoder, the
    // SSH MAC and the end-to-end SHA-256 do.
    MESSAGE("corruptions detected by zstd: " << errors << " of 300");
    CHECK(errors > 30);
  }
}
