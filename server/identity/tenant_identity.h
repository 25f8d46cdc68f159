// A tenant's identity configuration as it is handed over (SPEC section 8):
// the CA bundle its users' certificates chain to and the token issuers a
// portal may relay. Checks the shape of what a customer registers, and
// names each CA by the fingerprint the customer can compare with their own.
// Thread-safe: pure functions.
#ifndef LOCKBOX_SERVER_IDENTITY_TENANT_IDENTITY_H_
#define LOCKBOX_SERVER_IDENTITY_TENANT_IDENTITY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lockbox/v1/resources.pb.h"

namespace lockbox {

struct CaCertificate {
  std::string der;
  std::string sha256;   // Hex SHA-256 of the DER.
  std::string subject;  // RFC 2253.
};

// Parses one or more PEM certificates, each of which must be a CA
// certificate (basicConstraints CA:TRUE). INVALID_ARGUMENT on `field`
// (REQUIRED when there is none, BAD_FORMAT for anything else in the PEM or
// a certificate that is not a CA).
absl::StatusOr<std::vector<CaCertificate>> ParseCaBundle(absl::string_view pem,
                                                         absl::string_view field);

// The fingerprints of a bundle that was validated when it was stored, in
// bundle order (empty if it no longer parses).
std::vector<std::string> CaFingerprints(absl::string_view pem);

// Sets identity->ca_fingerprints from its ca_bundle_pem.
void FillCaFingerprints(v1::TenantIdentity* identity);

// Checks the token issuers' shape: issuer and audience set, issuers
// distinct, jwks_json a JSON object with a "keys" array. INVALID_ARGUMENT on
// `field`[i].<member>.
absl::Status ValidateTokenIssuers(
    const google::protobuf::RepeatedPtrField<v1::TokenIssuer>& issuers, absl::string_view field);

// ParseCaBundle on ca_bundle_pem and ValidateTokenIssuers on token_issuers,
// with the fields named under `prefix` (e.g. "identity").
absl::Status ValidateTenantIdentity(const v1::TenantIdentity& identity, absl::string_view prefix);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_IDENTITY_TENANT_IDENTITY_H_
