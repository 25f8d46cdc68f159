// Blocking access across replicas: liblockbox's RequestAccess waiting on one
// lockboxd while the decision lands on another, through restarts.
#include <gtest/gtest.h>
#include <lockbox/client.h>

#include <future>
#include <mutex>
#include <thread>
#include <tuple>

#include "absl/cleanup/cleanup.h"
#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

class WatchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    for (const char* who : {"alice", "bob", "mallory"}) certs_->Make(who, std::string("operator/") + who);
    certs_->Make("dana", "tenant/watched/user/dana");
    // One engineer holds a thousand watches in AThousandWatchersAreAllReleased:
    // the hub's scale is tested here, the per-caller cap in serving_integration.
    a_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), Flags());
    b_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), Flags());
    ASSERT_TRUE(a_->WaitReady("admin"));
    ASSERT_TRUE(b_->WaitReady("admin"));
    auto admin = Connect("admin", b_->target());
    auto bind = [&](const std::string& who, const std::string& role, const std::string& tenant) {
      v1::CreateRoleBindingRequest r;
      r.mutable_role_binding()->set_principal(who);
      r.mutable_role_binding()->set_role(role);
      r.mutable_role_binding()->set_tenant(tenant);
      ASSERT_TRUE(admin->CreateRoleBinding(r).ok()) << who;
    };
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, "watched", "dana")).ok());
    ASSERT_TRUE(a_->WaitReady("dana", 15));
    ASSERT_TRUE(b_->WaitReady("dana", 15));
    v1::CreateEnvironmentRequest e;
    e.set_parent("tenants/watched");
    e.set_environment_id("prod");
    ASSERT_TRUE(admin->CreateEnvironment(e).ok());
    bind(Id("operator/alice"), "operator.engineer", "");
    bind(Id("operator/mallory"), "operator.engineer", "");
    bind(Id("operator/bob"), "operator.reviewer", "");
    v1::UpdateLockboxPolicyRequest p;
    p.mutable_lockbox_policy()->set_name("tenants/watched/lockboxPolicy");
    p.mutable_lockbox_policy()->set_enabled(true);
    p.mutable_update_mask()->add_paths("enabled");
    ASSERT_TRUE(Connect("dana", b_->target())->UpdateLockboxPolicy(p).ok());
  }
  static void TearDownTestSuite() {
    delete a_;
    delete b_;
    delete certs_;
    delete db_;
  }

  static std::unique_ptr<lockbox::Client> Connect(const std::string& who, const std::string& target) {
    return LibraryClient(*certs_, who, target);
  }

  static v1::CreateAccessRequestRequest Ask() {
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/watched");
    r.mutable_access_request()->set_environment("tenants/watched/environments/prod");
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_justification("investigating a failed migration");
    return r;
  }

  // Waits until alice's newest pending request exists, and returns its name.
  static std::string NewestPending(lockbox::Client& reviewer, v1::AccessRequest::Stage stage) {
    std::string name;
    Eventually(
        [&] {
          v1::ListAccessRequestsRequest l;
          l.set_parent("tenants/watched");
          l.set_filter(std::string("state = PENDING AND stage = ") +
                       v1::AccessRequest::Stage_Name(stage));
          auto got = reviewer.ListAccessRequests(l);
          if (got.ok() && got->access_requests_size() > 0) name = got->access_requests(0).name();
          return !name.empty();
        },
        10);
    return name;
  }

  static void Decide(lockbox::Client& c, const std::string& name, bool approve) {
    if (approve) {
      v1::ApproveAccessRequestRequest r;
      r.set_name(name);
      auto res = c.ApproveAccessRequest(r);
      ASSERT_TRUE(res.ok()) << res.status().error_message();
    } else {
      v1::DenyAccessRequestRequest r;
      r.set_name(name);
      r.set_comment("not today");
      auto res = c.DenyAccessRequest(r);
      ASSERT_TRUE(res.ok()) << res.status().error_message();
    }
  }

  static TestDatabase* db_;
  static Certificates* certs_;
  static std::vector<std::string> Flags() { return {"--max-streams-per-caller=1100"}; }
  static ServerProcess* a_;
  static ServerProcess* b_;
};

TestDatabase* WatchTest::db_ = nullptr;
Certificates* WatchTest::certs_ = nullptr;
ServerProcess* WatchTest::a_ = nullptr;
ServerProcess* WatchTest::b_ = nullptr;

TEST_F(WatchTest, ApprovalOnReplicaBReleasesTheWaiterOnReplicaA) {
  auto alice = Connect("alice", a_->target());
  std::vector<v1::AccessRequest> seen;
  std::mutex mu;
  auto waiting = alice->RequestAccessAsync(Ask(), std::chrono::seconds(60),
                                           [&](const v1::AccessRequest& r) {
                                             std::lock_guard<std::mutex> l(mu);
                                             seen.push_back(r);
                                           });
  auto bob = Connect("bob", b_->target());
  auto dana = Connect("dana", b_->target());
  std::string name = NewestPending(*bob, v1::AccessRequest::INTERNAL_REVIEW);
  ASSERT_FALSE(name.empty());
  Decide(*bob, name, true);
  ASSERT_EQ(NewestPending(*dana, v1::AccessRequest::CUSTOMER_REVIEW), name);
  Decide(*dana, name, true);
  Result<v1::Grant> grant = waiting.get();
  ASSERT_TRUE(grant.ok()) << grant.status().error_message();
  EXPECT_EQ(grant->access_request(), name);
  EXPECT_EQ(grant->state(), v1::Grant::ACTIVE);
  std::lock_guard<std::mutex> l(mu);
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front().state(), v1::AccessRequest::PENDING);
  EXPECT_EQ(seen.back().state(), v1::AccessRequest::APPROVED);
}

TEST_F(WatchTest, DenialOnReplicaBEndsTheWaitWithReason) {
  auto alice = Connect("alice", a_->target());
  auto waiting = alice->RequestAccessAsync(Ask(), std::chrono::seconds(60));
  auto bob = Connect("bob", b_->target());
  std::string name = NewestPending(*bob, v1::AccessRequest::INTERNAL_REVIEW);
  ASSERT_FALSE(name.empty());
  Decide(*bob, name, false);
  Result<v1::Grant> grant = waiting.get();
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(grant.reason(), kRequestDenied);
  EXPECT_NE(grant.status().error_message().find("not today"), std::string::npos);
}

TEST_F(WatchTest, WaiterSurvivesItsReplicaRestartingAndMissingTheDecision) {
  auto alice = Connect("alice", a_->target());
  auto waiting = alice->RequestAccessAsync(Ask(), std::chrono::seconds(90));
  auto bob = Connect("bob", b_->target());
  auto dana = Connect("dana", b_->target());
  std::string name = NewestPending(*bob, v1::AccessRequest::INTERNAL_REVIEW);
  ASSERT_FALSE(name.empty());
  int port = a_->port();
  a_->Kill();  // Replica A dies while alice waits on it.
  Decide(*bob, name, true);
  Decide(*dana, name, true);  // Decided while A is down: nobody tells A.
  // A grace period, not a wait for something: with A down nothing can
  // release the waiter.
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  delete a_;
  a_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), Flags(), port);
  ASSERT_TRUE(a_->WaitReady("admin"));
  Result<v1::Grant> grant = waiting.get();
  ASSERT_TRUE(grant.ok()) << grant.status().error_message();
  EXPECT_EQ(grant->access_request(), name);
}

TEST_F(WatchTest, WaiterMovesToAnotherReplica) {
  // One client, both replicas as its target: when A goes away for good the
  // wait carries on through B.
  ServerProcess c(*certs_, db_->url(), Id("operator/admin"));
  ASSERT_TRUE(c.WaitReady("admin"));
  auto alice = Connect("alice", "ipv4:127.0.0.1:" + std::to_string(c.port()) + ",127.0.0.1:" +
                                    std::to_string(b_->port()));
  auto waiting = alice->RequestAccessAsync(Ask(), std::chrono::seconds(60));
  auto bob = Connect("bob", b_->target());
  auto dana = Connect("dana", b_->target());
  std::string name = NewestPending(*bob, v1::AccessRequest::INTERNAL_REVIEW);
  ASSERT_FALSE(name.empty());
  c.Stop();  // Drains: the watch is told to reconnect.
  Decide(*bob, name, true);
  Decide(*dana, name, true);
  Result<v1::Grant> grant = waiting.get();
  ASSERT_TRUE(grant.ok()) << grant.status().error_message();
}

TEST_F(WatchTest, LostNotificationConnectionIsReReadAfterReconnect) {
  // No periodic re-check to fall back on: only the re-read after the
  // listener reconnects can deliver a decision made while it was away.
  ServerProcess d(*certs_, db_->url(), Id("operator/admin"), {"--watch-recheck-seconds=3600"});
  ASSERT_TRUE(d.WaitReady("admin"));
  auto alice = Connect("alice", d.target());
  auto waiting = alice->RequestAccessAsync(Ask(), std::chrono::seconds(60));
  auto bob = Connect("bob", b_->target());
  auto dana = Connect("dana", b_->target());
  std::string name = NewestPending(*bob, v1::AccessRequest::INTERNAL_REVIEW);
  ASSERT_FALSE(name.empty());
  // B's pool holds a few open connections before the database stops
  // accepting new ones: B decides through them while nobody listens.
  std::vector<std::thread> warm;
  for (int t = 0; t < 4; ++t) {
    warm.emplace_back([] {
      v1::ListAccessRequestsRequest l;
      l.set_parent("tenants/watched");
      for (int n = 0; n < 5; ++n) (void)Connect("bob", b_->target())->ListAccessRequests(l);
    });
  }
  for (auto& t : warm) t.join();
  auto losses = [&] {
    return MetricValue(HttpGet(d.metrics_port(), "/metrics"), "lockbox_database_reconnects_total",
                       {{"connection", "listen_requests"}});
  };
  const std::string listening =
      "FROM pg_stat_activity WHERE datname = '" + db_->name() + "' AND query LIKE 'LISTEN%'";
  double lost_before = losses();
  // Kill every listening connection in the cluster's database (A's, B's and
  // D's), and keep them from coming back until the decision is made.
  db_->AllowConnections(false);
  absl::Cleanup allow = [&] { db_->AllowConnections(true); };
  int terminated = std::stoi(db_->QueryFromOutside(
      "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) " + listening));
  EXPECT_GE(terminated, 2) << "D's two listeners at least";
  ASSERT_TRUE(Eventually([&] { return losses() > lost_before; }, 10))
      << "D did not notice its lost listener";
  Decide(*bob, name, true);
  Decide(*dana, name, true);
  std::move(allow).Invoke();
  // Every listener is back (the replicas reconnected)...
  EXPECT_TRUE(Eventually(
      [&] {
        return std::stoi(db_->QueryFromOutside("SELECT count(*) " + listening)) >= terminated;
      },
      20))
      << "the replicas did not listen again";
  // ...and D's re-read delivers what it missed.
  ASSERT_EQ(waiting.wait_for(std::chrono::seconds(30)), std::future_status::ready)
      << "the decision made while D was not listening never reached its watcher";
  Result<v1::Grant> grant = waiting.get();
  ASSERT_TRUE(grant.ok()) << grant.status().error_message();
  EXPECT_EQ(grant->access_request(), name);
}

TEST_F(WatchTest, WatchIsReadAuthorised) {
  auto alice = Connect("alice", a_->target());
  auto created = alice->CreateAccessRequest(Ask());
  ASSERT_TRUE(created.ok());
  auto mallory = Connect("mallory", a_->target());
  v1::WatchAccessRequestRequest w;
  w.set_name(created->name());
  auto r = mallory->WatchAccessRequest(w, std::chrono::seconds(5));
  EXPECT_EQ(r.status().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // The requester's own watch ends at its deadline while nothing happens.
  auto mine = alice->WatchAccessRequest(w, std::chrono::seconds(1));
  EXPECT_EQ(mine.status().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  v1::CancelAccessRequestRequest cancel;
  cancel.set_name(created->name());
  ASSERT_TRUE(alice->CancelAccessRequest(cancel).ok());
  auto waited = alice->WaitForDecision(created->name(), std::chrono::seconds(5));
  EXPECT_EQ(waited.reason(), kRequestCancelled);
}

TEST_F(WatchTest, ExpiryEndsTheWatchWithoutAnyWrite) {
  // The shortest TTL a policy allows is one minute; the watch must end then
  // by itself, with no writer involved: a database of its own, on a replica
  // whose only sweep is its first, at start (before the request exists).
  // The minute passes on the test clock: moved to five seconds before the
  // expiry, the hub (re-reading every second) sets its timer for it.
  TestDatabase quiet;
  char tmpl[] = "/tmp/lockbox-watch-clock.XXXXXX";
  const std::string clock_file = std::string(mkdtemp(tmpl)) + "/offset";
  ServerProcess server(*certs_, quiet.url(), Id("operator/admin"),
                       {"--sweep-interval-ms=3600000", "--watch-recheck-seconds=1",
                        "--testing-clock-offset-file=" + clock_file});
  ASSERT_TRUE(server.WaitReady("admin"));
  auto admin = Connect("admin", server.target());
  certs_->Make("sam", "tenant/shortlived/user/sam");
  ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, "shortlived", "sam")).ok());
  ASSERT_TRUE(server.WaitReady("sam", 15));
  v1::CreateEnvironmentRequest e;
  e.set_parent("tenants/shortlived");
  e.set_environment_id("prod");
  ASSERT_TRUE(admin->CreateEnvironment(e).ok());
  for (const auto& [who, role, tenant] : {std::tuple<std::string, std::string, std::string>{
           "operator/alice", "operator.engineer", ""}}) {
    v1::CreateRoleBindingRequest rb;
    rb.mutable_role_binding()->set_principal(Id(who));
    rb.mutable_role_binding()->set_role(role);
    rb.mutable_role_binding()->set_tenant(tenant);
    ASSERT_TRUE(admin->CreateRoleBinding(rb).ok()) << who;
  }
  v1::UpdateLockboxPolicyRequest p;
  p.mutable_lockbox_policy()->set_name("tenants/shortlived/lockboxPolicy");
  p.mutable_lockbox_policy()->mutable_request_ttl()->set_seconds(60);
  p.mutable_update_mask()->add_paths("request_ttl");
  ASSERT_TRUE(Connect("sam", server.target())->UpdateLockboxPolicy(p).ok());
  auto ask = Ask();
  ask.set_parent("tenants/shortlived");
  ask.mutable_access_request()->set_environment("tenants/shortlived/environments/prod");
  // What the database holds once the request is created, to compare with
  // what it holds when the watch has ended.
  auto written = [&] {
    return quiet.Query("SELECT row_to_json(r)::text FROM access_requests r") + " | audit " +
           quiet.Query("SELECT count(*) FROM audit_events") + " | outbox " +
           quiet.Query("SELECT count(*) FROM outbox");
  };
  std::promise<std::string> created;
  std::once_flag first;
  auto alice = Connect("alice", server.target());
  auto waiting =
      alice->RequestAccessAsync(ask, std::chrono::seconds(120), [&](const v1::AccessRequest&) {
        std::call_once(first, [&] { created.set_value(written()); });
      });
  auto at_creation = created.get_future();
  ASSERT_EQ(at_creation.wait_for(std::chrono::seconds(30)), std::future_status::ready)
      << "the request was not created";
  ASSERT_TRUE(MoveClock(clock_file, 55, {server.pid()}));
  EXPECT_NE(waiting.wait_for(std::chrono::seconds(0)), std::future_status::ready)
      << "the watch ended before its request expired";
  auto grant = waiting.get();
  EXPECT_EQ(grant.reason(), kRequestExpired) << grant.status().error_message();
  EXPECT_EQ(written(), at_creation.get()) << "something recorded the expiry";
  EXPECT_EQ(quiet.Query("SELECT state FROM access_requests"),
            std::to_string(v1::AccessRequest::PENDING))
      << "the stored state is still the one written at creation";
}

TEST_F(WatchTest, AThousandWatchersAreAllReleased) {
  constexpr int kWatchers = 1000;
  // Internal review only: an unprotected tenant.
  auto admin = Connect("admin", b_->target());
  ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, "crowd")).ok());
  v1::CreateEnvironmentRequest e;
  e.set_parent("tenants/crowd");
  e.set_environment_id("prod");
  ASSERT_TRUE(admin->CreateEnvironment(e).ok());
  auto alice = Connect("alice", a_->target());
  auto bob = Connect("bob", b_->target());
  std::vector<std::string> names;
  for (int i = 0; i < kWatchers; ++i) {
    auto ask = Ask();
    ask.set_parent("tenants/crowd");
    ask.mutable_access_request()->set_environment("tenants/crowd/environments/prod");
    auto r = alice->CreateAccessRequest(ask);
    ASSERT_TRUE(r.ok()) << r.status().error_message();
    names.push_back(r->name());
  }
  std::vector<std::future<Result<v1::Grant>>> waiting;
  for (const auto& n : names) {
    waiting.push_back(std::async(std::launch::async, [&alice, n] {
      return alice->WaitForDecision(n, std::chrono::seconds(240));
    }));
  }
  for (const auto& n : names) Decide(*bob, n, true);
  int granted = 0;
  for (auto& w : waiting) {
    auto g = w.get();
    if (g.ok()) ++granted;
  }
  EXPECT_EQ(granted, kWatchers);
}

}  // namespace
}  // namespace lockbox::testing
