// Who may do what: every permission rule of the API, as one predicate per
// kind of operation over the caller's role bindings. The use cases ask
// these before they read anything, so that permission is checked before
// existence and a refusal reveals nothing. The table of rules is tested
// without a server (tests/unit/authorization_test.cc).
//
// Each returns OK or PERMISSION_DENIED (reason PERMISSION_DENIED) with a
// message naming what is needed. Thread-safe: pure functions.
#ifndef LOCKBOX_SERVER_DOMAIN_AUTHORIZATION_H_
#define LOCKBOX_SERVER_DOMAIN_AUTHORIZATION_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/domain/identity.h"

namespace lockbox::authz {

// What a list may show the caller: the tenants (nullopt: every tenant) and,
// when set, only the rows of that principal (an engineer's own requests and
// grants).
struct ListScope {
  std::optional<std::vector<std::string>> tenants;
  std::string principal;
};

// Tenants and their configuration (tenant, policy, environments, bindings).
// lockbox.admin manages tenants and environments' descriptions; the tenant's
// own tenant.admin owns its policy and whether an environment is managed.
absl::Status ReadTenantConfig(const Actor& a, absl::string_view tenant);
absl::StatusOr<ListScope> ListTenants(const Actor& a);
absl::Status ManageTenants(const Actor& a);
absl::Status ManageTenantPolicy(const Actor& a, absl::string_view tenant);
// The tenant's identity configuration (CA bundle, token issuers): read by
// its members and lockbox.admin, changed only by its own tenant.admin (SPEC
// section 8: not even lockbox.admin may say who the tenant's users are).
absl::Status ReadTenantIdentity(const Actor& a, absl::string_view tenant);
absl::Status ManageTenantIdentity(const Actor& a, absl::string_view tenant);
// `tenant` is "" for a global binding. Tenant roles are the tenant's own:
// only its tenant.admin binds them; lockbox.admin binds provider roles only,
// service.keyuser (the provider's data plane) included, in one tenant.
absl::Status CreateRoleBinding(const Actor& a, Role role, absl::string_view tenant);
// `tenant` "" lists every binding the caller may see.
absl::StatusOr<ListScope> ListRoleBindings(const Actor& a, absl::string_view tenant);
// `binding_tenant` is the binding's tenant, "" when it is global or unknown
// (a tenant admin learns nothing of bindings outside their tenant). As
// CreateRoleBinding: a tenant's bindings by its tenant.admin, global ones by
// lockbox.admin.
// A service.keyuser binding (`binding_role`) is removed by lockbox.admin or
// by its tenant's tenant.admin: the customer may cut a data plane off from
// its keys.
absl::Status DeleteRoleBinding(const Actor& a, absl::string_view binding_tenant,
                               absl::string_view binding_role = "");

// Access requests. Engineers who are not reviewers see only their own.
absl::Status CreateAccessRequest(const Actor& a);
// The gate before a request of `tenant` is read; then ReadAccessRequest on
// the row.
absl::Status ReadAccessRequests(const Actor& a, absl::string_view tenant);
absl::Status ReadAccessRequest(const Actor& a, absl::string_view tenant,
                               absl::string_view requester);
// `tenant` "" is every tenant (tenants/-).
absl::StatusOr<ListScope> ListAccessRequests(const Actor& a, absl::string_view tenant);
// operator.reviewer for the internal stage, tenant.admin of the request's
// tenant for the customer's; which stage is the lifecycle's rule.
absl::Status DecideAccessRequests(const Actor& a, absl::string_view tenant);
absl::Status CancelAccessRequest(const Actor& a);
// Break-glass (SPEC section 10): an EMERGENCY request needs both
// operator.engineer and operator.breakglass; its review, tenant.admin of the
// request's tenant (directly or through a portal).
absl::Status OpenEmergencyAccess(const Actor& a);
absl::Status ReviewEmergencyAccess(const Actor& a, absl::string_view tenant);

// Grants.
absl::Status ReadGrants(const Actor& a, absl::string_view tenant);
absl::Status ReadGrant(const Actor& a, absl::string_view tenant, absl::string_view principal);
absl::StatusOr<ListScope> ListGrants(const Actor& a, absl::string_view tenant);
absl::Status CheckAccess(const Actor& a);
absl::Status ReleaseGrant(const Actor& a);
absl::Status RevokeGrant(const Actor& a, absl::string_view tenant);
// The grant's own principal asks for more time; the principal is the
// lifecycle's rule (domain/extensions.h).
absl::Status ExtendGrant(const Actor& a);

// KeyService: a data plane bound service.keyuser in the environment's
// tenant.
absl::Status UseDataKeys(const Actor& a, absl::string_view tenant);

// The audit log of `tenant` ("" is the global log).
absl::Status ReadAudit(const Actor& a, absl::string_view tenant);
// The public key: anyone with a role binding.
absl::Status ReadAuditPublicKey(const Actor& a);

// The outbox of `tenant` ("" is every tenant's).
absl::Status ListNotifications(const Actor& a, absl::string_view tenant);

// Encryption policies (SPEC section 9): the customer's keys are the
// customer's alone. Only the tenant's own tenant.admin creates, changes,
// disables, enables or rotates them (never lockbox.admin: the provider
// cannot take an environment out of its customer's key); its tenant.admin
// and tenant.auditor read them.
absl::Status ManageEncryptionPolicies(const Actor& a, absl::string_view tenant);
absl::Status ReadEncryptionPolicies(const Actor& a, absl::string_view tenant);

// Whether the caller may act for a user with the on-behalf-of header.
bool MayActOnBehalf(const Actor& caller);

}  // namespace lockbox::authz

#endif  // LOCKBOX_SERVER_DOMAIN_AUTHORIZATION_H_
