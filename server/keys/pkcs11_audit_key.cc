#include "server/keys/pkcs11_audit_key.h"

namespace lockbox {
namespace {
// The provider's keys are filed under the owner "".
constexpr char kProvider[] = "";
}  // namespace

absl::StatusOr<std::string> Pkcs11AuditSigningKey::Sign(const std::string& data) const {
  return module_->Sign(kProvider, uri_, data);
}

absl::StatusOr<std::unique_ptr<AuditSigner>> MakePkcs11AuditSigner(Pkcs11Module* module,
                                                                   const std::string& uri) {
  absl::StatusOr<std::string> public_key = module->PublicKeyPem(kProvider, uri);
  if (!public_key.ok()) return public_key.status();
  return AuditSigner::FromExternalKey(*public_key,
                                      std::make_shared<Pkcs11AuditSigningKey>(module, uri));
}

}  // namespace lockbox
