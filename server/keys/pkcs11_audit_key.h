// The audit checkpoint signing key in a PKCS#11 token (SPEC section 8: the
// signing key never sits in a file either): an Ed25519 key pair named by
// --audit-signing-key-uri, the provider's (its PIN filed under _provider),
// signing with CKM_EDDSA inside the module. lockbox_audit stays free of
// PKCS#11: it sees only the AuditSigningKey interface of lockbox/audit.h.
#ifndef LOCKBOX_SERVER_KEYS_PKCS11_AUDIT_KEY_H_
#define LOCKBOX_SERVER_KEYS_PKCS11_AUDIT_KEY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "lockbox/audit.h"
#include "server/keys/pkcs11_module.h"

namespace lockbox {

// Thread-safe. `module` is not owned and outlives this key.
class Pkcs11AuditSigningKey final : public AuditSigningKey {
 public:
  Pkcs11AuditSigningKey(Pkcs11Module* module, std::string uri)
      : module_(module), uri_(std::move(uri)) {}
  absl::StatusOr<std::string> Sign(const std::string& data) const override;

 private:
  Pkcs11Module* const module_;
  const std::string uri_;
};

// An AuditSigner over the key pair `uri` names: the public key read from
// the token, every signature made in the module. Errors: the module's
// (key_module.h), or the signer's check that the pair signs and verifies.
absl::StatusOr<std::unique_ptr<AuditSigner>> MakePkcs11AuditSigner(Pkcs11Module* module,
                                                                   const std::string& uri);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_KEYS_PKCS11_AUDIT_KEY_H_
