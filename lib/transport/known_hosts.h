// File: lib/transport/known_hosts.h
//
// OpenSSH known_hosts files, read by syncd itself (SECURITY.md §3.4: not libssh2's parser): plain
// and hashed (|1|salt|hmac) host fields, comma lists, wildcards (* ?), negation (!), [host]:port,
// @revoked lines (a listed key is refused) and @cert-authority lines (kept only to say that a
// host's key is vouched for by a CA, which needs the OpenSSH client: libssh2 has no certificates).
// A host is looked up by the name OpenSSH would use: "host" on port 22, "[host]:port" otherwise.
// Thread affinity: plain values; reading files blocks (call off the loop thread).
//
//   KnownHosts kh;  SYNCD_TRY(kh.load("/root/.ssh/known_hosts"));
//   auto v = kh.check("node2", 22, key_type, key_blob);   // match / mismatch / unknown / revoked
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/bytes.h"
#include "lib/base/result.h"

namespace syncd::transport {

Result<Bytes> base64_decode(std::string_view in);
std::string base64_encode(ByteSpan in);

// "node2" on port 22, "[node2]:2222" otherwise (OpenSSH's known_hosts name).
std::string known_hosts_name(const std::string& host, int port);

// SHA256:... as ssh-keygen -l prints it.
std::string fingerprint_sha256(ByteSpan key_blob);

struct HostKeyEntry {
  std::string file;
  int line = 0;
  std::string key_type;  // "ssh-ed25519", ...
  Bytes key_blob;        // the decoded public key
  bool revoked = false;
};

class KnownHosts {
 public:
  // A missing file is not an error (OpenSSH treats it as empty).
  Status load(const std::string& path);

  enum class Verdict { match, mismatch, unknown, revoked };
  struct Result {
    Verdict verdict = Verdict::unknown;
    const HostKeyEntry* entry = nullptr;  // the matching, or (mismatch) the first listed, entry
  };
  Result check(const std::string& host, int port, std::string_view key_type, ByteSpan key_blob) const;
  // Key types listed for the host (to prefer them in the key exchange, as OpenSSH does).
  std::vector<std::string> key_types_for(const std::string& host, int port) const;
  // The first @cert-authority line whose hosts match: the host presents a certificate signed
  // by that CA (verified by the OpenSSH client only). Null when none.
  const HostKeyEntry* cert_authority_for(const std::string& host, int port) const;

  // Appends "name type base64" to `path` (StrictHostKeyChecking=accept-new).
  static Status append(const std::string& path, const std::string& host, int port,
                       std::string_view key_type, ByteSpan key_blob);

 private:
  struct Line {
    HostKeyEntry entry;
    std::string hosts;  // the host field as written
  };
  static bool host_matches(const std::string& field, const std::string& name);
  std::vector<Line> lines_;
  std::vector<Line> authorities_;  // @cert-authority lines
};

}  // namespace syncd::transport
