// Errors are values: absl::Status with a machine-readable reason (and, for
// bad input, the offending field) carried as payloads. The service layer turns
// them into gRPC statuses with ErrorInfo details in exactly one place.
#ifndef LOCKBOX_SERVER_DOMAIN_STATUS_H_
#define LOCKBOX_SERVER_DOMAIN_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lockbox/error_reason.h"

namespace lockbox {

// The server's reasons, from lockbox.v1.ErrorReason (lockbox/error_reason.h).
namespace reason {
inline constexpr Reason kInvalidField{v1::INVALID_FIELD};
inline constexpr Reason kNotFound{v1::NOT_FOUND};
inline constexpr Reason kAlreadyExists{v1::ALREADY_EXISTS};
inline constexpr Reason kPermissionDenied{v1::PERMISSION_DENIED};
inline constexpr Reason kUnauthenticated{v1::UNAUTHENTICATED};
inline constexpr Reason kStaleEtag{v1::STALE_ETAG};
inline constexpr Reason kTransitionNotAllowed{v1::STATE_TRANSITION_NOT_ALLOWED};
inline constexpr Reason kSelfReview{v1::SELF_REVIEW_NOT_ALLOWED};
inline constexpr Reason kRevocationDisabled{v1::REVOCATION_DISABLED};
inline constexpr Reason kRequestIdReused{v1::REQUEST_ID_REUSED};
inline constexpr Reason kInvalidPageToken{v1::INVALID_PAGE_TOKEN};
inline constexpr Reason kInvalidFilter{v1::INVALID_FILTER};
inline constexpr Reason kOnBehalfOfRefused{v1::ON_BEHALF_OF_NOT_ALLOWED};
inline constexpr Reason kDatabaseUnavailable{v1::DATABASE_UNAVAILABLE};
inline constexpr Reason kConflict{v1::CONCURRENT_UPDATE};
inline constexpr Reason kInternal{v1::INTERNAL};
inline constexpr Reason kUnimplemented{v1::UNIMPLEMENTED};
inline constexpr Reason kNoSigningKey{v1::NO_SIGNING_KEY};
inline constexpr Reason kEmptyLog{v1::EMPTY_LOG};
inline constexpr Reason kEmailNotConfigured{v1::EMAIL_NOT_CONFIGURED};
inline constexpr Reason kWebhookNotConfigured{v1::WEBHOOK_NOT_CONFIGURED};
inline constexpr Reason kDeliveryFailed{v1::DELIVERY_FAILED};
inline constexpr Reason kNoActiveGrant{v1::NO_ACTIVE_GRANT};
inline constexpr Reason kUntrustedAnchor{v1::UNTRUSTED_CERTIFICATE_ANCHOR};
inline constexpr Reason kTokenRefused{v1::TOKEN_REFUSED};
inline constexpr Reason kTokenReplayed{v1::TOKEN_REPLAYED};
inline constexpr Reason kSignatureRequired{v1::SIGNATURE_REQUIRED};
inline constexpr Reason kSignatureInvalid{v1::SIGNATURE_INVALID};
inline constexpr Reason kLastAdmin{v1::LAST_ADMIN};
inline constexpr Reason kRequestInProgress{v1::REQUEST_IN_PROGRESS};
inline constexpr Reason kDatabaseBusy{v1::DATABASE_BUSY};
inline constexpr Reason kStreamLimit{v1::STREAM_LIMIT};
inline constexpr Reason kRateLimited{v1::RATE_LIMITED};
inline constexpr Reason kOverloaded{v1::OVERLOADED};
inline constexpr Reason kKeyUnavailable{v1::KEY_UNAVAILABLE};
inline constexpr Reason kKeyBindingMismatch{v1::KEY_BINDING_MISMATCH};
inline constexpr Reason kGrantDoesNotAllow{v1::GRANT_DOES_NOT_ALLOW};
inline constexpr Reason kKeyModuleNotConfigured{v1::KEY_MODULE_NOT_CONFIGURED};
inline constexpr Reason kEnvironmentKeyProtected{v1::ENVIRONMENT_KEY_PROTECTED};
inline constexpr Reason kAlreadyApproved{v1::ALREADY_APPROVED};
inline constexpr Reason kApprovalWidens{v1::APPROVAL_WIDENS};
inline constexpr Reason kGrantNotStarted{v1::GRANT_NOT_STARTED};
inline constexpr Reason kExtensionsExhausted{v1::EXTENSIONS_EXHAUSTED};
inline constexpr Reason kExtensionPending{v1::EXTENSION_PENDING};
inline constexpr Reason kGrantNotExtensible{v1::GRANT_NOT_EXTENSIBLE};
inline constexpr Reason kEmergencyAccessForbidden{v1::EMERGENCY_ACCESS_FORBIDDEN};
inline constexpr Reason kEmergencyGrantActive{v1::EMERGENCY_GRANT_ACTIVE};
inline constexpr Reason kReviewClosed{v1::REVIEW_CLOSED};
}  // namespace reason

// An error with a reason.
absl::Status Error(absl::StatusCode code, Reason reason, absl::string_view message);
// The same with the reason's text, for a reason that never leaves the
// process (on the wire, every reason is an ErrorReason).
absl::Status Error(absl::StatusCode code, absl::string_view reason,
                   absl::string_view message);

// INVALID_ARGUMENT for one request field. field_reason is REQUIRED,
// TOO_LONG, BAD_FORMAT, OUT_OF_RANGE, UNKNOWN_VALUE or NOT_ALLOWED.
absl::Status InvalidField(absl::string_view field, absl::string_view field_reason,
                          absl::string_view message);
// The same with a reason of its own instead of INVALID_FIELD (e.g.
// APPROVAL_WIDENS), for a refusal a client tells apart by reason.
absl::Status InvalidField(Reason reason, absl::string_view field, absl::string_view field_reason,
                          absl::string_view message);

absl::Status NotFound(absl::string_view what);
absl::Status PermissionDenied(absl::string_view message);

// The reason of an error made by Error/InvalidField ("" for others).
std::string ReasonOf(const absl::Status& status);
// The field and field reason of an InvalidField error ("" for others).
std::string FieldOf(const absl::Status& status);
std::string FieldReasonOf(const absl::Status& status);

}  // namespace lockbox

#define LOCKBOX_CONCAT_INNER_(a, b) a##b
#define LOCKBOX_CONCAT_(a, b) LOCKBOX_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status lockbox_status_ = (expr);   \
    if (!lockbox_status_.ok()) return lockbox_status_; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(LOCKBOX_CONCAT_(lockbox_or_, __LINE__), lhs, expr)

#endif  // LOCKBOX_SERVER_DOMAIN_STATUS_H_
