// Frame-header inspection (ZSTD_getFrameHeader) lives in the experimental section.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "lib/codec/zstd_stream.h"

#include "lib/base/scope_guard.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

namespace syncd::codec {
namespace {

Error zstd_error(const char* what, size_t rc) {
  return Error::make(errc::corrupt, std::string(what) + ": " + ZSTD_getErrorName(rc));
}

}  // namespace

ZstdEncoder::ZstdEncoder(int level) : cctx_(ZSTD_createCCtx()) {
  if (!cctx_) throw std::bad_alloc();
  // Parameters are fixed locally, never taken from a peer (SECURITY.md §2.4 rule 7, §4 rule 4).
  ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_windowLog, kWindowLog);
  ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_nbWorkers, 0);
  ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_contentSizeFlag, 0);
  ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_checksumFlag, 0);
}

Status ZstdEncoder::run(ByteSpan in, Bytes& out, ZSTD_EndDirective mode) {
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  for (;;) {
    size_t at = out.size();
    size_t room = ZSTD_CStreamOutSize();
    out.resize(at + room);
    ZSTD_outBuffer ob{out.data() + at, room, 0};
    size_t rc = ZSTD_compressStream2(cctx_.get(), &ob, &ib, mode);
    out.resize(at + ob.pos);
    if (ZSTD_isError(rc)) return zstd_error("zstd compress", rc);
    bool input_done = ib.pos == ib.size;
    if (mode == ZSTD_e_continue ? input_done : (input_done && rc == 0)) return {};
  }
}

Status ZstdEncoder::write(ByteSpan in, Bytes& out) {
  // The peer drops a stream that decodes to more than kMaxRatio x its wire bytes + kRatioSlack,
  // counted as the bytes arrive. Whatever `in` compresses to, the peer may decode all of it
  // having received only what went out before, so it must fit the bound of that — with half
  // the ratio and half the slack, a margin. If it does not, a prefix goes raw first: each raw
  // byte is one decoded byte and one wire byte, so it buys the compressed rest its room.
  // (About 0.2 % of a run of zeros goes raw, once past the slack.)
  constexpr uint64_t kRatio = kMaxRatio / 2, kSlack = kRatioSlack / 2;
  const uint64_t allowed = kRatio * out_ + kSlack;
  if (raw_ok_ && in_ + in.size() > allowed) {
    const uint64_t deficit = in_ + in.size() - allowed;
    // A raw frame's header and block headers are wire bytes too, not counted here: a margin.
    const size_t raw = static_cast<size_t>(std::min<uint64_t>(in.size(), (deficit + kRatio - 1) / kRatio));
    SYNCD_TRY(write_raw(in.first(raw), out));
    in = in.subspan(raw);
    if (in.empty()) return {};
  }
  return compress(in, out);
}

Status ZstdEncoder::compress(ByteSpan in, Bytes& out) {
  const size_t at = out.size();
  end_raw(out);
  compressed_open_ = true;
  auto st = run(in, out, ZSTD_e_continue);
  in_ += in.size();
  out_ += out.size() - at;
  return st;
}

Status ZstdEncoder::flush(Bytes& out) {
  if (!compressed_open_) return {};  // raw blocks are decodable as they stand; nothing else is pending
  const size_t at = out.size();
  auto st = run({}, out, ZSTD_e_flush);
  out_ += out.size() - at;
  return st;
}

namespace {

// A raw frame (RFC 8878 §3.1.1): magic, a frame header descriptor with no content size, no
// checksum, no dictionary and not single-segment, then a window descriptor of 2^14 bytes: blocks
// of type Raw_Block of at most that (a block may not exceed the window), the last one empty with
// Last_Block set. The peer's decoder sizes its buffers by the window (about 4 windows): 16 KiB
// keeps that near 64 KiB where 128 KiB cost half a megabyte per stream, for 3 header bytes per
// 16 KiB (0.02 %).
constexpr uint8_t kRawFrameHeader[] = {0x28, 0xB5, 0x2F, 0xFD, 0x00, (14 - 10) << 3};
constexpr size_t kRawBlockMax = 16 * 1024;

void put_block_header(Bytes& out, size_t size, bool last) {
  const uint32_t h = static_cast<uint32_t>(size << 3) | (last ? 1u : 0u);  // Block_Type 0: raw
  out.push_back(static_cast<uint8_t>(h));
  out.push_back(static_cast<uint8_t>(h >> 8));
  out.push_back(static_cast<uint8_t>(h >> 16));
}

}  // namespace

Status ZstdEncoder::write_raw(ByteSpan in, Bytes& out) {
  const size_t start = out.size();
  auto count = ScopeGuard([&]() noexcept { out_ += out.size() - start; });
  in_ += in.size();
  if (compressed_open_) {
    SYNCD_TRY(run({}, out, ZSTD_e_end));  // the next compressed write begins a new frame
    compressed_open_ = false;
  }
  if (!raw_open_) {
    out.insert(out.end(), std::begin(kRawFrameHeader), std::end(kRawFrameHeader));
    raw_open_ = true;
  }
  for (size_t at = 0; at < in.size();) {
    const size_t n = std::min(kRawBlockMax, in.size() - at);
    put_block_header(out, n, false);
    out.insert(out.end(), in.begin() + static_cast<ptrdiff_t>(at), in.begin() + static_cast<ptrdiff_t>(at + n));
    at += n;
  }
  return {};
}

void ZstdEncoder::end_raw(Bytes& out) {
  if (!raw_open_) return;
  put_block_header(out, 0, true);
  raw_open_ = false;
}

bool looks_incompressible(ByteSpan data) noexcept {
  constexpr size_t kSample = 4096, kSamples = 4;
  if (data.size() < kSample * kSamples) return false;  // small: the compressor is cheap there
  uint32_t hist[256] = {};
  const size_t step = (data.size() - kSample) / (kSamples - 1);
  for (size_t k = 0; k < kSamples; ++k) {
    const uint8_t* p = data.data() + k * step;
    for (size_t i = 0; i < kSample; ++i) ++hist[p[i]];
  }
  // Shannon entropy of the sample. Uniform bytes measure about 7.99 here (a 16 KiB sample of
  // 256 symbols is biased low by ~0.01); text, base64 and binaries with structure stay well
  // under 7.5.
  constexpr double n = kSample * kSamples;
  double bits = 0;
  for (uint32_t c : hist) {
    if (c == 0) continue;
    const double q = c / n;
    bits -= q * std::log2(q);
  }
  return bits >= 7.9;
}

ZstdDecoder::ZstdDecoder() : dctx_(ZSTD_createDCtx()) {
  if (!dctx_) throw std::bad_alloc();
  ZSTD_DCtx_setParameter(dctx_.get(), ZSTD_d_windowLogMax, kWindowLogMax);
  out_.resize(kChunk);
}

// Checks a frame's header as its bytes arrive: our magic (not a skippable frame), no declared
// content size, a window within our cap. `in` starts where the header's missing bytes start.
Status ZstdDecoder::check_header(ByteSpan in) {
  const size_t want = std::min(in.size(), static_cast<size_t>(ZSTD_FRAMEHEADERSIZE_MAX) - header_.size());
  header_.insert(header_.end(), in.begin(), in.begin() + static_cast<ptrdiff_t>(want));
  ZSTD_frameHeader fh{};
  size_t rc = ZSTD_getFrameHeader(&fh, header_.data(), header_.size());
  if (ZSTD_isError(rc)) return zstd_error("zstd frame header", rc);
  if (rc > 0) {
    if (header_.size() >= ZSTD_FRAMEHEADERSIZE_MAX) {
      return Error::make(errc::corrupt, "zstd frame header too long");
    }
    return {};  // need more bytes to see the whole header
  }
  if (fh.frameType != ZSTD_frame) return Error::make(errc::corrupt, "zstd skippable frame refused");
  if (fh.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN) {
    return Error::make(errc::corrupt, "zstd frame declares a content size; streams never do");
  }
  if (fh.windowSize > (1ull << kWindowLogMax)) {
    return Error::make(errc::limit_exceeded,
                       "zstd window " + std::to_string(fh.windowSize) + " above cap");
  }
  header_checked_ = true;
  header_.clear();
  return {};
}

Status ZstdDecoder::feed(ByteSpan in, const Sink& sink) {
  if (failed_) return Error::make(errc::corrupt, "zstd stream already failed");
  auto fail = [&](Error e) -> Status {
    failed_ = true;
    return e;
  };
  if (in.empty()) return {};
  compressed_ += in.size();
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  for (;;) {
    if (frame_ended_) {
      if (ib.pos == ib.size) return {};
      if (!frames_) return fail(Error::make(errc::corrupt, "bytes after the end of the zstd frame"));
      frame_ended_ = false;  // the next frame begins here; zstd starts it on its own
      header_checked_ = false;
    }
    if (!header_checked_) {
      // Header bytes produce no output, so zstd takes all of `in` before this runs again: each
      // byte is looked at once.
      if (auto st = check_header(ByteSpan(in.data() + ib.pos, ib.size - ib.pos)); !st) {
        return fail(std::move(st).error());
      }
    }
    ZSTD_outBuffer ob{out_.data(), out_.size(), 0};
    size_t rc = ZSTD_decompressStream(dctx_.get(), &ob, &ib);
    if (ZSTD_isError(rc)) return fail(zstd_error("zstd decompress", rc));
    if (ob.pos > 0) {
      decoded_ += ob.pos;
      if (decoded_ > kMaxRatio * compressed_ + kRatioSlack) {
        return fail(Error::make(errc::limit_exceeded,
                                "zstd decoded/compressed ratio above " + std::to_string(kMaxRatio) +
                                    " (decompression bomb?)"));
      }
      if (auto st = sink(ByteSpan(out_.data(), ob.pos)); !st) return fail(std::move(st).error());
    }
    if (rc == 0) {  // a frame ended (and all its output was handed over)
      frame_ended_ = true;
      continue;
    }
    // Done when the input is consumed and the last call did not fill the output buffer
    // (a full buffer may mean more output is waiting inside zstd).
    if (ib.pos == ib.size && ob.pos < ob.size) return {};
  }
}

}  // namespace syncd::codec
