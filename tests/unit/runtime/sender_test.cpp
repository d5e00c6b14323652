// The sender on a real socketpair, loop, root, index and inotify, its peer a scripted one:
// rsync's signature round trip (protocol/SPEC.md §5.2). A peer holding another copy of a file
// gets a probe without bytes, its base_mismatch brings a SIG_REQUEST, and its SIGNATURE a delta
// against that copy; a SIGNATURE that answers nothing, comes out of order or does not parse ends
// the session (SECURITY.md §2), and nothing is sent for it.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <random>

#include "lib/codec/content_hash.h"
#include "lib/delta/delta.h"
#include "lib/delta/patch.h"
#include "lib/delta/signature.h"
#include "lib/fs/root.h"
#include "lib/runtime/connection.h"
#include "lib/runtime/sender.h"
#include "lib/store/index.h"
#include "tests/support/process.h"
#include "tests/support/tmpdir.h"
#include "tests/unit/runtime/loop_pair.h"

using namespace syncd;
using namespace syncd::runtime;

namespace {

ByteSpan span(const std::string& s) { return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

std::string random_text(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// A sender (node 1) watching a root that holds `big` (300,000 random bytes), and its peer
// (node 2) on the other end of a socketpair, recording what it is sent.
struct Rig {
  test::TempDir t{"send"};
  std::string content = random_text(300000, 5);
  Result<fs::Root> root = [this] {
    ::mkdir((t / "root").c_str(), 0755);
    test::write_file(t / "root/big", content);
    return fs::Root::open(t / "root");
  }();
  Result<store::Index> idx = store::Index::open(t / "state");
  test::Pair p;
  std::optional<Error> closed;  // why the sender's end closed
  std::unique_ptr<Connection> ours;
  std::unique_ptr<Sender> tx;  // destroyed before the connection it uses
  std::vector<protocol::Message> got;
  bool peer_closed = false;
  std::unique_ptr<Connection> peer;
  explicit Rig(uint64_t peer_caps = protocol::kAllCapabilities, SenderOptions so = {}) {
    REQUIRE(root.ok());
    REQUIRE(idx.ok());
    ours = std::make_unique<Connection>(p.loop, UniqueFd(p.sv[0]), [this](protocol::Message m) { tx->on_message(m); },
                                        [this](const Error& e) { closed = e; });
    tx = std::make_unique<Sender>(p.loop, *root, *idx, watch::Excludes(), ours.get(), std::move(so));
    REQUIRE(tx->start().ok());
    REQUIRE(ours->start(test::hello(1)).ok());
    peer = std::make_unique<Connection>(p.loop, UniqueFd(p.sv[1]), [this](protocol::Message m) { got.push_back(std::move(m)); },
                                        [this](const Error&) { peer_closed = true; });
    auto h = test::hello(2);
    h.capabilities = peer_caps;
    REQUIRE(peer->start(h).ok());
  }
  ~Rig() {
    tx.reset();
    peer.reset();
  }
  template <typename T>
  std::vector<T> all() const {
    std::vector<T> v;
    for (const auto& m : got) {
      if (const auto* x = std::get_if<T>(&m)) v.push_back(*x);
    }
    return v;
  }
  // The peer holds another `big` (HAVE, another size) and asks for everything: the sender probes
  // it without bytes; the peer answers base_mismatch, and the sender asks for its signature.
  protocol::SigRequest probe_and_ask() {
    peer->send(protocol::Have{"big", 1000, 1600000000, 0});
    peer->send(protocol::IndexRequest{0, 0});
    peer->flush();
    REQUIRE(p.run_until([&] { return !all<protocol::IndexEnd>().empty(); }));
    std::optional<protocol::FileVersion> probe;
    for (const auto& fv : all<protocol::FileVersion>()) {
      if (fv.meta.path == "big") probe = fv;
    }
    REQUIRE(probe);
    CHECK(probe->body == protocol::BodyKind::none);
    CHECK(all<protocol::Data>().empty());  // none of its bytes
    peer->send(protocol::Ack{probe->xfer_id, protocol::AckStatus::base_mismatch, probe->seq, "content not held"});
    peer->flush();
    REQUIRE(p.run_until([&] { return !all<protocol::SigRequest>().empty(); }));
    const auto q = all<protocol::SigRequest>().front();
    CHECK(q.path == "big");
    CHECK_FALSE(tx->idle());  // waiting for the answer
    return q;
  }
  // The sender closed the session for `why`; the peer saw it end.
  void ended(const std::string& why) {
    REQUIRE(p.run_until([&] { return closed.has_value() && peer_closed; }));
    CHECK_MESSAGE(closed->message().find(why) != std::string::npos, closed->message());
  }
};

}  // namespace

TEST_SUITE("runtime.sender") {
  TEST_CASE("a peer's own copy becomes the delta base: probe, base_mismatch, SIG_REQUEST, SIGNATURE, delta") {
    test::require_root();
    Rig r;
    const auto q = r.probe_and_ask();
    // The peer's older copy: a byte changed and the tail missing.
    std::string theirs = r.content.substr(0, 290000);
    theirs[150000] = static_cast<char>(theirs[150000] ^ 1);
    const Bytes sig = delta::sign(span(theirs), delta::wire_block_len(theirs.size()), codec::HashKey::random()).serialize();
    const auto theirs_hash = codec::content_hash(span(theirs));
    const size_t half = sig.size() / 2;
    r.peer->send(protocol::SignatureMsg{q.req_id, "big", theirs_hash, sig.size(), 0, Bytes(sig.begin(), sig.begin() + static_cast<std::ptrdiff_t>(half))});
    r.peer->send(protocol::SignatureMsg{q.req_id, "big", theirs_hash, sig.size(), half, Bytes(sig.begin() + static_cast<std::ptrdiff_t>(half), sig.end())});
    r.peer->flush();
    std::optional<protocol::FileVersion> fv;
    Bytes body;
    REQUIRE(r.p.run_until([&] {
      for (const auto& v : r.all<protocol::FileVersion>()) {
        if (v.meta.path == "big" && v.body == protocol::BodyKind::delta) fv = v;
      }
      body.clear();
      for (const auto& d : r.all<protocol::Delta>()) body.insert(body.end(), d.chunk.begin(), d.chunk.end());
      return fv && body.size() == fv->body_len;
    }));
    for (const auto& d : r.all<protocol::Delta>()) CHECK(d.base_hash == theirs_hash);
    CHECK(fv->body_len < 40000);  // the 10,000-byte tail and one block, not 300,000 bytes
    CHECK(r.all<protocol::Data>().empty());
    // The delta applied to the peer's copy gives the file.
    auto out = delta::apply_delta(span(theirs), body, fv->meta.size);
    REQUIRE(out.ok());
    CHECK(std::string(out->begin(), out->end()) == r.content);
    CHECK_FALSE(r.closed.has_value());
  }

  TEST_CASE("a peer that answers nothing while versions await it is reported once per quiet spell - and again when it answers") {
    // A peer's syncd that hangs while SSH stays up ends no session without rsync.timeout: the
    // owner logs this callback under the peer's name.
    SenderOptions so;
    so.quiet_warn_ms = 300;
    std::vector<std::pair<uint64_t, size_t>> said;
    so.on_quiet = [&](uint64_t ms, size_t awaiting) { said.emplace_back(ms, awaiting); };
    Rig r(protocol::kAllCapabilities, so);
    r.peer->send(protocol::IndexRequest{0, 0});
    r.peer->flush();
    REQUIRE(r.p.run_until([&] { return !r.all<protocol::IndexEnd>().empty(); }));
    const auto sent = r.all<protocol::FileVersion>();
    REQUIRE_FALSE(sent.empty());
    CHECK(r.tx->awaiting_ack() == sent.size());
    REQUIRE(r.p.run_until([&] { return !said.empty(); }));
    CHECK(said[0].first >= 300);
    CHECK(said[0].second == sent.size());
    // Once per spell: a second mark passes without another report.
    REQUIRE(r.p.run_until([&] { return r.tx->unanswered_ms() >= 700; }));
    CHECK(said.size() == 1);
    for (const auto& fv : sent) r.peer->send(protocol::Ack{fv.xfer_id, protocol::AckStatus::applied, fv.seq, ""});
    r.peer->flush();
    REQUIRE(r.p.run_until([&] { return said.size() == 2; }));
    CHECK(said[1].first == 0);  // it answers again
    REQUIRE(r.p.run_until([&] { return r.tx->awaiting_ack() == 0; }));
    CHECK(r.tx->unanswered_ms() == 0);
  }

  TEST_CASE("a peer with nothing to sign gets the file whole") {
    test::require_root();
    Rig r;
    const auto q = r.probe_and_ask();
    r.peer->send(protocol::SignatureMsg{q.req_id, "big", {}, 0, 0, {}});
    r.peer->flush();
    uint64_t whole = 0;
    REQUIRE(r.p.run_until([&] {
      whole = 0;
      for (const auto& d : r.all<protocol::Data>()) whole += d.chunk.size();
      return whole == r.content.size();
    }));
    CHECK(r.all<protocol::Delta>().empty());
  }

  TEST_CASE("a peer without the signature capability is never asked: its other copy gets the file whole") {
    test::require_root();
    Rig r(protocol::kAllCapabilities & ~uint64_t{protocol::kCapSignature});
    r.peer->send(protocol::Have{"big", 1000, 1600000000, 0});
    r.peer->send(protocol::IndexRequest{0, 0});
    r.peer->flush();
    uint64_t whole = 0;
    REQUIRE(r.p.run_until([&] {
      whole = 0;
      for (const auto& d : r.all<protocol::Data>()) whole += d.chunk.size();
      return whole == r.content.size() && !r.all<protocol::IndexEnd>().empty();
    }));
    CHECK(r.all<protocol::SigRequest>().empty());
    CHECK(r.all<protocol::Delta>().empty());
    CHECK_FALSE(r.closed.has_value());
  }

  TEST_CASE("a SIGNATURE answering no SIG_REQUEST ends the session") {
    test::require_root();
    Rig r;
    r.peer->send(protocol::SignatureMsg{77, "big", {}, 0, 0, {}});
    r.peer->flush();
    r.ended("answering no SIG_REQUEST");
  }

  TEST_CASE("SIGNATURE chunks out of order end the session") {
    test::require_root();
    Rig r;
    const auto q = r.probe_and_ask();
    r.peer->send(protocol::SignatureMsg{q.req_id, "big", {}, 100, 40, Bytes(10, 1)});
    r.peer->flush();
    r.ended("out of order");
    CHECK(r.all<protocol::Delta>().empty());
  }

  TEST_CASE("a SIGNATURE whose header does not parse ends the session - nothing is sent against it") {
    test::require_root();
    Rig r;
    const auto q = r.probe_and_ask();
    // A valid signature of an empty file with its block_len zeroed (SECURITY.md §2: fatal).
    Bytes bad = delta::sign({}, delta::kMinWireBlock, codec::HashKey::random()).serialize();
    REQUIRE(delta::Signature::parse(bad).ok());
    std::fill(bad.begin() + 4, bad.begin() + 8, uint8_t{0});
    REQUIRE_FALSE(delta::Signature::parse(bad).ok());
    r.peer->send(protocol::SignatureMsg{q.req_id, "big", {}, bad.size(), 0, bad});
    r.peer->flush();
    r.ended("SIGNATURE of \"big\"");
    CHECK(r.all<protocol::Delta>().empty());
    CHECK(r.all<protocol::Data>().empty());
  }
}
