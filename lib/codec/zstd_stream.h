// File: lib/codec/zstd_stream.h
//
// The compression layer of a connection: one zstd stream per direction (DESIGN.md §6).
// ZstdEncoder compresses everything written in one never-ending zstd frame and flushes at batch
// boundaries, so small similar files (PEM certificates) compress against each other. Where the
// peer accepts several frames (capability `frames`, protocol/SPEC.md §2.1), bytes that will not
// compress (looks_incompressible) go out as raw blocks of a frame of their own instead of through
// the compressor, which on such bytes costs as much CPU as encrypting them and saves nothing.
// ZstdDecoder is its hostile-input counterpart (SECURITY.md §4):
//   - window memory capped with ZSTD_d_windowLogMax (kWindowLogMax);
//   - one frame (or, with allow_frames, frames one after another), each starting with the zstd
//     magic (no skippable frames) and not declaring a content size (ours never do); nothing may
//     follow a frame end unless frames are allowed;
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

// The window syncd's encoder uses: zstd's own choice at level 3 for large inputs. Each encoder
// and decoder holds a window's worth of memory for as long as its connection lives (a node has
// two per peer session); at 2^23 that was about 19 MiB per session on each side.
inline constexpr int kWindowLog = 21;                    // 2 MiB
// The largest window a peer's frame may declare (protocol/SPEC.md §2.1).
inline constexpr int kWindowLogMax = 23;                 // 8 MiB
inline constexpr size_t kChunk = 64 * 1024;              // decoded bytes per sink call
inline constexpr uint64_t kMaxRatio = 1024;              // decoded <= 1024 x compressed ...
inline constexpr uint64_t kRatioSlack = 16ull << 20;     // ... + 16 MiB

// True when a sample of `data` (up to 4 x 4 KiB, spread over it) has a byte entropy of at least
// 7.9 bits: random, encrypted or already compressed bytes. Cost: a histogram of 16 KiB.
bool looks_incompressible(ByteSpan data) noexcept;

class ZstdEncoder {
 public:
  explicit ZstdEncoder(int level = 3);
  // Appends compressed bytes for `in` to `out` (may append nothing until a flush). Ends a raw
  // frame first if one is open.
  Status write(ByteSpan in, Bytes& out);
  // Appends `in` uncompressed, as raw blocks of a frame with no compression (`frames` only: the
  // compressed frame, if any, is ended first). Decodable as soon as it is in `out`.
  Status write_raw(ByteSpan in, Bytes& out);
  // Ends the batch: everything written so far becomes decodable from `out`.
  Status flush(Bytes& out);
  // `frames` negotiated: write() may send part of its input as raw blocks, which it does only to
  // keep the stream within the peer's bomb bound (kMaxRatio). Without it, a long run of bytes
  // that compress beyond that bound (the zeros of a sparse file) makes the peer drop the stream.
  void allow_raw(bool on) noexcept { raw_ok_ = on; }

 private:
  Status run(ByteSpan in, Bytes& out, ZSTD_EndDirective mode);
  Status compress(ByteSpan in, Bytes& out);
  void end_raw(Bytes& out);
  struct Free {
    void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
  };
  std::unique_ptr<ZSTD_CCtx, Free> cctx_;
  bool compressed_open_ = false;  // the compressor has begun a frame it has not ended
  bool raw_open_ = false;         // a raw frame's header went out, its last block not yet
  bool raw_ok_ = false;
  uint64_t in_ = 0;   // bytes written, as the peer's decoder counts them decoded
  uint64_t out_ = 0;  // bytes produced, as it counts them compressed
};

class ZstdDecoder {
 public:
  using Sink = std::function<Status(ByteSpan)>;
  ZstdDecoder();
  // Decodes `in`, calling `sink` with each decoded chunk. Any error (from zstd, from a bound, or
  // returned by the sink) is final for this decoder: the connection must be dropped.
  Status feed(ByteSpan in, const Sink& sink);
  // Accept frames one after another (the `frames` capability was negotiated).
  void allow_frames(bool on) noexcept { frames_ = on; }
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
  bool frames_ = false;
  bool failed_ = false;
  uint64_t compressed_ = 0;
  uint64_t decoded_ = 0;
  Bytes out_;
};

}  // namespace syncd::codec
