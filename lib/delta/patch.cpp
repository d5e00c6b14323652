#include "lib/delta/patch.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace syncd::delta {
namespace {

constexpr size_t kCopyChunk = 256 * 1024;

Error corrupt(const std::string& what) { return Error::make(errc::corrupt, "delta: " + what); }

}  // namespace

Status MemoryBaseReader::read_at(uint64_t off, uint8_t* dst, size_t n) {
  if (off > data_.size() || n > data_.size() - off) {
    return Error::make(errc::base_mismatch, "delta: base shorter than expected");
  }
  std::memcpy(dst, data_.data() + off, n);
  return {};
}

Status FdBaseReader::read_at(uint64_t off, uint8_t* dst, size_t n) {
  while (n > 0) {
    ssize_t r = ::pread(fd_, dst, n, static_cast<off_t>(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("delta: read base");
    }
    if (r == 0) return Error::make(errc::base_mismatch, "delta: base shorter than expected");
    dst += r;
    off += static_cast<uint64_t>(r);
    n -= static_cast<size_t>(r);
  }
  return {};
}

Patcher::Patcher(BaseReader& base, OutputSink& out, uint64_t declared_target_len, Hashing hashing)
    : base_(base), out_(out), declared_(declared_target_len), hashing_(hashing == Hashing::on) {}

Patcher::~Patcher() { codec::wipe(copy_buf_.data(), copy_buf_.size()); }

Status Patcher::fail(Error e) {
  state_ = State::failed;
  error_ = e;
  return e;
}

Status Patcher::emit(ByteSpan data) {
  if (data.size() > declared_ - written_) {
    return fail(Error::make(errc::limit_exceeded, "delta: output exceeds declared size " +
                                                      std::to_string(declared_)));
  }
  if (hashing_) sha_.update(data);
  written_ += data.size();
  if (auto st = out_.write(data); !st) return fail(std::move(st).error());
  return {};
}

Status Patcher::copy_blocks(uint32_t first, uint32_t n) {
  if (n == 0) return fail(corrupt("COPY of zero blocks"));
  if (uint64_t{first} + n > block_count_) {  // 64-bit: no overflow
    return fail(corrupt("COPY blocks [" + std::to_string(first) + ", +" + std::to_string(n) +
                        ") beyond block count " + std::to_string(block_count_)));
  }
  const uint64_t begin = uint64_t{first} * block_len_;
  const uint64_t end = std::min<uint64_t>(uint64_t{first + uint64_t{n}} * block_len_, base_.size());
  // Check the output bound for the whole run before reading anything.
  if (end - begin > declared_ - written_) {
    return fail(Error::make(errc::limit_exceeded, "delta: output exceeds declared size " +
                                                      std::to_string(declared_)));
  }
  if (end > begin && !hashing_) {
    auto placed = out_.place_base(begin, end - begin);
    if (!placed.ok()) return fail(std::move(placed).error());
    if (*placed) {
      written_ += end - begin;
      return {};
    }
  }
  if (end > begin) {
    if (ByteSpan direct = base_.view(begin, static_cast<size_t>(end - begin)); !direct.empty()) {
      return emit(direct);  // in-memory base: no bounce buffer
    }
  }
  copy_buf_.resize(kCopyChunk);
  for (uint64_t off = begin; off < end;) {
    const auto len = static_cast<size_t>(std::min<uint64_t>(kCopyChunk, end - off));
    if (auto st = base_.read_at(off, copy_buf_.data(), len); !st) return fail(std::move(st).error());
    SYNCD_TRY(emit(ByteSpan(copy_buf_.data(), len)));
    off += len;
  }
  return {};
}

bool Patcher::gather(ByteReader& r, size_t need) {
  const size_t take = std::min(need - small_len_, r.remaining());
  (void)r.raw_into(small_ + small_len_, take);
  small_len_ += take;
  if (small_len_ < need) return false;
  small_len_ = 0;
  return true;
}

Status Patcher::step(ByteReader& r) {
  switch (state_) {
    case State::header: {
      if (!gather(r, kDeltaHeaderBytes)) return {};
      ByteReader h(ByteSpan(small_, kDeltaHeaderBytes));
      uint32_t magic = 0;
      uint64_t base_len = 0;
      (void)h.u32(magic);
      (void)h.u32(block_len_);
      (void)h.u32(block_count_);
      (void)h.u64(base_len);
      if (magic != kDeltaMagic) return fail(corrupt("bad magic"));
      if (block_len_ == 0 || block_len_ > kMaxBlock) return fail(corrupt("block_len out of range"));
      if (base_len != base_.size()) {
        return fail(Error::make(errc::base_mismatch,
                                "delta: made against a " + std::to_string(base_len) +
                                    "-byte base, we hold " + std::to_string(base_.size())));
      }
      if (block_count_ != (base_len + block_len_ - 1) / block_len_) {
        return fail(corrupt("block_count inconsistent with base length"));
      }
      state_ = State::op;
      return {};
    }
    case State::op: {
      uint8_t op = 0;
      if (!r.u8(op)) return {};
      switch (static_cast<Op>(op)) {
        case Op::copy: state_ = State::copy_args; return {};
        case Op::literal: state_ = State::literal_len; return {};
        case Op::end: state_ = State::end_len; return {};
      }
      return fail(corrupt("unknown op 0x" + codec::to_hex(ByteSpan(&op, 1))));
    }
    case State::copy_args: {
      if (!gather(r, 8)) return {};
      const auto first = static_cast<uint32_t>(load_le(small_, 4));
      const auto n = static_cast<uint32_t>(load_le(small_ + 4, 4));
      SYNCD_TRY(copy_blocks(first, n));
      state_ = State::op;
      return {};
    }
    case State::literal_len: {
      if (!gather(r, 4)) return {};
      literal_left_ = static_cast<uint32_t>(load_le(small_, 4));
      if (literal_left_ == 0 || literal_left_ > kMaxLiteral) {
        return fail(corrupt("literal length " + std::to_string(literal_left_) + " outside [1, " +
                            std::to_string(kMaxLiteral) + "]"));
      }
      if (literal_left_ > declared_ - written_) {
        return fail(Error::make(errc::limit_exceeded, "delta: output exceeds declared size " +
                                                          std::to_string(declared_)));
      }
      state_ = State::literal_body;
      return {};
    }
    case State::literal_body: {
      ByteSpan chunk;
      const size_t n = std::min<size_t>(literal_left_, r.remaining());
      (void)r.raw(n, chunk);
      SYNCD_TRY(emit(chunk));
      literal_left_ -= static_cast<uint32_t>(n);
      if (literal_left_ == 0) state_ = State::op;
      return {};
    }
    case State::end_len: {
      if (!gather(r, 8)) return {};
      const uint64_t total = load_le(small_, 8);
      if (total != declared_ || written_ != declared_) {
        return fail(corrupt("END says " + std::to_string(total) + " bytes, wrote " +
                            std::to_string(written_) + ", declared " + std::to_string(declared_)));
      }
      state_ = State::done;
      return {};
    }
    case State::done: return fail(corrupt("bytes after END"));
    case State::failed: return error_;
  }
  return fail(Error::make(errc::internal, "delta: bad patcher state"));
}

Status Patcher::feed(ByteSpan delta) {
  if (state_ == State::failed) return error_;
  ByteReader r(delta);
  while (r.remaining() > 0) {
    const size_t before = r.remaining();
    const State s = state_;
    SYNCD_TRY(step(r));
    // Forward progress: every step consumes input or changes state (librsync's job check).
    if (r.remaining() == before && state_ == s) return fail(Error::make(errc::internal, "delta: no progress"));
  }
  return {};
}

Result<codec::Digest> Patcher::finish() {
  if (state_ == State::failed) return error_;
  if (state_ != State::done) {
    return fail(Error::make(errc::truncated, "delta: stream ended before END")).error();
  }
  if (!hashing_) return codec::Digest{};
  return sha_.finish();
}

Result<Bytes> apply_delta(ByteSpan base, ByteSpan delta, uint64_t declared_target_len) {
  MemoryBaseReader reader(base);
  BytesSink sink;
  // A capacity hint only, never sized by the declared length alone (it comes from a peer).
  sink.out.reserve(static_cast<size_t>(std::min<uint64_t>(declared_target_len, base.size() + delta.size())));
  Patcher p(reader, sink, declared_target_len);
  SYNCD_TRY(p.feed(delta));
  SYNCD_TRY(p.finish());
  return std::move(sink.out);
}

}  // namespace syncd::delta
