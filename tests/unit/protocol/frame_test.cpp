#include <doctest/doctest.h>

#include <random>

#include "protocol/frame.h"
#include "protocol/limits.h"

using namespace syncd;
using namespace syncd::protocol;

namespace {

FileMeta sample_meta(const std::string& path = "certs/node1.pem") {
  FileMeta m;
  m.path = path;
  m.type = FileType::file;
  m.size = 1234;
  m.mode = 02640;
  m.uid = 0;
  m.gid = 998;
  m.user = "root";
  m.group = "acme";
  m.mtime_sec = 1'700'000'000;
  m.mtime_nsec = 123'456'789;
  m.version = {{0x1111, 3}, {0x2222, 7}};
  m.content_dot = {0x2222, 7};
  m.content_ts = 0x0190'0000'0001ull;
  m.meta_dot = {0x1111, 3};
  m.meta_ts = 0x0190'0000'0000ull;
  m.sha256.fill(0xAB);
  m.xattrs = {{"user.a2c", {1, 2, 3}}};
  return m;
}

std::vector<Message> all_messages() {
  FileMeta tomb = sample_meta("old/name.pem");
  tomb.deleted = true;
  tomb.sha256 = {};
  FileMeta link = sample_meta("link");
  link.type = FileType::symlink;
  link.symlink_target = "../certs/node1.pem";
  FileMeta dev = sample_meta("dev/console");
  dev.type = FileType::chardev;
  dev.rdev = 0x0501;  // 5:1 (only devices carry it on the wire)
  FileMeta fifo = sample_meta("run/queue");
  fifo.type = FileType::fifo;
  return {
      Hello{kHelloMagic, 1, 1, 0xDEADBEEF, "node1", "acme-cluster", 42, kAllCapabilities},
      ErrorMsg{7, "version mismatch"},
      Ping{1, 99},
      Pong{1, 99},
      FileVersion{5, 17, sample_meta(), BodyKind::whole, 1234},
      FileVersion{6, 18, sample_meta(), BodyKind::delta, 100},
      FileVersion{7, 19, link, BodyKind::none, 0},
      FileVersion{8, 22, dev, BodyKind::none, 0},
      FileVersion{9, 23, fifo, BodyKind::none, 0},
      FileVersion{0, 24, sample_meta("certs/also.pem"), BodyKind::none, 0, "certs/node1.pem"},
      Data{5, 0, Bytes(1000, 'd')},
      Delta{6, Hash256{1, 2, 3}, 0, Bytes(10, 'x')},
      SigRequest{9, "big/file.bin", Hash256{4}},
      SignatureMsg{9, "big/file.bin", Hash256{5}, 2000, 1000, Bytes(1000, 's')},
      Remove{20, tomb},
      Rename{21, tomb, sample_meta("new/name.pem")},
      Ack{5, AckStatus::base_mismatch, 17, "base differs"},
      IndexSummary{42, 100, 90, 5000},
      IndexRequest{42, 90},
      IndexUpdate{91, sample_meta()},
      IndexEnd{42, 100},
      RootMeta{02750, 33, 34, "www-data", "acme", 1700000000, 123456789},
      Have{"certs/node1.pem", 1704, 1700000000, 999999999},
      Unreadable{"certs/issued"},
      Unreadable{""},  // the whole tree
  };
}

Result<std::vector<Message>> decode_stream(ByteSpan wire, size_t piece) {
  FrameDecoder d;
  std::vector<Message> out;
  for (size_t i = 0; i < wire.size(); i += piece) {
    SYNCD_TRY(d.feed(wire.subspan(i, std::min(piece, wire.size() - i))));
    for (;;) {
      SYNCD_TRY_ASSIGN(m, d.next());
      if (!m) break;
      out.push_back(std::move(*m));
    }
  }
  if (d.buffered() != 0) return Error::make(errc::truncated, "stream ended mid-frame");
  return out;
}

std::string hex(ByteSpan b) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t c : b) {
    s += kHex[c >> 4];
    s += kHex[c & 15];
  }
  return s;
}

Bytes frame_of(uint8_t type, ByteSpan payload) {
  Bytes f;
  ByteWriter w(f);
  w.u32(static_cast<uint32_t>(payload.size() + 1));
  w.u8(type);
  w.raw(payload);
  return f;
}

}  // namespace

TEST_SUITE("protocol.frame") {
  TEST_CASE("every message round-trips - fed in any piece size") {
    Bytes wire;
    auto msgs = all_messages();
    for (const auto& m : msgs) REQUIRE(encode(m, wire).ok());
    for (size_t piece : {1, 2, 3, 7, 15, 100, 10000, 200000}) {
      CAPTURE(piece);
      auto got = decode_stream(wire, piece);
      REQUIRE_MESSAGE(got.ok(), got.error().message());
      REQUIRE(got->size() == msgs.size());
      for (size_t i = 0; i < msgs.size(); ++i) CHECK((*got)[i] == msgs[i]);
    }
  }

  TEST_CASE("golden bytes: the wire format is little-endian and stable") {
    auto ping = encode(Ping{0x0102030405060708ull, 0x1112131415161718ull});
    REQUIRE(ping.ok());
    CHECK(hex(*ping) == "110000000308070605040302011817161514131211");
    auto ack = encode(Ack{0xA0B0C0D0, AckStatus::applied, 1, "ok"});
    REQUIRE(ack.ok());
    CHECK(hex(*ack) == "1200000017d0c0b0a000010000000000000002006f6b");
  }

  TEST_CASE("truncated frames: need more - never a partial message") {
    for (const auto& m : all_messages()) {
      auto full = encode(m);
      REQUIRE(full.ok());
      for (size_t n = 0; n < full->size(); ++n) {
        FrameDecoder d;
        REQUIRE(d.feed(ByteSpan(*full).first(n)).ok());
        auto r = d.next();
        REQUIRE(r.ok());
        CHECK_FALSE(r->has_value());
      }
    }
  }

  TEST_CASE("truncated payloads inside a complete frame are errors") {
    for (const auto& m : all_messages()) {
      auto full = encode(m);
      REQUIRE(full.ok());
      ByteSpan payload = ByteSpan(*full).subspan(kFrameHeaderBytes);
      for (size_t n = 0; n < payload.size(); ++n) {
        auto r = decode_payload(type_of(m), payload.first(n));
        REQUIRE_FALSE(r.ok());
        CHECK((r.error().is(errc::corrupt) || r.error().is(errc::limit_exceeded) ||
               r.error().is(errc::path_rejected)));
      }
      // And one byte too many.
      Bytes longer(payload.begin(), payload.end());
      longer.push_back(0);
      auto r = decode_payload(type_of(m), longer);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().message().find("trailing") != std::string::npos);
    }
  }

  TEST_CASE("oversized and zero lengths are refused before the payload is buffered") {
    for (uint32_t len : {0u, static_cast<uint32_t>(kMaxFrameBytes + 1), 0xFFFFFFFFu}) {
      FrameDecoder d;
      Bytes hdr;
      ByteWriter(hdr).u32(len);
      auto st = d.feed(hdr);
      REQUIRE_FALSE(st.ok());
      CHECK(d.buffered() <= 4);
      // Stays failed.
      CHECK_FALSE(d.feed(Bytes{1}).ok());
      CHECK_FALSE(d.next().ok());
    }
  }

  TEST_CASE("unknown type - unknown flags - bad enums - out-of-range fields") {
    CHECK(FrameDecoder().feed(frame_of(0x7E, {})).ok());
    {
      FrameDecoder d;
      REQUIRE(d.feed(frame_of(0x7E, {})).ok());
      auto r = d.next();
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().message().find("unknown message type") != std::string::npos);
    }
    auto check_bad = [](const Message& good, auto mutate, const char* why) {
      Bytes payload;
      auto enc = encode(good);
      REQUIRE(enc.ok());
      payload.assign(enc->begin() + kFrameHeaderBytes, enc->end());
      mutate(payload);
      auto r = decode_payload(type_of(good), payload);
      REQUIRE_FALSE(r.ok());
      CHECK_MESSAGE(r.error().message().find(why) != std::string::npos, r.error().message());
    };
    FileVersion fv{5, 17, sample_meta(), BodyKind::whole, 1234};
    // Offsets inside FILE_VERSION: xfer(4) seq(8) pathlen(2) path(15) type(1) flags(1) size(8) mode(4)
    const size_t type_at = 4 + 8 + 2 + 15;
    // ROOT_META: mode(4) uid(4) gid(4) user(2+n) group(2+n) mtime_sec(8) mtime_nsec(4)
    RootMeta rm{0755, 0, 0, "", "", 1, 2};
    check_bad(rm, [&](Bytes& p) { p[1] = 0x10; }, "mode has bits outside 07777");
    check_bad(rm, [&](Bytes& p) { store_le(p.data() + 4 + 4 + 4 + 2 + 2 + 8, 1000000000, 4); }, "mtime_nsec");
    check_bad(rm, [&](Bytes& p) { p.push_back(0); }, "trailing bytes");
    CHECK(std::string(type_name(MsgType::root_meta)) == "ROOT_META");
    // HAVE: path(2+n) size(8) mtime_sec(8) mtime_nsec(4)
    Have hv{"a", 1, 2, 3};
    check_bad(hv, [&](Bytes& p) { p[2] = '/'; }, "path");
    check_bad(hv, [&](Bytes& p) { store_le(p.data() + 3, (1ull << 44) + 1, 8); }, "size above");
    check_bad(hv, [&](Bytes& p) { store_le(p.data() + 3 + 8 + 8, 1000000000, 4); }, "mtime_nsec");
    check_bad(hv, [&](Bytes& p) { p.push_back(0); }, "trailing bytes");
    CHECK(std::string(type_name(MsgType::have)) == "HAVE");
    // UNREADABLE: path(2+n); empty is the root, anything else a valid relative path.
    Unreadable un{"ab"};
    check_bad(un, [&](Bytes& p) { p[2] = '/'; }, "path");
    check_bad(un, [&](Bytes& p) { p[2] = '.'; p[3] = '.'; }, "path");
    check_bad(un, [&](Bytes& p) { p.push_back(0); }, "trailing bytes");
    CHECK(std::string(type_name(MsgType::unreadable)) == "UNREADABLE");
    check_bad(fv, [&](Bytes& p) { p[type_at] = 9; }, "file type");
    check_bad(fv, [&](Bytes& p) { p[type_at] = 8; }, "file type");
    // link_to: only without a body, never the version's own path, and a valid relative path.
    {
      FileVersion linked{0, 3, sample_meta("a"), BodyKind::whole, sample_meta("a").size, "b"};
      auto enc = encode(linked);
      CHECK((!enc.ok() || !decode_payload(MsgType::file_version, Bytes(enc->begin() + kFrameHeaderBytes, enc->end())).ok()));
      for (const char* bad : {"a", "../escape", "/abs"}) {
        CAPTURE(bad);
        FileVersion v{0, 3, sample_meta("a"), BodyKind::none, 0, bad};
        auto e = encode(v);
        CHECK((!e.ok() || !decode_payload(MsgType::file_version, Bytes(e->begin() + kFrameHeaderBytes, e->end())).ok()));
      }
    }
    check_bad(fv, [&](Bytes& p) { p[type_at] = 0; }, "file type");
    // A file turned into a device by one byte: the 8 rdev bytes it now needs shift every field
    // after it, and the frame no longer parses.
    {
      auto enc = encode(fv);
      REQUIRE(enc.ok());
      Bytes payload(enc->begin() + kFrameHeaderBytes, enc->end());
      payload[type_at] = static_cast<uint8_t>(FileType::chardev);
      auto r = decode_payload(type_of(fv), payload);
      CHECK((!r.ok() || std::get<FileVersion>(*r) != fv));
    }
    check_bad(fv, [&](Bytes& p) { p[type_at + 1] = 0x80; }, "unknown flag bits");
    check_bad(fv, [&](Bytes& p) { p[type_at + 2 + 8 + 1] = 0x10; }, "mode");  // mode bit 12
    check_bad(Ping{1, 2}, [](Bytes& p) { p.pop_back(); }, "truncated");
    check_bad(Ack{1, AckStatus::applied, 0, ""}, [](Bytes& p) { p[4] = 6; }, "status");
    check_bad(Hello{kHelloMagic, 1, 1, 1, "n", "c", 1, 0}, [](Bytes& p) { p[0] ^= 1; }, "magic");
    check_bad(Hello{kHelloMagic, 1, 1, 1, "n", "c", 1, 0}, [](Bytes& p) { p[4] = 2; }, "version_min");

    auto bad_meta = [&](auto change, const char* why) {
      FileVersion v{1, 1, sample_meta(), BodyKind::none, 0};
      change(v.meta);
      // Encoding refuses it too: we never put such a frame on the wire.
      auto enc = encode(v);
      REQUIRE_FALSE(enc.ok());
      CHECK_MESSAGE(enc.error().message().find(why) != std::string::npos, enc.error().message());
    };
    bad_meta([](FileMeta& m) { m.path = "../etc/passwd"; }, "'..'");
    bad_meta([](FileMeta& m) { m.path = "/etc/passwd"; }, "absolute");
    bad_meta([](FileMeta& m) { m.mtime_nsec = 1'000'000'000; }, "mtime_nsec");
    bad_meta([](FileMeta& m) { m.version = {{2, 1}, {1, 1}}; }, "ascending");
    bad_meta([](FileMeta& m) { m.version = {{1, 0}}; }, "counter 0");
    bad_meta([](FileMeta& m) { m.version.assign(kMaxVersionEntries + 1, {}); for (size_t i = 0; i < m.version.size(); ++i) m.version[i] = {i + 1, 1}; }, "version vector of 65");
    bad_meta([](FileMeta& m) { m.xattrs.assign(kMaxXattrs + 1, Xattr{"user.x", {}}); }, "xattrs");
    bad_meta([](FileMeta& m) { m.user = std::string(256, 'u'); }, "user length");
    bad_meta([](FileMeta& m) { m.symlink_target = "x"; }, "non-symlink");
    bad_meta([](FileMeta& m) { m.size = kMaxFileSize + 1; }, "16 TiB");

    auto enc_fails = [](const Message& m, const char* why) {
      auto r = encode(m);
      REQUIRE_FALSE(r.ok());
      CHECK_MESSAGE(r.error().message().find(why) != std::string::npos, r.error().message());
    };
    enc_fails(FileVersion{1, 1, sample_meta(), BodyKind::whole, 1}, "whole body_len");
    enc_fails(FileVersion{1, 1, sample_meta(), BodyKind::delta, 5000000}, "delta body_len");
    enc_fails(Data{1, 0, Bytes(kMaxChunk + 1, 0)}, "chunk above");
    enc_fails(Data{1, 0, {}}, "empty chunk");
    enc_fails(SignatureMsg{1, "a", {}, 10, 5, Bytes(6, 0)}, "beyond total_len");
    enc_fails(SignatureMsg{1, "a", {}, kMaxSignatureBytes + 1, 0, Bytes(1, 0)}, "total_len");
    FileMeta live = sample_meta();
    enc_fails(Remove{1, live}, "not marked deleted");
    enc_fails(Rename{1, live, live}, "tombstone");
  }

  TEST_CASE("a count field claiming more entries than the frame holds fails without allocating") {
    // xattr count 64 (within the limit) but no entries follow: truncated, not a 64-entry alloc
    // of garbage; and a string length of 65535 is refused by its limit before reading.
    FileVersion v{1, 1, sample_meta(), BodyKind::none, 0};
    v.meta.xattrs.clear();
    auto enc = encode(v);
    REQUIRE(enc.ok());
    Bytes p(enc->begin() + kFrameHeaderBytes, enc->end());
    // xattr count is the u16 before body kind (1), body_len (8) and an empty link_to (2) at the end.
    const size_t at = p.size() - 11 - 2;
    p[at] = 64;
    Bytes cut(p.begin(), p.begin() + static_cast<ptrdiff_t>(at + 2));  // the count, then nothing
    auto r = decode_payload(MsgType::file_version, cut);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message().find("truncated at xattr name") != std::string::npos);
    p[at] = 0xFF;
    p[at + 1] = 0xFF;
    r = decode_payload(MsgType::file_version, p);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().is(errc::limit_exceeded));
  }

  TEST_CASE("garbage never crashes and never yields a message silently equal to a real one") {
    std::mt19937_64 rng(123);
    int errors = 0, needs_more = 0;
    for (int i = 0; i < 5000; ++i) {
      Bytes g(1 + rng() % 200);
      for (auto& b : g) b = static_cast<uint8_t>(rng());
      if (i % 2) {  // plausible header: small length, valid type
        store_le(g.data(), std::min<uint64_t>(g.size() - 4, 1 + rng() % 150), std::min<size_t>(4, g.size()));
        if (g.size() > 4) g[4] = static_cast<uint8_t>(0x10 + rng() % 8);
      }
      FrameDecoder d;
      if (!d.feed(g).ok()) {
        ++errors;
        continue;
      }
      auto r = d.next();
      if (!r.ok()) {
        ++errors;
      } else if (!r->has_value()) {
        ++needs_more;
      }
    }
    CHECK(errors + needs_more > 4900);
  }

  TEST_CASE("bit flips in a FILE_VERSION frame: an error or a different message - never the same") {
    FileVersion v{5, 17, sample_meta(), BodyKind::whole, 1234};
    auto enc = encode(v);
    REQUIRE(enc.ok());
    const Message original = v;
    int errors = 0;
    for (size_t bit = 0; bit < enc->size() * 8; ++bit) {
      Bytes f = *enc;
      f[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      FrameDecoder d;
      auto st = d.feed(f);
      if (!st.ok()) {
        ++errors;
        continue;
      }
      auto r = d.next();
      if (!r.ok()) {
        ++errors;
        continue;
      }
      if (r->has_value()) CHECK(!(**r == original));
      // Flips in the length/type header always fail or wait for more (never mis-frame silently
      // into a valid message of another type).
      if (bit < 40 && r->has_value()) CHECK(type_of(**r) == MsgType::file_version);
    }
    CHECK(errors > 100);
  }
}
