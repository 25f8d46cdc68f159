// Signed decisions (lockbox/decision.h, docs/SIGNED_DECISIONS.md): the
// bytes, signing and verifying with each key type, and every field bound.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <functional>

#include "absl/strings/escaping.h"
#include "lockbox/decision.h"
#include "lockbox/error_reason.h"
#include "server/domain/status.h"
#include "tests/support/test_pki.h"

namespace lockbox {
namespace {

using testing::NewCa;
using testing::NewKeyPem;
using testing::NewLeaf;
using testing::TestCertificate;

constexpr char kUser[] = "spiffe://lockbox.test/tenant/ma/user/dana";

DecisionToSign Example() {
  DecisionToSign d;
  d.request = "tenants/ma/accessRequests/r1";
  d.etag = "\"7\"";
  d.verdict = v1::Decision::APPROVE;
  d.comment = "ok";
  d.sign_time.set_seconds(1796126400);  // 2026-12-01T12:00:00Z
  d.sign_time.set_nanos(123456789);     // below the microsecond: dropped
  return d;
}

TEST(DecisionSigning, GoldenBytes) {
  // The example of docs/SIGNED_DECISIONS.md, byte for byte.
  EXPECT_EQ(absl::BytesToHexString(CanonicalDecisionBytes(Example())),
            "6c6f636b626f782e6465636973696f6e2e7631"
            "0000001c74656e616e74732f6d612f61636365737352657175657374732f7231"
            "00000003223722"
            "00000007415050524f5645"
            "000000026f6b"
            "0000001031373936313236343030313233343536");
}

TEST(DecisionSigning, LengthPrefixesKeepFieldsApart) {
  DecisionToSign a = Example(), b = Example();
  a.etag = "\"7\"x";
  a.comment = "";
  b.etag = "\"7\"";
  b.comment = "x";
  EXPECT_NE(CanonicalDecisionBytes(a), CanonicalDecisionBytes(b));
}

TEST(DecisionSigning, SignTimeRoundTripsAtTheMicrosecond) {
  DecisionToSign d = Example();
  EXPECT_EQ(FormatSignTime(d.sign_time), "2026-12-01T12:00:00.123456Z");
  auto back = ParseSignTime("2026-12-01T12:00:00.123456Z");
  ASSERT_TRUE(back.ok()) << back.status();
  d.sign_time = *back;
  EXPECT_EQ(CanonicalDecisionBytes(d), CanonicalDecisionBytes(Example()));
  EXPECT_FALSE(ParseSignTime("2026-12-01T12:00:00.1234Z").ok());
  EXPECT_FALSE(ParseSignTime("2026-12-01T13:00:00.123456+01:00").ok());
}

// Narrowing (SPEC section 10): in the bytes only when present, each field
// tagged, so a decision without it keeps its old bytes (GoldenBytes) and a
// server that drops or changes a narrowing has different bytes to show.
DecisionToSign Narrowed() {
  DecisionToSign d = Example();
  google::protobuf::Duration two_hours;
  two_hours.set_seconds(7200);
  d.access_duration = two_hours;
  d.data_sources = {"sql", "blob"};
  google::protobuf::Timestamp start;
  start.set_seconds(1796130000);
  d.start_time = start;
  return d;
}

TEST(DecisionSigning, NarrowingGoldenBytes) {
  // The narrowing example of docs/SIGNED_DECISIONS.md: the old bytes, then
  // the three tagged fields.
  EXPECT_EQ(absl::BytesToHexString(CanonicalDecisionBytes(Narrowed())),
            absl::BytesToHexString(CanonicalDecisionBytes(Example())) +
                "0000000f6163636573735f6475726174696f6e"
                "0000000a37323030303030303030"
                "0000000c646174615f736f7572636573"
                "0000000132"
                "0000000373716c"
                "00000004626c6f62"
                "0000000a73746172745f74696d65"
                "0000001031373936313330303030303030303030");
}

TEST(DecisionSigning, EveryNarrowingFieldIsCovered) {
  const std::string base = CanonicalDecisionBytes(Narrowed());
  const std::vector<std::function<void(DecisionToSign*)>> tamper = {
      [](DecisionToSign* x) { x->access_duration.reset(); },
      [](DecisionToSign* x) { x->access_duration->set_seconds(7201); },
      [](DecisionToSign* x) { x->data_sources.clear(); },
      [](DecisionToSign* x) { x->data_sources.pop_back(); },
      [](DecisionToSign* x) {
        x->data_sources = {"blob", "sql"};
      },
      [](DecisionToSign* x) { x->start_time.reset(); },
      [](DecisionToSign* x) { x->start_time->set_seconds(1796130001); },
  };
  for (size_t i = 0; i < tamper.size(); ++i) {
    DecisionToSign changed = Narrowed();
    tamper[i](&changed);
    EXPECT_NE(CanonicalDecisionBytes(changed), base) << "change " << i;
  }
}

TEST(DecisionSigning, NarrowingRoundTripsThroughAuditDetails) {
  google::protobuf::Map<std::string, std::string> details;
  PutNarrowingDetails(Narrowed(), &details);
  EXPECT_EQ(details.at("narrowed.access_duration"), "7200s");
  EXPECT_EQ(details.at("narrowed.data_sources"), "sql,blob");
  EXPECT_EQ(details.at("narrowed.start_time"), "2026-12-01T13:00:00Z");
  DecisionToSign back = Example();
  ASSERT_TRUE(NarrowingFromDetails(details, &back).ok());
  EXPECT_EQ(CanonicalDecisionBytes(back), CanonicalDecisionBytes(Narrowed()));
  google::protobuf::Map<std::string, std::string> none;
  PutNarrowingDetails(Example(), &none);
  EXPECT_TRUE(none.empty());
  details["narrowed.access_duration"] = "two hours";
  EXPECT_FALSE(NarrowingFromDetails(details, &back).ok());
}

class KeyTypes : public ::testing::TestWithParam<std::string> {};

TEST_P(KeyTypes, SignsAndVerifiesAndRefusesEveryTamperedField) {
  TestCertificate ca = NewCa("Tenant MA CA");
  TestCertificate user = NewLeaf(ca, kUser, GetParam());
  DecisionToSign d = Example();
  auto signature = SignDecision(user.key_pem, d);
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(VerifyDecisionSignature(user.certificate_pem, d, *signature).ok());

  const std::vector<std::function<void(DecisionToSign*)>> tamper = {
      [](DecisionToSign* x) { x->request = "tenants/ma/accessRequests/r2"; },
      [](DecisionToSign* x) { x->etag = "\"8\""; },
      [](DecisionToSign* x) { x->verdict = v1::Decision::DENY; },
      [](DecisionToSign* x) { x->comment = "ok!"; },
      [](DecisionToSign* x) { x->sign_time.set_nanos(x->sign_time.nanos() + 1000); },
  };
  for (size_t i = 0; i < tamper.size(); ++i) {
    DecisionToSign changed = d;
    tamper[i](&changed);
    absl::Status s = VerifyDecisionSignature(user.certificate_pem, changed, *signature);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "field " << i;
    EXPECT_EQ(ReasonOf(s), std::string(reason::kSignatureInvalid)) << "field " << i;
  }
  std::string flipped = *signature;
  flipped[flipped.size() / 2] ^= 1;
  EXPECT_FALSE(VerifyDecisionSignature(user.certificate_pem, d, flipped).ok());
  // Another user's certificate does not verify it.
  TestCertificate other = NewLeaf(ca, kUser, GetParam());
  EXPECT_FALSE(VerifyDecisionSignature(other.certificate_pem, d, *signature).ok());
}

INSTANTIATE_TEST_SUITE_P(EcRsaEd25519, KeyTypes, ::testing::Values("ec", "rsa", "ed25519"));

// RSA-PSS (SHA-256, MGF1-SHA-256), as a browser's WebCrypto or an HSM may
// make it, verifies as well as PKCS#1 v1.5.
TEST(DecisionSigning, RsaPssVerifies) {
  TestCertificate ca = NewCa("CA");
  TestCertificate user = NewLeaf(ca, kUser, "rsa");
  BIO* bio = BIO_new_mem_buf(user.key_pem.data(), static_cast<int>(user.key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(key, nullptr);
  std::string data = CanonicalDecisionBytes(Example());
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  ASSERT_EQ(EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), nullptr, key), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
  std::string signature(512, '\0');
  size_t len = signature.size();
  ASSERT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &len,
                           reinterpret_cast<const unsigned char*>(data.data()), data.size()),
            1);
  signature.resize(len);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  EXPECT_TRUE(VerifyDecisionSignature(user.certificate_pem, Example(), signature).ok());
  DecisionToSign other = Example();
  other.comment = "no";
  EXPECT_FALSE(VerifyDecisionSignature(user.certificate_pem, other, signature).ok());
}

TEST(DecisionSigning, RefusesOtherKeyTypes) {
  TestCertificate ca = NewCa("CA");
  for (const char* type : {"ec384", "rsa1024"}) {
    EXPECT_FALSE(SignDecision(NewKeyPem(type), Example()).ok()) << type;
    TestCertificate user = NewLeaf(ca, kUser, type);
    EXPECT_EQ(ReasonOf(VerifyDecisionSignature(user.certificate_pem, Example(), "sig")),
              std::string(reason::kSignatureInvalid))
        << type;
  }
  EXPECT_FALSE(SignDecision("not a key", Example()).ok());
}

TEST(DecisionSigning, CertificateSpiffeIdAndChain) {
  TestCertificate ca = NewCa("Tenant MA CA");
  TestCertificate other_ca = NewCa("Provider CA", "ed25519");
  TestCertificate user = NewLeaf(ca, kUser);
  auto id = CertificateSpiffeId(user.certificate_pem);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, kUser);
  auto sha = CertificateSha256(user.certificate_pem);
  ASSERT_TRUE(sha.ok());
  EXPECT_EQ(sha->size(), 64u);

  google::protobuf::Timestamp now;
  now.set_seconds(time(nullptr));
  EXPECT_TRUE(VerifyCertificateChain(user.certificate_pem, ca.certificate_pem, now).ok());
  // A bundle of several CAs: any one is the anchor.
  EXPECT_TRUE(VerifyCertificateChain(user.certificate_pem,
                                     other_ca.certificate_pem + ca.certificate_pem, now)
                  .ok());
  absl::Status wrong = VerifyCertificateChain(user.certificate_pem, other_ca.certificate_pem, now);
  EXPECT_EQ(ReasonOf(wrong), std::string(reason::kSignatureInvalid));
  // Checked at the sign time: two days ahead the certificate has expired.
  google::protobuf::Timestamp later = now;
  later.set_seconds(now.seconds() + 2 * 24 * 3600);
  EXPECT_FALSE(VerifyCertificateChain(user.certificate_pem, ca.certificate_pem, later).ok());
}

// A PEM read that fails (as every read loop's last does) leaves nothing on
// the thread's OpenSSL error queue for a later call to be blamed for.
TEST(DecisionSigning, LeavesNoOpenSslErrorQueued) {
  TestCertificate ca = NewCa("Tenant MA CA");
  TestCertificate user = NewLeaf(ca, kUser);
  google::protobuf::Timestamp now;
  now.set_seconds(time(nullptr));
  ERR_clear_error();
  EXPECT_TRUE(VerifyCertificateChain(user.certificate_pem, ca.certificate_pem, now).ok());
  EXPECT_EQ(ERR_peek_error(), 0u) << "after the read loops";
  EXPECT_FALSE(CertificateSha256("not a certificate").ok());
  EXPECT_EQ(ERR_peek_error(), 0u) << "after a failed certificate read";
  EXPECT_FALSE(SignDecision("not a key", Example()).ok());
  EXPECT_EQ(ERR_peek_error(), 0u) << "after a failed key read";
}

// An audit event as lockboxd records a signed customer decision.
v1::AuditEvent SignedEvent(const TestCertificate& user, const DecisionToSign& d) {
  v1::AuditEvent e;
  e.set_name("tenants/ma/auditEvents/9");
  e.set_actor(kUser);
  e.set_action("access_request.approve");
  e.set_resource(d.request);
  auto& details = *e.mutable_details();
  details["stage"] = "CUSTOMER_REVIEW";
  details["comment"] = d.comment;
  details["evidence.signed"] = "true";
  details["evidence.signature"] = absl::Base64Escape(*SignDecision(user.key_pem, d));
  details["evidence.signer_certificate_pem"] = user.certificate_pem;
  details["evidence.sign_time"] = FormatSignTime(d.sign_time);
  details["evidence.etag"] = d.etag;
  return e;
}

TEST(DecisionSigning, SignedDecisionEvent) {
  TestCertificate ca = NewCa("Tenant MA CA");
  TestCertificate user = NewLeaf(ca, kUser);
  DecisionToSign d = Example();
  d.sign_time.set_seconds(time(nullptr));
  d.sign_time.set_nanos(0);
  v1::AuditEvent e = SignedEvent(user, d);
  auto ok = VerifySignedDecisionEvent(e, ca.certificate_pem);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(*ok);

  v1::AuditEvent unsigned_event = e;
  unsigned_event.mutable_details()->erase("evidence.signature");
  EXPECT_FALSE(*VerifySignedDecisionEvent(unsigned_event, ca.certificate_pem));

  for (const char* key : {"comment", "evidence.etag", "evidence.sign_time"}) {
    v1::AuditEvent changed = e;
    (*changed.mutable_details())[key] =
        std::string(key) == "evidence.sign_time" ? "2020-01-01T00:00:00.000000Z" : "other";
    EXPECT_FALSE(VerifySignedDecisionEvent(changed, ca.certificate_pem).ok()) << key;
  }
  v1::AuditEvent as_deny = e;
  as_deny.set_action("access_request.deny");
  EXPECT_FALSE(VerifySignedDecisionEvent(as_deny, ca.certificate_pem).ok());
  v1::AuditEvent other_actor = e;
  other_actor.set_actor("spiffe://lockbox.test/tenant/ma/user/ghost");
  EXPECT_FALSE(VerifySignedDecisionEvent(other_actor, ca.certificate_pem).ok());
  // Signed by a certificate of the right name from another CA (the
  // provider's): refused against the tenant's bundle.
  TestCertificate provider_ca = NewCa("Provider CA");
  v1::AuditEvent forged = SignedEvent(NewLeaf(provider_ca, kUser), d);
  EXPECT_FALSE(VerifySignedDecisionEvent(forged, ca.certificate_pem).ok());
}

// Break-glass reviews (docs/SIGNED_DECISIONS.md, "Break-glass reviews").
ReviewToSign ExampleReview() {
  ReviewToSign r;
  r.request = "tenants/ma/accessRequests/r1";
  r.etag = "\"7\"";
  r.verdict = v1::EmergencyReview::ACCEPT;
  r.comment = "ok";
  r.sign_time.set_seconds(1796126400);  // 2026-12-01T12:00:00Z
  r.sign_time.set_nanos(123456789);     // below the microsecond: dropped
  return r;
}

TEST(ReviewSigning, GoldenBytes) {
  // The example of docs/SIGNED_DECISIONS.md, byte for byte.
  EXPECT_EQ(absl::BytesToHexString(CanonicalReviewBytes(ExampleReview())),
            "6c6f636b626f782e656d657267656e63795f7265766965772e7631"
            "0000001c74656e616e74732f6d612f61636365737352657175657374732f7231"
            "00000003223722"
            "00000006414343455054"
            "000000026f6b"
            "0000001031373936313236343030313233343536");
}

TEST(ReviewSigning, BytesAndSignaturesAreNotADecisions) {
  // The same request, etag, comment and time as a decision: other bytes
  // (the purpose tag), whatever the verdicts.
  const ReviewToSign review = ExampleReview();
  DecisionToSign decision = Example();
  for (auto verdict : {v1::Decision::APPROVE, v1::Decision::DENY}) {
    decision.verdict = verdict;
    EXPECT_NE(CanonicalReviewBytes(review), CanonicalDecisionBytes(decision));
  }
  TestCertificate ca = NewCa("Tenant MA CA");
  TestCertificate user = NewLeaf(ca, kUser);
  // A decision's signature does not verify as a review, and back.
  decision.verdict = v1::Decision::APPROVE;
  auto decision_signature = SignDecision(user.key_pem, decision);
  ASSERT_TRUE(decision_signature.ok()) << decision_signature.status();
  absl::Status replayed = VerifyReviewSignature(user.certificate_pem, review, *decision_signature);
  EXPECT_EQ(ReasonOf(replayed), std::string(reason::kSignatureInvalid));
  auto review_signature = SignReview(user.key_pem, review);
  ASSERT_TRUE(review_signature.ok()) << review_signature.status();
  EXPECT_TRUE(VerifyReviewSignature(user.certificate_pem, review, *review_signature).ok());
  EXPECT_FALSE(VerifyDecisionSignature(user.certificate_pem, decision, *review_signature).ok());
}

TEST(ReviewSigning, EveryFieldIsBound) {
  TestCertificate ca = NewCa("Tenant MA CA");
  TestCertificate user = NewLeaf(ca, kUser, "ed25519");
  const ReviewToSign r = ExampleReview();
  auto signature = SignReview(user.key_pem, r);
  ASSERT_TRUE(signature.ok()) << signature.status();
  const std::vector<std::function<void(ReviewToSign*)>> tamper = {
      [](ReviewToSign* x) { x->request = "tenants/ma/accessRequests/r2"; },
      [](ReviewToSign* x) { x->etag = "\"8\""; },
      [](ReviewToSign* x) { x->verdict = v1::EmergencyReview::DISPUTE; },
      [](ReviewToSign* x) { x->comment = "ok!"; },
      [](ReviewToSign* x) { x->sign_time.set_nanos(x->sign_time.nanos() + 1000); },
  };
  for (size_t i = 0; i < tamper.size(); ++i) {
    ReviewToSign changed = r;
    tamper[i](&changed);
    EXPECT_FALSE(VerifyReviewSignature(user.certificate_pem, changed, *signature).ok())
        << "field " << i;
  }
  EXPECT_FALSE(SignReview("not a key", r).ok());
}

// An audit event as lockboxd records a signed break-glass review.
v1::AuditEvent SignedReviewEvent(const TestCertificate& user, const ReviewToSign& r) {
  v1::AuditEvent e;
  e.set_name("tenants/ma/auditEvents/10");
  e.set_actor(kUser);
  e.set_action("access_request.emergency_review");
  e.set_resource(r.request);
  auto& details = *e.mutable_details();
  details["verdict"] = v1::EmergencyReview::Verdict_Name(r.verdict);
  details["comment"] = r.comment;
  details["evidence.signed"] = "true";
  details["evidence.signature"] = absl::Base64Escape(*SignReview(user.key_pem, r));
  details["evidence.signer_certificate_pem"] = user.certificate_pem;
  details["evidence.sign_time"] = FormatSignTime(r.sign_time);
  details["evidence.etag"] = r.etag;
  return e;
}

TEST(ReviewSigning, SignedReviewEvent) {
  TestCertificate ca = NewCa("Tenant MA CA");
  TestCertificate user = NewLeaf(ca, kUser);
  ReviewToSign r = ExampleReview();
  r.sign_time.set_seconds(time(nullptr));
  r.sign_time.set_nanos(0);
  v1::AuditEvent e = SignedReviewEvent(user, r);
  for (auto* verify : {&VerifySignedReviewEvent, &VerifySignedDecisionEvent}) {
    auto ok = (*verify)(e, ca.certificate_pem);
    ASSERT_TRUE(ok.ok()) << ok.status();
    EXPECT_TRUE(*ok);
  }
  v1::AuditEvent unsigned_event = e;
  unsigned_event.mutable_details()->erase("evidence.signature");
  EXPECT_FALSE(*VerifySignedReviewEvent(unsigned_event, ca.certificate_pem));
  for (const char* key : {"verdict", "comment", "evidence.etag", "evidence.sign_time"}) {
    v1::AuditEvent changed = e;
    (*changed.mutable_details())[key] = std::string(key) == "evidence.sign_time"
                                            ? "2020-01-01T00:00:00.000000Z"
                                        : std::string(key) == "verdict" ? "DISPUTE"
                                                                        : "other";
    EXPECT_FALSE(VerifySignedReviewEvent(changed, ca.certificate_pem).ok()) << key;
  }
  v1::AuditEvent other_actor = e;
  other_actor.set_actor("spiffe://lockbox.test/tenant/ma/user/ghost");
  EXPECT_FALSE(VerifySignedReviewEvent(other_actor, ca.certificate_pem).ok());
  // A decision's signature carried by a review's event: refused.
  DecisionToSign d = Example();
  d.sign_time = r.sign_time;
  v1::AuditEvent replayed = e;
  (*replayed.mutable_details())["evidence.signature"] =
      absl::Base64Escape(*SignDecision(user.key_pem, d));
  EXPECT_FALSE(VerifySignedReviewEvent(replayed, ca.certificate_pem).ok());
  // And a review's signature under a decision's action.
  v1::AuditEvent as_approve = e;
  as_approve.set_action("access_request.approve");
  EXPECT_FALSE(VerifySignedDecisionEvent(as_approve, ca.certificate_pem).ok());
  TestCertificate provider_ca = NewCa("Provider CA");
  v1::AuditEvent forged = SignedReviewEvent(NewLeaf(provider_ca, kUser), r);
  EXPECT_FALSE(VerifySignedReviewEvent(forged, ca.certificate_pem).ok());
}

}  // namespace
}  // namespace lockbox
