// Break-glass in process on real PostgreSQL with a fake clock (SPEC section
// 10, domain/emergency.h): who may open an emergency grant and where, that
// it is granted at once and covers what it pinned, one at a time per
// engineer and tenant (racing opens too), its period's caps; the customer's
// review and its refusals; the reminders, the overdue record, their audit
// events and messages; and a sealed tenant's review comment stored sealed.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "server/app/key_ring.h"
#include "server/domain/aead.h"
#include "server/domain/emergency.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/sealed_field.h"
#include "server/domain/status.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

using Code = absl::StatusCode;

constexpr char kSecurityContact[] = "security@provider.example";
constexpr char kTenantEmail[] = "oncall@ma.example";
constexpr char kOpsAdminEmail[] = "ops@ma.example";

// Seals tenant ma's data when `sealed`, with one fixed key; refuses
// KEY_UNAVAILABLE when `available` is false.
class FakeSealingRing final : public KeyRing {
 public:
  std::atomic<bool> sealed{false};
  std::atomic<bool> available{true};

  absl::StatusOr<VersionKey> DataPlaneKeyForNew(Transaction*, const std::string&,
                                                const std::string&, const std::string&) override {
    return Unavailable();
  }
  absl::StatusOr<VersionKey> DataPlaneKey(Transaction*, const std::string&, const std::string&,
                                          int32_t) override {
    return Unavailable();
  }
  absl::StatusOr<std::optional<VersionKey>> SealingKeyForNew(Transaction*,
                                                             const std::string& tenant) override {
    if (tenant != "ma" || !sealed) return std::optional<VersionKey>();
    if (!available) return Unavailable();
    return std::optional<VersionKey>(Key());
  }
  absl::StatusOr<VersionKey> SealingKey(Transaction*, const std::string&, const std::string&,
                                        int32_t) override {
    if (!available) return Unavailable();
    return Key();
  }

 private:
  static absl::Status Unavailable() {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
                 "test key unavailable");
  }
  VersionKey Key() const { return VersionKey{"ma", "test-policy", 1, key_}; }
  std::shared_ptr<const SecretKey> key_ = std::make_shared<SecretKey>(SecretKey::Random());
};

class EmergencyAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InProcessOptions options;
    options.security_contact_email = kSecurityContact;
    options.key_ring = &ring_;
    auto app = InProcessLockbox::Create(options);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = std::move(*app);
    auto world = DemoWorld::Create(app_.get());
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = std::make_unique<DemoWorld>(std::move(*world));
    ASSERT_TRUE(app_->Bind(w().engineer.spiffe_id, "operator.breakglass").ok());
    // A tenant admin with an address, and the policy's address: who is told.
    v1::CreateRoleBindingRequest b;
    b.mutable_role_binding()->set_principal(SpiffeId("tenant/ma/user/ops"));
    b.mutable_role_binding()->set_role("tenant.admin");
    b.mutable_role_binding()->set_tenant(DemoWorld::kTenantA);
    b.mutable_role_binding()->set_email(kOpsAdminEmail);
    auto bound = use_cases().policy().CreateRoleBinding(w().tenant_a_admin, b);
    ASSERT_TRUE(bound.ok()) << bound.status();
    v1::UpdateLockboxPolicyRequest up;
    up.mutable_lockbox_policy()->set_name(std::string(DemoWorld::kTenantA) + "/lockboxPolicy");
    up.mutable_lockbox_policy()->add_notification_emails(kTenantEmail);
    up.mutable_update_mask()->add_paths("notification_emails");
    auto updated = use_cases().policy().UpdateLockboxPolicy(w().tenant_a_admin, up);
    ASSERT_TRUE(updated.ok()) << updated.status();
  }

  UseCases& use_cases() { return app_->use_cases(); }
  const DemoWorld& w() const { return *world_; }

  static v1::CreateAccessRequestRequest Ask(const std::string& environment,
                                            const std::string& incident = "INC-1") {
    v1::CreateAccessRequestRequest r;
    r.set_parent(environment.substr(0, environment.find("/environments/")));
    v1::AccessRequest* a = r.mutable_access_request();
    a->set_environment(environment);
    a->set_reason(v1::AccessRequest::EMERGENCY);
    a->set_incident_id(incident);
    a->set_justification("database down, customer impact");
    return r;
  }
  absl::StatusOr<v1::AccessRequest> Open(const CallerIdentity& who,
                                         const v1::CreateAccessRequestRequest& r) {
    return use_cases().requests().CreateAccessRequest(who, r);
  }
  absl::StatusOr<v1::AccessRequest> Open(
      const std::string& environment = DemoWorld::kEnvironmentA) {
    return Open(w().engineer, Ask(environment));
  }
  absl::StatusOr<v1::AccessRequest> Review(const CallerIdentity& who, const std::string& name,
                                           v1::EmergencyReview::Verdict verdict,
                                           const std::string& comment = "") {
    v1::ReviewEmergencyAccessRequest r;
    r.set_name(name);
    r.set_verdict(verdict);
    r.set_comment(comment);
    return use_cases().requests().ReviewEmergencyAccess(who, r);
  }
  v1::AccessRequest Get(const std::string& name) {
    v1::GetAccessRequestRequest r;
    r.set_name(name);
    auto got = use_cases().requests().GetAccessRequest(w().tenant_a_admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::AccessRequest();
  }
  v1::Grant GetGrant(const std::string& name) {
    v1::GetGrantRequest r;
    r.set_name(name);
    auto got = use_cases().grants().GetGrant(w().engineer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::Grant();
  }
  bool Allowed(const std::string& environment, const std::string& source) {
    v1::CheckAccessRequest r;
    r.set_principal(w().engineer.spiffe_id);
    r.set_environment(environment);
    r.set_data_source(source);
    auto got = use_cases().grants().CheckAccess(w().enforcer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() && got->allowed();
  }
  std::vector<v1::AuditEvent> Audit(const std::string& action) {
    v1::ListAuditEventsRequest r;
    r.set_parent(DemoWorld::kTenantA);
    r.set_filter("action = \"" + action + "\"");
    r.set_page_size(1000);
    auto got = use_cases().audit().ListAuditEvents(w().admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return {};
    return {got->audit_events().begin(), got->audit_events().end()};
  }
  // Every message of `event`, the customer's (tenant ma) and the
  // provider's, as "recipient|subject".
  std::vector<std::string> Messages(const std::string& event) {
    v1::ListNotificationsRequest r;
    r.set_filter("event = \"" + event + "\"");
    r.set_page_size(1000);
    auto got = use_cases().notifications().ListNotifications(w().admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    std::vector<std::string> out;
    if (!got.ok()) return out;
    for (const v1::Notification& n : got->notifications()) {
      out.push_back(n.recipient() + "|" + n.subject());
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<std::string> Recipients(const std::string& event) {
    std::vector<std::string> out;
    for (const std::string& m : Messages(event)) out.push_back(m.substr(0, m.find('|')));
    return out;
  }
  std::vector<std::string> Listed(const std::string& filter) {
    v1::ListAccessRequestsRequest r;
    r.set_parent(DemoWorld::kTenantA);
    r.set_filter(filter);
    auto got = use_cases().requests().ListAccessRequests(w().tenant_a_admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    std::vector<std::string> out;
    if (got.ok()) {
      for (const auto& a : got->access_requests()) out.push_back(a.name());
    }
    return out;
  }
  absl::Status SetPolicy(const std::function<void(v1::LockboxPolicy*)>& set,
                         const std::string& path) {
    v1::UpdateLockboxPolicyRequest up;
    up.mutable_lockbox_policy()->set_name(std::string(DemoWorld::kTenantA) + "/lockboxPolicy");
    set(up.mutable_lockbox_policy());
    up.mutable_update_mask()->add_paths(path);
    return use_cases().policy().UpdateLockboxPolicy(w().tenant_a_admin, up).status();
  }
  absl::Status Release(const std::string& grant) {
    v1::ReleaseGrantRequest r;
    r.set_name(grant);
    return use_cases().grants().ReleaseGrant(w().engineer, r).status();
  }

  FakeSealingRing ring_;
  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<DemoWorld> world_;
};

TEST_F(EmergencyAccessTest, GrantedAtOnceCoveringProtectedSourcesAndToldToTheCustomer) {
  absl::Time t0 = app_->clock().Now();
  // Protected (ma's prod is managed, sql lockbox-supported): a normal
  // request would wait for the customer.
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "sql"));
  absl::StatusOr<v1::AccessRequest> opened = Open();
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->state(), v1::AccessRequest::APPROVED);
  EXPECT_EQ(opened->reason(), v1::AccessRequest::EMERGENCY);
  EXPECT_EQ(opened->incident_id(), "INC-1");
  EXPECT_EQ(opened->display_status(), "Emergency access");
  EXPECT_EQ(opened->emergency_review().state(), v1::EmergencyReview::OPEN);
  EXPECT_EQ(FromProto(opened->emergency_review().due_time()), t0 + kEmergencyReviewPeriod);
  ASSERT_FALSE(opened->grant().empty());

  v1::Grant grant = GetGrant(opened->grant());
  EXPECT_TRUE(grant.emergency());
  EXPECT_EQ(grant.state(), v1::Grant::ACTIVE);
  EXPECT_EQ(FromProto(grant.start_time()), t0);
  EXPECT_EQ(FromProto(grant.expire_time()), t0 + kDefaultEmergencyDuration);
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentA, "sql"));
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentA, "rcs"));
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentA, ""));
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "made-up"));
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentB, "sql"));

  v1::AccessRequest read = Get(opened->name());
  EXPECT_EQ(read.display_status(), "Emergency access");
  EXPECT_EQ(read.emergency_review().state(), v1::EmergencyReview::OPEN);
  EXPECT_EQ(Listed("reason = EMERGENCY AND review_state = OPEN"),
            std::vector<std::string>{opened->name()});
  EXPECT_TRUE(Listed("reason = OPERATOR_INITIATED").empty());

  std::vector<v1::AuditEvent> events = Audit("access_request.emergency_open");
  ASSERT_EQ(events.size(), 1u);
  const auto& d = events[0].details();
  EXPECT_EQ(d.at("incident_id"), "INC-1");
  EXPECT_EQ(d.at("grant"), grant.name());
  EXPECT_EQ(d.at("grant_data_sources"), "sql,rcs");
  EXPECT_EQ(FromProto(events[0].access_expire_time()), FromProto(grant.expire_time()));
  EXPECT_EQ(events[0].access_request(), opened->name());
  EXPECT_EQ(events[0].actor(), w().engineer.spiffe_id);

  std::vector<std::string> told = Messages("access_request.emergency_opened");
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(Recipients("access_request.emergency_opened"),
            (std::vector<std::string>{kTenantEmail, kOpsAdminEmail}));
  for (const std::string& m : told) {
    EXPECT_TRUE(absl::StrContains(m, "|[EMERGENCY ACCESS] ")) << m;
    EXPECT_TRUE(absl::StrContains(m, "incident INC-1")) << m;
  }

  // It ends at its end, as any grant.
  app_->clock().Set(t0 + kDefaultEmergencyDuration - absl::Seconds(1));
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentA, "sql"));
  app_->clock().Set(t0 + kDefaultEmergencyDuration);
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "sql"));
}

TEST_F(EmergencyAccessTest, StopsWhenItsEngineerLosesOperatorEngineer) {
  absl::StatusOr<v1::AccessRequest> opened = Open();
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentA, "sql"));
  v1::ListRoleBindingsRequest list;
  list.set_page_size(1000);
  auto bindings = use_cases().policy().ListRoleBindings(w().admin, list);
  ASSERT_TRUE(bindings.ok()) << bindings.status();
  for (const v1::RoleBinding& b : bindings->role_bindings()) {
    if (b.principal() != w().engineer.spiffe_id || b.role() != "operator.engineer") continue;
    v1::DeleteRoleBindingRequest del;
    del.set_name(b.name());
    ASSERT_TRUE(use_cases().policy().DeleteRoleBinding(w().admin, del).ok());
  }
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "sql"));
}

TEST_F(EmergencyAccessTest, RefusedWhereTheTenantForbidsIt) {
  ASSERT_TRUE(
      SetPolicy([](v1::LockboxPolicy* p) { p->set_emergency_access(v1::LockboxPolicy::FORBIDDEN); },
                "emergency_access")
          .ok());
  absl::StatusOr<v1::AccessRequest> opened = Open();
  EXPECT_EQ(opened.status().code(), Code::kFailedPrecondition) << opened.status();
  EXPECT_EQ(ErrorReason(opened.status()), "EMERGENCY_ACCESS_FORBIDDEN");
  EXPECT_TRUE(Listed("reason = EMERGENCY").empty());
  EXPECT_TRUE(Audit("access_request.emergency_open").empty());
  EXPECT_TRUE(Messages("access_request.emergency_opened").empty());
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "sql"));
  // The other tenant did not forbid it.
  EXPECT_TRUE(Open(DemoWorld::kEnvironmentB).ok());
}

TEST_F(EmergencyAccessTest, NeedsBothOperatorEngineerAndOperatorBreakglass) {
  // operator.engineer alone.
  CallerIdentity plain = Caller("operator/plain");
  ASSERT_TRUE(app_->Bind(plain.spiffe_id, "operator.engineer").ok());
  absl::StatusOr<v1::AccessRequest> opened = Open(plain, Ask(DemoWorld::kEnvironmentA));
  EXPECT_EQ(opened.status().code(), Code::kPermissionDenied) << opened.status();
  // operator.breakglass alone.
  CallerIdentity glass = Caller("operator/glass");
  ASSERT_TRUE(app_->Bind(glass.spiffe_id, "operator.breakglass").ok());
  opened = Open(glass, Ask(DemoWorld::kEnvironmentA));
  EXPECT_EQ(opened.status().code(), Code::kPermissionDenied) << opened.status();
  // Nor a reviewer, a tenant admin, or nobody at all.
  for (const CallerIdentity* who : {&w().reviewer, &w().tenant_a_admin, &w().unbound}) {
    EXPECT_EQ(Open(*who, Ask(DemoWorld::kEnvironmentA)).status().code(), Code::kPermissionDenied)
        << who->spiffe_id;
  }
  // Only a provider role, and only for operators.
  EXPECT_FALSE(app_->Bind(w().enforcer.spiffe_id, "operator.breakglass").ok());
  EXPECT_FALSE(
      app_->Bind(SpiffeId("tenant/ma/user/dana"), "operator.breakglass", DemoWorld::kTenantA).ok());
  EXPECT_TRUE(Listed("reason = EMERGENCY").empty());
}

TEST_F(EmergencyAccessTest, OneActiveEmergencyGrantPerEngineerAndTenant) {
  absl::Time t0 = app_->clock().Now();
  absl::StatusOr<v1::AccessRequest> first = Open();
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<v1::AccessRequest> second =
      Open(w().engineer, Ask(DemoWorld::kEnvironmentA, "INC-2"));
  EXPECT_EQ(second.status().code(), Code::kFailedPrecondition) << second.status();
  EXPECT_EQ(ErrorReason(second.status()), "EMERGENCY_GRANT_ACTIVE");
  // Another tenant is another count.
  EXPECT_TRUE(Open(DemoWorld::kEnvironmentB).ok());
  // Released: allowed again.
  ASSERT_TRUE(Release(first->grant()).ok());
  absl::StatusOr<v1::AccessRequest> third =
      Open(w().engineer, Ask(DemoWorld::kEnvironmentA, "INC-3"));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(ErrorReason(Open().status()), "EMERGENCY_GRANT_ACTIVE");
  // Expired (read at its end, before any sweep): allowed again.
  app_->clock().Set(t0 + kDefaultEmergencyDuration);
  EXPECT_TRUE(Open(w().engineer, Ask(DemoWorld::kEnvironmentA, "INC-4")).ok());
}

TEST_F(EmergencyAccessTest, ARetryWithTheSameRequestIdGetsTheFirstGrant) {
  v1::CreateAccessRequestRequest ask = Ask(DemoWorld::kEnvironmentA);
  ask.set_request_id("0b8e2f0e-7c1d-4f5e-9a3b-2d6c8e1f4a70");
  absl::StatusOr<v1::AccessRequest> first = Open(w().engineer, ask);
  ASSERT_TRUE(first.ok()) << first.status();
  // Not refused as a second open: the same answer.
  absl::StatusOr<v1::AccessRequest> again = Open(w().engineer, ask);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->name(), first->name());
  EXPECT_EQ(again->grant(), first->grant());
  EXPECT_EQ(Listed("reason = EMERGENCY").size(), 1u);
  EXPECT_EQ(Audit("access_request.emergency_open").size(), 1u);
  EXPECT_EQ(Messages("access_request.emergency_opened").size(), 2u);
}

TEST_F(EmergencyAccessTest, RacingOpensGiveOneGrant) {
  constexpr int kRacers = 8;
  std::atomic<int> granted{0}, refused{0}, other{0};
  std::vector<std::thread> racers;
  for (int i = 0; i < kRacers; ++i) {
    racers.emplace_back([&, i] {
      auto got = Open(w().engineer, Ask(DemoWorld::kEnvironmentA, "INC-R" + std::to_string(i)));
      if (got.ok()) {
        ++granted;
      } else if (ErrorReason(got.status()) == "EMERGENCY_GRANT_ACTIVE") {
        ++refused;
      } else {
        ++other;
        ADD_FAILURE() << got.status();
      }
    });
  }
  for (auto& t : racers) t.join();
  EXPECT_EQ(granted.load(), 1);
  EXPECT_EQ(refused.load(), kRacers - 1);
  EXPECT_EQ(Listed("reason = EMERGENCY").size(), 1u);
  EXPECT_EQ(Audit("access_request.emergency_open").size(), 1u);
}

TEST_F(EmergencyAccessTest, PeriodDefaultsAndCaps) {
  v1::CreateAccessRequestRequest ask = Ask(DemoWorld::kEnvironmentA);
  *ask.mutable_access_request()->mutable_access_duration() = ToProto(absl::Minutes(90));
  absl::StatusOr<v1::AccessRequest> opened = Open(w().engineer, ask);
  EXPECT_EQ(opened.status().code(), Code::kInvalidArgument) << opened.status();
  // The policy may allow up to 4 hours, never more.
  EXPECT_EQ(SetPolicy(
                [](v1::LockboxPolicy* p) {
                  *p->mutable_emergency_access_duration() = ToProto(absl::Hours(5));
                },
                "emergency_access_duration")
                .code(),
            Code::kInvalidArgument);
  ASSERT_TRUE(SetPolicy(
                  [](v1::LockboxPolicy* p) {
                    *p->mutable_emergency_access_duration() = ToProto(absl::Hours(2));
                  },
                  "emergency_access_duration")
                  .ok());
  *ask.mutable_access_request()->mutable_access_duration() = ToProto(absl::Hours(3));
  EXPECT_EQ(Open(w().engineer, ask).status().code(), Code::kInvalidArgument);
  *ask.mutable_access_request()->mutable_access_duration() = ToProto(absl::Minutes(30));
  opened = Open(w().engineer, ask);
  ASSERT_TRUE(opened.ok()) << opened.status();
  v1::Grant grant = GetGrant(opened->grant());
  EXPECT_EQ(FromProto(grant.expire_time()) - FromProto(grant.start_time()), absl::Minutes(30));
  ASSERT_TRUE(Release(grant.name()).ok());
  // Unset: the policy's period.
  opened = Open(w().engineer, Ask(DemoWorld::kEnvironmentA, "INC-9"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  grant = GetGrant(opened->grant());
  EXPECT_EQ(FromProto(grant.expire_time()) - FromProto(grant.start_time()), absl::Hours(2));
}

TEST_F(EmergencyAccessTest, RefusesBadInputWritingNothing) {
  v1::CreateAccessRequestRequest no_incident = Ask(DemoWorld::kEnvironmentA, "");
  EXPECT_EQ(Open(w().engineer, no_incident).status().code(), Code::kInvalidArgument);
  v1::CreateAccessRequestRequest long_incident =
      Ask(DemoWorld::kEnvironmentA, std::string(kMaxIncidentIdBytes + 1, 'x'));
  EXPECT_EQ(Open(w().engineer, long_incident).status().code(), Code::kInvalidArgument);
  v1::CreateAccessRequestRequest spaced = Ask(DemoWorld::kEnvironmentA, "INC 1");
  EXPECT_EQ(Open(w().engineer, spaced).status().code(), Code::kInvalidArgument);
  v1::CreateAccessRequestRequest no_why = Ask(DemoWorld::kEnvironmentA);
  no_why.mutable_access_request()->clear_justification();
  EXPECT_EQ(Open(w().engineer, no_why).status().code(), Code::kInvalidArgument);
  v1::CreateAccessRequestRequest later = Ask(DemoWorld::kEnvironmentA);
  *later.mutable_access_request()->mutable_start_time() =
      ToProto(app_->clock().Now() + absl::Hours(1));
  EXPECT_EQ(Open(w().engineer, later).status().code(), Code::kInvalidArgument);
  v1::CreateAccessRequestRequest unknown = Ask(DemoWorld::kEnvironmentA);
  unknown.mutable_access_request()->add_data_sources("made-up");
  EXPECT_EQ(Open(w().engineer, unknown).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Listed("reason = EMERGENCY").empty());
  // Pinned to what it names.
  v1::CreateAccessRequestRequest only_rcs = Ask(DemoWorld::kEnvironmentA);
  only_rcs.mutable_access_request()->add_data_sources("rcs");
  absl::StatusOr<v1::AccessRequest> opened = Open(w().engineer, only_rcs);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentA, "rcs"));
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "sql"));
}

TEST_F(EmergencyAccessTest, TheCustomerAcceptsOnce) {
  absl::StatusOr<v1::AccessRequest> opened = Open();
  ASSERT_TRUE(opened.ok()) << opened.status();
  // Nobody but the tenant's admin, and nothing revealed to them.
  for (const CallerIdentity* who :
       {&w().engineer, &w().reviewer, &w().admin, &w().tenant_a_auditor, &w().tenant_b_admin}) {
    auto got = Review(*who, opened->name(), v1::EmergencyReview::ACCEPT);
    EXPECT_EQ(got.status().code(), Code::kPermissionDenied) << who->spiffe_id;
  }
  EXPECT_EQ(
      Review(w().tenant_b_admin, "tenants/ma/accessRequests/00000000-0000-4000-8000-000000000000",
             v1::EmergencyReview::ACCEPT)
          .status()
          .code(),
      Code::kPermissionDenied);
  EXPECT_EQ(Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::VERDICT_UNSPECIFIED)
                .status()
                .code(),
            Code::kInvalidArgument);
  absl::StatusOr<v1::AccessRequest> accepted =
      Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::ACCEPT);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->emergency_review().state(), v1::EmergencyReview::ACCEPTED);
  EXPECT_EQ(accepted->emergency_review().reviewer(), w().tenant_a_admin.spiffe_id);
  EXPECT_EQ(FromProto(accepted->emergency_review().review_time()), app_->clock().Now());
  EXPECT_EQ(Get(opened->name()).emergency_review().state(), v1::EmergencyReview::ACCEPTED);
  EXPECT_TRUE(Listed("review_state = OPEN").empty());
  EXPECT_EQ(Listed("review_state = ACCEPTED"), std::vector<std::string>{opened->name()});

  absl::StatusOr<v1::AccessRequest> again =
      Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::DISPUTE, "changed my mind");
  EXPECT_EQ(again.status().code(), Code::kFailedPrecondition) << again.status();
  EXPECT_EQ(ErrorReason(again.status()), "REVIEW_CLOSED");

  std::vector<v1::AuditEvent> events = Audit("access_request.emergency_review");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].details().at("verdict"), "ACCEPT");
  EXPECT_EQ(events[0].details().at("overdue"), "false");
  EXPECT_EQ(events[0].actor(), w().tenant_a_admin.spiffe_id);
  EXPECT_FALSE(events[0].details().at("evidence.certificate_sha256").empty());
  EXPECT_TRUE(Messages("access_request.emergency_disputed").empty());
}

TEST_F(EmergencyAccessTest, ADisputeNeedsACommentAndGoesToTheSecurityContact) {
  absl::StatusOr<v1::AccessRequest> opened = Open();
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto bare = Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::DISPUTE);
  EXPECT_EQ(bare.status().code(), Code::kInvalidArgument) << bare.status();
  auto too_long = Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::DISPUTE,
                         std::string(kMaxCommentBytes + 1, 'x'));
  EXPECT_EQ(too_long.status().code(), Code::kInvalidArgument);
  // Through the admin portal, as the tenant's admin.
  auto disputed = Review(w().PortalForTenantAAdmin(), opened->name(), v1::EmergencyReview::DISPUTE,
                         "no incident that day");
  ASSERT_TRUE(disputed.ok()) << disputed.status();
  EXPECT_EQ(disputed->emergency_review().state(), v1::EmergencyReview::DISPUTED);
  EXPECT_EQ(disputed->emergency_review().comment(), "no incident that day");
  EXPECT_EQ(disputed->emergency_review().via(), w().portal.spiffe_id);
  std::vector<v1::AuditEvent> events = Audit("access_request.emergency_review");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].details().at("verdict"), "DISPUTE");
  EXPECT_EQ(events[0].details().at("comment"), "no incident that day");
  EXPECT_EQ(events[0].via(), w().portal.spiffe_id);
  EXPECT_FALSE(events[0].details().at("evidence.token_id").empty());
  std::vector<std::string> told = Messages("access_request.emergency_disputed");
  ASSERT_EQ(told.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(told[0], std::string(kSecurityContact) + "|[EMERGENCY ACCESS] "))
      << told[0];
}

TEST_F(EmergencyAccessTest, OnlyAnEmergencyRequestHasAReview) {
  auto pending = w().PendingRequest(DemoWorld::kEnvironmentA);
  ASSERT_TRUE(pending.ok()) << pending.status();
  auto got = Review(w().tenant_a_admin, pending->name(), v1::EmergencyReview::ACCEPT);
  EXPECT_EQ(got.status().code(), Code::kFailedPrecondition) << got.status();
  EXPECT_EQ(ErrorReason(got.status()), "STATE_TRANSITION_NOT_ALLOWED");
  EXPECT_EQ(
      Review(w().tenant_a_admin, "tenants/ma/accessRequests/00000000-0000-4000-8000-000000000000",
             v1::EmergencyReview::ACCEPT)
          .status()
          .code(),
      Code::kNotFound);
}

TEST_F(EmergencyAccessTest, RemindersAt24HoursAnd6DaysThenOverdueAt7Days) {
  absl::Time t0 = app_->clock().Now();
  absl::StatusOr<v1::AccessRequest> opened = Open();
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto remind = [&] {
    auto got = use_cases().requests().RemindEmergencyReviewOne();
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() && *got;
  };
  auto overdue = [&] {
    auto got = use_cases().requests().MarkEmergencyReviewOverdueOne();
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() && *got;
  };
  const std::string reminder = "access_request.emergency_review_reminder";
  app_->clock().Set(t0 + absl::Hours(24) - absl::Seconds(1));
  EXPECT_FALSE(remind());
  app_->clock().Set(t0 + absl::Hours(24));
  EXPECT_TRUE(remind());
  EXPECT_FALSE(remind());
  EXPECT_EQ(Recipients(reminder), (std::vector<std::string>{kTenantEmail, kOpsAdminEmail}));
  app_->clock().Set(t0 + absl::Hours(24 * 6) - absl::Seconds(1));
  EXPECT_FALSE(remind());
  app_->clock().Set(t0 + absl::Hours(24 * 6));
  EXPECT_TRUE(remind());
  EXPECT_FALSE(remind());
  EXPECT_EQ(Messages(reminder).size(), 4u);
  for (const std::string& m : Messages(reminder)) {
    EXPECT_TRUE(absl::StrContains(m, "|[EMERGENCY ACCESS] Reminder: review emergency access")) << m;
  }

  app_->clock().Set(t0 + kEmergencyReviewPeriod - absl::Seconds(1));
  EXPECT_FALSE(overdue());
  app_->clock().Set(t0 + kEmergencyReviewPeriod);
  EXPECT_TRUE(overdue());
  EXPECT_FALSE(overdue());
  EXPECT_FALSE(remind());
  v1::AccessRequest read = Get(opened->name());
  EXPECT_TRUE(read.emergency_review().overdue());
  EXPECT_EQ(read.emergency_review().state(), v1::EmergencyReview::OPEN);
  std::vector<v1::AuditEvent> events = Audit("access_request.emergency_review_overdue");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].access_request(), opened->name());
  EXPECT_EQ(Recipients("access_request.emergency_review_overdue"),
            (std::vector<std::string>{kTenantEmail, kOpsAdminEmail, kSecurityContact}));
  for (const std::string& m : Messages("access_request.emergency_review_overdue")) {
    EXPECT_TRUE(absl::StrContains(m, "|[EMERGENCY ACCESS] Review overdue")) << m;
  }

  // Still closed, late: the event says so.
  app_->clock().Set(t0 + kEmergencyReviewPeriod + absl::Hours(1));
  auto late = Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::ACCEPT);
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_TRUE(late->emergency_review().overdue());
  std::vector<v1::AuditEvent> reviews = Audit("access_request.emergency_review");
  ASSERT_EQ(reviews.size(), 1u);
  EXPECT_EQ(reviews[0].details().at("overdue"), "true");
}

TEST_F(EmergencyAccessTest, AClosedReviewGetsNoReminder) {
  absl::Time t0 = app_->clock().Now();
  absl::StatusOr<v1::AccessRequest> opened = Open();
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::ACCEPT).ok());
  app_->clock().Set(t0 + kEmergencyReviewPeriod + absl::Hours(1));
  auto reminded = use_cases().requests().RemindEmergencyReviewOne();
  ASSERT_TRUE(reminded.ok());
  EXPECT_FALSE(*reminded);
  auto marked = use_cases().requests().MarkEmergencyReviewOverdueOne();
  ASSERT_TRUE(marked.ok());
  EXPECT_FALSE(*marked);
}

TEST_F(EmergencyAccessTest, ASealedTenantsReviewCommentIsStoredSealed) {
  ring_.sealed = true;
  absl::StatusOr<v1::AccessRequest> opened = Open();
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(Release(opened->grant()).ok());
  // The key unusable: no review that writes words, nothing written.
  ring_.available = false;
  auto refused =
      Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::DISPUTE, "COMMENT-7f1e");
  EXPECT_EQ(ErrorReason(refused.status()), "KEY_UNAVAILABLE") << refused.status();
  // Nor a new emergency request, as CreateAccessRequest.
  EXPECT_EQ(ErrorReason(Open(w().engineer, Ask(DemoWorld::kEnvironmentA, "INC-8")).status()),
            "KEY_UNAVAILABLE");
  ring_.available = true;
  auto disputed =
      Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::DISPUTE, "COMMENT-7f1e");
  ASSERT_TRUE(disputed.ok()) << disputed.status();
  EXPECT_EQ(Get(opened->name()).emergency_review().comment(), "COMMENT-7f1e");
  TenantChildName name = *ParseChildName(opened->name(), "accessRequests", "name");
  v1::AccessRequest stored;
  ASSERT_TRUE(app_->store()
                  .RunInTransaction([&](Transaction& tx) -> absl::Status {
                    ASSIGN_OR_RETURN(stored,
                                     tx.requests().GetAccessRequest(name.tenant, name.id, false));
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_TRUE(absl::StartsWith(stored.emergency_review().comment(), kSealedPrefix))
      << stored.emergency_review().comment();
  EXPECT_FALSE(absl::StrContains(stored.emergency_review().comment(), "COMMENT-7f1e"));
}

TEST_F(EmergencyAccessTest, AReviewWithoutACommentClosesWhileTheKeyIsUnavailable) {
  ring_.sealed = true;
  absl::StatusOr<v1::AccessRequest> opened = Open();
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(Release(opened->grant()).ok());
  // The customer revoked its key: an ACCEPT without words seals nothing.
  ring_.available = false;
  auto accepted = Review(w().tenant_a_admin, opened->name(), v1::EmergencyReview::ACCEPT);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->emergency_review().state(), v1::EmergencyReview::ACCEPTED);
  std::vector<v1::AuditEvent> events = Audit("access_request.emergency_review");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].details().at("verdict"), "ACCEPT");
  ring_.available = true;
  EXPECT_EQ(Get(opened->name()).emergency_review().state(), v1::EmergencyReview::ACCEPTED);
}

TEST_F(EmergencyAccessTest, TheTenantAdminRevokesAnEmergencyGrantUnderTheDefaultPolicy) {
  absl::StatusOr<v1::AccessRequest> opened = Open();
  ASSERT_TRUE(opened.ok()) << opened.status();
  // allow_revocation is false by default; it does not protect break-glass.
  v1::RevokeGrantRequest r;
  r.set_name(opened->grant());
  r.set_reason("not agreed");
  EXPECT_EQ(use_cases().grants().RevokeGrant(w().engineer, r).status().code(),
            Code::kPermissionDenied);
  auto revoked = use_cases().grants().RevokeGrant(w().tenant_a_admin, r);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->state(), v1::Grant::REVOKED);
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA, "sql"));
  EXPECT_EQ(Audit("grant.revoke").size(), 1u);
}

}  // namespace
}  // namespace lockbox::testing
