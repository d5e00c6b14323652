// Fuzz target: the frame decoder (protocol/frame.h), fed in two pieces split at the first byte's
// value, so partial-header paths are exercised too.
#include "protocol/frame.h"
#include "protocol/limits.h"
#include "tests/fuzz/fuzz_target.h"

using namespace syncd;
using namespace syncd::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t split = std::min<size_t>(data[0], size - 1);
  FrameDecoder d;
  ByteSpan all(data + 1, size - 1);
  for (ByteSpan part : {all.first(split), all.subspan(split)}) {
    if (!d.feed(part).ok()) return 0;
    for (;;) {
      auto m = d.next();
      if (!m.ok() || !m->has_value()) break;
      // Whatever decodes must re-encode: decoding never accepts what encoding refuses.
      auto again = encode(**m);
      if (!again.ok()) __builtin_trap();
    }
  }
  return 0;
}

std::vector<Bytes> fuzz_seeds() {
  FileMeta m;
  m.path = "certs/a.pem";
  m.size = 3;
  m.mode = 0644;
  m.version = {{1, 2}};
  m.xattrs = {{"user.x", {1}}};
  FileMeta t = m;
  t.deleted = true;
  std::vector<Message> msgs = {
      Hello{kHelloMagic, 1, 1, 7, "n1", "c", 9, kAllCapabilities}, ErrorMsg{1, "e"}, Ping{1, 2},
      FileVersion{1, 2, m, BodyKind::whole, 3}, Data{1, 0, Bytes(3, 'x')},
      Delta{1, {}, 0, Bytes(4, 'd')}, SigRequest{1, "a", {}}, SignatureMsg{1, "a", {}, 4, 0, Bytes(4, 's')},
      Remove{3, t}, Rename{4, t, [&] { FileMeta n = m; n.path = "b"; return n; }()},
      Ack{1, AckStatus::applied, 2, "ok"}, IndexSummary{1, 2, 3, 4}, IndexRequest{1, 2},
      IndexUpdate{5, m}, IndexEnd{1, 5}, RootMeta{0750, 1, 2, "u", "g", 3, 4},
      Have{"a", 3, 4, 5}, Unreadable{"d/e"}};
  std::vector<Bytes> seeds;
  Bytes all{5};
  for (const auto& msg : msgs) {
    Bytes one{3};
    (void)encode(msg, one);
    seeds.push_back(one);
    (void)encode(msg, all);
  }
  seeds.push_back(all);
  return seeds;
}
