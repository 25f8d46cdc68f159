// Signed access-request decisions and break-glass reviews
// (docs/SIGNED_DECISIONS.md): the bytes an approver or reviewer signs,
// signing with the key of their certificate, and the checks lockboxd and an
// offline verifier make. Part of lockbox_audit (it needs
// OpenSSL, no gRPC); lockboxd, liblockbox and lockboxctl share it.
//
//   lockbox::DecisionToSign d{request.name(), request.etag(),
//                             lockbox::v1::Decision::APPROVE, "ok", now};
//   auto signature = lockbox::SignDecision(key_pem, d);
//   ... lockbox::VerifyDecisionSignature(certificate_pem, d, *signature)
//
// Every function is thread-safe (no shared state).
#ifndef LOCKBOX_CLIENT_INCLUDE_LOCKBOX_DECISION_H_
#define LOCKBOX_CLIENT_INCLUDE_LOCKBOX_DECISION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "lockbox/v1/resources.pb.h"

namespace lockbox {

// What a decision's signature covers.
struct DecisionToSign {
  std::string request;  // tenants/{tenant}/accessRequests/{id}
  std::string etag;     // the request's etag the decision is made on
  v1::Decision::Verdict verdict = v1::Decision::VERDICT_UNSPECIFIED;
  std::string comment;
  google::protobuf::Timestamp sign_time;  // used to the microsecond (floor)
  // An approval's narrowing (SPEC section 10), each unset or empty when the
  // approval takes the request as asked: ApproveAccessRequestRequest's
  // access_duration, data_sources (in the order sent) and start_time, both
  // times used to the microsecond (floor).
  std::optional<google::protobuf::Duration> access_duration;
  std::vector<std::string> data_sources;
  std::optional<google::protobuf::Timestamp> start_time;
};

// "lockbox.decision.v1", then request, etag, verdict name, comment and the
// sign time in decimal microseconds, each with a 4-byte big-endian length.
// Then, only for the narrowing fields that are set, in this order, each as
// length-prefixed strings: "access_duration" and its decimal microseconds;
// "data_sources", their count in decimal, and each ID; "start_time" and its
// decimal microseconds since the epoch. A decision without narrowing has
// exactly the bytes it had before narrowing existed.
std::string CanonicalDecisionBytes(const DecisionToSign& decision);

// Signs with a PEM private key (PKCS#8 or traditional): EC P-256 (ECDSA
// SHA-256, DER), RSA of 2048 bits or more (PKCS#1 v1.5 SHA-256) or Ed25519.
// INVALID_ARGUMENT for an unreadable or unsupported key.
absl::StatusOr<std::string> SignDecision(const std::string& private_key_pem,
                                         const DecisionToSign& decision);

// Whether `signature` over the decision's bytes verifies with the public key
// of the first certificate in `certificate_pem` (RSA also accepts PSS).
// INVALID_ARGUMENT with reason SIGNATURE_INVALID when it does not, or when
// the certificate or its key type is not one of the above.
absl::Status VerifyDecisionSignature(const std::string& certificate_pem,
                                     const DecisionToSign& decision, const std::string& signature);

// What a break-glass review's signature covers (ReviewEmergencyAccess, SPEC
// section 10): the tenant.admin's ACCEPT or DISPUTE of an emergency grant.
struct ReviewToSign {
  std::string request;  // tenants/{tenant}/accessRequests/{id}, an EMERGENCY request
  std::string etag;     // the request's etag the review is made on
  v1::EmergencyReview::Verdict verdict = v1::EmergencyReview::VERDICT_UNSPECIFIED;
  std::string comment;
  google::protobuf::Timestamp sign_time;  // used to the microsecond (floor)
};

// "lockbox.emergency_review.v1", then request, etag, verdict name (ACCEPT or
// DISPUTE), comment and the sign time in decimal microseconds, each with a
// 4-byte big-endian length: CanonicalDecisionBytes' layout under a tag of
// its own, so a decision's signature never verifies as a review's, nor the
// other way round.
std::string CanonicalReviewBytes(const ReviewToSign& review);

// SignDecision and VerifyDecisionSignature for a review's bytes: the same
// keys, algorithms and refusals.
absl::StatusOr<std::string> SignReview(const std::string& private_key_pem,
                                       const ReviewToSign& review);
absl::Status VerifyReviewSignature(const std::string& certificate_pem, const ReviewToSign& review,
                                   const std::string& signature);

// The audit action of a break-glass review.
inline constexpr char kEmergencyReviewAction[] = "access_request.emergency_review";

// The SPIFFE ID (the spiffe:// URI SAN) of the first certificate in `pem`.
// INVALID_ARGUMENT when it is not a certificate or has no single one.
absl::StatusOr<std::string> CertificateSpiffeId(const std::string& certificate_pem);

// Lowercase hex SHA-256 of the first certificate's DER.
absl::StatusOr<std::string> CertificateSha256(const std::string& certificate_pem);

// Whether the first certificate in `certificate_pem` chains to a CA in
// `bundle_pem` (any certificate of the bundle is an anchor; further
// certificates after the first in `certificate_pem` may serve as
// intermediates), checked at time `at`. INVALID_ARGUMENT with reason
// SIGNATURE_INVALID, naming OpenSSL's verdict, when it does not.
absl::Status VerifyCertificateChain(const std::string& certificate_pem,
                                    const std::string& bundle_pem,
                                    const google::protobuf::Timestamp& at);

// sign_time as stored in an audit event's evidence.sign_time: RFC 3339 UTC
// with exactly six fractional digits; and back (INVALID_ARGUMENT if not).
std::string FormatSignTime(const google::protobuf::Timestamp& t);
absl::StatusOr<google::protobuf::Timestamp> ParseSignTime(const std::string& text);

// An approval's narrowing as its audit event records it (details
// narrowed.access_duration, narrowed.start_time: protobuf JSON text, e.g.
// "5400s" and "2026-12-01T20:00:00Z", exact to the nanosecond;
// narrowed.data_sources: the IDs joined by ","), and back
// (INVALID_ARGUMENT if a value is malformed).
void PutNarrowingDetails(const DecisionToSign& decision,
                         google::protobuf::Map<std::string, std::string>* details);
absl::Status NarrowingFromDetails(const google::protobuf::Map<std::string, std::string>& details,
                                  DecisionToSign* decision);

// For an audit event: whether it is a decision with a signature in its
// details (evidence.signature), and if so that the signature verifies over
// the bytes rebuilt from the event (resource, evidence.etag, the action's
// verdict, comment, evidence.sign_time, and the narrowed.* details) with
// evidence.signer_certificate_pem,
// whose SPIFFE ID is the event's actor and which chains to `bundle_pem` at
// its sign time. INVALID_ARGUMENT (SIGNATURE_INVALID) says what failed.
// A signed break-glass review's event (kEmergencyReviewAction) is checked
// as VerifySignedReviewEvent does.
absl::StatusOr<bool> VerifySignedDecisionEvent(const v1::AuditEvent& event,
                                               const std::string& bundle_pem);

// For a break-glass review's audit event: whether it carries a signature
// (evidence.signature), and if so that it verifies over the review bytes
// rebuilt from the event (resource, evidence.etag, the verdict detail,
// comment, evidence.sign_time) with evidence.signer_certificate_pem, whose
// SPIFFE ID is the event's actor and which chains to `bundle_pem` at its
// sign time. INVALID_ARGUMENT (SIGNATURE_INVALID) says what failed.
absl::StatusOr<bool> VerifySignedReviewEvent(const v1::AuditEvent& event,
                                             const std::string& bundle_pem);

}  // namespace lockbox

#endif  // LOCKBOX_CLIENT_INCLUDE_LOCKBOX_DECISION_H_
