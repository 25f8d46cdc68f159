// Every RPC, called by every role (and by no binding at all), for its own
// tenant and as another tenant's admin: the exact outcome of each.
#include <gtest/gtest.h>
#include <lockbox/client.h>

#include <functional>
#include <map>

#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

using Code = grpc::StatusCode;
constexpr Code OK = Code::OK, DENIED = Code::PERMISSION_DENIED;

// The callers: provider staff, tenant A's admin and auditor, tenant B's
// admin, the two services, and a certificate with no binding at all.
const std::vector<std::string> kCallers = {"admin", "alice",    "bob",    "dana", "audrey",
                                           "erin",  "enforcer", "portal", "zed"};

class AuthorizationMatrixTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    std::map<std::string, std::string> paths = {
        {"alice", "operator/alice"}, {"bob", "operator/bob"},  {"dana", "tenant/ma/user/dana"},
        {"audrey", "tenant/ma/user/audrey"}, {"erin", "tenant/mb/user/erin"},
        {"enforcer", "service/enforcer"},    {"portal", "service/portal"}, {"zed", "operator/zed"}};
    for (auto& [who, path] : paths) certs_->Make(who, path);
    server_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"));
    ASSERT_TRUE(server_->WaitReady("admin"));
    auto& admin = As("admin");
    for (const char* t : {"ma", "mb"}) {
      v1::CreateTenantRequest ct;
      ct.set_tenant_id(t);
      ASSERT_TRUE(admin.CreateTenant(ct).ok());
      v1::CreateEnvironmentRequest ce;
      ce.set_parent(std::string("tenants/") + t);
      ce.set_environment_id("prod");
      ASSERT_TRUE(admin.CreateEnvironment(ce).ok());
    }
    Bind(Id("operator/alice"), "operator.engineer", "");
    Bind(Id("operator/bob"), "operator.reviewer", "");
    Bind(Id("tenant/ma/user/dana"), "tenant.admin", "tenants/ma");
    Bind(Id("tenant/ma/user/audrey"), "tenant.auditor", "tenants/ma");
    Bind(Id("tenant/mb/user/erin"), "tenant.admin", "tenants/mb");
    Bind(Id("service/enforcer"), "service.enforcer", "");
    Bind(Id("service/portal"), "service.portal", "");
    v1::UpdateLockboxPolicyRequest up;
    up.mutable_lockbox_policy()->set_name("tenants/ma/lockboxPolicy");
    up.mutable_lockbox_policy()->set_enabled(true);
    up.mutable_lockbox_policy()->set_allow_revocation(true);
    up.mutable_update_mask()->add_paths("enabled");
    up.mutable_update_mask()->add_paths("allow_revocation");
    ASSERT_TRUE(As("dana").UpdateLockboxPolicy(up).ok());
  }
  static void TearDownTestSuite() {
    clients_.clear();
    delete server_;
    delete certs_;
    delete db_;
  }

  static lockbox::Client& As(const std::string& who) {
    auto it = clients_.find(who);
    if (it != clients_.end()) return *it->second;
    return *(clients_[who] = LibraryClient(*certs_, who, server_->target()));
  }
  static void Bind(const std::string& principal, const std::string& role, const std::string& tenant) {
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(principal);
    r.mutable_role_binding()->set_role(role);
    r.mutable_role_binding()->set_tenant(tenant);
    ASSERT_TRUE(As("admin").CreateRoleBinding(r).ok()) << principal;
  }

  // Fresh resources for calls that change them.
  static v1::AccessRequest PendingRequest() {
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/ma");
    r.mutable_access_request()->set_environment("tenants/ma/environments/prod");
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_justification("matrix");
    return *As("alice").CreateAccessRequest(r);
  }
  static v1::Grant ActiveGrant() {
    v1::AccessRequest r = PendingRequest();
    v1::ApproveAccessRequestRequest a;
    a.set_name(r.name());
    EXPECT_TRUE(As("bob").ApproveAccessRequest(a).ok());
    auto done = As("dana").ApproveAccessRequest(a);
    v1::GetGrantRequest g;
    g.set_name(done->grant());
    return *As("alice").GetGrant(g);
  }
  static std::string NewBinding() {
    static int n = 0;
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(Id("tenant/ma/user/temp" + std::to_string(++n)));
    r.mutable_role_binding()->set_role("tenant.auditor");
    r.mutable_role_binding()->set_tenant("tenants/ma");
    return As("admin").CreateRoleBinding(r)->name();
  }

  // Runs `call` as every caller and compares with `expected` (callers not
  // named there must get PERMISSION_DENIED).
  static void Expect(const std::string& rpc, const std::function<grpc::Status(lockbox::Client&, const std::string&)>& call,
                     const std::map<std::string, Code>& expected) {
    for (const std::string& who : kCallers) {
      auto it = expected.find(who);
      Code want = it == expected.end() ? DENIED : it->second;
      grpc::Status got = call(As(who), who);
      EXPECT_EQ(got.error_code(), want) << rpc << " as " << who << ": " << got.error_message();
    }
  }

  static TestDatabase* db_;
  static Certificates* certs_;
  static ServerProcess* server_;
  static std::map<std::string, std::unique_ptr<lockbox::Client>> clients_;
};
TestDatabase* AuthorizationMatrixTest::db_ = nullptr;
Certificates* AuthorizationMatrixTest::certs_ = nullptr;
ServerProcess* AuthorizationMatrixTest::server_ = nullptr;
std::map<std::string, std::unique_ptr<lockbox::Client>> AuthorizationMatrixTest::clients_;

const std::map<std::string, Code> kConfigReaders = {{"admin", OK}, {"alice", OK}, {"bob", OK},
                                                    {"dana", OK},  {"audrey", OK}};
const std::map<std::string, Code> kRequestReaders = kConfigReaders;
const std::map<std::string, Code> kAuditReaders = {{"admin", OK}, {"dana", OK}, {"audrey", OK}};

TEST_F(AuthorizationMatrixTest, PolicyService) {
  int n = 0;
  Expect("CreateTenant", [&](lockbox::Client& c, const std::string&) {
    v1::CreateTenantRequest r;
    r.set_tenant_id("new" + std::to_string(++n));
    return c.CreateTenant(r).status();
  }, {{"admin", OK}});
  Expect("GetTenant", [](lockbox::Client& c, const std::string&) {
    v1::GetTenantRequest r;
    r.set_name("tenants/ma");
    return c.GetTenant(r).status();
  }, kConfigReaders);
  Expect("ListTenants", [](lockbox::Client& c, const std::string&) {
    return c.ListTenants(v1::ListTenantsRequest()).status();
  }, {{"admin", OK}, {"alice", OK}, {"bob", OK}, {"dana", OK}, {"audrey", OK}, {"erin", OK}});
  Expect("GetLockboxPolicy", [](lockbox::Client& c, const std::string&) {
    v1::GetLockboxPolicyRequest r;
    r.set_name("tenants/ma/lockboxPolicy");
    return c.GetLockboxPolicy(r).status();
  }, kConfigReaders);
  Expect("UpdateLockboxPolicy", [](lockbox::Client& c, const std::string&) {
    v1::UpdateLockboxPolicyRequest r;
    r.mutable_lockbox_policy()->set_name("tenants/ma/lockboxPolicy");
    r.mutable_lockbox_policy()->set_enabled(true);
    r.mutable_update_mask()->add_paths("enabled");
    return c.UpdateLockboxPolicy(r).status();
  }, {{"dana", OK}});
  Expect("CreateEnvironment", [&](lockbox::Client& c, const std::string&) {
    v1::CreateEnvironmentRequest r;
    r.set_parent("tenants/ma");
    r.set_environment_id("env" + std::to_string(++n));
    return c.CreateEnvironment(r).status();
  }, {{"admin", OK}});
  Expect("GetEnvironment", [](lockbox::Client& c, const std::string&) {
    v1::GetEnvironmentRequest r;
    r.set_name("tenants/ma/environments/prod");
    return c.GetEnvironment(r).status();
  }, kConfigReaders);
  Expect("ListEnvironments", [](lockbox::Client& c, const std::string&) {
    v1::ListEnvironmentsRequest r;
    r.set_parent("tenants/ma");
    return c.ListEnvironments(r).status();
  }, kConfigReaders);
  Expect("UpdateEnvironment(display_name)", [](lockbox::Client& c, const std::string&) {
    v1::UpdateEnvironmentRequest r;
    r.mutable_environment()->set_name("tenants/ma/environments/prod");
    r.mutable_environment()->set_display_name("Production");
    r.mutable_update_mask()->add_paths("display_name");
    return c.UpdateEnvironment(r).status();
  }, {{"admin", OK}});
  Expect("UpdateEnvironment(managed)", [](lockbox::Client& c, const std::string&) {
    v1::UpdateEnvironmentRequest r;
    r.mutable_environment()->set_name("tenants/ma/environments/prod");
    r.mutable_environment()->set_managed(true);
    r.mutable_update_mask()->add_paths("managed");
    return c.UpdateEnvironment(r).status();
  }, {{"dana", OK}});
  Expect("CreateRoleBinding", [&](lockbox::Client& c, const std::string& who) {
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(Id("tenant/ma/user/by-" + who + std::to_string(++n)));
    r.mutable_role_binding()->set_role("tenant.auditor");
    r.mutable_role_binding()->set_tenant("tenants/ma");
    return c.CreateRoleBinding(r).status();
  }, {{"admin", OK}, {"dana", OK}});
  Expect("ListRoleBindings", [](lockbox::Client& c, const std::string&) {
    v1::ListRoleBindingsRequest r;
    r.set_parent("tenants/ma");
    return c.ListRoleBindings(r).status();
  }, kAuditReaders);
  Expect("DeleteRoleBinding", [](lockbox::Client& c, const std::string&) {
    v1::DeleteRoleBindingRequest r;
    r.set_name(NewBinding());
    return c.DeleteRoleBinding(r).status();
  }, {{"admin", OK}, {"dana", OK}});
}

TEST_F(AuthorizationMatrixTest, AccessRequestService) {
  v1::AccessRequest existing = PendingRequest();
  Expect("CreateAccessRequest", [](lockbox::Client& c, const std::string&) {
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/ma");
    r.mutable_access_request()->set_environment("tenants/ma/environments/prod");
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_justification("matrix");
    return c.CreateAccessRequest(r).status();
  }, {{"alice", OK}});
  Expect("GetAccessRequest", [&](lockbox::Client& c, const std::string&) {
    v1::GetAccessRequestRequest r;
    r.set_name(existing.name());
    return c.GetAccessRequest(r).status();
  }, kRequestReaders);
  Expect("ListAccessRequests", [](lockbox::Client& c, const std::string&) {
    v1::ListAccessRequestsRequest r;
    r.set_parent("tenants/ma");
    return c.ListAccessRequests(r).status();
  }, kRequestReaders);
  // The internal stage: only the reviewer; the customer's admin must wait.
  Expect("ApproveAccessRequest", [](lockbox::Client& c, const std::string&) {
    v1::ApproveAccessRequestRequest r;
    r.set_name(PendingRequest().name());
    return c.ApproveAccessRequest(r).status();
  }, {{"bob", OK}, {"dana", Code::FAILED_PRECONDITION}});
  Expect("DenyAccessRequest", [](lockbox::Client& c, const std::string&) {
    v1::DenyAccessRequestRequest r;
    r.set_name(PendingRequest().name());
    return c.DenyAccessRequest(r).status();
  }, {{"bob", OK}, {"dana", Code::FAILED_PRECONDITION}});
  Expect("CancelAccessRequest", [](lockbox::Client& c, const std::string&) {
    v1::CancelAccessRequestRequest r;
    r.set_name(PendingRequest().name());
    return c.CancelAccessRequest(r).status();
  }, {{"alice", OK}});
  Expect("WatchAccessRequest", [&](lockbox::Client& c, const std::string&) {
    v1::WatchAccessRequestRequest r;
    r.set_name(existing.name());
    auto got = c.WatchAccessRequest(r, std::chrono::milliseconds(300));
    // Still pending: a permitted watch ends at its deadline.
    return got.status().error_code() == Code::DEADLINE_EXCEEDED ? grpc::Status::OK : got.status();
  }, kRequestReaders);
}

TEST_F(AuthorizationMatrixTest, GrantService) {
  v1::Grant existing = ActiveGrant();
  Expect("GetGrant", [&](lockbox::Client& c, const std::string&) {
    v1::GetGrantRequest r;
    r.set_name(existing.name());
    return c.GetGrant(r).status();
  }, kRequestReaders);
  Expect("ListGrants", [](lockbox::Client& c, const std::string&) {
    v1::ListGrantsRequest r;
    r.set_parent("tenants/ma");
    return c.ListGrants(r).status();
  }, kRequestReaders);
  Expect("CheckAccess", [](lockbox::Client& c, const std::string&) {
    v1::CheckAccessRequest r;
    r.set_principal(Id("operator/alice"));
    r.set_environment("tenants/ma/environments/prod");
    return c.CheckAccess(r).status();
  }, {{"enforcer", OK}});
  Expect("ReleaseGrant", [](lockbox::Client& c, const std::string&) {
    v1::ReleaseGrantRequest r;
    r.set_name(ActiveGrant().name());
    return c.ReleaseGrant(r).status();
  }, {{"alice", OK}});
  Expect("RevokeGrant", [](lockbox::Client& c, const std::string&) {
    v1::RevokeGrantRequest r;
    r.set_name(ActiveGrant().name());
    return c.RevokeGrant(r).status();
  }, {{"dana", OK}});
}

TEST_F(AuthorizationMatrixTest, AuditAndNotificationServices) {
  Expect("ListAuditEvents", [](lockbox::Client& c, const std::string&) {
    v1::ListAuditEventsRequest r;
    r.set_parent("tenants/ma");
    return c.ListAuditEvents(r).status();
  }, kAuditReaders);
  Expect("VerifyAuditLog", [](lockbox::Client& c, const std::string&) {
    v1::VerifyAuditLogRequest r;
    r.set_parent("tenants/ma");
    return c.VerifyAuditLog(r).status();
  }, kAuditReaders);
  Expect("ExportAuditEvents", [](lockbox::Client& c, const std::string&) {
    v1::ExportAuditEventsRequest r;
    r.set_parent("tenants/ma");
    return c.ExportAuditEvents(r, [](const std::string&) { return true; },
                               std::chrono::seconds(10)).status();
  }, kAuditReaders);
  Expect("CreateAuditCheckpoint", [](lockbox::Client& c, const std::string&) {
    v1::CreateAuditCheckpointRequest r;
    r.set_parent("tenants/ma");
    return c.CreateAuditCheckpoint(r).status();
  }, kAuditReaders);
  Expect("ListAuditCheckpoints", [](lockbox::Client& c, const std::string&) {
    v1::ListAuditCheckpointsRequest r;
    r.set_parent("tenants/ma");
    return c.ListAuditCheckpoints(r).status();
  }, kAuditReaders);
  Expect("ListAuditEvents(global)", [](lockbox::Client& c, const std::string&) {
    return c.ListAuditEvents(v1::ListAuditEventsRequest()).status();
  }, {{"admin", OK}});
  Expect("GetAuditPublicKey", [](lockbox::Client& c, const std::string&) {
    return c.GetAuditPublicKey(v1::GetAuditPublicKeyRequest()).status();
  }, {{"admin", OK}, {"alice", OK}, {"bob", OK}, {"dana", OK}, {"audrey", OK}, {"erin", OK},
      {"enforcer", OK}, {"portal", OK}});
  Expect("ListNotifications", [](lockbox::Client& c, const std::string&) {
    v1::ListNotificationsRequest r;
    r.set_parent("tenants/ma");
    return c.ListNotifications(r).status();
  }, kAuditReaders);
}

}  // namespace
}  // namespace lockbox::testing
