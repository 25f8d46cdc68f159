// The request's rules, in-process with a fake clock: expiry at read time to
// the second, the customer's stage only when protected, no self-review, one
// winner among racing decisions, and retries with a request_id. Each test
// has its own database and demo world (tests/support/in_process.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "server/domain/lifecycle.h"
#include "tests/support/demo_app_test.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

using State = v1::AccessRequest::State;
using Code = absl::StatusCode;

class RequestLifecycleTest : public DemoAppTest {
 protected:
  v1::AccessRequest Create(const CallerIdentity& who, const v1::CreateAccessRequestRequest& r) {
    auto got = use_cases().requests().CreateAccessRequest(who, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::AccessRequest();
  }
  absl::StatusOr<v1::AccessRequest> Approve(const CallerIdentity& who, const std::string& name,
                                            const std::string& request_id = "") {
    v1::ApproveAccessRequestRequest r;
    r.set_name(name);
    r.set_request_id(request_id);
    return use_cases().requests().ApproveAccessRequest(who, r);
  }
  absl::StatusOr<v1::AccessRequest> Deny(const CallerIdentity& who, const std::string& name) {
    v1::DenyAccessRequestRequest r;
    r.set_name(name);
    r.set_comment("not now");
    return use_cases().requests().DenyAccessRequest(who, r);
  }
  v1::AccessRequest Get(const std::string& name) {
    v1::GetAccessRequestRequest r;
    r.set_name(name);
    auto got = use_cases().requests().GetAccessRequest(w().tenant_a_admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::AccessRequest();
  }
  // The names of tenant A's requests that `filter` lists.
  std::vector<std::string> ListedRequests(const std::string& filter) {
    v1::ListAccessRequestsRequest r;
    r.set_parent(DemoWorld::kTenantA);
    r.set_filter(filter);
    r.set_page_size(1000);
    auto got = use_cases().requests().ListAccessRequests(w().reviewer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    std::vector<std::string> names;
    if (got.ok()) {
      for (const auto& request : got->access_requests()) names.push_back(request.name());
    }
    return names;
  }
  std::vector<std::string> ListedGrants(const std::string& tenant, const std::string& filter) {
    v1::ListGrantsRequest r;
    r.set_parent(tenant);
    r.set_filter(filter);
    r.set_page_size(1000);
    auto got = use_cases().grants().ListGrants(w().reviewer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    std::vector<std::string> names;
    if (got.ok()) {
      for (const auto& grant : got->grants()) names.push_back(grant.name());
    }
    return names;
  }
  v1::CheckAccessResponse Check(const std::string& environment, const std::string& source = "") {
    v1::CheckAccessRequest r;
    r.set_principal(w().engineer.spiffe_id);
    r.set_environment(environment);
    r.set_data_source(source);
    auto got = use_cases().grants().CheckAccess(w().enforcer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::CheckAccessResponse();
  }
  std::vector<v1::AuditEvent> Audit(const std::string& tenant, const std::string& filter) {
    v1::ListAuditEventsRequest r;
    r.set_parent(tenant);
    r.set_filter(filter);
    r.set_page_size(1000);
    auto got = use_cases().audit().ListAuditEvents(w().admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return {};
    return {got->audit_events().begin(), got->audit_events().end()};
  }
  static std::string Of(const std::string& name) { return "access_request = \"" + name + "\""; }

};

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST_F(RequestLifecycleTest, ARequestExpiresAtReadTimeToTheSecond) {
  absl::Time created = app_->clock().Now();
  v1::AccessRequest r = Create(w().engineer, DemoWorld::Ask());
  absl::Time expires = FromProto(r.expire_time());
  EXPECT_EQ(expires - created, kDefaultRequestTtl);

  app_->clock().Set(expires - absl::Seconds(1));
  EXPECT_EQ(Get(r.name()).state(), v1::AccessRequest::PENDING);
  EXPECT_TRUE(Contains(ListedRequests("state = PENDING"), r.name()));
  EXPECT_FALSE(Contains(ListedRequests("state = EXPIRED"), r.name()));

  app_->clock().Set(expires);
  v1::AccessRequest expired = Get(r.name());
  EXPECT_EQ(expired.state(), v1::AccessRequest::EXPIRED);
  EXPECT_EQ(expired.display_status(), DisplayStatus(v1::AccessRequest::EXPIRED, r.stage()));
  EXPECT_FALSE(Contains(ListedRequests("state = PENDING"), r.name()));
  EXPECT_TRUE(Contains(ListedRequests("state = EXPIRED"), r.name()));
  // Expired for every decision too, though nothing has recorded it yet.
  absl::StatusOr<v1::AccessRequest> late = Approve(w().reviewer, r.name());
  EXPECT_EQ(late.status().code(), Code::kFailedPrecondition) << late.status();
  EXPECT_EQ(ErrorReason(late.status()), "STATE_TRANSITION_NOT_ALLOWED");
  v1::CancelAccessRequestRequest cancel;
  cancel.set_name(r.name());
  EXPECT_EQ(use_cases().requests().CancelAccessRequest(w().engineer, cancel).status().code(),
            Code::kFailedPrecondition);
  // Reading decided it; nothing was written.
  std::vector<v1::AuditEvent> events = Audit(DemoWorld::kTenantA, Of(r.name()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action(), "access_request.create");
}

TEST_F(RequestLifecycleTest, AGrantExpiresAtReadTimeToTheSecond) {
  absl::StatusOr<v1::Grant> made = w().ActiveGrant(DemoWorld::kEnvironmentB);
  ASSERT_TRUE(made.ok()) << made.status();
  const v1::Grant& grant = *made;
  absl::Time expires = FromProto(grant.expire_time());
  EXPECT_EQ(expires - FromProto(grant.start_time()), kDefaultAccessDuration);
  v1::GetGrantRequest get;
  get.set_name(grant.name());

  app_->clock().Set(expires - absl::Seconds(1));
  auto before = use_cases().grants().GetGrant(w().engineer, get);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->state(), v1::Grant::ACTIVE);
  v1::CheckAccessResponse allowed = Check(DemoWorld::kEnvironmentB);
  EXPECT_TRUE(allowed.allowed());
  EXPECT_EQ(allowed.grant().name(), grant.name());
  EXPECT_TRUE(Contains(ListedGrants(DemoWorld::kTenantB, "state = ACTIVE"), grant.name()));
  EXPECT_FALSE(Contains(ListedGrants(DemoWorld::kTenantB, "state = EXPIRED"), grant.name()));

  app_->clock().Set(expires);
  auto after = use_cases().grants().GetGrant(w().engineer, get);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->state(), v1::Grant::EXPIRED);
  v1::CheckAccessResponse refused = Check(DemoWorld::kEnvironmentB);
  EXPECT_FALSE(refused.allowed());
  EXPECT_EQ(refused.reason(), "NO_ACTIVE_GRANT");
  EXPECT_FALSE(Contains(ListedGrants(DemoWorld::kTenantB, "state = ACTIVE"), grant.name()));
  EXPECT_TRUE(Contains(ListedGrants(DemoWorld::kTenantB, "state = EXPIRED"), grant.name()));
  v1::ReleaseGrantRequest release;
  release.set_name(grant.name());
  EXPECT_EQ(use_cases().grants().ReleaseGrant(w().engineer, release).status().code(),
            Code::kFailedPrecondition);
  EXPECT_TRUE(Audit(DemoWorld::kTenantB, "action = grant.expire").empty());
}

TEST_F(RequestLifecycleTest, TheCustomerDecidesOnlyWhenTheEnvironmentIsProtected) {
  // Protected: the internal approval hands the request to the customer, and
  // nothing is allowed before they decide.
  v1::AccessRequest a = Create(w().engineer, DemoWorld::Ask(DemoWorld::kEnvironmentA));
  auto internal = Approve(w().reviewer, a.name());
  ASSERT_TRUE(internal.ok()) << internal.status();
  EXPECT_EQ(internal->state(), v1::AccessRequest::PENDING);
  EXPECT_EQ(internal->stage(), v1::AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(internal->display_status(), "Action needed");
  EXPECT_FALSE(Check(DemoWorld::kEnvironmentA).allowed());
  // Another tenant's admin is nobody here; the reviewer's stage is over.
  EXPECT_EQ(Approve(w().tenant_b_admin, a.name()).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(Approve(w().second_reviewer, a.name()).status().code(), Code::kFailedPrecondition);
  auto customer = Approve(w().tenant_a_admin, a.name());
  ASSERT_TRUE(customer.ok()) << customer.status();
  EXPECT_EQ(customer->state(), v1::AccessRequest::APPROVED);
  EXPECT_TRUE(Check(DemoWorld::kEnvironmentA).allowed());

  // Unprotected (the policy is off): the internal review decides alone, and
  // the tenant's admin cannot step in before it.
  v1::AccessRequest b = Create(w().engineer, DemoWorld::Ask(DemoWorld::kEnvironmentB));
  EXPECT_EQ(Approve(w().tenant_b_admin, b.name()).status().code(), Code::kFailedPrecondition);
  auto only = Approve(w().reviewer, b.name());
  ASSERT_TRUE(only.ok()) << only.status();
  EXPECT_EQ(only->state(), v1::AccessRequest::APPROVED);

  // Only data sources the lockbox does not support: no customer stage; a
  // supported one brings it back.
  v1::CreateAccessRequestRequest rcs = DemoWorld::Ask(DemoWorld::kEnvironmentA);
  rcs.mutable_access_request()->add_data_sources("rcs");
  auto unsupported = Approve(w().reviewer, Create(w().engineer, rcs).name());
  ASSERT_TRUE(unsupported.ok()) << unsupported.status();
  EXPECT_EQ(unsupported->state(), v1::AccessRequest::APPROVED);
  v1::CreateAccessRequestRequest sql = DemoWorld::Ask(DemoWorld::kEnvironmentA);
  sql.mutable_access_request()->add_data_sources("sql");
  auto supported = Approve(w().reviewer, Create(w().engineer, sql).name());
  ASSERT_TRUE(supported.ok()) << supported.status();
  EXPECT_EQ(supported->stage(), v1::AccessRequest::CUSTOMER_REVIEW);

  // Protection is read at the decision, not at the request: the customer
  // unmanaging the environment in between takes effect at once.
  v1::AccessRequest later = Create(w().engineer, DemoWorld::Ask(DemoWorld::kEnvironmentA));
  v1::UpdateEnvironmentRequest unmanage;
  unmanage.mutable_environment()->set_name(DemoWorld::kEnvironmentA);
  unmanage.mutable_environment()->set_managed(false);
  unmanage.mutable_update_mask()->add_paths("managed");
  ASSERT_TRUE(use_cases().policy().UpdateEnvironment(w().tenant_a_admin, unmanage).ok());
  auto now_unprotected = Approve(w().reviewer, later.name());
  ASSERT_TRUE(now_unprotected.ok()) << now_unprotected.status();
  EXPECT_EQ(now_unprotected->state(), v1::AccessRequest::APPROVED);
}

TEST_F(RequestLifecycleTest, NobodyReviewsTheirOwnRequest) {
  const CallerIdentity rita = Caller("operator/rita");
  ASSERT_TRUE(app_->Bind(rita.spiffe_id, "operator.engineer").ok());
  ASSERT_TRUE(app_->Bind(rita.spiffe_id, "operator.reviewer").ok());
  v1::AccessRequest r = Create(rita, DemoWorld::Ask());
  ASSERT_EQ(r.requester(), rita.spiffe_id);

  absl::StatusOr<v1::AccessRequest> approved = Approve(rita, r.name());
  EXPECT_EQ(approved.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(ErrorReason(approved.status()), "SELF_REVIEW_NOT_ALLOWED");
  absl::StatusOr<v1::AccessRequest> denied = Deny(rita, r.name());
  EXPECT_EQ(denied.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(ErrorReason(denied.status()), "SELF_REVIEW_NOT_ALLOWED");

  v1::AccessRequest unchanged = Get(r.name());
  EXPECT_EQ(unchanged.state(), v1::AccessRequest::PENDING);
  EXPECT_EQ(unchanged.stage(), v1::AccessRequest::INTERNAL_REVIEW);
  EXPECT_EQ(unchanged.decisions_size(), 0);
  EXPECT_EQ(Audit(DemoWorld::kTenantA, Of(r.name())).size(), 1u);
  // Another reviewer may.
  EXPECT_TRUE(Approve(w().reviewer, r.name()).ok());
}

TEST_F(RequestLifecycleTest, TwentyRacingDecisionsExactlyOneWins) {
  v1::AccessRequest r = Create(w().engineer, DemoWorld::Ask());
  std::atomic<int> wins{0};
  std::vector<absl::Status> outcomes(20);
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      const CallerIdentity& who = i % 2 == 0 ? w().reviewer : w().second_reviewer;
      try {
        outcomes[i] = i % 3 == 0 ? Deny(who, r.name()).status() : Approve(who, r.name()).status();
      } catch (const std::exception& e) {
        // The adapter would answer INTERNAL: a failure here, not a crash.
        outcomes[i] = absl::InternalError(std::string("escaped: ") + e.what());
      }
      if (outcomes[i].ok()) ++wins;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  for (const absl::Status& s : outcomes) {
    EXPECT_TRUE(s.ok() || s.code() == Code::kFailedPrecondition || s.code() == Code::kAborted) << s;
  }
  std::vector<v1::AuditEvent> decisions =
      Audit(DemoWorld::kTenantA, Of(r.name()) + " AND action != access_request.create");
  EXPECT_EQ(decisions.size(), 1u);
  EXPECT_EQ(Get(r.name()).decisions_size(), 1);
}

TEST_F(RequestLifecycleTest, RetriesWithARequestIdChangeNothingMore) {
  v1::CreateAccessRequestRequest ask = DemoWorld::Ask();
  ask.set_request_id("5f0c6c1e-8d7a-4c1b-9a51-0c5e2f1d9b7a");
  v1::AccessRequest first = Create(w().engineer, ask);
  size_t events = Audit(DemoWorld::kTenantA, "").size();

  // Retries, some concurrent and one after time has moved, all return the
  // first result.
  std::vector<std::string> names(5);
  std::vector<std::thread> threads;
  for (int i = 0; i < 5; ++i) {
    threads.emplace_back([&, i] {
      try {
        auto again = use_cases().requests().CreateAccessRequest(w().engineer, ask);
        names[i] = again.ok() ? again->name() : again.status().ToString();
      } catch (const std::exception& e) {
        names[i] = std::string("escaped: ") + e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const std::string& name : names) EXPECT_EQ(name, first.name());
  app_->clock().Advance(absl::Minutes(5));
  auto later = use_cases().requests().CreateAccessRequest(w().engineer, ask);
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->name(), first.name());
  EXPECT_EQ(later->create_time().seconds(), first.create_time().seconds());
  EXPECT_EQ(Audit(DemoWorld::kTenantA, "").size(), events);
  EXPECT_EQ(ListedRequests("").size(), 1u);

  // The same request_id for a different request is refused.
  v1::CreateAccessRequestRequest other = ask;
  other.mutable_access_request()->set_justification("something else");
  absl::StatusOr<v1::AccessRequest> reused = use_cases().requests().CreateAccessRequest(w().engineer, other);
  EXPECT_EQ(reused.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ErrorReason(reused.status()), "INVALID_FIELD");

  // Decisions too: the retry of an approval that moved the request on gets
  // the first answer, not "not your stage".
  const std::string approve_id = "6a1d7d2f-9e8b-4d2c-8b62-1d6f3a2eac8b";
  auto a1 = Approve(w().reviewer, first.name(), approve_id);
  ASSERT_TRUE(a1.ok()) << a1.status();
  auto a2 = Approve(w().reviewer, first.name(), approve_id);
  ASSERT_TRUE(a2.ok()) << a2.status();
  EXPECT_EQ(a1->etag(), a2->etag());
  EXPECT_EQ(a2->stage(), v1::AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(Audit(DemoWorld::kTenantA, "action = access_request.approve").size(), 1u);
  // Without the request_id, the same call is a new one, and refused.
  EXPECT_EQ(Approve(w().reviewer, first.name()).status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace lockbox::testing
