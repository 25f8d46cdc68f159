// Quorum and narrowing (SPEC section 10): the rules of Decide and
// approvals.h, driven directly with a fake clock.
#include "server/domain/approvals.h"

#include <gtest/gtest.h>

#include <set>

#include "server/domain/clock.h"
#include "server/domain/lifecycle.h"
#include "server/domain/notifications.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

using v1::AccessRequest;
using v1::Decision;

constexpr char kTd[] = "example.org";

Actor MakeActor(const std::string& path, std::vector<Binding> bindings) {
  auto p = ParseSpiffeId(absl::StrCat("spiffe://", kTd, "/", path), kTd);
  EXPECT_TRUE(p.ok()) << p.status();
  Actor a;
  a.principal = *p;
  a.permissions = Permissions(std::move(bindings));
  return a;
}

Actor Reviewer(const std::string& name) {
  return MakeActor("operator/" + name, {{Role::kReviewer, ""}});
}

Actor Admin(const std::string& name) {
  return MakeActor("tenant/contoso/user/" + name, {{Role::kTenantAdmin, "contoso"}});
}

class ApprovalsTest : public ::testing::Test {
 protected:
  ApprovalsTest()
      : clock_(absl::FromUnixSeconds(1'800'000'000)),
        engineer_(MakeActor("operator/alice", {{Role::kEngineer, ""}})) {
    policy_ = DefaultPolicy("contoso");
    policy_.set_enabled(true);
    env_.set_name("tenants/contoso/environments/prod");
    env_.set_managed(true);
    for (auto [id, supported] :
         {std::pair<const char*, bool>{"sql", true}, {"blob", true}, {"rcs", false}}) {
      v1::DataSource* ds = env_.add_data_sources();
      ds->set_id(id);
      ds->set_kind("sql_database");
      ds->set_lockbox_supported(supported);
    }
  }

  AccessRequest NewRequest(std::vector<std::string> sources = {},
                           std::optional<absl::Duration> start_in = std::nullopt) {
    AccessRequest a;
    a.set_environment(env_.name());
    a.set_reason(AccessRequest::OPERATOR_INITIATED);
    a.set_justification("invoices fail");
    for (const std::string& s : sources) a.add_data_sources(s);
    if (start_in) *a.mutable_start_time() = ToProto(clock_.Now() + *start_in);
    auto r = NewAccessRequest(a, "contoso", "0b8f6a2e-1111-4222-8333-444455556666", env_, policy_,
                              engineer_, clock_.Now());
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }

  absl::Status Approve(const Actor& a, AccessRequest* r, const Narrowing& n = {}) {
    return Decide(a, Decision::APPROVE, "", n, &env_, &policy_, clock_.Now(), r);
  }
  absl::Status Deny(const Actor& a, AccessRequest* r) {
    return Decide(a, Decision::DENY, "no", Narrowing{}, nullptr, nullptr, clock_.Now(), r);
  }

  FakeClock clock_;
  Actor engineer_;
  v1::LockboxPolicy policy_;
  v1::Environment env_;
};

TEST_F(ApprovalsTest, TheRequestPinsThePolicysQuorumWhenMade) {
  policy_.set_internal_approvals(2);
  policy_.set_customer_approvals(3);
  AccessRequest r = NewRequest();
  EXPECT_EQ(r.internal_approvals_required(), 2);
  EXPECT_EQ(r.customer_approvals_required(), 3);
  EXPECT_EQ(r.approvals_needed(), 2);
  // A later policy change does not move what this request needs.
  policy_.set_internal_approvals(1);
  ASSERT_TRUE(Approve(Reviewer("bob"), &r).ok());
  EXPECT_EQ(r.stage(), AccessRequest::INTERNAL_REVIEW);
}

TEST_F(ApprovalsTest, EachStageWaitsForItsQuorumOfDistinctPeople) {
  policy_.set_internal_approvals(2);
  policy_.set_customer_approvals(3);
  AccessRequest r = NewRequest();
  ASSERT_TRUE(Approve(Reviewer("bob"), &r).ok());
  EXPECT_EQ(r.state(), AccessRequest::PENDING);
  EXPECT_EQ(r.stage(), AccessRequest::INTERNAL_REVIEW);
  EXPECT_EQ(r.approvals_needed(), 1);
  EXPECT_EQ(ApprovalsCounted(r, AccessRequest::INTERNAL_REVIEW), 1);

  absl::Status again = Approve(Reviewer("bob"), &r);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(again), reason::kAlreadyApproved);
  EXPECT_EQ(r.decisions_size(), 1) << "nothing written";

  ASSERT_TRUE(Approve(Reviewer("carol"), &r).ok());
  EXPECT_EQ(r.stage(), AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(r.approvals_needed(), 3);
  EXPECT_EQ(r.display_status(), "Action needed");

  ASSERT_TRUE(Approve(Admin("dana"), &r).ok());
  ASSERT_TRUE(Approve(Admin("erin"), &r).ok());
  EXPECT_EQ(r.approvals_needed(), 1);
  EXPECT_EQ(ReasonOf(Approve(Admin("erin"), &r)), reason::kAlreadyApproved);
  ASSERT_TRUE(Approve(Admin("frank"), &r).ok());
  EXPECT_EQ(r.state(), AccessRequest::APPROVED);
  EXPECT_EQ(r.approvals_needed(), 0);
  EXPECT_EQ(r.decisions_size(), 5);
}

TEST_F(ApprovalsTest, OnePersonCountsOnceWhateverPortalTheyComeThrough) {
  policy_.set_customer_approvals(2);
  AccessRequest r = NewRequest();
  ASSERT_TRUE(Approve(Reviewer("bob"), &r).ok());
  ASSERT_TRUE(Approve(Admin("dana"), &r).ok());
  // The same user on behalf of whom a portal calls is the same principal.
  Actor through_portal = Admin("dana");
  auto portal = ParseSpiffeId("spiffe://example.org/service/portal", kTd);
  ASSERT_TRUE(portal.ok());
  through_portal.via = *portal;
  absl::Status s = Approve(through_portal, &r);
  EXPECT_EQ(ReasonOf(s), reason::kAlreadyApproved);
  EXPECT_EQ(r.approvals_needed(), 1);
}

TEST_F(ApprovalsTest, AnyDenyEndsTheRequestEvenAfterApprovals) {
  policy_.set_internal_approvals(3);
  AccessRequest r = NewRequest();
  ASSERT_TRUE(Approve(Reviewer("bob"), &r).ok());
  ASSERT_TRUE(Approve(Reviewer("carol"), &r).ok());
  ASSERT_TRUE(Deny(Reviewer("dave"), &r).ok());
  EXPECT_EQ(r.state(), AccessRequest::DENIED);
  EXPECT_EQ(r.approvals_needed(), 0);
  EXPECT_EQ(ReasonOf(Approve(Reviewer("erin"), &r)), reason::kTransitionNotAllowed);

  policy_.set_customer_approvals(3);
  policy_.set_internal_approvals(1);
  AccessRequest c = NewRequest();
  ASSERT_TRUE(Approve(Reviewer("bob"), &c).ok());
  ASSERT_TRUE(Approve(Admin("dana"), &c).ok());
  ASSERT_TRUE(Deny(Admin("erin"), &c).ok());
  EXPECT_EQ(c.state(), AccessRequest::DENIED);
}

TEST_F(ApprovalsTest, SelfReviewStaysRefusedAndTheOtherStageIsNotTheCallers) {
  policy_.set_internal_approvals(2);
  AccessRequest r = NewRequest();
  Actor self = MakeActor("operator/alice", {{Role::kReviewer, ""}});
  EXPECT_EQ(ReasonOf(Approve(self, &r)), reason::kSelfReview);
  EXPECT_EQ(ReasonOf(Approve(Admin("dana"), &r)), reason::kTransitionNotAllowed);
  EXPECT_EQ(r.decisions_size(), 0);
}

TEST_F(ApprovalsTest, ApprovalsNeededReadsZeroOnceExpired) {
  policy_.set_internal_approvals(2);
  AccessRequest r = NewRequest();
  ApplyReadTimeState(clock_.Now(), &r);
  EXPECT_EQ(r.approvals_needed(), 2);
  clock_.Advance(FromProto(policy_.request_ttl()));
  ApplyReadTimeState(clock_.Now(), &r);
  EXPECT_EQ(r.state(), AccessRequest::EXPIRED);
  EXPECT_EQ(r.approvals_needed(), 0);
}

TEST_F(ApprovalsTest, TheGrantIsWhatEveryApprovalAllowed) {
  policy_.set_customer_approvals(2);
  AccessRequest r = NewRequest({}, absl::Hours(1));
  Narrowing shorter;
  shorter.access_duration = absl::Hours(4);
  shorter.data_sources = {"sql", "blob"};
  ASSERT_TRUE(Approve(Reviewer("bob"), &r, shorter).ok());
  EXPECT_EQ(FromProto(r.decisions(0).access_duration()), absl::Hours(4));
  EXPECT_EQ(r.decisions(0).data_sources_size(), 2);
  Narrowing later;
  later.access_duration = absl::Hours(6);  // Not the shortest: 4 h stays.
  later.data_sources = {"sql", "rcs"};     // Intersection: sql.
  later.start_time = clock_.Now() + absl::Hours(2);
  ASSERT_TRUE(Approve(Admin("dana"), &r, later).ok());
  ASSERT_TRUE(Approve(Admin("erin"), &r).ok());
  ASSERT_EQ(r.state(), AccessRequest::APPROVED);

  ApprovedScope scope = ApprovedScopeOf(r);
  EXPECT_EQ(scope.access_duration, absl::Hours(4));
  ASSERT_TRUE(scope.data_sources);
  EXPECT_EQ(*scope.data_sources, std::vector<std::string>{"sql"});
  EXPECT_EQ(*scope.start_time, clock_.Now() + absl::Hours(2));
  v1::Grant g = NewGrant(r, env_, policy_, "contoso", "g1", clock_.Now());
  ASSERT_EQ(g.pinned_data_sources_size(), 1);
  EXPECT_EQ(g.pinned_data_sources(0).id(), "sql");
  EXPECT_EQ(FromProto(g.start_time()), clock_.Now() + absl::Hours(2));
  // The intersection of the windows: bob allowed 1 h + 4 h, so the grant
  // ends 5 h from now, not at dana's later start plus the 4 h.
  EXPECT_EQ(FromProto(g.expire_time()), clock_.Now() + absl::Hours(5));
}

// Finding 5: a later approver's later start does not carry the end past
// what an earlier approver allowed. A plain approval allows the request's
// window; B moving the start 6 days later leaves nothing in common with it,
// so B is refused (nothing recorded) rather than granted a window A never
// allowed; B may deny instead.
TEST_F(ApprovalsTest, AnApprovalThatLeavesNoCommonWindowIsRefused) {
  policy_.set_internal_approvals(2);
  AccessRequest r = NewRequest({}, absl::Hours(1));
  ASSERT_TRUE(Approve(Reviewer("bob"), &r).ok());
  Narrowing later;
  later.start_time = clock_.Now() + absl::Hours(24 * 6);
  AccessRequest before = r;
  absl::Status s = Approve(Reviewer("carol"), &r, later);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(ReasonOf(s), reason::kApprovalWidens);
  EXPECT_EQ(r.decisions_size(), before.decisions_size());
  // Inside A's window it is granted, ending where A allowed.
  later.start_time = clock_.Now() + absl::Hours(3);
  ASSERT_TRUE(Approve(Reviewer("carol"), &r, later).ok());
  ASSERT_NE(r.stage() == AccessRequest::INTERNAL_REVIEW && r.state() == AccessRequest::PENDING,
            true);
  v1::Grant g = NewGrant(r, env_, policy_, "contoso", "g1", clock_.Now());
  const absl::Duration asked = FromProto(r.access_duration());
  EXPECT_EQ(FromProto(g.start_time()), clock_.Now() + absl::Hours(3));
  EXPECT_EQ(FromProto(g.expire_time()), clock_.Now() + absl::Hours(1) + asked);
}

// Finding 6: the quorum in force is the higher of the pinned one and the
// policy's at the decision, and it is written on the request.
TEST_F(ApprovalsTest, APolicyRaiseAppliesToPendingRequestsAtTheNextDecision) {
  AccessRequest r = NewRequest();
  ASSERT_EQ(r.internal_approvals_required(), 1);
  policy_.set_internal_approvals(2);
  ASSERT_TRUE(Approve(Reviewer("bob"), &r).ok());
  EXPECT_EQ(r.state(), AccessRequest::PENDING);
  EXPECT_EQ(r.internal_approvals_required(), 2);
  EXPECT_EQ(r.approvals_needed(), 1);
  ASSERT_TRUE(Approve(Reviewer("carol"), &r).ok());
  // The internal quorum of 2 is met: approved, or on to the customer.
  EXPECT_FALSE(r.stage() == AccessRequest::INTERNAL_REVIEW &&
               r.state() == AccessRequest::PENDING);
}

TEST_F(ApprovalsTest, EveryWideningIsRefusedNamingItsField) {
  AccessRequest r = NewRequest({"sql", "rcs"}, absl::Hours(1));
  struct Case {
    const char* name;
    Narrowing n;
    const char* field;
  };
  std::vector<Case> cases;
  Narrowing longer;
  longer.access_duration = FromProto(r.access_duration()) + absl::Seconds(1);
  cases.push_back({"longer period", longer, "access_duration"});
  Narrowing other_source;
  other_source.data_sources = {"sql", "blob"};
  cases.push_back({"a source not asked for", other_source, "data_sources"});
  Narrowing earlier;
  earlier.start_time = FromProto(r.start_time()) - absl::Seconds(1);
  cases.push_back({"an earlier start", earlier, "start_time"});
  Narrowing after_expiry;
  after_expiry.start_time = FromProto(r.expire_time()) + absl::Seconds(1);
  cases.push_back({"a start after the request's expiry", after_expiry, "start_time"});
  for (const Case& c : cases) {
    AccessRequest copy = r;
    absl::Status s = Approve(Reviewer("bob"), &copy, c.n);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_EQ(ReasonOf(s), reason::kApprovalWidens) << c.name;
    EXPECT_EQ(FieldOf(s), c.field) << c.name;
    EXPECT_EQ(copy.decisions_size(), 0) << c.name;
  }
  // The bounds themselves are allowed.
  Narrowing exact;
  exact.access_duration = FromProto(r.access_duration());
  exact.data_sources = {"rcs"};
  exact.start_time = FromProto(r.expire_time());
  AccessRequest copy = r;
  EXPECT_TRUE(Approve(Reviewer("bob"), &copy, exact).ok());
}

TEST_F(ApprovalsTest, BadNarrowingIsInvalidButNotAWidening) {
  AccessRequest r = NewRequest();
  auto refused = [&](Narrowing n, const char* field, const char* field_reason) {
    AccessRequest copy = r;
    absl::Status s = Approve(Reviewer("bob"), &copy, n);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_EQ(ReasonOf(s), reason::kInvalidField) << s;
    EXPECT_EQ(FieldOf(s), field);
    EXPECT_EQ(FieldReasonOf(s), field_reason) << s;
    EXPECT_EQ(copy.decisions_size(), 0);
  };
  Narrowing tiny;
  tiny.access_duration = absl::Seconds(59);
  refused(tiny, "access_duration", "OUT_OF_RANGE");
  Narrowing unknown;
  unknown.data_sources = {"nope"};
  refused(unknown, "data_sources", "UNKNOWN_VALUE");
  Narrowing twice;
  twice.data_sources = {"sql", "sql"};
  refused(twice, "data_sources", "NOT_ALLOWED");
  // Asking for all and approving with none named before now is a widening
  // of the start: "now" is what an unscheduled request asked.
  Narrowing past;
  past.start_time = clock_.Now() - absl::Seconds(1);
  AccessRequest copy = r;
  EXPECT_EQ(ReasonOf(Approve(Reviewer("bob"), &copy, past)), reason::kApprovalWidens);
}

TEST_F(ApprovalsTest, AnApprovalThatLeavesNoSourceIsRefused) {
  policy_.set_customer_approvals(2);
  AccessRequest r = NewRequest();
  Narrowing sql;
  sql.data_sources = {"sql"};
  ASSERT_TRUE(Approve(Reviewer("bob"), &r, sql).ok());
  Narrowing blob;
  blob.data_sources = {"blob"};
  absl::Status s = Approve(Admin("dana"), &r, blob);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FieldOf(s), "data_sources");
  EXPECT_EQ(r.decisions_size(), 1);
}

TEST_F(ApprovalsTest, AnInternalNarrowingToUnsupportedSourcesSkipsTheCustomer) {
  AccessRequest r = NewRequest();
  Narrowing rcs;
  rcs.data_sources = {"rcs"};
  ASSERT_TRUE(Approve(Reviewer("bob"), &r, rcs).ok());
  EXPECT_EQ(r.state(), AccessRequest::APPROVED);
}

TEST_F(ApprovalsTest, AnExtensionNarrowsOnlyItsPeriod) {
  AccessRequest r = NewRequest();
  r.set_extends_grant("tenants/contoso/grants/g1");
  Narrowing sources;
  sources.data_sources = {"sql"};
  AccessRequest copy = r;
  absl::Status s = Approve(Reviewer("bob"), &copy, sources);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FieldOf(s), "data_sources");
  Narrowing start;
  start.start_time = clock_.Now() + absl::Minutes(5);
  copy = r;
  s = Approve(Reviewer("bob"), &copy, start);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FieldOf(s), "start_time");
  Narrowing period;
  period.access_duration = absl::Hours(1);
  copy = r;
  EXPECT_TRUE(Approve(Reviewer("bob"), &copy, period).ok());
}

TEST_F(ApprovalsTest, ADenyCarriesNoNarrowing) {
  AccessRequest r = NewRequest();
  Narrowing n;
  n.access_duration = absl::Hours(1);
  absl::Status s =
      Decide(Reviewer("bob"), Decision::DENY, "", n, nullptr, nullptr, clock_.Now(), &r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.decisions_size(), 0);
}

TEST_F(ApprovalsTest, TheOldDecideStillTakesTheRequestAsAsked) {
  AccessRequest r = NewRequest();
  ASSERT_TRUE(Decide(Reviewer("bob"), Decision::APPROVE, "", true, clock_.Now(), &r).ok());
  EXPECT_EQ(r.stage(), AccessRequest::CUSTOMER_REVIEW);
  EXPECT_FALSE(r.decisions(0).has_access_duration());
}

// Everyone told: who hears that a request no longer needs them.
std::multiset<std::string> Recipients(const std::vector<OutboundMessage>& messages,
                                      v1::Notification::Channel channel) {
  std::multiset<std::string> out;
  for (const OutboundMessage& m : messages) {
    EXPECT_EQ(m.event, "access_request.no_longer_needed");
    if (m.channel == channel) out.insert(m.recipient);
  }
  return out;
}

TEST_F(ApprovalsTest, NoLongerNeededGoesToWhoeverWasAskedAndDidNotDecide) {
  Contacts c;
  c.reviewers = {"bob@p.example", "carol@p.example", "ruth@p.example"};
  c.tenant_admins = {"dana@c.example", "erin@c.example"};
  c.policy_emails = {"secops@c.example", "erin@c.example"};
  c.requester = {"alice@p.example"};
  c.webhook_url = "https://hooks.c.example/lockbox";

  policy_.set_customer_approvals(1);
  AccessRequest r = NewRequest();
  ASSERT_TRUE(Approve(Reviewer("bob"), &r).ok());
  ASSERT_EQ(r.stage(), AccessRequest::CUSTOMER_REVIEW);
  EXPECT_EQ(StageLeft(r), AccessRequest::INTERNAL_REVIEW);
  c.deciders = {"bob@p.example"};
  auto internal = RequestMessages(RequestEvent::kNoLongerNeeded, r, nullptr, c, clock_.Now());
  EXPECT_EQ(Recipients(internal, v1::Notification::EMAIL),
            (std::multiset<std::string>{"carol@p.example", "ruth@p.example"}));
  EXPECT_TRUE(Recipients(internal, v1::Notification::WEBHOOK).empty())
      << "the provider's own stage is not the tenant's webhook's business";
  for (const OutboundMessage& m : internal) EXPECT_EQ(m.tenant, "") << "listed for the provider";

  ASSERT_TRUE(Approve(Admin("dana"), &r).ok());
  ASSERT_EQ(r.state(), AccessRequest::APPROVED);
  EXPECT_EQ(StageLeft(r), AccessRequest::CUSTOMER_REVIEW);
  c.deciders = {"dana@c.example"};
  auto customer = RequestMessages(RequestEvent::kNoLongerNeeded, r, nullptr, c, clock_.Now());
  EXPECT_EQ(Recipients(customer, v1::Notification::EMAIL),
            (std::multiset<std::string>{"erin@c.example", "secops@c.example"}));
  EXPECT_EQ(Recipients(customer, v1::Notification::WEBHOOK),
            (std::multiset<std::string>{"https://hooks.c.example/lockbox"}));

  // A deny at the internal stage ends it there.
  AccessRequest d = NewRequest();
  ASSERT_TRUE(Deny(Reviewer("carol"), &d).ok());
  EXPECT_EQ(StageLeft(d), AccessRequest::INTERNAL_REVIEW);
}

}  // namespace
}  // namespace lockbox
