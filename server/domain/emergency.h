// Break-glass (SPEC section 10): the rules of an emergency grant and of the
// customer's review of it. Pure: time is passed in.
//
// An EMERGENCY request is granted at once: who may open one, where, for how
// long, and one active emergency grant per engineer per tenant. Each opens a
// review the tenant's admins close (ACCEPT, or DISPUTE with a comment)
// within kEmergencyReviewPeriod; reminders go 24 hours and 6 days after the
// grant opened, and a review still open at its due time is recorded overdue
// (it stays OPEN and may still be closed, late).
#ifndef LOCKBOX_SERVER_DOMAIN_EMERGENCY_H_
#define LOCKBOX_SERVER_DOMAIN_EMERGENCY_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/identity.h"

namespace lockbox {

inline constexpr size_t kMaxIncidentIdBytes = 128;
// The reminders of an open review, after the grant opened.
inline constexpr absl::Duration kEmergencyFirstReminder = absl::Hours(24);
inline constexpr absl::Duration kEmergencySecondReminder = absl::Hours(24 * 6);
inline constexpr int kEmergencyReminders = 2;

// The policy's emergency period: its emergency_access_duration, the default
// when unset.
absl::Duration EmergencyDuration(const v1::LockboxPolicy& policy);

// FAILED_PRECONDITION EMERGENCY_ACCESS_FORBIDDEN when the tenant's policy
// forbids emergency access.
absl::Status CheckEmergencyAllowed(const v1::LockboxPolicy& policy);

// FAILED_PRECONDITION EMERGENCY_GRANT_ACTIVE when `active_emergency_grants`
// (the engineer's emergency grants in the tenant still ACTIVE now) is not 0.
absl::Status CheckNoActiveEmergencyGrant(size_t active_emergency_grants);

// The EMERGENCY request `asked` becomes, validated as NewAccessRequest does
// (incident_id, justification, data sources, the period at most the
// policy's emergency period, no start_time), already APPROVED, with its
// review OPEN and due kEmergencyReviewPeriod from now.
// REQUIRES: asked.reason() is EMERGENCY.
absl::StatusOr<v1::AccessRequest> NewEmergencyRequest(const v1::AccessRequest& asked,
                                                      absl::string_view tenant,
                                                      absl::string_view id,
                                                      const v1::Environment& env,
                                                      const v1::LockboxPolicy& policy,
                                                      const Actor& requester, absl::Time now);

// The verdict and comment of a review, before anything is read:
// INVALID_ARGUMENT for a verdict other than ACCEPT or DISPUTE, a DISPUTE
// without a comment, or a comment longer than kMaxCommentBytes.
absl::Status ValidateReview(v1::EmergencyReview::Verdict verdict, absl::string_view comment);

// Records `actor`'s verdict on `request`'s review: FAILED_PRECONDITION
// TRANSITION_NOT_ALLOWED when it is not an EMERGENCY request,
// FAILED_PRECONDITION REVIEW_CLOSED when its review is no longer OPEN.
// An overdue review is still closed (late). The caller checked that the
// actor is the tenant's tenant.admin.
absl::Status RecordReview(const Actor& actor, v1::EmergencyReview::Verdict verdict,
                          absl::string_view comment, absl::Time now, v1::AccessRequest* request);

// When a grant opened at `opened` has its review's reminder `n` (1 or 2)
// due; and how many reminders are due at `now` (0 to 2).
absl::Time EmergencyReminderTime(absl::Time opened, int n);
int EmergencyRemindersDue(absl::Time opened, absl::Time now);

// Whether the review is OPEN, not yet recorded overdue and its due time has
// come.
bool EmergencyReviewOverdueAt(const v1::EmergencyReview& review, absl::Time now);
// Records that: overdue, still OPEN. FAILED_PRECONDITION
// TRANSITION_NOT_ALLOWED when it is not.
absl::Status RecordReviewOverdue(absl::Time now, v1::AccessRequest* request);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_EMERGENCY_H_
