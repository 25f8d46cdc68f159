// Signed decisions of lockbox/decision.h (library lockbox_audit), with
// OpenSSL 3. The encoding is docs/SIGNED_DECISIONS.md.
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <functional>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "lockbox/decision.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

constexpr char kTag[] = "lockbox.decision.v1";
// A break-glass review's: its own purpose, so that no decision's signature
// verifies as a review, nor a review's as a decision.
constexpr char kReviewTag[] = "lockbox.emergency_review.v1";
constexpr int kMinRsaBits = 2048;

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using Store = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

void CertStackFree(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
using CertStack = std::unique_ptr<STACK_OF(X509), Deleter<STACK_OF(X509), CertStackFree>>;

void Put(absl::string_view value, std::string* out) {
  uint32_t n = static_cast<uint32_t>(value.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((n >> shift) & 0xff));
  out->append(value.data(), value.size());
}

absl::Status Invalid(absl::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kSignatureInvalid, why);
}

Bio MemBio(const std::string& data) {
  return Bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// Every certificate in a PEM text, in order.
CertStack ReadCertificates(const std::string& pem) {
  CertStack out(sk_X509_new_null());
  Bio bio = MemBio(pem);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    sk_X509_push(out.get(), cert);
  }
  // The loop ends on a failed read (at best "no start line" at the end):
  // left on the thread's queue, it would be blamed on its next OpenSSL call.
  ERR_clear_error();
  return out;
}

absl::StatusOr<Cert> FirstCertificate(const std::string& pem) {
  Bio bio = MemBio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    ERR_clear_error();
    return Invalid("the signer's certificate is not a PEM certificate");
  }
  return cert;
}

// The key types docs/SIGNED_DECISIONS.md allows, and the digest each
// signs with (none for Ed25519, which hashes by itself).
absl::StatusOr<const EVP_MD*> DigestFor(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: {
      char group[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1 ||
          std::string(group, len) != "prime256v1") {
        return Invalid("an EC key must be on P-256");
      }
      return EVP_sha256();
    }
    case EVP_PKEY_RSA:
      if (EVP_PKEY_get_bits(key) < kMinRsaBits) {
        return Invalid(absl::StrCat("an RSA key must have at least ", kMinRsaBits, " bits"));
      }
      return EVP_sha256();
    case EVP_PKEY_ED25519:
      return static_cast<const EVP_MD*>(nullptr);
    default:
      return Invalid("the key must be EC P-256, RSA or Ed25519");
  }
}

const unsigned char* Bytes(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

bool VerifyWith(EVP_PKEY* key, const EVP_MD* md, int rsa_padding, const std::string& data,
                const std::string& signature) {
  MdCtx ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, key) != 1) return false;
  if (rsa_padding == RSA_PKCS1_PSS_PADDING &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) != 1)) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), Bytes(signature), signature.size(), Bytes(data),
                          data.size()) == 1;
}

int64_t Micros(const google::protobuf::Timestamp& t) {
  return t.seconds() * 1000000 + t.nanos() / 1000;
}

int64_t Micros(const google::protobuf::Duration& d) {
  return d.seconds() * 1000000 + d.nanos() / 1000;
}

// Signs canonical bytes (a decision's or a review's) with a PEM private key
// of a type DigestFor allows.
absl::StatusOr<std::string> SignBytes(const std::string& private_key_pem, const std::string& data) {
  Bio bio = MemBio(private_key_pem);
  Key key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    ERR_clear_error();
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                 "the signing key is not a PEM private key");
  }
  absl::StatusOr<const EVP_MD*> md = DigestFor(key.get());
  if (!md.ok()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField, md.status().message());
  }
  MdCtx ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, *md, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, Bytes(data), data.size()) != 1) {
    return Error(absl::StatusCode::kInternal, reason::kInternal, "crypto: cannot sign");
  }
  std::string signature(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                     Bytes(data), data.size()) != 1) {
    return Error(absl::StatusCode::kInternal, reason::kInternal, "crypto: signing failed");
  }
  signature.resize(len);
  return signature;
}

// Whether `signature` over `data` verifies with the first certificate's
// key; `what` names the signed fields in the refusal.
absl::Status VerifyBytes(const std::string& certificate_pem, const std::string& data,
                         const std::string& signature, absl::string_view what) {
  ASSIGN_OR_RETURN(Cert cert, FirstCertificate(certificate_pem));
  EVP_PKEY* key = X509_get0_pubkey(cert.get());
  if (key == nullptr) return Invalid("the signer's certificate has no readable public key");
  ASSIGN_OR_RETURN(const EVP_MD* md, DigestFor(key));
  bool rsa = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
  if (VerifyWith(key, md, rsa ? RSA_PKCS1_PADDING : 0, data, signature) ||
      (rsa && VerifyWith(key, md, RSA_PKCS1_PSS_PADDING, data, signature))) {
    return absl::OkStatus();
  }
  return Invalid(absl::StrCat("the ", what, " with the signer's certificate"));
}

}  // namespace

std::string CanonicalDecisionBytes(const DecisionToSign& d) {
  std::string out = kTag;
  Put(d.request, &out);
  Put(d.etag, &out);
  Put(v1::Decision::Verdict_Name(d.verdict), &out);
  Put(d.comment, &out);
  Put(absl::StrCat(Micros(d.sign_time)), &out);
  // Narrowing only when present: older signatures keep verifying, and a
  // server that dropped a narrowing would have different bytes to show.
  if (d.access_duration) {
    Put("access_duration", &out);
    Put(absl::StrCat(Micros(*d.access_duration)), &out);
  }
  if (!d.data_sources.empty()) {
    Put("data_sources", &out);
    Put(absl::StrCat(d.data_sources.size()), &out);
    for (const std::string& id : d.data_sources) Put(id, &out);
  }
  if (d.start_time) {
    Put("start_time", &out);
    Put(absl::StrCat(Micros(*d.start_time)), &out);
  }
  return out;
}

void PutNarrowingDetails(const DecisionToSign& d,
                         google::protobuf::Map<std::string, std::string>* details) {
  using google::protobuf::util::TimeUtil;
  if (d.access_duration) {
    (*details)["narrowed.access_duration"] = TimeUtil::ToString(*d.access_duration);
  }
  if (!d.data_sources.empty()) {
    (*details)["narrowed.data_sources"] = absl::StrJoin(d.data_sources, ",");
  }
  if (d.start_time) (*details)["narrowed.start_time"] = TimeUtil::ToString(*d.start_time);
}

absl::Status NarrowingFromDetails(const google::protobuf::Map<std::string, std::string>& details,
                                  DecisionToSign* d) {
  using google::protobuf::util::TimeUtil;
  auto it = details.find("narrowed.access_duration");
  if (it != details.end()) {
    google::protobuf::Duration v;
    if (!TimeUtil::FromString(it->second, &v)) {
      return Invalid("narrowed.access_duration is not a duration such as \"5400s\"");
    }
    d->access_duration = v;
  }
  it = details.find("narrowed.data_sources");
  if (it != details.end()) {
    d->data_sources = absl::StrSplit(it->second, ',');
  }
  it = details.find("narrowed.start_time");
  if (it != details.end()) {
    google::protobuf::Timestamp v;
    if (!TimeUtil::FromString(it->second, &v)) {
      return Invalid("narrowed.start_time is not an RFC 3339 time");
    }
    d->start_time = v;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SignDecision(const std::string& private_key_pem,
                                         const DecisionToSign& d) {
  return SignBytes(private_key_pem, CanonicalDecisionBytes(d));
}

absl::Status VerifyDecisionSignature(const std::string& certificate_pem, const DecisionToSign& d,
                                     const std::string& signature) {
  return VerifyBytes(certificate_pem, CanonicalDecisionBytes(d), signature,
                     "decision's signature does not verify over its request, etag, verdict, "
                     "comment and sign time");
}

std::string CanonicalReviewBytes(const ReviewToSign& r) {
  std::string out = kReviewTag;
  Put(r.request, &out);
  Put(r.etag, &out);
  Put(v1::EmergencyReview::Verdict_Name(r.verdict), &out);
  Put(r.comment, &out);
  Put(absl::StrCat(Micros(r.sign_time)), &out);
  return out;
}

absl::StatusOr<std::string> SignReview(const std::string& private_key_pem, const ReviewToSign& r) {
  return SignBytes(private_key_pem, CanonicalReviewBytes(r));
}

absl::Status VerifyReviewSignature(const std::string& certificate_pem, const ReviewToSign& r,
                                   const std::string& signature) {
  return VerifyBytes(certificate_pem, CanonicalReviewBytes(r), signature,
                     "review's signature does not verify over its request, etag, verdict, "
                     "comment and sign time");
}

absl::StatusOr<std::string> CertificateSpiffeId(const std::string& certificate_pem) {
  ASSIGN_OR_RETURN(Cert cert, FirstCertificate(certificate_pem));
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  std::string id;
  int found = 0;
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                      ASN1_STRING_length(uri));
    if (absl::StartsWith(value, "spiffe://")) {
      id = value;
      ++found;
    }
  }
  GENERAL_NAMES_free(names);
  if (found != 1) return Invalid("the signer's certificate must carry exactly one SPIFFE ID");
  return id;
}

absl::StatusOr<std::string> CertificateSha256(const std::string& certificate_pem) {
  ASSIGN_OR_RETURN(Cert cert, FirstCertificate(certificate_pem));
  unsigned char* der = nullptr;
  int len = i2d_X509(cert.get(), &der);
  if (len <= 0) return Invalid("the certificate cannot be encoded");
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<size_t>(len), digest);
  OPENSSL_free(der);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), sizeof digest));
}

absl::Status VerifyCertificateChain(const std::string& certificate_pem,
                                    const std::string& bundle_pem,
                                    const google::protobuf::Timestamp& at) {
  CertStack given = ReadCertificates(certificate_pem);
  if (sk_X509_num(given.get()) == 0) return Invalid("the signer's certificate is not PEM");
  CertStack anchors = ReadCertificates(bundle_pem);
  if (sk_X509_num(anchors.get()) == 0)
    return Invalid("the tenant's CA bundle holds no certificate");
  Store store(X509_STORE_new());
  for (int i = 0; i < sk_X509_num(anchors.get()); ++i) {
    X509_STORE_add_cert(store.get(), sk_X509_value(anchors.get(), i));
  }
  X509* leaf = sk_X509_value(given.get(), 0);
  CertStack intermediates(sk_X509_new_null());
  for (int i = 1; i < sk_X509_num(given.get()); ++i) {
    X509* c = sk_X509_value(given.get(), i);
    X509_up_ref(c);
    sk_X509_push(intermediates.get(), c);
  }
  StoreCtx ctx(X509_STORE_CTX_new());
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, intermediates.get()) != 1) {
    return Error(absl::StatusCode::kInternal, reason::kInternal, "crypto: cannot verify a chain");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  // A tenant may register an intermediate CA as its anchor.
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  // Offline, the certificate may have expired since it signed.
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(at.seconds()));
  if (X509_verify_cert(ctx.get()) != 1) {
    return Invalid(
        absl::StrCat("the signer's certificate does not chain to the tenant's CA bundle: ",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()))));
  }
  return absl::OkStatus();
}

std::string FormatSignTime(const google::protobuf::Timestamp& t) {
  absl::Time time = absl::FromUnixMicros(Micros(t));
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", time, absl::UTCTimeZone());
}

absl::StatusOr<google::protobuf::Timestamp> ParseSignTime(const std::string& text) {
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &time, &error)) {
    return Invalid(absl::StrCat("evidence.sign_time is not RFC 3339: ", error));
  }
  int64_t us = absl::ToUnixMicros(time);
  google::protobuf::Timestamp t;
  t.set_seconds(us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000));
  t.set_nanos(static_cast<int32_t>((us - t.seconds() * 1000000) * 1000));
  if (FormatSignTime(t) != text) {
    return Invalid("evidence.sign_time must be UTC with exactly six fractional digits");
  }
  return t;
}

namespace {

// What a signed decision's and a signed review's events share: the
// signature (evidence.signature, base64) checked by `verify` over the bytes
// rebuilt from the event with evidence.signer_certificate_pem, whose SPIFFE
// ID must be the event's actor and which must chain to `bundle_pem` at
// evidence.sign_time. False when the event carries no signature.
using VerifyEventBytes = std::function<absl::Status(const std::string& certificate,
                                                    const google::protobuf::Timestamp& sign_time,
                                                    const std::string& signature)>;
absl::StatusOr<bool> VerifySignedEvent(const v1::AuditEvent& e, const std::string& bundle_pem,
                                       absl::string_view what, const VerifyEventBytes& verify) {
  const auto& details = e.details();
  auto signature_b64 = details.find("evidence.signature");
  if (signature_b64 == details.end()) return false;
  auto field = [&](const char* key) {
    auto it = details.find(key);
    return it == details.end() ? std::string() : it->second;
  };
  ASSIGN_OR_RETURN(google::protobuf::Timestamp sign_time,
                   ParseSignTime(field("evidence.sign_time")));
  std::string signature;
  if (!absl::Base64Unescape(signature_b64->second, &signature)) {
    return Invalid("evidence.signature is not base64");
  }
  const std::string certificate = field("evidence.signer_certificate_pem");
  RETURN_IF_ERROR(verify(certificate, sign_time, signature));
  ASSIGN_OR_RETURN(std::string signer, CertificateSpiffeId(certificate));
  if (signer != e.actor()) {
    return Invalid(
        absl::StrCat("the ", what, " was signed by ", signer, ", not by its actor ", e.actor()));
  }
  RETURN_IF_ERROR(VerifyCertificateChain(certificate, bundle_pem, sign_time));
  return true;
}

std::string DetailOf(const v1::AuditEvent& e, const char* key) {
  auto it = e.details().find(key);
  return it == e.details().end() ? std::string() : it->second;
}

}  // namespace

absl::StatusOr<bool> VerifySignedDecisionEvent(const v1::AuditEvent& e,
                                               const std::string& bundle_pem) {
  if (e.details().count("evidence.signature") == 0) return false;
  if (e.action() == kEmergencyReviewAction) return VerifySignedReviewEvent(e, bundle_pem);
  DecisionToSign d;
  if (e.action() == "access_request.approve") {
    d.verdict = v1::Decision::APPROVE;
  } else if (e.action() == "access_request.deny") {
    d.verdict = v1::Decision::DENY;
  } else {
    return Invalid(absl::StrCat("a ", e.action(), " event carries a decision signature"));
  }
  d.request = e.resource();
  d.etag = DetailOf(e, "evidence.etag");
  d.comment = DetailOf(e, "comment");
  RETURN_IF_ERROR(NarrowingFromDetails(e.details(), &d));
  return VerifySignedEvent(
      e, bundle_pem, "decision",
      [&](const std::string& certificate, const google::protobuf::Timestamp& sign_time,
          const std::string& signature) {
        d.sign_time = sign_time;
        return VerifyDecisionSignature(certificate, d, signature);
      });
}

absl::StatusOr<bool> VerifySignedReviewEvent(const v1::AuditEvent& e,
                                             const std::string& bundle_pem) {
  if (e.details().count("evidence.signature") == 0) return false;
  if (e.action() != kEmergencyReviewAction) {
    return Invalid(absl::StrCat("a ", e.action(), " event is not a break-glass review"));
  }
  ReviewToSign r;
  r.request = e.resource();
  r.etag = DetailOf(e, "evidence.etag");
  r.comment = DetailOf(e, "comment");
  // The verdict's name as the event records it: anything but ACCEPT or
  // DISPUTE cannot have been signed.
  if (!v1::EmergencyReview::Verdict_Parse(DetailOf(e, "verdict"), &r.verdict) ||
      r.verdict == v1::EmergencyReview::VERDICT_UNSPECIFIED) {
    return Invalid("a signed review's event must record its verdict, ACCEPT or DISPUTE");
  }
  return VerifySignedEvent(
      e, bundle_pem, "review",
      [&](const std::string& certificate, const google::protobuf::Timestamp& sign_time,
          const std::string& signature) {
        r.sign_time = sign_time;
        return VerifyReviewSignature(certificate, r, signature);
      });
}

}  // namespace lockbox
