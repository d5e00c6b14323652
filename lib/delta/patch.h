// File: lib/delta/patch.h
//
// Patcher: streaming application of a delta (delta_format.h) to a base file, writing the result
// to a sink and hashing it (content hash) on the way. The delta arrives in arbitrary pieces (feed());
// literal bytes go straight to the sink, COPY ops read the base in bounded chunks, so memory does
// not depend on file or delta size.
//
// Every bound of SECURITY.md §2.4 rule 3 is checked before it is used: header consistent with the
// base we hold (else errc::base_mismatch), COPY ranges inside the block count, literals <=
// kMaxLiteral, running output <= declared target length, END == declared length, nothing after END.
// Any error is final for this patcher; the caller discards its temp file.
//
// Thread affinity: one patcher per thread.
//
//   FdBaseReader base(fd, size);  BytesSink out;
//   Patcher p(base, out, declared_size);
//   SYNCD_TRY(p.feed(chunk)); ...;  SYNCD_TRY_ASSIGN(digest, p.finish());
#pragma once

#include <cstdint>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "lib/codec/content_hash.h"
#include "lib/delta/delta_format.h"
#include "lib/delta/signature.h"

namespace syncd::delta {

class BaseReader {
 public:
  virtual ~BaseReader() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly n bytes at `off` or fails (a short base means it changed underneath).
  virtual Status read_at(uint64_t off, uint8_t* dst, size_t n) = 0;
  // The bytes at [off, off+n) without copying, where the base is in memory; empty otherwise.
  // Only called with ranges inside size().
  virtual ByteSpan view(uint64_t /*off*/, size_t /*n*/) { return {}; }
};

class OutputSink {
 public:
  virtual ~OutputSink() = default;
  virtual Status write(ByteSpan data) = 0;
  // A sink that can place base bytes itself (its file started as a clone of the base, or the
  // kernel copies between the files) takes base range [off, off+n) as its next n bytes of output
  // and returns true; false: the patcher reads them and write()s them. Offered only by a patcher
  // that does not hash, since these bytes never pass through it.
  virtual Result<bool> place_base(uint64_t off, uint64_t n) {
    (void)off;
    (void)n;
    return false;
  }
};

class MemoryBaseReader final : public BaseReader {
 public:
  explicit MemoryBaseReader(ByteSpan data) : data_(data) {}
  uint64_t size() const override { return data_.size(); }
  Status read_at(uint64_t off, uint8_t* dst, size_t n) override;
  ByteSpan view(uint64_t off, size_t n) override { return data_.subspan(off, n); }

 private:
  ByteSpan data_;
};

// pread()s from an fd it does not own.
class FdBaseReader final : public BaseReader {
 public:
  FdBaseReader(int fd, uint64_t size) : fd_(fd), size_(size) {}
  uint64_t size() const override { return size_; }
  Status read_at(uint64_t off, uint8_t* dst, size_t n) override;

 private:
  int fd_;
  uint64_t size_;
};

class BytesSink final : public OutputSink {
 public:
  Status write(ByteSpan data) override {
    out.insert(out.end(), data.begin(), data.end());
    return {};
  }
  Bytes out;
};

class Patcher {
 public:
  // Hashing::off: the sink verifies the result itself (the applier does), so the patcher skips
  // its own hash pass and may let the sink place COPY ranges (place_base).
  enum class Hashing { on, off };
  Patcher(BaseReader& base, OutputSink& out, uint64_t declared_target_len, Hashing hashing = Hashing::on);
  ~Patcher();
  Patcher(const Patcher&) = delete;
  Patcher& operator=(const Patcher&) = delete;
  Status feed(ByteSpan delta);
  // Requires the END op to have been seen; returns the content hash of everything written (all zeros
  // under Hashing::off).
  Result<codec::Digest> finish();
  uint64_t written() const noexcept { return written_; }

 private:
  enum class State { header, op, copy_args, literal_len, literal_body, end_len, done, failed };
  Status step(ByteReader& r);
  Status fail(Error e);
  Status emit(ByteSpan data);
  Status copy_blocks(uint32_t first, uint32_t n);
  // Gathers exactly `need` bytes into small_ across feed() calls; true when complete.
  bool gather(ByteReader& r, size_t need);

  BaseReader& base_;
  OutputSink& out_;
  const uint64_t declared_;
  const bool hashing_;
  State state_ = State::header;
  uint8_t small_[kDeltaHeaderBytes] = {};
  size_t small_len_ = 0;
  uint32_t block_len_ = 0;
  uint32_t block_count_ = 0;
  uint32_t literal_left_ = 0;
  uint64_t written_ = 0;
  codec::ContentHasher sha_;
  Bytes copy_buf_;
  Error error_{};
};

// Whole-buffer convenience (tests, benches): returns the patched bytes.
Result<Bytes> apply_delta(ByteSpan base, ByteSpan delta, uint64_t declared_target_len);

}  // namespace syncd::delta
