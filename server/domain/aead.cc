#include "server/domain/aead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "server/domain/status.h"

namespace lockbox {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

SecretKey::SecretKey(absl::string_view bytes) {
  bytes_.fill(0);
  if (bytes.size() == kAeadKeyBytes) std::copy(bytes.begin(), bytes.end(), bytes_.begin());
}

SecretKey::~SecretKey() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

SecretKey SecretKey::Random() {
  SecretKey key;
  // RAND_bytes fails only when the CSPRNG cannot be seeded; a key of zeros
  // must never be used, so that is fatal.
  if (RAND_bytes(key.bytes_.data(), static_cast<int>(key.bytes_.size())) != 1) std::abort();
  return key;
}

std::string SecretKey::Reveal() const {
  return std::string(reinterpret_cast<const char*>(bytes_.data()), bytes_.size());
}

std::string AeadSeal(const SecretKey& key, absl::string_view plaintext, absl::string_view aad) {
  std::string out(kAeadNonceBytes + plaintext.size() + kAeadTagBytes, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (RAND_bytes(o, kAeadNonceBytes) != 1) std::abort();
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  // With a valid key, nonce and lengths these calls cannot fail but for
  // memory exhaustion, which is fatal everywhere in lockboxd.
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), o) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), o + kAeadNonceBytes, &len, Bytes(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), o + kAeadNonceBytes + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kAeadTagBytes,
                          o + kAeadNonceBytes + plaintext.size()) != 1) {
    std::abort();
  }
  return out;
}

absl::StatusOr<std::string> AeadOpen(const SecretKey& key, absl::string_view sealed,
                                     absl::string_view aad) {
  if (sealed.size() < kAeadNonceBytes + kAeadTagBytes) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kKeyBindingMismatch,
                 "sealed value too short");
  }
  const size_t n = sealed.size() - kAeadNonceBytes - kAeadTagBytes;
  std::string out(n, '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  std::string tag(sealed.substr(kAeadNonceBytes + n));
  bool ok = ctx &&
            EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(),
                               Bytes(sealed)) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                              Bytes(sealed) + kAeadNonceBytes, static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kAeadTagBytes, tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len,
                                &len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    return Error(absl::StatusCode::kInvalidArgument, reason::kKeyBindingMismatch,
                 "sealed value does not open: changed, or bound to something else");
  }
  return out;
}

}  // namespace lockbox
