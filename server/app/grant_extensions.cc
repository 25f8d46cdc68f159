// Extensions (SPEC section 10): ExtendGrant asks, the request's stages
// decide (DecideIn), and the approval that completes it moves the grant's
// end here, in its transaction.
#include "server/app/grant_extensions.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "server/app/audit_events.h"
#include "server/app/grant_use_cases.h"
#include "server/app/request_messages.h"
#include "server/domain/authorization.h"
#include "server/domain/extensions.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FormatTime(absl::RFC3339_full, FromProto(t), absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<v1::Grant> ApplyApprovedExtension(const UseCaseRunner&, Transaction& tx,
                                                 const v1::AccessRequest& extension, absl::Time now,
                                                 v1::AuditEvent* e) {
  ASSIGN_OR_RETURN(TenantChildName name,
                   ParseChildName(extension.extends_grant(), "grants", "extends_grant"));
  // Locked: a release, a revocation or another approval of this grant
  // waits, so the end moves from what is true at commit.
  ASSIGN_OR_RETURN(v1::Grant grant, tx.grants().GetGrant(name.tenant, name.id, true));
  // The policy as it is now bounds the count, as it did when it was asked.
  ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(name.tenant, false));
  const google::protobuf::Timestamp previous = grant.expire_time();
  RETURN_IF_ERROR(ApplyExtension(extension, policy, now, &grant));
  RETURN_IF_ERROR(tx.grants().UpdateGrant(name.tenant, name.id, &grant));
  ApplyReadTimeState(now, &grant);
  *e->mutable_access_expire_time() = grant.expire_time();
  auto& d = *e->mutable_details();
  d["grant"] = grant.name();
  d["extends_grant"] = grant.name();
  d["grant_previous_expire_time"] = FormatTimestamp(previous);
  d["grant_extensions"] = std::to_string(grant.extensions_size());
  // What the longer grant covers, as a new grant's approval records it: the
  // sources whose use rests on the customer's review (reviewed then and
  // still protected now), which the offline verifier holds to the
  // customer's signature when the tenant requires one. An extension the
  // customer did not approve shows here for what it is.
  ASSIGN_OR_RETURN(v1::Environment env,
                   tx.tenancy().GetEnvironment(name.tenant, IdOfName(grant.environment()), false));
  const bool is_protected = IsProtected(policy, env);
  std::vector<std::string> pinned, reviewed;
  for (const v1::PinnedDataSource& p : grant.pinned_data_sources()) {
    pinned.push_back(p.id());
    auto now_source = std::find_if(env.data_sources().begin(), env.data_sources().end(),
                                   [&](const v1::DataSource& ds) { return ds.id() == p.id(); });
    if (p.customer_reviewed() && is_protected && now_source != env.data_sources().end() &&
        now_source->lockbox_supported()) {
      reviewed.push_back(p.id());
    }
  }
  d["grant_data_sources"] = absl::StrJoin(pinned, ",");
  d["grant_customer_reviewed"] = absl::StrJoin(reviewed, ",");
  if (grant.customer_reviewed() && is_protected && env.data_sources().empty()) {
    d["grant_customer_reviewed_whole"] = "true";
  }
  d["grant_start_time"] = google::protobuf::util::TimeUtil::ToString(grant.start_time());
  return grant;
}

absl::StatusOr<v1::AccessRequest> GrantUseCases::ExtendGrant(const C& c,
                                                             const v1::ExtendGrantRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "grants", "name"));
  return runner().Change<v1::AccessRequest>(
      c, "ExtendGrant", r, r.request_id(),
      [](Transaction&, const Actor& a) { return authz::ExtendGrant(a); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        RETURN_IF_ERROR(authz::ExtendGrant(a));
        // Locked: two extensions of one grant asked at once are one after
        // the other, and the second sees the first pending.
        ASSIGN_OR_RETURN(v1::Grant grant, tx.grants().GetGrant(name.tenant, name.id, true));
        ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(name.tenant, false));
        // Someone else's grant is refused before its state is told.
        RETURN_IF_ERROR(CheckMayExtend(a, grant, policy, now));
        RETURN_IF_ERROR(ValidateExtendGrant(r, policy));
        ASSIGN_OR_RETURN(std::optional<std::string> pending,
                         tx.requests().FindPendingExtension(name.tenant, name.id, now));
        if (pending) {
          return Error(absl::StatusCode::kFailedPrecondition, reason::kExtensionPending,
                       absl::StrCat("an extension of this grant is already waiting: ",
                                    ChildName(name.tenant, "accessRequests", *pending)));
        }
        ASSIGN_OR_RETURN(
            v1::Environment env,
            tx.tenancy().GetEnvironment(name.tenant, IdOfName(grant.environment()), false));
        ASSIGN_OR_RETURN(
            v1::AccessRequest original,
            tx.requests().GetAccessRequest(name.tenant, IdOfName(grant.access_request()), false));
        // The justification is stored sealed in a sealed tenant: refused
        // with KEY_UNAVAILABLE, nothing written, while its key cannot be used.
        ASSIGN_OR_RETURN(std::optional<VersionKey> key,
                         runner().sealer().KeyForNew(tx, name.tenant));
        std::string id = NewUuid();
        ASSIGN_OR_RETURN(
            v1::AccessRequest request,
            NewExtensionRequest(r, grant, original, name.tenant, id, env, policy, a, now));
        v1::AccessRequest stored = Sealer::NewRequestForStore(key, request);
        RETURN_IF_ERROR(tx.requests().InsertAccessRequest(name.tenant, id, &stored));
        request.set_etag(stored.etag());
        v1::AuditEvent e =
            NewAuditEvent(a, "access_request.create", name.tenant, request.name(), now);
        SetRequestFields(request, &e);
        SetRequestScopeDetails(request, &e);
        auto& d = *e.mutable_details();
        d["extends_grant"] = grant.name();
        d["grant_expire_time"] = FormatTimestamp(grant.expire_time());
        d["grant_extensions"] = std::to_string(grant.extensions_size());
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        RETURN_IF_ERROR(
            NotifyRequest(runner().sealer(), tx, RequestEvent::kCreated, request, nullptr, now));
        return request;
      });
}

absl::Status CheckStillExtensible(Transaction& tx, const v1::AccessRequest& extension,
                                  const v1::LockboxPolicy& policy, absl::Time now) {
  ASSIGN_OR_RETURN(TenantChildName name,
                   ParseChildName(extension.extends_grant(), "grants", "extends_grant"));
  ASSIGN_OR_RETURN(v1::Grant grant, tx.grants().GetGrant(name.tenant, name.id, false));
  return CheckExtensible(grant, policy, now);
}

bool IsMootExtensionRefusal(const absl::Status& refusal) {
  const std::string why = ReasonOf(refusal);
  return why == v1::ErrorReason_Name(v1::GRANT_NOT_EXTENSIBLE) ||
         why == v1::ErrorReason_Name(v1::EXTENSIONS_EXHAUSTED);
}

absl::StatusOr<v1::AccessRequest> CancelExtensionBySystem(const UseCaseRunner& runner,
                                                          Transaction& tx,
                                                          const std::string& tenant,
                                                          const std::string& id,
                                                          absl::string_view why, absl::Time now) {
  ASSIGN_OR_RETURN(const v1::AccessRequest as_read,
                   tx.requests().GetAccessRequest(tenant, id, true));
  v1::AccessRequest request = as_read;
  RETURN_IF_ERROR(runner.sealer().OpenRequest(tx, &request));
  RETURN_IF_ERROR(CancelMootExtension(now, &request));
  v1::AccessRequest stored = Sealer::ChangedRequestForStore(as_read, std::nullopt, request);
  RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(tenant, id, &stored));
  request.set_etag(stored.etag());
  v1::AuditEvent e =
      NewAuditEvent(SystemActor(), "access_request.cancel", tenant, request.name(), now);
  SetRequestFields(request, &e);
  auto& d = *e.mutable_details();
  d["extends_grant"] = request.extends_grant();
  d["reason"] = std::string(why);
  RETURN_IF_ERROR(runner.audit_log().AppendOrWithhold(tx, &e));
  RETURN_IF_ERROR(
      NotifyRequest(runner.sealer(), tx, RequestEvent::kNoLongerNeeded, request, nullptr, now));
  return request;
}

// A pending extension of a grant that has just ended early is moot:
// cancelled in the ending's transaction, by the system.
absl::Status CancelPendingExtension(const UseCaseRunner& runner, Transaction& tx,
                                    const v1::Grant& grant, absl::Time now) {
  const std::string tenant = TenantOfName(grant.name());
  ASSIGN_OR_RETURN(std::optional<std::string> pending,
                   tx.requests().FindPendingExtension(tenant, IdOfName(grant.name()), now));
  if (!pending) return absl::OkStatus();
  return CancelExtensionBySystem(
             runner, tx, tenant, *pending,
             absl::StrCat("the grant was ", v1::Grant::State_Name(grant.state())), now)
      .status();
}

}  // namespace lockbox
