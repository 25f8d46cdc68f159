// The request's whole life against the real server over real mTLS, on a
// real PostgreSQL: every path and refusal of SPEC section 2.
#include <gtest/gtest.h>

#include <atomic>
#include <pqxx/pqxx>
#include <thread>

#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/support/harness.h"
#include "tests/support/tokens.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";

std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

// One database, one server and the provider's people for the whole suite;
// each test makes its own tenant so tests do not see each other.
class World : public ::testing::Environment {
 public:
  void SetUp() override {
    db = std::make_unique<TestDatabase>();
    certs = std::make_unique<Certificates>(kTd);
    for (const char* who : {"alice", "bob", "carol", "rita", "edgar", "zed"}) {
      certs->Make(who, std::string("operator/") + who);
    }
    certs->Make("enforcer", "service/enforcer");
    certs->Make("portal", "service/portal");
    server = std::make_unique<ServerProcess>(*certs, db->url(), Id("operator/admin"));
    ASSERT_TRUE(server->WaitReady("admin")) << "lockboxd did not start";
    Client admin(MtlsChannel(*certs, "admin", server->target()));
    Bind(admin, "alice", "operator.engineer", "");
    Bind(admin, "bob", "operator.reviewer", "");
    Bind(admin, "carol", "operator.reviewer", "");
    Bind(admin, "rita", "operator.engineer", "");
    Bind(admin, "rita", "operator.reviewer", "");
    Bind(admin, "edgar", "operator.engineer", "");
    Bind(admin, "enforcer", "service.enforcer", "");
    Bind(admin, "portal", "service.portal", "");
  }
  void TearDown() override {
    server.reset();
    db.reset();
  }
  static void Bind(Client& admin, const std::string& who, const std::string& role,
                   const std::string& tenant) {
    static const std::map<std::string, std::string> kPaths = {
        {"alice", "operator/alice"}, {"bob", "operator/bob"},         {"carol", "operator/carol"},
        {"rita", "operator/rita"},   {"edgar", "operator/edgar"}, {"enforcer", "service/enforcer"}, {"portal", "service/portal"}};
    v1::CreateRoleBindingRequest req;
    auto it = kPaths.find(who);
    req.mutable_role_binding()->set_principal(it == kPaths.end() ? who : Id(it->second));
    req.mutable_role_binding()->set_role(role);
    req.mutable_role_binding()->set_tenant(tenant);
    req.mutable_role_binding()->set_email(who.substr(who.rfind('/') + 1) + "@example.com");
    v1::RoleBinding out;
    grpc::Status s = admin.policy->CreateRoleBinding(Context().get(), req, &out);
    ASSERT_TRUE(s.ok()) << who << " " << role << ": " << s.error_message();
  }

  std::unique_ptr<TestDatabase> db;
  std::unique_ptr<Certificates> certs;
  std::unique_ptr<ServerProcess> server;
};

World* world = nullptr;

class LifecycleTest : public ::testing::Test {
 protected:
  Client As(const std::string& who) {
    return Client(MtlsChannel(*world->certs, who, world->server->target()));
  }

  // A tenant with a managed environment "prod" holding a lockbox-supported
  // SQL database and an unsupported RCS store, its admin and auditor.
  void MakeTenant(const std::string& tenant, bool enabled) {
    Client admin = As("admin");
    // Its admin is the tenant's first, named at its creation.
    world->certs->Make(tenant + "-admin", "tenant/" + tenant + "/user/admin");
    v1::CreateTenantRequest ct = TenantRequest(*world->certs, tenant, "admin", "admin@example.com");
    v1::Tenant t;
    ASSERT_TRUE(admin.policy->CreateTenant(Context().get(), ct, &t).ok());
    ASSERT_TRUE(world->server->WaitReady(tenant + "-admin", 15));
    v1::CreateEnvironmentRequest ce;
    ce.set_parent("tenants/" + tenant);
    ce.set_environment_id("prod");
    auto* sql = ce.mutable_environment()->add_data_sources();
    sql->set_id("sql");
    sql->set_kind("sql_database");
    sql->set_lockbox_supported(true);
    auto* rcs = ce.mutable_environment()->add_data_sources();
    rcs->set_id("rcs");
    rcs->set_kind("storage_account");
    rcs->set_lockbox_supported(false);
    v1::Environment env;
    grpc::Status s = admin.policy->CreateEnvironment(Context().get(), ce, &env);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(env.managed());
    world->certs->Make(tenant + "-auditor", "tenant/" + tenant + "/user/auditor");
    Client tenant_admin = As(tenant + "-admin");
    World::Bind(tenant_admin, Id("tenant/" + tenant + "/user/auditor"), "tenant.auditor",
                "tenants/" + tenant);
    if (enabled) SetPolicy(tenant, true, false);
  }

  void SetPolicy(const std::string& tenant, bool enabled, bool allow_revocation) {
    v1::UpdateLockboxPolicyRequest up;
    up.mutable_lockbox_policy()->set_name("tenants/" + tenant + "/lockboxPolicy");
    up.mutable_lockbox_policy()->set_enabled(enabled);
    up.mutable_lockbox_policy()->set_allow_revocation(allow_revocation);
    up.mutable_update_mask()->add_paths("enabled");
    up.mutable_update_mask()->add_paths("allow_revocation");
    v1::LockboxPolicy p;
    grpc::Status s = As(tenant + "-admin").policy->UpdateLockboxPolicy(Context().get(), up, &p);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(p.enabled(), enabled);
  }

  v1::CreateAccessRequestRequest Ask(const std::string& tenant,
                                     std::vector<std::string> sources = {}) {
    v1::CreateAccessRequestRequest req;
    req.set_parent("tenants/" + tenant);
    auto* a = req.mutable_access_request();
    a->set_environment("tenants/" + tenant + "/environments/prod");
    a->set_reason(v1::AccessRequest::CUSTOMER_INITIATED_SUPPORT);
    a->set_support_ticket_id("TKT-42");
    a->set_justification("invoices fail to post since Tuesday");
    for (auto& s : sources) a->add_data_sources(s);
    return req;
  }

  v1::AccessRequest Create(const std::string& who, const v1::CreateAccessRequestRequest& req) {
    v1::AccessRequest out;
    grpc::Status s = As(who).requests->CreateAccessRequest(Context().get(), req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  grpc::Status Approve(const std::string& who, const std::string& name, v1::AccessRequest* out,
                       const std::string& etag = "", const std::string& obo = "") {
    v1::ApproveAccessRequestRequest req;
    req.set_name(name);
    req.set_etag(etag);
    return As(who).requests->ApproveAccessRequest(Context(obo).get(), req, out);
  }

  grpc::Status Deny(const std::string& who, const std::string& name, v1::AccessRequest* out) {
    v1::DenyAccessRequestRequest req;
    req.set_name(name);
    req.set_comment("not now");
    return As(who).requests->DenyAccessRequest(Context().get(), req, out);
  }

  v1::CheckAccessResponse Check(const std::string& principal, const std::string& env,
                                const std::string& source) {
    v1::CheckAccessRequest req;
    req.set_principal(principal);
    req.set_environment(env);
    req.set_data_source(source);
    v1::CheckAccessResponse out;
    grpc::Status s = As("enforcer").grants->CheckAccess(Context().get(), req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  std::vector<v1::AuditEvent> Audit(const std::string& tenant, const std::string& filter = "") {
    v1::ListAuditEventsRequest req;
    req.set_parent("tenants/" + tenant);
    req.set_filter(filter);
    req.set_page_size(1000);
    v1::ListAuditEventsResponse out;
    grpc::Status s = As("admin").audit->ListAuditEvents(Context().get(), req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {out.audit_events().begin(), out.audit_events().end()};
  }
};

TEST_F(LifecycleTest, ProtectedEnvironmentWholeLife) {
  MakeTenant("contoso", true);
  auto ask = Ask("contoso", {"sql"});
  // The requester comes from the certificate, never from the message.
  ask.mutable_access_request()->set_requester(Id("operator/bob"));
  ask.mutable_access_request()->set_state(v1::AccessRequest::APPROVED);
  v1::AccessRequest r = Create("alice", ask);
  EXPECT_EQ(r.state(), v1::AccessRequest::PENDING);
  EXPECT_EQ(r.stage(), v1::AccessRequest::INTERNAL_REVIEW);
  EXPECT_EQ(r.requester(), Id("operator/alice"));

  v1::AccessRequest after;
  ASSERT_TRUE(Approve("bob", r.name(), &after, r.etag()).ok());
  EXPECT_EQ(after.state(), v1::AccessRequest::PENDING);
  EXPECT_EQ(after.stage(), v1::AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(after.display_status(), "Action needed");

  // Nothing is allowed before the customer decides.
  const std::string env = "tenants/contoso/environments/prod";
  EXPECT_FALSE(Check(Id("operator/alice"), env, "sql").allowed());

  // The customer sees it as "Action needed".
  v1::ListAccessRequestsRequest list;
  list.set_parent("tenants/contoso");
  list.set_filter("stage = CUSTOMER_REVIEW AND state = PENDING");
  v1::ListAccessRequestsResponse listed;
  ASSERT_TRUE(As("contoso-admin").requests->ListAccessRequests(Context().get(), list, &listed).ok());
  ASSERT_EQ(listed.access_requests_size(), 1);
  EXPECT_EQ(listed.access_requests(0).display_status(), "Action needed");

  v1::AccessRequest approved;
  ASSERT_TRUE(Approve("contoso-admin", r.name(), &approved).ok());
  EXPECT_EQ(approved.state(), v1::AccessRequest::APPROVED);
  ASSERT_FALSE(approved.grant().empty());

  v1::GetGrantRequest gg;
  gg.set_name(approved.grant());
  v1::Grant grant;
  ASSERT_TRUE(As("alice").grants->GetGrant(Context().get(), gg, &grant).ok());
  EXPECT_EQ(grant.state(), v1::Grant::ACTIVE);
  EXPECT_EQ(grant.principal(), Id("operator/alice"));

  v1::CheckAccessResponse ok = Check(Id("operator/alice"), env, "sql");
  EXPECT_TRUE(ok.allowed());
  EXPECT_EQ(ok.grant().name(), grant.name());
  EXPECT_FALSE(Check(Id("operator/alice"), env, "rcs").allowed());
  EXPECT_FALSE(Check(Id("operator/zed"), env, "sql").allowed());
  EXPECT_FALSE(Check(Id("operator/alice"), "tenants/contoso/environments/test", "sql").allowed());

  v1::ReleaseGrantRequest rel;
  rel.set_name(grant.name());
  v1::Grant released;
  ASSERT_TRUE(As("alice").grants->ReleaseGrant(Context().get(), rel, &released).ok());
  EXPECT_EQ(released.state(), v1::Grant::RELEASED);
  EXPECT_FALSE(Check(Id("operator/alice"), env, "sql").allowed());

  // Every change is in the audit log, with the source product's fields.
  std::vector<v1::AuditEvent> events =
      Audit("contoso", "access_request = \"" + r.name() + "\"");
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].action(), "access_request.create");
  EXPECT_EQ(events[1].action(), "access_request.approve");
  EXPECT_EQ(events[2].action(), "access_request.approve");
  EXPECT_EQ(events[2].request_state(), v1::AccessRequest::APPROVED);
  EXPECT_TRUE(events[2].has_access_expire_time());
  EXPECT_EQ(events[3].action(), "grant.release");
  for (const auto& e : events) {
    EXPECT_EQ(e.tenant(), "contoso");
    EXPECT_EQ(e.access_request(), r.name());
    EXPECT_EQ(e.operator_user_id(), Id("operator/alice"));
    EXPECT_EQ(e.support_ticket_id(), "TKT-42");
    EXPECT_EQ(e.environment(), env);
    EXPECT_EQ(e.justification(), "invoices fail to post since Tuesday");
    EXPECT_TRUE(e.has_request_create_time());
    EXPECT_TRUE(e.has_request_expire_time());
    EXPECT_FALSE(e.hash().empty());
  }
  EXPECT_EQ(events[2].actor(), Id("tenant/contoso/user/admin"));

  // A log this young has no checkpoint yet: sign its head, then verify.
  v1::CreateAuditCheckpointRequest cr;
  cr.set_parent("tenants/contoso");
  v1::AuditCheckpoint checkpoint;
  ASSERT_TRUE(
      As("contoso-auditor").audit->CreateAuditCheckpoint(Context().get(), cr, &checkpoint).ok());
  v1::VerifyAuditLogRequest vr;
  vr.set_parent("tenants/contoso");
  v1::VerifyAuditLogResponse verified;
  ASSERT_TRUE(As("contoso-auditor").audit->VerifyAuditLog(Context().get(), vr, &verified).ok());
  EXPECT_TRUE(verified.ok()) << verified.detail();
  EXPECT_GE(verified.verified_events(), 4);
}

TEST_F(LifecycleTest, UnprotectedEnvironmentNeedsOnlyInternalReview) {
  MakeTenant("northwind", false);
  v1::AccessRequest r = Create("alice", Ask("northwind"));
  // A tenant admin cannot step in before the internal review.
  v1::AccessRequest out;
  EXPECT_EQ(Approve("northwind-admin", r.name(), &out).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Approve("bob", r.name(), &out).ok());
  EXPECT_EQ(out.state(), v1::AccessRequest::APPROVED);
  EXPECT_TRUE(Check(Id("operator/alice"), "tenants/northwind/environments/prod", "").allowed());
}

TEST_F(LifecycleTest, UnsupportedDataSourceSkipsTheCustomer) {
  MakeTenant("adatum", true);
  v1::AccessRequest r = Create("alice", Ask("adatum", {"rcs"}));
  v1::AccessRequest out;
  ASSERT_TRUE(Approve("bob", r.name(), &out).ok());
  EXPECT_EQ(out.state(), v1::AccessRequest::APPROVED);
  EXPECT_TRUE(Check(Id("operator/alice"), "tenants/adatum/environments/prod", "rcs").allowed());
  EXPECT_FALSE(Check(Id("operator/alice"), "tenants/adatum/environments/prod", "sql").allowed());
}

TEST_F(LifecycleTest, PolicyChangeTakesEffectForTheNextDecision) {
  MakeTenant("litware", false);
  SetPolicy("litware", true, false);
  v1::AccessRequest r = Create("alice", Ask("litware"));
  v1::AccessRequest out;
  ASSERT_TRUE(Approve("bob", r.name(), &out).ok());
  EXPECT_EQ(out.stage(), v1::AccessRequest::CUSTOMER_REVIEW);
}

TEST_F(LifecycleTest, RefusalsCarryTheRightCodes) {
  MakeTenant("fourth", true);
  v1::AccessRequest r = Create("rita", Ask("fourth"));
  v1::AccessRequest out;

  // A reviewer can never decide their own request.
  grpc::Status self = Approve("rita", r.name(), &out);
  EXPECT_EQ(self.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ErrorInfoOf(self).reason(), "SELF_REVIEW_NOT_ALLOWED");
  // An engineer is no reviewer; a caller with no binding gets nothing.
  EXPECT_EQ(Approve("alice", r.name(), &out).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Approve("zed", r.name(), &out).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Stale etag.
  grpc::Status stale = Approve("bob", r.name(), &out, "\"999\"");
  EXPECT_EQ(stale.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(ErrorInfoOf(stale).reason(), "STALE_ETAG");
  // Someone else's cancel.
  v1::CancelAccessRequestRequest cancel;
  cancel.set_name(r.name());
  EXPECT_EQ(As("alice").requests->CancelAccessRequest(Context().get(), cancel, &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Deny, then nothing changes it again.
  ASSERT_TRUE(Deny("bob", r.name(), &out).ok());
  EXPECT_EQ(out.state(), v1::AccessRequest::DENIED);
  grpc::Status again = Approve("carol", r.name(), &out);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ErrorInfoOf(again).reason(), "STATE_TRANSITION_NOT_ALLOWED");
  EXPECT_EQ(As("rita").requests->CancelAccessRequest(Context().get(), cancel, &out).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // Not found, after permission.
  v1::GetAccessRequestRequest get;
  get.set_name("tenants/fourth/accessRequests/00000000-0000-4000-8000-000000000000");
  EXPECT_EQ(As("bob").requests->GetAccessRequest(Context().get(), get, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Bad input: a field violation with a machine-readable reason.
  auto bad = Ask("fourth");
  bad.mutable_access_request()->set_justification(std::string(4097, 'j'));
  grpc::Status too_long = As("alice").requests->CreateAccessRequest(Context().get(), bad, &out);
  EXPECT_EQ(too_long.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::ErrorInfo info = ErrorInfoOf(too_long);
  EXPECT_EQ(info.reason(), "INVALID_FIELD");
  ASSERT_EQ(info.field_violations_size(), 1);
  EXPECT_EQ(info.field_violations(0).field(), "access_request.justification");
  EXPECT_EQ(info.field_violations(0).reason(), "TOO_LONG");
  bad = Ask("fourth");
  bad.mutable_access_request()->mutable_access_duration()->set_seconds(9 * 3600);
  EXPECT_EQ(As("alice").requests->CreateAccessRequest(Context().get(), bad, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Reviewers cannot create requests; the environment must exist.
  EXPECT_EQ(As("bob").requests->CreateAccessRequest(Context().get(), Ask("fourth"), &out)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  bad = Ask("fourth");
  bad.mutable_access_request()->set_environment("tenants/fourth/environments/nope");
  EXPECT_EQ(As("alice").requests->CreateAccessRequest(Context().get(), bad, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // The customer's policy is the customer's: lockbox.admin cannot change it.
  v1::UpdateLockboxPolicyRequest up;
  up.mutable_lockbox_policy()->set_name("tenants/fourth/lockboxPolicy");
  up.mutable_update_mask()->add_paths("enabled");
  v1::LockboxPolicy p;
  EXPECT_EQ(As("admin").policy->UpdateLockboxPolicy(Context().get(), up, &p).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Nor make its environment unmanaged.
  v1::UpdateEnvironmentRequest ue;
  ue.mutable_environment()->set_name("tenants/fourth/environments/prod");
  ue.mutable_update_mask()->add_paths("managed");
  v1::Environment env;
  EXPECT_EQ(As("admin").policy->UpdateEnvironment(Context().get(), ue, &env).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Nor bind a provider operator as the tenant's admin.
  v1::CreateRoleBindingRequest rb;
  rb.mutable_role_binding()->set_principal(Id("operator/bob"));
  rb.mutable_role_binding()->set_role("tenant.admin");
  rb.mutable_role_binding()->set_tenant("tenants/fourth");
  v1::RoleBinding binding;
  EXPECT_EQ(As("admin").policy->CreateRoleBinding(Context().get(), rb, &binding).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Only the enforcer may check access.
  v1::CheckAccessRequest ca;
  ca.set_principal(Id("operator/alice"));
  ca.set_environment("tenants/fourth/environments/prod");
  v1::CheckAccessResponse car;
  EXPECT_EQ(As("alice").grants->CheckAccess(Context().get(), ca, &car).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(LifecycleTest, RevocationOnlyWhenThePolicyAllows) {
  MakeTenant("revokers", false);
  v1::AccessRequest r = Create("alice", Ask("revokers"));
  v1::AccessRequest out;
  ASSERT_TRUE(Approve("bob", r.name(), &out).ok());
  v1::RevokeGrantRequest rv;
  rv.set_name(out.grant());
  rv.set_reason("done");
  v1::Grant g;
  grpc::Status refused = As("revokers-admin").grants->RevokeGrant(Context().get(), rv, &g);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ErrorInfoOf(refused).reason(), "REVOCATION_DISABLED");
  SetPolicy("revokers", false, true);
  EXPECT_EQ(As("bob").grants->RevokeGrant(Context().get(), rv, &g).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(As("revokers-admin").grants->RevokeGrant(Context().get(), rv, &g).ok());
  EXPECT_EQ(g.state(), v1::Grant::REVOKED);
  EXPECT_FALSE(Check(Id("operator/alice"), "tenants/revokers/environments/prod", "").allowed());
  EXPECT_EQ(Audit("revokers", "action = grant.revoke").size(), 1u);
}

TEST_F(LifecycleTest, TwentyRacingDecisionsExactlyOneWins) {
  MakeTenant("racers", true);
  v1::AccessRequest r = Create("alice", Ask("racers"));
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  std::vector<grpc::StatusCode> codes(20);
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      v1::AccessRequest out;
      std::string who = i % 2 == 0 ? "bob" : "carol";
      grpc::Status s = i % 3 == 0 ? Deny(who, r.name(), &out) : Approve(who, r.name(), &out);
      codes[i] = s.error_code();
      if (s.ok()) ++wins;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  for (auto code : codes) {
    EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::FAILED_PRECONDITION ||
                code == grpc::StatusCode::ABORTED)
        << code;
  }
  std::vector<v1::AuditEvent> decisions =
      Audit("racers", "access_request = \"" + r.name() + "\" AND action != access_request.create");
  EXPECT_EQ(decisions.size(), 1u);
}

TEST_F(LifecycleTest, RetriedCreateWithRequestIdWritesNothingNew) {
  MakeTenant("retriers", true);
  auto req = Ask("retriers");
  req.set_request_id("5f0c6c1e-8d7a-4c1b-9a51-0c5e2f1d9b7a");
  v1::AccessRequest first = Create("alice", req);
  size_t events = Audit("retriers").size();
  // Retries, some concurrent, all return the first result.
  std::vector<std::thread> threads;
  std::vector<std::string> names(5);
  for (int i = 0; i < 5; ++i) {
    threads.emplace_back([&, i] { names[i] = Create("alice", req).name(); });
  }
  for (auto& t : threads) t.join();
  for (const auto& n : names) EXPECT_EQ(n, first.name());
  EXPECT_EQ(Audit("retriers").size(), events);
  v1::ListAccessRequestsRequest list;
  list.set_parent("tenants/retriers");
  v1::ListAccessRequestsResponse listed;
  ASSERT_TRUE(As("alice").requests->ListAccessRequests(Context().get(), list, &listed).ok());
  EXPECT_EQ(listed.access_requests_size(), 1);
  // The same request_id for a different request is refused.
  req.mutable_access_request()->set_justification("something else");
  v1::AccessRequest out;
  EXPECT_EQ(As("alice").requests->CreateAccessRequest(Context().get(), req, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Idempotent decisions too.
  v1::ApproveAccessRequestRequest ap;
  ap.set_name(first.name());
  ap.set_request_id("6a1d7d2f-9e8b-4d2c-8b62-1d6f3a2eac8b");
  v1::AccessRequest a1, a2;
  ASSERT_TRUE(As("bob").requests->ApproveAccessRequest(Context().get(), ap, &a1).ok());
  ASSERT_TRUE(As("bob").requests->ApproveAccessRequest(Context().get(), ap, &a2).ok());
  EXPECT_EQ(a1.etag(), a2.etag());
  EXPECT_EQ(Audit("retriers", "action = access_request.approve").size(), 1u);
}

TEST_F(LifecycleTest, TenantsAreIsolated) {
  MakeTenant("tenanta", true);
  MakeTenant("tenantb", true);
  v1::AccessRequest b = Create("alice", Ask("tenantb"));
  v1::AccessRequest out;
  ASSERT_TRUE(Approve("bob", b.name(), &out).ok());
  // Tenant A's admin can neither see nor decide B's request...
  v1::GetAccessRequestRequest get;
  get.set_name(b.name());
  EXPECT_EQ(As("tenanta-admin").requests->GetAccessRequest(Context().get(), get, &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Approve("tenanta-admin", b.name(), &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // ...nor learn whether a request exists there.
  get.set_name("tenants/tenantb/accessRequests/00000000-0000-4000-8000-000000000000");
  EXPECT_EQ(As("tenanta-admin").requests->GetAccessRequest(Context().get(), get, &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ListAccessRequestsRequest list;
  list.set_parent("tenants/tenantb");
  v1::ListAccessRequestsResponse listed;
  EXPECT_EQ(As("tenanta-admin").requests->ListAccessRequests(Context().get(), list, &listed)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  list.set_parent("tenants/-");
  ASSERT_TRUE(As("tenanta-admin").requests->ListAccessRequests(Context().get(), list, &listed).ok());
  EXPECT_EQ(listed.access_requests_size(), 0);
  v1::ListAuditEventsRequest audit;
  audit.set_parent("tenants/tenantb");
  v1::ListAuditEventsResponse events;
  EXPECT_EQ(As("tenanta-auditor").audit->ListAuditEvents(Context().get(), audit, &events)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // B's admin can.
  ASSERT_TRUE(Approve("tenantb-admin", b.name(), &out).ok());
  EXPECT_EQ(out.state(), v1::AccessRequest::APPROVED);
}

TEST_F(LifecycleTest, PortalActsOnBehalfOfTenantUsersOnly) {
  MakeTenant("portaled", true);
  v1::AccessRequest r = Create("alice", Ask("portaled"));
  v1::AccessRequest out;
  ASSERT_TRUE(Approve("bob", r.name(), &out).ok());
  const std::string user = Id("tenant/portaled/user/admin");
  TestTokenIssuer issuer("https://login.portaled.example", "lockbox");
  world->db->Exec(TokenIssuersSql("portaled", {issuer.Registration()}));
  // The header from anyone but a portal is refused.
  grpc::Status refused = Approve("bob", r.name(), &out, "", user);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ErrorInfoOf(refused).reason(), "ON_BEHALF_OF_NOT_ALLOWED");
  // A portal cannot claim an operator.
  EXPECT_EQ(Approve("portal", r.name(), &out, "", Id("operator/carol")).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A portal relaying the tenant admin's token decides as them; both are
  // audited.
  ASSERT_TRUE(Approve("portal", r.name(), &out, "", issuer.Sign(user, absl::Now())).ok());
  EXPECT_EQ(out.state(), v1::AccessRequest::APPROVED);
  EXPECT_EQ(out.decisions(1).via(), Id("service/portal"));
  auto events = Audit("portaled", "action = access_request.approve AND actor = \"" + user + "\"");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].via(), Id("service/portal"));
  // The refusals are audited too: bob's in the claimed user's tenant, the
  // portal's claim of an operator in the global log.
  auto refusals = Audit("portaled", "action = security.on_behalf_of_refused");
  ASSERT_EQ(refusals.size(), 1u);
  EXPECT_EQ(refusals[0].actor(), Id("operator/bob"));
  EXPECT_EQ(refusals[0].details().at("claimed_user"), user);
  v1::ListAuditEventsRequest global;
  global.set_filter("action = security.on_behalf_of_refused AND actor = \"" + Id("service/portal") + "\"");
  v1::ListAuditEventsResponse got;
  ASSERT_TRUE(As("admin").audit->ListAuditEvents(Context().get(), global, &got).ok());
  ASSERT_EQ(got.audit_events_size(), 1);
  EXPECT_EQ(got.audit_events(0).details().at("claimed_user"), Id("operator/carol"));
}

TEST_F(LifecycleTest, ListsPageFilterAndRefuseTamperedTokens) {
  MakeTenant("pager", false);
  for (int i = 0; i < 5; ++i) Create("alice", Ask("pager"));
  v1::ListAccessRequestsRequest list;
  list.set_parent("tenants/pager");
  list.set_page_size(2);
  list.set_filter("state = PENDING");
  std::set<std::string> seen;
  int pages = 0;
  do {
    v1::ListAccessRequestsResponse page;
    ASSERT_TRUE(As("bob").requests->ListAccessRequests(Context().get(), list, &page).ok());
    for (const auto& r : page.access_requests()) seen.insert(r.name());
    list.set_page_token(page.next_page_token());
    ++pages;
  } while (!list.page_token().empty() && pages < 10);
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_EQ(pages, 3);

  v1::ListAccessRequestsResponse page;
  list.set_page_token("");
  ASSERT_TRUE(As("bob").requests->ListAccessRequests(Context().get(), list, &page).ok());
  std::string token = page.next_page_token();
  token[2] = token[2] == 'x' ? 'y' : 'x';
  list.set_page_token(token);
  grpc::Status bad = As("bob").requests->ListAccessRequests(Context().get(), list, &page);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ErrorInfoOf(bad).reason(), "INVALID_PAGE_TOKEN");
  // A token from one filter is refused with another.
  list.set_page_token(page.next_page_token());
  list.set_filter("state = APPROVED");
  EXPECT_EQ(As("bob").requests->ListAccessRequests(Context().get(), list, &page).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  list.set_page_token("");
  list.set_filter("colour = blue");
  EXPECT_EQ(As("bob").requests->ListAccessRequests(Context().get(), list, &page).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // "Recent": an old time window shows nothing.
  list.set_filter("create_time < \"2020-01-01T00:00:00Z\"");
  ASSERT_TRUE(As("bob").requests->ListAccessRequests(Context().get(), list, &page).ok());
  EXPECT_EQ(page.access_requests_size(), 0);
  // Engineers see their own requests only.
  list.set_filter("");
  list.set_page_size(50);
  ASSERT_TRUE(As("edgar").requests->ListAccessRequests(Context().get(), list, &page).ok());
  EXPECT_EQ(page.access_requests_size(), 0);
  ASSERT_TRUE(As("alice").requests->ListAccessRequests(Context().get(), list, &page).ok());
  EXPECT_EQ(page.access_requests_size(), 5);
}

TEST_F(LifecycleTest, AuditLogIsAppendOnlyAndTamperEvident) {
  MakeTenant("audited", true);
  Create("alice", Ask("audited"));
  Create("alice", Ask("audited"));
  // The database refuses to change history.
  EXPECT_THROW(world->db->Exec("UPDATE audit_events SET justification = 'x' "
                               "WHERE tenant_id = 'audited'"),
               pqxx::sql_error);
  EXPECT_THROW(world->db->Exec("DELETE FROM audit_events WHERE tenant_id = 'audited'"),
               pqxx::sql_error);
  // A superuser who bypasses the trigger is caught by verify.
  auto events = Audit("audited", "action = access_request.create");
  ASSERT_EQ(events.size(), 2u);
  world->db->Exec(
      "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;"
      "UPDATE audit_events SET justification = 'nothing to see' WHERE tenant_id = 'audited' "
      "AND sequence = " + std::to_string(events[0].sequence()) + ";"
      "ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only;");
  v1::VerifyAuditLogRequest vr;
  vr.set_parent("tenants/audited");
  v1::VerifyAuditLogResponse verified;
  ASSERT_TRUE(As("audited-auditor").audit->VerifyAuditLog(Context().get(), vr, &verified).ok());
  EXPECT_FALSE(verified.ok());
  EXPECT_EQ(verified.first_bad_event(), events[0].name());
}

TEST_F(LifecycleTest, MutualTlsIsRequired) {
  auto status = [&](std::shared_ptr<grpc::Channel> ch) {
    Client c(ch);
    v1::ListTenantsRequest req;
    v1::ListTenantsResponse out;
    auto ctx = Context();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    return c.policy->ListTenants(ctx.get(), req, &out);
  };
  auto call = [&](std::shared_ptr<grpc::Channel> ch) { return status(ch).error_code(); };
  const std::string target = world->server->target();
  EXPECT_EQ(call(MtlsChannel(*world->certs, "admin", target)), grpc::StatusCode::OK);
  // No client certificate.
  EXPECT_NE(call(MtlsChannel(*world->certs, "", target)), grpc::StatusCode::OK);
  // A certificate from another CA, from a client that trusts our server, so
  // that only the server can refuse it: with the same trust and our CA's
  // certificate the call is served.
  Certificates foreign(kTd);
  foreign.Make("mallory", "operator/admin");
  foreign.Import(*world->certs, "ca.crt", "our-ca.crt");
  foreign.Import(*world->certs, "admin.crt", "our-admin.crt");
  foreign.Import(*world->certs, "admin.key", "our-admin.key");
  EXPECT_EQ(call(MtlsChannel(foreign, "our-admin", target, "our-ca.crt")), grpc::StatusCode::OK);
  grpc::Status refused = status(MtlsChannel(foreign, "mallory", target, "our-ca.crt"));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  // A client that refuses the server says "certificate verify failed"; this
  // one was cut off by the server.
  EXPECT_EQ(refused.error_message().find("certificate verify failed"), std::string::npos)
      << "the client refused the server: " << refused.error_message();
  // Our CA, but another trust domain, or no SPIFFE ID.
  std::string evil_domain_cmd = RequiredEnv("LOCKBOX_TEST_MAKE_CERTS") + " " +
                                world->certs->dir() + " evil.test eve=operator/admin";
  ASSERT_EQ(std::system(evil_domain_cmd.c_str()), 0);
  EXPECT_EQ(call(MtlsChannel(*world->certs, "eve", target)), grpc::StatusCode::UNAVAILABLE);
  world->certs->Make("nosan", "-");
  EXPECT_EQ(call(MtlsChannel(*world->certs, "nosan", target)), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(LifecycleTest, HealthOnBothPortsAndNothingElseOnTheHealthPort) {
  auto stub = grpc::health::v1::Health::NewStub(
      MtlsChannel(*world->certs, "zed", world->server->target()));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(stub->Check(Context().get(), req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  auto plain = grpc::CreateChannel("127.0.0.1:" + std::to_string(world->server->health_port()),
                                   grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(plain);
  ASSERT_TRUE(health->Check(Context().get(), req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  Client c(plain);
  v1::ListTenantsRequest lt;
  v1::ListTenantsResponse out;
  EXPECT_EQ(c.policy->ListTenants(Context().get(), lt, &out).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(LifecycleTest, ConfigurationChangesAreOwnedAndAudited) {
  MakeTenant("configured", true);
  Client admin = As("admin");
  Client customer = As("configured-admin");

  v1::GetEnvironmentRequest ge;
  ge.set_name("tenants/configured/environments/prod");
  v1::Environment env;
  ASSERT_TRUE(customer.policy->GetEnvironment(Context().get(), ge, &env).ok());
  EXPECT_TRUE(env.protected_());

  // The customer unmanages the environment; a stale etag is refused first.
  v1::UpdateEnvironmentRequest ue;
  ue.mutable_environment()->set_name(env.name());
  ue.mutable_environment()->set_managed(false);
  ue.mutable_environment()->set_etag("\"0\"");
  ue.mutable_update_mask()->add_paths("managed");
  v1::Environment updated;
  EXPECT_EQ(customer.policy->UpdateEnvironment(Context().get(), ue, &updated).error_code(),
            grpc::StatusCode::ABORTED);
  ue.mutable_environment()->set_etag(env.etag());
  ASSERT_TRUE(customer.policy->UpdateEnvironment(Context().get(), ue, &updated).ok());
  EXPECT_FALSE(updated.managed());
  EXPECT_FALSE(updated.protected_());
  EXPECT_NE(updated.etag(), env.etag());
  // The provider describes it; the customer cannot.
  ue = v1::UpdateEnvironmentRequest();
  ue.mutable_environment()->set_name(env.name());
  ue.mutable_environment()->set_display_name("Production (EU)");
  ue.mutable_update_mask()->add_paths("display_name");
  EXPECT_EQ(customer.policy->UpdateEnvironment(Context().get(), ue, &updated).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(admin.policy->UpdateEnvironment(Context().get(), ue, &updated).ok());
  EXPECT_EQ(updated.display_name(), "Production (EU)");
  EXPECT_FALSE(updated.managed());

  v1::GetLockboxPolicyRequest gp;
  gp.set_name("tenants/configured/lockboxPolicy");
  v1::LockboxPolicy policy;
  ASSERT_TRUE(As("configured-auditor").policy->GetLockboxPolicy(Context().get(), gp, &policy).ok());
  EXPECT_TRUE(policy.enabled());
  EXPECT_EQ(policy.access_duration().seconds(), 8 * 3600);
  EXPECT_EQ(policy.request_ttl().seconds(), 96 * 3600);

  // A tenant admin sees only their own tenant.
  v1::ListTenantsRequest lt;
  v1::ListTenantsResponse tenants;
  ASSERT_TRUE(customer.policy->ListTenants(Context().get(), lt, &tenants).ok());
  ASSERT_EQ(tenants.tenants_size(), 1);
  EXPECT_EQ(tenants.tenants(0).name(), "tenants/configured");
  v1::GetTenantRequest gt;
  gt.set_name("tenants/contoso");
  v1::Tenant t;
  EXPECT_EQ(customer.policy->GetTenant(Context().get(), gt, &t).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Role bindings: the tenant admin manages their own tenant's.
  world->certs->Make("configured-second", "tenant/configured/user/second");
  v1::CreateRoleBindingRequest rb;
  rb.mutable_role_binding()->set_principal(Id("tenant/configured/user/second"));
  rb.mutable_role_binding()->set_role("tenant.auditor");
  rb.mutable_role_binding()->set_tenant("tenants/configured");
  v1::RoleBinding binding;
  ASSERT_TRUE(customer.policy->CreateRoleBinding(Context().get(), rb, &binding).ok());
  EXPECT_EQ(customer.policy->CreateRoleBinding(Context().get(), rb, &binding).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  rb.mutable_role_binding()->set_role("operator.reviewer");
  rb.mutable_role_binding()->clear_tenant();
  EXPECT_NE(customer.policy->CreateRoleBinding(Context().get(), rb, &binding).error_code(),
            grpc::StatusCode::OK);
  v1::ListRoleBindingsRequest lr;
  lr.set_parent("tenants/configured");
  lr.set_filter("role = tenant.auditor");
  v1::ListRoleBindingsResponse bindings;
  ASSERT_TRUE(customer.policy->ListRoleBindings(Context().get(), lr, &bindings).ok());
  ASSERT_EQ(bindings.role_bindings_size(), 2);
  lr.set_parent("tenants/contoso");
  EXPECT_EQ(customer.policy->ListRoleBindings(Context().get(), lr, &bindings).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::DeleteRoleBindingRequest del;
  del.set_name(binding.name());
  google::protobuf::Empty empty;
  EXPECT_EQ(As("contoso-admin").policy->DeleteRoleBinding(Context().get(), del, &empty)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(customer.policy->DeleteRoleBinding(Context().get(), del, &empty).ok());
  EXPECT_EQ(admin.policy->DeleteRoleBinding(Context().get(), del, &empty).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // One audit event for every change of every resource kind, in order: the
  // tenant comes with its first admin's binding.
  std::vector<std::string> actions;
  for (const auto& e : Audit("configured")) actions.push_back(e.action());
  std::vector<std::string> expected = {
      "tenant.create",          "role_binding.create",   "environment.create",
      "role_binding.create",    "lockbox_policy.update", "environment.update",
      "environment.update",     "role_binding.create",   "role_binding.delete"};
  EXPECT_EQ(actions, expected);
  v1::VerifyAuditLogRequest vr;
  vr.set_parent("tenants/configured");
  v1::VerifyAuditLogResponse verified;
  ASSERT_TRUE(customer.audit->VerifyAuditLog(Context().get(), vr, &verified).ok());
  EXPECT_TRUE(verified.ok());
  EXPECT_EQ(verified.verified_events(), 9);
}

TEST_F(LifecycleTest, CancelIsTheRequestersAndAudited) {
  MakeTenant("cancellers", true);
  v1::AccessRequest r = Create("alice", Ask("cancellers"));
  v1::CancelAccessRequestRequest cancel;
  cancel.set_name(r.name());
  cancel.set_etag(r.etag());
  v1::AccessRequest out;
  ASSERT_TRUE(As("alice").requests->CancelAccessRequest(Context().get(), cancel, &out).ok());
  EXPECT_EQ(out.state(), v1::AccessRequest::CANCELLED);
  EXPECT_EQ(out.display_status(), "Cancelled");
  EXPECT_EQ(Approve("bob", r.name(), &out).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  auto events = Audit("cancellers", "action = access_request.cancel");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].request_state(), v1::AccessRequest::CANCELLED);
}

TEST(StartupTest, BadSettingsAreRefusedByName) {
  Certificates certs(kTd);
  TestDatabase db;
  // Runs lockboxd with good settings except those in `changed`; returns its
  // exit status and what it printed.
  auto run = [&](std::map<std::string, std::string> changed) {
    std::map<std::string, std::string> flags = {{"--listen", "127.0.0.1:0"},
                                                {"--tls-cert", certs.Path("server.crt")},
                                                {"--tls-key", certs.Path("server.key")},
                                                {"--tls-client-ca", certs.Path("ca.crt")},
                                                {"--trust-domain", kTd},
                                                {"--database-url", db.roles().runtime_url},
                                                {"--migration-database-url", db.roles().owner_url},
                                                {"--audit-signing-key", SigningKeyFile(db.url())}};
    for (auto& [k, v] : changed) flags[k] = v;
    std::string cmd = RequiredEnv("LOCKBOX_TEST_LOCKBOXD");
    for (auto& [k, v] : flags) {
      if (v != "<unset>") cmd += " '" + k + "=" + v + "'";
    }
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
    int rc = pclose(p);
    return std::make_pair(rc, out);
  };
  for (auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--database-url", "postgresql:///nope?host=/nonexistent"},
           {"--database-url", "<unset>"},
           {"--tls-cert", "/nonexistent.crt"},
           {"--tls-key", certs.Path("ca.crt")},
           {"--tls-client-ca", "<unset>"},
           {"--trust-domain", "spiffe://bad/"},
           {"--bootstrap-admin", std::string("spiffe://") + kTd + "/service/x"},
           {"--listen", "256.0.0.1:99999"}}) {
    auto [rc, out] = run({{flag, value}});
    EXPECT_NE(rc, 0) << flag << "=" << value;
    EXPECT_NE(out.find(flag), std::string::npos) << flag << "=" << value << ": " << out;
  }
}

TEST(ReplicaStartTest, TwoReplicasMigrateOneDatabaseAtOnce) {
  TestDatabase db;
  Certificates certs(kTd);
  ServerProcess a(certs, db.url(), Id("operator/admin"));
  ServerProcess b(certs, db.url(), Id("operator/admin"));
  EXPECT_TRUE(a.WaitReady("admin"));
  EXPECT_TRUE(b.WaitReady("admin"));
  pqxx::connection c(db.url());
  pqxx::nontransaction n(c);
  // Every migration applied once, none skipped.
  auto applied = n.exec("SELECT count(*), max(version) FROM schema_migrations")[0];
  MigrationFiles files = SourceMigrations();
  EXPECT_GE(applied[0].as<int>(), 2);
  EXPECT_EQ(applied[0].as<int>(), files.count);
  EXPECT_EQ(applied[1].as<int>(), files.highest);
  EXPECT_EQ(n.exec("SELECT count(*) FROM role_bindings")[0][0].as<int>(), 1);
}

}  // namespace
}  // namespace lockbox::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  lockbox::testing::world = new lockbox::testing::World();
  ::testing::AddGlobalTestEnvironment(lockbox::testing::world);
  return RUN_ALL_TESTS();
}
