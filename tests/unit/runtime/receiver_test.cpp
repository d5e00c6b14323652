// The receiver on a real socketpair, loop, root and index, its peer a hostile one: memory stays
// bounded however much the peer announces (SECURITY.md §8 row 26).
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <memory>
#include <random>

#include "lib/fs/root.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/receiver.h"
#include "lib/store/index.h"
#include "tests/support/tmpdir.h"
#include "tests/unit/runtime/loop_pair.h"

using namespace syncd;
using namespace syncd::runtime;

TEST_SUITE("runtime.receiver") {
  TEST_CASE("a peer announcing more than the receiver holds is read no further: reading pauses at the bound") {
    test::TempDir t("recv");
    ::mkdir((t / "root").c_str(), 0755);
    auto root = fs::Root::open(t / "root");
    REQUIRE(root.ok());
    auto idx = store::Index::open(t / "state");
    REQUIRE(idx.ok());
    test::Pair p;
    std::unique_ptr<Receiver> rx;
    Connection ours(p.loop, UniqueFd(p.sv[0]), [&](protocol::Message m) { rx->on_message(std::move(m)); },
                    [](const Error& e) { FAIL("receiver's end closed: " << e.message()); });
    rx = std::make_unique<Receiver>(p.loop, *root, *idx, ours);
    REQUIRE(ours.start(test::hello(1)).ok());
    Connection peer(p.loop, UniqueFd(p.sv[1]), [](protocol::Message) {}, [](const Error&) {});
    REQUIRE(peer.start(test::hello(2)).ok());
    // 100 bodies of 4 MiB announced, each with its first MiB, none finished: 400 MiB the
    // receiver would reserve and keep while waiting for the rest.
    constexpr uint64_t kBody = 4u << 20;
    Bytes mib(1u << 20);
    std::mt19937_64 rng(26);
    for (uint32_t i = 1; i <= 100; ++i) {
      protocol::FileVersion fv;
      fv.xfer_id = i;
      fv.seq = i;
      fv.meta.path = "f" + std::to_string(i);
      fv.meta.type = protocol::FileType::file;
      fv.meta.mode = 0644;
      fv.meta.size = kBody;
      fv.body = protocol::BodyKind::whole;
      fv.body_len = kBody;
      // Fresh random bytes for each: incompressible (zstd's window would match a repeated MiB).
      for (auto& b : mib) b = static_cast<uint8_t>(rng());
      peer.send(fv);
      peer.send(protocol::Data{i, 0, mib});
    }
    peer.flush();
    REQUIRE_MESSAGE(p.run_until([&] { return rx->reading_paused(); }, 10000), "held " << rx->held_bytes());
    // What a read already held may still be decoded: one more header at most.
    CHECK(rx->held_bytes() > Receiver::kHoldHigh);
    CHECK(rx->held_bytes() <= Receiver::kHoldHigh + kBody + (1u << 20));
    CHECK(peer.pending_out() > 0);  // the rest waits on the peer's side
    rx.reset();  // before the connection it uses
  }
}
