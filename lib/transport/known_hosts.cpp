#include "lib/transport/known_hosts.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "lib/base/unique_fd.h"

namespace syncd::transport {
namespace {

constexpr std::string_view kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Glob as ssh's match_pattern: '*' any run, '?' one character.
bool glob(std::string_view p, std::string_view s) {
  size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
      ++pi;
      ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// |1|base64(salt)|base64(HMAC-SHA1(salt, name))
bool hashed_matches(std::string_view field, const std::string& name) {
  const size_t bar = field.find('|', 3);
  if (bar == std::string_view::npos) return false;
  auto salt = base64_decode(field.substr(3, bar - 3));
  auto want = base64_decode(field.substr(bar + 1));
  if (!salt.ok() || !want.ok() || want->size() != 20) return false;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha1(), salt->data(), static_cast<int>(salt->size()),
            reinterpret_cast<const unsigned char*>(name.data()), name.size(), mac, &len) || len != 20) {
    return false;
  }
  return CRYPTO_memcmp(mac, want->data(), 20) == 0;
}

}  // namespace

Result<Bytes> base64_decode(std::string_view in) {
  Bytes out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : in) {
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad) return Error::make(errc::corrupt, "base64: data after padding");
    const size_t v = kB64.find(c);
    if (v == std::string_view::npos) return Error::make(errc::corrupt, "base64: bad character");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
      acc &= (1u << bits) - 1;
    }
  }
  if (pad > 2 || bits >= 6) return Error::make(errc::corrupt, "base64: bad length");
  return out;
}

std::string base64_encode(ByteSpan in) {
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    for (int k = 18; k >= 0; k -= 6) out += kB64[(v >> k) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint32_t{in[i]} << 16;
    if (i + 1 < in.size()) v |= uint32_t{in[i + 1]} << 8;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string known_hosts_name(const std::string& host, int port) {
  return port == 22 ? lower(host) : "[" + lower(host) + "]:" + std::to_string(port);
}

std::string fingerprint_sha256(ByteSpan key_blob) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(key_blob.data(), key_blob.size(), md, &n, EVP_sha256(), nullptr);
  std::string b = base64_encode(ByteSpan(md, n));
  while (!b.empty() && b.back() == '=') b.pop_back();
  return "SHA256:" + b;
}

Status KnownHosts::load(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    if (errno == ENOENT) return {};
    return Error::from_errno("read " + path);
  }
  std::string text;
  int lineno = 0;
  while (std::getline(f, text)) {
    ++lineno;
    std::istringstream ss(text);
    std::string first;
    if (!(ss >> first) || first[0] == '#') continue;
    Line l;
    l.entry.file = path;
    l.entry.line = lineno;
    bool authority = false;
    if (first[0] == '@') {
      authority = first == "@cert-authority";
      if (!authority && first != "@revoked") continue;  // unknown marker: ignore the line, as ssh does
      l.entry.revoked = !authority;
      if (!(ss >> first)) continue;
    }
    l.hosts = first;
    std::string b64;
    if (!(ss >> l.entry.key_type >> b64)) continue;
    auto blob = base64_decode(b64);
    if (!blob.ok()) continue;  // a damaged line matches nothing
    l.entry.key_blob = std::move(*blob);
    (authority ? authorities_ : lines_).push_back(std::move(l));
  }
  return {};
}

bool KnownHosts::host_matches(const std::string& field, const std::string& name) {
  if (field.rfind("|1|", 0) == 0) return hashed_matches(field, name);
  bool matched = false;
  std::istringstream ss(field);
  std::string pat;
  while (std::getline(ss, pat, ',')) {
    if (pat.empty()) continue;
    const bool neg = pat[0] == '!';
    if (glob(lower(neg ? pat.substr(1) : pat), name)) {
      if (neg) return false;  // a negated match excludes the host outright
      matched = true;
    }
  }
  return matched;
}

KnownHosts::Result KnownHosts::check(const std::string& host, int port, std::string_view key_type,
                                     ByteSpan key_blob) const {
  const std::string name = known_hosts_name(host, port);
  Result r;
  for (const auto& l : lines_) {
    if (!host_matches(l.hosts, name)) continue;
    const bool same = l.entry.key_type == key_type && l.entry.key_blob.size() == key_blob.size() &&
                      CRYPTO_memcmp(l.entry.key_blob.data(), key_blob.data(), key_blob.size()) == 0;
    if (l.entry.revoked) {
      if (same) return {Verdict::revoked, &l.entry};
      continue;
    }
    if (same) {
      if (r.verdict != Verdict::revoked) r = {Verdict::match, &l.entry};
    } else if (r.verdict == Verdict::unknown) {
      r = {Verdict::mismatch, &l.entry};
    }
  }
  return r;
}

const HostKeyEntry* KnownHosts::cert_authority_for(const std::string& host, int port) const {
  const std::string name = known_hosts_name(host, port);
  for (const auto& l : authorities_) {
    if (host_matches(l.hosts, name)) return &l.entry;
  }
  return nullptr;
}

std::vector<std::string> KnownHosts::key_types_for(const std::string& host, int port) const {
  const std::string name = known_hosts_name(host, port);
  std::vector<std::string> types;
  for (const auto& l : lines_) {
    if (l.entry.revoked || !host_matches(l.hosts, name)) continue;
    if (std::find(types.begin(), types.end(), l.entry.key_type) == types.end()) types.push_back(l.entry.key_type);
  }
  return types;
}

Status KnownHosts::append(const std::string& path, const std::string& host, int port,
                          std::string_view key_type, ByteSpan key_blob) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!fd) return Error::from_errno("open " + path + " to add a host key");
  const std::string line = known_hosts_name(host, port) + " " + std::string(key_type) + " " +
                           base64_encode(key_blob) + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return Error::from_errno("write " + path);
  }
  if (::fsync(fd.get()) != 0) return Error::from_errno("fsync " + path);
  return {};
}

}  // namespace syncd::transport
