// Scheduled access (SPEC section 10), the rules alone on a fake clock: a
// request's start_time, the grant that reads SCHEDULED until it and allows
// nothing before it, its period counted from the start, and its early end.
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "server/domain/clock.h"
#include "server/domain/lifecycle.h"
#include "server/domain/notifications.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

using v1::AccessRequest;
using v1::Decision;
using v1::Grant;

constexpr char kTd[] = "example.org";
constexpr char kAlice[] = "spiffe://example.org/operator/alice";

Actor MakeActor(const std::string& path, std::vector<Binding> bindings) {
  auto p = ParseSpiffeId(absl::StrCat("spiffe://", kTd, "/", path), kTd);
  EXPECT_TRUE(p.ok()) << p.status();
  return Actor{*p, std::nullopt, Permissions(std::move(bindings))};
}

class ScheduledAccessTest : public ::testing::Test {
 protected:
  ScheduledAccessTest()
      : clock_(absl::FromUnixSeconds(1'800'000'000)),
        engineer_(MakeActor("operator/alice", {{Role::kEngineer, ""}})),
        reviewer_(MakeActor("operator/bob", {{Role::kReviewer, ""}})),
        tenant_admin_(MakeActor("tenant/contoso/user/dana", {{Role::kTenantAdmin, "contoso"}})) {
    policy_ = DefaultPolicy("contoso");
    policy_.set_enabled(true);
    env_.set_name("tenants/contoso/environments/prod");
    env_.set_managed(true);
    auto* sql = env_.add_data_sources();
    sql->set_id("sql");
    sql->set_kind("sql_database");
    sql->set_lockbox_supported(true);
  }

  AccessRequest Asked(std::optional<absl::Time> start) {
    AccessRequest a;
    a.set_environment(env_.name());
    a.set_reason(AccessRequest::CUSTOMER_INITIATED_SUPPORT);
    a.set_support_ticket_id("TKT-1");
    a.set_justification("maintenance window for the invoice migration");
    a.add_data_sources("sql");
    if (start) *a.mutable_start_time() = ToProto(*start);
    return a;
  }

  absl::StatusOr<AccessRequest> Create(std::optional<absl::Time> start) {
    return NewAccessRequest(Asked(start), "contoso", "0b8f6a2e-1111-4222-8333-444455556666", env_,
                            policy_, engineer_, clock_.Now());
  }

  // The request approved by both stages at `at`, and the grant it makes.
  Grant Approved(absl::Time start, absl::Time at) {
    auto r = Create(start);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(Decide(reviewer_, Decision::APPROVE, "", true, at, &*r).ok());
    EXPECT_TRUE(Decide(tenant_admin_, Decision::APPROVE, "", false, at, &*r).ok());
    EXPECT_EQ(r->state(), AccessRequest::APPROVED);
    return NewGrant(*r, env_, policy_, "contoso", "0b8f6a2e-1111-4222-8333-44445555666c", at);
  }

  AccessCheck Check(absl::Time now) const {
    AccessCheck c;
    c.principal = kAlice;
    c.environment = env_.name();
    c.data_source = "sql";
    c.now = now;
    c.principal_is_engineer = true;
    c.environment_now = &env_;
    c.policy_now = &policy_;
    return c;
  }

  FakeClock clock_;
  Actor engineer_, reviewer_, tenant_admin_;
  v1::LockboxPolicy policy_;
  v1::Environment env_;
};

TEST_F(ScheduledAccessTest, AStartInThePastOrAfterTheRequestsExpiryIsRefused) {
  const absl::Time now = clock_.Now();
  auto past = Create(now - absl::Seconds(1));
  EXPECT_EQ(past.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FieldOf(past.status()), "access_request.start_time");
  auto late = Create(now + kDefaultRequestTtl + absl::Seconds(1));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FieldOf(late.status()), "access_request.start_time");
  // Now and the request's own expire_time are the ends of what is allowed.
  EXPECT_TRUE(Create(now).ok());
  auto last = Create(now + kDefaultRequestTtl);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(FromProto(last->start_time()), now + kDefaultRequestTtl);
}

TEST_F(ScheduledAccessTest, TheGrantIsScheduledUntilItsStartAndItsPeriodCountsFromThere) {
  const absl::Time start = clock_.Now() + absl::Hours(10);
  Grant g = Approved(start, clock_.Now());
  EXPECT_EQ(g.state(), Grant::ACTIVE);  // As recorded: nothing records the start.
  EXPECT_EQ(FromProto(g.start_time()), start);
  EXPECT_EQ(FromProto(g.expire_time()), start + kDefaultAccessDuration);
  EXPECT_EQ(EffectiveState(g, clock_.Now()), Grant::SCHEDULED);
  Grant read = g;
  ApplyReadTimeState(clock_.Now(), &read);
  EXPECT_EQ(read.state(), Grant::SCHEDULED);

  EXPECT_FALSE(GrantAllows(g, Check(clock_.Now())));
  EXPECT_FALSE(GrantAllows(g, Check(start - absl::Seconds(1))));
  EXPECT_EQ(EffectiveState(g, start - absl::Seconds(1)), Grant::SCHEDULED);
  EXPECT_TRUE(GrantAllows(g, Check(start)));
  EXPECT_EQ(EffectiveState(g, start), Grant::ACTIVE);
  EXPECT_TRUE(GrantAllows(g, Check(start + absl::Seconds(1))));
  EXPECT_TRUE(GrantAllows(g, Check(start + kDefaultAccessDuration - absl::Seconds(1))));
  EXPECT_FALSE(GrantAllows(g, Check(start + kDefaultAccessDuration)));
  EXPECT_EQ(EffectiveState(g, start + kDefaultAccessDuration), Grant::EXPIRED);
}

TEST_F(ScheduledAccessTest, AStartThatHasComeByTheApprovalStartsAtTheApproval) {
  const absl::Time start = clock_.Now() + absl::Hours(1);
  const absl::Time approved = start + absl::Minutes(30);
  Grant g = Approved(start, approved);
  EXPECT_EQ(FromProto(g.start_time()), approved);
  // The approval allowed the request's window (its start for its period):
  // a late approval gets what is left of it, not a fresh period.
  EXPECT_EQ(FromProto(g.expire_time()), start + kDefaultAccessDuration);
  EXPECT_EQ(EffectiveState(g, approved), Grant::ACTIVE);
  EXPECT_TRUE(GrantAllows(g, Check(approved)));
}

TEST_F(ScheduledAccessTest, OnlyAGrantThatWouldAllowAtItsStartIsNotStarted) {
  const absl::Time start = clock_.Now() + absl::Hours(2);
  std::vector<Grant> grants = {Approved(start, clock_.Now())};
  AccessCheck now = Check(clock_.Now());
  EXPECT_EQ(BestAllowingGrant(grants, now), nullptr);
  EXPECT_EQ(FirstScheduledGrant(grants, now), &grants[0]);
  // Another source, another principal, or no engineer role: not this grant's.
  AccessCheck other_source = now;
  other_source.data_source = "crm";
  EXPECT_EQ(FirstScheduledGrant(grants, other_source), nullptr);
  AccessCheck other = now;
  other.principal = "spiffe://example.org/operator/bob";
  EXPECT_EQ(FirstScheduledGrant(grants, other), nullptr);
  AccessCheck no_role = now;
  no_role.principal_is_engineer = false;
  EXPECT_EQ(FirstScheduledGrant(grants, no_role), nullptr);
  // Started, it is the allowing grant, and no longer a scheduled one.
  AccessCheck later = Check(start);
  EXPECT_EQ(BestAllowingGrant(grants, later), &grants[0]);
  EXPECT_EQ(FirstScheduledGrant(grants, later), nullptr);
  // Of two scheduled grants, the one starting first.
  Grant sooner = Approved(clock_.Now() + absl::Hours(1), clock_.Now());
  sooner.set_name("tenants/contoso/grants/0b8f6a2e-1111-4222-8333-44445555666d");
  grants.push_back(sooner);
  EXPECT_EQ(FirstScheduledGrant(grants, now), &grants[1]);
}

TEST_F(ScheduledAccessTest, AScheduledGrantEndsEarlyButDoesNotExpire) {
  const absl::Time start = clock_.Now() + absl::Hours(3);
  Grant released = Approved(start, clock_.Now());
  EXPECT_EQ(Release(reviewer_, clock_.Now(), &released).code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(Release(engineer_, clock_.Now(), &released).ok());
  EXPECT_EQ(released.state(), Grant::RELEASED);
  EXPECT_EQ(FromProto(released.end_time()), clock_.Now());
  // Ended, it never starts.
  EXPECT_EQ(EffectiveState(released, start), Grant::RELEASED);
  EXPECT_FALSE(GrantAllows(released, Check(start + absl::Seconds(1))));

  Grant revoked = Approved(start, clock_.Now());
  EXPECT_EQ(Revoke(tenant_admin_, policy_, "contoso", clock_.Now(), &revoked).code(),
            absl::StatusCode::kFailedPrecondition);
  policy_.set_allow_revocation(true);
  ASSERT_TRUE(Revoke(tenant_admin_, policy_, "contoso", clock_.Now(), &revoked).ok());
  EXPECT_EQ(revoked.state(), Grant::REVOKED);
  EXPECT_FALSE(GrantAllows(revoked, Check(start + absl::Seconds(1))));

  // A message already read as SCHEDULED ends the same way.
  Grant read = Approved(start, clock_.Now());
  ApplyReadTimeState(clock_.Now(), &read);
  ASSERT_TRUE(Release(engineer_, clock_.Now(), &read).ok());
  EXPECT_EQ(read.state(), Grant::RELEASED);

  // Nothing to expire before its end.
  Grant waiting = Approved(start, clock_.Now());
  EXPECT_EQ(RecordExpiry(clock_.Now(), &waiting).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(RecordExpiry(start + kDefaultAccessDuration, &waiting).ok());
  EXPECT_EQ(waiting.state(), Grant::EXPIRED);
}

TEST_F(ScheduledAccessTest, TheEngineerIsToldWhenTheWindowOpens) {
  const absl::Time start = clock_.Now() + absl::Hours(4);
  auto r = Create(start);
  ASSERT_TRUE(r.ok()) << r.status();
  Contacts contacts;
  contacts.reviewers = {"bob@example.org"};
  contacts.requester = {"alice@example.org"};
  // The reviewers see the window they are asked to open.
  auto created = RequestMessages(RequestEvent::kCreated, *r, nullptr, contacts, clock_.Now());
  ASSERT_FALSE(created.empty());
  EXPECT_TRUE(absl::StrContains(created[0].body, "Access from:")) << created[0].body;
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", true, clock_.Now(), &*r).ok());
  ASSERT_TRUE(Decide(tenant_admin_, Decision::APPROVE, "", false, clock_.Now(), &*r).ok());
  Grant g =
      NewGrant(*r, env_, policy_, "contoso", "0b8f6a2e-1111-4222-8333-44445555666c", clock_.Now());
  auto decided = RequestMessages(RequestEvent::kDecided, *r, &g, contacts, clock_.Now());
  ASSERT_FALSE(decided.empty());
  EXPECT_TRUE(absl::StrContains(decided[0].body, "You have access from ")) << decided[0].body;
}

}  // namespace
}  // namespace lockbox
