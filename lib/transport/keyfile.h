// File: lib/transport/keyfile.h
//
// What a private key file is, without decrypting it: its type (from the OpenSSH container's
// public part, or the PEM label) and whether a passphrase protects it. Decides the transport
// (Debian 12's libssh2 1.10 signs RSA user auth only with SHA-1 "ssh-rsa", which OpenSSH >= 8.8
// refuses, so RSA keys go through the OpenSSH client) and turns "auth failed" into a clear reason.
// Thread affinity: pure; reads the file (blocking).
#pragma once

#include <string>
#include <vector>

#include "lib/base/result.h"

namespace syncd::transport {

struct KeyInfo {
  std::string type;        // "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", ... or "unknown"
  bool encrypted = false;  // needs a passphrase
  bool is_rsa() const { return type == "ssh-rsa"; }
};

Result<KeyInfo> inspect_private_key(const std::string& path);

// ~/.ssh/id_* that exist, in OpenSSH's default order.
std::vector<std::string> default_identities();

}  // namespace syncd::transport
