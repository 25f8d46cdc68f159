// Scheduled access over the wire (SPEC section 10): a request with a
// start_time, approved on one replica, makes a grant that starts by itself
// on a moved clock. Two lockboxd-testing replicas share the clock file: one
// second before the start CheckAccess refuses with GRANT_NOT_STARTED on
// both; one second after it allows on both, from each replica's grant view
// (its metrics count the answer), with nothing written at the start.
#include <gtest/gtest.h>
#include <lockbox/client.h>

#include <ctime>

#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
constexpr char kEnv[] = "tenants/windowed/environments/prod";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

class ScheduledTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lockbox-clock.XXXXXX";
    clock_file_ = std::string(mkdtemp(tmpl)) + "/offset";
    MoveClock(clock_file_, 0, {});
    for (const char* who : {"alice", "bob"}) certs_.Make(who, std::string("operator/") + who);
    certs_.Make("dana", "tenant/windowed/user/dana");
    certs_.Make("enforcer", "service/enforcer");
    // No sweep: nothing may be recorded at the start, and nothing is.
    std::vector<std::string> flags = {"--sweep-interval-ms=3600000",
                                      "--testing-clock-offset-file=" + clock_file_};
    for (auto& replica : replicas_) {
      replica = std::make_unique<ServerProcess>(certs_, db_.url(), Id("operator/admin"), flags);
    }
    for (auto& replica : replicas_) ASSERT_TRUE(replica->WaitReady("admin"));
    auto admin = LibraryClient(certs_, "admin", replicas_[1]->target());
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(certs_, "windowed", "dana")).ok());
    for (auto& replica : replicas_) ASSERT_TRUE(replica->WaitReady("dana", 15));
    v1::CreateEnvironmentRequest e;
    e.set_parent("tenants/windowed");
    e.set_environment_id("prod");
    ASSERT_TRUE(admin->CreateEnvironment(e).ok());
    for (const auto& [who, role] : std::vector<std::pair<std::string, std::string>>{
             {"operator/alice", "operator.engineer"},
             {"operator/bob", "operator.reviewer"},
             {"service/enforcer", "service.enforcer"}}) {
      v1::CreateRoleBindingRequest r;
      r.mutable_role_binding()->set_principal(Id(who));
      r.mutable_role_binding()->set_role(role);
      auto made = admin->CreateRoleBinding(r);
      ASSERT_TRUE(made.ok()) << who << ": " << made.status().error_message();
    }
  }

  // Moves both replicas' clock to `at` (real time plus an offset), and
  // returns once both apply it.
  void SetClock(absl::Time at) {
    double offset = absl::ToDoubleSeconds(at - absl::Now());
    ASSERT_TRUE(MoveClock(clock_file_, offset, {replicas_[0]->pid(), replicas_[1]->pid()}));
  }

  Result<v1::CheckAccessResponse> Check(int i) {
    // One client per replica, made once: no handshake inside a timed second.
    if (!enforcers_[i]) enforcers_[i] = LibraryClient(certs_, "enforcer", replicas_[i]->target());
    v1::CheckAccessRequest r;
    r.set_principal(Id("operator/alice"));
    r.set_environment(kEnv);
    return enforcers_[i]->CheckAccess(r);
  }
  double Metric(int i, const std::string& name,
                const std::map<std::string, std::string>& labels = {}) {
    return MetricValue(HttpGet(replicas_[i]->metrics_port(), "/metrics"), name, labels);
  }
  double FromView(int i) {
    return Metric(i, "lockbox_checkaccess_answers_total", {{"from", "view"}});
  }

  TestDatabase db_;
  Certificates certs_{kTd};
  std::string clock_file_;
  std::unique_ptr<ServerProcess> replicas_[2];
  std::unique_ptr<lockbox::Client> enforcers_[2];
};

TEST_F(ScheduledTest, AScheduledGrantStartsByItselfOnBothReplicas) {
  // The window opens in an hour, by the servers' clock (real time now).
  const absl::Time start = absl::FromUnixSeconds(std::time(nullptr)) + absl::Hours(1);
  auto alice = LibraryClient(certs_, "alice", replicas_[0]->target());
  v1::CreateAccessRequestRequest r;
  r.set_parent("tenants/windowed");
  r.mutable_access_request()->set_environment(kEnv);
  r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
  r.mutable_access_request()->set_justification("schema migration in tonight's window");
  r.mutable_access_request()->mutable_start_time()->set_seconds(absl::ToUnixSeconds(start));
  auto created = alice->CreateAccessRequest(r);
  ASSERT_TRUE(created.ok()) << created.status().error_message();
  EXPECT_EQ(created->start_time().seconds(), absl::ToUnixSeconds(start));
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(created->name());
  auto approved =
      LibraryClient(certs_, "bob", replicas_[1]->target())->ApproveAccessRequest(approve);
  ASSERT_TRUE(approved.ok()) << approved.status().error_message();
  ASSERT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  v1::GetGrantRequest get;
  get.set_name(approved->grant());
  auto grant = alice->GetGrant(get);
  ASSERT_TRUE(grant.ok()) << grant.status().error_message();
  EXPECT_EQ(grant->state(), v1::Grant::SCHEDULED);
  EXPECT_EQ(grant->start_time().seconds(), absl::ToUnixSeconds(start));
  EXPECT_EQ(grant->expire_time().seconds(), absl::ToUnixSeconds(start + absl::Hours(8)));
  v1::ListGrantsRequest list;
  list.set_parent("tenants/windowed");
  list.set_filter("state = SCHEDULED");
  auto scheduled = LibraryClient(certs_, "dana", replicas_[0]->target())->ListGrants(list);
  ASSERT_TRUE(scheduled.ok()) << scheduled.status().error_message();
  ASSERT_EQ(scheduled->grants_size(), 1);
  EXPECT_EQ(scheduled->grants(0).name(), grant->name());
  // Both views hold the grant before the start: what follows tests them.
  for (int i : {0, 1}) {
    EXPECT_TRUE(Eventually([&] { return Metric(i, "lockbox_grant_view_grants") == 1; }, 10))
        << "replica " << i;
  }

  for (int i : {0, 1}) {
    // Set again before each question: real time runs on under the offset,
    // so a question that could not be asked within that last second (a
    // loaded machine) is asked again rather than asked after the start.
    Result<v1::CheckAccessResponse> before = grpc::Status(grpc::StatusCode::UNKNOWN, "");
    for (int attempt = 0; attempt < 5; ++attempt) {
      absl::Time asked = absl::Now();
      SetClock(start - absl::Seconds(1));
      before = Check(i);
      if (absl::Now() - asked < absl::Milliseconds(900)) break;
    }
    ASSERT_TRUE(before.ok()) << before.status().error_message();
    EXPECT_FALSE(before->allowed()) << "replica " << i;
    EXPECT_EQ(before->reason(), "GRANT_NOT_STARTED") << "replica " << i;
    EXPECT_EQ(before->grant().name(), grant->name());
    EXPECT_EQ(before->grant().state(), v1::Grant::SCHEDULED);
  }

  SetClock(start + absl::Seconds(1));
  for (int i : {0, 1}) {
    // From the view: nothing was written or notified at the start.
    double answered = FromView(i);
    auto after = Check(i);
    ASSERT_TRUE(after.ok()) << after.status().error_message();
    EXPECT_TRUE(after->allowed()) << "replica " << i;
    EXPECT_EQ(after->grant().name(), grant->name());
    EXPECT_EQ(after->expire_time().seconds(), grant->expire_time().seconds());
    EXPECT_GT(FromView(i), answered) << "replica " << i << " asked its database";
  }
  auto read = alice->GetGrant(get);
  ASSERT_TRUE(read.ok()) << read.status().error_message();
  EXPECT_EQ(read->state(), v1::Grant::ACTIVE);
  // Nothing recorded the start: the grant's row is as the approval wrote it.
  EXPECT_EQ(grant->etag(), read->etag());
  SetClock(absl::Now());
}

}  // namespace
}  // namespace lockbox::testing
