// The request's life and grants, driven directly with an injected clock.
#include "server/domain/lifecycle.h"

#include <gtest/gtest.h>

#include "server/domain/clock.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

using v1::AccessRequest;
using v1::Decision;
using v1::Grant;

constexpr char kTd[] = "example.org";

Actor MakeActor(const std::string& path, std::vector<Binding> bindings) {
  auto p = ParseSpiffeId(absl::StrCat("spiffe://", kTd, "/", path), kTd);
  EXPECT_TRUE(p.ok()) << p.status();
  return Actor{*p, std::nullopt, Permissions(std::move(bindings))};
}

class LifecycleTest : public ::testing::Test {
 protected:
  LifecycleTest()
      : clock_(absl::FromUnixSeconds(1'800'000'000)),
        engineer_(MakeActor("operator/alice", {{Role::kEngineer, ""}})),
        reviewer_(MakeActor("operator/bob", {{Role::kReviewer, ""}})),
        engineer_reviewer_(
            MakeActor("operator/alice", {{Role::kEngineer, ""}, {Role::kReviewer, ""}})),
        tenant_admin_(MakeActor("tenant/contoso/user/dana", {{Role::kTenantAdmin, "contoso"}})),
        other_admin_(MakeActor("tenant/fabrikam/user/erin", {{Role::kTenantAdmin, "fabrikam"}})) {
    policy_ = DefaultPolicy("contoso");
    policy_.set_enabled(true);
    env_.set_name("tenants/contoso/environments/prod");
    env_.set_managed(true);
    auto* sql = env_.add_data_sources();
    sql->set_id("sql");
    sql->set_kind("sql_database");
    sql->set_lockbox_supported(true);
    auto* rcs = env_.add_data_sources();
    rcs->set_id("rcs");
    rcs->set_kind("storage_account");
    rcs->set_lockbox_supported(false);
  }

  AccessRequest Asked() {
    AccessRequest a;
    a.set_environment(env_.name());
    a.set_reason(AccessRequest::CUSTOMER_INITIATED_SUPPORT);
    a.set_support_ticket_id("TKT-1");
    a.set_justification("customer reports failing invoices");
    return a;
  }

  AccessRequest NewRequest() {
    auto r = NewAccessRequest(Asked(), "contoso", "0b8f6a2e-1111-4222-8333-444455556666", env_,
                              policy_, engineer_, clock_.Now());
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }

  // A check by an engineer, without the environment and policy as they are
  // now unless the test sets them.
  // AccessCheck holds views: the arguments must outlive it (string
  // literals, or strings of the test).
  static AccessCheck Check(absl::string_view principal, absl::string_view environment,
                           absl::string_view data_source, absl::Time now) {
    AccessCheck c;
    c.principal = principal;
    c.environment = environment;
    c.data_source = data_source;
    c.now = now;
    c.principal_is_engineer = true;
    return c;
  }

  bool Customer(const AccessRequest& r) {
    return NeedsCustomerReview(policy_, env_, r.data_sources());
  }

  FakeClock clock_;
  Actor engineer_, reviewer_, engineer_reviewer_, tenant_admin_, other_admin_;
  v1::LockboxPolicy policy_;
  v1::Environment env_;
};

TEST_F(LifecycleTest, NewRequestStartsInInternalReviewWithPolicyTimes) {
  AccessRequest r = NewRequest();
  EXPECT_EQ(r.state(), AccessRequest::PENDING);
  EXPECT_EQ(r.stage(), AccessRequest::INTERNAL_REVIEW);
  EXPECT_EQ(r.requester(), "spiffe://example.org/operator/alice");
  EXPECT_EQ(FromProto(r.expire_time()) - FromProto(r.create_time()), absl::Hours(96));
  EXPECT_EQ(FromProto(r.access_duration()), absl::Hours(8));
  EXPECT_EQ(r.display_status(), "Pending internal review");
}

TEST_F(LifecycleTest, RequestExpiresToTheSecond) {
  AccessRequest r = NewRequest();
  clock_.Advance(absl::Hours(96) - absl::Seconds(1));
  EXPECT_EQ(EffectiveState(r, clock_.Now()), AccessRequest::PENDING);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(EffectiveState(r, clock_.Now()), AccessRequest::EXPIRED);
  ApplyReadTimeState(clock_.Now(), &r);
  EXPECT_EQ(r.display_status(), "Expired");
}

TEST_F(LifecycleTest, ExpiredRequestCannotBeDecidedOrCancelled) {
  AccessRequest r = NewRequest();
  clock_.Advance(absl::Hours(96));
  absl::Status s = Decide(reviewer_, Decision::APPROVE, "", Customer(r), clock_.Now(), &r);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), reason::kTransitionNotAllowed);
  EXPECT_EQ(Cancel(engineer_, clock_.Now(), &r).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LifecycleTest, ProtectedRequestNeedsBothStages) {
  AccessRequest r = NewRequest();
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "ok", Customer(r), clock_.Now(), &r).ok());
  EXPECT_EQ(r.state(), AccessRequest::PENDING);
  EXPECT_EQ(r.stage(), AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(r.display_status(), "Action needed");
  ASSERT_TRUE(Decide(tenant_admin_, Decision::APPROVE, "", Customer(r), clock_.Now(), &r).ok());
  EXPECT_EQ(r.state(), AccessRequest::APPROVED);
  ASSERT_EQ(r.decisions_size(), 2);
  EXPECT_EQ(r.decisions(0).stage(), AccessRequest::INTERNAL_REVIEW);
  EXPECT_EQ(r.decisions(1).reviewer(), "spiffe://example.org/tenant/contoso/user/dana");
}

TEST_F(LifecycleTest, UnprotectedRequestSkipsCustomer) {
  policy_.set_enabled(false);
  AccessRequest r = NewRequest();
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", Customer(r), clock_.Now(), &r).ok());
  EXPECT_EQ(r.state(), AccessRequest::APPROVED);
}

TEST_F(LifecycleTest, UnmanagedEnvironmentIsNotProtected) {
  env_.set_managed(false);
  EXPECT_FALSE(IsProtected(policy_, env_));
  EXPECT_FALSE(Customer(NewRequest()));
}

TEST_F(LifecycleTest, UnsupportedDataSourceSkipsCustomer) {
  AccessRequest asked = Asked();
  asked.add_data_sources("rcs");
  auto r = NewAccessRequest(asked, "contoso", "0b8f6a2e-1111-4222-8333-444455556667", env_,
                            policy_, engineer_, clock_.Now());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(Customer(*r));
  r->add_data_sources("sql");
  EXPECT_TRUE(Customer(*r));
}

TEST_F(LifecycleTest, ReviewerCanNeverDecideOwnRequest) {
  auto r = NewAccessRequest(Asked(), "contoso", "0b8f6a2e-1111-4222-8333-444455556668", env_,
                            policy_, engineer_reviewer_, clock_.Now());
  ASSERT_TRUE(r.ok());
  for (auto verdict : {Decision::APPROVE, Decision::DENY}) {
    absl::Status s = Decide(engineer_reviewer_, verdict, "", true, clock_.Now(), &*r);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(ReasonOf(s), reason::kSelfReview);
  }
}

TEST_F(LifecycleTest, StagesBelongToTheirReviewers) {
  AccessRequest r = NewRequest();
  // A tenant admin cannot decide the internal stage.
  EXPECT_EQ(Decide(tenant_admin_, Decision::APPROVE, "", true, clock_.Now(), &r).code(),
            absl::StatusCode::kFailedPrecondition);
  // An engineer cannot decide at all; another tenant's admin neither.
  EXPECT_EQ(Decide(engineer_, Decision::APPROVE, "", true, clock_.Now(), &r).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Decide(other_admin_, Decision::APPROVE, "", true, clock_.Now(), &r).code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", true, clock_.Now(), &r).ok());
  // The internal reviewer cannot decide the customer stage.
  EXPECT_EQ(Decide(reviewer_, Decision::APPROVE, "", true, clock_.Now(), &r).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Decide(other_admin_, Decision::DENY, "", true, clock_.Now(), &r).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(LifecycleTest, DenyInEitherStageIsFinal) {
  for (bool at_customer : {false, true}) {
    AccessRequest r = NewRequest();
    if (at_customer) {
      ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", true, clock_.Now(), &r).ok());
    }
    const Actor& who = at_customer ? tenant_admin_ : reviewer_;
    ASSERT_TRUE(Decide(who, Decision::DENY, "no", true, clock_.Now(), &r).ok());
    EXPECT_EQ(r.state(), AccessRequest::DENIED);
    // Terminal: nothing changes it again.
    EXPECT_EQ(Decide(who, Decision::APPROVE, "", true, clock_.Now(), &r).code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(Cancel(engineer_, clock_.Now(), &r).code(), absl::StatusCode::kFailedPrecondition);
  }
}

TEST_F(LifecycleTest, OnlyTheRequesterCancels) {
  AccessRequest r = NewRequest();
  Actor other = MakeActor("operator/zed", {{Role::kEngineer, ""}});
  EXPECT_EQ(Cancel(other, clock_.Now(), &r).code(), absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(Cancel(engineer_, clock_.Now(), &r).ok());
  EXPECT_EQ(r.state(), AccessRequest::CANCELLED);
  EXPECT_EQ(Cancel(engineer_, clock_.Now(), &r).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Decide(reviewer_, Decision::APPROVE, "", true, clock_.Now(), &r).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(LifecycleTest, ApprovedRequestNeverExpires) {
  policy_.set_enabled(false);
  AccessRequest r = NewRequest();
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", false, clock_.Now(), &r).ok());
  clock_.Advance(absl::Hours(200));
  EXPECT_EQ(EffectiveState(r, clock_.Now()), AccessRequest::APPROVED);
}

TEST_F(LifecycleTest, ValidationRefusesBadRequests) {
  auto check = [&](AccessRequest asked, const std::string& field) {
    auto r = NewAccessRequest(asked, "contoso", "0b8f6a2e-1111-4222-8333-444455556669", env_,
                              policy_, engineer_, clock_.Now());
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(FieldOf(r.status()), field);
  };
  AccessRequest a = Asked();
  a.set_justification("");
  check(a, "access_request.justification");
  a = Asked();
  a.set_justification(std::string(4097, 'x'));
  check(a, "access_request.justification");
  a = Asked();
  a.set_support_ticket_id("");
  check(a, "access_request.support_ticket_id");
  a = Asked();
  a.set_reason(AccessRequest::REASON_UNSPECIFIED);
  check(a, "access_request.reason");
  a = Asked();
  a.add_data_sources("nope");
  check(a, "access_request.data_sources");
  a = Asked();
  *a.mutable_access_duration() = ToProto(absl::Hours(9));
  check(a, "access_request.access_duration");
  // Exactly 4 KiB and a shorter access are fine.
  a = Asked();
  a.set_justification(std::string(4096, 'x'));
  *a.mutable_access_duration() = ToProto(absl::Hours(1));
  auto ok = NewAccessRequest(a, "contoso", "0b8f6a2e-1111-4222-8333-44445555666a", env_, policy_,
                             engineer_, clock_.Now());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(FromProto(ok->access_duration()), absl::Hours(1));
}

TEST_F(LifecycleTest, PolicyMayShortenButNeverLengthen) {
  v1::LockboxPolicy update;
  *update.mutable_access_duration() = ToProto(absl::Hours(2));
  google::protobuf::FieldMask mask;
  mask.add_paths("access_duration");
  ASSERT_TRUE(ApplyPolicyUpdate(update, mask, &policy_).ok());
  EXPECT_EQ(FromProto(policy_.access_duration()), absl::Hours(2));
  *update.mutable_access_duration() = ToProto(absl::Hours(9));
  EXPECT_EQ(ApplyPolicyUpdate(update, mask, &policy_).code(), absl::StatusCode::kInvalidArgument);
  mask.set_paths(0, "request_ttl");
  *update.mutable_request_ttl() = ToProto(absl::Hours(97));
  EXPECT_EQ(ApplyPolicyUpdate(update, mask, &policy_).code(), absl::StatusCode::kInvalidArgument);
  mask.set_paths(0, "name");
  EXPECT_EQ(ApplyPolicyUpdate(update, mask, &policy_).code(), absl::StatusCode::kInvalidArgument);
  update.add_notification_emails("not an email");
  mask.set_paths(0, "notification_emails");
  EXPECT_EQ(ApplyPolicyUpdate(update, mask, &policy_).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(LifecycleTest, GrantAllowsOnlyItsPrincipalEnvironmentSourcesAndWindow) {
  AccessRequest asked = Asked();
  asked.add_data_sources("sql");
  auto r = NewAccessRequest(asked, "contoso", "0b8f6a2e-1111-4222-8333-44445555666b", env_,
                            policy_, engineer_, clock_.Now());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", true, clock_.Now(), &*r).ok());
  ASSERT_TRUE(Decide(tenant_admin_, Decision::APPROVE, "", false, clock_.Now(), &*r).ok());
  Grant g =
      NewGrant(*r, env_, policy_, "contoso", "0b8f6a2e-1111-4222-8333-44445555666c", clock_.Now());
  const std::string alice = "spiffe://example.org/operator/alice";
  absl::Time t = clock_.Now();
  auto allows = [&](const std::string& who, const std::string& env, const std::string& source,
                    absl::Time at) {
    AccessCheck c = Check(who, env, source, at);
    c.environment_now = &env_;
    c.policy_now = &policy_;
    return GrantAllows(g, c);
  };
  EXPECT_TRUE(allows(alice, env_.name(), "sql", t));
  EXPECT_FALSE(allows(alice, env_.name(), "rcs", t));
  EXPECT_FALSE(allows(alice, env_.name(), "", t));
  EXPECT_FALSE(allows("spiffe://example.org/operator/bob", env_.name(), "sql", t));
  EXPECT_FALSE(allows(alice, "tenants/contoso/environments/test", "sql", t));
  EXPECT_TRUE(allows(alice, env_.name(), "sql", t + absl::Hours(8) - absl::Seconds(1)));
  EXPECT_FALSE(allows(alice, env_.name(), "sql", t + absl::Hours(8)));
  EXPECT_EQ(EffectiveState(g, t + absl::Hours(8)), Grant::EXPIRED);
  // A principal without operator.engineer now is allowed nothing.
  AccessCheck no_role = Check(alice, env_.name(), "sql", t);
  no_role.principal_is_engineer = false;
  EXPECT_FALSE(GrantAllows(g, no_role));
}

// An "all" request approved by the internal review alone, in an environment
// whose only source is not lockbox-supported (the case 1).
TEST_F(LifecycleTest, AGrantForAllPinsTheSourcesOfItsApprovalAndNothingAddedLater) {
  v1::Environment env;
  env.set_name(env_.name());
  env.set_managed(true);
  auto* logs = env.add_data_sources();
  logs->set_id("logs");
  logs->set_kind("storage_account");
  logs->set_lockbox_supported(false);
  auto r = NewAccessRequest(Asked(), "contoso", "0b8f6a2e-1111-4222-8333-444455556670", env,
                            policy_, engineer_, clock_.Now());
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(NeedsCustomerReview(policy_, env, r->data_sources()));
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", false, clock_.Now(), &*r).ok());
  Grant g =
      NewGrant(*r, env, policy_, "contoso", "0b8f6a2e-1111-4222-8333-444455556671", clock_.Now());
  ASSERT_EQ(g.data_sources_size(), 1);
  EXPECT_EQ(g.data_sources(0), "logs");
  ASSERT_EQ(g.pinned_data_sources_size(), 1);
  EXPECT_FALSE(g.pinned_data_sources(0).lockbox_supported());
  EXPECT_FALSE(g.pinned_data_sources(0).customer_reviewed());
  EXPECT_FALSE(g.customer_reviewed());

  auto* crm = env.add_data_sources();
  crm->set_id("crm");
  crm->set_kind("sql_database");
  crm->set_lockbox_supported(true);
  const std::string alice = "spiffe://example.org/operator/alice";
  auto allows = [&](const std::string& source, const v1::Environment* now_env) {
    AccessCheck c = Check(alice, env_.name(), source, clock_.Now());
    c.environment_now = now_env;
    c.policy_now = now_env == nullptr ? nullptr : &policy_;
    return GrantAllows(g, c);
  };
  EXPECT_TRUE(allows("logs", &env)) << "not protected now: covered";
  EXPECT_FALSE(allows("crm", &env)) << "added later";
  EXPECT_FALSE(allows("made-up", &env));
  EXPECT_FALSE(allows("", &env)) << "the whole now includes crm";
  // Without the environment as it is now (a replica's view), nothing that
  // the customer did not review.
  EXPECT_FALSE(allows("logs", nullptr));
  EXPECT_FALSE(allows("crm", nullptr));

  // logs made lockbox-supported later: protected now, never reviewed.
  env.mutable_data_sources(0)->set_lockbox_supported(true);
  EXPECT_FALSE(allows("logs", &env));
  // Or the source removed: nothing left to cover.
  env.mutable_data_sources()->DeleteSubrange(0, 1);
  EXPECT_FALSE(allows("logs", &env));
}

TEST_F(LifecycleTest, ProtectionAddedLaterIsNotCovered) {
  // Unmanaged at approval: internal review only.
  v1::Environment env = env_;
  env.set_managed(false);
  auto r = NewAccessRequest(Asked(), "contoso", "0b8f6a2e-1111-4222-8333-444455556672", env,
                            policy_, engineer_, clock_.Now());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", false, clock_.Now(), &*r).ok());
  Grant g =
      NewGrant(*r, env, policy_, "contoso", "0b8f6a2e-1111-4222-8333-444455556673", clock_.Now());
  ASSERT_EQ(g.pinned_data_sources_size(), 2);
  EXPECT_TRUE(g.pinned_data_sources(0).lockbox_supported());
  EXPECT_FALSE(g.pinned_data_sources(0).customer_reviewed());
  const std::string alice = "spiffe://example.org/operator/alice";
  AccessCheck c = Check(alice, env_.name(), "sql", clock_.Now());
  c.environment_now = &env;
  c.policy_now = &policy_;
  EXPECT_TRUE(GrantAllows(g, c));
  c.data_source = "";
  EXPECT_TRUE(GrantAllows(g, c)) << "every source it has now is covered";
  // The environment managed later.
  env.set_managed(true);
  EXPECT_FALSE(GrantAllows(g, c));
  c.data_source = "sql";
  EXPECT_FALSE(GrantAllows(g, c));
  c.data_source = "rcs";
  EXPECT_TRUE(GrantAllows(g, c)) << "rcs is not lockbox-supported: not protected";
  // The policy enabled later.
  env.set_managed(true);
  v1::LockboxPolicy off = policy_;
  off.set_enabled(false);
  Grant g2 =
      NewGrant(*r, env, off, "contoso", "0b8f6a2e-1111-4222-8333-444455556674", clock_.Now());
  c.data_source = "sql";
  c.policy_now = &off;
  EXPECT_TRUE(GrantAllows(g2, c));
  c.policy_now = &policy_;
  EXPECT_FALSE(GrantAllows(g2, c));
}

TEST_F(LifecycleTest, CustomerReviewedSourcesAreCoveredWhateverChangesLater) {
  auto r = NewAccessRequest(Asked(), "contoso", "0b8f6a2e-1111-4222-8333-444455556675", env_,
                            policy_, engineer_, clock_.Now());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", true, clock_.Now(), &*r).ok());
  ASSERT_TRUE(Decide(tenant_admin_, Decision::APPROVE, "", false, clock_.Now(), &*r).ok());
  ASSERT_EQ(r->state(), AccessRequest::APPROVED);
  Grant g =
      NewGrant(*r, env_, policy_, "contoso", "0b8f6a2e-1111-4222-8333-444455556676", clock_.Now());
  EXPECT_TRUE(g.customer_reviewed());
  ASSERT_EQ(g.pinned_data_sources_size(), 2);
  EXPECT_EQ(g.pinned_data_sources(0).id(), "sql");
  EXPECT_TRUE(g.pinned_data_sources(0).customer_reviewed());
  EXPECT_EQ(g.pinned_data_sources(1).id(), "rcs");
  EXPECT_FALSE(g.pinned_data_sources(1).customer_reviewed()) << "rcs was not protected";
  const std::string alice = "spiffe://example.org/operator/alice";
  // From memory too: a reviewed source needs nothing of now.
  EXPECT_TRUE(GrantAllows(g, Check(alice, env_.name(), "sql", clock_.Now())));
  EXPECT_FALSE(GrantAllows(g, Check(alice, env_.name(), "rcs", clock_.Now())));
  AccessCheck c = Check(alice, env_.name(), "", clock_.Now());
  EXPECT_FALSE(GrantAllows(g, c)) << "the whole depends on now";
  c.environment_now = &env_;
  c.policy_now = &policy_;
  EXPECT_TRUE(GrantAllows(g, c));
  // rcs made lockbox-supported later: the whole is no longer covered.
  v1::Environment later = env_;
  later.mutable_data_sources(1)->set_lockbox_supported(true);
  c.environment_now = &later;
  EXPECT_FALSE(GrantAllows(g, c));
  c.data_source = "sql";
  EXPECT_TRUE(GrantAllows(g, c));
}

TEST_F(LifecycleTest, AnEnvironmentWithoutSourcesIsCoveredAsAWholeUntilOneIsAdded) {
  v1::Environment empty;
  empty.set_name(env_.name());
  empty.set_managed(true);
  auto r = NewAccessRequest(Asked(), "contoso", "0b8f6a2e-1111-4222-8333-444455556677", empty,
                            policy_, engineer_, clock_.Now());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(NeedsCustomerReview(policy_, empty, r->data_sources()));
  ASSERT_TRUE(Decide(reviewer_, Decision::APPROVE, "", true, clock_.Now(), &*r).ok());
  v1::AccessRequest internal_only = *r;
  ASSERT_TRUE(Decide(tenant_admin_, Decision::APPROVE, "", false, clock_.Now(), &*r).ok());
  Grant g =
      NewGrant(*r, empty, policy_, "contoso", "0b8f6a2e-1111-4222-8333-444455556678", clock_.Now());
  EXPECT_EQ(g.data_sources_size(), 0);
  const std::string alice = "spiffe://example.org/operator/alice";
  AccessCheck c = Check(alice, env_.name(), "", clock_.Now());
  c.environment_now = &empty;
  c.policy_now = &policy_;
  EXPECT_TRUE(GrantAllows(g, c));
  v1::Environment added = empty;
  added.add_data_sources()->set_id("crm");
  c.environment_now = &added;
  EXPECT_FALSE(GrantAllows(g, c));
  c.data_source = "crm";
  EXPECT_FALSE(GrantAllows(g, c));
  // Approved internally while it was unprotected, then protected: not covered.
  v1::Environment unmanaged = empty;
  unmanaged.set_managed(false);
  internal_only.set_state(AccessRequest::APPROVED);
  Grant g2 = NewGrant(internal_only, unmanaged, policy_, "contoso",
                      "0b8f6a2e-1111-4222-8333-444455556679", clock_.Now());
  EXPECT_FALSE(g2.customer_reviewed());
  c.data_source = "";
  c.environment_now = &unmanaged;
  EXPECT_TRUE(GrantAllows(g2, c));
  c.environment_now = &empty;
  EXPECT_FALSE(GrantAllows(g2, c));
}

TEST_F(LifecycleTest, GrantEndsEarlyOnlyByItsRules) {
  AccessRequest r = NewRequest();
  Grant g =
      NewGrant(r, env_, policy_, "contoso", "0b8f6a2e-1111-4222-8333-44445555666d", clock_.Now());
  EXPECT_EQ(Release(reviewer_, clock_.Now(), &g).code(), absl::StatusCode::kPermissionDenied);
  // Revocation is off by default, as in the source product.
  EXPECT_EQ(Revoke(tenant_admin_, policy_, "contoso", clock_.Now(), &g).code(),
            absl::StatusCode::kFailedPrecondition);
  policy_.set_allow_revocation(true);
  EXPECT_EQ(Revoke(other_admin_, policy_, "contoso", clock_.Now(), &g).code(),
            absl::StatusCode::kPermissionDenied);
  Grant g2 = g;
  ASSERT_TRUE(Revoke(tenant_admin_, policy_, "contoso", clock_.Now(), &g2).ok());
  EXPECT_EQ(g2.state(), Grant::REVOKED);
  ASSERT_TRUE(Release(engineer_, clock_.Now(), &g).ok());
  EXPECT_EQ(g.state(), Grant::RELEASED);
  EXPECT_EQ(Release(engineer_, clock_.Now(), &g).code(), absl::StatusCode::kFailedPrecondition);
  AccessCheck c = Check(r.requester(), env_.name(), "sql", clock_.Now());
  c.environment_now = &env_;
  c.policy_now = &policy_;
  EXPECT_FALSE(GrantAllows(g, c));
  // An expired grant cannot be released either.
  Grant g3 =
      NewGrant(r, env_, policy_, "contoso", "0b8f6a2e-1111-4222-8333-44445555666e", clock_.Now());
  EXPECT_EQ(Release(engineer_, clock_.Now() + absl::Hours(8), &g3).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(EtagTest, StaleEtagIsAborted) {
  EXPECT_TRUE(CheckEtag("", EtagOf(3)).ok());
  EXPECT_TRUE(CheckEtag(EtagOf(3), EtagOf(3)).ok());
  absl::Status s = CheckEtag(EtagOf(2), EtagOf(3));
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ReasonOf(s), reason::kStaleEtag);
}

// Whose an environment's fields are, and what an update changes.
TEST(EnvironmentUpdateTest, TheMaskSaysWhoseFieldsChange) {
  v1::Environment update;
  update.set_display_name("Production");
  update.set_managed(false);
  auto* ds = update.add_data_sources();
  ds->set_id("sql");
  ds->set_kind("sql_database");
  google::protobuf::FieldMask mask;
  EXPECT_EQ(CheckEnvironmentUpdate(update, mask).status().code(),
            absl::StatusCode::kInvalidArgument)
      << "an empty mask names nothing";
  mask.add_paths("managed");
  auto customer = CheckEnvironmentUpdate(update, mask);
  ASSERT_TRUE(customer.ok()) << customer.status();
  EXPECT_TRUE(customer->tenant_fields);
  EXPECT_FALSE(customer->provider_fields);
  mask.add_paths("data_sources");
  auto both = CheckEnvironmentUpdate(update, mask);
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(both->tenant_fields && both->provider_fields);
  mask.add_paths("protected");
  absl::Status unknown = CheckEnvironmentUpdate(update, mask).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FieldOf(unknown), "update_mask");
}

TEST(EnvironmentUpdateTest, OnlyTheMaskedFieldsAreApplied) {
  v1::Environment env;
  env.set_display_name("old");
  env.set_managed(true);
  env.add_data_sources()->set_id("blob");
  v1::Environment update;
  update.set_managed(false);
  update.add_data_sources()->set_id("sql");
  google::protobuf::FieldMask mask;
  mask.add_paths("display_name");
  mask.add_paths("managed");
  ApplyEnvironmentUpdate(update, mask, "prod", &env);
  EXPECT_EQ(env.display_name(), "prod") << "an empty display name becomes the ID";
  EXPECT_FALSE(env.managed());
  ASSERT_EQ(env.data_sources_size(), 1);
  EXPECT_EQ(env.data_sources(0).id(), "blob") << "data_sources was not in the mask";
}

}  // namespace
}  // namespace lockbox
