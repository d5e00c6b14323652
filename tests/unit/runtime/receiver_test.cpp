// The receiver on a real socketpair, loop, root and index, its peer a scripted one: memory stays
// bounded however much a hostile peer announces (SECURITY.md §8 row 26); the resume point never
// passes a version it still lacks the bytes of.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <random>

#include "lib/codec/content_hash.h"
#include "lib/delta/delta.h"
#include "lib/delta/signature.h"
#include "lib/fs/root.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/receiver.h"
#include "lib/store/index.h"
#include "tests/support/tmpdir.h"
#include "tests/unit/runtime/loop_pair.h"

using namespace syncd;
using namespace syncd::runtime;

namespace {

std::string made_dir(const std::string& path) {
  ::mkdir(path.c_str(), 0755);
  return path;
}

// A receiver (node 1) with a fresh root and index on one end of a socketpair; each test plays
// the peer on the other end.
struct Rig {
  test::TempDir t{"recv"};
  Result<fs::Root> root = fs::Root::open(made_dir(t / "root"));
  Result<store::Index> idx = store::Index::open(t / "state");
  test::Pair p;
  std::unique_ptr<Connection> ours;
  std::unique_ptr<Receiver> rx;  // destroyed before the connection it uses
  std::optional<Error> closed;  // why the receiver's end closed (only where a test allows it)
  explicit Rig(bool may_close = false) {
    REQUIRE(root.ok());
    REQUIRE(idx.ok());
    ours = std::make_unique<Connection>(p.loop, UniqueFd(p.sv[0]), [this](protocol::Message m) { rx->on_message(std::move(m)); },
                                        [this, may_close](const Error& e) {
                                          if (!may_close) FAIL("receiver's end closed: " << e.message());
                                          closed = e;
                                        });
    rx = std::make_unique<Receiver>(p.loop, *root, *idx, *ours);
    REQUIRE(ours->start(test::hello(1)).ok());
  }
};

}  // namespace

TEST_SUITE("runtime.receiver") {
  TEST_CASE("a peer announcing more than the receiver holds is read no further: reading pauses at the bound") {
    Rig r;
    auto& p = r.p;
    auto& rx = r.rx;
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
    CHECK(rx->held_bytes() > ReceiverOptions{}.hold_bytes);
    CHECK(rx->held_bytes() <= ReceiverOptions{}.hold_bytes + kBody + (1u << 20));
    CHECK(peer.pending_out() > 0);  // the rest waits on the peer's side
  }

  TEST_CASE("a version answered base_mismatch holds the resume point until its bytes arrive") {
    Rig r;
    auto& p = r.p;
    auto& rx = r.rx;
    std::vector<protocol::Ack> acks;
    bool asked = false;
    Connection peer(p.loop, UniqueFd(p.sv[1]), [&](protocol::Message m) {
      if (std::holds_alternative<protocol::IndexRequest>(m)) asked = true;
      if (auto* a = std::get_if<protocol::Ack>(&m)) acks.push_back(*a);
    }, [](const Error&) {});
    const uint64_t peer_index = test::hello(2).index_id;
    REQUIRE(peer.start(test::hello(2)).ok());
    REQUIRE(p.run_until([&] { return asked; }));
    peer.send(protocol::IndexEnd{peer_index, 0});
    peer.flush();
    REQUIRE(p.run_until([&] { return acks.size() == 1; }));
    auto version = [](uint64_t seq, const std::string& path, const std::string& text, bool with_body) {
      protocol::FileVersion fv;
      fv.xfer_id = static_cast<uint32_t>(seq);
      fv.seq = seq;
      fv.meta.path = path;
      fv.meta.mode = 0644;
      fv.meta.size = text.size();
      fv.meta.mtime_sec = 1700000000;
      fv.meta.version = {{2, seq}};
      fv.meta.content_dot = {2, seq};
      fv.meta.meta_dot = {2, seq};
      fv.meta.sha256 = codec::content_hash(ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
      fv.body = with_body ? protocol::BodyKind::whole : protocol::BodyKind::none;
      fv.body_len = with_body ? text.size() : 0;
      return fv;
    };
    auto data = [](uint64_t seq, const std::string& text) {
      return protocol::Data{static_cast<uint32_t>(seq), 0, Bytes(text.begin(), text.end())};
    };
    // seq 1 announces content this node does not hold; seq 2 applies.
    peer.send(version(1, "a", "alpha", false));
    peer.send(version(2, "b", "beta", true));
    peer.send(data(2, "beta"));
    peer.flush();
    REQUIRE(p.run_until([&] { return acks.size() == 3 && rx->idle(); }));
    CHECK(acks[1].status == protocol::AckStatus::base_mismatch);
    CHECK(acks[2].status == protocol::AckStatus::applied);
    // A session ending now must bring seq 1 again: the point stays before it.
    auto point = r.idx->peer_seq(peer_index);
    REQUIRE(point.ok());
    CHECK(*point == 0);
    // The sender's answer, the whole file: the point moves on to everything reached.
    peer.send(version(1, "a", "alpha", true));
    peer.send(data(1, "alpha"));
    peer.flush();
    REQUIRE(p.run_until([&] { return acks.size() == 4 && rx->idle(); }));
    CHECK(acks[3].status == protocol::AckStatus::applied);
    point = r.idx->peer_seq(peer_index);
    REQUIRE(point.ok());
    CHECK(*point == 2);
  }

  TEST_CASE("SIG_REQUEST is answered with the signature of the file here - empty for a missing file or a symlink") {
    Rig r;
    std::string text(300000, '\0');
    std::mt19937_64 rng(9);
    for (auto& c : text) c = static_cast<char>(rng());
    test::write_file(r.t / "root/big", text);
    REQUIRE(::symlink("big", (r.t / "root/link").c_str()) == 0);
    std::map<uint32_t, std::vector<protocol::SignatureMsg>> answers;
    Connection peer(r.p.loop, UniqueFd(r.p.sv[1]), [&](protocol::Message m) {
      if (auto* s = std::get_if<protocol::SignatureMsg>(&m)) answers[s->req_id].push_back(*s);
    }, [](const Error&) {});
    REQUIRE(peer.start(test::hello(2)).ok());
    peer.send(protocol::SigRequest{1, "big", {}});
    peer.send(protocol::SigRequest{2, "missing", {}});
    peer.send(protocol::SigRequest{3, "link", {}});
    peer.flush();
    auto complete = [&](uint32_t id) {
      const auto& v = answers[id];
      uint64_t n = 0;
      for (const auto& s : v) n += s.chunk.size();
      return !v.empty() && n == v.front().total_len;
    };
    REQUIRE(r.p.run_until([&] { return complete(1) && complete(2) && complete(3); }));
    Bytes sig;
    for (const auto& s : answers[1]) {
      CHECK(s.offset == sig.size());
      sig.insert(sig.end(), s.chunk.begin(), s.chunk.end());
    }
    const ByteSpan bytes(reinterpret_cast<const uint8_t*>(text.data()), text.size());
    CHECK(answers[1].front().file_hash == codec::content_hash(bytes));  // the delta's base_hash
    auto parsed = delta::Signature::parse(sig);
    REQUIRE(parsed.ok());
    CHECK(parsed->header.block_len == delta::wire_block_len(text.size()));
    CHECK(parsed->header.file_len == text.size());
    // It describes these bytes: a delta of the same file against it is nearly all COPY.
    CHECK(delta::make_delta(*parsed, bytes).size() < 1000);
    for (uint32_t id : {2u, 3u}) {
      REQUIRE(answers[id].size() == 1);
      CHECK(answers[id].front().total_len == 0);
      CHECK(answers[id].front().chunk.empty());
    }
    CHECK(r.rx->idle());
  }

  TEST_CASE("SIG_REQUEST without the signature capability - or more of them unanswered than allowed - ends the session") {
    SUBCASE("not negotiated") {
      Rig r(true);
      Connection peer(r.p.loop, UniqueFd(r.p.sv[1]), [](protocol::Message) {}, [](const Error&) {});
      auto h = test::hello(2);
      h.capabilities &= ~uint64_t{protocol::kCapSignature};
      REQUIRE(peer.start(h).ok());
      peer.send(protocol::SigRequest{1, "big", {}});
      peer.flush();
      REQUIRE(r.p.run_until([&] { return r.closed.has_value(); }));
      CHECK(r.closed->message().find("without the signature capability") != std::string::npos);
    }
    SUBCASE("a flood") {
      Rig r(true);
      test::write_file(r.t / "root/big", std::string(100000, 'x'));
      Connection peer(r.p.loop, UniqueFd(r.p.sv[1]), [](protocol::Message) {}, [](const Error&) {});
      REQUIRE(peer.start(test::hello(2)).ok());
      // In one write: read and decoded in one turn of the loop, before any answer is made.
      for (uint32_t i = 1; i <= Receiver::kMaxSigRequests + 1; ++i) peer.send(protocol::SigRequest{i, "big", {}});
      peer.flush();
      REQUIRE(r.p.run_until([&] { return r.closed.has_value(); }));
      CHECK(r.closed->message().find("SIG_REQUESTs unanswered") != std::string::npos);
    }
  }
}

TEST_SUITE("runtime.receiver") {
  TEST_CASE("UNREADABLE without the unreadable capability ends the session") {
    Rig r(true);
    Connection peer(r.p.loop, UniqueFd(r.p.sv[1]), [](protocol::Message) {}, [](const Error&) {});
    auto h = test::hello(2);
    h.capabilities &= ~uint64_t{protocol::kCapUnreadable};
    REQUIRE(peer.start(h).ok());
    peer.send(protocol::Unreadable{"certs"});
    peer.flush();
    REQUIRE(r.p.run_until([&] { return r.closed.has_value(); }));
    CHECK(r.closed->message().find("without the unreadable capability") != std::string::npos);
  }
}
