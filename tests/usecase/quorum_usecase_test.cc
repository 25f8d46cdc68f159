// Quorum, narrowing and "everyone told" (SPEC section 10), in-process on real
// PostgreSQL with a fake clock: each stage waits for its quorum of distinct
// people (a person counts once, certificate or portal), any deny ends it,
// approvals_needed on every read, the grant is what every approval allowed,
// every widening is refused with its reason and nothing written, each
// approval's audit event, and the no-longer-needed messages in the outbox.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "server/domain/lifecycle.h"
#include "server/domain/status.h"
#include "tests/support/demo_app_test.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

using v1::AccessRequest;
using Code = absl::StatusCode;

class QuorumTest : public DemoAppTest {
 protected:
  void SetUp() override {
    DemoAppTest::SetUp();
    if (HasFatalFailure()) return;
    // Contacts with addresses, so messages have somewhere to go.
    for (const char* name : {"ruth", "sam", "tom"}) {
      reviewers_.push_back(Person("operator/" + std::string(name), "operator.reviewer", "",
                                  std::string(name) + "@provider.example"));
    }
    for (const char* name : {"ann", "ben", "cat", "dan"}) {
      admins_.push_back(Person("tenant/ma/user/" + std::string(name), "tenant.admin",
                               DemoWorld::kTenantA, std::string(name) + "@ma.example"));
    }
  }

  CallerIdentity Person(const std::string& path, const std::string& role, const std::string& tenant,
                        const std::string& email) {
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(SpiffeId(path));
    r.mutable_role_binding()->set_role(role);
    r.mutable_role_binding()->set_tenant(tenant);
    r.mutable_role_binding()->set_email(email);
    const CallerIdentity& as = tenant.empty() ? w().admin : w().tenant_a_admin;
    auto bound = use_cases().policy().CreateRoleBinding(as, r);
    EXPECT_TRUE(bound.ok()) << bound.status();
    return Caller(path);
  }

  absl::Status SetQuorum(int internal, int customer) {
    v1::UpdateLockboxPolicyRequest up;
    up.mutable_lockbox_policy()->set_name(std::string(DemoWorld::kTenantA) + "/lockboxPolicy");
    up.mutable_lockbox_policy()->set_internal_approvals(internal);
    up.mutable_lockbox_policy()->set_customer_approvals(customer);
    up.mutable_update_mask()->add_paths("internal_approvals");
    up.mutable_update_mask()->add_paths("customer_approvals");
    return use_cases().policy().UpdateLockboxPolicy(w().tenant_a_admin, up).status();
  }

  AccessRequest Create(const v1::CreateAccessRequestRequest& r = DemoWorld::Ask()) {
    auto got = use_cases().requests().CreateAccessRequest(w().engineer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : AccessRequest();
  }

  absl::StatusOr<AccessRequest> Approve(const CallerIdentity& who, const std::string& name,
                                        v1::ApproveAccessRequestRequest r = {}) {
    r.set_name(name);
    return use_cases().requests().ApproveAccessRequest(who, r);
  }

  AccessRequest Get(const std::string& name) {
    v1::GetAccessRequestRequest r;
    r.set_name(name);
    auto got = use_cases().requests().GetAccessRequest(w().tenant_a_admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : AccessRequest();
  }

  int ListedNeeded(const std::string& name) {
    v1::ListAccessRequestsRequest r;
    r.set_parent(DemoWorld::kTenantA);
    r.set_page_size(1000);
    auto got = use_cases().requests().ListAccessRequests(w().tenant_a_admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    for (const auto& request : got->access_requests()) {
      if (request.name() == name) return request.approvals_needed();
    }
    ADD_FAILURE() << name << " not listed";
    return -1;
  }

  std::vector<v1::AuditEvent> Events(const std::string& name, const std::string& action) {
    v1::ListAuditEventsRequest r;
    r.set_parent(DemoWorld::kTenantA);
    r.set_filter("access_request = \"" + name + "\"");
    r.set_page_size(1000);
    auto got = use_cases().audit().ListAuditEvents(w().admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    std::vector<v1::AuditEvent> out;
    if (!got.ok()) return out;
    for (const auto& e : got->audit_events()) {
      if (e.action() == action) out.push_back(e);
    }
    return out;
  }

  // Who got `event` about `name`: the provider's messages (global list) and
  // the customer's (the tenant's), e-mail recipients only.
  std::set<std::string> Told(const std::string& name, const std::string& event) {
    std::set<std::string> out;
    for (const auto& [who, parent] : {std::pair<const CallerIdentity*, std::string>{&w().admin, ""},
                                      {&w().tenant_a_admin, DemoWorld::kTenantA}}) {
      v1::ListNotificationsRequest r;
      r.set_parent(parent);
      r.set_filter("event = " + event);
      r.set_page_size(1000);
      auto got = use_cases().notifications().ListNotifications(*who, r);
      EXPECT_TRUE(got.ok()) << got.status();
      if (!got.ok()) continue;
      for (const auto& n : got->notifications()) {
        if (n.resource() == name && n.channel() == v1::Notification::EMAIL) {
          out.insert(n.recipient());
        }
      }
    }
    return out;
  }

  std::vector<CallerIdentity> reviewers_, admins_;
};

TEST_F(QuorumTest, EachStageWaitsForItsQuorumAndApprovalsNeededIsOnEveryRead) {
  ASSERT_TRUE(SetQuorum(2, 3).ok());
  AccessRequest r = Create();
  EXPECT_EQ(r.internal_approvals_required(), 2);
  EXPECT_EQ(r.customer_approvals_required(), 3);
  EXPECT_EQ(r.approvals_needed(), 2);
  EXPECT_EQ(Get(r.name()).approvals_needed(), 2);

  auto one = Approve(reviewers_[0], r.name());
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->stage(), AccessRequest::INTERNAL_REVIEW);
  EXPECT_EQ(one->approvals_needed(), 1);
  EXPECT_EQ(Get(r.name()).approvals_needed(), 1);
  EXPECT_EQ(ListedNeeded(r.name()), 1);

  auto two = Approve(reviewers_[1], r.name());
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->stage(), AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(two->approvals_needed(), 3);
  EXPECT_EQ(two->display_status(), "Action needed");

  for (int i = 0; i < 2; ++i) {
    auto got = Approve(admins_[i], r.name());
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->state(), AccessRequest::PENDING);
    EXPECT_EQ(got->approvals_needed(), 2 - i);
  }
  EXPECT_EQ(Get(r.name()).approvals_needed(), 1);
  auto last = Approve(admins_[2], r.name());
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->state(), AccessRequest::APPROVED);
  EXPECT_EQ(last->approvals_needed(), 0);
  EXPECT_FALSE(last->grant().empty());

  // One audit event per approval, each saying where its stage stood; the
  // one that completed the grant also names it.
  std::vector<v1::AuditEvent> events = Events(r.name(), "access_request.approve");
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].details().at("approvals_counted"), "1");
  EXPECT_EQ(events[0].details().at("approvals_needed"), "1");
  EXPECT_EQ(events[1].details().at("approvals_needed"), "0");
  EXPECT_EQ(events[2].details().at("stage"), "CUSTOMER_REVIEW");
  EXPECT_EQ(events[2].details().at("approvals_counted"), "1");
  EXPECT_EQ(events[2].details().at("approvals_needed"), "2");
  EXPECT_EQ(events[4].details().at("approvals_counted"), "3");
  EXPECT_EQ(events[4].details().at("grant"), last->grant());
  EXPECT_EQ(events[4].details().count("grant_data_sources"), 1u);
  EXPECT_EQ(events[3].details().count("grant"), 0u);
}

TEST_F(QuorumTest, OnePersonCountsOnceThroughCertificateOrPortal) {
  ASSERT_TRUE(SetQuorum(2, 2).ok());
  AccessRequest r = Create();
  ASSERT_TRUE(Approve(reviewers_[0], r.name()).ok());
  auto again = Approve(reviewers_[0], r.name());
  EXPECT_EQ(again.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(again.status()), reason::kAlreadyApproved);
  ASSERT_TRUE(Approve(reviewers_[1], r.name()).ok());

  // dana approves with her certificate, then through the portal with a
  // token naming her: the same person, refused, nothing written.
  ASSERT_TRUE(Approve(w().tenant_a_admin, r.name()).ok());
  auto through_portal = Approve(w().PortalForTenantAAdmin(), r.name());
  EXPECT_EQ(through_portal.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(through_portal.status()), reason::kAlreadyApproved);
  EXPECT_EQ(Get(r.name()).decisions_size(), 3);
  EXPECT_EQ(Get(r.name()).approvals_needed(), 1);
  EXPECT_EQ(Events(r.name(), "access_request.approve").size(), 3u);

  // The other way round on a second request: portal first, then certificate.
  AccessRequest s = Create();
  ASSERT_TRUE(Approve(reviewers_[0], s.name()).ok());
  ASSERT_TRUE(Approve(reviewers_[1], s.name()).ok());
  ASSERT_TRUE(Approve(w().PortalForTenantAAdmin(), s.name()).ok());
  EXPECT_EQ(ReasonOf(Approve(w().tenant_a_admin, s.name()).status()), reason::kAlreadyApproved);
  auto done = Approve(admins_[0], s.name());
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), AccessRequest::APPROVED);
}

TEST_F(QuorumTest, AnyDenyEndsItAndTheOthersAreToldTheyAreNoLongerNeeded) {
  ASSERT_TRUE(SetQuorum(3, 2).ok());
  AccessRequest r = Create();
  ASSERT_TRUE(Approve(reviewers_[0], r.name()).ok());
  v1::DenyAccessRequestRequest deny;
  deny.set_name(r.name());
  deny.set_comment("not without a change ticket");
  auto denied = use_cases().requests().DenyAccessRequest(reviewers_[1], deny);
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_EQ(denied->state(), AccessRequest::DENIED);
  EXPECT_EQ(denied->approvals_needed(), 0);
  EXPECT_EQ(Approve(reviewers_[2], r.name()).status().code(), Code::kFailedPrecondition);
  // Reviewers asked at the internal stage who did not decide: tom, not the
  // two who did (ruth approved, sam denied), never the requester.
  std::set<std::string> told = Told(r.name(), "access_request.no_longer_needed");
  EXPECT_EQ(told.count("tom@provider.example"), 1u);
  EXPECT_EQ(told.count("ruth@provider.example"), 0u);
  EXPECT_EQ(told.count("sam@provider.example"), 0u);
  for (const std::string& to : told) EXPECT_EQ(to.find("@ma.example"), std::string::npos) << to;
}

TEST_F(QuorumTest, AStageThatHasItsQuorumTellsItsOtherApprovers) {
  ASSERT_TRUE(SetQuorum(1, 2).ok());
  v1::UpdateLockboxPolicyRequest up;
  up.mutable_lockbox_policy()->set_name(std::string(DemoWorld::kTenantA) + "/lockboxPolicy");
  up.mutable_lockbox_policy()->add_notification_emails("secops@ma.example");
  up.mutable_update_mask()->add_paths("notification_emails");
  ASSERT_TRUE(use_cases().policy().UpdateLockboxPolicy(w().tenant_a_admin, up).ok());
  AccessRequest r = Create();
  ASSERT_TRUE(Approve(reviewers_[0], r.name()).ok());
  std::set<std::string> internal = Told(r.name(), "access_request.no_longer_needed");
  EXPECT_EQ(internal.count("sam@provider.example"), 1u);
  EXPECT_EQ(internal.count("tom@provider.example"), 1u);
  EXPECT_EQ(internal.count("ruth@provider.example"), 0u);
  EXPECT_EQ(internal.count("ann@ma.example"), 0u) << "the customer's stage has just begun";

  ASSERT_TRUE(Approve(admins_[0], r.name()).ok());
  EXPECT_EQ(Told(r.name(), "access_request.no_longer_needed"), internal)
      << "nothing until the customer's stage has its quorum";
  ASSERT_TRUE(Approve(admins_[1], r.name()).ok());
  std::set<std::string> all = Told(r.name(), "access_request.no_longer_needed");
  EXPECT_EQ(all.count("cat@ma.example"), 1u);
  EXPECT_EQ(all.count("dan@ma.example"), 1u);
  EXPECT_EQ(all.count("secops@ma.example"), 1u);
  EXPECT_EQ(all.count("ann@ma.example"), 0u);
  EXPECT_EQ(all.count("ben@ma.example"), 0u);
}

TEST_F(QuorumTest, CancelAndExpiryTellWhoeverWasAsked) {
  AccessRequest r = Create();
  v1::CancelAccessRequestRequest cancel;
  cancel.set_name(r.name());
  ASSERT_TRUE(use_cases().requests().CancelAccessRequest(w().engineer, cancel).ok());
  std::set<std::string> told = Told(r.name(), "access_request.no_longer_needed");
  EXPECT_EQ(told.count("ruth@provider.example"), 1u);

  AccessRequest e = Create();
  ASSERT_TRUE(Approve(reviewers_[0], e.name()).ok());
  app_->clock().Advance(absl::Hours(96));
  while (true) {
    auto expired = use_cases().requests().ExpireOneRequest();
    ASSERT_TRUE(expired.ok()) << expired.status();
    if (!*expired) break;
  }
  told = Told(e.name(), "access_request.no_longer_needed");
  EXPECT_EQ(told.count("ann@ma.example"), 1u) << "the customer's stage it expired in";
}

TEST_F(QuorumTest, TheGrantIsWhatEveryApprovalAllowed) {
  ASSERT_TRUE(SetQuorum(1, 2).ok());
  const absl::Time now = app_->clock().Now();
  AccessRequest r = Create();  // All sources, the policy's 8 hours, now.
  v1::ApproveAccessRequestRequest internal;
  internal.add_data_sources("sql");
  *internal.mutable_access_duration() = ToProto(absl::Hours(6));
  auto moved = Approve(reviewers_[0], r.name(), internal);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->stage(), AccessRequest::CUSTOMER_REVIEW);
  v1::ApproveAccessRequestRequest first;
  *first.mutable_access_duration() = ToProto(absl::Hours(2));
  ASSERT_TRUE(Approve(admins_[0], r.name(), first).ok());
  v1::ApproveAccessRequestRequest second;
  *second.mutable_start_time() = ToProto(now + absl::Hours(1));
  *second.mutable_access_duration() = ToProto(absl::Hours(4));
  auto approved = Approve(admins_[1], r.name(), second);
  ASSERT_TRUE(approved.ok()) << approved.status();
  ASSERT_EQ(approved->state(), AccessRequest::APPROVED);
  EXPECT_EQ(FromProto(approved->decisions(1).access_duration()), absl::Hours(2));

  v1::GetGrantRequest g;
  g.set_name(approved->grant());
  auto grant = use_cases().grants().GetGrant(w().engineer, g);
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_EQ(grant->pinned_data_sources_size(), 1);
  EXPECT_EQ(grant->pinned_data_sources(0).id(), "sql");
  EXPECT_EQ(FromProto(grant->start_time()), now + absl::Hours(1));
  // Each approval allows a window and the grant is their intersection: the
  // first admin's 2 hours from the grant end at now + 2 h, before the
  // second admin's 4 hours from now + 1 h do.
  EXPECT_EQ(FromProto(grant->expire_time()), now + absl::Hours(2));

  std::vector<v1::AuditEvent> events = Events(r.name(), "access_request.approve");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].details().at("narrowed.data_sources"), "sql");
  EXPECT_EQ(events[0].details().at("narrowed.access_duration"), "21600s");
  EXPECT_EQ(events[1].details().at("narrowed.access_duration"), "7200s");
  EXPECT_EQ(events[1].details().count("narrowed.start_time"), 0u);
  EXPECT_EQ(events[2].details().count("narrowed.start_time"), 1u);
  EXPECT_EQ(events[2].details().at("grant_data_sources"), "sql");
}

TEST_F(QuorumTest, AnInternalNarrowingToUnsupportedSourcesNeedsNoCustomer) {
  AccessRequest r = Create();
  v1::ApproveAccessRequestRequest internal;
  internal.add_data_sources("rcs");
  auto approved = Approve(reviewers_[0], r.name(), internal);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), AccessRequest::APPROVED);
}

TEST_F(QuorumTest, EveryWideningIsRefusedWithItsReasonAndNothingWritten) {
  v1::CreateAccessRequestRequest ask = DemoWorld::Ask();
  ask.mutable_access_request()->add_data_sources("sql");
  *ask.mutable_access_request()->mutable_access_duration() = ToProto(absl::Hours(4));
  *ask.mutable_access_request()->mutable_start_time() =
      ToProto(app_->clock().Now() + absl::Hours(2));
  AccessRequest r = Create(ask);

  struct Case {
    const char* what;
    v1::ApproveAccessRequestRequest narrowing;
    const char* field;
    const char* reason;
  };
  std::vector<Case> cases;
  auto add = [&](const char* what, const char* field, const char* why, auto fill) {
    Case c{what, {}, field, why};
    fill(&c.narrowing);
    cases.push_back(c);
  };
  add("a longer period", "access_duration", "APPROVAL_WIDENS",
      [](v1::ApproveAccessRequestRequest* n) {
        *n->mutable_access_duration() = ToProto(absl::Hours(4) + absl::Seconds(1));
      });
  add("a source not asked for", "data_sources", "APPROVAL_WIDENS",
      [](v1::ApproveAccessRequestRequest* n) { n->add_data_sources("rcs"); });
  add("an earlier start", "start_time", "APPROVAL_WIDENS", [&](v1::ApproveAccessRequestRequest* n) {
    *n->mutable_start_time() = ToProto(app_->clock().Now() + absl::Hours(1));
  });
  add("a start after the request's expiry", "start_time", "APPROVAL_WIDENS",
      [&](v1::ApproveAccessRequestRequest* n) {
        *n->mutable_start_time() = ToProto(FromProto(r.expire_time()) + absl::Seconds(1));
      });
  add("an unknown source", "data_sources", "INVALID_FIELD",
      [](v1::ApproveAccessRequestRequest* n) { n->add_data_sources("nope"); });
  add("a source twice", "data_sources", "INVALID_FIELD", [](v1::ApproveAccessRequestRequest* n) {
    n->add_data_sources("sql");
    n->add_data_sources("sql");
  });
  add("less than a minute", "access_duration", "INVALID_FIELD",
      [](v1::ApproveAccessRequestRequest* n) {
        *n->mutable_access_duration() = ToProto(absl::Seconds(30));
      });
  for (const Case& c : cases) {
    auto got = Approve(reviewers_[0], r.name(), c.narrowing);
    EXPECT_EQ(got.status().code(), Code::kInvalidArgument) << c.what;
    EXPECT_EQ(ReasonOf(got.status()), c.reason) << c.what << ": " << got.status();
    EXPECT_EQ(FieldOf(got.status()), c.field) << c.what;
  }
  AccessRequest after = Get(r.name());
  EXPECT_EQ(after.decisions_size(), 0);
  EXPECT_EQ(after.etag(), r.etag());
  EXPECT_TRUE(Events(r.name(), "access_request.approve").empty());
}

TEST_F(QuorumTest, ARetryWithTheSameRequestIdReturnsTheFirstAnswer) {
  ASSERT_TRUE(SetQuorum(2, 1).ok());
  AccessRequest r = Create();
  v1::ApproveAccessRequestRequest a;
  a.set_request_id("4c1d5c3e-0000-4000-8000-000000000001");
  *a.mutable_access_duration() = ToProto(absl::Hours(1));
  auto first = Approve(reviewers_[0], r.name(), a);
  ASSERT_TRUE(first.ok()) << first.status();
  auto retry = Approve(reviewers_[0], r.name(), a);
  ASSERT_TRUE(retry.ok()) << retry.status() << " (not ALREADY_APPROVED: the stored answer)";
  EXPECT_EQ(retry->etag(), first->etag());
  EXPECT_EQ(retry->approvals_needed(), 1);
  EXPECT_EQ(Events(r.name(), "access_request.approve").size(), 1u);
}

TEST_F(QuorumTest, ThePolicysQuorumFieldsAreBounded) {
  struct Case {
    int internal, customer;
    bool ok;
    const char* field;
  };
  for (const Case& c : std::vector<Case>{{0, 0, true, ""},
                                         {3, 5, true, ""},
                                         {4, 1, false, "lockbox_policy.internal_approvals"},
                                         {1, 6, false, "lockbox_policy.customer_approvals"},
                                         {-1, 1, false, "lockbox_policy.internal_approvals"}}) {
    absl::Status s = SetQuorum(c.internal, c.customer);
    EXPECT_EQ(s.ok(), c.ok) << c.internal << "/" << c.customer << ": " << s;
    if (!c.ok) EXPECT_EQ(FieldOf(s), c.field);
  }
  v1::GetLockboxPolicyRequest get;
  get.set_name(std::string(DemoWorld::kTenantA) + "/lockboxPolicy");
  auto policy = use_cases().policy().GetLockboxPolicy(w().tenant_a_admin, get);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->internal_approvals(), 3);
  EXPECT_EQ(policy->customer_approvals(), 5);
  // A request keeps the quorum of the policy it was created under.
  AccessRequest r = Create();
  ASSERT_TRUE(SetQuorum(1, 1).ok());
  EXPECT_EQ(Get(r.name()).internal_approvals_required(), 3);
  EXPECT_EQ(Get(r.name()).approvals_needed(), 3);
}

}  // namespace
}  // namespace lockbox::testing
