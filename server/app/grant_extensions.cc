#include "server/app/grant_extensions.h"

#include "server/app/grant_use_cases.h"
#include "server/domain/status.h"

namespace lockbox {

absl::StatusOr<v1::Grant> ApplyApprovedExtension(const UseCaseRunner&, Transaction&,
                                                 const v1::AccessRequest&, absl::Time,
                                                 v1::AuditEvent*) {
  return absl::UnimplementedError("extensions are not built yet");
}

absl::StatusOr<v1::AccessRequest> GrantUseCases::ExtendGrant(const C&,
                                                             const v1::ExtendGrantRequest&) {
  return absl::UnimplementedError("extensions are not built yet");
}

}  // namespace lockbox
