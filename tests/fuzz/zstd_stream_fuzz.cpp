// Fuzz target: the zstd stream layer feeding the frame decoder, as a connection's receive path
// does, with and without the `frames` capability. Checks the bomb bound on every input.
#include "lib/codec/zstd_stream.h"
#include "protocol/frame.h"
#include "tests/fuzz/fuzz_target.h"

using namespace syncd;

namespace {

// One decode as a connection does it, with or without the `frames` capability.
void decode(const uint8_t* data, size_t size, bool frames_allowed) {
  codec::ZstdDecoder dec;
  dec.allow_frames(frames_allowed);
  protocol::FrameDecoder frames;
  uint64_t decoded = 0;
  (void)dec.feed(ByteSpan(data, size), [&](ByteSpan b) -> Status {
    decoded += b.size();
    if (b.size() > codec::kChunk) __builtin_trap();
    SYNCD_TRY(frames.feed(b));
    for (;;) {
      SYNCD_TRY_ASSIGN(m, frames.next());
      if (!m) return {};
    }
  });
  if (decoded > codec::kMaxRatio * size + codec::kRatioSlack) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  decode(data, size, false);
  decode(data, size, true);
  return 0;
}

std::vector<Bytes> fuzz_seeds() {
  std::vector<Bytes> seeds;
  for (int variant = 0; variant < 4; ++variant) {
    codec::ZstdEncoder enc;
    Bytes plain, wire;
    for (int i = 0; i <= variant; ++i) {
      (void)protocol::encode(protocol::Ping{static_cast<uint64_t>(i), 1}, plain);
      (void)protocol::encode(protocol::Data{1, 0, Bytes(100 * (variant + 1), static_cast<uint8_t>(i))}, plain);
    }
    (void)enc.write(plain, wire);
    (void)enc.flush(wire);
    seeds.push_back(wire);
  }
  // Several frames: compressed, raw (incompressible DATA), compressed again.
  codec::ZstdEncoder enc;
  Bytes plain, wire;
  (void)protocol::encode(protocol::Ping{1, 1}, plain);
  (void)enc.write(plain, wire);
  plain.clear();
  Bytes noise(3000);
  uint32_t x = 12345;
  for (auto& b : noise) b = static_cast<uint8_t>((x = x * 1103515245 + 12345) >> 24);
  (void)protocol::encode(protocol::Data{1, 0, noise}, plain);
  (void)enc.write_raw(plain, wire);
  plain.clear();
  (void)protocol::encode(protocol::Ping{2, 2}, plain);
  (void)enc.write(plain, wire);
  (void)enc.flush(wire);
  seeds.push_back(wire);
  return seeds;
}
