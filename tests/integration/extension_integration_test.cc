// Extensions over the wire (SPEC section 10): two lockboxd replicas on one
// database, liblockbox's ExtendGrant blocking on replica A while both
// stages approve on replica B, the grant's new end honoured by CheckAccess
// on both replicas on a moved clock, and the refusals with their reasons.
#include <gtest/gtest.h>
#include <lockbox/client.h>

#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
constexpr char kEnv[] = "tenants/ext/environments/prod";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

class ExtensionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    char tmpl[] = "/tmp/lockbox-clock.XXXXXX";
    clock_file_ = new std::string(std::string(mkdtemp(tmpl)) + "/offset");
    for (const char* who : {"alice", "bob", "mallory"}) {
      certs_->Make(who, std::string("operator/") + who);
    }
    certs_->Make("dana", "tenant/ext/user/dana");
    certs_->Make("enforcer", "service/enforcer");
    std::vector<std::string> flags = {"--testing-clock-offset-file=" + *clock_file_};
    a_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), flags);
    b_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), flags);
    ASSERT_TRUE(a_->WaitReady("admin"));
    ASSERT_TRUE(b_->WaitReady("admin"));
    SetOffset(0);
    auto admin = LibraryClient(*certs_, "admin", b_->target());
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, "ext", "dana")).ok());
    ASSERT_TRUE(a_->WaitReady("dana", 15));
    ASSERT_TRUE(b_->WaitReady("dana", 15));
    v1::CreateEnvironmentRequest e;
    e.set_parent("tenants/ext");
    e.set_environment_id("prod");
    ASSERT_TRUE(admin->CreateEnvironment(e).ok());
    auto bind = [&](const std::string& who, const std::string& role) {
      v1::CreateRoleBindingRequest r;
      r.mutable_role_binding()->set_principal(who);
      r.mutable_role_binding()->set_role(role);
      ASSERT_TRUE(admin->CreateRoleBinding(r).ok()) << who;
    };
    bind(Id("operator/alice"), "operator.engineer");
    bind(Id("operator/mallory"), "operator.engineer");
    bind(Id("operator/bob"), "operator.reviewer");
    bind(Id("service/enforcer"), "service.enforcer");
    // Protected: every request, extensions too, waits for the customer.
    v1::UpdateLockboxPolicyRequest p;
    p.mutable_lockbox_policy()->set_name("tenants/ext/lockboxPolicy");
    p.mutable_lockbox_policy()->set_enabled(true);
    p.mutable_update_mask()->add_paths("enabled");
    auto updated = Connect("dana", b_->target())->UpdateLockboxPolicy(p);
    ASSERT_TRUE(updated.ok()) << updated.status().error_message();
  }
  static void TearDownTestSuite() {
    delete a_;
    delete b_;
    delete certs_;
    delete db_;
    delete clock_file_;
  }

  static std::unique_ptr<lockbox::Client> Connect(const std::string& who,
                                                  const std::string& target) {
    return LibraryClient(*certs_, who, target);
  }
  static void SetOffset(double seconds) {
    MoveClock(*clock_file_, seconds, {a_->pid(), b_->pid()});
  }

  // Waits until a request is pending in `stage`, and returns its name (the
  // suite's cases each leave none pending behind).
  static std::string NewestPending(lockbox::Client& reviewer, v1::AccessRequest::Stage stage) {
    std::string name;
    Eventually(
        [&] {
          v1::ListAccessRequestsRequest l;
          l.set_parent("tenants/ext");
          l.set_filter(std::string("state = PENDING AND stage = ") +
                       v1::AccessRequest::Stage_Name(stage));
          auto got = reviewer.ListAccessRequests(l);
          if (got.ok() && got->access_requests_size() > 0) name = got->access_requests(0).name();
          return !name.empty();
        },
        10);
    return name;
  }
  static void Approve(lockbox::Client& c, const std::string& name) {
    v1::ApproveAccessRequestRequest r;
    r.set_name(name);
    auto res = c.ApproveAccessRequest(r);
    ASSERT_TRUE(res.ok()) << res.status().error_message();
  }
  // Both stages approve `name` on replica B.
  static void ApproveOnB(const std::string& name) {
    auto bob = Connect("bob", b_->target());
    auto dana = Connect("dana", b_->target());
    Approve(*bob, name);
    Approve(*dana, name);
  }

  // A grant of alice's, asked on A and approved on B.
  static v1::Grant Granted() {
    auto alice = Connect("alice", a_->target());
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/ext");
    r.mutable_access_request()->set_environment(kEnv);
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_justification("a failed migration");
    auto created = alice->CreateAccessRequest(r);
    EXPECT_TRUE(created.ok()) << created.status().error_message();
    if (!created.ok()) return v1::Grant();
    ApproveOnB(created->name());
    v1::GetAccessRequestRequest get;
    get.set_name(created->name());
    auto approved = alice->GetAccessRequest(get);
    EXPECT_TRUE(approved.ok() && !approved->grant().empty());
    v1::GetGrantRequest g;
    g.set_name(approved->grant());
    auto grant = alice->GetGrant(g);
    EXPECT_TRUE(grant.ok()) << grant.status().error_message();
    return grant.ok() ? *grant : v1::Grant();
  }

  static v1::ExtendGrantRequest More(const std::string& grant, int hours) {
    v1::ExtendGrantRequest r;
    r.set_name(grant);
    r.mutable_access_duration()->set_seconds(hours * 3600);
    r.set_justification("the migration needs longer");
    return r;
  }

  static bool Allowed(ServerProcess& replica) {
    v1::CheckAccessRequest r;
    r.set_principal(Id("operator/alice"));
    r.set_environment(kEnv);
    auto got = Connect("enforcer", replica.target())->CheckAccess(r);
    EXPECT_TRUE(got.ok()) << got.status().error_message();
    return got.ok() && got->allowed();
  }

  static TestDatabase* db_;
  static Certificates* certs_;
  static std::string* clock_file_;
  static ServerProcess* a_;
  static ServerProcess* b_;
};

TestDatabase* ExtensionTest::db_ = nullptr;
Certificates* ExtensionTest::certs_ = nullptr;
std::string* ExtensionTest::clock_file_ = nullptr;
ServerProcess* ExtensionTest::a_ = nullptr;
ServerProcess* ExtensionTest::b_ = nullptr;

TEST_F(ExtensionTest, ExtendGrantWaitsOnReplicaAWhileBothStagesApproveOnReplicaB) {
  v1::Grant grant = Granted();
  ASSERT_FALSE(grant.name().empty());
  const int64_t old_end = grant.expire_time().seconds();
  auto alice = Connect("alice", a_->target());
  std::vector<v1::AccessRequest> seen;
  std::mutex mu;
  auto waiting = alice->ExtendGrantAsync(More(grant.name(), 2), std::chrono::seconds(60),
                                         [&](const v1::AccessRequest& r) {
                                           std::lock_guard<std::mutex> l(mu);
                                           seen.push_back(r);
                                         });
  auto bob = Connect("bob", b_->target());
  auto dana = Connect("dana", b_->target());
  std::string name = NewestPending(*bob, v1::AccessRequest::INTERNAL_REVIEW);
  ASSERT_FALSE(name.empty());
  Approve(*bob, name);
  ASSERT_EQ(NewestPending(*dana, v1::AccessRequest::CUSTOMER_REVIEW), name);
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
      << "still waiting for the customer";
  Approve(*dana, name);
  Result<v1::Grant> extended = waiting.get();
  ASSERT_TRUE(extended.ok()) << extended.status().error_message();
  EXPECT_EQ(extended->name(), grant.name());
  EXPECT_EQ(extended->expire_time().seconds(), old_end + 2 * 3600);
  ASSERT_EQ(extended->extensions_size(), 1);
  EXPECT_EQ(extended->extensions(0), name);
  {
    std::lock_guard<std::mutex> l(mu);
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.front().extends_grant(), grant.name());
    EXPECT_EQ(seen.back().state(), v1::AccessRequest::APPROVED);
  }

  // Both replicas allow after the old end and stop at the new one (each
  // replica's view re-reads the grant when its end moves).
  const double now = static_cast<double>(absl::ToUnixSeconds(absl::Now()));
  SetOffset(static_cast<double>(old_end) - now + 60);
  EXPECT_TRUE(Eventually([] { return Allowed(*a_) && Allowed(*b_); }, 10));
  SetOffset(static_cast<double>(old_end + 2 * 3600) - now + 1);
  EXPECT_TRUE(Eventually([] { return !Allowed(*a_) && !Allowed(*b_); }, 10));
  SetOffset(0);
}

TEST_F(ExtensionTest, TheRefusalsCarryTheirReasonsOverTheWire) {
  v1::Grant grant = Granted();
  ASSERT_FALSE(grant.name().empty());
  auto alice = Connect("alice", a_->target());
  // Someone else's grant: refused before anything about it is told.
  auto mallory = Connect("mallory", b_->target());
  auto theirs = mallory->ExtendGrant(More(grant.name(), 1));
  EXPECT_EQ(theirs.status().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // The period is bounded by the policy's access duration (8 hours).
  auto too_long = alice->ExtendGrant(More(grant.name(), 9));
  EXPECT_EQ(too_long.status().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  auto first = alice->ExtendGrant(More(grant.name(), 1));
  ASSERT_TRUE(first.ok()) << first.status().error_message();
  EXPECT_EQ(first->extends_grant(), grant.name());
  auto pending = Connect("alice", b_->target())->ExtendGrant(More(grant.name(), 1));
  EXPECT_EQ(pending.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(pending.reason(), "EXTENSION_PENDING");
  ApproveOnB(first->name());
  // The default policy allows one extension.
  auto exhausted = alice->ExtendGrant(More(grant.name(), 1), std::chrono::seconds(10));
  EXPECT_EQ(exhausted.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(exhausted.reason(), "EXTENSIONS_EXHAUSTED");

  v1::ReleaseGrantRequest release;
  release.set_name(grant.name());
  ASSERT_TRUE(alice->ReleaseGrant(release).ok());
  auto ended = alice->ExtendGrant(More(grant.name(), 1));
  EXPECT_EQ(ended.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ended.reason(), "GRANT_NOT_EXTENSIBLE");
}

TEST_F(ExtensionTest, ADeniedExtensionEndsTheWaitWithRequestDenied) {
  v1::Grant grant = Granted();
  ASSERT_FALSE(grant.name().empty());
  auto alice = Connect("alice", a_->target());
  auto waiting = alice->ExtendGrantAsync(More(grant.name(), 1), std::chrono::seconds(60));
  auto bob = Connect("bob", b_->target());
  std::string name = NewestPending(*bob, v1::AccessRequest::INTERNAL_REVIEW);
  ASSERT_FALSE(name.empty());
  v1::DenyAccessRequestRequest deny;
  deny.set_name(name);
  deny.set_comment("finish inside the window");
  ASSERT_TRUE(bob->DenyAccessRequest(deny).ok());
  Result<v1::Grant> got = waiting.get();
  EXPECT_EQ(got.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(got.reason(), kRequestDenied);
  v1::GetGrantRequest g;
  g.set_name(grant.name());
  auto after = alice->GetGrant(g);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->expire_time().seconds(), grant.expire_time().seconds());
  EXPECT_EQ(after->extensions_size(), 0);
}

TEST_F(ExtensionTest, ReleasingTheGrantEndsAWaitingExtensionAsCancelled) {
  v1::Grant grant = Granted();
  ASSERT_FALSE(grant.name().empty());
  auto alice = Connect("alice", a_->target());
  auto waiting = alice->ExtendGrantAsync(More(grant.name(), 1), std::chrono::seconds(60));
  auto bob = Connect("bob", b_->target());
  ASSERT_FALSE(NewestPending(*bob, v1::AccessRequest::INTERNAL_REVIEW).empty());
  v1::ReleaseGrantRequest release;
  release.set_name(grant.name());
  ASSERT_TRUE(Connect("alice", b_->target())->ReleaseGrant(release).ok());
  Result<v1::Grant> got = waiting.get();
  EXPECT_EQ(got.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(got.reason(), kRequestCancelled);
}

TEST_F(ExtensionTest, RacingExtensionsOnBothReplicasMakeExactlyOne) {
  v1::Grant grant = Granted();
  ASSERT_FALSE(grant.name().empty());
  constexpr int kRacers = 10;
  std::vector<std::future<Result<v1::AccessRequest>>> racers;
  for (int i = 0; i < kRacers; ++i) {
    ServerProcess* replica = i % 2 == 0 ? a_ : b_;
    racers.push_back(std::async(std::launch::async, [replica, &grant] {
      return Connect("alice", replica->target())->ExtendGrant(More(grant.name(), 1));
    }));
  }
  int made = 0, pending = 0;
  std::string name;
  for (auto& r : racers) {
    Result<v1::AccessRequest> got = r.get();
    if (got.ok()) {
      ++made;
      name = got->name();
    } else if (got.reason() == "EXTENSION_PENDING") {
      ++pending;
    } else {
      ADD_FAILURE() << got.status().error_message();
    }
  }
  EXPECT_EQ(made, 1);
  EXPECT_EQ(pending, kRacers - 1);
  v1::ListAccessRequestsRequest l;
  l.set_parent("tenants/ext");
  l.set_filter("extends_grant = \"" + grant.name() + "\"");
  auto listed = Connect("bob", b_->target())->ListAccessRequests(l);
  ASSERT_TRUE(listed.ok()) << listed.status().error_message();
  ASSERT_EQ(listed->access_requests_size(), 1);
  EXPECT_EQ(listed->access_requests(0).name(), name);
  // Left decided, so the suite's other cases find none pending.
  v1::CancelAccessRequestRequest cancel;
  cancel.set_name(name);
  ASSERT_TRUE(Connect("alice", a_->target())->CancelAccessRequest(cancel).ok());
}

TEST_F(ExtensionTest, TheWaitForAnExtensionMovesToAnotherReplica) {
  v1::Grant grant = Granted();
  ASSERT_FALSE(grant.name().empty());
  // One client, a third replica and B as its target: when the third goes
  // away for good the wait carries on through B.
  ServerProcess c(*certs_, db_->url(), Id("operator/admin"),
                  {"--testing-clock-offset-file=" + *clock_file_});
  ASSERT_TRUE(c.WaitReady("admin"));
  auto alice = Connect("alice", "ipv4:127.0.0.1:" + std::to_string(c.port()) +
                                    ",127.0.0.1:" + std::to_string(b_->port()));
  auto waiting = alice->ExtendGrantAsync(More(grant.name(), 1), std::chrono::seconds(60));
  auto bob = Connect("bob", b_->target());
  std::string name = NewestPending(*bob, v1::AccessRequest::INTERNAL_REVIEW);
  ASSERT_FALSE(name.empty());
  c.Stop();  // Drains: the watch is told to reconnect.
  ApproveOnB(name);
  Result<v1::Grant> extended = waiting.get();
  ASSERT_TRUE(extended.ok()) << extended.status().error_message();
  EXPECT_EQ(extended->expire_time().seconds(), grant.expire_time().seconds() + 3600);
}

}  // namespace
}  // namespace lockbox::testing
