#include "server/domain/emergency.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"

namespace lockbox {

using v1::AccessRequest;
using v1::EmergencyReview;

absl::Duration EmergencyDuration(const v1::LockboxPolicy& policy) {
  if (!policy.has_emergency_access_duration()) return kDefaultEmergencyDuration;
  absl::Duration d = FromProto(policy.emergency_access_duration());
  if (d <= absl::ZeroDuration()) return kDefaultEmergencyDuration;
  return std::min(d, kMaxEmergencyDuration);
}

absl::Status CheckEmergencyAllowed(const v1::LockboxPolicy& policy) {
  if (policy.emergency_access() == v1::LockboxPolicy::FORBIDDEN) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kEmergencyAccessForbidden,
                 "the tenant's lockbox policy forbids emergency access");
  }
  return absl::OkStatus();
}

absl::Status CheckNoActiveEmergencyGrant(size_t active_emergency_grants) {
  if (active_emergency_grants != 0) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kEmergencyGrantActive,
                 "the caller already holds an active emergency grant in this tenant; release "
                 "it first");
  }
  return absl::OkStatus();
}

absl::StatusOr<AccessRequest> NewEmergencyRequest(const AccessRequest& asked,
                                                  absl::string_view tenant, absl::string_view id,
                                                  const v1::Environment& env,
                                                  const v1::LockboxPolicy& policy,
                                                  const Actor& requester, absl::Time now) {
  ASSIGN_OR_RETURN(AccessRequest r,
                   NewAccessRequest(asked, tenant, id, env, policy, requester, now));
  // Granted at once: no stage waits, and the customer reviews it after.
  r.set_state(AccessRequest::APPROVED);
  EmergencyReview* review = r.mutable_emergency_review();
  review->set_state(EmergencyReview::OPEN);
  *review->mutable_due_time() = ToProto(now + kEmergencyReviewPeriod);
  ApplyReadTimeState(now, &r);
  return r;
}

absl::Status ValidateReview(EmergencyReview::Verdict verdict, absl::string_view comment) {
  if (verdict != EmergencyReview::ACCEPT && verdict != EmergencyReview::DISPUTE) {
    return InvalidField("verdict", "REQUIRED", "must be ACCEPT or DISPUTE");
  }
  if (comment.size() > kMaxCommentBytes) {
    return InvalidField("comment", "TOO_LONG",
                        absl::StrCat("at most ", kMaxCommentBytes, " bytes"));
  }
  if (verdict == EmergencyReview::DISPUTE && comment.empty()) {
    return InvalidField("comment", "REQUIRED", "a DISPUTE says what is disputed");
  }
  return absl::OkStatus();
}

absl::Status RecordReview(const Actor& actor, EmergencyReview::Verdict verdict,
                          absl::string_view comment, absl::Time now, AccessRequest* request) {
  if (request->reason() != AccessRequest::EMERGENCY || !request->has_emergency_review()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kTransitionNotAllowed,
                 "only an EMERGENCY request has a review");
  }
  EmergencyReview* review = request->mutable_emergency_review();
  if (review->state() != EmergencyReview::OPEN) {
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kReviewClosed,
        absl::StrCat("the review is already ", EmergencyReview::State_Name(review->state())));
  }
  review->set_state(verdict == EmergencyReview::ACCEPT ? EmergencyReview::ACCEPTED
                                                       : EmergencyReview::DISPUTED);
  review->set_reviewer(actor.principal.spiffe_id);
  if (actor.via) review->set_via(actor.via->spiffe_id);
  review->set_comment(std::string(comment));
  *review->mutable_review_time() = ToProto(now);
  *request->mutable_update_time() = ToProto(now);
  return absl::OkStatus();
}

absl::Time EmergencyReminderTime(absl::Time opened, int n) {
  return opened + (n <= 1 ? kEmergencyFirstReminder : kEmergencySecondReminder);
}

int EmergencyRemindersDue(absl::Time opened, absl::Time now) {
  int due = 0;
  for (int n = 1; n <= kEmergencyReminders; ++n) {
    if (now >= EmergencyReminderTime(opened, n)) due = n;
  }
  return due;
}

bool EmergencyReviewOverdueAt(const EmergencyReview& review, absl::Time now) {
  return review.state() == EmergencyReview::OPEN && !review.overdue() && review.has_due_time() &&
         now >= FromProto(review.due_time());
}

absl::Status RecordReviewOverdue(absl::Time now, AccessRequest* request) {
  if (!EmergencyReviewOverdueAt(request->emergency_review(), now)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kTransitionNotAllowed,
                 "only an open review past its due time becomes overdue");
  }
  request->mutable_emergency_review()->set_overdue(true);
  *request->mutable_update_time() = ToProto(now);
  return absl::OkStatus();
}

}  // namespace lockbox
