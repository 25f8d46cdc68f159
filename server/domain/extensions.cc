#include "server/domain/extensions.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/domain/approvals.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"

namespace lockbox {

int32_t MaxExtensionsOf(const v1::LockboxPolicy& policy) {
  return policy.has_max_extensions() ? policy.max_extensions() : kDefaultMaxExtensions;
}

absl::Status CheckExtensible(const v1::Grant& grant, const v1::LockboxPolicy& policy,
                             absl::Time now) {
  v1::Grant::State state = EffectiveState(grant, now);
  if (state != v1::Grant::ACTIVE && state != v1::Grant::SCHEDULED) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGrantNotExtensible,
                 absl::StrCat("the grant is ", v1::Grant::State_Name(state),
                              "; only an ACTIVE or SCHEDULED grant can be extended"));
  }
  // Break-glass is bounded by the policy's emergency period on purpose: more
  // time goes through an ordinary request and its reviews.
  if (grant.emergency()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGrantNotExtensible,
                 "an emergency grant cannot be extended; ask for access with a new request");
  }
  int32_t max = MaxExtensionsOf(policy);
  if (grant.extensions_size() >= max) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kExtensionsExhausted,
                 absl::StrCat("the grant has had ", grant.extensions_size(),
                              " approved extension(s); the tenant's policy allows ", max));
  }
  return absl::OkStatus();
}

absl::Status CheckMayExtend(const Actor& actor, const v1::Grant& grant,
                            const v1::LockboxPolicy& policy, absl::Time now) {
  if (actor.principal.spiffe_id != grant.principal()) {
    return PermissionDenied("only the grant's principal can extend it");
  }
  return CheckExtensible(grant, policy, now);
}

absl::Status ValidateExtendGrant(const v1::ExtendGrantRequest& asked,
                                 const v1::LockboxPolicy& policy) {
  if (asked.justification().empty()) {
    return InvalidField("justification", "REQUIRED", "is required");
  }
  if (asked.justification().size() > kMaxJustificationBytes) {
    return InvalidField("justification", "TOO_LONG",
                        absl::StrCat("at most ", kMaxJustificationBytes, " bytes"));
  }
  if (asked.has_access_duration()) {
    const google::protobuf::Duration& d = asked.access_duration();
    absl::Duration max = FromProto(policy.access_duration());
    if (d.seconds() < 0 || d.nanos() < 0 || FromProto(d) < kMinDuration || FromProto(d) > max) {
      return InvalidField(
          "access_duration", "OUT_OF_RANGE",
          absl::StrCat("must be between ", absl::FormatDuration(kMinDuration), " and ",
                       absl::FormatDuration(max), " (the tenant policy's access_duration)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::AccessRequest> NewExtensionRequest(
    const v1::ExtendGrantRequest& asked, const v1::Grant& grant, const v1::AccessRequest& original,
    absl::string_view tenant, absl::string_view id, const v1::Environment& env,
    const v1::LockboxPolicy& policy, const Actor& requester, absl::Time now) {
  RETURN_IF_ERROR(ValidateExtendGrant(asked, policy));
  v1::AccessRequest as_asked;
  as_asked.set_environment(grant.environment());
  as_asked.set_reason(original.reason());
  as_asked.set_support_ticket_id(original.support_ticket_id());
  as_asked.set_justification(asked.justification());
  if (asked.has_access_duration()) *as_asked.mutable_access_duration() = asked.access_duration();
  // The sources are the grant's, as pinned: they are set after the
  // validation of new requests, which would refuse one the environment has
  // since dropped (still pinned, and still what the extension prolongs).
  ASSIGN_OR_RETURN(v1::AccessRequest r,
                   NewAccessRequest(as_asked, tenant, id, env, policy, requester, now));
  *r.mutable_data_sources() = grant.data_sources();
  r.set_extends_grant(grant.name());
  absl::Time expire = std::min(FromProto(r.expire_time()), FromProto(grant.expire_time()));
  *r.mutable_expire_time() = ToProto(expire);
  return r;
}

absl::Status ApplyExtension(const v1::AccessRequest& extension, const v1::LockboxPolicy& policy,
                            absl::Time now, v1::Grant* grant) {
  RETURN_IF_ERROR(CheckExtensible(*grant, policy, now));
  absl::Duration more = ApprovedScopeOf(extension).access_duration;
  *grant->mutable_expire_time() = ToProto(FromProto(grant->expire_time()) + more);
  grant->add_extensions(extension.name());
  return absl::OkStatus();
}

absl::Status CancelMootExtension(absl::Time now, v1::AccessRequest* extension) {
  if (EffectiveState(*extension, now) != v1::AccessRequest::PENDING) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kTransitionNotAllowed,
                 "only a PENDING extension can be cancelled");
  }
  extension->set_state(v1::AccessRequest::CANCELLED);
  *extension->mutable_update_time() = ToProto(now);
  extension->set_display_status(DisplayStatus(extension->state(), extension->stage()));
  return absl::OkStatus();
}

}  // namespace lockbox
