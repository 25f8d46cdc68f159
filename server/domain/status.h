// Errors are values: absl::Status with a machine-readable reason (and, for
// bad input, the offending field) carried as payloads. The service layer turns
// them into gRPC statuses with ErrorInfo details in exactly one place.
#ifndef LOCKBOX_SERVER_DOMAIN_STATUS_H_
#define LOCKBOX_SERVER_DOMAIN_STATUS_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lockbox {

// Stable reasons shared by the server and clients.
namespace reason {
inline constexpr char kInvalidField[] = "INVALID_FIELD";
inline constexpr char kNotFound[] = "NOT_FOUND";
inline constexpr char kAlreadyExists[] = "ALREADY_EXISTS";
inline constexpr char kPermissionDenied[] = "PERMISSION_DENIED";
inline constexpr char kUnauthenticated[] = "UNAUTHENTICATED";
inline constexpr char kStaleEtag[] = "STALE_ETAG";
inline constexpr char kTransitionNotAllowed[] = "STATE_TRANSITION_NOT_ALLOWED";
inline constexpr char kSelfReview[] = "SELF_REVIEW_NOT_ALLOWED";
inline constexpr char kRevocationDisabled[] = "REVOCATION_DISABLED";
inline constexpr char kRequestIdReused[] = "REQUEST_ID_REUSED";
inline constexpr char kInvalidPageToken[] = "INVALID_PAGE_TOKEN";
inline constexpr char kInvalidFilter[] = "INVALID_FILTER";
inline constexpr char kOnBehalfOfRefused[] = "ON_BEHALF_OF_NOT_ALLOWED";
inline constexpr char kDatabaseUnavailable[] = "DATABASE_UNAVAILABLE";
inline constexpr char kConflict[] = "CONCURRENT_UPDATE";
inline constexpr char kInternal[] = "INTERNAL";
inline constexpr char kUnimplemented[] = "UNIMPLEMENTED";
}  // namespace reason

// An error with a reason.
absl::Status Error(absl::StatusCode code, absl::string_view reason,
                   absl::string_view message);

// INVALID_ARGUMENT for one request field. field_reason is REQUIRED,
// TOO_LONG, BAD_FORMAT, OUT_OF_RANGE, UNKNOWN_VALUE or NOT_ALLOWED.
absl::Status InvalidField(absl::string_view field, absl::string_view field_reason,
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
