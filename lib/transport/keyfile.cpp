#include "lib/transport/keyfile.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "lib/base/bytes.h"
#include "lib/transport/known_hosts.h"

namespace syncd::transport {
namespace {

// SSH wire string: u32 big-endian length + bytes.
bool take_string(ByteSpan& in, std::string& out) {
  if (in.size() < 4) return false;
  const uint32_t n = (uint32_t{in[0]} << 24) | (uint32_t{in[1]} << 16) | (uint32_t{in[2]} << 8) | in[3];
  if (in.size() - 4 < n) return false;
  out.assign(reinterpret_cast<const char*>(in.data() + 4), n);
  in = in.subspan(4 + n);
  return true;
}

}  // namespace

Result<KeyInfo> inspect_private_key(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Error::from_errno("read identity " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  KeyInfo k;
  k.type = "unknown";
  if (text.find("-----BEGIN OPENSSH PRIVATE KEY-----") != std::string::npos) {
    const size_t a = text.find('\n') + 1;
    const size_t b = text.find("-----END");
    std::string b64;
    for (size_t i = a; i < b; ++i) {
      if (!std::isspace(static_cast<unsigned char>(text[i]))) b64 += text[i];
    }
    SYNCD_TRY_ASSIGN(raw, base64_decode(b64));
    static constexpr std::string_view kMagic("openssh-key-v1\0", 15);
    if (raw.size() < kMagic.size() || std::string_view(reinterpret_cast<const char*>(raw.data()), kMagic.size()) != kMagic) {
      return Error::make(errc::corrupt, path + ": not an OpenSSH private key");
    }
    ByteSpan in(raw.data() + kMagic.size(), raw.size() - kMagic.size());
    std::string cipher, kdf, kdfopts, pub;
    if (!take_string(in, cipher) || !take_string(in, kdf) || !take_string(in, kdfopts) || in.size() < 4) {
      return Error::make(errc::corrupt, path + ": truncated OpenSSH private key");
    }
    in = in.subspan(4);  // number of keys
    if (!take_string(in, pub)) return Error::make(errc::corrupt, path + ": truncated OpenSSH private key");
    ByteSpan p(reinterpret_cast<const uint8_t*>(pub.data()), pub.size());
    std::string type;
    if (take_string(p, type)) k.type = type;
    k.encrypted = cipher != "none";
    return k;
  }
  if (text.find("BEGIN RSA PRIVATE KEY") != std::string::npos) k.type = "ssh-rsa";
  if (text.find("BEGIN EC PRIVATE KEY") != std::string::npos) k.type = "ecdsa";
  if (text.find("BEGIN ENCRYPTED PRIVATE KEY") != std::string::npos || text.find("ENCRYPTED") != std::string::npos) {
    k.encrypted = true;
  }
  return k;
}

std::vector<std::string> default_identities() {
  std::string home;
  if (const char* h = std::getenv("HOME")) home = h;
  if (home.empty()) {
    if (const passwd* pw = ::getpwuid(::getuid())) home = pw->pw_dir;
  }
  std::vector<std::string> out;
  for (const char* n : {"id_rsa", "id_ecdsa", "id_ed25519"}) {
    const std::string p = home + "/.ssh/" + n;
    if (::access(p.c_str(), R_OK) == 0) out.push_back(p);
  }
  return out;
}

}  // namespace syncd::transport
