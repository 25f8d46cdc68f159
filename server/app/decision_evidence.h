// How a customer's reviewer is proven (SPEC section 8,
// docs/SIGNED_DECISIONS.md), for a decision on an access request
// (access_request_use_cases.cc) and for a break-glass review
// (emergency_access.cc) alike: the certificate or token that proved them,
// and their own signature over what they decided, verified, and required
// when the tenant's policy sets require_signed_decisions.
// Functions of no state: thread-safe as the runner and transaction are.
#ifndef LOCKBOX_SERVER_APP_DECISION_EVIDENCE_H_
#define LOCKBOX_SERVER_APP_DECISION_EVIDENCE_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/use_case_runner.h"

namespace lockbox {

// What a customer's call carries of its signature.
struct SignedCall {
  std::string etag;  // the call's etag, which a signature covers
  // The reviewer's signature; null when the call carries none.
  const v1::DecisionSignature* signature = nullptr;
  // The tenant's policy as the caller's transaction already read it
  // (share-locked); null: ProveCustomerDecision reads it when it must.
  const v1::LockboxPolicy* policy = nullptr;
};

// Checks `signature` over the canonical bytes of what the call decides
// (CanonicalDecisionBytes, CanonicalReviewBytes: lockbox/decision.h), with
// the certificate `signer_pem`: VerifyDecisionSignature or
// VerifyReviewSignature over bytes the server rebuilt from the call.
using VerifySignature = std::function<absl::Status(const std::string& signer_pem,
                                                   const v1::DecisionSignature& signature)>;

// How the customer's reviewer `a` was proven, with their signature
// verified by `verify` when the call carries one: any failure is
// INVALID_ARGUMENT SIGNATURE_INVALID (etag unset, sign_time more than 5
// minutes from `now`, a signing certificate that is not the reviewer's, or
// bytes that do not verify). Without a signature, FAILED_PRECONDITION
// SIGNATURE_REQUIRED when `tenant`'s policy requires one. `signer_pem`
// gets the signing certificate. certificate_sha256 and anchor_* are only
// ever the reviewer's own: through a portal the peer is the portal, so they
// are set only from the user's certificate a signature carries.
// REQUIRES: `a` is authorised to decide; the caller checked the etag.
absl::StatusOr<v1::DecisionEvidence> ProveCustomerDecision(
    const UseCaseRunner& runner, Transaction& tx, const CallerIdentity& c, const Actor& a,
    absl::Time now, const std::string& tenant, const SignedCall& call,
    const VerifySignature& verify, std::string* signer_pem);

// evidence.* in the decision's or review's audit event `e`: what an
// offline verifier needs (evidence.signature, signer_certificate_pem,
// sign_time, etag when signed), and for a portal call the portal's
// certificate apart from the reviewer's.
void EvidenceDetails(const v1::DecisionEvidence& evidence, const Actor& a, const SignedCall& call,
                     const std::string& signer_pem, v1::AuditEvent* e);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_DECISION_EVIDENCE_H_
