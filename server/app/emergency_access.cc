// Break-glass (SPEC section 10): an operator.breakglass caller's emergency
// grant, granted at once, told to the tenant's admins at once, and reviewed
// by the customer afterwards.
#include "server/app/access_request_use_cases.h"

namespace lockbox {

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::OpenEmergencyAccess(
    const C&, const v1::CreateAccessRequestRequest&) {
  return absl::UnimplementedError("break-glass is not built yet");
}

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::ReviewEmergencyAccess(
    const C&, const v1::ReviewEmergencyAccessRequest&) {
  return absl::UnimplementedError("break-glass is not built yet");
}

absl::StatusOr<bool> AccessRequestUseCases::RemindEmergencyReviewOne() { return false; }

absl::StatusOr<bool> AccessRequestUseCases::MarkEmergencyReviewOverdueOne() { return false; }

}  // namespace lockbox
