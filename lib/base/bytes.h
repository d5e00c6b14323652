// File: lib/base/bytes.h
//
// Byte buffers and explicit little-endian encoding used by every wire format (protocol frames,
// delta streams, signatures). ByteReader never reads past its span: each get returns false
// when the input is too short, so decoders check every length before using it.
// Thread affinity: none; plain values.
//
//   ByteWriter w(buf); w.u32(7); w.bytes(span);
//   ByteReader r(span); uint32_t v; if (!r.u32(v)) return truncated;
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace syncd {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

inline ByteSpan as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteSpan b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline void store_le(uint8_t* p, uint64_t v, size_t n) noexcept {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t load_le(const uint8_t* p, size_t n) noexcept {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Empties `b`. A buffer one large message grew past `keep` bytes gives that memory back, so a
// long-lived buffer (a connection's, a decoder's) does not hold a big file's worth for good;
// freed memory stays in the heap for the next one while work goes on (base/memory.h).
inline void clear_buffer(Bytes& b, size_t keep = 256 * 1024) noexcept {
  if (b.capacity() > keep) {
    Bytes().swap(b);
  } else {
    b.clear();
  }
}

class ByteWriter {
 public:
  explicit ByteWriter(Bytes& out) noexcept : out_(out) {}
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void i64(int64_t v) { put(static_cast<uint64_t>(v), 8); }
  void raw(ByteSpan b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void raw(std::string_view s) { raw(as_bytes(s)); }
  size_t size() const noexcept { return out_.size(); }

 private:
  void put(uint64_t v, size_t n) {
    size_t at = out_.size();
    out_.resize(at + n);
    store_le(out_.data() + at, v, n);
  }
  Bytes& out_;
};

class ByteReader {
 public:
  explicit ByteReader(ByteSpan in) noexcept : in_(in) {}
  [[nodiscard]] bool u8(uint8_t& v) noexcept { return get(v, 1); }
  [[nodiscard]] bool u16(uint16_t& v) noexcept { return get(v, 2); }
  [[nodiscard]] bool u32(uint32_t& v) noexcept { return get(v, 4); }
  [[nodiscard]] bool u64(uint64_t& v) noexcept { return get(v, 8); }
  [[nodiscard]] bool i64(int64_t& v) noexcept {
    uint64_t u = 0;
    if (!get(u, 8)) return false;
    v = static_cast<int64_t>(u);
    return true;
  }
  // Borrows n bytes from the input (no copy).
  [[nodiscard]] bool raw(size_t n, ByteSpan& out) noexcept {
    if (remaining() < n) return false;
    out = in_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  [[nodiscard]] bool raw_into(uint8_t* dst, size_t n) noexcept {
    if (remaining() < n) return false;
    if (n) std::memcpy(dst, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  size_t remaining() const noexcept { return in_.size() - pos_; }
  size_t pos() const noexcept { return pos_; }

 private:
  template <class T>
  bool get(T& v, size_t n) noexcept {
    if (remaining() < n) return false;
    v = static_cast<T>(load_le(in_.data() + pos_, n));
    pos_ += n;
    return true;
  }
  ByteSpan in_;
  size_t pos_ = 0;
};

}  // namespace syncd
