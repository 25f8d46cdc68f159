// The portal's token, verified without a server: what a registered issuer
// signs is accepted, and every way a token can be wrong, old, aimed
// elsewhere or forged is refused with TOKEN_REFUSED.
#include "server/identity/token_verifier.h"

#include <gtest/gtest.h>

#include "server/domain/status.h"
#include "tests/support/tokens.h"

namespace lockbox {
namespace {

using testing::EdDsaToken;
using testing::HmacToken;
using testing::RawToken;
using testing::TestTokenIssuer;
using testing::UnsignedToken;

constexpr char kUser[] = "spiffe://lockbox.test/tenant/contoso/user/dana";

class TokenVerifierTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    contoso_ = new TestTokenIssuer("https://login.contoso.example", "lockbox-portal", "c-");
    fabrikam_ = new TestTokenIssuer("https://login.fabrikam.example", "lockbox-portal", "f-");
  }
  static void TearDownTestSuite() {
    delete contoso_;
    delete fabrikam_;
  }
  void SetUp() override { *issuers_.Add() = contoso_->Registration(); }

  absl::StatusOr<TokenEvidence> Verify(const std::string& token) const {
    return verifier_.Verify(token, issuers_, now_);
  }
  // Refused with TOKEN_REFUSED, and the message mentions `why`.
  void ExpectRefused(const std::string& token, const std::string& why) const {
    absl::StatusOr<TokenEvidence> got = Verify(token);
    ASSERT_FALSE(got.ok()) << "accepted: " << token;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(ReasonOf(got.status()), "TOKEN_REFUSED");
    EXPECT_NE(got.status().message().find(why), std::string::npos) << got.status().message();
  }

  static TestTokenIssuer* contoso_;
  static TestTokenIssuer* fabrikam_;
  JoseTokenVerifier verifier_;
  google::protobuf::RepeatedPtrField<v1::TokenIssuer> issuers_;
  absl::Time now_ = absl::FromUnixSeconds(1800000000);
};

TestTokenIssuer* TokenVerifierTest::contoso_ = nullptr;
TestTokenIssuer* TokenVerifierTest::fabrikam_ = nullptr;

TEST_F(TokenVerifierTest, AcceptsRs256AndEs256FromARegisteredIssuer) {
  for (const char* alg : {"RS256", "ES256"}) {
    nlohmann::json claims = contoso_->Claims(kUser, now_);
    absl::StatusOr<TokenEvidence> got = Verify(contoso_->SignClaims(claims, alg));
    ASSERT_TRUE(got.ok()) << alg << ": " << got.status();
    EXPECT_EQ(got->issuer, contoso_->issuer());
    EXPECT_EQ(got->subject, kUser);
    EXPECT_EQ(got->token_id, claims["jti"].get<std::string>());
    EXPECT_EQ(got->issue_time, now_);
    EXPECT_EQ(got->expire_time, now_ + absl::Minutes(5));
  }
}

TEST_F(TokenVerifierTest, AcceptsWithoutKidAndAnAudienceArray) {
  EXPECT_TRUE(Verify(contoso_->Sign(kUser, now_, {}, "ES256", /*with_kid=*/false)).ok());
  nlohmann::json aud = {{"aud", {"other", "lockbox-portal"}}};
  EXPECT_TRUE(Verify(contoso_->Sign(kUser, now_, aud)).ok());
}

TEST_F(TokenVerifierTest, RefusesTimesOutOfBounds) {
  ExpectRefused(contoso_->Sign(kUser, now_, {{"exp", absl::ToUnixSeconds(now_) - 1}}), "expired");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"exp", absl::ToUnixSeconds(now_)}}), "expired");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"exp", absl::ToUnixSeconds(now_) + 601}}),
                "more than 10 minutes ahead");
  EXPECT_TRUE(Verify(contoso_->Sign(kUser, now_, {{"exp", absl::ToUnixSeconds(now_) + 600}})).ok());
  ExpectRefused(contoso_->Sign(kUser, now_, {{"exp", nullptr}}), "no exp");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"exp", "soon"}}), "no exp");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"iat", nullptr}}), "no iat");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"iat", absl::ToUnixSeconds(now_) + 120}}),
                "iat is in the future");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"nbf", absl::ToUnixSeconds(now_) + 120}}), "nbf");
}

TEST_F(TokenVerifierTest, RefusesMissingOrWrongClaims) {
  ExpectRefused(contoso_->Sign(kUser, now_, {{"jti", nullptr}}), "no jti");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"jti", ""}}), "no jti");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"aud", "someone-else"}}), "aud");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"aud", nullptr}}), "aud");
  ExpectRefused(contoso_->Sign(kUser, now_, {{"iss", "https://evil.example"}}),
                "not a registered issuer");
  ExpectRefused(contoso_->Sign("dana", now_), "sub is not a SPIFFE ID");
}

// Fabrikam's issuer is real and its token well formed, but it is not one of
// contoso's issuers: neither under its own iss nor claiming contoso's.
TEST_F(TokenVerifierTest, RefusesAnotherTenantsIssuerAndKeys) {
  ExpectRefused(fabrikam_->Sign(kUser, now_), "not a registered issuer");
  ExpectRefused(fabrikam_->Sign(kUser, now_, {{"iss", contoso_->issuer()}}, "RS256", false),
                "does not verify");
  // With fabrikam's kid: no key of contoso's has it.
  ExpectRefused(fabrikam_->Sign(kUser, now_, {{"iss", contoso_->issuer()}}, "ES256"),
                "no ES256 key with kid");
}

TEST_F(TokenVerifierTest, RefusesForgedAlgorithms) {
  nlohmann::json claims = contoso_->Claims(kUser, now_);
  ExpectRefused(UnsignedToken(claims), "alg \"none\" is not accepted");
  // The confusion attack: HS256 keyed with the issuer's public key, in the
  // forms a verifier might mistake for a secret.
  ExpectRefused(HmacToken(claims, contoso_->RsaPublicKeyPem(), "c-rsa"),
                "alg \"HS256\" is not accepted");
  ExpectRefused(HmacToken(claims, contoso_->JwksJson()), "alg \"HS256\" is not accepted");
  std::string jwks;
  std::string eddsa = EdDsaToken(claims, &jwks);
  ExpectRefused(eddsa, "EdDSA is not available on this platform");
  // Even with the Ed25519 key registered (which validation refuses).
  issuers_.Mutable(0)->set_jwks_json(jwks);
  ExpectRefused(eddsa, "EdDSA is not available on this platform");
}

TEST_F(TokenVerifierTest, RefusesAKeyOfTheWrongTypeAndTamperedTokens) {
  // RS256 in the header over an ES256 signature: the EC key is not an RSA
  // key, and the RSA key does not verify it.
  std::string es = contoso_->Sign(kUser, now_, {}, "ES256", false);
  std::string header = RawToken({{"alg", "RS256"}}, {}, "");
  std::string swapped = header.substr(0, header.find('.')) + es.substr(es.find('.'));
  ExpectRefused(swapped, "does not verify");
  // A claim changed after signing.
  std::string good = contoso_->Sign(kUser, now_);
  std::string other = contoso_->Sign("spiffe://lockbox.test/tenant/contoso/user/eve", now_);
  size_t a = good.find('.'), b = good.rfind('.');
  size_t oa = other.find('.'), ob = other.rfind('.');
  ExpectRefused(good.substr(0, a) + other.substr(oa, ob - oa) + good.substr(b), "does not verify");
  ExpectRefused("not-a-token", "not a compact JWS");
  ExpectRefused(std::string(9000, 'a'), "longer than 8 KiB");
}

TEST(ValidateTokenIssuerTest, AcceptsRsaAndEcKeysAndRefusesTheRest) {
  TestTokenIssuer issuer("https://login.contoso.example", "lockbox-portal");
  EXPECT_TRUE(ValidateTokenIssuer(issuer.Registration()).ok());

  auto with_jwks = [&](const std::string& jwks) {
    v1::TokenIssuer r = issuer.Registration();
    r.set_jwks_json(jwks);
    return ValidateTokenIssuer(r, "identity.token_issuers[0]");
  };
  std::string ed_jwks;
  EdDsaToken({}, &ed_jwks);
  absl::Status ed = with_jwks(ed_jwks);
  EXPECT_EQ(ed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FieldOf(ed), "identity.token_issuers[0].jwks_json");
  EXPECT_NE(ed.message().find("EdDSA is not available"), std::string::npos) << ed.message();
  EXPECT_FALSE(with_jwks(R"({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})").ok());
  EXPECT_FALSE(with_jwks(R"({"keys": []})").ok());
  EXPECT_FALSE(with_jwks("not json").ok());
  nlohmann::json keys = nlohmann::json::parse(issuer.JwksJson());
  keys["keys"][0]["d"] = "AAAA";
  EXPECT_NE(with_jwks(keys.dump()).message().find("public keys only"), std::string::npos);
  keys = nlohmann::json::parse(issuer.JwksJson());
  keys["keys"][1]["crv"] = "P-384";
  EXPECT_FALSE(with_jwks(keys.dump()).ok());

  v1::TokenIssuer no_audience = issuer.Registration();
  no_audience.clear_audience();
  EXPECT_EQ(FieldOf(ValidateTokenIssuer(no_audience, "i")), "i.audience");
}

}  // namespace
}  // namespace lockbox
