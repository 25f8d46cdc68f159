// The application's port to the modules that hold customers' keys (SPEC
// section 9): implemented over PKCS#11 by server/keys/pkcs11_module.*, with
// SoftHSM2 in tests. A key is named by an RFC 7512 PKCS#11 URI
// ("pkcs11:token=acme;object=lockbox-cmk;type=secret-key"). Key material of
// the named key never leaves the module: Lockbox asks the module to wrap
// and unwrap.
//
// Whose key: every method names the `owner` using the key, a tenant ID, or
// "" for the provider's own keys. A token is usable only by the owner the
// operator filed its PIN for (--pkcs11-pin-dir/<owner or _provider>/
// <token label>.pin), whatever the URI says and whether or not the module
// is already logged in to that token for someone else: a tenant naming
// another tenant's token (or the provider's) is refused.
//
// Thread-safe: every method may be called from any thread at once.
#ifndef LOCKBOX_SERVER_APP_KEY_MODULE_H_
#define LOCKBOX_SERVER_APP_KEY_MODULE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lockbox {

// Errors, from every method:
// - INVALID_ARGUMENT: `uri` is not a PKCS#11 URI, or names a module or a PIN
//   (module-name, module-path, pin-source, pin-value: the operator chooses
//   those, never a tenant), or does not name one token and one object.
// - FAILED_PRECONDITION with reason KEY_UNAVAILABLE: the key cannot be used
//   now (no such token or object, no PIN filed for the token under this
//   owner, more than one token or object matches, login
//   refused, the object lacks the needed usage, the module's error); the
//   message carries the module's reason ("CKR_OBJECT_HANDLE_INVALID", ...).
// - INVALID_ARGUMENT with reason KEY_BINDING_MISMATCH (Unwrap only): the
//   wrapped bytes were not made by Wrap with this key and this `aad`
//   (tampered, or bound to something else).
// - UNAVAILABLE: the module failed in a way a retry may cure.
class KeyModule {
 public:
  virtual ~KeyModule() = default;

  // Checks that `uri` names exactly one AES-256 secret key the module can
  // encrypt and decrypt with, by using it once.
  virtual absl::Status Probe(const std::string& owner, const std::string& uri) = 0;

  // AES-256-GCM inside the module under the key `uri`, with a fresh
  // 12-byte nonce and `aad` as associated data. Returns
  // nonce || ciphertext || 16-byte tag.
  virtual absl::StatusOr<std::string> Wrap(const std::string& owner, const std::string& uri,
                                           absl::string_view plaintext, absl::string_view aad) = 0;
  // The inverse of Wrap, inside the module.
  virtual absl::StatusOr<std::string> Unwrap(const std::string& owner, const std::string& uri,
                                             absl::string_view wrapped, absl::string_view aad) = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_KEY_MODULE_H_
