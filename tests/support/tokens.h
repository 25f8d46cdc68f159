// JWTs for tests: a tenant's token issuer with its own keys (RS256 and
// ES256, made at run time: no key is checked in), the JWKS a tenant
// registers for it, and tokens signed with cjose as a real identity
// provider would sign them, plus forged ones (alg none, HS256 keyed with
// the public key, EdDSA, a key the issuer never published).
#ifndef LOCKBOX_TESTS_SUPPORT_TOKENS_H_
#define LOCKBOX_TESTS_SUPPORT_TOKENS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "nlohmann/json.hpp"

namespace lockbox::testing {

// One issuer's signing keys. Not copyable; thread-compatible.
class TestTokenIssuer {
 public:
  // An RSA 2048 key (kid "<kid_prefix>rsa") and an EC P-256 key
  // (kid "<kid_prefix>ec").
  TestTokenIssuer(std::string issuer, std::string audience, std::string kid_prefix = "");
  ~TestTokenIssuer();
  TestTokenIssuer(const TestTokenIssuer&) = delete;
  TestTokenIssuer& operator=(const TestTokenIssuer&) = delete;

  const std::string& issuer() const { return issuer_; }
  const std::string& audience() const { return audience_; }
  // {"keys": [rsa, ec]}, public parts only.
  std::string JwksJson() const;
  // What a tenant registers: issuer, audience and JwksJson().
  v1::TokenIssuer Registration() const;

  // The claims a valid token for `sub` carries at `now`: iss, aud, sub,
  // iat = now, exp = now + 5 minutes, and a fresh jti.
  nlohmann::json Claims(absl::string_view sub, absl::Time now) const;
  // Claims(sub, now) with `overrides` merged in (a null member removes the
  // claim), signed with alg "RS256" or "ES256" and the matching key, its
  // kid in the header unless `with_kid` is false.
  std::string Sign(absl::string_view sub, absl::Time now,
                   const nlohmann::json& overrides = nlohmann::json::object(),
                   absl::string_view alg = "RS256", bool with_kid = true) const;
  // `claims` exactly, signed as Sign does.
  std::string SignClaims(const nlohmann::json& claims, absl::string_view alg = "RS256",
                         bool with_kid = true) const;
  // The public RSA key in PEM: what an attacker keys HS256 with in the
  // algorithm-confusion attack.
  std::string RsaPublicKeyPem() const;

 private:
  struct Keys;
  std::string issuer_;
  std::string audience_;
  std::string kid_prefix_;
  std::unique_ptr<Keys> keys_;
};

// base64url(header).base64url(claims).base64url(signature), the parts
// exactly as given: for tokens no library would make.
std::string RawToken(const nlohmann::json& header, const nlohmann::json& claims,
                     absl::string_view signature);
// A token with alg "none" and an empty signature.
std::string UnsignedToken(const nlohmann::json& claims);
// alg HS256, HMAC-SHA256 over the signing input keyed with `key`.
std::string HmacToken(const nlohmann::json& claims, absl::string_view key,
                      absl::string_view kid = "");
// alg EdDSA, really signed with a fresh Ed25519 key; `jwks_out`, when not
// null, gets that key's public JWKS ({"keys": [{"kty": "OKP", ...}]}).
std::string EdDsaToken(const nlohmann::json& claims, std::string* jwks_out = nullptr);

// SQL that registers `issuers` as tenant `tenant_id`'s token issuers
// (tenant_identities, migration 0007), keeping its CA bundle if it has one:
// for over-the-wire tests to run as the database's superuser until
// CreateTenant takes a tenant's identity.
std::string TokenIssuersSql(const std::string& tenant_id,
                            const std::vector<v1::TokenIssuer>& issuers);

}  // namespace lockbox::testing

#endif  // LOCKBOX_TESTS_SUPPORT_TOKENS_H_
