// File: lib/codec/zstd_stream.h
//
// The compression layer of a connection: one zstd stream per direction (DESIGN.md §6).
// ZstdEncoder compresses everything written in one never-ending zstd frame and flushes at batch
// boundaries, so small similar files (PEM certificates) compress against each other.
// ZstdDecoder is its hostile-input counterpart (SECURITY.md §4):
//   - window memory capped with ZSTD_d_windowLogMax (kWindowLog);
//   - exactly one frame: the stream must start with the zstd magic (no skippable frames), may not
//     declare a content size (ours never do), and nothing may follow a frame end;
//   - output is produced in chunks of at most kChunk bytes and handed to the caller's sink as it
//     emerges, so the frame decoder applies its limits to decoded bytes as they appear;
//   - a decoded/compressed ratio beyond kMaxRatio (plus kRatioSlack) is an error (bombs).
// Thread affinity: one object per connection direction; not shared.
//
//   ZstdEncoder enc; Bytes wire; enc.write(frame_bytes, wire); enc.flush(wire);
//   ZstdDecoder dec; dec.feed(wire, [&](ByteSpan plain) -> Status { return frames.feed(plain); });
#pragma once

#include <zstd.h>

#include <functional>
#include <memory>

#include "lib/base/bytes.h"
#include "lib/base/result.h"

namespace syncd::codec {

inline constexpr int kWindowLog = 23;                    // 8 MiB window, both sides
inline constexpr size_t kChunk = 64 * 1024;              // decoded bytes per sink call
inline constexpr uint64_t kMaxRatio = 1024;              // decoded <= 1024 x compressed ...
inline constexpr uint64_t kRatioSlack = 16ull << 20;     // ... + 16 MiB

class ZstdEncoder {
 public:
  explicit ZstdEncoder(int level = 3);
  // Appends compressed bytes for `in` to `out` (may append nothing until a flush).
  Status write(ByteSpan in, Bytes& out);
  // Ends the batch: everything written so far becomes decodable from `out`.
  Status flush(Bytes& out);

 private:
  Status run(ByteSpan in, Bytes& out, ZSTD_EndDirective mode);
  struct Free {
    void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
  };
  std::unique_ptr<ZSTD_CCtx, Free> cctx_;
};

class ZstdDecoder {
 public:
  using Sink = std::function<Status(ByteSpan)>;
  ZstdDecoder();
  // Decodes `in`, calling `sink` with each decoded chunk. Any error (from zstd, from a bound, or
  // returned by the sink) is final for this decoder: the connection must be dropped.
  Status feed(ByteSpan in, const Sink& sink);
  uint64_t compressed_in() const noexcept { return compressed_; }
  uint64_t decoded_out() const noexcept { return decoded_; }

 private:
  Status check_header(ByteSpan in);
  struct Free {
    void operator()(ZSTD_DCtx* c) const noexcept { ZSTD_freeDCtx(c); }
  };
  std::unique_ptr<ZSTD_DCtx, Free> dctx_;
  Bytes header_;            // first bytes kept until the frame header can be checked
  bool header_checked_ = false;
  bool frame_ended_ = false;
  bool failed_ = false;
  uint64_t compressed_ = 0;
  uint64_t decoded_ = 0;
  Bytes out_;
};

}  // namespace syncd::codec
