#include "lib/transport/known_hosts.h"

#include <doctest/doctest.h>

#include <fstream>

#include "lib/transport/keyfile.h"
#include "tests/support/tmpdir.h"

using namespace syncd;
using namespace syncd::transport;

namespace {

struct Key {
  std::string type;
  Bytes blob;
  std::string line;  // "type base64"
};

Key make_key(const test::TempDir& t, const std::string& name, const std::string& type = "ed25519") {
  REQUIRE(test::run("ssh-keygen -q -t " + type + " -N '' -C x -f " + t / name) == 0);
  std::ifstream f(t / (name + ".pub"));
  Key k;
  std::string b64;
  f >> k.type >> b64;
  auto blob = base64_decode(b64);
  REQUIRE(blob.ok());
  k.blob = *blob;
  k.line = k.type + " " + b64;
  return k;
}

}  // namespace

TEST_CASE("base64 round-trips and rejects garbage") {
  for (size_t n = 0; n < 40; ++n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 37 + n);
    auto back = base64_decode(base64_encode(b));
    REQUIRE(back.ok());
    CHECK(*back == b);
  }
  CHECK_FALSE(base64_decode("ab*d").ok());
  CHECK_FALSE(base64_decode("ab=c").ok());
}

TEST_CASE("known_hosts: plain - port form - wildcard - negation - mismatch - unknown") {
  test::TempDir t;
  const Key a = make_key(t, "a"), b = make_key(t, "b");
  test::write_file(t / "kh", "# comment\n"
                                 "node2,10.0.0.2 " + a.line + "\n"
                                 "[node3]:2222 " + a.line + "\n"
                                 "*.example.org,!bad.example.org " + b.line + "\n"
                                 "garbage line\n");
  KnownHosts kh;
  REQUIRE(kh.load(t / "kh").ok());
  CHECK(kh.check("node2", 22, a.type, a.blob).verdict == KnownHosts::Verdict::match);
  CHECK(kh.check("NODE2", 22, a.type, a.blob).verdict == KnownHosts::Verdict::match);
  CHECK(kh.check("10.0.0.2", 22, a.type, a.blob).verdict == KnownHosts::Verdict::match);
  auto mm = kh.check("node2", 22, b.type, b.blob);
  CHECK(mm.verdict == KnownHosts::Verdict::mismatch);
  REQUIRE(mm.entry != nullptr);
  CHECK(mm.entry->line == 2);
  CHECK(mm.entry->file == t / "kh");
  CHECK(kh.check("node3", 2222, a.type, a.blob).verdict == KnownHosts::Verdict::match);
  CHECK(kh.check("node3", 22, a.type, a.blob).verdict == KnownHosts::Verdict::unknown);
  CHECK(kh.check("ca.example.org", 22, b.type, b.blob).verdict == KnownHosts::Verdict::match);
  CHECK(kh.check("bad.example.org", 22, b.type, b.blob).verdict == KnownHosts::Verdict::unknown);
  CHECK(kh.key_types_for("node2", 22) == std::vector<std::string>{a.type});
  KnownHosts none;
  CHECK(none.load(t / "missing").ok());
}

TEST_CASE("known_hosts: hashed entries as ssh-keygen -H writes them - and @revoked") {
  test::TempDir t;
  const Key a = make_key(t, "a"), b = make_key(t, "b");
  test::write_file(t / "kh", "node2 " + a.line + "\n[node4]:2200 " + a.line + "\n");
  REQUIRE(test::run("ssh-keygen -q -H -f " + t / "kh" + " >/dev/null 2>&1") == 0);
  REQUIRE(test::read_file(t / "kh").find("node2") == std::string::npos);  // really hashed
  test::write_file(t / "kh2", "@revoked * " + b.line + "\n");
  KnownHosts kh;
  REQUIRE(kh.load(t / "kh").ok());
  REQUIRE(kh.load(t / "kh2").ok());
  CHECK(kh.check("node2", 22, a.type, a.blob).verdict == KnownHosts::Verdict::match);
  CHECK(kh.check("node4", 2200, a.type, a.blob).verdict == KnownHosts::Verdict::match);
  CHECK(kh.check("node5", 22, a.type, a.blob).verdict == KnownHosts::Verdict::unknown);
  CHECK(kh.check("node2", 22, b.type, b.blob).verdict == KnownHosts::Verdict::revoked);
}

TEST_CASE("@cert-authority lines say which hosts a CA vouches for - and never match a key as a host key") {
  test::TempDir t;
  const Key ca = make_key(t, "ca"), other = make_key(t, "other");
  std::ofstream(t / "kh") << "@cert-authority *.example.org,!bad.example.org " << ca.line << "\n"
                          << "node2 " << other.line << "\n";
  KnownHosts kh;
  REQUIRE(kh.load(t / "kh").ok());
  const auto* hit = kh.cert_authority_for("ca1.example.org", 22);
  REQUIRE(hit != nullptr);
  CHECK(hit->line == 1);
  CHECK(hit->key_blob == ca.blob);
  CHECK(kh.cert_authority_for("bad.example.org", 22) == nullptr);
  CHECK(kh.cert_authority_for("node2", 22) == nullptr);
  // The CA's key is no host key of the hosts it vouches for.
  CHECK(kh.check("ca1.example.org", 22, ca.type, ca.blob).verdict == KnownHosts::Verdict::unknown);
  CHECK(kh.check("node2", 22, other.type, other.blob).verdict == KnownHosts::Verdict::match);
}

TEST_CASE("accept-new appends a line that then matches") {
  test::TempDir t;
  const Key a = make_key(t, "a");
  REQUIRE(KnownHosts::append(t / "kh", "node9", 2022, a.type, a.blob).ok());
  KnownHosts kh;
  REQUIRE(kh.load(t / "kh").ok());
  CHECK(kh.check("node9", 2022, a.type, a.blob).verdict == KnownHosts::Verdict::match);
  CHECK(test::read_file(t / "kh").rfind("[node9]:2022 ssh-ed25519 ", 0) == 0);
  CHECK(fingerprint_sha256(a.blob).rfind("SHA256:", 0) == 0);
}

TEST_CASE("private keys are recognised without decrypting them") {
  test::TempDir t;
  (void)make_key(t, "ed");
  (void)make_key(t, "rsa", "rsa");
  (void)make_key(t, "ec", "ecdsa");
  REQUIRE(test::run("ssh-keygen -q -t ed25519 -N 'secret pass' -C x -f " + t / "enc") == 0);
  REQUIRE(test::run("ssh-keygen -q -t rsa -m PEM -N '' -C x -f " + t / "pem") == 0);
  auto ed = inspect_private_key(t / "ed");
  REQUIRE(ed.ok());
  CHECK(ed->type == "ssh-ed25519");
  CHECK_FALSE(ed->encrypted);
  auto rsa = inspect_private_key(t / "rsa");
  REQUIRE(rsa.ok());
  CHECK(rsa->is_rsa());
  auto ec = inspect_private_key(t / "ec");
  REQUIRE(ec.ok());
  CHECK(ec->type == "ecdsa-sha2-nistp256");
  auto enc = inspect_private_key(t / "enc");
  REQUIRE(enc.ok());
  CHECK(enc->encrypted);
  auto pem = inspect_private_key(t / "pem");
  REQUIRE(pem.ok());
  CHECK(pem->is_rsa());
  CHECK_FALSE(inspect_private_key(t / "missing").ok());
}
