// Extensions (SPEC section 10): the engineer asks for more time on an
// active grant with GrantService.ExtendGrant. The extension is an access
// request linked to its grant (extends_grant) that runs the same stages,
// policy and quorum; approved, it moves the grant's expire_time. The policy's
// max_extensions bounds how many a grant may have.
#ifndef LOCKBOX_SERVER_APP_GRANT_EXTENSIONS_H_
#define LOCKBOX_SERVER_APP_GRANT_EXTENSIONS_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/use_case_runner.h"

namespace lockbox {

// In the transaction of the approval that completed `extension` (APPROVED,
// extends_grant set): moves its grant's end by what the approvals allowed,
// records the extension on the grant, and fills the approval's audit event
// `e` with the grant and its new end. The grant as written.
absl::StatusOr<v1::Grant> ApplyApprovedExtension(const UseCaseRunner& runner, Transaction& tx,
                                                 const v1::AccessRequest& extension, absl::Time now,
                                                 v1::AuditEvent* e);

// In the transaction that ended `grant` early (released or revoked):
// cancels its pending extension, if any, by the system, audited
// (access_request.cancel with details extends_grant and reason).
absl::Status CancelPendingExtension(const UseCaseRunner& runner, Transaction& tx,
                                    const v1::Grant& grant, absl::Time now);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_GRANT_EXTENSIONS_H_
