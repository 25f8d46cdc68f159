// CheckAccess from each replica's in-memory view of active grants: what it
// answers on both replicas after a grant is made, released, revoked, runs
// out, after its enforcer loses the role, and after the notification
// connection is lost.
#include <gtest/gtest.h>
#include <lockbox/client.h>

#include <thread>

#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
constexpr char kEnv[] = "tenants/viewed/environments/prod";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

class GrantViewTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    char tmpl[] = "/tmp/lockbox-clock.XXXXXX";
    clock_file_ = new std::string(std::string(mkdtemp(tmpl)) + "/offset");
    SetOffset(0);
    for (const char* who : {"alice", "bob"}) certs_->Make(who, std::string("operator/") + who);
    certs_->Make("dana", "tenant/viewed/user/dana");
    certs_->Make("enforcer", "service/enforcer");
    certs_->Make("gate", "service/gate");
    // No sweep during the suite: expiry must come from the grants' own end
    // times, not from a recorded state change.
    std::vector<std::string> flags = {"--sweep-interval-ms=3600000",
                                      "--testing-clock-offset-file=" + *clock_file_};
    a_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), flags);
    b_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), flags);
    ASSERT_TRUE(a_->WaitReady("admin"));
    ASSERT_TRUE(b_->WaitReady("admin"));
    auto admin = LibraryClient(*certs_, "admin", b_->target());
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, "viewed", "dana")).ok());
    // Each replica trusts the new tenant's CA within a couple of seconds.
    ASSERT_TRUE(a_->WaitReady("dana", 15));
    ASSERT_TRUE(b_->WaitReady("dana", 15));
    v1::CreateEnvironmentRequest e;
    e.set_parent("tenants/viewed");
    e.set_environment_id("prod");
    ASSERT_TRUE(admin->CreateEnvironment(e).ok());
    Bind(*admin, Id("operator/alice"), "operator.engineer", "");
    Bind(*admin, Id("operator/bob"), "operator.reviewer", "");
    Bind(*admin, Id("service/enforcer"), "service.enforcer", "");
    // Unprotected (internal review only), and the customer may revoke.
    v1::UpdateLockboxPolicyRequest p;
    p.mutable_lockbox_policy()->set_name("tenants/viewed/lockboxPolicy");
    p.mutable_lockbox_policy()->set_allow_revocation(true);
    p.mutable_update_mask()->add_paths("allow_revocation");
    auto updated = LibraryClient(*certs_, "dana", b_->target())->UpdateLockboxPolicy(p);
    ASSERT_TRUE(updated.ok()) << updated.status().error_message();
  }
  static void TearDownTestSuite() {
    delete a_;
    delete b_;
    delete certs_;
    delete db_;
    delete clock_file_;
  }

  static std::string Bind(lockbox::Client& admin, const std::string& principal,
                          const std::string& role, const std::string& tenant) {
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(principal);
    r.mutable_role_binding()->set_role(role);
    r.mutable_role_binding()->set_tenant(tenant);
    auto made = admin.CreateRoleBinding(r);
    EXPECT_TRUE(made.ok()) << principal << ": " << made.status().error_message();
    return made.ok() ? made->name() : "";
  }

  // Moves the clock; returns once every running replica applies the offset.
  static void SetOffset(double seconds) {
    std::vector<pid_t> pids;
    for (ServerProcess* s : {a_, b_}) {
      if (s != nullptr) pids.push_back(s->pid());
    }
    MoveClock(*clock_file_, seconds, pids);
  }

  static ServerProcess& Replica(int i) { return i == 0 ? *a_ : *b_; }
  static int MetricsPort(int i) { return Replica(i).metrics_port(); }

  // Alice asks on replica A and bob approves on replica B; returns the grant.
  static v1::Grant Granted() {
    auto alice = LibraryClient(*certs_, "alice", a_->target());
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/viewed");
    r.mutable_access_request()->set_environment(kEnv);
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_justification("reading a stuck queue");
    auto created = alice->CreateAccessRequest(r);
    EXPECT_TRUE(created.ok()) << created.status().error_message();
    v1::ApproveAccessRequestRequest approve;
    approve.set_name(created->name());
    auto approved = LibraryClient(*certs_, "bob", b_->target())->ApproveAccessRequest(approve);
    EXPECT_TRUE(approved.ok()) << approved.status().error_message();
    EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);
    v1::GetGrantRequest g;
    g.set_name(approved->grant());
    auto grant = alice->GetGrant(g);
    EXPECT_TRUE(grant.ok()) << grant.status().error_message();
    return *grant;
  }

  // What replica `i` answers the enforcer about alice's access.
  static Result<v1::CheckAccessResponse> Check(int i, const std::string& as = "enforcer") {
    v1::CheckAccessRequest r;
    r.set_principal(Id("operator/alice"));
    r.set_environment(kEnv);
    return LibraryClient(*certs_, as, Replica(i).target())->CheckAccess(r);
  }
  static bool Allowed(int i) {
    auto got = Check(i);
    EXPECT_TRUE(got.ok()) << got.status().error_message();
    return got.ok() && got->allowed();
  }
  static bool DeniedOnBoth() { return !Allowed(0) && !Allowed(1); }

  // CheckAccess answers replica `i` gave from its view (its metrics).
  static double FromView(int i) {
    return MetricValue(HttpGet(MetricsPort(i), "/metrics"), "lockbox_checkaccess_answers_total",
                       {{"from", "view"}});
  }
  // Asks replica `i` as `as` until its view, not its database, says alice is
  // allowed: the grant's (or binding's) notification has reached the view.
  static bool AllowedFromView(int i, const std::string& as = "enforcer") {
    return Eventually(
        [&] {
          double before = FromView(i);
          auto got = Check(i, as);
          return got.ok() && got->allowed() && FromView(i) > before;
        },
        10);
  }

  void SetUp() override {
    // Each case starts with alice holding nothing.
    auto dana = LibraryClient(*certs_, "dana", b_->target());
    v1::ListGrantsRequest l;
    l.set_parent("tenants/viewed");
    l.set_filter("state = ACTIVE");
    auto active = dana->ListGrants(l);
    ASSERT_TRUE(active.ok());
    for (const auto& g : active->grants()) {
      v1::RevokeGrantRequest r;
      r.set_name(g.name());
      ASSERT_TRUE(dana->RevokeGrant(r).ok());
    }
    ASSERT_TRUE(Eventually(DeniedOnBoth, 10));
  }

  static TestDatabase* db_;
  static Certificates* certs_;
  static std::string* clock_file_;
  static ServerProcess* a_;
  static ServerProcess* b_;
};

TestDatabase* GrantViewTest::db_ = nullptr;
Certificates* GrantViewTest::certs_ = nullptr;
std::string* GrantViewTest::clock_file_ = nullptr;
ServerProcess* GrantViewTest::a_ = nullptr;
ServerProcess* GrantViewTest::b_ = nullptr;

TEST_F(GrantViewTest, ApprovalOnOneReplicaAllowsOnBothBeforeItReturns) {
  v1::Grant grant = Granted();
  // No waiting: the approval has returned, so every replica must allow now.
  auto a = Check(0);
  auto b = Check(1);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a->allowed());
  EXPECT_TRUE(b->allowed());
  EXPECT_EQ(a->grant().name(), grant.name());
  EXPECT_EQ(b->grant().name(), grant.name());
  EXPECT_EQ(a->expire_time().seconds(), grant.expire_time().seconds());
  // And it keeps allowing once the views hold it, from the views.
  EXPECT_TRUE(AllowedFromView(0));
  EXPECT_TRUE(AllowedFromView(1));
}

TEST_F(GrantViewTest, ReleaseStopsAllowingOnBothReplicas) {
  v1::Grant grant = Granted();
  // Both views hold the grant: what follows tests them, not the database.
  ASSERT_TRUE(AllowedFromView(0) && AllowedFromView(1));
  v1::ReleaseGrantRequest r;
  r.set_name(grant.name());
  ASSERT_TRUE(LibraryClient(*certs_, "alice", a_->target())->ReleaseGrant(r).ok());
  EXPECT_FALSE(Allowed(0)) << "the replica that released still allows";
  EXPECT_TRUE(Eventually([] { return !Allowed(1); }, 5));
  EXPECT_FALSE(Check(1)->allowed());
  EXPECT_EQ(Check(1)->reason(), "NO_ACTIVE_GRANT");
}

TEST_F(GrantViewTest, RevokeStopsAllowingOnBothReplicas) {
  v1::Grant grant = Granted();
  // Both views hold the grant: what follows tests them, not the database.
  ASSERT_TRUE(AllowedFromView(0) && AllowedFromView(1));
  v1::RevokeGrantRequest r;
  r.set_name(grant.name());
  r.set_reason("incident closed");
  ASSERT_TRUE(LibraryClient(*certs_, "dana", b_->target())->RevokeGrant(r).ok());
  EXPECT_FALSE(Allowed(1)) << "the replica that revoked still allows";
  EXPECT_TRUE(Eventually([] { return !Allowed(0); }, 5));
}

TEST_F(GrantViewTest, ExpiryIsExactFromTheGrantsOwnEndTime) {
  v1::Grant grant = Granted();
  // Both views hold the grant: what follows tests them, not the database.
  ASSERT_TRUE(AllowedFromView(0) && AllowedFromView(1));
  // Nothing records the expiry (no sweep): the views decide by the end time.
  int64_t left = grant.expire_time().seconds() - std::time(nullptr);
  SetOffset(static_cast<double>(left) - 5);
  EXPECT_TRUE(Allowed(0));
  EXPECT_TRUE(Allowed(1));
  SetOffset(static_cast<double>(left) + 1);
  EXPECT_FALSE(Allowed(0));
  EXPECT_FALSE(Allowed(1));
  SetOffset(0);
}

TEST_F(GrantViewTest, LosingTheEnforcerRoleStopsItsChecksOnBothReplicas) {
  Granted();
  auto admin = LibraryClient(*certs_, "admin", b_->target());
  std::string binding = Bind(*admin, Id("service/gate"), "service.enforcer", "");
  ASSERT_TRUE(Check(0, "gate").ok());
  ASSERT_TRUE(Check(1, "gate").ok());
  // Both views know the new enforcer: what follows tests them.
  ASSERT_TRUE(AllowedFromView(0, "gate") && AllowedFromView(1, "gate"));
  v1::DeleteRoleBindingRequest d;
  d.set_name(binding);
  ASSERT_TRUE(admin->DeleteRoleBinding(d).ok());
  for (int i : {0, 1}) {
    EXPECT_TRUE(Eventually(
        [i] { return Check(i, "gate").status().error_code() == grpc::StatusCode::PERMISSION_DENIED; },
        5))
        << "replica " << i;
  }
  EXPECT_TRUE(Allowed(0));  // The other enforcer is untouched.
}

TEST_F(GrantViewTest, LostNotificationConnectionRebuildsBeforeAnsweringFromTheView) {
  // Replica i's count of lost grant-notification connections, and whether
  // it answers CheckAccess from its view (from its metrics).
  auto ListenLosses = [](int i) {
    return MetricValue(HttpGet(MetricsPort(i), "/metrics"), "lockbox_database_reconnects_total",
                       {{"connection", "listen_access"}});
  };
  auto ViewReady = [](int i) {
    return MetricValue(HttpGet(MetricsPort(i), "/metrics"), "lockbox_grant_view_ready") == 1;
  };
  v1::Grant kept = Granted();
  v1::Grant ended = Granted();
  // Every replica's pool holds a few open connections before the database
  // stops accepting new ones (the checks below read through them).
  std::vector<std::thread> warm;
  for (int t = 0; t < 4; ++t) {
    warm.emplace_back([] {
      for (int i : {0, 1}) {
        v1::ListAccessRequestsRequest l;
        l.set_parent("tenants/viewed");
        for (int n = 0; n < 5; ++n) {
          (void)LibraryClient(*certs_, "bob", Replica(i).target())->ListAccessRequests(l);
        }
      }
    });
  }
  for (auto& t : warm) t.join();
  double lost[2] = {ListenLosses(0), ListenLosses(1)};
  // Cut every listening connection and keep them from coming back, then
  // end a grant while nobody listens: its notification reaches no replica.
  db_->AllowConnections(false);
  db_->ExecFromOutside("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" +
                       db_->name() + "' AND query LIKE 'LISTEN%'");
  bool noticed = Eventually([&] { return ListenLosses(0) > lost[0] && ListenLosses(1) > lost[1]; }, 10);
  if (!noticed) db_->AllowConnections(true);
  ASSERT_TRUE(noticed) << "the replicas did not notice the lost connections";
  v1::RevokeGrantRequest r;
  r.set_name(ended.name());
  auto revoked = LibraryClient(*certs_, "dana", b_->target())->RevokeGrant(r);
  // Meanwhile each replica answers from the database.
  for (int i : {0, 1}) {
    EXPECT_FALSE(ViewReady(i)) << "replica " << i;
    for (int n = 0; n < 5; ++n) {
      auto got = Check(i);
      EXPECT_TRUE(got.ok() && got->allowed() && got->grant().name() == kept.name())
          << "replica " << i << " check " << n << ": "
          << (got.ok() ? got->grant().name() : got.status().error_message());
    }
  }
  db_->AllowConnections(true);
  ASSERT_TRUE(revoked.ok()) << revoked.status().error_message();
  // Listening again, each view is rebuilt (without the ended grant, whose
  // notification it never had) before it answers.
  ASSERT_TRUE(Eventually([&] { return ViewReady(0) && ViewReady(1); }, 10));
  for (int i : {0, 1}) {
    for (int n = 0; n < 5; ++n) {
      auto got = Check(i);
      ASSERT_TRUE(got.ok()) << got.status().error_message();
      ASSERT_TRUE(got->allowed());
      EXPECT_EQ(got->grant().name(), kept.name()) << "replica " << i << " check " << n;
    }
  }
  r.set_name(kept.name());
  ASSERT_TRUE(LibraryClient(*certs_, "dana", b_->target())->RevokeGrant(r).ok());
  EXPECT_TRUE(Eventually(DeniedOnBoth, 5));
}

TEST_F(GrantViewTest, ViewOffReadsTheDatabaseAndAgrees) {
  ServerProcess plain(*certs_, db_->url(), Id("operator/admin"), {"--grant-view=false"});
  ASSERT_TRUE(plain.WaitReady("admin"));
  v1::Grant grant = Granted();
  v1::CheckAccessRequest c;
  c.set_principal(Id("operator/alice"));
  c.set_environment(kEnv);
  auto got = LibraryClient(*certs_, "enforcer", plain.target())->CheckAccess(c);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->allowed());
  EXPECT_EQ(got->grant().name(), grant.name());
}

}  // namespace
}  // namespace lockbox::testing
