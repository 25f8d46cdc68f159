// GrantService: grants and the data plane's check.
#include "server/app/grant_use_cases.h"

#include "absl/cleanup/cleanup.h"
#include "server/app/audit_events.h"
#include "server/app/grant_extensions.h"
#include "server/app/list_page.h"
#include "server/app/request_messages.h"
#include "server/domain/authorization.h"
#include "server/domain/filter.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

// The audit record of a grant's end carries its request's fields.
absl::Status AuditGrantEnd(const AuditLog& audit_log, const Sealer& sealer, Transaction& tx,
                           const Actor& a, absl::Time now, absl::string_view action,
                           const std::string& tenant, const v1::Grant& grant,
                           const std::string& why, v1::AccessRequest* request_out) {
  std::string request_id = IdOfName(grant.access_request());
  ASSIGN_OR_RETURN(v1::AccessRequest request,
                   tx.requests().GetAccessRequest(tenant, request_id, false));
  RETURN_IF_ERROR(sealer.OpenRequest(tx, &request));
  v1::AuditEvent e = NewAuditEvent(a, action, tenant, grant.name(), now);
  SetRequestFields(request, &e);
  *e.mutable_access_expire_time() = grant.expire_time();
  (*e.mutable_details())["grant_state"] = v1::Grant::State_Name(grant.state());
  if (!why.empty()) (*e.mutable_details())["reason"] = why;
  *request_out = request;
  // A grant ends whatever the tenant's key: ending access must never wait
  // for it.
  return audit_log.AppendOrWithhold(tx, &e);
}

}  // namespace

void GrantUseCases::ForgetGrant(const std::string& tenant, const std::string& id) {
  // Whatever the outcome: a grant dropped that is still active is only
  // read again from the database by the next check.
  if (options_.grant_view != nullptr) options_.grant_view->Forget(GrantKey(tenant, id));
}

absl::StatusOr<v1::Grant> GrantUseCases::GetGrant(const C& c, const v1::GetGrantRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "grants", "name"));
  return runner().Read<v1::Grant>(
      c, [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::Grant> {
        RETURN_IF_ERROR(authz::ReadGrants(a, name.tenant));
        ASSIGN_OR_RETURN(v1::Grant grant, tx.grants().GetGrant(name.tenant, name.id, false));
        RETURN_IF_ERROR(authz::ReadGrant(a, name.tenant, grant.principal()));
        ApplyReadTimeState(now, &grant);
        return grant;
      });
}

absl::StatusOr<v1::ListGrantsResponse> GrantUseCases::ListGrants(const C& c,
                                                                 const v1::ListGrantsRequest& r) {
  std::string tenant;
  if (r.parent() != "tenants/-") {
    ASSIGN_OR_RETURN(tenant, ParseTenantName(r.parent(), "parent"));
  }
  ListQuery q;
  ASSIGN_OR_RETURN(
      q.conditions,
      ParseFilter(r.filter(), {{"state",
                                FilterField::Type::kEnum,
                                {"ACTIVE", "SCHEDULED", "EXPIRED", "RELEASED", "REVOKED"}},
                               {"environment"},
                               {"principal"}}));
  ASSIGN_OR_RETURN(ListPage page,
                   ListPage::Start(*options_.page_tokens, "ListGrants", c, r.parent(), r.filter(),
                                   r.page_token(), r.page_size(), &q));
  return runner().Read<v1::ListGrantsResponse>(
      c,
      [&](Transaction& tx, const Actor& a,
          absl::Time now) -> absl::StatusOr<v1::ListGrantsResponse> {
        ASSIGN_OR_RETURN(authz::ListScope scope, authz::ListGrants(a, tenant));
        q.tenants = std::move(scope.tenants);
        q.principal = std::move(scope.principal);
        q.now = now;
        ASSIGN_OR_RETURN(std::vector<v1::Grant> grants, tx.grants().ListGrants(q));
        v1::ListGrantsResponse out;
        out.set_next_page_token(page.Finish(&grants, [](const v1::Grant& last) {
          return Cursor{MicrosKey(last.start_time()), IdOfName(last.name())};
        }));
        for (auto& g : grants) {
          ApplyReadTimeState(now, &g);
          *out.add_grants() = std::move(g);
        }
        return out;
      });
}

std::optional<absl::StatusOr<v1::CheckAccessResponse>> GrantUseCases::CheckAccessFromMemory(
    const C& c, const v1::CheckAccessRequest& r) {
  auto principal = ParseSpiffeId(r.principal(), runner().trust_domain(), "principal");
  if (!principal.ok()) return absl::StatusOr<v1::CheckAccessResponse>(principal.status());
  auto env = ParseChildName(r.environment(), "environments", "environment");
  if (!env.ok()) return absl::StatusOr<v1::CheckAccessResponse>(env.status());
  if (!r.data_source().empty() && !IsValidId(r.data_source())) {
    return absl::StatusOr<v1::CheckAccessResponse>(
        InvalidField("data_source", "BAD_FORMAT", "must match [a-z][a-z0-9-]{0,62}"));
  }
  // The hot path: an enforcer asking about an active grant, answered from
  // memory. Everything else (no grant, another caller) asks the database,
  // so the view can only ever be late to deny, never to allow.
  const GrantView* view = options_.grant_view;
  if (view == nullptr || !c.on_behalf_of.empty() || !view->Ready() ||
      !view->IsEnforcer(c.spiffe_id)) {
    return std::nullopt;
  }
  // The view knows the enforcer by name; the name is only as good as the
  // anchor its certificate chains to. Any doubt goes to the slow path,
  // which refuses with the reason.
  if (!runner().VerifyProviderCertificate(c).ok()) return std::nullopt;
  // The view applies the same coverage rule with the environment and
  // policy as it last read them (or, while a change to them is on its way,
  // allows only customer-reviewed sources) and leaves the rest to the
  // database path.
  std::optional<v1::Grant> grant =
      view->Allowing(principal->spiffe_id, env->tenant, env->id, r.environment(), r.data_source(),
                     runner().clock().Now());
  if (!grant) return std::nullopt;
  v1::CheckAccessResponse out;
  out.set_allowed(true);
  *out.mutable_expire_time() = grant->expire_time();
  *out.mutable_grant() = std::move(*grant);
  return absl::StatusOr<v1::CheckAccessResponse>(std::move(out));
}

absl::StatusOr<v1::CheckAccessResponse> GrantUseCases::CheckAccess(
    const C& c, const v1::CheckAccessRequest& r) {
  std::optional<absl::StatusOr<v1::CheckAccessResponse>> answered = CheckAccessFromMemory(c, r);
  if (answered) return std::move(*answered);
  return CheckAccessFromDatabase(c, r);
}

absl::StatusOr<v1::CheckAccessResponse> GrantUseCases::CheckAccessFromDatabase(
    const C& c, const v1::CheckAccessRequest& r) {
  ASSIGN_OR_RETURN(Principal principal,
                   ParseSpiffeId(r.principal(), runner().trust_domain(), "principal"));
  ASSIGN_OR_RETURN(TenantChildName env,
                   ParseChildName(r.environment(), "environments", "environment"));
  return runner().Read<v1::CheckAccessResponse>(
      c,
      [&](Transaction& tx, const Actor& a,
          absl::Time now) -> absl::StatusOr<v1::CheckAccessResponse> {
        RETURN_IF_ERROR(authz::CheckAccess(a));
        ASSIGN_OR_RETURN(std::vector<v1::Grant> grants,
                         tx.grants().ActiveGrants(principal.spiffe_id, env.tenant, env.id));
        v1::CheckAccessResponse out;
        const v1::Grant* best = nullptr;
        const v1::Grant* scheduled = nullptr;
        if (!grants.empty()) {
          // The coverage rule needs what is true now: the principal's roles,
          // the environment and the tenant's policy.
          ASSIGN_OR_RETURN(std::vector<Binding> bindings,
                           tx.tenancy().BindingsOf(principal.spiffe_id));
          // A grant's request holds its environment (a foreign key): it exists.
          ASSIGN_OR_RETURN(v1::Environment environment,
                           tx.tenancy().GetEnvironment(env.tenant, env.id, false));
          ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(env.tenant, false));
          AccessCheck check;
          check.principal = principal.spiffe_id;
          check.environment = r.environment();
          check.data_source = r.data_source();
          check.now = now;
          check.principal_is_engineer = Permissions(std::move(bindings)).Has(Role::kEngineer);
          check.environment_now = &environment;
          check.policy_now = &policy;
          best = BestAllowingGrant(grants, check);
          if (best == nullptr) scheduled = FirstScheduledGrant(grants, check);
        }
        if (best != nullptr) {
          out.set_allowed(true);
          *out.mutable_expire_time() = best->expire_time();
          *out.mutable_grant() = *best;
        } else if (scheduled != nullptr) {
          // Not yet: the grant (its start_time says when) and no expire_time,
          // which is set only when allowed.
          out.set_reason(reason::kGrantNotStarted.name());
          *out.mutable_grant() = *scheduled;
          ApplyReadTimeState(now, out.mutable_grant());
        } else {
          out.set_reason(reason::kNoActiveGrant.name());
        }
        return out;
      });
}

absl::StatusOr<v1::Grant> GrantUseCases::ReleaseGrant(const C& c,
                                                      const v1::ReleaseGrantRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "grants", "name"));
  absl::Cleanup forget = [&] { ForgetGrant(name.tenant, name.id); };
  return runner().Change<v1::Grant>(
      c, "ReleaseGrant", r, r.request_id(),
      [](Transaction&, const Actor& a) { return authz::ReleaseGrant(a); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::Grant> {
        RETURN_IF_ERROR(authz::ReleaseGrant(a));
        ASSIGN_OR_RETURN(v1::Grant grant, tx.grants().GetGrant(name.tenant, name.id, true));
        RETURN_IF_ERROR(CheckEtag(r.etag(), grant.etag()));
        RETURN_IF_ERROR(Release(a, now, &grant));
        RETURN_IF_ERROR(tx.grants().UpdateGrant(name.tenant, name.id, &grant));
        v1::AccessRequest request;
        RETURN_IF_ERROR(AuditGrantEnd(runner().audit_log(), runner().sealer(), tx, a, now,
                                      "grant.release", name.tenant, grant, "", &request));
        RETURN_IF_ERROR(CancelPendingExtension(runner(), tx, grant, now));
        RETURN_IF_ERROR(NotifyGrantEnded(runner().sealer(), tx, grant, request, now));
        return grant;
      });
}

absl::StatusOr<v1::Grant> GrantUseCases::RevokeGrant(const C& c, const v1::RevokeGrantRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "grants", "name"));
  if (r.reason().size() > kMaxCommentBytes) {
    return InvalidField("reason", "TOO_LONG", "at most 4096 bytes");
  }
  absl::Cleanup forget = [&] { ForgetGrant(name.tenant, name.id); };
  return runner().Change<v1::Grant>(
      c, "RevokeGrant", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::RevokeGrant(a, name.tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::Grant> {
        RETURN_IF_ERROR(authz::RevokeGrant(a, name.tenant));
        ASSIGN_OR_RETURN(v1::Grant grant, tx.grants().GetGrant(name.tenant, name.id, true));
        RETURN_IF_ERROR(CheckEtag(r.etag(), grant.etag()));
        ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(name.tenant, false));
        RETURN_IF_ERROR(Revoke(a, policy, name.tenant, now, &grant));
        RETURN_IF_ERROR(tx.grants().UpdateGrant(name.tenant, name.id, &grant));
        v1::AccessRequest request;
        RETURN_IF_ERROR(AuditGrantEnd(runner().audit_log(), runner().sealer(), tx, a, now,
                                      "grant.revoke", name.tenant, grant, r.reason(), &request));
        RETURN_IF_ERROR(CancelPendingExtension(runner(), tx, grant, now));
        RETURN_IF_ERROR(NotifyGrantEnded(runner().sealer(), tx, grant, request, now));
        return grant;
      });
}

// The sweep's part: row claims (FOR UPDATE SKIP LOCKED) make each expiry
// happen exactly once however many replicas sweep.
absl::StatusOr<bool> GrantUseCases::ExpireOneGrant() {
  return runner().HandleOneDue(
      [](Transaction& tx, absl::Time now) { return tx.grants().ClaimExpiredGrant(now); },
      [this](Transaction& tx, const ClaimedRow& row, absl::Time now) -> absl::Status {
        ASSIGN_OR_RETURN(v1::Grant g, tx.grants().GetGrant(row.tenant, row.id, true));
        RETURN_IF_ERROR(RecordExpiry(now, &g));
        RETURN_IF_ERROR(tx.grants().UpdateGrant(row.tenant, row.id, &g));
        v1::AccessRequest request;
        RETURN_IF_ERROR(AuditGrantEnd(runner().audit_log(), runner().sealer(), tx, SystemActor(),
                                      now, "grant.expire", row.tenant, g, "", &request));
        return NotifyGrantEnded(runner().sealer(), tx, g, request, now);
      });
}

}  // namespace lockbox
