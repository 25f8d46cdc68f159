#include "server/identity/token_verifier.h"

#include <cjose/cjose.h>
#include <jansson.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

// A portal's token is a few hundred bytes; the bound keeps a hostile header
// from costing more than a parse.
constexpr size_t kMaxTokenBytes = 8192;
constexpr size_t kMaxClaimBytes = 512;
constexpr size_t kMinRsaBits = 2048;

struct JsonUnref {
  void operator()(json_t* j) const { json_decref(j); }
};
using Json = std::unique_ptr<json_t, JsonUnref>;
struct JwkRelease {
  void operator()(cjose_jwk_t* k) const { cjose_jwk_release(k); }
};
using Jwk = std::unique_ptr<cjose_jwk_t, JwkRelease>;
struct JwsRelease {
  void operator()(cjose_jws_t* j) const { cjose_jws_release(j); }
};
using Jws = std::unique_ptr<cjose_jws_t, JwsRelease>;

constexpr char kNoEdDsa[] =
    "EdDSA is not available on this platform: no JOSE library Debian ships (libjwt 1.10, "
    "cjose 0.6, libjose 11) implements it; use RS256 or ES256";

absl::Status Refused(absl::string_view why) {
  return Error(absl::StatusCode::kPermissionDenied, reason::kTokenRefused,
               absl::StrCat("on-behalf-of token refused: ", why));
}

Json Parse(absl::string_view text) {
  return Json(json_loadb(text.data(), text.size(), JSON_REJECT_DUPLICATES, nullptr));
}

// The string member `name` of `object`, or "" when it is absent or not a
// string.
std::string StringMember(const json_t* object, const char* name) {
  const json_t* v = json_object_get(object, name);
  return json_is_string(v) ? std::string(json_string_value(v), json_string_length(v)) : "";
}

enum class KeyType { kRsa, kEc };

// One usable key of an issuer's JWKS.
struct IssuerKey {
  KeyType type;
  std::string kid;
  Jwk jwk;
};

// Imports one JWKS entry; an error says why it cannot verify tokens here.
absl::StatusOr<IssuerKey> ImportKey(json_t* entry) {
  if (!json_is_object(entry)) return absl::InvalidArgumentError("a key is not a JSON object");
  const std::string kty = StringMember(entry, "kty");
  const std::string alg = StringMember(entry, "alg");
  if (kty == "OKP" || alg == "EdDSA") return absl::InvalidArgumentError(kNoEdDsa);
  if (kty != "RSA" && kty != "EC") {
    return absl::InvalidArgumentError(absl::StrCat(
        "key type \"", kty, "\" is not supported (RSA for RS256, EC P-256 for ES256)"));
  }
  if (json_object_get(entry, "d") != nullptr) {
    return absl::InvalidArgumentError("a JWKS must hold public keys only (this key has \"d\")");
  }
  const std::string use = StringMember(entry, "use");
  if (!use.empty() && use != "sig") {
    return absl::InvalidArgumentError(absl::StrCat("key use \"", use, "\" is not \"sig\""));
  }
  const KeyType type = kty == "RSA" ? KeyType::kRsa : KeyType::kEc;
  if (!alg.empty() && alg != (type == KeyType::kRsa ? "RS256" : "ES256")) {
    return absl::InvalidArgumentError(
        absl::StrCat("key alg \"", alg, "\" is not supported for kty ", kty));
  }
  std::unique_ptr<char, decltype(&free)> text(json_dumps(entry, JSON_COMPACT), &free);
  if (text == nullptr) return absl::InvalidArgumentError("a key cannot be serialized");
  cjose_err err;
  Jwk jwk(cjose_jwk_import(text.get(), strlen(text.get()), &err));
  if (jwk == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", kty, " key does not import: ", err.message));
  }
  if (type == KeyType::kRsa) {
    if (cjose_jwk_get_kty(jwk.get(), &err) != CJOSE_JWK_KTY_RSA ||
        cjose_jwk_get_keysize(jwk.get(), &err) < kMinRsaBits) {
      return absl::InvalidArgumentError("an RSA key must have at least 2048 bits");
    }
  } else if (cjose_jwk_get_kty(jwk.get(), &err) != CJOSE_JWK_KTY_EC ||
             cjose_jwk_EC_get_curve(jwk.get(), &err) != CJOSE_JWK_EC_P_256) {
    return absl::InvalidArgumentError("an EC key must be on P-256 (ES256)");
  }
  return IssuerKey{type, StringMember(entry, "kid"), std::move(jwk)};
}

// Every key of a JWKS; with `strict`, the first that cannot be used is an
// error, else such keys are skipped (what was registered was validated;
// this is the second line).
absl::StatusOr<std::vector<IssuerKey>> ImportKeys(absl::string_view jwks_json, bool strict) {
  Json jwks = Parse(jwks_json);
  json_t* keys = jwks ? json_object_get(jwks.get(), "keys") : nullptr;
  if (!json_is_array(keys)) {
    return absl::InvalidArgumentError("the JWKS must be a JSON object {\"keys\": [...]}");
  }
  std::vector<IssuerKey> out;
  for (size_t i = 0; i < json_array_size(keys); ++i) {
    absl::StatusOr<IssuerKey> key = ImportKey(json_array_get(keys, i));
    if (key.ok()) {
      out.push_back(std::move(*key));
    } else if (strict) {
      return absl::InvalidArgumentError(absl::StrCat("keys[", i, "]: ", key.status().message()));
    }
  }
  if (out.empty()) return absl::InvalidArgumentError("the JWKS holds no key");
  return out;
}

// A NumericDate claim (seconds since the epoch, integer or not) as a time.
std::optional<absl::Time> TimeClaim(const json_t* claims, const char* name) {
  const json_t* v = json_object_get(claims, name);
  if (!json_is_number(v)) return std::nullopt;
  const double seconds = json_number_value(v);
  // Past 9999 or before 1970 is no date a real token carries.
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 253402300799.0) return std::nullopt;
  return absl::FromUnixMicros(static_cast<int64_t>(seconds * 1e6));
}

bool HasAudience(const json_t* claims, const std::string& audience) {
  const json_t* aud = json_object_get(claims, "aud");
  if (json_is_string(aud)) return json_string_value(aud) == audience;
  if (!json_is_array(aud)) return false;
  for (size_t i = 0; i < json_array_size(aud); ++i) {
    const json_t* one = json_array_get(aud, i);
    if (json_is_string(one) && json_string_value(one) == audience) return true;
  }
  return false;
}

// The protected header, decoded without cjose so that an algorithm cjose
// would not even import (none, EdDSA) is refused with a message that says
// which.
absl::StatusOr<Json> Header(absl::string_view token) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty()) {
    return Refused("not a compact JWS (header.payload.signature)");
  }
  std::string decoded;
  if (!absl::WebSafeBase64Unescape(parts[0], &decoded)) return Refused("header is not base64url");
  Json header = Parse(decoded);
  if (!json_is_object(header.get())) return Refused("header is not a JSON object");
  return header;
}

}  // namespace

absl::StatusOr<TokenEvidence> JoseTokenVerifier::Verify(
    absl::string_view token, const google::protobuf::RepeatedPtrField<v1::TokenIssuer>& issuers,
    absl::Time now) const {
  if (token.size() > kMaxTokenBytes) return Refused("longer than 8 KiB");
  ASSIGN_OR_RETURN(Json header, Header(token));
  const std::string alg = StringMember(header.get(), "alg");
  if (alg == "EdDSA") return Refused(kNoEdDsa);
  if (alg != "RS256" && alg != "ES256") {
    return Refused(absl::StrCat("alg \"", alg, "\" is not accepted (RS256 or ES256 only)"));
  }
  // Extensions the verifier must understand: it understands none.
  if (json_object_get(header.get(), "crit") != nullptr) return Refused("crit is not supported");
  const KeyType wanted = alg == "RS256" ? KeyType::kRsa : KeyType::kEc;
  const json_t* kid_value = json_object_get(header.get(), "kid");
  if (kid_value != nullptr && !json_is_string(kid_value)) return Refused("kid is not a string");
  const std::string kid = StringMember(header.get(), "kid");

  cjose_err err;
  Jws jws(cjose_jws_import(token.data(), token.size(), &err));
  if (jws == nullptr) return Refused(absl::StrCat("not a readable JWS: ", err.message));
  uint8_t* payload = nullptr;
  size_t payload_len = 0;
  if (!cjose_jws_get_plaintext(jws.get(), &payload, &payload_len, &err)) {
    return Refused("no payload");
  }
  // Read before the signature is checked only to learn which issuer's keys
  // to check it with; every claim is judged after.
  Json claims = Parse(absl::string_view(reinterpret_cast<const char*>(payload), payload_len));
  if (!json_is_object(claims.get())) return Refused("claims are not a JSON object");
  const std::string iss = StringMember(claims.get(), "iss");
  if (iss.empty()) return Refused("no iss");

  const v1::TokenIssuer* verified_by = nullptr;
  bool any_issuer = false;
  bool any_key = false;
  for (const v1::TokenIssuer& issuer : issuers) {
    if (issuer.issuer() != iss) continue;
    any_issuer = true;
    absl::StatusOr<std::vector<IssuerKey>> keys = ImportKeys(issuer.jwks_json(), false);
    if (!keys.ok()) continue;
    for (const IssuerKey& key : *keys) {
      if (key.type != wanted || (!kid.empty() && key.kid != kid)) continue;
      any_key = true;
      if (cjose_jws_verify(jws.get(), key.jwk.get(), &err)) {
        verified_by = &issuer;
        break;
      }
    }
    if (verified_by != nullptr) break;
  }
  if (!any_issuer) {
    return Refused(absl::StrCat("iss \"", iss.substr(0, kMaxClaimBytes),
                                "\" is not a registered issuer of the user's tenant"));
  }
  if (!any_key) {
    return Refused(kid.empty() ? absl::StrCat("the issuer has no ", alg, " key")
                               : absl::StrCat("the issuer has no ", alg, " key with kid \"",
                                              kid.substr(0, kMaxClaimBytes), "\""));
  }
  if (verified_by == nullptr) return Refused("the signature does not verify");

  if (!HasAudience(claims.get(), verified_by->audience())) {
    return Refused(absl::StrCat("aud does not contain \"", verified_by->audience(), "\""));
  }
  std::optional<absl::Time> exp = TimeClaim(claims.get(), "exp");
  if (!exp) return Refused("no exp");
  if (*exp <= now) return Refused("expired");
  if (*exp > now + kMaxTokenLifetime) return Refused("exp is more than 10 minutes ahead");
  std::optional<absl::Time> iat = TimeClaim(claims.get(), "iat");
  if (!iat) return Refused("no iat");
  if (*iat > now + kTokenClockSkew) return Refused("iat is in the future");
  if (json_object_get(claims.get(), "nbf") != nullptr) {
    std::optional<absl::Time> nbf = TimeClaim(claims.get(), "nbf");
    if (!nbf || *nbf > now + kTokenClockSkew) return Refused("not valid yet (nbf)");
  }
  const std::string jti = StringMember(claims.get(), "jti");
  if (jti.empty()) return Refused("no jti");
  if (jti.size() > kMaxClaimBytes) return Refused("jti is longer than 512 bytes");
  const std::string sub = StringMember(claims.get(), "sub");
  if (!absl::StartsWith(sub, "spiffe://")) return Refused("sub is not a SPIFFE ID");
  if (sub.size() > kMaxClaimBytes) return Refused("sub is longer than 512 bytes");
  return TokenEvidence{iss, sub, jti, *iat, *exp};
}

absl::Status ValidateTokenIssuer(const v1::TokenIssuer& issuer, absl::string_view field) {
  if (issuer.issuer().empty()) {
    return InvalidField(absl::StrCat(field, ".issuer"), "REQUIRED", "the token's iss");
  }
  if (issuer.issuer().size() > kMaxClaimBytes) {
    return InvalidField(absl::StrCat(field, ".issuer"), "TOO_LONG", "at most 512 bytes");
  }
  if (issuer.audience().empty()) {
    return InvalidField(absl::StrCat(field, ".audience"), "REQUIRED", "the token's aud");
  }
  absl::StatusOr<std::vector<IssuerKey>> keys = ImportKeys(issuer.jwks_json(), true);
  if (!keys.ok()) {
    return InvalidField(absl::StrCat(field, ".jwks_json"), "BAD_FORMAT", keys.status().message());
  }
  return absl::OkStatus();
}

absl::Status JoseTokenVerifier::CheckIssuer(const v1::TokenIssuer& issuer,
                                           absl::string_view field) const {
  return ValidateTokenIssuer(issuer, field);
}

}  // namespace lockbox
