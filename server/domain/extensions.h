// Extensions (SPEC section 10): the rules of asking for more time on a
// grant and of an approved extension moving its end. Pure functions over
// the API's messages, time passed in.
//
// An extension is an access request linked to its grant (extends_grant)
// that runs the same stages, policy and quorum as any request. Its
// access_duration is the time asked for on top of the grant's
// expire_time; approvers may shorten it (ApprovedScopeOf), and only the
// period counts: the grant keeps its sources and start.
#ifndef LOCKBOX_SERVER_DOMAIN_EXTENSIONS_H_
#define LOCKBOX_SERVER_DOMAIN_EXTENSIONS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lockbox/v1/grant_service.pb.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/identity.h"

namespace lockbox {

// How many approved extensions the policy allows one grant (unset: the
// default, 1).
int32_t MaxExtensionsOf(const v1::LockboxPolicy& policy);

// Whether `grant` may still be extended under `policy` (the tenant's, now):
// effectively ACTIVE or SCHEDULED and not an emergency grant (else
// FAILED_PRECONDITION GRANT_NOT_EXTENSIBLE), with fewer approved
// extensions than the policy's max_extensions (else FAILED_PRECONDITION
// EXTENSIONS_EXHAUSTED). Asked when the extension is asked for and again
// at the approval that completes it.
absl::Status CheckExtensible(const v1::Grant& grant, const v1::LockboxPolicy& policy,
                             absl::Time now);

// Whether `actor` may ask to extend `grant`: only its own principal
// (PERMISSION_DENIED otherwise, checked first), then CheckExtensible.
absl::Status CheckMayExtend(const Actor& actor, const v1::Grant& grant,
                            const v1::LockboxPolicy& policy, absl::Time now);

// Validates what the engineer asked (justification required, at most 4
// KiB; access_duration between one minute and the policy's
// access_duration, which is also the default).
absl::Status ValidateExtendGrant(const v1::ExtendGrantRequest& asked,
                                 const v1::LockboxPolicy& policy);

// The PENDING/INTERNAL_REVIEW extension request of `grant`, asked by
// `requester`: its environment and data sources, its request's reason and
// support ticket (`original` is the request that made the grant), the
// quorum of `policy`, and an expire_time no later than the grant's (an
// extension still undecided when its grant ends is moot).
// REQUIRES: ValidateExtendGrant(asked, policy) and CheckMayExtend are OK;
// `env` is the grant's environment.
absl::StatusOr<v1::AccessRequest> NewExtensionRequest(
    const v1::ExtendGrantRequest& asked, const v1::Grant& grant, const v1::AccessRequest& original,
    absl::string_view tenant, absl::string_view id, const v1::Environment& env,
    const v1::LockboxPolicy& policy, const Actor& requester, absl::Time now);

// At the approval that completed `extension` (APPROVED, extends_grant the
// grant's name): CheckExtensible, then the grant's expire_time moves by
// the period every approval allowed and the extension is recorded on it.
absl::Status ApplyExtension(const v1::AccessRequest& extension, const v1::LockboxPolicy& policy,
                            absl::Time now, v1::Grant* grant);

// A PENDING extension whose grant has ended early (released or revoked) is
// moot: CANCELLED now, by the system. FAILED_PRECONDITION if it is not
// PENDING.
absl::Status CancelMootExtension(absl::Time now, v1::AccessRequest* extension);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_EXTENSIONS_H_
