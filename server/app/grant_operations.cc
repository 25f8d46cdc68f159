// GrantService: grants and the data plane's check.
#include "absl/cleanup/cleanup.h"
#include "server/app/change.h"
#include "server/domain/filter.h"
#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {

bool MayReadAllGrantsOf(const Actor& a, const std::string& tenant) {
  const Permissions& p = a.permissions;
  return p.Has(Role::kAdmin) || p.Has(Role::kReviewer) || p.IsTenantMember(tenant);
}

// The audit record of a grant's end carries its request's fields.
absl::Status AuditGrantEnd(const AuditLog& audit_log, Transaction& tx, const Actor& a,
                           absl::Time now, absl::string_view action, const std::string& tenant,
                           const v1::Grant& grant, const std::string& why,
                           v1::AccessRequest* request_out) {
  std::string request_id = grant.access_request().substr(grant.access_request().rfind('/') + 1);
  ASSIGN_OR_RETURN(v1::AccessRequest request,
                   tx.requests().GetAccessRequest(tenant, request_id, false));
  v1::AuditEvent e = NewAuditEvent(a, action, tenant, grant.name(), now);
  SetRequestFields(request, &e);
  *e.mutable_access_expire_time() = grant.expire_time();
  (*e.mutable_details())["grant_state"] = v1::Grant::State_Name(grant.state());
  if (!why.empty()) (*e.mutable_details())["reason"] = why;
  *request_out = request;
  return audit_log.Append(tx, &e);
}

}  // namespace

void Lockbox::ForgetGrant(const std::string& tenant, const std::string& id) {
  // Whatever the outcome: a grant dropped that is still active is only
  // read again from the database by the next check.
  if (options_.grant_view != nullptr) options_.grant_view->Forget(absl::StrCat(tenant, "/", id));
}

absl::StatusOr<v1::Grant> Lockbox::GetGrant(const C& c, const v1::GetGrantRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "grants", "name"));
  return Read<v1::Grant>(c, [&](Transaction& tx, const Actor& a, absl::Time now)
                                -> absl::StatusOr<v1::Grant> {
    if (!MayReadAllGrantsOf(a, name.tenant) && !a.permissions.Has(Role::kEngineer)) {
      return PermissionDenied("reading grants needs a provider role or a role in the tenant");
    }
    ASSIGN_OR_RETURN(v1::Grant grant, tx.grants().GetGrant(name.tenant, name.id, false));
    if (!MayReadAllGrantsOf(a, name.tenant) && grant.principal() != a.principal.spiffe_id) {
      return PermissionDenied("engineers may read only their own grants");
    }
    ApplyReadTimeState(now, &grant);
    return grant;
  });
}

absl::StatusOr<v1::ListGrantsResponse> Lockbox::ListGrants(const C& c,
                                                           const v1::ListGrantsRequest& r) {
  std::string tenant;
  if (r.parent() != "tenants/-") {
    ASSIGN_OR_RETURN(tenant, ParseTenantName(r.parent(), "parent"));
  }
  ListQuery q;
  ASSIGN_OR_RETURN(q.conditions,
                   ParseFilter(r.filter(), {{"state", FilterField::Type::kEnum,
                                             {"ACTIVE", "EXPIRED", "RELEASED", "REVOKED"}},
                                            {"environment"},
                                            {"principal"}}));
  std::string key = absl::StrCat("ListGrants|", r.parent(), "|", r.filter(), "|", c.spiffe_id);
  RETURN_IF_ERROR(StartPage(key, r.page_token(), r.page_size(), &q));
  return Read<v1::ListGrantsResponse>(c, [&](Transaction& tx, const Actor& a, absl::Time now)
                                             -> absl::StatusOr<v1::ListGrantsResponse> {
    const Permissions& p = a.permissions;
    if (!tenant.empty()) {
      if (!MayReadAllGrantsOf(a, tenant)) {
        if (!p.Has(Role::kEngineer)) {
          return PermissionDenied("reading grants needs a provider role or a role in the tenant");
        }
        q.principal = a.principal.spiffe_id;
      }
      q.tenants = std::vector<std::string>{tenant};
    } else if (!p.Has(Role::kAdmin) && !p.Has(Role::kReviewer)) {
      if (p.Has(Role::kEngineer)) {
        q.principal = a.principal.spiffe_id;
      } else if (!p.Tenants().empty()) {
        q.tenants = p.Tenants();
      } else {
        return PermissionDenied("reading grants needs a provider role or a tenant role");
      }
    }
    q.now = now;
    int limit = q.limit;
    q.limit = limit + 1;
    ASSIGN_OR_RETURN(std::vector<v1::Grant> grants, tx.grants().ListGrants(q));
    v1::ListGrantsResponse out;
    out.set_next_page_token(NextPageToken(page_tokens_, key, limit, &grants,
                                          [](const v1::Grant& last) {
      return Cursor{MicrosKey(last.start_time()), IdOfName(last.name())};
    }));
    for (auto& g : grants) {
      ApplyReadTimeState(now, &g);
      *out.add_grants() = std::move(g);
    }
    return out;
  });
}

std::optional<absl::StatusOr<v1::CheckAccessResponse>> Lockbox::CheckAccessFromMemory(
    const C& c, const v1::CheckAccessRequest& r) {
  auto principal = ParseSpiffeId(r.principal(), options_.trust_domain, "principal");
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
  std::optional<v1::Grant> grant = view->Allowing(principal->spiffe_id, env->tenant, env->id,
                                                  r.environment(), r.data_source(),
                                                  options_.clock->Now());
  if (!grant) return std::nullopt;
  v1::CheckAccessResponse out;
  out.set_allowed(true);
  *out.mutable_expire_time() = grant->expire_time();
  *out.mutable_grant() = std::move(*grant);
  return absl::StatusOr<v1::CheckAccessResponse>(std::move(out));
}

absl::StatusOr<v1::CheckAccessResponse> Lockbox::CheckAccess(const C& c,
                                                             const v1::CheckAccessRequest& r) {
  std::optional<absl::StatusOr<v1::CheckAccessResponse>> answered = CheckAccessFromMemory(c, r);
  if (answered) return std::move(*answered);
  return CheckAccessFromDatabase(c, r);
}

absl::StatusOr<v1::CheckAccessResponse> Lockbox::CheckAccessFromDatabase(
    const C& c, const v1::CheckAccessRequest& r) {
  ASSIGN_OR_RETURN(Principal principal,
                   ParseSpiffeId(r.principal(), options_.trust_domain, "principal"));
  ASSIGN_OR_RETURN(TenantChildName env, ParseChildName(r.environment(), "environments",
                                                       "environment"));
  return Read<v1::CheckAccessResponse>(c, [&](Transaction& tx, const Actor& a, absl::Time now)
                                              -> absl::StatusOr<v1::CheckAccessResponse> {
    if (!a.permissions.Has(Role::kEnforcer)) {
      return PermissionDenied("CheckAccess needs service.enforcer");
    }
    ASSIGN_OR_RETURN(std::vector<v1::Grant> grants,
                     tx.grants().ActiveGrants(principal.spiffe_id, env.tenant, env.id));
    v1::CheckAccessResponse out;
    for (v1::Grant& g : grants) {
      if (!GrantAllows(g, principal.spiffe_id, r.environment(), r.data_source(), now)) continue;
      if (out.allowed() && FromProto(g.expire_time()) <= FromProto(out.expire_time())) continue;
      out.set_allowed(true);
      *out.mutable_expire_time() = g.expire_time();
      *out.mutable_grant() = std::move(g);
    }
    if (!out.allowed()) out.set_reason("NO_ACTIVE_GRANT");
    return out;
  });
}

absl::StatusOr<v1::Grant> Lockbox::ReleaseGrant(const C& c, const v1::ReleaseGrantRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "grants", "name"));
  absl::Cleanup forget = [&] { ForgetGrant(name.tenant, name.id); };
  return Change<v1::Grant>(c, "ReleaseGrant", r, r.request_id(),
                           [&](Transaction& tx, const Actor& a, absl::Time now)
                               -> absl::StatusOr<v1::Grant> {
    if (!a.permissions.Has(Role::kEngineer)) {
      return PermissionDenied("only the grant's principal (operator.engineer) can release it");
    }
    ASSIGN_OR_RETURN(v1::Grant grant, tx.grants().GetGrant(name.tenant, name.id, true));
    RETURN_IF_ERROR(CheckEtag(r.etag(), grant.etag()));
    RETURN_IF_ERROR(Release(a, now, &grant));
    RETURN_IF_ERROR(tx.grants().UpdateGrant(name.tenant, name.id, &grant));
    v1::AccessRequest request;
    RETURN_IF_ERROR(
        AuditGrantEnd(audit_log_, tx, a, now, "grant.release", name.tenant, grant, "", &request));
    ASSIGN_OR_RETURN(Contacts contacts, ContactsFor(tx, request));
    RETURN_IF_ERROR(
        tx.outbox().EnqueueMessages(GrantEndedMessages(grant, request, contacts, now), now));
    return grant;
  });
}

absl::StatusOr<v1::Grant> Lockbox::RevokeGrant(const C& c, const v1::RevokeGrantRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "grants", "name"));
  if (r.reason().size() > kMaxCommentBytes) {
    return InvalidField("reason", "TOO_LONG", "at most 4096 bytes");
  }
  absl::Cleanup forget = [&] { ForgetGrant(name.tenant, name.id); };
  return Change<v1::Grant>(c, "RevokeGrant", r, r.request_id(),
                           [&](Transaction& tx, const Actor& a, absl::Time now)
                               -> absl::StatusOr<v1::Grant> {
    if (!a.permissions.HasInTenant(Role::kTenantAdmin, name.tenant)) {
      return PermissionDenied("revoking needs tenant.admin of the grant's tenant");
    }
    ASSIGN_OR_RETURN(v1::Grant grant, tx.grants().GetGrant(name.tenant, name.id, true));
    RETURN_IF_ERROR(CheckEtag(r.etag(), grant.etag()));
    ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(name.tenant, false));
    RETURN_IF_ERROR(Revoke(a, policy, name.tenant, now, &grant));
    RETURN_IF_ERROR(tx.grants().UpdateGrant(name.tenant, name.id, &grant));
    v1::AccessRequest request;
    RETURN_IF_ERROR(AuditGrantEnd(audit_log_, tx, a, now, "grant.revoke", name.tenant, grant,
                                  r.reason(), &request));
    ASSIGN_OR_RETURN(Contacts contacts, ContactsFor(tx, request));
    RETURN_IF_ERROR(
        tx.outbox().EnqueueMessages(GrantEndedMessages(grant, request, contacts, now), now));
    return grant;
  });
}

}  // namespace lockbox
