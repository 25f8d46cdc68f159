#include "server/domain/authorization.h"

#include "server/domain/status.h"

namespace lockbox::authz {
namespace {

bool IsOperatorStaff(const Permissions& p) {
  return p.Has(Role::kAdmin) || p.Has(Role::kEngineer) || p.Has(Role::kReviewer);
}

bool ReadsAllRequestsOf(const Permissions& p, absl::string_view tenant) {
  return p.Has(Role::kAdmin) || p.Has(Role::kReviewer) || p.IsTenantMember(tenant);
}

// Grants follow the same rule as requests.
bool ReadsAllGrantsOf(const Permissions& p, absl::string_view tenant) {
  return ReadsAllRequestsOf(p, tenant);
}

absl::Status Allow(bool allowed, absl::string_view needs) {
  return allowed ? absl::OkStatus() : PermissionDenied(needs);
}

// Requests and grants are listed by one rule: in one tenant, after its gate,
// everything for those who read all of it and their own rows for engineers;
// across tenants, everything for admins and reviewers, their own rows for
// engineers, and their tenants for tenant roles.
absl::StatusOr<ListScope> ListRequestsOrGrants(const Actor& a, absl::string_view tenant,
                                               const absl::Status& tenant_gate,
                                               absl::string_view needs) {
  const Permissions& p = a.permissions;
  ListScope scope;
  if (!tenant.empty()) {
    RETURN_IF_ERROR(tenant_gate);
    scope.tenants = std::vector<std::string>{std::string(tenant)};
    if (!ReadsAllRequestsOf(p, tenant)) scope.principal = a.principal.spiffe_id;
    return scope;
  }
  if (p.Has(Role::kAdmin) || p.Has(Role::kReviewer)) return scope;
  if (p.Has(Role::kEngineer)) {
    scope.principal = a.principal.spiffe_id;
  } else if (!p.Tenants().empty()) {
    scope.tenants = p.Tenants();
  } else {
    return PermissionDenied(needs);
  }
  return scope;
}

}  // namespace

absl::Status ReadTenantConfig(const Actor& a, absl::string_view tenant) {
  return Allow(IsOperatorStaff(a.permissions) || a.permissions.IsTenantMember(tenant),
               "reading a tenant needs a provider role or a role in that tenant");
}

absl::StatusOr<ListScope> ListTenants(const Actor& a) {
  ListScope scope;
  if (IsOperatorStaff(a.permissions)) return scope;
  if (a.permissions.Tenants().empty()) {
    return PermissionDenied("listing tenants needs a provider role or a tenant role");
  }
  scope.tenants = a.permissions.Tenants();
  return scope;
}

absl::Status ManageTenants(const Actor& a) {
  return Allow(a.permissions.Has(Role::kAdmin), "needs lockbox.admin");
}

absl::Status ManageTenantPolicy(const Actor& a, absl::string_view tenant) {
  return Allow(a.permissions.HasInTenant(Role::kTenantAdmin, tenant),
               "needs tenant.admin of the tenant");
}

absl::Status ReadTenantIdentity(const Actor& a, absl::string_view tenant) {
  return Allow(a.permissions.Has(Role::kAdmin) || a.permissions.IsTenantMember(tenant),
               "reading a tenant's identity needs lockbox.admin or a role in that tenant");
}

absl::Status ManageTenantIdentity(const Actor& a, absl::string_view tenant) {
  return Allow(a.permissions.HasInTenant(Role::kTenantAdmin, tenant),
               "needs tenant.admin of the tenant (the provider cannot change who vouches for "
               "a customer's users)");
}

absl::Status CreateRoleBinding(const Actor& a, Role role, absl::string_view tenant) {
  if (IsTenantRole(role)) {
    return Allow(!tenant.empty() && a.permissions.HasInTenant(Role::kTenantAdmin, tenant),
                 "tenant roles are bound only by tenant.admin of the tenant");
  }
  return Allow(a.permissions.Has(Role::kAdmin), "provider roles need lockbox.admin");
}

absl::StatusOr<ListScope> ListRoleBindings(const Actor& a, absl::string_view tenant) {
  bool admin = a.permissions.Has(Role::kAdmin);
  ListScope scope;
  if (!tenant.empty()) {
    if (!admin && !a.permissions.IsTenantMember(tenant)) {
      return PermissionDenied("needs lockbox.admin or a role in the tenant");
    }
    scope.tenants = std::vector<std::string>{std::string(tenant)};
  } else if (!admin) {
    if (a.permissions.Tenants().empty()) return PermissionDenied("needs lockbox.admin");
    scope.tenants = a.permissions.Tenants();
  }
  return scope;
}

absl::Status DeleteRoleBinding(const Actor& a, absl::string_view binding_tenant,
                               absl::string_view binding_role) {
  if (binding_role == RoleName(Role::kKeyUser)) {
    return Allow(a.permissions.Has(Role::kAdmin) ||
                     a.permissions.HasInTenant(Role::kTenantAdmin, binding_tenant),
                 "a service.keyuser binding is removed by lockbox.admin or tenant.admin of its "
                 "tenant");
  }
  if (!binding_tenant.empty()) {
    return Allow(a.permissions.HasInTenant(Role::kTenantAdmin, binding_tenant),
                 "a tenant's bindings are removed only by tenant.admin of the tenant");
  }
  return Allow(a.permissions.Has(Role::kAdmin), "provider bindings need lockbox.admin");
}

absl::Status CreateAccessRequest(const Actor& a) {
  return Allow(a.permissions.Has(Role::kEngineer),
               "creating an access request needs operator.engineer");
}

absl::Status ReadAccessRequests(const Actor& a, absl::string_view tenant) {
  return Allow(ReadsAllRequestsOf(a.permissions, tenant) || a.permissions.Has(Role::kEngineer),
               "reading requests needs a provider role or a role in the tenant");
}

absl::Status ReadAccessRequest(const Actor& a, absl::string_view tenant,
                               absl::string_view requester) {
  RETURN_IF_ERROR(ReadAccessRequests(a, tenant));
  return Allow(ReadsAllRequestsOf(a.permissions, tenant) || requester == a.principal.spiffe_id,
               "engineers may read only their own requests");
}

absl::StatusOr<ListScope> ListAccessRequests(const Actor& a, absl::string_view tenant) {
  return ListRequestsOrGrants(a, tenant, ReadAccessRequests(a, tenant),
                              "reading requests needs a provider role or a tenant role");
}

absl::Status DecideAccessRequests(const Actor& a, absl::string_view tenant) {
  return Allow(
      a.permissions.Has(Role::kReviewer) || a.permissions.HasInTenant(Role::kTenantAdmin, tenant),
      "deciding needs operator.reviewer or tenant.admin of the request's tenant");
}

absl::Status CancelAccessRequest(const Actor& a) {
  return Allow(a.permissions.Has(Role::kEngineer),
               "only the requester (operator.engineer) can cancel");
}

absl::Status OpenEmergencyAccess(const Actor& a) {
  return Allow(a.permissions.Has(Role::kEngineer) && a.permissions.Has(Role::kBreakGlass),
               "emergency access needs operator.engineer and operator.breakglass");
}

absl::Status ReviewEmergencyAccess(const Actor& a, absl::string_view tenant) {
  return Allow(a.permissions.HasInTenant(Role::kTenantAdmin, tenant),
               "reviewing emergency access needs tenant.admin of the request's tenant");
}

absl::Status ReadGrants(const Actor& a, absl::string_view tenant) {
  return Allow(ReadsAllGrantsOf(a.permissions, tenant) || a.permissions.Has(Role::kEngineer),
               "reading grants needs a provider role or a role in the tenant");
}

absl::Status ReadGrant(const Actor& a, absl::string_view tenant, absl::string_view principal) {
  RETURN_IF_ERROR(ReadGrants(a, tenant));
  return Allow(ReadsAllGrantsOf(a.permissions, tenant) || principal == a.principal.spiffe_id,
               "engineers may read only their own grants");
}

absl::StatusOr<ListScope> ListGrants(const Actor& a, absl::string_view tenant) {
  return ListRequestsOrGrants(a, tenant, ReadGrants(a, tenant),
                              "reading grants needs a provider role or a tenant role");
}

absl::Status CheckAccess(const Actor& a) {
  return Allow(a.permissions.Has(Role::kEnforcer), "CheckAccess needs service.enforcer");
}

absl::Status ReleaseGrant(const Actor& a) {
  return Allow(a.permissions.Has(Role::kEngineer),
               "only the grant's principal (operator.engineer) can release it");
}

absl::Status ExtendGrant(const Actor& a) {
  return Allow(a.permissions.Has(Role::kEngineer),
               "only the grant's principal (operator.engineer) can extend it");
}

absl::Status RevokeGrant(const Actor& a, absl::string_view tenant) {
  return Allow(a.permissions.HasInTenant(Role::kTenantAdmin, tenant),
               "revoking needs tenant.admin of the grant's tenant");
}

absl::Status ReadAudit(const Actor& a, absl::string_view tenant) {
  if (a.permissions.Has(Role::kAdmin)) return absl::OkStatus();
  if (!tenant.empty() && a.permissions.IsTenantMember(tenant)) return absl::OkStatus();
  return PermissionDenied(tenant.empty() ? "the global log needs lockbox.admin"
                                         : "needs tenant.admin or tenant.auditor of the tenant");
}

absl::Status ReadAuditPublicKey(const Actor& a) {
  return Allow(!a.permissions.empty(), "needs a role binding");
}

absl::Status ListNotifications(const Actor& a, absl::string_view tenant) {
  bool admin = a.permissions.Has(Role::kAdmin);
  if (tenant.empty()) return Allow(admin, "every tenant's notifications need lockbox.admin");
  return Allow(admin || a.permissions.IsTenantMember(tenant),
               "needs tenant.admin or tenant.auditor of the tenant");
}

absl::Status UseDataKeys(const Actor& a, absl::string_view tenant) {
  return Allow(!tenant.empty() && a.permissions.HasInTenant(Role::kKeyUser, tenant),
               "data keys need service.keyuser in the environment's tenant");
}

absl::Status ManageEncryptionPolicies(const Actor& a, absl::string_view tenant) {
  return Allow(a.permissions.HasInTenant(Role::kTenantAdmin, tenant),
               "needs tenant.admin of the tenant (the provider cannot change a customer's "
               "encryption policies)");
}

absl::Status ReadEncryptionPolicies(const Actor& a, absl::string_view tenant) {
  return Allow(a.permissions.IsTenantMember(tenant),
               "needs tenant.admin or tenant.auditor of the tenant");
}

bool MayActOnBehalf(const Actor& caller) { return caller.permissions.Has(Role::kPortal); }

}  // namespace lockbox::authz
