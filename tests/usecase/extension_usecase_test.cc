// Extensions (SPEC section 10), in-process on real PostgreSQL with a fake
// clock: an extension's whole life through the stages its grant's
// environment needs, the grant's end moved (CheckAccess after the old end
// and until the new one), the policy's max_extensions, and every refusal:
// pending, someone else's grant, an ended grant, an emergency grant, the
// grant ending before the approval. Audit events and messages checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "tests/support/demo_app_test.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

using Code = absl::StatusCode;

class ExtensionUseCaseTest : public DemoAppTest {
 protected:
  absl::StatusOr<v1::AccessRequest> Extend(const CallerIdentity& who, const std::string& grant,
                                           std::optional<absl::Duration> more = absl::Hours(2),
                                           const std::string& request_id = "") {
    v1::ExtendGrantRequest r;
    r.set_name(grant);
    if (more) *r.mutable_access_duration() = ToProto(*more);
    r.set_justification("the migration needs more time");
    r.set_request_id(request_id);
    return use_cases().grants().ExtendGrant(who, r);
  }
  absl::StatusOr<v1::AccessRequest> Approve(const CallerIdentity& who, const std::string& name) {
    v1::ApproveAccessRequestRequest r;
    r.set_name(name);
    return use_cases().requests().ApproveAccessRequest(who, r);
  }
  // Approved by every stage it needs, as DemoWorld::ActiveGrant does.
  v1::AccessRequest ApproveAll(const std::string& name, const CallerIdentity& customer) {
    absl::StatusOr<v1::AccessRequest> got = Approve(w().reviewer, name);
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok() && got->state() == v1::AccessRequest::PENDING) got = Approve(customer, name);
    EXPECT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got.ok() ? got->state() : v1::AccessRequest::STATE_UNSPECIFIED,
              v1::AccessRequest::APPROVED);
    return got.ok() ? *got : v1::AccessRequest();
  }
  v1::Grant GetGrant(const std::string& name) {
    v1::GetGrantRequest r;
    r.set_name(name);
    auto got = use_cases().grants().GetGrant(w().engineer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::Grant();
  }
  v1::AccessRequest GetRequest(const std::string& name) {
    v1::GetAccessRequestRequest r;
    r.set_name(name);
    auto got = use_cases().requests().GetAccessRequest(w().engineer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::AccessRequest();
  }
  bool Allowed(const std::string& environment) {
    v1::CheckAccessRequest r;
    r.set_principal(w().engineer.spiffe_id);
    r.set_environment(environment);
    auto got = use_cases().grants().CheckAccess(w().enforcer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() && got->allowed();
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
  // The provider's messages (to its reviewers and engineers) are in the
  // global list.
  std::vector<v1::Notification> Messages(const std::string& resource, const std::string& event) {
    v1::ListNotificationsRequest r;
    r.set_filter(absl::StrCat("resource = \"", resource, "\" AND event = \"", event,
                              "\" AND channel = EMAIL"));
    r.set_page_size(1000);
    auto got = use_cases().notifications().ListNotifications(w().admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return {};
    return {got->notifications().begin(), got->notifications().end()};
  }
  void SetMaxExtensions(int n) {
    v1::UpdateLockboxPolicyRequest r;
    r.mutable_lockbox_policy()->set_name(absl::StrCat(DemoWorld::kTenantA, "/lockboxPolicy"));
    r.mutable_lockbox_policy()->set_max_extensions(n);
    r.mutable_update_mask()->add_paths("max_extensions");
    auto got = use_cases().policy().UpdateLockboxPolicy(w().tenant_a_admin, r);
    ASSERT_TRUE(got.ok()) << got.status();
  }
  // An extension asked and approved by every stage; the grant as it is then.
  v1::Grant Extended(const v1::Grant& grant, absl::Duration more = absl::Hours(2)) {
    absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, grant.name(), more);
    EXPECT_TRUE(ext.ok()) << ext.status();
    if (!ext.ok()) return v1::Grant();
    ApproveAll(ext->name(), w().tenant_a_admin);
    return GetGrant(grant.name());
  }
  std::string Count(const std::string& sql) { return app_->database().Query(sql); }
  // A provider person with an address, so that their messages are made.
  void BindWithEmail(const std::string& path, const std::string& role, const std::string& email) {
    v1::CreateRoleBindingRequest b;
    b.mutable_role_binding()->set_principal(SpiffeId(path));
    b.mutable_role_binding()->set_role(role);
    b.mutable_role_binding()->set_email(email);
    auto got = use_cases().policy().CreateRoleBinding(w().admin, b);
    ASSERT_TRUE(got.ok()) << got.status();
  }
};

std::string DetailOf(const v1::AuditEvent& e, const std::string& key) {
  auto it = e.details().find(key);
  return it == e.details().end() ? "" : it->second;
}

TEST_F(ExtensionUseCaseTest, AnExtensionsWholeLifeThroughBothStagesMovesTheGrantsEnd) {
  BindWithEmail("operator/rita", "operator.reviewer", "rita@provider.example");
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  const absl::Time old_end = FromProto(grant->expire_time());
  app_->clock().Advance(absl::Minutes(10));

  absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, grant->name(), absl::Hours(2));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(ext->extends_grant(), grant->name());
  EXPECT_EQ(ext->state(), v1::AccessRequest::PENDING);
  EXPECT_EQ(ext->stage(), v1::AccessRequest::INTERNAL_REVIEW);
  EXPECT_EQ(ext->environment(), grant->environment());
  EXPECT_EQ(ext->requester(), w().engineer.spiffe_id);
  EXPECT_EQ(ext->support_ticket_id(), "TKT-42");
  EXPECT_EQ(FromProto(ext->access_duration()), absl::Hours(2));
  EXPECT_EQ(GetRequest(ext->name()).extends_grant(), grant->name());

  // Created: audited with its grant, and the reviewers are asked.
  std::vector<v1::AuditEvent> created =
      Audit(DemoWorld::kTenantA, "action = \"access_request.create\"");
  auto it = std::find_if(created.begin(), created.end(),
                         [&](const v1::AuditEvent& e) { return e.resource() == ext->name(); });
  ASSERT_NE(it, created.end());
  EXPECT_EQ(DetailOf(*it, "extends_grant"), grant->name());
  std::vector<v1::Notification> asked = Messages(ext->name(), "access_request.created");
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].recipient(), "rita@provider.example");

  // The environment is protected: the customer's stage follows the
  // internal one, as for any request.
  absl::StatusOr<v1::AccessRequest> internal = Approve(w().reviewer, ext->name());
  ASSERT_TRUE(internal.ok()) << internal.status();
  EXPECT_EQ(internal->state(), v1::AccessRequest::PENDING);
  EXPECT_EQ(internal->stage(), v1::AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(FromProto(GetGrant(grant->name()).expire_time()), old_end) << "not yet moved";
  absl::StatusOr<v1::AccessRequest> approved = Approve(w().tenant_a_admin, ext->name());
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  EXPECT_EQ(approved->grant(), grant->name());

  v1::Grant after = GetGrant(grant->name());
  const absl::Time new_end = old_end + absl::Hours(2);
  EXPECT_EQ(FromProto(after.expire_time()), new_end);
  ASSERT_EQ(after.extensions_size(), 1);
  EXPECT_EQ(after.extensions(0), ext->name());
  EXPECT_EQ(after.state(), v1::Grant::ACTIVE);

  std::vector<v1::AuditEvent> approvals =
      Audit(DemoWorld::kTenantA,
            absl::StrCat("action = \"access_request.approve\" AND access_request = \"", ext->name(),
                         "\""));
  ASSERT_EQ(approvals.size(), 2u);
  auto last = std::find_if(approvals.begin(), approvals.end(), [](const v1::AuditEvent& e) {
    return e.details().count("grant_previous_expire_time") > 0;
  });
  ASSERT_NE(last, approvals.end());
  EXPECT_EQ(DetailOf(*last, "grant"), grant->name());
  EXPECT_EQ(DetailOf(*last, "grant_previous_expire_time"),
            absl::FormatTime(absl::RFC3339_full, old_end, absl::UTCTimeZone()));
  EXPECT_EQ(FromProto(last->access_expire_time()), new_end);

  // Access after the old end, until the new one, to the second.
  app_->clock().Set(old_end + absl::Seconds(1));
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentA));
  app_->clock().Set(new_end - absl::Seconds(1));
  EXPECT_TRUE(Allowed(DemoWorld::kEnvironmentA));
  app_->clock().Set(new_end);
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA));
  EXPECT_EQ(GetGrant(grant->name()).state(), v1::Grant::EXPIRED);
}

TEST_F(ExtensionUseCaseTest, TheRequesterIsToldOfTheApprovalWithTheGrantsNewEnd) {
  BindWithEmail("operator/eve", "operator.engineer", "eve@provider.example");
  const CallerIdentity eve = Caller("operator/eve");
  absl::StatusOr<v1::AccessRequest> asked =
      use_cases().requests().CreateAccessRequest(eve, DemoWorld::Ask(DemoWorld::kEnvironmentB));
  ASSERT_TRUE(asked.ok()) << asked.status();
  v1::AccessRequest approved = ApproveAll(asked->name(), w().tenant_b_admin);
  absl::StatusOr<v1::AccessRequest> ext = Extend(eve, approved.grant(), absl::Hours(3));
  ASSERT_TRUE(ext.ok()) << ext.status();
  ApproveAll(ext->name(), w().tenant_b_admin);
  v1::GetGrantRequest get;
  get.set_name(approved.grant());
  absl::StatusOr<v1::Grant> grant = use_cases().grants().GetGrant(eve, get);
  ASSERT_TRUE(grant.ok()) << grant.status();
  std::vector<v1::Notification> decided = Messages(ext->name(), "access_request.decided");
  ASSERT_EQ(decided.size(), 1u);
  EXPECT_EQ(decided[0].recipient(), "eve@provider.example");
  EXPECT_NE(decided[0].subject().find("approved"), std::string::npos) << decided[0].subject();
}

TEST_F(ExtensionUseCaseTest, AnUnprotectedEnvironmentsExtensionNeedsOnlyTheInternalReview) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant(DemoWorld::kEnvironmentB);
  ASSERT_TRUE(grant.ok()) << grant.status();
  absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, grant->name(), absl::Hours(1));
  ASSERT_TRUE(ext.ok()) << ext.status();
  absl::StatusOr<v1::AccessRequest> approved = Approve(w().reviewer, ext->name());
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  EXPECT_EQ(FromProto(GetGrant(grant->name()).expire_time()),
            FromProto(grant->expire_time()) + absl::Hours(1));
}

TEST_F(ExtensionUseCaseTest, ThePeriodDefaultsToThePolicysAccessDurationAndIsBoundedByIt) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  absl::StatusOr<v1::AccessRequest> too_long =
      Extend(w().engineer, grant->name(), kDefaultAccessDuration + absl::Seconds(1));
  EXPECT_EQ(too_long.status().code(), Code::kInvalidArgument);
  absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, grant->name(), std::nullopt);
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(FromProto(ext->access_duration()), kDefaultAccessDuration);
  // An extension still undecided when its grant ends is moot: it expires
  // with the grant at the latest.
  EXPECT_EQ(FromProto(ext->expire_time()), FromProto(grant->expire_time()));
}

TEST_F(ExtensionUseCaseTest, MaxExtensionsIsOneByDefaultAndThePolicysNumberOtherwise) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  v1::Grant once = Extended(*grant);
  EXPECT_EQ(once.extensions_size(), 1);
  absl::StatusOr<v1::AccessRequest> second = Extend(w().engineer, grant->name());
  EXPECT_EQ(second.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(second.status()), "EXTENSIONS_EXHAUSTED");

  SetMaxExtensions(2);
  v1::Grant twice = Extended(*grant);
  EXPECT_EQ(twice.extensions_size(), 2);
  EXPECT_EQ(FromProto(twice.expire_time()), FromProto(grant->expire_time()) + absl::Hours(4));
  EXPECT_EQ(ErrorReason(Extend(w().engineer, grant->name()).status()), "EXTENSIONS_EXHAUSTED");
}

TEST_F(ExtensionUseCaseTest, ASecondExtensionWhileOneIsPendingIsRefused) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  absl::StatusOr<v1::AccessRequest> first = Extend(w().engineer, grant->name());
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<v1::AccessRequest> second = Extend(w().engineer, grant->name());
  EXPECT_EQ(second.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(second.status()), "EXTENSION_PENDING");
  // Once the first is decided (denied here), another may be asked.
  v1::DenyAccessRequestRequest deny;
  deny.set_name(first->name());
  deny.set_comment("finish within the window");
  ASSERT_TRUE(use_cases().requests().DenyAccessRequest(w().reviewer, deny).ok());
  EXPECT_TRUE(Extend(w().engineer, grant->name()).ok());
  EXPECT_EQ(GetGrant(grant->name()).extensions_size(), 0) << "a denial moves nothing";
}

TEST_F(ExtensionUseCaseTest, ARetryWithTheSameRequestIdGetsTheFirstExtension) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  const std::string id = "3f1e0c2a-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
  absl::StatusOr<v1::AccessRequest> first = Extend(w().engineer, grant->name(), absl::Hours(2), id);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<v1::AccessRequest> again = Extend(w().engineer, grant->name(), absl::Hours(2), id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->name(), first->name());
  EXPECT_EQ(Count("SELECT count(*) FROM access_requests WHERE extends_grant <> ''"), "1");
}

TEST_F(ExtensionUseCaseTest, OnlyTheGrantsOwnEngineerMayExtendIt) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  std::string carol = SpiffeId("operator/carol");
  ASSERT_TRUE(app_->Bind(carol, "operator.engineer").ok());
  absl::StatusOr<v1::AccessRequest> other = Extend(Caller("operator/carol"), grant->name());
  EXPECT_EQ(other.status().code(), Code::kPermissionDenied) << other.status();
  // Not an engineer at all: refused before anything is read.
  EXPECT_EQ(Extend(w().reviewer, grant->name()).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(Extend(w().tenant_a_admin, grant->name()).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(Count("SELECT count(*) FROM access_requests WHERE extends_grant <> ''"), "0");
}

TEST_F(ExtensionUseCaseTest, AnEndedGrantIsNotExtensible) {
  absl::StatusOr<v1::Grant> released = w().ActiveGrant();
  ASSERT_TRUE(released.ok()) << released.status();
  v1::ReleaseGrantRequest release;
  release.set_name(released->name());
  ASSERT_TRUE(use_cases().grants().ReleaseGrant(w().engineer, release).ok());
  absl::StatusOr<v1::AccessRequest> got = Extend(w().engineer, released->name());
  EXPECT_EQ(got.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(got.status()), "GRANT_NOT_EXTENSIBLE");

  absl::StatusOr<v1::Grant> expired = w().ActiveGrant();
  ASSERT_TRUE(expired.ok()) << expired.status();
  app_->clock().Set(FromProto(expired->expire_time()));
  EXPECT_EQ(ErrorReason(Extend(w().engineer, expired->name()).status()), "GRANT_NOT_EXTENSIBLE");
}

TEST_F(ExtensionUseCaseTest, AnEmergencyGrantIsNotExtensible) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  // Break-glass makes these; here the row is marked as one.
  app_->database().Query(absl::StrCat("UPDATE grants SET emergency = true WHERE id = '",
                                      IdOfName(grant->name()), "'"));
  absl::StatusOr<v1::AccessRequest> got = Extend(w().engineer, grant->name());
  EXPECT_EQ(got.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(got.status()), "GRANT_NOT_EXTENSIBLE");
}

TEST_F(ExtensionUseCaseTest, AnExtensionUndecidedWhenItsGrantEndsExpiresWithIt) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, grant->name());
  ASSERT_TRUE(ext.ok()) << ext.status();
  ASSERT_TRUE(Approve(w().reviewer, ext->name()).ok());
  app_->clock().Set(FromProto(grant->expire_time()));
  absl::StatusOr<v1::AccessRequest> late = Approve(w().tenant_a_admin, ext->name());
  EXPECT_EQ(late.status().code(), Code::kFailedPrecondition) << late.status();
  EXPECT_EQ(GetRequest(ext->name()).state(), v1::AccessRequest::EXPIRED);
  v1::Grant after = GetGrant(grant->name());
  EXPECT_EQ(after.state(), v1::Grant::EXPIRED);
  EXPECT_EQ(after.extensions_size(), 0);
  EXPECT_FALSE(Allowed(DemoWorld::kEnvironmentA));
}

TEST_F(ExtensionUseCaseTest, ReleasingOrRevokingTheGrantCancelsItsPendingExtension) {
  for (bool revoke : {false, true}) {
    SCOPED_TRACE(revoke ? "revoke" : "release");
    absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
    ASSERT_TRUE(grant.ok()) << grant.status();
    absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, grant->name());
    ASSERT_TRUE(ext.ok()) << ext.status();
    if (revoke) {
      v1::RevokeGrantRequest r;
      r.set_name(grant->name());
      r.set_reason("done");
      ASSERT_TRUE(use_cases().grants().RevokeGrant(w().tenant_a_admin, r).ok());
    } else {
      v1::ReleaseGrantRequest r;
      r.set_name(grant->name());
      ASSERT_TRUE(use_cases().grants().ReleaseGrant(w().engineer, r).ok());
    }
    EXPECT_EQ(GetRequest(ext->name()).state(), v1::AccessRequest::CANCELLED);
    std::vector<v1::AuditEvent> cancelled =
        Audit(DemoWorld::kTenantA, absl::StrCat("action = \"access_request.cancel\" AND "
                                                "access_request = \"",
                                                ext->name(), "\""));
    ASSERT_EQ(cancelled.size(), 1u);
    EXPECT_EQ(DetailOf(cancelled[0], "extends_grant"), grant->name());
    EXPECT_EQ(Approve(w().reviewer, ext->name()).status().code(), Code::kFailedPrecondition);
  }
}

// Review finding 7: an extension nothing can complete any more is not left
// waiting for approvers (and its engineer blocked) until it expires: the
// approval that finds it so is refused, and the extension cancelled by the
// system in that approval's transaction.
TEST_F(ExtensionUseCaseTest, AnApprovalAfterThePolicyLoweredMaxExtensionsIsRefusedAndCancelsIt) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant(DemoWorld::kEnvironmentA);
  ASSERT_TRUE(grant.ok()) << grant.status();
  absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, grant->name());
  ASSERT_TRUE(ext.ok()) << ext.status();
  ASSERT_TRUE(Approve(w().reviewer, ext->name()).ok());
  SetMaxExtensions(0);
  v1::UpdateLockboxPolicyRequest emails;
  emails.mutable_lockbox_policy()->set_name(absl::StrCat(DemoWorld::kTenantA, "/lockboxPolicy"));
  emails.mutable_lockbox_policy()->add_notification_emails("secops@ma.example");
  emails.mutable_update_mask()->add_paths("notification_emails");
  ASSERT_TRUE(use_cases().policy().UpdateLockboxPolicy(w().tenant_a_admin, emails).ok());
  absl::StatusOr<v1::AccessRequest> refused = Approve(w().tenant_a_admin, ext->name());
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(refused.status()), "EXTENSIONS_EXHAUSTED");
  v1::AccessRequest cancelled = GetRequest(ext->name());
  EXPECT_EQ(cancelled.state(), v1::AccessRequest::CANCELLED);
  // No decision of the refused approver is recorded: only the reviewer's.
  ASSERT_EQ(cancelled.decisions_size(), 1);
  EXPECT_EQ(cancelled.decisions(0).reviewer(), w().reviewer.spiffe_id);
  EXPECT_EQ(GetGrant(grant->name()).expire_time().seconds(), grant->expire_time().seconds());
  std::vector<v1::AuditEvent> events =
      Audit(DemoWorld::kTenantA, absl::StrCat("access_request = \"", ext->name(), "\""));
  ASSERT_FALSE(events.empty());
  const v1::AuditEvent& last = events.back();
  EXPECT_EQ(last.action(), "access_request.cancel");
  EXPECT_EQ(last.actor(), "lockboxd");
  EXPECT_EQ(DetailOf(last, "extends_grant"), grant->name());
  EXPECT_NE(DetailOf(last, "reason").find("policy allows 0"), std::string::npos)
      << DetailOf(last, "reason");
  // The customer's admins asked are told it no longer needs them.
  v1::ListNotificationsRequest told;
  told.set_parent(DemoWorld::kTenantA);
  told.set_filter("event = access_request.no_longer_needed");
  told.set_page_size(1000);
  auto notices = use_cases().notifications().ListNotifications(w().tenant_a_admin, told);
  ASSERT_TRUE(notices.ok()) << notices.status();
  int to_secops = 0;
  for (const v1::Notification& n : notices->notifications()) {
    if (n.resource() == ext->name() && n.recipient() == "secops@ma.example") ++to_secops;
  }
  EXPECT_EQ(to_secops, 1);
  // Nothing is left to approve.
  EXPECT_EQ(Approve(w().tenant_a_admin, ext->name()).status().code(), Code::kFailedPrecondition);
}

TEST_F(ExtensionUseCaseTest, ListAccessRequestsFiltersByTheGrantExtended) {
  absl::StatusOr<v1::Grant> a = w().ActiveGrant();
  absl::StatusOr<v1::Grant> b = w().ActiveGrant();
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, a->name());
  ASSERT_TRUE(ext.ok()) << ext.status();
  ASSERT_TRUE(Extend(w().engineer, b->name()).ok());
  v1::ListAccessRequestsRequest r;
  r.set_parent(DemoWorld::kTenantA);
  r.set_filter(absl::StrCat("extends_grant = \"", a->name(), "\""));
  auto got = use_cases().requests().ListAccessRequests(w().reviewer, r);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->access_requests_size(), 1);
  EXPECT_EQ(got->access_requests(0).name(), ext->name());
}

TEST_F(ExtensionUseCaseTest, AnApproverMayShortenTheExtensionNeverLengthenIt) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, grant->name(), absl::Hours(2));
  ASSERT_TRUE(ext.ok()) << ext.status();
  v1::ApproveAccessRequestRequest wider;
  wider.set_name(ext->name());
  *wider.mutable_access_duration() = ToProto(absl::Hours(3));
  absl::StatusOr<v1::AccessRequest> refused =
      use_cases().requests().ApproveAccessRequest(w().reviewer, wider);
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument) << refused.status();
  EXPECT_EQ(ErrorReason(refused.status()), "APPROVAL_WIDENS");

  // Its sources and start are the grant's: narrowing them is refused.
  v1::ApproveAccessRequestRequest sources;
  sources.set_name(ext->name());
  sources.add_data_sources("sql");
  absl::StatusOr<v1::AccessRequest> not_allowed =
      use_cases().requests().ApproveAccessRequest(w().reviewer, sources);
  EXPECT_EQ(not_allowed.status().code(), Code::kInvalidArgument) << not_allowed.status();
  EXPECT_EQ(GetRequest(ext->name()).decisions_size(), 0) << "nothing written";

  v1::ApproveAccessRequestRequest shorter;
  shorter.set_name(ext->name());
  *shorter.mutable_access_duration() = ToProto(absl::Minutes(30));
  ASSERT_TRUE(use_cases().requests().ApproveAccessRequest(w().reviewer, shorter).ok());
  absl::StatusOr<v1::AccessRequest> approved = Approve(w().tenant_a_admin, ext->name());
  ASSERT_TRUE(approved.ok()) << approved.status();
  ASSERT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  // The shortest period every approval allowed.
  v1::Grant after = GetGrant(grant->name());
  EXPECT_EQ(FromProto(after.expire_time()), FromProto(grant->expire_time()) + absl::Minutes(30));
  std::vector<v1::AuditEvent> approvals =
      Audit(DemoWorld::kTenantA,
            absl::StrCat("action = \"access_request.approve\" AND access_request = \"", ext->name(),
                         "\""));
  auto last = std::find_if(approvals.begin(), approvals.end(), [](const v1::AuditEvent& e) {
    return e.details().count("grant_previous_expire_time") > 0;
  });
  ASSERT_NE(last, approvals.end());
  EXPECT_EQ(FromProto(last->access_expire_time()), FromProto(after.expire_time()));
}

TEST_F(ExtensionUseCaseTest, AnExtensionNeedsThePolicysQuorumAtEachStage) {
  absl::StatusOr<v1::Grant> grant = w().ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  v1::UpdateLockboxPolicyRequest p;
  p.mutable_lockbox_policy()->set_name(absl::StrCat(DemoWorld::kTenantA, "/lockboxPolicy"));
  p.mutable_lockbox_policy()->set_internal_approvals(2);
  p.mutable_update_mask()->add_paths("internal_approvals");
  ASSERT_TRUE(use_cases().policy().UpdateLockboxPolicy(w().tenant_a_admin, p).ok());

  absl::StatusOr<v1::AccessRequest> ext = Extend(w().engineer, grant->name(), absl::Hours(1));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(ext->internal_approvals_required(), 2);
  absl::StatusOr<v1::AccessRequest> one = Approve(w().reviewer, ext->name());
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->stage(), v1::AccessRequest::INTERNAL_REVIEW);
  EXPECT_EQ(one->approvals_needed(), 1);
  // The same person counts once.
  EXPECT_EQ(ErrorReason(Approve(w().reviewer, ext->name()).status()), "ALREADY_APPROVED");
  absl::StatusOr<v1::AccessRequest> two = Approve(w().second_reviewer, ext->name());
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->stage(), v1::AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(FromProto(GetGrant(grant->name()).expire_time()), FromProto(grant->expire_time()))
      << "nothing moves before the last stage's quorum";
  absl::StatusOr<v1::AccessRequest> approved = Approve(w().tenant_a_admin, ext->name());
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  EXPECT_EQ(FromProto(GetGrant(grant->name()).expire_time()),
            FromProto(grant->expire_time()) + absl::Hours(1));
}

}  // namespace
}  // namespace lockbox::testing
