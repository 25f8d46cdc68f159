// Quorum over the wire (SPEC section 10): two lockboxd replicas on one real
// PostgreSQL, every caller proven by a real certificate. A tenant with an
// internal quorum of 2 and a customer quorum of 3; at each stage, racing
// approvals from distinct people spread over both replicas count exactly
// the quorum, write exactly that many approve events, and every other call
// is refused with FAILED_PRECONDITION (the stage moved on, the request is no
// longer pending, or the person has already approved).
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
constexpr char kTenant[] = "quorate";
constexpr int kInternalQuorum = 2;
constexpr int kCustomerQuorum = 3;
constexpr int kReviewers = 6;
constexpr int kAdmins = 20;

std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

class QuorumIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::make_unique<TestDatabase>();
    certs_ = std::make_unique<Certificates>(kTd);
    certs_->Make("alice", "operator/alice");
    for (int i = 0; i < kReviewers; ++i) {
      certs_->Make(Reviewer(i), "operator/" + Reviewer(i));
    }
    certs_->Make("first-admin", std::string("tenant/") + kTenant + "/user/first");
    for (int i = 0; i < kAdmins; ++i) {
      certs_->Make(Admin(i), std::string("tenant/") + kTenant + "/user/" + Admin(i));
    }
    for (int i = 0; i < 2; ++i) {
      replicas_.push_back(
          std::make_unique<ServerProcess>(*certs_, db_->url(), Id("operator/admin")));
    }
    for (auto& r : replicas_) ASSERT_TRUE(r->WaitReady("admin")) << "lockboxd did not start";

    Client admin = As("admin", 0);
    Bind(admin, Id("operator/alice"), "operator.engineer", "");
    for (int i = 0; i < kReviewers; ++i) {
      Bind(admin, Id("operator/" + Reviewer(i)), "operator.reviewer", "");
    }
    v1::CreateTenantRequest ct = TenantRequest(*certs_, kTenant, "first", "first@example.com");
    v1::Tenant t;
    grpc::Status made = admin.policy->CreateTenant(Context().get(), ct, &t);
    ASSERT_TRUE(made.ok()) << made.error_message();
    for (auto& r : replicas_) ASSERT_TRUE(r->WaitReady("first-admin", 15));
    v1::CreateEnvironmentRequest ce;
    ce.set_parent(std::string("tenants/") + kTenant);
    ce.set_environment_id("prod");
    auto* sql = ce.mutable_environment()->add_data_sources();
    sql->set_id("sql");
    sql->set_kind("sql_database");
    sql->set_lockbox_supported(true);
    v1::Environment env;
    grpc::Status s = admin.policy->CreateEnvironment(Context().get(), ce, &env);
    ASSERT_TRUE(s.ok()) << s.error_message();

    Client first = As("first-admin", 1);
    for (int i = 0; i < kAdmins; ++i) {
      Bind(first, Id(std::string("tenant/") + kTenant + "/user/" + Admin(i)), "tenant.admin",
           std::string("tenants/") + kTenant);
    }
    v1::UpdateLockboxPolicyRequest up;
    up.mutable_lockbox_policy()->set_name(std::string("tenants/") + kTenant + "/lockboxPolicy");
    up.mutable_lockbox_policy()->set_enabled(true);
    up.mutable_lockbox_policy()->set_internal_approvals(kInternalQuorum);
    up.mutable_lockbox_policy()->set_customer_approvals(kCustomerQuorum);
    for (const char* path : {"enabled", "internal_approvals", "customer_approvals"}) {
      up.mutable_update_mask()->add_paths(path);
    }
    v1::LockboxPolicy p;
    s = first.policy->UpdateLockboxPolicy(Context().get(), up, &p);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(p.customer_approvals(), kCustomerQuorum);
  }

  static std::string Reviewer(int i) { return "reviewer" + std::to_string(i); }
  static std::string Admin(int i) { return "admin" + std::to_string(i); }

  Client As(const std::string& who, int replica) {
    return Client(MtlsChannel(*certs_, who, replicas_[replica % 2]->target()));
  }

  static void Bind(Client& as, const std::string& principal, const std::string& role,
                   const std::string& tenant) {
    v1::CreateRoleBindingRequest req;
    req.mutable_role_binding()->set_principal(principal);
    req.mutable_role_binding()->set_role(role);
    req.mutable_role_binding()->set_tenant(tenant);
    v1::RoleBinding out;
    grpc::Status s = as.policy->CreateRoleBinding(Context().get(), req, &out);
    ASSERT_TRUE(s.ok()) << principal << " " << role << ": " << s.error_message();
  }

  // `calls` approvals of `name` at once, the i-th by people[i % size] through
  // replica i % 2: how many succeeded, and the refusals by reason.
  struct Race {
    int ok = 0;
    std::map<std::string, int> refused;  // "<code>/<reason>" -> count
  };
  Race Approvals(const std::string& name, const std::vector<std::string>& people, int calls) {
    // Channels first, so that the calls themselves start together.
    std::vector<Client> clients;
    for (int i = 0; i < calls; ++i) clients.push_back(As(people[i % people.size()], i));
    Race race;
    std::mutex mu;
    std::vector<std::thread> threads;
    for (int i = 0; i < calls; ++i) {
      threads.emplace_back([&, i] {
        v1::ApproveAccessRequestRequest req;
        req.set_name(name);
        v1::AccessRequest out;
        grpc::Status s = clients[i].requests->ApproveAccessRequest(Context().get(), req, &out);
        std::lock_guard<std::mutex> lock(mu);
        if (s.ok()) {
          ++race.ok;
        } else {
          ++race.refused[std::to_string(s.error_code()) + "/" + ErrorInfoOf(s).reason()];
        }
      });
    }
    for (auto& t : threads) t.join();
    return race;
  }

  v1::AccessRequest Get(const std::string& name, int replica) {
    v1::GetAccessRequestRequest req;
    req.set_name(name);
    v1::AccessRequest out;
    grpc::Status s =
        As("first-admin", replica).requests->GetAccessRequest(Context().get(), req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  std::vector<v1::AuditEvent> Approves(const std::string& name) {
    v1::ListAuditEventsRequest req;
    req.set_parent(std::string("tenants/") + kTenant);
    req.set_filter("access_request = \"" + name + "\" AND action = access_request.approve");
    req.set_page_size(1000);
    v1::ListAuditEventsResponse out;
    grpc::Status s = As("admin", 0).audit->ListAuditEvents(Context().get(), req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {out.audit_events().begin(), out.audit_events().end()};
  }

  static void ExpectOnlyStageRefusals(const Race& race, int calls) {
    const std::string precondition = std::to_string(grpc::StatusCode::FAILED_PRECONDITION);
    int refused = 0;
    for (const auto& [why, n] : race.refused) {
      refused += n;
      EXPECT_TRUE(why == precondition + "/STATE_TRANSITION_NOT_ALLOWED" ||
                  why == precondition + "/ALREADY_APPROVED")
          << n << " refused with " << why;
    }
    EXPECT_EQ(race.ok + refused, calls);
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<Certificates> certs_;
  std::vector<std::unique_ptr<ServerProcess>> replicas_;
};

TEST_F(QuorumIntegrationTest, RacingApprovalsOnTwoReplicasCountEachStagesQuorumExactly) {
  v1::CreateAccessRequestRequest ask;
  ask.set_parent(std::string("tenants/") + kTenant);
  auto* a = ask.mutable_access_request();
  a->set_environment(std::string("tenants/") + kTenant + "/environments/prod");
  a->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
  a->set_justification("the nightly close is stuck");
  v1::AccessRequest r;
  grpc::Status s = As("alice", 0).requests->CreateAccessRequest(Context().get(), ask, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(r.approvals_needed(), kInternalQuorum);

  // The internal stage: 18 calls from 6 reviewers, each person three times.
  std::vector<std::string> reviewers;
  for (int i = 0; i < kReviewers; ++i) reviewers.push_back(Reviewer(i));
  Race internal = Approvals(r.name(), reviewers, 3 * kReviewers);
  EXPECT_EQ(internal.ok, kInternalQuorum);
  ExpectOnlyStageRefusals(internal, 3 * kReviewers);
  v1::AccessRequest waiting = Get(r.name(), 1);
  EXPECT_EQ(waiting.state(), v1::AccessRequest::PENDING);
  EXPECT_EQ(waiting.stage(), v1::AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(waiting.approvals_needed(), kCustomerQuorum);

  // The customer's stage: 20 calls from 20 distinct admins.
  std::vector<std::string> admins;
  for (int i = 0; i < kAdmins; ++i) admins.push_back(Admin(i));
  Race customer = Approvals(r.name(), admins, kAdmins);
  EXPECT_EQ(customer.ok, kCustomerQuorum);
  ExpectOnlyStageRefusals(customer, kAdmins);

  for (int replica = 0; replica < 2; ++replica) {
    v1::AccessRequest done = Get(r.name(), replica);
    EXPECT_EQ(done.state(), v1::AccessRequest::APPROVED);
    EXPECT_EQ(done.approvals_needed(), 0);
    ASSERT_EQ(done.decisions_size(), kInternalQuorum + kCustomerQuorum);
    std::set<std::string> internal_people, customer_people;
    for (const v1::Decision& d : done.decisions()) {
      EXPECT_EQ(d.verdict(), v1::Decision::APPROVE);
      (d.stage() == v1::AccessRequest::INTERNAL_REVIEW ? internal_people : customer_people)
          .insert(d.reviewer());
    }
    EXPECT_EQ(internal_people.size(), static_cast<size_t>(kInternalQuorum));
    EXPECT_EQ(customer_people.size(), static_cast<size_t>(kCustomerQuorum));
  }

  std::vector<v1::AuditEvent> events = Approves(r.name());
  ASSERT_EQ(events.size(), static_cast<size_t>(kInternalQuorum + kCustomerQuorum));
  int internal_events = 0, grants = 0;
  for (const auto& e : events) {
    internal_events += e.details().at("stage") == "INTERNAL_REVIEW";
    grants += e.details().count("grant");
  }
  EXPECT_EQ(internal_events, kInternalQuorum);
  EXPECT_EQ(grants, 1) << "one grant, made by the approval that completed the quorum";
  EXPECT_EQ(events.back().details().at("approvals_counted"), std::to_string(kCustomerQuorum));
}

}  // namespace
}  // namespace lockbox::testing
