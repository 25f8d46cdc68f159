// The signed token a service.portal relays in x-lockbox-on-behalf-of (SPEC
// section 8, docs/PORTAL_TOKENS.md), verified with cjose (Debian's
// libcjose) and its claims read with jansson. No JWS verification is written
// here: cjose checks the signature, this file decides which key and
// algorithm may be used and what the claims must say.
//
// Accepted: a compact JWS, alg RS256 with an RSA key (2048 bits or more) or
// ES256 with an EC P-256 key, from the JWKS of the issuer its `iss` names;
// the key chosen by `kid` when the token has one. Everything else (none,
// HS*, PS*, ES384, a key of the wrong type) is refused. EdDSA is refused too:
// no JOSE library Debian ships (libjwt 1.10, cjose 0.6, libjose 11)
// implements it.
#ifndef LOCKBOX_SERVER_IDENTITY_TOKEN_VERIFIER_H_
#define LOCKBOX_SERVER_IDENTITY_TOKEN_VERIFIER_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/use_case_runner.h"

namespace lockbox {

// How far a token's exp may lie ahead of now: a portal's token proves a
// user who was just there, not a standing credential.
inline constexpr absl::Duration kMaxTokenLifetime = absl::Minutes(10);
// How far ahead of now a token's iat may be (clocks differ a little).
inline constexpr absl::Duration kTokenClockSkew = absl::Seconds(60);

// Stateless and thread-safe: the keys are imported from the issuers given
// to each call, so a tenant's change of issuers applies to the next call.
class JoseTokenVerifier final : public TokenVerifier {
 public:
  // Checks, in this order: the token is a compact JWS; its `iss` is one of
  // `issuers`; its alg is RS256 or ES256 and a key of that issuer's JWKS of
  // the matching type (and `kid`, when the token names one) verifies the
  // signature; `aud` (a string or an array) contains the issuer's audience;
  // `exp` is after now and at most kMaxTokenLifetime ahead; `iat` is
  // present and not after now + kTokenClockSkew; `jti` is a non-empty
  // string; `sub` is a SPIFFE ID. PERMISSION_DENIED (reason::kTokenRefused)
  // naming the first that fails.
  absl::StatusOr<TokenEvidence> Verify(
      absl::string_view token, const google::protobuf::RepeatedPtrField<v1::TokenIssuer>& issuers,
      absl::Time now) const override;
  // ValidateTokenIssuer.
  absl::Status CheckIssuer(const v1::TokenIssuer& issuer, absl::string_view field) const override;
};

// Whether `issuer` can be registered: issuer and audience set, and its
// JWKS a {"keys": [...]} whose every key imports, is public only, is meant
// for signatures, and is RSA (2048 bits or more) or EC P-256. EdDSA (OKP)
// keys are refused with a message saying why. INVALID_ARGUMENT on `field`
// (e.g. "identity.token_issuers[0]") otherwise.
absl::Status ValidateTokenIssuer(const v1::TokenIssuer& issuer, absl::string_view field = "issuer");

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_IDENTITY_TOKEN_VERIFIER_H_
