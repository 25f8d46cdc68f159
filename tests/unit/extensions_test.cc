// Extensions' rules (server/domain/extensions.h), with a fake clock: who may
// ask, which grants may be extended, the bounds of what is asked, the
// extension request's fields, and the end an approval moves.
#include "server/domain/extensions.h"

#include <gtest/gtest.h>

#include "server/domain/clock.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

using v1::AccessRequest;
using v1::Decision;
using v1::Grant;

constexpr char kTd[] = "example.org";
constexpr char kGrant[] = "tenants/contoso/grants/7d1c2b3a-1111-4222-8333-444455556666";
constexpr char kExtensionId[] = "0b8f6a2e-1111-4222-8333-444455556666";

Actor MakeActor(const std::string& path, std::vector<Binding> bindings) {
  auto p = ParseSpiffeId(absl::StrCat("spiffe://", kTd, "/", path), kTd);
  EXPECT_TRUE(p.ok()) << p.status();
  return Actor{*p, std::nullopt, Permissions(std::move(bindings))};
}

class ExtensionsTest : public ::testing::Test {
 protected:
  ExtensionsTest()
      : clock_(absl::FromUnixSeconds(1'800'000'000)),
        engineer_(MakeActor("operator/alice", {{Role::kEngineer, ""}})),
        other_engineer_(MakeActor("operator/carol", {{Role::kEngineer, ""}})) {
    policy_ = DefaultPolicy("contoso");
    policy_.set_enabled(true);
    env_.set_name("tenants/contoso/environments/prod");
    env_.set_managed(true);
    auto* sql = env_.add_data_sources();
    sql->set_id("sql");
    sql->set_lockbox_supported(true);
    original_.set_name("tenants/contoso/accessRequests/5a5a5a5a-1111-4222-8333-444455556666");
    original_.set_reason(AccessRequest::CUSTOMER_INITIATED_SUPPORT);
    original_.set_support_ticket_id("TKT-1");
    grant_.set_name(kGrant);
    grant_.set_access_request(original_.name());
    grant_.set_principal(engineer_.principal.spiffe_id);
    grant_.set_environment(env_.name());
    grant_.add_data_sources("sql");
    // An environment's source dropped since: still pinned, still extended.
    grant_.add_data_sources("gone");
    *grant_.mutable_start_time() = ToProto(clock_.Now());
    *grant_.mutable_expire_time() = ToProto(clock_.Now() + absl::Hours(2));
    grant_.set_state(Grant::ACTIVE);
  }

  v1::ExtendGrantRequest Asked(absl::Duration more = absl::Hours(1)) {
    v1::ExtendGrantRequest r;
    r.set_name(kGrant);
    *r.mutable_access_duration() = ToProto(more);
    r.set_justification("the migration needs another hour");
    return r;
  }

  AccessRequest NewExtension(const v1::ExtendGrantRequest& asked) {
    auto r = NewExtensionRequest(asked, grant_, original_, "contoso", kExtensionId, env_, policy_,
                                 engineer_, clock_.Now());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : AccessRequest();
  }

  // The extension as approved by each of `approvals` (their narrowed
  // periods; unset: as asked).
  AccessRequest Approved(const AccessRequest& extension,
                         std::vector<std::optional<absl::Duration>> approvals) {
    AccessRequest r = extension;
    for (const auto& period : approvals) {
      Decision* d = r.add_decisions();
      d->set_verdict(Decision::APPROVE);
      if (period) *d->mutable_access_duration() = ToProto(*period);
    }
    r.set_state(AccessRequest::APPROVED);
    return r;
  }

  FakeClock clock_;
  Actor engineer_;
  Actor other_engineer_;
  v1::LockboxPolicy policy_;
  v1::Environment env_;
  AccessRequest original_;
  Grant grant_;
};

TEST_F(ExtensionsTest, OnlyTheGrantsOwnPrincipalMayAsk) {
  EXPECT_TRUE(CheckMayExtend(engineer_, grant_, policy_, clock_.Now()).ok());
  absl::Status other = CheckMayExtend(other_engineer_, grant_, policy_, clock_.Now());
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied);
  // Refused for who they are before anything about the grant is told.
  grant_.set_state(Grant::RELEASED);
  other = CheckMayExtend(other_engineer_, grant_, policy_, clock_.Now());
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ExtensionsTest, ActiveAndScheduledGrantsAreExtensibleEndedOnesAreNot) {
  EXPECT_TRUE(CheckExtensible(grant_, policy_, clock_.Now()).ok());
  Grant scheduled = grant_;
  scheduled.set_state(Grant::SCHEDULED);
  EXPECT_TRUE(CheckExtensible(scheduled, policy_, clock_.Now()).ok());
  for (Grant::State ended : {Grant::EXPIRED, Grant::RELEASED, Grant::REVOKED}) {
    Grant g = grant_;
    g.set_state(ended);
    absl::Status s = CheckExtensible(g, policy_, clock_.Now());
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << Grant::State_Name(ended);
    EXPECT_EQ(ReasonOf(s), "GRANT_NOT_EXTENSIBLE");
  }
}

TEST_F(ExtensionsTest, AGrantPastItsEndIsNotExtensibleToTheSecond) {
  clock_.Set(FromProto(grant_.expire_time()) - absl::Seconds(1));
  EXPECT_TRUE(CheckExtensible(grant_, policy_, clock_.Now()).ok());
  clock_.Set(FromProto(grant_.expire_time()));
  absl::Status s = CheckExtensible(grant_, policy_, clock_.Now());
  EXPECT_EQ(ReasonOf(s), "GRANT_NOT_EXTENSIBLE") << s;
}

TEST_F(ExtensionsTest, AnEmergencyGrantIsNotExtensible) {
  grant_.set_emergency(true);
  absl::Status s = CheckExtensible(grant_, policy_, clock_.Now());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), "GRANT_NOT_EXTENSIBLE");
}

TEST_F(ExtensionsTest, MaxExtensionsDefaultsToOneAndBoundsTheCount) {
  EXPECT_EQ(MaxExtensionsOf(DefaultPolicy("contoso")), 1);
  v1::LockboxPolicy unset;
  EXPECT_EQ(MaxExtensionsOf(unset), kDefaultMaxExtensions);
  grant_.add_extensions("tenants/contoso/accessRequests/one");
  absl::Status s = CheckExtensible(grant_, policy_, clock_.Now());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), "EXTENSIONS_EXHAUSTED");
  policy_.set_max_extensions(2);
  EXPECT_TRUE(CheckExtensible(grant_, policy_, clock_.Now()).ok());
  grant_.add_extensions("tenants/contoso/accessRequests/two");
  EXPECT_EQ(ReasonOf(CheckExtensible(grant_, policy_, clock_.Now())), "EXTENSIONS_EXHAUSTED");
  // A policy of 0 allows none.
  grant_.clear_extensions();
  policy_.set_max_extensions(0);
  EXPECT_EQ(ReasonOf(CheckExtensible(grant_, policy_, clock_.Now())), "EXTENSIONS_EXHAUSTED");
}

TEST_F(ExtensionsTest, TheJustificationIsRequiredAndBounded) {
  v1::ExtendGrantRequest r = Asked();
  r.clear_justification();
  absl::Status s = ValidateExtendGrant(r, policy_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FieldOf(s), "justification");
  r.set_justification(std::string(kMaxJustificationBytes, 'x'));
  EXPECT_TRUE(ValidateExtendGrant(r, policy_).ok());
  r.set_justification(std::string(kMaxJustificationBytes + 1, 'x'));
  EXPECT_EQ(FieldOf(ValidateExtendGrant(r, policy_)), "justification");
}

TEST_F(ExtensionsTest, ThePeriodIsBetweenAMinuteAndThePolicysAccessDuration) {
  absl::Duration max = FromProto(policy_.access_duration());
  EXPECT_TRUE(ValidateExtendGrant(Asked(kMinDuration), policy_).ok());
  EXPECT_TRUE(ValidateExtendGrant(Asked(max), policy_).ok());
  for (absl::Duration bad :
       {kMinDuration - absl::Seconds(1), max + absl::Seconds(1), absl::Seconds(-60)}) {
    absl::Status s = ValidateExtendGrant(Asked(bad), policy_);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(FieldOf(s), "access_duration") << bad;
  }
  // A tenant that shortened its access_duration shortened extensions too.
  *policy_.mutable_access_duration() = ToProto(absl::Minutes(30));
  EXPECT_EQ(FieldOf(ValidateExtendGrant(Asked(absl::Hours(1)), policy_)), "access_duration");
  // Unset: the policy's access_duration.
  v1::ExtendGrantRequest unset = Asked();
  unset.clear_access_duration();
  EXPECT_EQ(FromProto(NewExtension(unset).access_duration()), absl::Minutes(30));
}

TEST_F(ExtensionsTest, TheExtensionRequestIsLinkedToItsGrantAndCopiesItsRequest) {
  policy_.set_internal_approvals(2);
  policy_.set_customer_approvals(3);
  AccessRequest r = NewExtension(Asked(absl::Hours(1)));
  EXPECT_EQ(r.name(), absl::StrCat("tenants/contoso/accessRequests/", kExtensionId));
  EXPECT_EQ(r.extends_grant(), kGrant);
  EXPECT_EQ(r.environment(), grant_.environment());
  EXPECT_EQ(std::vector<std::string>(r.data_sources().begin(), r.data_sources().end()),
            (std::vector<std::string>{"sql", "gone"}));
  EXPECT_EQ(r.reason(), AccessRequest::CUSTOMER_INITIATED_SUPPORT);
  EXPECT_EQ(r.support_ticket_id(), "TKT-1");
  EXPECT_EQ(r.justification(), "the migration needs another hour");
  EXPECT_EQ(r.requester(), engineer_.principal.spiffe_id);
  EXPECT_EQ(FromProto(r.access_duration()), absl::Hours(1));
  EXPECT_EQ(r.state(), AccessRequest::PENDING);
  EXPECT_EQ(r.stage(), AccessRequest::INTERNAL_REVIEW);
  EXPECT_EQ(r.internal_approvals_required(), 2);
  EXPECT_EQ(r.customer_approvals_required(), 3);
  EXPECT_FALSE(r.has_start_time());
}

TEST_F(ExtensionsTest, AnExtensionExpiresNoLaterThanItsGrant) {
  // The grant ends in 2 hours, before the policy's request_ttl.
  AccessRequest r = NewExtension(Asked());
  EXPECT_EQ(FromProto(r.expire_time()), FromProto(grant_.expire_time()));
  // A grant that lasts longer than request_ttl: the request's own expiry.
  *grant_.mutable_expire_time() = ToProto(clock_.Now() + absl::Hours(24 * 30));
  r = NewExtension(Asked());
  EXPECT_EQ(FromProto(r.expire_time()), clock_.Now() + FromProto(policy_.request_ttl()));
}

TEST_F(ExtensionsTest, AnApprovalMovesTheEndByWhatEveryApprovalAllowed) {
  AccessRequest ext = NewExtension(Asked(absl::Hours(2)));
  absl::Time end = FromProto(grant_.expire_time());
  clock_.Advance(absl::Minutes(10));
  Grant g = grant_;
  ASSERT_TRUE(ApplyExtension(Approved(ext, {std::nullopt}), policy_, clock_.Now(), &g).ok());
  EXPECT_EQ(FromProto(g.expire_time()), end + absl::Hours(2));
  ASSERT_EQ(g.extensions_size(), 1);
  EXPECT_EQ(g.extensions(0), ext.name());
  // Approvers narrowed: the shortest period counts.
  g = grant_;
  ASSERT_TRUE(ApplyExtension(Approved(ext, {absl::Minutes(90), absl::Minutes(30), std::nullopt}),
                             policy_, clock_.Now(), &g)
                  .ok());
  EXPECT_EQ(FromProto(g.expire_time()), end + absl::Minutes(30));
  // The start and sources stay the grant's.
  EXPECT_EQ(g.start_time().seconds(), grant_.start_time().seconds());
  EXPECT_EQ(g.data_sources_size(), grant_.data_sources_size());
}

TEST_F(ExtensionsTest, AnApprovalIsRefusedWhenTheGrantCanNoLongerBeExtended) {
  AccessRequest ext = Approved(NewExtension(Asked()), {std::nullopt});
  Grant released = grant_;
  released.set_state(Grant::RELEASED);
  Grant before = released;
  absl::Status s = ApplyExtension(ext, policy_, clock_.Now(), &released);
  EXPECT_EQ(ReasonOf(s), "GRANT_NOT_EXTENSIBLE");
  EXPECT_EQ(released.SerializeAsString(), before.SerializeAsString()) << "nothing changed";
  // Another extension was approved meanwhile, and the policy allows one.
  Grant extended = grant_;
  extended.add_extensions("tenants/contoso/accessRequests/first");
  s = ApplyExtension(ext, policy_, clock_.Now(), &extended);
  EXPECT_EQ(ReasonOf(s), "EXTENSIONS_EXHAUSTED");
  EXPECT_EQ(extended.extensions_size(), 1);
  // The grant ended while the extension waited.
  clock_.Set(FromProto(grant_.expire_time()));
  Grant ended = grant_;
  EXPECT_EQ(ReasonOf(ApplyExtension(ext, policy_, clock_.Now(), &ended)), "GRANT_NOT_EXTENSIBLE");
}

TEST_F(ExtensionsTest, AMootExtensionIsCancelledOnlyWhilePending) {
  AccessRequest ext = NewExtension(Asked());
  clock_.Advance(absl::Minutes(5));
  ASSERT_TRUE(CancelMootExtension(clock_.Now(), &ext).ok());
  EXPECT_EQ(ext.state(), AccessRequest::CANCELLED);
  EXPECT_EQ(FromProto(ext.update_time()), clock_.Now());
  EXPECT_EQ(ext.display_status(), "Cancelled");
  EXPECT_EQ(ReasonOf(CancelMootExtension(clock_.Now(), &ext)), "STATE_TRANSITION_NOT_ALLOWED");
}

}  // namespace
}  // namespace lockbox
