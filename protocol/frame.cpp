// Implements protocol/SPEC.md §3 (framing) and §5 (message layouts).
#include "protocol/frame.h"

#include <string>

#include "protocol/limits.h"
#include "protocol/path.h"

namespace syncd::protocol {
namespace {

Error corrupt(MsgType t, const std::string& what) {
  return Error::make(errc::corrupt, std::string(type_name(t)) + ": " + what);
}
Error too_big(MsgType t, const std::string& what) {
  return Error::make(errc::limit_exceeded, std::string(type_name(t)) + ": " + what);
}

// ---- encoding -------------------------------------------------------------------------------

class Enc {
 public:
  explicit Enc(Bytes& out) : w_(out) {}
  void u8(uint8_t v) { w_.u8(v); }
  void u16(uint16_t v) { w_.u16(v); }
  void u32(uint32_t v) { w_.u32(v); }
  void u64(uint64_t v) { w_.u64(v); }
  void i64(int64_t v) { w_.i64(v); }
  void hash(const Hash256& h) { w_.raw(ByteSpan(h)); }
  // u16-prefixed short string, u32-prefixed blob.
  void str16(const std::string& s) {
    w_.u16(static_cast<uint16_t>(s.size()));
    w_.raw(s);
  }
  void blob32(ByteSpan b) {
    w_.u32(static_cast<uint32_t>(b.size()));
    w_.raw(b);
  }
  void meta(const FileMeta& m) {
    str16(m.path);
    u8(static_cast<uint8_t>(m.type));
    u8(m.deleted ? 1 : 0);
    u64(m.size);
    u32(m.mode);
    u32(m.uid);
    u32(m.gid);
    str16(m.user);
    str16(m.group);
    i64(m.mtime_sec);
    u32(m.mtime_nsec);
    str16(m.symlink_target);
    if (is_device(m.type)) u64(m.rdev);
    u16(static_cast<uint16_t>(m.version.size()));
    for (const auto& e : m.version) {
      u64(e.node);
      u64(e.counter);
    }
    u64(m.content_dot.node);
    u64(m.content_dot.counter);
    u64(m.content_ts);
    u64(m.meta_dot.node);
    u64(m.meta_dot.counter);
    u64(m.meta_ts);
    hash(m.sha256);
    u16(static_cast<uint16_t>(m.xattrs.size()));
    for (const auto& x : m.xattrs) {
      str16(x.name);
      blob32(x.value);
    }
  }

 private:
  ByteWriter w_;
};

void encode_body(const Message& msg, Enc& e) {
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, Hello>) {
          e.u32(m.magic);
          e.u16(m.version_min);
          e.u16(m.version_max);
          e.u64(m.node_id);
          e.str16(m.node_name);
          e.str16(m.cluster_id);
          e.u64(m.index_id);
          e.u64(m.capabilities);
        } else if constexpr (std::is_same_v<T, ErrorMsg>) {
          e.u32(m.code);
          e.str16(m.text);
        } else if constexpr (std::is_same_v<T, Ping> || std::is_same_v<T, Pong>) {
          e.u64(m.nonce);
          e.u64(m.sent_ns);
        } else if constexpr (std::is_same_v<T, FileVersion>) {
          e.u32(m.xfer_id);
          e.u64(m.seq);
          e.meta(m.meta);
          e.u8(static_cast<uint8_t>(m.body));
          e.u64(m.body_len);
          e.str16(m.link_to);
        } else if constexpr (std::is_same_v<T, Data>) {
          e.u32(m.xfer_id);
          e.u64(m.offset);
          e.blob32(m.chunk);
        } else if constexpr (std::is_same_v<T, Delta>) {
          e.u32(m.xfer_id);
          e.hash(m.base_hash);
          e.u64(m.offset);
          e.blob32(m.chunk);
        } else if constexpr (std::is_same_v<T, SigRequest>) {
          e.u32(m.req_id);
          e.str16(m.path);
          e.hash(m.base_hash);
        } else if constexpr (std::is_same_v<T, SignatureMsg>) {
          e.u32(m.req_id);
          e.str16(m.path);
          e.hash(m.file_hash);
          e.u64(m.total_len);
          e.u64(m.offset);
          e.blob32(m.chunk);
        } else if constexpr (std::is_same_v<T, Remove>) {
          e.u64(m.seq);
          e.meta(m.meta);
        } else if constexpr (std::is_same_v<T, Rename>) {
          e.u64(m.seq);
          e.meta(m.from);
          e.meta(m.to);
        } else if constexpr (std::is_same_v<T, Ack>) {
          e.u32(m.xfer_id);
          e.u8(static_cast<uint8_t>(m.status));
          e.u64(m.seq);
          e.str16(m.detail);
        } else if constexpr (std::is_same_v<T, IndexSummary>) {
          e.u64(m.index_id);
          e.u64(m.max_seq);
          e.u64(m.acked_seq);
          e.u64(m.record_count);
        } else if constexpr (std::is_same_v<T, IndexRequest>) {
          e.u64(m.index_id);
          e.u64(m.since_seq);
        } else if constexpr (std::is_same_v<T, IndexUpdate>) {
          e.u64(m.seq);
          e.meta(m.meta);
        } else if constexpr (std::is_same_v<T, IndexEnd>) {
          e.u64(m.index_id);
          e.u64(m.max_seq);
        } else if constexpr (std::is_same_v<T, RootMeta>) {
          e.u32(m.mode);
          e.u32(m.uid);
          e.u32(m.gid);
          e.str16(m.user);
          e.str16(m.group);
          e.i64(m.mtime_sec);
          e.u32(m.mtime_nsec);
        } else if constexpr (std::is_same_v<T, Have>) {
          e.str16(m.path);
          e.u64(m.size);
          e.i64(m.mtime_sec);
          e.u32(m.mtime_nsec);
        } else if constexpr (std::is_same_v<T, Unreadable>) {
          e.str16(m.path);
        }
      },
      msg);
}

// ---- decoding -------------------------------------------------------------------------------

// Reads fields in wire order; the first failure is remembered and every later read is a no-op,
// so a decode function reads all fields and checks ok() once, plus semantic checks in between.
class Dec {
 public:
  Dec(MsgType t, ByteSpan in) : t_(t), r_(in) {}
  bool ok() const noexcept { return !err_; }
  Error take() { return std::move(*err_); }
  void fail(Error e) {
    if (!err_) err_ = std::move(e);
  }
  void short_read(const char* field) { fail(corrupt(t_, std::string("truncated at ") + field)); }

  uint8_t u8(const char* f) { uint8_t v = 0; if (ok() && !r_.u8(v)) short_read(f); return v; }
  uint16_t u16(const char* f) { uint16_t v = 0; if (ok() && !r_.u16(v)) short_read(f); return v; }
  uint32_t u32(const char* f) { uint32_t v = 0; if (ok() && !r_.u32(v)) short_read(f); return v; }
  uint64_t u64(const char* f) { uint64_t v = 0; if (ok() && !r_.u64(v)) short_read(f); return v; }
  int64_t i64(const char* f) { int64_t v = 0; if (ok() && !r_.i64(v)) short_read(f); return v; }
  Hash256 hash(const char* f) {
    Hash256 h{};
    if (ok() && !r_.raw_into(h.data(), h.size())) short_read(f);
    return h;
  }
  std::string str16(const char* f, size_t max) {
    uint16_t n = u16(f);
    if (!ok()) return {};
    if (n > max) {
      fail(too_big(t_, std::string(f) + " length " + std::to_string(n) + " > " + std::to_string(max)));
      return {};
    }
    ByteSpan s;
    if (!r_.raw(n, s)) {
      short_read(f);
      return {};
    }
    return std::string(as_chars(s));
  }
  Bytes blob32(const char* f, size_t max) {
    uint32_t n = u32(f);
    if (!ok()) return {};
    if (n > max) {
      fail(too_big(t_, std::string(f) + " length " + std::to_string(n) + " > " + std::to_string(max)));
      return {};
    }
    ByteSpan s;
    if (!r_.raw(n, s)) {
      short_read(f);
      return {};
    }
    return Bytes(s.begin(), s.end());
  }
  void path(std::string& out, const char* f) {
    out = str16(f, kMaxPath);
    if (!ok()) return;
    if (auto st = validate_path(out); !st) fail(std::move(st).error().wrap(type_name(t_)));
  }
  void meta(FileMeta& m);
  void end() {
    if (ok() && r_.remaining() != 0) {
      fail(corrupt(t_, std::to_string(r_.remaining()) + " trailing bytes"));
    }
  }
  MsgType type() const noexcept { return t_; }

 private:
  MsgType t_;
  ByteReader r_;
  std::optional<Error> err_;
};

void Dec::meta(FileMeta& m) {
  path(m.path, "path");
  const uint8_t type = u8("type");
  if (ok() && (type < 1 || type > 7)) fail(corrupt(t_, "file type " + std::to_string(type)));
  m.type = static_cast<FileType>(type);
  const uint8_t flags = u8("flags");
  if (ok() && (flags & ~1u)) fail(corrupt(t_, "unknown flag bits"));
  m.deleted = flags & 1;
  m.size = u64("size");
  if (ok() && m.size > kMaxFileSize) fail(too_big(t_, "size above 16 TiB"));
  m.mode = u32("mode");
  if (ok() && (m.mode & ~kModeMask)) fail(corrupt(t_, "mode has bits outside 07777"));
  m.uid = u32("uid");
  m.gid = u32("gid");
  m.user = str16("user", kMaxName);
  m.group = str16("group", kMaxName);
  m.mtime_sec = i64("mtime_sec");
  m.mtime_nsec = u32("mtime_nsec");
  if (ok() && m.mtime_nsec > kMaxNsec) fail(corrupt(t_, "mtime_nsec above 999999999"));
  m.symlink_target = str16("symlink_target", kMaxSymlinkTarget);
  if (ok() && m.type != FileType::symlink && !m.symlink_target.empty()) {
    fail(corrupt(t_, "symlink target on a non-symlink"));
  }
  if (ok() && m.symlink_target.find('\0') != std::string::npos) {
    fail(corrupt(t_, "NUL in symlink target"));
  }
  m.rdev = ok() && is_device(m.type) ? u64("rdev") : 0;
  const uint16_t nv = u16("version count");
  if (ok() && nv > kMaxVersionEntries) {
    fail(too_big(t_, "version vector of " + std::to_string(nv) + " entries > " +
                         std::to_string(kMaxVersionEntries)));
  }
  if (ok()) m.version.resize(nv);
  for (uint16_t i = 0; ok() && i < nv; ++i) {
    m.version[i].node = u64("version node");
    m.version[i].counter = u64("version counter");
    if (ok() && m.version[i].counter == 0) fail(corrupt(t_, "version counter 0"));
    if (ok() && i > 0 && m.version[i].node <= m.version[i - 1].node) {
      fail(corrupt(t_, "version vector not strictly ascending by node"));
    }
  }
  m.content_dot.node = u64("content_dot");
  m.content_dot.counter = u64("content_dot");
  m.content_ts = u64("content_ts");
  m.meta_dot.node = u64("meta_dot");
  m.meta_dot.counter = u64("meta_dot");
  m.meta_ts = u64("meta_ts");
  m.sha256 = hash("sha256");
  const uint16_t nx = u16("xattr count");
  if (ok() && nx > kMaxXattrs) {
    fail(too_big(t_, std::to_string(nx) + " xattrs > " + std::to_string(kMaxXattrs)));
  }
  if (ok()) m.xattrs.resize(nx);
  for (uint16_t i = 0; ok() && i < nx; ++i) {
    m.xattrs[i].name = str16("xattr name", kMaxName);
    if (ok() && m.xattrs[i].name.empty()) fail(corrupt(t_, "empty xattr name"));
    m.xattrs[i].value = blob32("xattr value", kMaxXattrValue);
  }
}

template <class T>
Result<Message> finish(Dec& d, T&& m) {
  d.end();
  if (!d.ok()) return d.take();
  return Message(std::forward<T>(m));
}

Result<Message> decode_hello(Dec& d) {
  Hello h;
  h.magic = d.u32("magic");
  if (d.ok() && h.magic != kHelloMagic) d.fail(corrupt(d.type(), "bad magic"));
  h.version_min = d.u16("version_min");
  h.version_max = d.u16("version_max");
  if (d.ok() && h.version_min > h.version_max) d.fail(corrupt(d.type(), "version_min > version_max"));
  h.node_id = d.u64("node_id");
  h.node_name = d.str16("node_name", kMaxName);
  h.cluster_id = d.str16("cluster_id", kMaxClusterId);
  h.index_id = d.u64("index_id");
  h.capabilities = d.u64("capabilities");  // unknown bits are ignored: negotiation intersects
  return finish(d, std::move(h));
}

Status check_chunk(MsgType t, const Bytes& chunk, bool may_be_empty) {
  if (chunk.size() > kMaxChunk) return too_big(t, "chunk above 1 MiB");
  if (chunk.empty() && !may_be_empty) return corrupt(t, "empty chunk");
  return {};
}

Status check_bulk(const Message& m) {
  if (const auto* d = std::get_if<Data>(&m)) return check_chunk(MsgType::data, d->chunk, false);
  if (const auto* d = std::get_if<Delta>(&m)) return check_chunk(MsgType::delta, d->chunk, false);
  if (const auto* s = std::get_if<SignatureMsg>(&m)) {
    SYNCD_TRY(check_chunk(MsgType::signature, s->chunk, true));
    SYNCD_TRY(validate_path(s->path));
    if (s->total_len > kMaxSignatureBytes || s->offset > s->total_len ||
        s->chunk.size() > s->total_len - s->offset) {
      return corrupt(MsgType::signature, "chunk beyond total_len");
    }
  }
  return {};
}

}  // namespace

// ---- public

bool is_known_type(uint8_t t) noexcept {
  return (t >= 0x01 && t <= 0x04) || (t >= 0x10 && t <= 0x18) || (t >= 0x20 && t <= 0x25);
}

MsgType type_of(const Message& m) noexcept {
  static constexpr MsgType kTypes[] = {
      MsgType::hello,       MsgType::error,       MsgType::ping,          MsgType::pong,
      MsgType::file_version, MsgType::data,       MsgType::delta,         MsgType::sig_request,
      MsgType::signature,   MsgType::remove,      MsgType::rename,        MsgType::ack,
      MsgType::index_summary, MsgType::index_request, MsgType::index_update, MsgType::index_end,
      MsgType::root_meta, MsgType::have, MsgType::unreadable};
  static_assert(std::size(kTypes) == std::variant_size_v<Message>);
  return kTypes[m.index()];
}

const char* type_name(MsgType t) noexcept {
  switch (t) {
    case MsgType::hello: return "HELLO";
    case MsgType::error: return "ERROR";
    case MsgType::ping: return "PING";
    case MsgType::pong: return "PONG";
    case MsgType::file_version: return "FILE_VERSION";
    case MsgType::data: return "DATA";
    case MsgType::delta: return "DELTA";
    case MsgType::sig_request: return "SIG_REQUEST";
    case MsgType::signature: return "SIGNATURE";
    case MsgType::remove: return "REMOVE";
    case MsgType::rename: return "RENAME";
    case MsgType::ack: return "ACK";
    case MsgType::index_summary: return "INDEX_SUMMARY";
    case MsgType::index_request: return "INDEX_REQUEST";
    case MsgType::index_update: return "INDEX_UPDATE";
    case MsgType::index_end: return "INDEX_END";
    case MsgType::root_meta: return "ROOT_META";
    case MsgType::have: return "HAVE";
    case MsgType::unreadable: return "UNREADABLE";
  }
  return "UNKNOWN";
}

Result<Message> decode_payload(MsgType t, ByteSpan payload) {
  Dec d(t, payload);
  switch (t) {
    case MsgType::hello: return decode_hello(d);
    case MsgType::error: {
      ErrorMsg m;
      m.code = d.u32("code");
      m.text = d.str16("text", kMaxText);
      return finish(d, std::move(m));
    }
    case MsgType::ping:
    case MsgType::pong: {
      uint64_t nonce = d.u64("nonce");
      uint64_t sent = d.u64("sent_ns");
      if (t == MsgType::ping) return finish(d, Ping{nonce, sent});
      return finish(d, Pong{nonce, sent});
    }
    case MsgType::file_version: {
      FileVersion m;
      m.xfer_id = d.u32("xfer_id");
      m.seq = d.u64("seq");
      d.meta(m.meta);
      const uint8_t body = d.u8("body kind");
      if (d.ok() && body > 2) d.fail(corrupt(t, "body kind " + std::to_string(body)));
      m.body = static_cast<BodyKind>(body);
      m.body_len = d.u64("body_len");
      m.link_to = d.str16("link_to", kMaxPath);
      if (d.ok() && !m.link_to.empty()) {
        if (auto st = validate_path(m.link_to); !st) d.fail(std::move(st).error().wrap("FILE_VERSION link_to"));
      }
      if (d.ok()) {
        const auto& fm = m.meta;
        const bool has_content = fm.type == FileType::file && !fm.deleted;
        if (m.body != BodyKind::none && !has_content) {
          d.fail(corrupt(t, "body on a directory, symlink or tombstone"));
        } else if (m.body == BodyKind::whole && m.body_len != fm.size) {
          d.fail(corrupt(t, "whole body_len != size"));
        } else if (m.body == BodyKind::delta && m.body_len > 2 * fm.size + (1u << 20)) {
          d.fail(too_big(t, "delta body_len above 2*size + 1 MiB"));
        } else if (m.body == BodyKind::none && m.body_len != 0) {
          d.fail(corrupt(t, "body_len without a body"));
        } else if (!m.link_to.empty() && (m.body != BodyKind::none || !has_content || m.link_to == fm.path)) {
          d.fail(corrupt(t, "link_to only on a file version without a body, to another path"));
        }
      }
      return finish(d, std::move(m));
    }
    case MsgType::data: {
      Data m;
      m.xfer_id = d.u32("xfer_id");
      m.offset = d.u64("offset");
      m.chunk = d.blob32("chunk", kMaxChunk);
      if (d.ok() && m.chunk.empty()) d.fail(corrupt(t, "empty chunk"));
      return finish(d, std::move(m));
    }
    case MsgType::delta: {
      Delta m;
      m.xfer_id = d.u32("xfer_id");
      m.base_hash = d.hash("base_hash");
      m.offset = d.u64("offset");
      m.chunk = d.blob32("chunk", kMaxChunk);
      if (d.ok() && m.chunk.empty()) d.fail(corrupt(t, "empty chunk"));
      return finish(d, std::move(m));
    }
    case MsgType::sig_request: {
      SigRequest m;
      m.req_id = d.u32("req_id");
      d.path(m.path, "path");
      m.base_hash = d.hash("base_hash");
      return finish(d, std::move(m));
    }
    case MsgType::signature: {
      SignatureMsg m;
      m.req_id = d.u32("req_id");
      d.path(m.path, "path");
      m.file_hash = d.hash("file_hash");
      m.total_len = d.u64("total_len");
      if (d.ok() && m.total_len > kMaxSignatureBytes) d.fail(too_big(t, "signature total_len"));
      m.offset = d.u64("offset");
      m.chunk = d.blob32("chunk", kMaxChunk);
      if (d.ok() && (m.offset > m.total_len || m.chunk.size() > m.total_len - m.offset)) {
        d.fail(corrupt(t, "chunk beyond total_len"));
      }
      return finish(d, std::move(m));
    }
    case MsgType::remove: {
      Remove m;
      m.seq = d.u64("seq");
      d.meta(m.meta);
      if (d.ok() && !m.meta.deleted) d.fail(corrupt(t, "REMOVE of a record not marked deleted"));
      return finish(d, std::move(m));
    }
    case MsgType::rename: {
      Rename m;
      m.seq = d.u64("seq");
      d.meta(m.from);
      d.meta(m.to);
      if (d.ok() && (!m.from.deleted || m.to.deleted)) {
        d.fail(corrupt(t, "RENAME needs a tombstone at 'from' and a live record at 'to'"));
      }
      if (d.ok() && m.from.path == m.to.path) d.fail(corrupt(t, "RENAME onto itself"));
      return finish(d, std::move(m));
    }
    case MsgType::ack: {
      Ack m;
      m.xfer_id = d.u32("xfer_id");
      const uint8_t st = d.u8("status");
      if (d.ok() && st > 5) d.fail(corrupt(t, "status " + std::to_string(st)));
      m.status = static_cast<AckStatus>(st);
      m.seq = d.u64("seq");
      m.detail = d.str16("detail", kMaxText);
      return finish(d, std::move(m));
    }
    case MsgType::index_summary: {
      IndexSummary m;
      m.index_id = d.u64("index_id");
      m.max_seq = d.u64("max_seq");
      m.acked_seq = d.u64("acked_seq");
      m.record_count = d.u64("record_count");
      return finish(d, std::move(m));
    }
    case MsgType::index_request: {
      IndexRequest m;
      m.index_id = d.u64("index_id");
      m.since_seq = d.u64("since_seq");
      return finish(d, std::move(m));
    }
    case MsgType::index_update: {
      IndexUpdate m;
      m.seq = d.u64("seq");
      d.meta(m.meta);
      return finish(d, std::move(m));
    }
    case MsgType::index_end: {
      IndexEnd m;
      m.index_id = d.u64("index_id");
      m.max_seq = d.u64("max_seq");
      return finish(d, std::move(m));
    }
    case MsgType::root_meta: {
      RootMeta m;
      m.mode = d.u32("mode");
      if (d.ok() && (m.mode & ~kModeMask)) d.fail(corrupt(t, "mode has bits outside 07777"));
      m.uid = d.u32("uid");
      m.gid = d.u32("gid");
      m.user = d.str16("user", kMaxName);
      m.group = d.str16("group", kMaxName);
      m.mtime_sec = d.i64("mtime_sec");
      m.mtime_nsec = d.u32("mtime_nsec");
      if (d.ok() && m.mtime_nsec > kMaxNsec) d.fail(corrupt(t, "mtime_nsec above 999999999"));
      return finish(d, std::move(m));
    }
    case MsgType::have: {
      Have m;
      d.path(m.path, "path");
      m.size = d.u64("size");
      if (d.ok() && m.size > kMaxFileSize) d.fail(too_big(t, "size above 2^44"));
      m.mtime_sec = d.i64("mtime_sec");
      m.mtime_nsec = d.u32("mtime_nsec");
      if (d.ok() && m.mtime_nsec > kMaxNsec) d.fail(corrupt(t, "mtime_nsec above 999999999"));
      return finish(d, std::move(m));
    }
    case MsgType::unreadable: {
      Unreadable m;
      // Empty: the root itself (the sender could not list its tree at all).
      m.path = d.str16("path", kMaxPath);
      if (d.ok() && !m.path.empty()) {
        if (auto st = validate_path(m.path); !st) d.fail(std::move(st).error().wrap(type_name(t)));
      }
      return finish(d, std::move(m));
    }
  }
  return Error::make(errc::corrupt, "unknown message type 0x" +
                                        std::to_string(static_cast<unsigned>(t)));
}

Status encode(const Message& m, Bytes& out) {
  const size_t at = out.size();
  out.resize(at + kFrameHeaderBytes);
  Enc e(out);
  encode_body(m, e);
  const size_t len = out.size() - at - 4;  // type byte + payload
  if (len > kMaxFrameBytes) {
    out.resize(at);
    return Error::make(errc::limit_exceeded, std::string(type_name(type_of(m))) + ": frame of " +
                                                 std::to_string(len) + " bytes above limit");
  }
  store_le(out.data() + at, len, 4);
  out[at + 4] = static_cast<uint8_t>(type_of(m));
  // Self-check: never send what a peer has to reject. Bulk frames (a chunk plus fixed fields)
  // get the chunk checks directly instead of a full decode, which would copy the chunk again.
  Status ok = check_bulk(m);
  if (ok.ok() && !std::holds_alternative<Data>(m) && !std::holds_alternative<Delta>(m) &&
      !std::holds_alternative<SignatureMsg>(m)) {
    auto back = decode_payload(type_of(m), ByteSpan(out.data() + at + kFrameHeaderBytes,
                                                    out.size() - at - kFrameHeaderBytes));
    if (!back.ok()) ok = std::move(back).error();
  }
  if (!ok.ok()) {
    out.resize(at);
    return std::move(ok).error().wrap("refusing to encode");
  }
  return {};
}

Result<Bytes> encode(const Message& m) {
  Bytes out;
  SYNCD_TRY(encode(m, out));
  return out;
}

Status FrameDecoder::check_header() {
  if (buffered() < 4) return {};
  const uint64_t len = load_le(buf_.data() + pos_, 4);
  if (len == 0) return Error::make(errc::corrupt, "frame: length 0");
  if (len > kMaxFrameBytes) {
    return Error::make(errc::limit_exceeded, "frame: length " + std::to_string(len) + " > " +
                                                 std::to_string(kMaxFrameBytes));
  }
  return {};
}

Status FrameDecoder::feed(ByteSpan in) {
  if (failed_) return error_;
  // Compact consumed bytes first so the buffer holds at most one partial frame plus `in`.
  if (pos_ > 0) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(pos_));
    pos_ = 0;
  }
  // Check the pending header before buffering a payload it may not deserve.
  const size_t have = buf_.size();
  if (have < 4) {
    const size_t need = std::min<size_t>(4 - have, in.size());
    buf_.insert(buf_.end(), in.begin(), in.begin() + static_cast<ptrdiff_t>(need));
    in = in.subspan(need);
  }
  if (auto st = check_header(); !st) {
    failed_ = true;
    error_ = std::move(st).error();
    return error_;
  }
  buf_.insert(buf_.end(), in.begin(), in.end());
  return {};
}

Result<std::optional<Message>> FrameDecoder::next() {
  if (failed_) return error_;
  auto fail = [&](Error e) -> Result<std::optional<Message>> {
    failed_ = true;
    error_ = e;
    return e;
  };
  if (auto st = check_header(); !st) return fail(std::move(st).error());
  if (pos_ > 0 && pos_ == buf_.size()) {
    clear_buffer(buf_);  // all taken: a big frame's room is not kept while the stream idles
    pos_ = 0;
  }
  if (buffered() < kFrameHeaderBytes) return std::optional<Message>{};
  const auto len = static_cast<size_t>(load_le(buf_.data() + pos_, 4));
  if (buffered() < 4 + len) return std::optional<Message>{};
  const uint8_t type = buf_[pos_ + 4];
  ByteSpan payload(buf_.data() + pos_ + kFrameHeaderBytes, len - 1);
  if (!is_known_type(type)) {
    return fail(Error::make(errc::corrupt, "frame: unknown message type " + std::to_string(type)));
  }
  auto msg = decode_payload(static_cast<MsgType>(type), payload);
  if (!msg.ok()) return fail(std::move(msg).error());
  pos_ += 4 + len;
  return std::optional<Message>(std::move(msg).value());
}

}  // namespace syncd::protocol
