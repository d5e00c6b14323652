// File: lib/delta/delta.h
//
// DeltaGenerator: the rsync search. Given the signature of the receiver's base file, it reads the
// new file as a stream and emits COPY(block run) / LITERAL(bytes) ops (delta_format.h) into a
// caller-owned output buffer. Memory: the block index (~O(block_count)) plus at most
// block_len + kMaxLiteral + one fed chunk of buffered input, whatever the file size.
//
// Bounded work on crafted bases (SECURITY.md §2.4 rule 4): blocks are grouped by weak sum and
// sorted by strong sum, so a weak hit costs one strong hash plus a binary search, never a chain
// walk; and the number of weak hits whose strong sum does not match (false alarms, each costing
// one strong hash of block_len bytes) is capped at kFalseAlarmBase + kFalseAlarmPerBlock per
// block_len of input. Past the cap the rest of the file is sent as literals, so total work stays
// linear in the file size.
//
// Edits in place are found without the search: after a match (and at the start) the next block of
// the base is expected at the next offset and checked by its strong sum alone; when it differs,
// the blocks after it are tried at their own offsets (an overwrite of up to kPredictReach bytes),
// and only then does the rolling search run. A prediction costs one strong hash of a block it
// then passes over, so the work stays linear (and counts against the false-alarm cap).
//
// Thread affinity: one generator per thread; the Signature it borrows must outlive it and may be
// shared read-only.
//
//   DeltaGenerator gen(sig);
//   Bytes out;
//   while (read chunk) { SYNCD_TRY(gen.feed(chunk, out)); drain(out); out.clear(); }
//   SYNCD_TRY(gen.finish(out));
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lib/base/bytes.h"
#include "lib/base/result.h"
#include "lib/delta/rollsum.h"
#include "lib/delta/signature.h"

namespace syncd::delta {

inline constexpr uint64_t kFalseAlarmBase = 256;
inline constexpr uint64_t kFalseAlarmPerBlock = 16;
// How far past a changed block the prediction looks for the next unchanged one (bytes).
inline constexpr size_t kPredictReach = 16 * 1024;

// Lookup structure over a signature: weak sum -> blocks, strong sums sorted within a weak group.
class BlockIndex {
 public:
  explicit BlockIndex(const Signature& sig);
  // Cheap pre-filter: false means no block has this weak sum.
  // One bit per weak sum in a table of ~64 bits per block: one load answers for most offsets.
  bool maybe(uint32_t weak) const noexcept { return filter().maybe(weak); }
  // Raw view of the filter for the search loop (kept in registers there).
  struct Filter {
    const uint64_t* words;
    uint32_t shift;
    bool maybe(uint32_t weak) const noexcept {
      const uint32_t h = mix(weak) >> shift;
      return (words[h >> 6] >> (h & 63)) & 1;
    }
  };
  Filter filter() const noexcept { return Filter{bloom_.data(), bloom_shift_}; }

  // Returns a block whose weak and strong sums both match, preferring `prefer` if it does,
  // or -1. `strong` is computed lazily by the caller-supplied function only when needed.
  template <class StrongFn>
  int64_t find(uint32_t weak, int64_t prefer, StrongFn&& strong_of_window, bool& computed) const;

 private:
  static uint32_t mix(uint32_t w) noexcept { return w * 0x9E3779B1u; }
  struct Slot {
    uint32_t weak;
    uint32_t begin;  // range in order_
    uint32_t end;    // 0 = empty slot
  };
  const Signature& sig_;
  std::vector<uint32_t> order_;  // block indices sorted by (weak, strong, index)
  std::vector<Slot> slots_;
  uint32_t slot_shift_ = 0;
  std::vector<uint64_t> bloom_;
  uint32_t bloom_shift_ = 0;  // bit index = top bits of the mixed weak sum
};

class DeltaGenerator {
 public:
  explicit DeltaGenerator(const Signature& sig);
  ~DeltaGenerator();
  DeltaGenerator(const DeltaGenerator&) = delete;
  DeltaGenerator& operator=(const DeltaGenerator&) = delete;
  // Consumes `data` (the next bytes of the new file) and appends encoded ops to `out`.
  Status feed(ByteSpan data, Bytes& out);
  // The next `len` bytes of the new file are those of the base at the same offsets (the caller
  // knows, e.g. from chunk hashes): they become COPY ops without being read. What was fed
  // before is settled first as at a file's end. Needs a block boundary here; `len` whole
  // blocks, or reaching the base's end with its short last block.
  Status feed_same(uint64_t len, Bytes& out);
  // Flushes the tail and the END op. The generator is spent afterwards.
  Status finish(Bytes& out);

  // Statistics for benchmarks and logs.
  uint64_t literal_bytes() const noexcept { return literal_bytes_; }
  uint64_t matched_bytes() const noexcept { return matched_bytes_; }
  uint64_t false_alarms() const noexcept { return false_alarms_; }
  uint64_t strong_hashes() const noexcept { return strong_hashes_; }
  bool search_gave_up() const noexcept { return gave_up_; }

 private:
  void process(bool final, Bytes& out);
  void write_header(Bytes& out);
  int64_t try_match(const uint8_t* window, uint32_t len, uint32_t weak);
  // Counts a strong hash that matched nothing; past the cap the search gives up.
  void false_alarm();
  void emit_literal(Bytes& out);
  void add_copy(uint32_t idx, Bytes& out);
  void flush_copy(Bytes& out);
  void compact();

  // The search index over the signature, built on the first search that needs it: a file edited
  // in place (the common case) is matched block by block through the prediction and never needs it.
  const BlockIndex& index();
  // Checks the predicted block (`predict_`) at pos_, then the blocks after it each a block further
  // on (an overwrite in place spanning up to predict_reach() blocks), within `avail` buffered
  // bytes: true if one matched and was emitted; else the prediction is dropped and the rolling
  // search takes over at pos_.
  bool match_predicted(size_t avail, Bytes& out);
  size_t predict_reach() const noexcept;

  const Signature& sig_;
  std::optional<BlockIndex> index_;
  const uint32_t block_len_;
  // Block expected at pos_ (the one after the last match; block 0 at the start), or -1.
  int64_t predict_ = 0;
  Bytes buf_;
  size_t lit_start_ = 0;  // pending literal is buf_[lit_start_, pos_)
  size_t pos_ = 0;        // window start
  Rollsum sum_;
  bool have_sum_ = false;
  uint32_t run_first_ = 0;
  uint32_t run_len_ = 0;
  uint64_t total_in_ = 0;
  uint64_t total_out_ = 0;
  uint64_t literal_bytes_ = 0;
  uint64_t matched_bytes_ = 0;
  uint64_t false_alarms_ = 0;
  uint64_t strong_hashes_ = 0;
  bool gave_up_ = false;
  bool header_written_ = false;
  bool finished_ = false;
};

// The search uses AVX2 where the CPU has it (8 offsets per step), else portable code; both give
// identical deltas. Tests and benches can turn the SIMD path off to compare. Any thread.
void allow_simd_search(bool allow) noexcept;
bool simd_search_active() noexcept;

// Whole-buffer convenience (tests, benches).
Bytes make_delta(const Signature& sig, ByteSpan new_data);

}  // namespace syncd::delta
