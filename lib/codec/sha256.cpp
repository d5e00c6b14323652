#include "lib/codec/sha256.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

namespace syncd::codec {
namespace {

[[noreturn]] void die(const char* what) {
  // Failing to allocate or initialise a digest is not recoverable in any caller.
  std::fprintf(stderr, "syncd: fatal: %s\n", what);
  std::abort();
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) die("EVP sha256 init");
}

void Sha256::update(ByteSpan data) {
  if (!data.empty() && EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1) {
    die("EVP sha256 update");
  }
}

Digest Sha256::finish() {
  Digest d{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_.get(), d.data(), &len) != 1 || len != d.size()) die("EVP sha256 final");
  if (EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) die("EVP sha256 init");
  return d;
}

Digest Sha256::of(ByteSpan data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

std::string to_hex(ByteSpan b) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (uint8_t c : b) {
    s += kHex[c >> 4];
    s += kHex[c & 15];
  }
  return s;
}

void random_bytes(uint8_t* out, size_t n) {
  if (n > 0 && RAND_bytes(out, static_cast<int>(n)) != 1) die("RAND_bytes");
}

uint64_t random_u64() {
  uint8_t b[8];
  random_bytes(b, sizeof b);
  return load_le(b, 8);
}

void wipe(void* p, size_t n) noexcept {
  if (p != nullptr && n > 0) OPENSSL_cleanse(p, n);
}

}  // namespace syncd::codec
