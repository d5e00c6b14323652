#include "lib/delta/delta.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>

#include "lib/codec/sha256.h"
#include "lib/delta/delta_format.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace syncd::delta {

BlockIndex::BlockIndex(const Signature& sig) : sig_(sig) {
  const uint32_t n = sig.header.block_count;
  order_.resize(n);
  for (uint32_t i = 0; i < n; ++i) order_[i] = i;
  std::sort(order_.begin(), order_.end(), [&](uint32_t a, uint32_t b) {
    if (sig.weak[a] != sig.weak[b]) return sig.weak[a] < sig.weak[b];
    int c = std::memcmp(sig.strong[a].data(), sig.strong[b].data(), kStrongLen);
    return c != 0 ? c < 0 : a < b;
  });
  // Open-addressing table of distinct weak sums, load factor <= 1/2.
  const uint32_t slots = std::max<uint32_t>(1024, std::bit_ceil(std::max<uint32_t>(n, 1) * 2));
  slots_.assign(slots, Slot{0, 0, 0});
  slot_shift_ = 32 - static_cast<uint32_t>(std::countr_zero(slots));
  // Filter with ~64 bits per block: ~1.5% false positives at one load and one bit test per
  // offset (measured with callgrind: 33 instructions per searched byte against 42 for a two-bit
  // blocked variant). 8 KiB for small signatures, capped at 2 MiB.
  const uint32_t bits = std::clamp<uint32_t>(std::bit_ceil(std::max<uint32_t>(n, 1)) * 64, 1u << 16,
                                             1u << 24);
  bloom_.assign(bits / 64, 0);
  bloom_shift_ = 32 - static_cast<uint32_t>(std::countr_zero(bits));
  for (uint32_t i = 0; i < n;) {
    uint32_t j = i;
    const uint32_t w = sig.weak[order_[i]];
    while (j < n && sig.weak[order_[j]] == w) ++j;
    uint32_t s = mix(w) >> slot_shift_;
    while (slots_[s].end != 0) s = (s + 1) & (slots - 1);
    slots_[s] = Slot{w, i, j};
    const uint32_t h = mix(w) >> bloom_shift_;
    bloom_[h >> 6] |= uint64_t{1} << (h & 63);
    i = j;
  }
}

template <class StrongFn>
int64_t BlockIndex::find(uint32_t weak, int64_t prefer, StrongFn&& strong_of_window,
                         bool& computed) const {
  const uint32_t mask = static_cast<uint32_t>(slots_.size() - 1);
  uint32_t s = mix(weak) >> slot_shift_;
  while (slots_[s].end != 0 && slots_[s].weak != weak) s = (s + 1) & mask;
  const Slot& slot = slots_[s];
  if (slot.end == 0) return -1;
  const codec::StrongSum& strong = strong_of_window();
  computed = true;
  // The block following the previous match extends a COPY run: check it first.
  if (prefer >= 0 && static_cast<uint64_t>(prefer) < sig_.weak.size() &&
      sig_.weak[prefer] == weak && sig_.strong[prefer] == strong) {
    return prefer;
  }
  auto first = order_.begin() + slot.begin;
  auto last = order_.begin() + slot.end;
  auto it = std::lower_bound(first, last, strong, [&](uint32_t idx, const codec::StrongSum& v) {
    return std::memcmp(sig_.strong[idx].data(), v.data(), kStrongLen) < 0;
  });
  if (it != last && sig_.strong[*it] == strong) return *it;
  return -1;
}

namespace {

// Rolls the window from `p` while the filter rules out every block, returning the first offset
// (<= stop) whose window may match, with s1/s2 updated to it. Four offsets per step: their sums
// are formed from running differences so the loop-carried chain is one add for s1 and four for
// s2 per four bytes, and the four filter probes overlap. The state lives in locals: `data` is a
// byte pointer, which may alias anything, so member fields would be reloaded every byte.
inline size_t scan(const BlockIndex::Filter index, const uint8_t* data, size_t B, size_t p, size_t stop,
                   uint32_t n, uint32_t& s1_io, uint32_t& s2_io) {
  uint32_t s1 = s1_io;
  uint32_t s2 = s2_io;
  const uint32_t nc = n * kCharOffset;
  auto weak_of = [](uint32_t a, uint32_t b) { return (a & 0xffff) | (b << 16); };
  if (!index.maybe(weak_of(s1, s2))) {
    const uint8_t* in = data + B;
    while (p + 4 <= stop) {
      const uint32_t o0 = data[p], o1 = data[p + 1], o2 = data[p + 2], o3 = data[p + 3];
      const uint32_t a0 = in[p] - o0;
      const uint32_t a1 = a0 + in[p + 1] - o1;
      const uint32_t a2 = a1 + in[p + 2] - o2;
      const uint32_t a3 = a2 + in[p + 3] - o3;
      const uint32_t t0 = s1 + a0, t1 = s1 + a1, t2 = s1 + a2, t3 = s1 + a3;
      // s2 after k rolls: s2 + sum_{j<k}(t_j - n*o_j - nc). Partial sums off the chain, so the
      // loop-carried dependency is one add per four bytes.
      const uint32_t d0 = t0 - n * o0 - nc;
      const uint32_t d1 = d0 + t1 - n * o1 - nc;
      const uint32_t d2 = d1 + t2 - n * o2 - nc;
      const uint32_t d3 = d2 + t3 - n * o3 - nc;
      const uint32_t u0 = s2 + d0, u1 = s2 + d1, u2 = s2 + d2, u3 = s2 + d3;
      const unsigned hits = static_cast<unsigned>(index.maybe(weak_of(t0, u0))) |
                            static_cast<unsigned>(index.maybe(weak_of(t1, u1))) << 1 |
                            static_cast<unsigned>(index.maybe(weak_of(t2, u2))) << 2 |
                            static_cast<unsigned>(index.maybe(weak_of(t3, u3))) << 3;
      if (hits != 0) {  // stop at the first candidate of the four (rare: the filter is sparse)
        const int k = std::countr_zero(hits);
        s1_io = k == 0 ? t0 : k == 1 ? t1 : k == 2 ? t2 : t3;
        s2_io = k == 0 ? u0 : k == 1 ? u1 : k == 2 ? u2 : u3;
        return p + static_cast<size_t>(k) + 1;
      }
      s1 = t3;
      s2 = u3;
      p += 4;
    }
    while (p < stop) {
      const uint32_t o = data[p];
      s1 += static_cast<uint32_t>(in[p]) - o;
      s2 += s1 - n * o - nc;
      ++p;
      if (index.maybe(weak_of(s1, s2))) break;
    }
  }
  s1_io = s1;
  s2_io = s2;
  return p;
}

#if defined(__x86_64__)
// The same search as scan(), eight offsets per step with AVX2 (chosen at run time; Debian's
// x86-64 baseline has only SSE2). Per step: the rolled s1 for offsets 1..8 is s1 plus a prefix sum
// of (in - out); s2 is s2 plus a prefix sum of (s1_k - n*out - n*C); the eight filter words are
// fetched with one gather from the filter viewed as 32-bit words (bit h of the 64-bit table is bit
// h&31 of 32-bit word h>>5 on little-endian x86). Returns the same offset and state as scan().
// Inclusive prefix sum over 8 lanes.
__attribute__((target("avx2"))) inline __m256i prefix8(__m256i v) {
  v = _mm256_add_epi32(v, _mm256_slli_si256(v, 4));
  v = _mm256_add_epi32(v, _mm256_slli_si256(v, 8));
  // Carry lane 3 of the low half into every lane of the high half.
  const __m256i carry =
      _mm256_permute2x128_si256(_mm256_shuffle_epi32(v, _MM_SHUFFLE(3, 3, 3, 3)), v, 0x08);
  return _mm256_add_epi32(v, carry);
}

__attribute__((target("avx2"))) size_t scan_avx2(const BlockIndex::Filter index,
                                                 const uint8_t* data, size_t B, size_t p,
                                                 size_t stop, uint32_t n, uint32_t& s1_io,
                                                 uint32_t& s2_io) {
  uint32_t s1 = s1_io;
  uint32_t s2 = s2_io;
  if (index.maybe((s1 & 0xffff) | (s2 << 16))) return p;
  const uint8_t* in = data + B;
  const auto* words32 = reinterpret_cast<const int*>(index.words);
  const __m256i vn = _mm256_set1_epi32(static_cast<int>(n));
  const __m256i vnc = _mm256_set1_epi32(static_cast<int>(n * kCharOffset));
  const __m256i vmix = _mm256_set1_epi32(static_cast<int>(0x9E3779B1u));
  const __m256i low16 = _mm256_set1_epi32(0xffff);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i bits31 = _mm256_set1_epi32(31);
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(index.shift));
  const __m256i last = _mm256_set1_epi32(7);
  while (p + 8 <= stop) {
    const __m256i o = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(data + p)));
    const __m256i i = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(in + p)));
    const __m256i t = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(s1)), prefix8(_mm256_sub_epi32(i, o)));
    const __m256i e = _mm256_sub_epi32(_mm256_sub_epi32(t, _mm256_mullo_epi32(vn, o)), vnc);
    const __m256i u = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(s2)), prefix8(e));
    const __m256i weak = _mm256_or_si256(_mm256_and_si256(t, low16), _mm256_slli_epi32(u, 16));
    const __m256i h = _mm256_srl_epi32(_mm256_mullo_epi32(weak, vmix), shift);
    const __m256i w = _mm256_i32gather_epi32(words32, _mm256_srli_epi32(h, 5), 4);
    const __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(w, _mm256_and_si256(h, bits31)), one);
    const auto hits = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bit, one))));
    if (hits != 0) {
      const int k = std::countr_zero(hits);
      alignas(32) uint32_t tv[8], uv[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(tv), t);
      _mm256_store_si256(reinterpret_cast<__m256i*>(uv), u);
      s1_io = tv[k];
      s2_io = uv[k];
      return p + static_cast<size_t>(k) + 1;
    }
    s1 = static_cast<uint32_t>(_mm256_cvtsi256_si32(_mm256_permutevar8x32_epi32(t, last)));
    s2 = static_cast<uint32_t>(_mm256_cvtsi256_si32(_mm256_permutevar8x32_epi32(u, last)));
    p += 8;
  }
  // Fewer than eight offsets left: the scalar loop finishes them.
  s1_io = s1;
  s2_io = s2;
  return scan(index, data, B, p, stop, n, s1_io, s2_io);
}

std::atomic<bool> g_allow_simd{true};

bool have_avx2() noexcept {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes && g_allow_simd.load(std::memory_order_relaxed);
}
#endif

}  // namespace

void allow_simd_search(bool allow) noexcept {
#if defined(__x86_64__)
  g_allow_simd.store(allow, std::memory_order_relaxed);
#else
  (void)allow;
#endif
}

bool simd_search_active() noexcept {
#if defined(__x86_64__)
  return have_avx2();
#else
  return false;
#endif
}

DeltaGenerator::DeltaGenerator(const Signature& sig) : sig_(sig), block_len_(sig.header.block_len) {}

const BlockIndex& DeltaGenerator::index() {
  if (!index_) index_.emplace(sig_);
  return *index_;
}

size_t DeltaGenerator::predict_reach() const noexcept {
  return std::max<size_t>(1, kPredictReach / block_len_);
}

bool DeltaGenerator::match_predicted(size_t avail, Bytes& out) {
  const uint32_t B = block_len_;
  const size_t reach = predict_reach();
  // Block k expected j blocks further on: block j of an overwrite that spans j blocks.
  for (size_t j = 0; j <= reach && (j + 1) * B <= avail && !gave_up_; ++j) {
    const int64_t k = predict_ + static_cast<int64_t>(j);
    if (k >= int64_t{sig_.header.block_count} || sig_.header.block_size(static_cast<uint32_t>(k)) != B) break;
    ++strong_hashes_;
    if (sig_.key.hash(ByteSpan(buf_.data() + pos_ + j * B, B)) != sig_.strong[static_cast<size_t>(k)]) {
      false_alarm();  // a missed prediction costs what a weak-sum false alarm does, under the same cap
      continue;
    }
    pos_ += j * B;  // the overwritten blocks go as a literal
    emit_literal(out);
    add_copy(static_cast<uint32_t>(k), out);
    pos_ += B;
    lit_start_ = pos_;
    predict_ = k + 1;
    return true;
  }
  predict_ = -1;
  return false;
}

int64_t DeltaGenerator::try_match(const uint8_t* window, uint32_t len, uint32_t weak) {
  if (gave_up_) return -1;
  codec::StrongSum strong{};
  auto strong_fn = [&]() -> const codec::StrongSum& {
    ++strong_hashes_;
    strong = sig_.key.hash(ByteSpan(window, len));
    return strong;
  };
  const int64_t prefer = run_len_ > 0 ? int64_t{run_first_} + run_len_ : -1;
  bool computed = false;
  int64_t idx = index().find(weak, prefer, strong_fn, computed);
  if (idx >= 0 && sig_.header.block_size(static_cast<uint32_t>(idx)) != len) idx = -1;
  if (idx < 0 && computed) false_alarm();
  return idx;
}

void DeltaGenerator::false_alarm() {
  ++false_alarms_;
  const uint64_t budget = kFalseAlarmBase + kFalseAlarmPerBlock * (total_in_ / block_len_ + 1);
  if (false_alarms_ > budget) gave_up_ = true;  // rest of the file goes as literals
}

void DeltaGenerator::flush_copy(Bytes& out) {
  if (run_len_ == 0) return;
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(Op::copy));
  w.u32(run_first_);
  w.u32(run_len_);
  run_len_ = 0;
}

void DeltaGenerator::add_copy(uint32_t idx, Bytes& out) {
  if (run_len_ > 0 && uint64_t{run_first_} + run_len_ == idx) {
    ++run_len_;
  } else {
    flush_copy(out);
    run_first_ = idx;
    run_len_ = 1;
  }
  const uint32_t sz = sig_.header.block_size(idx);
  matched_bytes_ += sz;
  total_out_ += sz;
}

void DeltaGenerator::emit_literal(Bytes& out) {
  if (pos_ == lit_start_) return;
  flush_copy(out);
  ByteWriter w(out);
  while (lit_start_ < pos_) {
    const auto n = static_cast<uint32_t>(std::min<size_t>(pos_ - lit_start_, kMaxLiteral));
    w.u8(static_cast<uint8_t>(Op::literal));
    w.u32(n);
    w.raw(ByteSpan(buf_.data() + lit_start_, n));
    lit_start_ += n;
    literal_bytes_ += n;
    total_out_ += n;
  }
}

void DeltaGenerator::compact() {
  // Drop bytes already emitted; amortised by only doing it once they dominate the buffer.
  if (lit_start_ > 0 && lit_start_ >= buf_.size() / 2) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(lit_start_));
    pos_ -= lit_start_;
    lit_start_ = 0;
  }
}

void DeltaGenerator::process(bool final, Bytes& out) {
  const size_t B = block_len_;
  const uint32_t nblocks = sig_.header.block_count;
  const bool searchable = nblocks > 0;
  for (;;) {
    size_t avail = buf_.size() - pos_;
    if (avail < B || !searchable || gave_up_) {
      if (!final) {
        if (!searchable || gave_up_) {  // nothing can match: everything is literal
          pos_ = buf_.size();
          have_sum_ = false;
          if (pos_ - lit_start_ >= kMaxLiteral) emit_literal(out);
        }
        break;
      }
      // Tail: only the signature's short last block can match here, and only exactly.
      if (searchable && !gave_up_ && avail > 0 && avail == sig_.header.remainder &&
          sig_.header.remainder < B) {
        const uint8_t* win = buf_.data() + pos_;
        const auto len = static_cast<uint32_t>(avail);
        int64_t idx = try_match(win, len, Rollsum::of(win, len));
        if (idx >= 0) {
          emit_literal(out);
          add_copy(static_cast<uint32_t>(idx), out);
          pos_ += avail;
          lit_start_ = pos_;
          break;
        }
      }
      pos_ = buf_.size();
      emit_literal(out);
      break;
    }
    if (!have_sum_ && predict_ >= 0 && !gave_up_) {
      if (!final && avail < (predict_reach() + 1) * B) break;  // every prediction gets its input
      if (match_predicted(avail, out)) {
        compact();
        continue;
      }
    }
    if (!have_sum_) {
      sum_.init(buf_.data() + pos_, B);
      have_sum_ = true;
    }
    // Hot loop: slide until the filter says some block may match, the window reaches the end of
    // the buffered input, or the pending literal is full.
    const uint8_t* data = buf_.data();
    const size_t end = buf_.size();
    const size_t stop = std::min(end - B, lit_start_ + kMaxLiteral);
    uint32_t s1 = sum_.s1;
    uint32_t s2 = sum_.s2;
#if defined(__x86_64__)
    const BlockIndex::Filter filter = index().filter();
    size_t p = have_avx2() ? scan_avx2(filter, data, B, pos_, stop, sum_.n, s1, s2)
                           : scan(filter, data, B, pos_, stop, sum_.n, s1, s2);
#else
    size_t p = scan(index().filter(), data, B, pos_, stop, sum_.n, s1, s2);
#endif
    uint32_t weak = (s1 & 0xffff) | (s2 << 16);
    sum_.s1 = s1;
    sum_.s2 = s2;
    pos_ = p;
    if (pos_ - lit_start_ >= kMaxLiteral) emit_literal(out);
    if (!index().maybe(weak)) {
      if (pos_ + B >= end) {
        if (!final) break;
        ++pos_;  // cannot roll further: this byte is literal, retry from the next offset
        have_sum_ = false;
      }
      continue;
    }
    int64_t idx = try_match(data + pos_, static_cast<uint32_t>(B), weak);
    if (idx >= 0) {
      emit_literal(out);
      add_copy(static_cast<uint32_t>(idx), out);
      pos_ += B;
      lit_start_ = pos_;
      have_sum_ = false;
      predict_ = idx + 1;
      compact();
      continue;
    }
    if (pos_ + B < end) {
      sum_.roll(data[pos_], data[pos_ + B]);
      ++pos_;
    } else if (final) {
      ++pos_;
      have_sum_ = false;
    } else {
      break;
    }
  }
  compact();
}

// Bytes past size() were file content too: grow to capacity (only within the vector's own
// storage) so the whole allocation is wiped.
static void wipe_all(Bytes& b) noexcept {
  b.resize(b.capacity());
  codec::wipe(b.data(), b.size());
}

DeltaGenerator::~DeltaGenerator() { wipe_all(buf_); }

void DeltaGenerator::write_header(Bytes& out) {
  if (header_written_) return;
  ByteWriter w(out);
  w.u32(kDeltaMagic);
  w.u32(sig_.header.block_len);
  w.u32(sig_.header.block_count);
  w.u64(sig_.header.file_len);
  header_written_ = true;
}

Status DeltaGenerator::feed_same(uint64_t len, Bytes& out) {
  if (finished_) return Error::make(errc::internal, "delta: feed after finish");
  write_header(out);
  // Everything buffered is matched or sent as a literal now: no match spans the boundary.
  process(true, out);
  buf_.clear();
  pos_ = lit_start_ = 0;
  have_sum_ = false;
  if (len == 0) return {};
  const uint32_t B = block_len_;
  const auto& h = sig_.header;
  const uint64_t first = total_in_ / B;
  const uint64_t count = len / B + (len % B ? 1 : 0);
  if (total_in_ % B != 0 || first + count > h.block_count ||
      (len % B && (first + count != h.block_count || h.remainder != len % B))) {
    return Error::make(errc::internal, "delta: unchanged range does not line up with the base's blocks");
  }
  for (uint64_t k = first; k < first + count; ++k) add_copy(static_cast<uint32_t>(k), out);
  total_in_ += len;
  predict_ = static_cast<int64_t>(first + count);
  return {};
}

Status DeltaGenerator::feed(ByteSpan data, Bytes& out) {
  if (finished_) return Error::make(errc::internal, "delta: feed after finish");
  write_header(out);
  total_in_ += data.size();
  // Feed in slices so the internal buffer stays bounded even for one huge span.
  constexpr size_t kSlice = 1 << 20;
  for (size_t i = 0; i < data.size(); i += kSlice) {
    auto part = data.subspan(i, std::min(kSlice, data.size() - i));
    buf_.insert(buf_.end(), part.begin(), part.end());
    process(false, out);
  }
  return {};
}

Status DeltaGenerator::finish(Bytes& out) {
  SYNCD_TRY(feed({}, out));
  process(true, out);
  flush_copy(out);
  if (total_out_ != total_in_) return Error::make(errc::internal, "delta: output != input length");
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(Op::end));
  w.u64(total_in_);
  finished_ = true;
  wipe_all(buf_);
  buf_.clear();
  buf_.shrink_to_fit();
  return {};
}

Bytes make_delta(const Signature& sig, ByteSpan new_data) {
  DeltaGenerator g(sig);
  Bytes out;
  (void)g.feed(new_data, out);
  (void)g.finish(out);
  return out;
}

}  // namespace syncd::delta
