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

// Whether `extension` (extends_grant set) may still move its grant under
// `policy` at `now` (extensions.h CheckExtensible), the grant read without
// a lock: asked at each approval, before anything is written, so that an
// extension nothing can complete any more is not carried to another stage
// (the completing approval asks again with the grant locked).
absl::Status CheckStillExtensible(Transaction& tx, const v1::AccessRequest& extension,
                                  const v1::LockboxPolicy& policy, absl::Time now);

// Whether `refusal` says an extension can no longer be approved
// (GRANT_NOT_EXTENSIBLE, EXTENSIONS_EXHAUSTED): the approval then cancels
// it (CancelExtensionBySystem) rather than leave it waiting for nothing.
bool IsMootExtensionRefusal(const absl::Status& refusal);

// Cancels the PENDING extension tenants/`tenant`/accessRequests/`id` by the
// system, audited (access_request.cancel with details extends_grant and
// reason `why`), and tells the approvers it no longer needs them. Runs
// whatever the tenant's key: its words stay as stored and are left out of
// the event when they cannot be opened. The request as written.
absl::StatusOr<v1::AccessRequest> CancelExtensionBySystem(const UseCaseRunner& runner,
                                                          Transaction& tx,
                                                          const std::string& tenant,
                                                          const std::string& id,
                                                          absl::string_view why, absl::Time now);

// In the transaction that ended `grant` early (released or revoked):
// cancels its pending extension, if any, by the system, audited
// (access_request.cancel with details extends_grant and reason).
absl::Status CancelPendingExtension(const UseCaseRunner& runner, Transaction& tx,
                                    const v1::Grant& grant, absl::Time now);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_GRANT_EXTENSIONS_H_
