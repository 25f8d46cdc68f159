// AES-256-GCM in memory (OpenSSL), for keys Lockbox holds unwrapped: the
// policy keys that wrap data planes' data keys, and the tenant data keys
// that seal Lockbox's own fields. One pair of functions for both.
#ifndef LOCKBOX_SERVER_DOMAIN_AEAD_H_
#define LOCKBOX_SERVER_DOMAIN_AEAD_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lockbox {

inline constexpr size_t kAeadKeyBytes = 32;
inline constexpr size_t kAeadNonceBytes = 12;
inline constexpr size_t kAeadTagBytes = 16;

// A 256-bit key held in memory, wiped when destroyed. Copyable on purpose
// (caches hand out shared_ptr<const SecretKey>); never logged.
class SecretKey {
 public:
  SecretKey() { bytes_.fill(0); }
  // REQUIRES: bytes.size() == kAeadKeyBytes.
  explicit SecretKey(absl::string_view bytes);
  SecretKey(const SecretKey& other) = default;
  SecretKey& operator=(const SecretKey& other) = default;
  ~SecretKey();
  // 32 random bytes from OpenSSL's CSPRNG.
  static SecretKey Random();

  const uint8_t* data() const { return bytes_.data(); }
  // The bytes as a string (to hand a data key to its caller, or to wrap it).
  std::string Reveal() const;

 private:
  std::array<uint8_t, kAeadKeyBytes> bytes_;
};

// Returns nonce (12, random) || ciphertext || tag (16).
std::string AeadSeal(const SecretKey& key, absl::string_view plaintext, absl::string_view aad);
// INVALID_ARGUMENT when `sealed` is short, tampered, or sealed with another
// key or `aad`.
absl::StatusOr<std::string> AeadOpen(const SecretKey& key, absl::string_view sealed,
                                     absl::string_view aad);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_AEAD_H_
