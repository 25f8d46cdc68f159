// A grant covers what was reviewed, and only while its engineer is one
// (SPEC section 8); the last lockbox.admin stays; the bootstrap admin acts
// only while none exists; provider staff's messages are not listed under the
// customer's tenant. In-process, against a real PostgreSQL, with the fake
// clock. CheckAccess is asked both from the database (the harness's use
// cases have no grant view) and from memory (a second set of use cases on the
// same database with a grant view fed by LISTEN/NOTIFY, as lockboxd runs it).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "server/app/grant_view.h"
#include "server/domain/status.h"
#include "server/store/postgres/change_feed.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

constexpr char kLegacy[] = "tenants/ma/environments/legacy";

class GrantCoverageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<DemoApp> demo = StartDemoApp();
    ASSERT_TRUE(demo.ok()) << demo.status();
    app_ = std::move(demo->app);
    world_ = std::move(demo->world);

    // The memory path: the same database through a grant view.
    PgStoreOptions store_options;
    store_options.database_url = app_->database().url();
    store_options.pool_size = 2;
    auto store = PgStore::Create(std::move(store_options));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto pem = AuditSigner::GeneratePem();
    ASSERT_TRUE(pem.ok());
    auto signer = AuditSigner::FromPem(*pem);
    ASSERT_TRUE(signer.ok());
    signer_ = std::move(*signer);
    feed_ = std::make_unique<PgChangeFeed>(app_->database().url(), ChangeTopic::kAccess,
                                           absl::Milliseconds(100));
    view_ = std::make_unique<GrantView>(
        GrantView::Options{store_.get(), &app_->clock(), feed_.get(), absl::Seconds(5)});
    view_->Start();
    UseCasesOptions options;
    options.store = store_.get();
    options.clock = &app_->clock();
    options.trust_domain = kTrustDomain;
    options.page_token_key = "in-process-test-page-token-key";
    options.audit_signer = signer_.get();
    options.grant_view = view_.get();
    options.certificates = &certificates_;
    with_view_ = std::make_unique<UseCases>(std::move(options));
    ASSERT_TRUE(WaitFor([&] { return view_->Ready(); })) << "the grant view never got ready";
  }

  void TearDown() override {
    with_view_.reset();
    if (view_) view_->Stop();
  }

  // Real time, not the fake clock: the feed's delivery is what is waited for.
  static bool WaitFor(const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  }

  static v1::CheckAccessRequest Ask(const std::string& environment,
                                    const std::string& data_source) {
    v1::CheckAccessRequest r;
    r.set_principal(SpiffeId("operator/alice"));
    r.set_environment(environment);
    r.set_data_source(data_source);
    return r;
  }

  // CheckAccess from the database alone.
  bool AllowedFromDatabase(const std::string& environment, const std::string& data_source) {
    auto got =
        app_->use_cases().grants().CheckAccess(world_->enforcer, Ask(environment, data_source));
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok() && !got->allowed()) EXPECT_EQ(got->reason(), "NO_ACTIVE_GRANT");
    return got.ok() && got->allowed();
  }
  // Whether the grant view alone allows it (nullopt from memory: it does not).
  bool AllowedFromMemory(const std::string& environment, const std::string& data_source) {
    auto got =
        with_view_->grants().CheckAccessFromMemory(world_->enforcer, Ask(environment, data_source));
    if (!got) return false;
    EXPECT_TRUE(got->ok()) << got->status();
    return got->ok() && (*got)->allowed();
  }
  // CheckAccess as lockboxd answers it: memory first, then the database.
  bool Allowed(const std::string& environment, const std::string& data_source) {
    auto got = with_view_->grants().CheckAccess(world_->enforcer, Ask(environment, data_source));
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() && got->allowed();
  }

  absl::Status SetDataSources(const std::string& environment,
                              const std::vector<std::pair<std::string, bool>>& sources) {
    v1::UpdateEnvironmentRequest up;
    up.mutable_environment()->set_name(environment);
    for (const auto& [id, supported] : sources) {
      auto* ds = up.mutable_environment()->add_data_sources();
      ds->set_id(id);
      ds->set_kind("sql_database");
      ds->set_lockbox_supported(supported);
    }
    up.mutable_update_mask()->add_paths("data_sources");
    return app_->use_cases().policy().UpdateEnvironment(world_->admin, up).status();
  }

  // An "all" request of the engineer on `environment`, approved by the
  // internal review alone.
  absl::StatusOr<v1::Grant> ApprovedInternally(const std::string& environment) {
    auto request = world_->PendingRequest(environment);
    if (!request.ok()) return request.status();
    v1::ApproveAccessRequestRequest approve;
    approve.set_name(request->name());
    auto decided = app_->use_cases().requests().ApproveAccessRequest(world_->reviewer, approve);
    if (!decided.ok()) return decided.status();
    if (decided->state() != v1::AccessRequest::APPROVED) {
      return absl::FailedPreconditionError("the request waits for the customer");
    }
    v1::GetGrantRequest g;
    g.set_name(decided->grant());
    return app_->use_cases().grants().GetGrant(world_->admin, g);
  }

  // Listed as `as` (the bootstrap admin unless given).
  absl::StatusOr<std::string> BindingName(const std::string& principal, const std::string& role,
                                          const CallerIdentity* as = nullptr) {
    v1::ListRoleBindingsRequest list;
    list.set_filter("principal = \"" + principal + "\" AND role = \"" + role + "\"");
    auto got = app_->use_cases().policy().ListRoleBindings(as ? *as : world_->admin, list);
    if (!got.ok()) return got.status();
    if (got->role_bindings_size() != 1) return absl::NotFoundError(principal + " " + role);
    return got->role_bindings(0).name();
  }

  absl::Status Unbind(const CallerIdentity& as, const std::string& name) {
    v1::DeleteRoleBindingRequest d;
    d.set_name(name);
    return app_->use_cases().policy().DeleteRoleBinding(as, d).status();
  }

  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<DemoWorld> world_;
  std::unique_ptr<PgStore> store_;
  std::unique_ptr<AuditSigner> signer_;
  std::unique_ptr<PgChangeFeed> feed_;
  std::unique_ptr<GrantView> view_;
  InProcessCertificateVerifier certificates_;
  std::unique_ptr<UseCases> with_view_;
};

// The case 1, exactly: an environment whose only data source is not
// lockbox-supported; an "all" request approved internally with no customer
// stage; then a lockbox-supported crm source is added.
TEST_F(GrantCoverageTest, ASourceAddedAfterAnInternalApprovalIsNotCovered) {
  v1::Environment spec;
  auto* logs = spec.add_data_sources();
  logs->set_id("logs");
  logs->set_kind("storage_account");
  logs->set_lockbox_supported(false);
  ASSERT_TRUE(app_->CreateEnvironment("ma", "legacy", spec).ok());
  auto grant = ApprovedInternally(kLegacy);
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_EQ(grant->data_sources_size(), 1) << "an \"all\" request pins the sources of its approval";
  EXPECT_EQ(grant->data_sources(0), "logs");
  ASSERT_EQ(grant->pinned_data_sources_size(), 1);
  EXPECT_FALSE(grant->pinned_data_sources(0).lockbox_supported());
  EXPECT_FALSE(grant->pinned_data_sources(0).customer_reviewed());
  EXPECT_TRUE(AllowedFromDatabase(kLegacy, "logs"));
  EXPECT_TRUE(AllowedFromDatabase(kLegacy, ""));
  ASSERT_TRUE(WaitFor([&] {
    return AllowedFromMemory(kLegacy, "") && AllowedFromMemory(kLegacy, "logs");
  })) << "the view read the grant and its environment";

  ASSERT_TRUE(SetDataSources(kLegacy, {{"logs", false}, {"crm", true}}).ok());
  for (const char* source : {"crm", "made-up"}) {
    EXPECT_FALSE(AllowedFromDatabase(kLegacy, source)) << source;
    EXPECT_FALSE(AllowedFromMemory(kLegacy, source)) << source;
    EXPECT_FALSE(Allowed(kLegacy, source)) << source;
  }
  EXPECT_FALSE(AllowedFromDatabase(kLegacy, "")) << "the whole now holds crm";
  EXPECT_TRUE(
      WaitFor([&] { return !AllowedFromMemory(kLegacy, ""); }, std::chrono::milliseconds(1000)))
      << "the view kept the environment as it was";
  EXPECT_FALSE(Allowed(kLegacy, ""));
  // What was approved is still allowed: logs is not protected.
  EXPECT_TRUE(WaitFor([&] { return AllowedFromMemory(kLegacy, "logs"); }));
  EXPECT_TRUE(AllowedFromDatabase(kLegacy, "logs"));
}

TEST_F(GrantCoverageTest, ASourceMadeSupportedLaterIsNotCovered) {
  v1::Environment spec;
  auto* logs = spec.add_data_sources();
  logs->set_id("logs");
  logs->set_kind("storage_account");
  logs->set_lockbox_supported(false);
  ASSERT_TRUE(app_->CreateEnvironment("ma", "legacy", spec).ok());
  ASSERT_TRUE(ApprovedInternally(kLegacy).ok());
  ASSERT_TRUE(WaitFor([&] { return AllowedFromMemory(kLegacy, "logs"); }));
  ASSERT_TRUE(SetDataSources(kLegacy, {{"logs", true}}).ok());
  EXPECT_FALSE(AllowedFromDatabase(kLegacy, "logs"));
  EXPECT_FALSE(AllowedFromDatabase(kLegacy, ""));
  EXPECT_TRUE(WaitFor([&] { return !AllowedFromMemory(kLegacy, "logs"); },
                      std::chrono::milliseconds(1000)));
  EXPECT_FALSE(Allowed(kLegacy, "logs"));
  EXPECT_FALSE(Allowed(kLegacy, ""));
}

TEST_F(GrantCoverageTest, AProtectionTurnedOnLaterIsNotCovered) {
  // tenants/mb's policy is disabled: the internal review decides alone.
  auto grant = ApprovedInternally(DemoWorld::kEnvironmentB);
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_EQ(grant->data_sources_size(), 2);
  ASSERT_TRUE(WaitFor([&] { return AllowedFromMemory(DemoWorld::kEnvironmentB, "sql"); }));
  v1::UpdateLockboxPolicyRequest up;
  up.mutable_lockbox_policy()->set_name("tenants/mb/lockboxPolicy");
  up.mutable_lockbox_policy()->set_enabled(true);
  up.mutable_update_mask()->add_paths("enabled");
  ASSERT_TRUE(app_->use_cases().policy().UpdateLockboxPolicy(world_->tenant_b_admin, up).ok());
  EXPECT_FALSE(AllowedFromDatabase(DemoWorld::kEnvironmentB, "sql"))
      << "sql is protected now, never reviewed";
  EXPECT_TRUE(WaitFor([&] { return !AllowedFromMemory(DemoWorld::kEnvironmentB, "sql"); },
                      std::chrono::milliseconds(1000)));
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentB, "sql"));
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentB, "rcs")) << "rcs is not lockbox-supported";
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentB, ""));
}

TEST_F(GrantCoverageTest, CustomerReviewedSourcesAreCoveredFromDatabaseAndMemory) {
  auto grant = world_->ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_TRUE(grant->customer_reviewed());
  ASSERT_EQ(grant->pinned_data_sources_size(), 2);
  EXPECT_EQ(grant->pinned_data_sources(0).id(), "sql");
  EXPECT_TRUE(grant->pinned_data_sources(0).lockbox_supported());
  EXPECT_TRUE(grant->pinned_data_sources(0).customer_reviewed());
  EXPECT_EQ(grant->pinned_data_sources(1).id(), "rcs");
  EXPECT_FALSE(grant->pinned_data_sources(1).customer_reviewed());
  EXPECT_TRUE(AllowedFromDatabase(DemoWorld::kEnvironmentA, "sql"));
  EXPECT_TRUE(AllowedFromDatabase(DemoWorld::kEnvironmentA, "rcs"));
  EXPECT_TRUE(AllowedFromDatabase(DemoWorld::kEnvironmentA, ""));
  EXPECT_TRUE(WaitFor([&] {
    return AllowedFromMemory(DemoWorld::kEnvironmentA, "sql") &&
           AllowedFromMemory(DemoWorld::kEnvironmentA, "rcs") &&
           AllowedFromMemory(DemoWorld::kEnvironmentA, "");
  }));
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "made-up"));
  // A source added after the customer's approval is not covered, and the
  // whole no longer is; what the customer reviewed still is, even while the
  // view has dropped the environment to read it again.
  ASSERT_TRUE(
      SetDataSources(DemoWorld::kEnvironmentA, {{"sql", true}, {"rcs", false}, {"crm", true}})
          .ok());
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "crm"));
  EXPECT_FALSE(AllowedFromDatabase(DemoWorld::kEnvironmentA, ""));
  EXPECT_TRUE(WaitFor([&] { return !AllowedFromMemory(DemoWorld::kEnvironmentA, ""); },
                      std::chrono::milliseconds(1000)));
  EXPECT_TRUE(AllowedFromMemory(DemoWorld::kEnvironmentA, "sql"));
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentA, "sql"));
}

TEST_F(GrantCoverageTest, AGrantStopsAllowingPromptlyWhenItsEngineerLosesTheRole) {
  auto grant = world_->ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_TRUE(WaitFor([&] { return AllowedFromMemory(DemoWorld::kEnvironmentA, "sql"); }));
  auto binding = BindingName(world_->engineer.spiffe_id, "operator.engineer");
  ASSERT_TRUE(binding.ok()) << binding.status();
  ASSERT_TRUE(Unbind(world_->admin, *binding).ok());
  auto unbound = std::chrono::steady_clock::now();
  EXPECT_FALSE(AllowedFromDatabase(DemoWorld::kEnvironmentA, "sql"))
      << "at once, from the database";
  EXPECT_TRUE(WaitFor([&] { return !AllowedFromMemory(DemoWorld::kEnvironmentA, "sql"); },
                      std::chrono::milliseconds(1000)))
      << "the grant view kept allowing for a second";
  EXPECT_LT(std::chrono::steady_clock::now() - unbound, std::chrono::milliseconds(1000));
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "sql"));
  // The grant itself is untouched: bound again, the engineer is let in.
  ASSERT_TRUE(app_->Bind(world_->engineer.spiffe_id, "operator.engineer").ok());
  EXPECT_TRUE(AllowedFromDatabase(DemoWorld::kEnvironmentA, "sql"));
}

TEST_F(GrantCoverageTest, TheLastAdminCannotBeRemoved) {
  auto first = BindingName(world_->admin.spiffe_id, "lockbox.admin");
  ASSERT_TRUE(first.ok()) << first.status();
  absl::Status refused = Unbind(world_->admin, *first);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_EQ(ErrorReason(refused), "LAST_ADMIN");
  // With a second admin, one may go, and then the other is the last.
  const std::string second = SpiffeId("operator/root2");
  ASSERT_TRUE(app_->Bind(second, "lockbox.admin").ok());
  ASSERT_TRUE(Unbind(Caller("operator/root2"), *first).ok());
  CallerIdentity root2 = Caller("operator/root2");
  auto remaining = BindingName(second, "lockbox.admin", &root2);
  ASSERT_TRUE(remaining.ok());
  refused = Unbind(Caller("operator/root2"), *remaining);
  EXPECT_EQ(ErrorReason(refused), "LAST_ADMIN") << refused;
}

TEST_F(GrantCoverageTest, RacingRemovalsOfTheLastTwoAdminsLeaveOne) {
  // Each round the surviving admin binds two new ones and removes itself;
  // the two then remove each other at the same moment.
  std::string survivor = "operator/admin";
  for (int round = 0; round < 5; ++round) {
    const std::string x = "operator/x" + std::to_string(round);
    const std::string y = "operator/y" + std::to_string(round);
    for (const std::string& who : {x, y}) {
      v1::CreateRoleBindingRequest b;
      b.mutable_role_binding()->set_principal(SpiffeId(who));
      b.mutable_role_binding()->set_role("lockbox.admin");
      ASSERT_TRUE(app_->use_cases().policy().CreateRoleBinding(Caller(survivor), b).ok());
    }
    CallerIdentity as_x = Caller(x);
    auto own = BindingName(SpiffeId(survivor), "lockbox.admin", &as_x);
    ASSERT_TRUE(own.ok()) << own.status();
    ASSERT_TRUE(Unbind(Caller(survivor), *own).ok());
    auto name_x = BindingName(SpiffeId(x), "lockbox.admin", &as_x);
    auto name_y = BindingName(SpiffeId(y), "lockbox.admin", &as_x);
    ASSERT_TRUE(name_x.ok() && name_y.ok());
    absl::Status by_x, by_y;
    std::thread tx([&] { by_x = Unbind(Caller(x), *name_y); });
    std::thread ty([&] { by_y = Unbind(Caller(y), *name_x); });
    tx.join();
    ty.join();
    EXPECT_NE(by_x.ok(), by_y.ok()) << "round " << round << ": " << by_x << " / " << by_y;
    // The loser is refused as the last admin, or, when the winner's removal
    // committed before the loser's call began, as no admin at all.
    const absl::Status& loser = by_x.ok() ? by_y : by_x;
    EXPECT_TRUE(ErrorReason(loser) == "LAST_ADMIN" ||
                loser.code() == absl::StatusCode::kPermissionDenied)
        << loser;
    survivor = by_x.ok() ? x : y;
    v1::ListRoleBindingsRequest list;
    list.set_filter("role = \"lockbox.admin\"");
    auto all = app_->use_cases().policy().ListRoleBindings(Caller(survivor), list);
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_EQ(all->role_bindings_size(), 1) << "round " << round;
    EXPECT_EQ(all->role_bindings(0).principal(), SpiffeId(survivor));
  }
}

TEST_F(GrantCoverageTest, TheBootstrapAdminActsOnlyWhileNoAdminExists) {
  // Another admin removes the bootstrap identity; the next start (the same
  // call lockboxd makes) does not bring it back.
  const std::string second = SpiffeId("operator/root2");
  ASSERT_TRUE(app_->Bind(second, "lockbox.admin").ok());
  auto boot = BindingName(world_->admin.spiffe_id, "lockbox.admin");
  ASSERT_TRUE(boot.ok());
  ASSERT_TRUE(Unbind(Caller("operator/root2"), *boot).ok());
  ASSERT_TRUE(app_->use_cases().policy().EnsureBootstrapAdmin(world_->admin.spiffe_id).ok());
  CallerIdentity root2 = Caller("operator/root2");
  EXPECT_TRUE(
      absl::IsNotFound(BindingName(world_->admin.spiffe_id, "lockbox.admin", &root2).status()))
      << "the removed bootstrap admin came back";
  // A new bootstrap identity is not bound either while an admin exists.
  ASSERT_TRUE(app_->use_cases().policy().EnsureBootstrapAdmin(SpiffeId("operator/newboot")).ok());
  EXPECT_TRUE(absl::IsNotFound(
      BindingName(SpiffeId("operator/newboot"), "lockbox.admin", &root2).status()));
  EXPECT_TRUE(BindingName(second, "lockbox.admin", &root2).ok());
}

TEST_F(GrantCoverageTest, ProviderStaffMessagesAreNotListedUnderTheTenant) {
  // Contacts with addresses: a reviewer, and the engineer.
  v1::CreateRoleBindingRequest b;
  b.mutable_role_binding()->set_principal(SpiffeId("operator/rita"));
  b.mutable_role_binding()->set_role("operator.reviewer");
  b.mutable_role_binding()->set_email("rita@provider.example");
  ASSERT_TRUE(app_->use_cases().policy().CreateRoleBinding(world_->admin, b).ok());
  v1::CreateRoleBindingRequest ta;
  ta.mutable_role_binding()->set_principal(SpiffeId("tenant/ma/user/tess"));
  ta.mutable_role_binding()->set_role("tenant.admin");
  ta.mutable_role_binding()->set_tenant(DemoWorld::kTenantA);
  ta.mutable_role_binding()->set_email("tess@ma.example");
  // Tenant roles are bound by the tenant's own admin.
  ASSERT_TRUE(app_->use_cases().policy().CreateRoleBinding(world_->tenant_a_admin, ta).ok());
  auto request = world_->PendingRequest();
  ASSERT_TRUE(request.ok());
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(request->name());
  ASSERT_TRUE(app_->use_cases().requests().ApproveAccessRequest(world_->reviewer, approve).ok());

  v1::ListNotificationsRequest tenant_list;
  tenant_list.set_parent(DemoWorld::kTenantA);
  auto listed =
      app_->use_cases().notifications().ListNotifications(world_->tenant_a_admin, tenant_list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  bool customer_review = false;
  for (const auto& n : listed->notifications()) {
    EXPECT_NE(n.recipient(), "rita@provider.example") << n.event();
    EXPECT_NE(n.event(), "access_request.created");
    EXPECT_TRUE(absl::StartsWith(n.name(), "tenants/ma/notifications/")) << n.name();
    if (n.event() == "access_request.customer_review" && n.recipient() == "tess@ma.example") {
      customer_review = true;
    }
  }
  EXPECT_TRUE(customer_review) << "the customer's own message is listed for them";

  v1::ListNotificationsRequest global;
  global.set_filter("event = access_request.created");
  auto all = app_->use_cases().notifications().ListNotifications(world_->admin, global);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->notifications_size(), 1);
  EXPECT_EQ(all->notifications(0).recipient(), "rita@provider.example");
  EXPECT_TRUE(absl::StartsWith(all->notifications(0).name(), "notifications/"))
      << all->notifications(0).name();
  EXPECT_EQ(all->notifications(0).resource(), request->name());
}

}  // namespace
}  // namespace lockbox::testing
