// Frame-header inspection (ZSTD_getFrameHeader) lives in the experimental section.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "lib/codec/zstd_stream.h"

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

Status ZstdEncoder::write(ByteSpan in, Bytes& out) { return run(in, out, ZSTD_e_continue); }
Status ZstdEncoder::flush(Bytes& out) { return run({}, out, ZSTD_e_flush); }

ZstdDecoder::ZstdDecoder() : dctx_(ZSTD_createDCtx()) {
  if (!dctx_) throw std::bad_alloc();
  ZSTD_DCtx_setParameter(dctx_.get(), ZSTD_d_windowLogMax, kWindowLog);
  out_.resize(kChunk);
}

// Checks the one frame header the stream may have: our magic (not a skippable frame), no declared
// content size, a window within our cap.
Status ZstdDecoder::check_header(ByteSpan in) {
  header_.insert(header_.end(), in.begin(), in.end());
  ZSTD_frameHeader fh{};
  size_t rc = ZSTD_getFrameHeader(&fh, header_.data(), header_.size());
  if (ZSTD_isError(rc)) return zstd_error("zstd frame header", rc);
  if (rc > 0) {
    if (header_.size() > ZSTD_FRAMEHEADERSIZE_MAX) {
      return Error::make(errc::corrupt, "zstd frame header too long");
    }
    return {};  // need more bytes to see the whole header
  }
  if (fh.frameType != ZSTD_frame) return Error::make(errc::corrupt, "zstd skippable frame refused");
  if (fh.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN) {
    return Error::make(errc::corrupt, "zstd frame declares a content size; streams never do");
  }
  if (fh.windowSize > (1ull << kWindowLog)) {
    return Error::make(errc::limit_exceeded,
                       "zstd window " + std::to_string(fh.windowSize) + " above cap");
  }
  header_checked_ = true;
  header_.clear();
  header_.shrink_to_fit();
  return {};
}

Status ZstdDecoder::feed(ByteSpan in, const Sink& sink) {
  if (failed_) return Error::make(errc::corrupt, "zstd stream already failed");
  auto fail = [&](Error e) -> Status {
    failed_ = true;
    return e;
  };
  if (in.empty()) return {};
  if (frame_ended_) return fail(Error::make(errc::corrupt, "bytes after the end of the zstd frame"));
  if (!header_checked_) {
    if (auto st = check_header(in); !st) return fail(std::move(st).error());
  }
  compressed_ += in.size();
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  for (;;) {
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
    if (rc == 0) {  // a frame ended; the stream allows exactly one
      frame_ended_ = true;
      if (ib.pos != ib.size) {
        return fail(Error::make(errc::corrupt, "bytes after the end of the zstd frame"));
      }
      return {};
    }
    // Done when the input is consumed and the last call did not fill the output buffer
    // (a full buffer may mean more output is waiting inside zstd).
    if (ib.pos == ib.size && ob.pos < ob.size) return {};
  }
}

}  // namespace syncd::codec
