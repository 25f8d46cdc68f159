#include "tests/support/tokens.h"

#include <cjose/cjose.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace lockbox::testing {
namespace {

// A test's setup failing is a broken machine, not a case to handle.
[[noreturn]] void Fail(absl::string_view what) {
  throw std::runtime_error(absl::StrCat("test tokens: ", what));
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct JwkRelease {
  void operator()(cjose_jwk_t* k) const { cjose_jwk_release(k); }
};
using Jwk = std::unique_ptr<cjose_jwk_t, JwkRelease>;

std::vector<uint8_t> BnParam(const EVP_PKEY* key, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) Fail(absl::StrCat("no key parameter ", name));
  std::vector<uint8_t> out(pad > 0 ? pad : BN_num_bytes(bn));
  BN_bn2binpad(bn, out.data(), static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

// An RSA key made by OpenSSL, handed to cjose with every private part.
Jwk RsaJwk(const EVP_PKEY* key) {
  std::vector<uint8_t> e = BnParam(key, OSSL_PKEY_PARAM_RSA_E);
  std::vector<uint8_t> n = BnParam(key, OSSL_PKEY_PARAM_RSA_N);
  std::vector<uint8_t> d = BnParam(key, OSSL_PKEY_PARAM_RSA_D);
  std::vector<uint8_t> p = BnParam(key, OSSL_PKEY_PARAM_RSA_FACTOR1);
  std::vector<uint8_t> q = BnParam(key, OSSL_PKEY_PARAM_RSA_FACTOR2);
  std::vector<uint8_t> dp = BnParam(key, OSSL_PKEY_PARAM_RSA_EXPONENT1);
  std::vector<uint8_t> dq = BnParam(key, OSSL_PKEY_PARAM_RSA_EXPONENT2);
  std::vector<uint8_t> qi = BnParam(key, OSSL_PKEY_PARAM_RSA_COEFFICIENT1);
  cjose_jwk_rsa_keyspec spec{};
  spec.e = e.data();
  spec.elen = e.size();
  spec.n = n.data();
  spec.nlen = n.size();
  spec.d = d.data();
  spec.dlen = d.size();
  spec.p = p.data();
  spec.plen = p.size();
  spec.q = q.data();
  spec.qlen = q.size();
  spec.dp = dp.data();
  spec.dplen = dp.size();
  spec.dq = dq.data();
  spec.dqlen = dq.size();
  spec.qi = qi.data();
  spec.qilen = qi.size();
  cjose_err err;
  Jwk jwk(cjose_jwk_create_RSA_spec(&spec, &err));
  if (!jwk) Fail(err.message);
  return jwk;
}

Jwk EcJwk(const EVP_PKEY* key) {
  std::vector<uint8_t> d = BnParam(key, OSSL_PKEY_PARAM_PRIV_KEY, 32);
  std::vector<uint8_t> x = BnParam(key, OSSL_PKEY_PARAM_EC_PUB_X, 32);
  std::vector<uint8_t> y = BnParam(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
  cjose_jwk_ec_keyspec spec{};
  spec.crv = CJOSE_JWK_EC_P_256;
  spec.d = d.data();
  spec.dlen = d.size();
  spec.x = x.data();
  spec.xlen = x.size();
  spec.y = y.data();
  spec.ylen = y.size();
  cjose_err err;
  Jwk jwk(cjose_jwk_create_EC_spec(&spec, &err));
  if (!jwk) Fail(err.message);
  return jwk;
}

// The public JWK of `jwk`, with its kid, use and alg.
nlohmann::json PublicJwk(const cjose_jwk_t* jwk, const std::string& kid, const char* alg) {
  cjose_err err;
  char* text = cjose_jwk_to_json(jwk, false, &err);
  if (text == nullptr) Fail(err.message);
  nlohmann::json out = nlohmann::json::parse(text);
  free(text);
  out["kid"] = kid;
  out["use"] = "sig";
  out["alg"] = alg;
  return out;
}

std::string B64(absl::string_view bytes) { return absl::WebSafeBase64Escape(bytes); }

std::string RandomId() {
  unsigned char bytes[16];
  RAND_bytes(bytes, sizeof bytes);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes), sizeof bytes));
}

}  // namespace

struct TestTokenIssuer::Keys {
  Pkey rsa_key;
  Jwk rsa;
  Jwk ec;
};

TestTokenIssuer::TestTokenIssuer(std::string issuer, std::string audience, std::string kid_prefix)
    : issuer_(std::move(issuer)),
      audience_(std::move(audience)),
      kid_prefix_(std::move(kid_prefix)),
      keys_(std::make_unique<Keys>()) {
  keys_->rsa_key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  Pkey ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!keys_->rsa_key || !ec) Fail("key generation");
  keys_->rsa = RsaJwk(keys_->rsa_key.get());
  keys_->ec = EcJwk(ec.get());
}

TestTokenIssuer::~TestTokenIssuer() = default;

std::string TestTokenIssuer::JwksJson() const {
  nlohmann::json jwks;
  jwks["keys"] = nlohmann::json::array({PublicJwk(keys_->rsa.get(), kid_prefix_ + "rsa", "RS256"),
                                        PublicJwk(keys_->ec.get(), kid_prefix_ + "ec", "ES256")});
  return jwks.dump();
}

v1::TokenIssuer TestTokenIssuer::Registration() const {
  v1::TokenIssuer out;
  out.set_issuer(issuer_);
  out.set_audience(audience_);
  out.set_jwks_json(JwksJson());
  return out;
}

nlohmann::json TestTokenIssuer::Claims(absl::string_view sub, absl::Time now) const {
  return nlohmann::json{{"iss", issuer_},
                        {"aud", audience_},
                        {"sub", std::string(sub)},
                        {"iat", absl::ToUnixSeconds(now)},
                        {"exp", absl::ToUnixSeconds(now + absl::Minutes(5))},
                        {"jti", RandomId()}};
}

std::string TestTokenIssuer::Sign(absl::string_view sub, absl::Time now,
                                  const nlohmann::json& overrides, absl::string_view alg,
                                  bool with_kid) const {
  nlohmann::json claims = Claims(sub, now);
  for (const auto& [name, value] : overrides.items()) {
    if (value.is_null()) {
      claims.erase(name);
    } else {
      claims[name] = value;
    }
  }
  return SignClaims(claims, alg, with_kid);
}

std::string TestTokenIssuer::SignClaims(const nlohmann::json& claims, absl::string_view alg,
                                        bool with_kid) const {
  const bool rsa = alg == "RS256";
  cjose_err err;
  cjose_header_t* header = cjose_header_new(&err);
  if (header == nullptr) Fail(err.message);
  const std::string kid = kid_prefix_ + (rsa ? "rsa" : "ec");
  bool ok = cjose_header_set(header, CJOSE_HDR_ALG, rsa ? CJOSE_HDR_ALG_RS256 : CJOSE_HDR_ALG_ES256,
                             &err) &&
            cjose_header_set(header, "typ", "JWT", &err) &&
            (!with_kid || cjose_header_set(header, CJOSE_HDR_KID, kid.c_str(), &err));
  if (!ok) {
    cjose_header_release(header);
    Fail(err.message);
  }
  const std::string payload = claims.dump();
  cjose_jws_t* jws =
      cjose_jws_sign(rsa ? keys_->rsa.get() : keys_->ec.get(), header,
                     reinterpret_cast<const uint8_t*>(payload.data()), payload.size(), &err);
  cjose_header_release(header);
  if (jws == nullptr) Fail(err.message);
  const char* compact = nullptr;
  if (!cjose_jws_export(jws, &compact, &err)) {
    cjose_jws_release(jws);
    Fail(err.message);
  }
  std::string out(compact);
  cjose_jws_release(jws);
  return out;
}

std::string TestTokenIssuer::RsaPublicKeyPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, keys_->rsa_key.get());
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  return pem;
}

std::string RawToken(const nlohmann::json& header, const nlohmann::json& claims,
                     absl::string_view signature) {
  return absl::StrCat(B64(header.dump()), ".", B64(claims.dump()), ".", B64(signature));
}

std::string UnsignedToken(const nlohmann::json& claims) {
  return RawToken({{"alg", "none"}, {"typ", "JWT"}}, claims, "");
}

std::string HmacToken(const nlohmann::json& claims, absl::string_view key, absl::string_view kid) {
  nlohmann::json header{{"alg", "HS256"}, {"typ", "JWT"}};
  if (!kid.empty()) header["kid"] = std::string(kid);
  const std::string input = absl::StrCat(B64(header.dump()), ".", B64(claims.dump()));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_len);
  return absl::StrCat(input, ".", B64(absl::string_view(reinterpret_cast<char*>(mac), mac_len)));
}

std::string EdDsaToken(const nlohmann::json& claims, std::string* jwks_out) {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) Fail("Ed25519 key generation");
  const nlohmann::json header{{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", "ed"}};
  const std::string input = absl::StrCat(B64(header.dump()), ".", B64(claims.dump()));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char sig[64];
  size_t sig_len = sizeof sig;
  bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key.get()) == 1 &&
            EVP_DigestSign(ctx, sig, &sig_len, reinterpret_cast<const unsigned char*>(input.data()),
                           input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) Fail("Ed25519 signing");
  if (jwks_out != nullptr) {
    unsigned char pub[32];
    size_t pub_len = sizeof pub;
    EVP_PKEY_get_raw_public_key(key.get(), pub, &pub_len);
    nlohmann::json jwk{{"kty", "OKP"},
                       {"crv", "Ed25519"},
                       {"kid", "ed"},
                       {"use", "sig"},
                       {"x", B64(absl::string_view(reinterpret_cast<char*>(pub), pub_len))}};
    *jwks_out = nlohmann::json{{"keys", nlohmann::json::array({jwk})}}.dump();
  }
  return absl::StrCat(input, ".", B64(absl::string_view(reinterpret_cast<char*>(sig), sig_len)));
}

std::string TokenIssuersSql(const std::string& tenant_id,
                            const std::vector<v1::TokenIssuer>& issuers) {
  nlohmann::json list = nlohmann::json::array();
  for (const v1::TokenIssuer& i : issuers) {
    list.push_back(
        {{"issuer", i.issuer()}, {"audience", i.audience()}, {"jwks_json", i.jwks_json()}});
  }
  const std::string json = nlohmann::json{{"token_issuers", list}}.dump();
  // Dollar quotes: the JSON holds quotes, never this tag.
  return absl::StrCat(
      "INSERT INTO tenant_identities (tenant_id, identity, update_time, version) VALUES ($t$",
      tenant_id, "$t$, $j$", json,
      "$j$::jsonb, 0, 1) ON CONFLICT (tenant_id) DO UPDATE SET identity = "
      "tenant_identities.identity || EXCLUDED.identity, version = tenant_identities.version + 1");
}

}  // namespace lockbox::testing
