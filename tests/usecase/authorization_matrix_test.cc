// Every RPC of every service, called in-process by every kind of caller:
// the exact status code of each. One table; each row reaches the use case
// through a small lambda, so that only the lambdas change when the use
// cases move between classes. Callers a row does not name must get
// PERMISSION_DENIED.
//
// What only the wire shows (that the caller is the certificate) is in
// tests/integration/wire_identity_test.cc.
#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

using Code = absl::StatusCode;
constexpr Code OK = Code::kOk, DENIED = Code::kPermissionDenied,
               NOT_YET = Code::kFailedPrecondition;

// Caller labels, in the order they are tried.
constexpr char kAdmin[] = "admin";                               // lockbox.admin
constexpr char kEngineer[] = "engineer";                         // operator.engineer
constexpr char kReviewer[] = "reviewer";                         // operator.reviewer
constexpr char kAAdmin[] = "a-admin";                            // tenant.admin of tenants/ma
constexpr char kAAuditor[] = "a-auditor";                        // tenant.auditor of tenants/ma
constexpr char kBAdmin[] = "b-admin";                            // tenant.admin of tenants/mb
constexpr char kEnforcer[] = "enforcer";                         // service.enforcer
constexpr char kPortal[] = "portal";                             // service.portal, for no user
constexpr char kPortalForAAdmin[] = "portal-for-a-admin";        // a-admin's token
constexpr char kPortalNamingAAdmin[] = "portal-naming-a-admin";  // a bare SPIFFE ID
constexpr char kClaimingAAdmin[] = "engineer-claiming-a-admin";  // not a portal
constexpr char kUnbound[] = "unbound";                           // no binding at all

using Expected = std::map<std::string, Code>;

// The calls need these; they are made once for the whole table.
struct Scene {
  InProcessLockbox& app;
  UseCases& use_cases;
  const DemoWorld& world;
  v1::AccessRequest pending;  // Stays PENDING: nothing in the table decides it.
  v1::Grant grant;            // Stays ACTIVE: the table ends only fresh grants.
  int serial = 0;
  std::string Unique(const std::string& prefix) { return prefix + std::to_string(++serial); }
};

// A fresh resource a row needed could not be made: reported as a code no
// row expects, with the cause.
absl::Status SetupFailed(const absl::Status& s) {
  return absl::DataLossError("setting up the call failed: " + s.ToString());
}

struct Row {
  std::string label;   // What the row is called in the output.
  std::string method;  // Full proto method name, e.g. lockbox.v1.PolicyService.CreateTenant.
  std::function<absl::Status(Scene&, const CallerIdentity&)> call;
  Expected expected;
};

std::string Rpc(const std::string& service, const std::string& method) {
  return "lockbox.v1." + service + "." + method;
}

// Who may read a tenant's configuration and requests: provider staff and the
// tenant's own roles (the portal acting for them is them).
const Expected kReaders = {{kAdmin, OK},  {kEngineer, OK}, {kReviewer, OK},
                           {kAAdmin, OK}, {kAAuditor, OK}, {kPortalForAAdmin, OK}};
// The tenant's audit log: lockbox.admin and the tenant's own roles.
const Expected kAuditReaders = {
    {kAdmin, OK}, {kAAdmin, OK}, {kAAuditor, OK}, {kPortalForAAdmin, OK}};
// Every person with a binding, in any tenant; and every binding at all.
const Expected kEveryPerson = {{kAdmin, OK},          {kEngineer, OK}, {kReviewer, OK},
                               {kAAdmin, OK},         {kAAuditor, OK}, {kBAdmin, OK},
                               {kPortalForAAdmin, OK}};
const Expected kEveryBinding = [] {
  Expected e = kEveryPerson;
  e[kEnforcer] = OK;
  e[kPortal] = OK;
  return e;
}();
const Expected kTenantAAdminOnly = {{kAAdmin, OK}, {kPortalForAAdmin, OK}};

v1::CreateAccessRequestRequest AskA() { return DemoWorld::Ask(DemoWorld::kEnvironmentA); }

std::vector<Row> Matrix() {
  std::vector<Row> rows;
  auto add = [&rows](std::string label, std::string service, std::string method, Expected expected,
                     std::function<absl::Status(Scene&, const CallerIdentity&)> call) {
    std::string rpc = Rpc(service, method);
    rows.push_back({std::move(label), std::move(rpc), std::move(call), std::move(expected)});
  };

  // PolicyService
  add("CreateTenant", "PolicyService", "CreateTenant", {{kAdmin, OK}},
      [](Scene& s, const CallerIdentity& c) {
        return s.use_cases.policy().CreateTenant(c, s.app.TenantRequest(s.Unique("new"))).status();
      });
  add("GetTenantIdentity", "PolicyService", "GetTenantIdentity", kAuditReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::GetTenantIdentityRequest r;
        r.set_name(absl::StrCat(DemoWorld::kTenantA, "/identity"));
        return s.use_cases.policy().GetTenantIdentity(c, r).status();
      });
  // Not even lockbox.admin says who vouches for a customer's users.
  add("UpdateTenantIdentity", "PolicyService", "UpdateTenantIdentity", kTenantAAdminOnly,
      [](Scene& s, const CallerIdentity& c) {
        v1::UpdateTenantIdentityRequest r;
        r.mutable_identity()->set_name(absl::StrCat(DemoWorld::kTenantA, "/identity"));
        r.mutable_identity()->set_ca_bundle_pem(s.app.TenantCaPem("ma"));
        r.mutable_update_mask()->add_paths("ca_bundle_pem");
        return s.use_cases.policy().UpdateTenantIdentity(c, r).status();
      });
  add("GetTenant", "PolicyService", "GetTenant", kReaders, [](Scene& s, const CallerIdentity& c) {
    v1::GetTenantRequest r;
    r.set_name(DemoWorld::kTenantA);
    return s.use_cases.policy().GetTenant(c, r).status();
  });
  add("ListTenants", "PolicyService", "ListTenants", kEveryPerson,
      [](Scene& s, const CallerIdentity& c) {
        return s.use_cases.policy().ListTenants(c, v1::ListTenantsRequest()).status();
      });
  add("GetLockboxPolicy", "PolicyService", "GetLockboxPolicy", kReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::GetLockboxPolicyRequest r;
        r.set_name(absl::StrCat(DemoWorld::kTenantA, "/lockboxPolicy"));
        return s.use_cases.policy().GetLockboxPolicy(c, r).status();
      });
  add("UpdateLockboxPolicy", "PolicyService", "UpdateLockboxPolicy", kTenantAAdminOnly,
      [](Scene& s, const CallerIdentity& c) {
        v1::UpdateLockboxPolicyRequest r;
        r.mutable_lockbox_policy()->set_name(absl::StrCat(DemoWorld::kTenantA, "/lockboxPolicy"));
        r.mutable_lockbox_policy()->set_enabled(true);
        r.mutable_update_mask()->add_paths("enabled");
        return s.use_cases.policy().UpdateLockboxPolicy(c, r).status();
      });
  add("CreateEnvironment", "PolicyService", "CreateEnvironment", {{kAdmin, OK}},
      [](Scene& s, const CallerIdentity& c) {
        v1::CreateEnvironmentRequest r;
        r.set_parent(DemoWorld::kTenantA);
        r.set_environment_id(s.Unique("env"));
        return s.use_cases.policy().CreateEnvironment(c, r).status();
      });
  add("GetEnvironment", "PolicyService", "GetEnvironment", kReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::GetEnvironmentRequest r;
        r.set_name(DemoWorld::kEnvironmentA);
        return s.use_cases.policy().GetEnvironment(c, r).status();
      });
  add("ListEnvironments", "PolicyService", "ListEnvironments", kReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::ListEnvironmentsRequest r;
        r.set_parent(DemoWorld::kTenantA);
        return s.use_cases.policy().ListEnvironments(c, r).status();
      });
  // The provider names environments; only the customer may change whether
  // one is managed.
  add("UpdateEnvironment(display_name)", "PolicyService", "UpdateEnvironment", {{kAdmin, OK}},
      [](Scene& s, const CallerIdentity& c) {
        v1::UpdateEnvironmentRequest r;
        r.mutable_environment()->set_name(DemoWorld::kEnvironmentA);
        r.mutable_environment()->set_display_name("Production");
        r.mutable_update_mask()->add_paths("display_name");
        return s.use_cases.policy().UpdateEnvironment(c, r).status();
      });
  add("UpdateEnvironment(managed)", "PolicyService", "UpdateEnvironment", kTenantAAdminOnly,
      [](Scene& s, const CallerIdentity& c) {
        v1::UpdateEnvironmentRequest r;
        r.mutable_environment()->set_name(DemoWorld::kEnvironmentA);
        r.mutable_environment()->set_managed(true);
        r.mutable_update_mask()->add_paths("managed");
        return s.use_cases.policy().UpdateEnvironment(c, r).status();
      });
  // A tenant's roles are the tenant's: lockbox.admin binds provider roles
  // only (next row).
  add("CreateRoleBinding", "PolicyService", "CreateRoleBinding",
      {{kAAdmin, OK}, {kPortalForAAdmin, OK}}, [](Scene& s, const CallerIdentity& c) {
        v1::CreateRoleBindingRequest r;
        r.mutable_role_binding()->set_principal(SpiffeId(s.Unique("tenant/ma/user/new")));
        r.mutable_role_binding()->set_role("tenant.auditor");
        r.mutable_role_binding()->set_tenant(DemoWorld::kTenantA);
        return s.use_cases.policy().CreateRoleBinding(c, r).status();
      });
  add("CreateRoleBinding (provider role)", "PolicyService", "CreateRoleBinding", {{kAdmin, OK}},
      [](Scene& s, const CallerIdentity& c) {
        v1::CreateRoleBindingRequest r;
        r.mutable_role_binding()->set_principal(SpiffeId(s.Unique("operator/new")));
        r.mutable_role_binding()->set_role("operator.engineer");
        return s.use_cases.policy().CreateRoleBinding(c, r).status();
      });
  add("ListRoleBindings", "PolicyService", "ListRoleBindings", kAuditReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::ListRoleBindingsRequest r;
        r.set_parent(DemoWorld::kTenantA);
        return s.use_cases.policy().ListRoleBindings(c, r).status();
      });
  add("DeleteRoleBinding", "PolicyService", "DeleteRoleBinding",
      {{kAAdmin, OK}, {kPortalForAAdmin, OK}}, [](Scene& s, const CallerIdentity& c) {
        v1::CreateRoleBindingRequest make;
        make.mutable_role_binding()->set_principal(SpiffeId(s.Unique("tenant/ma/user/temp")));
        make.mutable_role_binding()->set_role("tenant.auditor");
        make.mutable_role_binding()->set_tenant(DemoWorld::kTenantA);
        absl::StatusOr<v1::RoleBinding> made =
            s.use_cases.policy().CreateRoleBinding(s.world.tenant_a_admin, make);
        if (!made.ok()) return SetupFailed(made.status());
        v1::DeleteRoleBindingRequest r;
        r.set_name(made->name());
        return s.use_cases.policy().DeleteRoleBinding(c, r).status();
      });

  add("DeleteRoleBinding (provider role)", "PolicyService", "DeleteRoleBinding", {{kAdmin, OK}},
      [](Scene& s, const CallerIdentity& c) {
        v1::CreateRoleBindingRequest make;
        make.mutable_role_binding()->set_principal(SpiffeId(s.Unique("operator/temp")));
        make.mutable_role_binding()->set_role("operator.engineer");
        absl::StatusOr<v1::RoleBinding> made =
            s.use_cases.policy().CreateRoleBinding(s.world.admin, make);
        if (!made.ok()) return SetupFailed(made.status());
        v1::DeleteRoleBindingRequest r;
        r.set_name(made->name());
        return s.use_cases.policy().DeleteRoleBinding(c, r).status();
      });

  // AccessRequestService
  add("CreateAccessRequest", "AccessRequestService", "CreateAccessRequest", {{kEngineer, OK}},
      [](Scene& s, const CallerIdentity& c) {
        return s.use_cases.requests().CreateAccessRequest(c, AskA()).status();
      });
  add("GetAccessRequest", "AccessRequestService", "GetAccessRequest", kReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::GetAccessRequestRequest r;
        r.set_name(s.pending.name());
        return s.use_cases.requests().GetAccessRequest(c, r).status();
      });
  add("ListAccessRequests", "AccessRequestService", "ListAccessRequests", kReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::ListAccessRequestsRequest r;
        r.set_parent(DemoWorld::kTenantA);
        return s.use_cases.requests().ListAccessRequests(c, r).status();
      });
  // The internal stage first: only the reviewer; the customer's admin must
  // wait for it.
  add("ApproveAccessRequest", "AccessRequestService", "ApproveAccessRequest",
      {{kReviewer, OK}, {kAAdmin, NOT_YET}, {kPortalForAAdmin, NOT_YET}},
      [](Scene& s, const CallerIdentity& c) {
        absl::StatusOr<v1::AccessRequest> fresh = s.world.PendingRequest();
        if (!fresh.ok()) return SetupFailed(fresh.status());
        v1::ApproveAccessRequestRequest r;
        r.set_name(fresh->name());
        return s.use_cases.requests().ApproveAccessRequest(c, r).status();
      });
  add("DenyAccessRequest", "AccessRequestService", "DenyAccessRequest",
      {{kReviewer, OK}, {kAAdmin, NOT_YET}, {kPortalForAAdmin, NOT_YET}},
      [](Scene& s, const CallerIdentity& c) {
        absl::StatusOr<v1::AccessRequest> fresh = s.world.PendingRequest();
        if (!fresh.ok()) return SetupFailed(fresh.status());
        v1::DenyAccessRequestRequest r;
        r.set_name(fresh->name());
        return s.use_cases.requests().DenyAccessRequest(c, r).status();
      });
  add("CancelAccessRequest", "AccessRequestService", "CancelAccessRequest", {{kEngineer, OK}},
      [](Scene& s, const CallerIdentity& c) {
        absl::StatusOr<v1::AccessRequest> fresh = s.world.PendingRequest();
        if (!fresh.ok()) return SetupFailed(fresh.status());
        v1::CancelAccessRequestRequest r;
        r.set_name(fresh->name());
        return s.use_cases.requests().CancelAccessRequest(c, r).status();
      });
  // Break-glass: operator.engineer with operator.breakglass (the matrix's
  // engineer holds both); each open's grant is released at once, so that
  // the next may open (one active emergency grant per engineer and tenant).
  add("CreateAccessRequest(EMERGENCY)", "AccessRequestService", "CreateAccessRequest",
      {{kEngineer, OK}}, [](Scene& s, const CallerIdentity& c) {
        v1::CreateAccessRequestRequest r = AskA();
        r.mutable_access_request()->set_reason(v1::AccessRequest::EMERGENCY);
        r.mutable_access_request()->set_incident_id(s.Unique("INC-"));
        absl::StatusOr<v1::AccessRequest> opened = s.use_cases.requests().CreateAccessRequest(c, r);
        if (!opened.ok()) return opened.status();
        v1::ReleaseGrantRequest release;
        release.set_name(opened->grant());
        absl::Status released = s.use_cases.grants().ReleaseGrant(c, release).status();
        return released.ok() ? absl::OkStatus() : SetupFailed(released);
      });
  add("ReviewEmergencyAccess", "AccessRequestService", "ReviewEmergencyAccess", kTenantAAdminOnly,
      [](Scene& s, const CallerIdentity& c) {
        v1::CreateAccessRequestRequest open = AskA();
        open.mutable_access_request()->set_reason(v1::AccessRequest::EMERGENCY);
        open.mutable_access_request()->set_incident_id(s.Unique("INC-"));
        absl::StatusOr<v1::AccessRequest> opened =
            s.use_cases.requests().CreateAccessRequest(s.world.engineer, open);
        if (!opened.ok()) return SetupFailed(opened.status());
        v1::ReleaseGrantRequest release;
        release.set_name(opened->grant());
        absl::Status released =
            s.use_cases.grants().ReleaseGrant(s.world.engineer, release).status();
        if (!released.ok()) return SetupFailed(released);
        v1::ReviewEmergencyAccessRequest r;
        r.set_name(opened->name());
        r.set_verdict(v1::EmergencyReview::ACCEPT);
        return s.use_cases.requests().ReviewEmergencyAccess(c, r).status();
      });
  // A watch is authorised by its first read, GetAccessRequest of the
  // watched request: that read's code is the watch's.
  add("WatchAccessRequest(first read)", "AccessRequestService", "WatchAccessRequest", kReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::GetAccessRequestRequest r;
        r.set_name(s.pending.name());
        absl::StatusOr<v1::AccessRequest> first = s.use_cases.requests().GetAccessRequest(c, r);
        if (first.ok() && first->state() != v1::AccessRequest::PENDING) {
          return absl::InternalError("the watched request is not pending: " + first->DebugString());
        }
        return first.status();
      });

  // GrantService
  add("GetGrant", "GrantService", "GetGrant", kReaders, [](Scene& s, const CallerIdentity& c) {
    v1::GetGrantRequest r;
    r.set_name(s.grant.name());
    return s.use_cases.grants().GetGrant(c, r).status();
  });
  add("ListGrants", "GrantService", "ListGrants", kReaders, [](Scene& s, const CallerIdentity& c) {
    v1::ListGrantsRequest r;
    r.set_parent(DemoWorld::kTenantA);
    return s.use_cases.grants().ListGrants(c, r).status();
  });
  add("CheckAccess", "GrantService", "CheckAccess", {{kEnforcer, OK}},
      [](Scene& s, const CallerIdentity& c) {
        v1::CheckAccessRequest r;
        r.set_principal(s.world.engineer.spiffe_id);
        r.set_environment(DemoWorld::kEnvironmentA);
        absl::StatusOr<v1::CheckAccessResponse> got = s.use_cases.grants().CheckAccess(c, r);
        if (got.ok() && !got->allowed()) {
          return absl::InternalError("the active grant does not allow: " + got->DebugString());
        }
        return got.status();
      });
  add("ReleaseGrant", "GrantService", "ReleaseGrant", {{kEngineer, OK}},
      [](Scene& s, const CallerIdentity& c) {
        absl::StatusOr<v1::Grant> fresh = s.world.ActiveGrant();
        if (!fresh.ok()) return SetupFailed(fresh.status());
        v1::ReleaseGrantRequest r;
        r.set_name(fresh->name());
        return s.use_cases.grants().ReleaseGrant(c, r).status();
      });
  add("ExtendGrant", "GrantService", "ExtendGrant", {{kEngineer, OK}},
      [](Scene& s, const CallerIdentity& c) {
        absl::StatusOr<v1::Grant> fresh = s.world.ActiveGrant();
        if (!fresh.ok()) return SetupFailed(fresh.status());
        v1::ExtendGrantRequest r;
        r.set_name(fresh->name());
        r.set_justification("the migration needs another hour");
        return s.use_cases.grants().ExtendGrant(c, r).status();
      });
  add("RevokeGrant", "GrantService", "RevokeGrant", kTenantAAdminOnly,
      [](Scene& s, const CallerIdentity& c) {
        absl::StatusOr<v1::Grant> fresh = s.world.ActiveGrant();
        if (!fresh.ok()) return SetupFailed(fresh.status());
        v1::RevokeGrantRequest r;
        r.set_name(fresh->name());
        return s.use_cases.grants().RevokeGrant(c, r).status();
      });

  // AuditService
  add("ListAuditEvents", "AuditService", "ListAuditEvents", kAuditReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::ListAuditEventsRequest r;
        r.set_parent(DemoWorld::kTenantA);
        return s.use_cases.audit().ListAuditEvents(c, r).status();
      });
  add("ListAuditEvents(global)", "AuditService", "ListAuditEvents", {{kAdmin, OK}},
      [](Scene& s, const CallerIdentity& c) {
        return s.use_cases.audit().ListAuditEvents(c, v1::ListAuditEventsRequest()).status();
      });
  add("VerifyAuditLog", "AuditService", "VerifyAuditLog", kAuditReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::VerifyAuditLogRequest r;
        r.set_parent(DemoWorld::kTenantA);
        return s.use_cases.audit().VerifyAuditLog(c, r).status();
      });
  // A stream: what the adapter calls, with a writer that keeps the chunks.
  add("ExportAuditEvents", "AuditService", "ExportAuditEvents", kAuditReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::ExportAuditEventsRequest r;
        r.set_parent(DemoWorld::kTenantA);
        std::string written;
        absl::Status st = s.use_cases.audit().ExportAuditEvents(c, r, [&written](const std::string& chunk) {
          written += chunk;
          return true;
        });
        if (st.ok() && written.find("\"event\"") == std::string::npos) {
          return absl::InternalError("an allowed export wrote no event: " + written);
        }
        if (!st.ok() && !written.empty()) {
          return absl::InternalError("a refused export wrote " + written);
        }
        return st;
      });
  add("CreateAuditCheckpoint", "AuditService", "CreateAuditCheckpoint", kAuditReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::CreateAuditCheckpointRequest r;
        r.set_parent(DemoWorld::kTenantA);
        return s.use_cases.audit().CreateAuditCheckpoint(c, r).status();
      });
  add("ListAuditCheckpoints", "AuditService", "ListAuditCheckpoints", kAuditReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::ListAuditCheckpointsRequest r;
        r.set_parent(DemoWorld::kTenantA);
        return s.use_cases.audit().ListAuditCheckpoints(c, r).status();
      });
  add("GetAuditPublicKey", "AuditService", "GetAuditPublicKey", kEveryBinding,
      [](Scene& s, const CallerIdentity& c) {
        return s.use_cases.audit().GetAuditPublicKey(c, v1::GetAuditPublicKeyRequest()).status();
      });

  // NotificationService
  add("ListNotifications", "NotificationService", "ListNotifications", kAuditReaders,
      [](Scene& s, const CallerIdentity& c) {
        v1::ListNotificationsRequest r;
        r.set_parent(DemoWorld::kTenantA);
        return s.use_cases.notifications().ListNotifications(c, r).status();
      });

  // EncryptionPolicyService: the customer's keys are its own admin's alone,
  // read by its own roles; not even lockbox.admin reads them. This scene
  // has no key module (Create: FAILED_PRECONDITION) and no policy (the rest
  // of the tenant's admin's calls: NOT_FOUND), which is past authorisation.
  const Expected kKeyAdmin = {{kAAdmin, Code::kNotFound}, {kPortalForAAdmin, Code::kNotFound}};
  const Expected kKeyReaders = {{kAAdmin, Code::kNotFound},
                                {kAAuditor, Code::kNotFound},
                                {kPortalForAAdmin, Code::kNotFound}};
  const std::string kEncryptionPolicy =
      absl::StrCat(DemoWorld::kTenantA, "/encryptionPolicies/main");
  add("CreateEncryptionPolicy", "EncryptionPolicyService", "CreateEncryptionPolicy",
      {{kAAdmin, NOT_YET}, {kPortalForAAdmin, NOT_YET}}, [](Scene& s, const CallerIdentity& c) {
        v1::CreateEncryptionPolicyRequest r;
        r.set_parent(DemoWorld::kTenantA);
        r.set_encryption_policy_id(s.Unique("p"));
        r.mutable_encryption_policy()->set_key_uri("pkcs11:token=ma;object=cmk");
        return s.use_cases.encryption_policies().CreateEncryptionPolicy(c, r).status();
      });
  add("GetEncryptionPolicy", "EncryptionPolicyService", "GetEncryptionPolicy", kKeyReaders,
      [kEncryptionPolicy](Scene& s, const CallerIdentity& c) {
        v1::GetEncryptionPolicyRequest r;
        r.set_name(kEncryptionPolicy);
        return s.use_cases.encryption_policies().GetEncryptionPolicy(c, r).status();
      });
  add("ListEncryptionPolicies", "EncryptionPolicyService", "ListEncryptionPolicies",
      {{kAAdmin, OK}, {kAAuditor, OK}, {kPortalForAAdmin, OK}},
      [](Scene& s, const CallerIdentity& c) {
        v1::ListEncryptionPoliciesRequest r;
        r.set_parent(DemoWorld::kTenantA);
        return s.use_cases.encryption_policies().ListEncryptionPolicies(c, r).status();
      });
  add("UpdateEncryptionPolicy", "EncryptionPolicyService", "UpdateEncryptionPolicy", kKeyAdmin,
      [kEncryptionPolicy](Scene& s, const CallerIdentity& c) {
        v1::UpdateEncryptionPolicyRequest r;
        r.mutable_encryption_policy()->set_name(kEncryptionPolicy);
        r.mutable_update_mask()->add_paths("environments");
        return s.use_cases.encryption_policies().UpdateEncryptionPolicy(c, r).status();
      });
  add("DisableEncryptionPolicy", "EncryptionPolicyService", "DisableEncryptionPolicy", kKeyAdmin,
      [kEncryptionPolicy](Scene& s, const CallerIdentity& c) {
        v1::DisableEncryptionPolicyRequest r;
        r.set_name(kEncryptionPolicy);
        return s.use_cases.encryption_policies().DisableEncryptionPolicy(c, r).status();
      });
  add("EnableEncryptionPolicy", "EncryptionPolicyService", "EnableEncryptionPolicy", kKeyAdmin,
      [kEncryptionPolicy](Scene& s, const CallerIdentity& c) {
        v1::EnableEncryptionPolicyRequest r;
        r.set_name(kEncryptionPolicy);
        return s.use_cases.encryption_policies().EnableEncryptionPolicy(c, r).status();
      });
  add("RotateEncryptionPolicy", "EncryptionPolicyService", "RotateEncryptionPolicy",
      {{kAAdmin, NOT_YET}, {kPortalForAAdmin, NOT_YET}},
      [kEncryptionPolicy](Scene& s, const CallerIdentity& c) {
        v1::RotateEncryptionPolicyRequest r;
        r.set_name(kEncryptionPolicy);
        return s.use_cases.encryption_policies().RotateEncryptionPolicy(c, r).status();
      });

  // KeyService: only a data plane bound service.keyuser in the tenant
  // (none of these callers; key_service_usecase has one) uses data keys.
  add("GenerateDataKey", "KeyService", "GenerateDataKey", {},
      [](Scene& s, const CallerIdentity& c) {
        v1::GenerateDataKeyRequest r;
        r.set_environment(DemoWorld::kEnvironmentA);
        r.set_data_source("sql");
        return s.use_cases.keys().GenerateDataKey(c, r).status();
      });
  add("UnwrapDataKey", "KeyService", "UnwrapDataKey", {}, [](Scene& s, const CallerIdentity& c) {
    v1::UnwrapDataKeyRequest r;
    r.set_environment(DemoWorld::kEnvironmentA);
    r.set_data_source("sql");
    r.set_wrapped("not a blob");
    return s.use_cases.keys().UnwrapDataKey(c, r).status();
  });
  add("RewrapDataKey", "KeyService", "RewrapDataKey", {}, [](Scene& s, const CallerIdentity& c) {
    v1::RewrapDataKeyRequest r;
    r.set_environment(DemoWorld::kEnvironmentA);
    r.set_data_source("sql");
    r.set_wrapped("not a blob");
    return s.use_cases.keys().RewrapDataKey(c, r).status();
  });
  return rows;
}

const std::vector<Row>& Table() {
  static const std::vector<Row>* rows = new std::vector<Row>(Matrix());
  return *rows;
}

// Each caller is made afresh for every call: a portal's token is good once.
using Callers = std::vector<std::pair<std::string, std::function<CallerIdentity()>>>;

// One database and demo world for the whole table, made once for every
// suite of this binary.
class MatrixWorld : public ::testing::Environment {
 public:
  void SetUp() override {
    auto demo = StartDemoApp();
    ASSERT_TRUE(demo.ok()) << demo.status();
    app_ = std::move(demo->app);
    world_ = std::move(demo->world);
    // Break-glass rows: the engineer may also open emergency access.
    ASSERT_TRUE(app_->Bind(world_->engineer.spiffe_id, "operator.breakglass").ok());
    auto pending = world_->PendingRequest();
    ASSERT_TRUE(pending.ok()) << pending.status();
    auto grant = world_->ActiveGrant();
    ASSERT_TRUE(grant.ok()) << grant.status();
    scene_ = std::make_unique<Scene>(Scene{*app_, app_->use_cases(), *world_, *pending, *grant});
    const DemoWorld& w = *world_;
    callers_ = {
        {kAdmin, [&w] { return w.admin; }},
        {kEngineer, [&w] { return w.engineer; }},
        {kReviewer, [&w] { return w.reviewer; }},
        {kAAdmin, [&w] { return w.tenant_a_admin; }},
        {kAAuditor, [&w] { return w.tenant_a_auditor; }},
        {kBAdmin, [&w] { return w.tenant_b_admin; }},
        {kEnforcer, [&w] { return w.enforcer; }},
        {kPortal, [&w] { return w.portal; }},
        {kPortalForAAdmin, [&w] { return w.PortalForTenantAAdmin(); }},
        {kPortalNamingAAdmin, [] { return Caller("service/portal", "tenant/ma/user/dana"); }},
        {kClaimingAAdmin,
         [&w] {
           return CallerIdentity{w.engineer.spiffe_id, w.tenant_a_admin.spiffe_id};
         }},
        {kUnbound, [&w] { return w.unbound; }},
    };
  }
  void TearDown() override {
    scene_.reset();
    world_.reset();
    app_.reset();
  }
  bool ready() const { return scene_ != nullptr && !callers_.empty(); }
  Scene& scene() { return *scene_; }
  const Callers& callers() const { return callers_; }

 private:
  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<DemoWorld> world_;
  std::unique_ptr<Scene> scene_;
  Callers callers_;
};

MatrixWorld* const matrix_world =
    static_cast<MatrixWorld*>(::testing::AddGlobalTestEnvironment(new MatrixWorld));

class AuthorizationMatrixTest : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override { ASSERT_TRUE(matrix_world->ready()) << "the demo world was not made"; }

  static Scene& scene() { return matrix_world->scene(); }

  // Runs `row` as every caller; one line per caller whose code differs from
  // `expected` (callers it does not name: PERMISSION_DENIED).
  static std::vector<std::string> Mismatches(const Row& row, const Expected& expected) {
    std::vector<std::string> out;
    for (const auto& [who, caller] : matrix_world->callers()) {
      auto it = expected.find(who);
      Code want = it == expected.end() ? DENIED : it->second;
      absl::Status got = row.call(scene(), caller());
      if (got.code() != want) {
        out.push_back(row.label + " as " + who + ": want " + absl::StatusCodeToString(want) +
                      ", got " + got.ToString());
      }
    }
    return out;
  }
};

TEST_P(AuthorizationMatrixTest, ExactCodeForEveryCaller) {
  const Row& row = Table()[GetParam()];
  for (const std::string& mismatch : Mismatches(row, row.expected)) ADD_FAILURE() << mismatch;
}

INSTANTIATE_TEST_SUITE_P(EveryRpc, AuthorizationMatrixTest,
                         ::testing::Range<size_t>(0, Table().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string name;
                           for (char ch : Table()[info.param].label) {
                             if (std::isalnum(static_cast<unsigned char>(ch))) name += ch;
                           }
                           return name;
                         });

// The table can fail: one wrong expectation is reported, for that caller
// alone.
TEST_F(AuthorizationMatrixTest, AWrongExpectationIsReported) {
  for (const Row& row : Table()) {
    if (row.label != "GetTenant") continue;
    Expected wrong = row.expected;
    wrong[kBAdmin] = OK;  // Tenant B's admin may not read tenant A.
    std::vector<std::string> mismatches = Mismatches(row, wrong);
    ASSERT_EQ(mismatches.size(), 1u);
    EXPECT_EQ(mismatches[0].rfind("GetTenant as b-admin: want OK, got PERMISSION_DENIED", 0), 0u)
        << mismatches[0];
    Expected missing = row.expected;
    missing.erase(kAAuditor);  // Unnamed means PERMISSION_DENIED, and it is OK.
    EXPECT_EQ(Mismatches(row, missing).size(), 1u);
    return;
  }
  FAIL() << "no GetTenant row";
}

// Every method of every service in the API has at least one row.
TEST_F(AuthorizationMatrixTest, EveryMethodOfEveryServiceIsInTheTable) {
  std::set<std::string> covered;
  for (const Row& row : Table()) covered.insert(row.method);
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  int methods = 0;
  for (const char* service : {"PolicyService", "AccessRequestService", "GrantService",
                              "AuditService", "NotificationService", "EncryptionPolicyService",
                              "KeyService"}) {
    const google::protobuf::ServiceDescriptor* d =
        pool->FindServiceByName(std::string("lockbox.v1.") + service);
    ASSERT_NE(d, nullptr) << service;
    for (int i = 0; i < d->method_count(); ++i) {
      ++methods;
      EXPECT_EQ(covered.count(d->method(i)->full_name()), 1u) << d->method(i)->full_name();
    }
  }
  EXPECT_EQ(covered.size(), static_cast<size_t>(methods)) << "a row names no API method";
}

// Without an identity of this trust domain nothing is reached: every row is
// UNAUTHENTICATED.
TEST_F(AuthorizationMatrixTest, NoIdentityOrAnotherTrustDomainIsUnauthenticated) {
  const CallerIdentity strangers[] = {
      CallerIdentity{"", ""},
      CallerIdentity{"spiffe://other.test/operator/admin", ""},
  };
  for (const Row& row : Table()) {
    for (const CallerIdentity& stranger : strangers) {
      absl::Status got = row.call(scene(), stranger);
      EXPECT_EQ(got.code(), Code::kUnauthenticated)
          << row.label << " as '" << stranger.spiffe_id << "': " << got;
    }
  }
}

// Break-glass needs both roles (the matrix's engineer holds both): an
// engineer without operator.breakglass, and operator.breakglass without
// operator.engineer, are refused, and nothing is opened for them.
TEST_F(AuthorizationMatrixTest, EmergencyAccessNeedsEngineerAndBreakGlassTogether) {
  Scene& s = scene();
  const std::string engineer_only = SpiffeId("operator/eve");
  const std::string breakglass_only = SpiffeId("operator/bob");
  ASSERT_TRUE(s.app.Bind(engineer_only, "operator.engineer").ok());
  ASSERT_TRUE(s.app.Bind(breakglass_only, "operator.breakglass").ok());
  for (const std::string& who : {engineer_only, breakglass_only}) {
    v1::CreateAccessRequestRequest r = AskA();
    r.mutable_access_request()->set_reason(v1::AccessRequest::EMERGENCY);
    r.mutable_access_request()->set_incident_id(s.Unique("INC-"));
    absl::Status got =
        s.use_cases.requests().CreateAccessRequest(CallerIdentity{who, ""}, r).status();
    EXPECT_EQ(got.code(), DENIED) << who << ": " << got;
    v1::ListAccessRequestsRequest list;
    list.set_parent(DemoWorld::kTenantA);
    list.set_filter("requester = \"" + who + "\"");
    auto listed = s.use_cases.requests().ListAccessRequests(s.world.admin, list);
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_EQ(listed->access_requests_size(), 0) << who;
  }
}

}  // namespace
}  // namespace lockbox::testing
