// Fuzz target: the patch applier with adversarial deltas against a small base. Input layout:
// [u8 base_len/16][u32 declared][base bytes][delta bytes].
#include "lib/delta/delta.h"
#include "lib/delta/patch.h"
#include "tests/fuzz/fuzz_target.h"

using namespace syncd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const size_t base_len = std::min<size_t>(size_t{data[0]} * 16, size - 5);
  const uint64_t declared = load_le(data + 1, 4) % (1u << 20);
  ByteSpan base(data + 5, base_len);
  ByteSpan delta(data + 5 + base_len, size - 5 - base_len);
  delta::MemoryBaseReader br(base);
  delta::BytesSink sink;
  delta::Patcher p(br, sink, declared);
  auto st = p.feed(delta);
  if (sink.out.size() > declared) __builtin_trap();
  if (st.ok()) {
    auto d = p.finish();
    if (d.ok() && sink.out.size() != declared) __builtin_trap();
  }
  return 0;
}

std::vector<Bytes> fuzz_seeds() {
  std::vector<Bytes> seeds;
  auto key = codec::HashKey::from_seed({});
  for (int v = 0; v < 4; ++v) {
    Bytes base(160 + v * 320);
    for (size_t i = 0; i < base.size(); ++i) base[i] = static_cast<uint8_t>(i * 7 + v);
    Bytes target = base;
    target.insert(target.begin() + 10, static_cast<size_t>(v + 1), 0xEE);
    auto sig = delta::sign(base, 64, key);
    Bytes d = delta::make_delta(sig, target);
    Bytes in;
    in.push_back(static_cast<uint8_t>(base.size() / 16));
    ByteWriter(in).u32(static_cast<uint32_t>(target.size()));
    in.insert(in.end(), base.begin(), base.end());
    in.insert(in.end(), d.begin(), d.end());
    seeds.push_back(in);
  }
  return seeds;
}
