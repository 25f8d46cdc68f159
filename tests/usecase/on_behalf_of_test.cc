// A portal acting for a customer's user (SPEC section 8), in-process with a
// fake clock and a real PostgreSQL: only a token from the user's own
// tenant's issuer lets it, once; a bare SPIFFE ID is refused, and refusals
// are audited at most once a minute per caller and tenant; a request_id
// belongs to the effective principal, and is replayed only to whoever may
// still make the change (the case 4).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/support/demo_app_test.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

using Code = absl::StatusCode;

constexpr char kRequestId[] = "5b0c6c5e-2f0e-4a53-9d0e-2d4a0f9c1a11";

class OnBehalfOfTest : public DemoAppTest {
 protected:
  // A request of tenant A waiting for the customer.
  v1::AccessRequest AtCustomerReview() {
    auto pending = w().PendingRequest();
    EXPECT_TRUE(pending.ok()) << pending.status();
    if (!pending.ok()) return {};
    auto internal = Approve(w().reviewer, pending->name());
    EXPECT_TRUE(internal.ok()) << internal.status();
    EXPECT_EQ(internal->stage(), v1::AccessRequest::CUSTOMER_REVIEW);
    return *internal;
  }
  absl::StatusOr<v1::AccessRequest> Approve(const CallerIdentity& who, const std::string& name,
                                            const std::string& request_id = "") {
    v1::ApproveAccessRequestRequest r;
    r.set_name(name);
    r.set_request_id(request_id);
    r.set_comment("ok for ticket TKT-42");
    return use_cases().requests().ApproveAccessRequest(who, r);
  }
  absl::Status ReadTenantA(const CallerIdentity& who) {
    v1::GetTenantRequest r;
    r.set_name(DemoWorld::kTenantA);
    return use_cases().policy().GetTenant(who, r).status();
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
  std::vector<v1::AuditEvent> Refusals() {
    return Audit(DemoWorld::kTenantA, "action = security.on_behalf_of_refused");
  }
};

// Issue case 2, the way it must now go: the portal proves the customer's
// admin with their issuer's token, and the decision is theirs, via it.
TEST_F(OnBehalfOfTest, APortalWithAValidTokenActsAsTheUserAndBothAreAudited) {
  v1::AccessRequest r = AtCustomerReview();
  auto approved = Approve(w().PortalForTenantAAdmin(), r.name());
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  EXPECT_EQ(approved->decisions(1).reviewer(), w().tenant_a_admin.spiffe_id);
  EXPECT_EQ(approved->decisions(1).via(), w().portal.spiffe_id);
  auto events = Audit(DemoWorld::kTenantA, "action = access_request.approve AND actor = \"" +
                                               w().tenant_a_admin.spiffe_id + "\"");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].via(), w().portal.spiffe_id);
  // An ES256 token of the same issuer works as well.
  EXPECT_TRUE(ReadTenantA(CallerWithToken(
                              "service/portal",
                              w().issuer_a->Sign(w().tenant_a_admin.spiffe_id, app_->clock().Now(),
                                                 nlohmann::json::object(), "ES256")))
                  .ok());
}

// Issue case 2 as it was reproduced: a bare SPIFFE ID of an invented user.
TEST_F(OnBehalfOfTest, ABareSpiffeIdIsRefused) {
  v1::AccessRequest r = AtCustomerReview();
  for (const char* user : {"tenant/ma/user/ghost", "tenant/ma/user/dana"}) {
    auto got = Approve(Caller("service/portal", user), r.name());
    EXPECT_EQ(got.status().code(), Code::kPermissionDenied) << user;
    EXPECT_EQ(ErrorReason(got.status()), "ON_BEHALF_OF_NOT_ALLOWED") << user;
  }
  // Not even a token makes an operator a portal.
  auto not_portal = Approve(
      CallerWithToken("operator/alice", w().PortalForTenantAAdmin().on_behalf_of), r.name());
  EXPECT_EQ(ErrorReason(not_portal.status()), "ON_BEHALF_OF_NOT_ALLOWED");
}

TEST_F(OnBehalfOfTest, TheRefusalAuditIsBoundedPerCallerAndMinute) {
  const CallerIdentity bare = Caller("service/portal", "tenant/ma/user/ghost");
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(ErrorReason(ReadTenantA(bare)), "ON_BEHALF_OF_NOT_ALLOWED");
    app_->clock().Advance(absl::Milliseconds(500));  // 50 s in all.
  }
  std::vector<v1::AuditEvent> events = Refusals();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].actor(), w().portal.spiffe_id);
  EXPECT_EQ(events[0].details().at("claimed_user"), SpiffeId("tenant/ma/user/ghost"));
  EXPECT_EQ(events[0].details().count("suppressed"), 0u);

  // Another caller has its own budget.
  const CallerIdentity other = Caller("service/enforcer", "tenant/ma/user/ghost");
  EXPECT_EQ(ErrorReason(ReadTenantA(other)), "ON_BEHALF_OF_NOT_ALLOWED");
  EXPECT_EQ(Refusals().size(), 2u);

  // The next minute: one event, carrying the 99 not audited.
  app_->clock().Advance(absl::Seconds(11));
  EXPECT_EQ(ErrorReason(ReadTenantA(bare)), "ON_BEHALF_OF_NOT_ALLOWED");
  events = Refusals();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events.back().actor(), w().portal.spiffe_id);
  EXPECT_EQ(events.back().details().at("suppressed"), "99");
}

// A page token is the effective principal's, not the single-use token's:
// the next page comes with a fresh token for the same user, and a token for
// another user cannot carry it on.
TEST_F(OnBehalfOfTest, APortalPagesOnWithAFreshTokenForTheSameUserOnly) {
  v1::ListAuditEventsRequest r;
  r.set_parent(DemoWorld::kTenantA);
  r.set_page_size(1);
  auto first = use_cases().audit().ListAuditEvents(w().PortalForTenantAAdmin(), r);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->audit_events_size(), 1);
  ASSERT_FALSE(first->next_page_token().empty());

  r.set_page_token(first->next_page_token());
  auto second = use_cases().audit().ListAuditEvents(w().PortalForTenantAAdmin(), r);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->audit_events_size(), 1);
  EXPECT_NE(second->audit_events(0).name(), first->audit_events(0).name());

  // The auditor of the same tenant may list the same log, but not on the
  // admin's page token; nor may the portal alone, nor the user directly.
  for (const CallerIdentity& other :
       {w().PortalFor(w().tenant_a_auditor), w().portal, w().tenant_a_admin}) {
    auto refused = use_cases().audit().ListAuditEvents(other, r);
    EXPECT_EQ(refused.status().code(), Code::kInvalidArgument) << other.spiffe_id;
    EXPECT_EQ(ErrorReason(refused.status()), "INVALID_PAGE_TOKEN") << other.spiffe_id;
  }
}

TEST_F(OnBehalfOfTest, AReplayedTokenIsRefused) {
  const CallerIdentity once = w().PortalForTenantAAdmin();
  ASSERT_TRUE(ReadTenantA(once).ok());
  absl::Status again = ReadTenantA(once);
  EXPECT_EQ(again.code(), Code::kPermissionDenied);
  EXPECT_EQ(ErrorReason(again), "TOKEN_REPLAYED");
  // Spent even when the call it came with failed.
  const CallerIdentity failing = w().PortalForTenantAAdmin();
  v1::GetAccessRequestRequest missing;
  missing.set_name(std::string(DemoWorld::kTenantA) +
                   "/accessRequests/0b7f2a4e-6d1c-4f3a-9e5b-8c2d1a0f3e47");
  EXPECT_EQ(use_cases().requests().GetAccessRequest(failing, missing).status().code(),
            Code::kNotFound);
  EXPECT_EQ(ErrorReason(ReadTenantA(failing)), "TOKEN_REPLAYED");
  std::vector<v1::AuditEvent> events = Refusals();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].details().at("error_reason"), "TOKEN_REPLAYED");
  EXPECT_EQ(events[0].details().at("claimed_user"), w().tenant_a_admin.spiffe_id);

  // Once expired, the sweeper forgets the spent tokens: they are refused
  // as expired from then on.
  app_->clock().Advance(absl::Minutes(6));
  EXPECT_EQ(app_->database().Query("SELECT count(*) FROM token_uses"), "2");
  auto forgot = use_cases().ForgetExpiredTokenUses();
  ASSERT_TRUE(forgot.ok()) << forgot.status();
  EXPECT_TRUE(*forgot);
  EXPECT_EQ(app_->database().Query("SELECT count(*) FROM token_uses"), "0");
  EXPECT_EQ(ErrorReason(ReadTenantA(once)), "TOKEN_REFUSED");
}

TEST_F(OnBehalfOfTest, TokensFromTheWrongPlaceAreRefused) {
  const absl::Time now = app_->clock().Now();
  const std::string dana = w().tenant_a_admin.spiffe_id;
  auto refused = [&](const std::string& token) {
    return ErrorReason(ReadTenantA(CallerWithToken("service/portal", token)));
  };
  // Tenant B's issuer is real, but not tenant A's.
  EXPECT_EQ(refused(w().issuer_b->Sign(dana, now)), "TOKEN_REFUSED");
  EXPECT_EQ(refused(w().issuer_b->Sign(dana, now, {{"iss", w().issuer_a->issuer()}})),
            "TOKEN_REFUSED");
  EXPECT_EQ(refused(w().issuer_a->Sign(dana, now - absl::Minutes(6))), "TOKEN_REFUSED");
  EXPECT_EQ(refused(w().issuer_a->Sign(dana, now, {{"aud", "another-portal"}})), "TOKEN_REFUSED");
  EXPECT_EQ(refused(UnsignedToken(w().issuer_a->Claims(dana, now))), "TOKEN_REFUSED");
  EXPECT_EQ(refused(w().issuer_a->Sign(w().engineer.spiffe_id, now)), "TOKEN_REFUSED");
  EXPECT_EQ(refused("garbage"), "TOKEN_REFUSED");
  // A tenant that registered no issuer has no portal users.
  ASSERT_TRUE(app_->CreateTenant("mc").ok());
  EXPECT_EQ(refused(w().issuer_a->Sign(SpiffeId("tenant/mc/user/x"), now)), "TOKEN_REFUSED");
}

// Issue case 4: the same bytes on behalf of fabrikam's admin do not return
// contoso's approved request.
TEST_F(OnBehalfOfTest, ARequestIdIsTheEffectivePrincipals) {
  v1::AccessRequest r = AtCustomerReview();
  auto approved = Approve(w().PortalForTenantAAdmin(), r.name(), kRequestId);
  ASSERT_TRUE(approved.ok()) << approved.status();
  ASSERT_EQ(approved->state(), v1::AccessRequest::APPROVED);

  auto as_b = Approve(w().PortalFor(w().tenant_b_admin), r.name(), kRequestId);
  EXPECT_EQ(as_b.status().code(), Code::kPermissionDenied) << as_b.status();
  if (as_b.ok()) EXPECT_NE(as_b->justification(), approved->justification());

  // The same user through the portal again gets the first answer back.
  auto retried = Approve(w().PortalForTenantAAdmin(), r.name(), kRequestId);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->etag(), approved->etag());
}

TEST_F(OnBehalfOfTest, AUserWhoLostPermissionGetsNoReplay) {
  v1::AccessRequest r = AtCustomerReview();
  auto approved = Approve(w().tenant_a_admin, r.name(), kRequestId);
  ASSERT_TRUE(approved.ok()) << approved.status();
  ASSERT_TRUE(Approve(w().tenant_a_admin, r.name(), kRequestId).ok());

  app_->database().Exec("DELETE FROM role_bindings WHERE principal = '" +
                        w().tenant_a_admin.spiffe_id + "'");
  auto replayed = Approve(w().tenant_a_admin, r.name(), kRequestId);
  EXPECT_EQ(replayed.status().code(), Code::kPermissionDenied) << replayed.status();
}

}  // namespace
}  // namespace lockbox::testing
