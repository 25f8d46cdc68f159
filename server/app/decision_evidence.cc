// The evidence of a customer's decision or review (decision_evidence.h).
#include "server/app/decision_evidence.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "lockbox/decision.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

// How far a decision's sign time may be from the server's clock.
constexpr absl::Duration kSignTimeSkew = absl::Minutes(5);

absl::Status SignatureInvalid(absl::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kSignatureInvalid, why);
}

// The certificate whose key signed a customer's decision: over direct mTLS
// the TLS peer's (proven by the transport and at authentication); through a
// portal the one the signature carries, which must be the token user's own
// and chain to their tenant's bundle; then `proven` gets how it was proven
// (the anchor only when the server's verifier proved it).
absl::StatusOr<std::string> SignerCertificate(const UseCaseRunner& runner, Transaction& tx,
                                              const CallerIdentity& c, const Actor& a,
                                              const std::string& tenant,
                                              const v1::DecisionSignature& signature,
                                              absl::Time now, CertificateEvidence* proven) {
  if (!a.via) {
    if (c.certificate_pem.empty()) {
      return SignatureInvalid("the connection carries no client certificate to verify it with");
    }
    if (!signature.certificate_pem().empty()) {
      absl::StatusOr<std::string> given = CertificateSha256(signature.certificate_pem());
      absl::StatusOr<std::string> peer = CertificateSha256(c.certificate_pem);
      if (!given.ok() || !peer.ok() || *given != *peer) {
        return SignatureInvalid(
            "signature.certificate_pem must be the connection's own client certificate");
      }
    }
    return c.certificate_pem;
  }
  const std::string& pem = signature.certificate_pem();
  if (pem.empty()) {
    return SignatureInvalid("through a portal, signature.certificate_pem is required");
  }
  ASSIGN_OR_RETURN(std::string signer, CertificateSpiffeId(pem));
  if (signer != a.principal.spiffe_id) {
    return SignatureInvalid(
        absl::StrCat("signature.certificate_pem is ", signer, "'s, not the acting user's"));
  }
  absl::StatusOr<v1::TenantIdentity> identity = tx.tenancy().GetTenantIdentity(tenant, false);
  bool registered = identity.ok();
  if (!registered && !absl::IsNotFound(identity.status())) return identity.status();
  if (runner.certificates() != nullptr) {
    // The verifier that proves callers proves the signer the same way.
    CallerIdentity as_signer{a.principal.spiffe_id, "", pem, pem};
    absl::StatusOr<CertificateEvidence> verified =
        runner.certificates()->Verify(a.principal, as_signer, registered ? &*identity : nullptr);
    if (!verified.ok()) return SignatureInvalid(verified.status().message());
    *proven = *std::move(verified);
    return pem;
  }
  if (!registered) {
    return SignatureInvalid("the tenant has no CA bundle to prove the signer's certificate");
  }
  RETURN_IF_ERROR(VerifyCertificateChain(pem, identity->ca_bundle_pem(), ToProto(now)));
  ASSIGN_OR_RETURN(proven->certificate_sha256, CertificateSha256(pem));
  return pem;
}

}  // namespace

absl::StatusOr<v1::DecisionEvidence> ProveCustomerDecision(
    const UseCaseRunner& runner, Transaction& tx, const CallerIdentity& c, const Actor& a,
    absl::Time now, const std::string& tenant, const SignedCall& call,
    const VerifySignature& verify, std::string* signer_pem) {
  v1::DecisionEvidence evidence;
  if (!a.certificate.certificate_sha256.empty()) {
    evidence.set_certificate_sha256(a.certificate.certificate_sha256);
    evidence.set_anchor_sha256(a.certificate.anchor_sha256);
    evidence.set_anchor_subject(a.certificate.anchor_subject);
  } else if (!a.via && !c.certificate_pem.empty()) {
    // No verifier proved the anchor: still the fingerprint of the peer.
    absl::StatusOr<std::string> sha = CertificateSha256(c.certificate_pem);
    if (sha.ok()) evidence.set_certificate_sha256(*sha);
  }
  if (a.token) {
    evidence.set_token_issuer(a.token->issuer);
    evidence.set_token_subject(a.token->subject);
    evidence.set_token_id(a.token->token_id);
    *evidence.mutable_token_issue_time() = ToProto(a.token->issue_time);
  }
  if (call.signature == nullptr) {
    v1::LockboxPolicy read;
    if (call.policy == nullptr) {
      ASSIGN_OR_RETURN(read, tx.tenancy().GetPolicyForShare(tenant));
    }
    const v1::LockboxPolicy& policy = call.policy != nullptr ? *call.policy : read;
    if (policy.require_signed_decisions()) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kSignatureRequired,
                   "the tenant's policy requires the reviewer's signature on the decision "
                   "(docs/SIGNED_DECISIONS.md)");
    }
    return evidence;
  }
  const v1::DecisionSignature& signature = *call.signature;
  if (call.etag.empty()) return SignatureInvalid("a signed decision must set etag");
  if (absl::AbsDuration(FromProto(signature.sign_time()) - now) > kSignTimeSkew) {
    return SignatureInvalid("signature.sign_time is more than 5 minutes from the server's clock");
  }
  CertificateEvidence signer;
  ASSIGN_OR_RETURN(*signer_pem,
                   SignerCertificate(runner, tx, c, a, tenant, signature, now, &signer));
  RETURN_IF_ERROR(verify(*signer_pem, signature));
  evidence.set_signed_(true);
  if (a.via) {
    evidence.set_certificate_sha256(signer.certificate_sha256);
    evidence.set_anchor_sha256(signer.anchor_sha256);
    evidence.set_anchor_subject(signer.anchor_subject);
  }
  return evidence;
}

void EvidenceDetails(const v1::DecisionEvidence& evidence, const Actor& a, const SignedCall& call,
                     const std::string& signer_pem, v1::AuditEvent* e) {
  auto& d = *e->mutable_details();
  auto put = [&](const char* key, const std::string& value) {
    if (!value.empty()) d[key] = value;
  };
  put("evidence.certificate_sha256", evidence.certificate_sha256());
  put("evidence.anchor_sha256", evidence.anchor_sha256());
  put("evidence.anchor_subject", evidence.anchor_subject());
  put("evidence.token_issuer", evidence.token_issuer());
  put("evidence.token_subject", evidence.token_subject());
  put("evidence.token_id", evidence.token_id());
  if (a.via) put("evidence.via_certificate_sha256", a.via_certificate.certificate_sha256);
  if (evidence.has_token_issue_time()) {
    d["evidence.token_issue_time"] = absl::FormatTime(
        absl::RFC3339_full, FromProto(evidence.token_issue_time()), absl::UTCTimeZone());
  }
  d["evidence.signed"] = evidence.signed_() ? "true" : "false";
  if (!evidence.signed_()) return;
  d["evidence.signature"] = absl::Base64Escape(call.signature->signature());
  d["evidence.signer_certificate_pem"] = signer_pem;
  d["evidence.sign_time"] = FormatSignTime(call.signature->sign_time());
  d["evidence.etag"] = call.etag;
}

}  // namespace lockbox
