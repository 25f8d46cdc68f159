// Break-glass rules (domain/emergency.h) with made-up time: who may open
// one, the request it makes and its caps, what an emergency grant covers
// from memory and from the database, the review's transitions, the
// reminders' and the due time's seconds, and the messages' recipients and
// marks.
#include "server/domain/emergency.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "server/domain/authorization.h"
#include "server/domain/lifecycle.h"
#include "server/domain/notifications.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

using v1::AccessRequest;
using v1::EmergencyReview;

const absl::Time kT0 = absl::FromUnixSeconds(1800000000);

Actor Operator(const std::string& user, std::vector<Binding> bindings) {
  Actor a;
  a.principal.kind = Principal::Kind::kOperator;
  a.principal.user = user;
  a.principal.spiffe_id = "spiffe://lockbox.test/operator/" + user;
  a.permissions = Permissions(std::move(bindings));
  return a;
}

Actor TenantAdmin() {
  Actor a;
  a.principal.kind = Principal::Kind::kTenantUser;
  a.principal.tenant = "ma";
  a.principal.user = "dana";
  a.principal.spiffe_id = "spiffe://lockbox.test/tenant/ma/user/dana";
  a.permissions = Permissions({{Role::kTenantAdmin, "ma"}});
  return a;
}

v1::Environment Env() {
  v1::Environment env;
  env.set_name("tenants/ma/environments/prod");
  env.set_managed(true);
  auto* sql = env.add_data_sources();
  sql->set_id("sql");
  sql->set_kind("sql_database");
  sql->set_lockbox_supported(true);
  auto* rcs = env.add_data_sources();
  rcs->set_id("rcs");
  rcs->set_kind("storage_account");
  return env;
}

v1::LockboxPolicy Policy() {
  v1::LockboxPolicy p = DefaultPolicy("ma");
  p.set_enabled(true);
  return p;
}

AccessRequest Asked() {
  AccessRequest a;
  a.set_environment("tenants/ma/environments/prod");
  a.set_reason(AccessRequest::EMERGENCY);
  a.set_incident_id("INC-42");
  a.set_justification("outage");
  return a;
}

const Actor kEngineer = Operator("eve", {{Role::kEngineer, ""}, {Role::kBreakGlass, ""}});

absl::StatusOr<AccessRequest> Make(const AccessRequest& asked,
                                   const v1::LockboxPolicy& policy = Policy()) {
  return NewEmergencyRequest(asked, "ma", "00000000-0000-4000-8000-000000000001", Env(), policy,
                             kEngineer, kT0);
}

TEST(EmergencyRoleTest, ParsedNamedAndBoundToOperatorsOnly) {
  ASSERT_EQ(ParseRole("operator.breakglass"), Role::kBreakGlass);
  EXPECT_EQ(RoleName(Role::kBreakGlass), "operator.breakglass");
  EXPECT_FALSE(IsTenantScoped(Role::kBreakGlass));
  Principal op{"spiffe://lockbox.test/operator/eve", Principal::Kind::kOperator, "", "eve"};
  Principal svc{"spiffe://lockbox.test/service/x", Principal::Kind::kService, "", "x"};
  Principal user{"spiffe://lockbox.test/tenant/ma/user/u", Principal::Kind::kTenantUser, "ma", "u"};
  EXPECT_TRUE(ValidateBinding(op, Role::kBreakGlass, "").ok());
  EXPECT_FALSE(ValidateBinding(op, Role::kBreakGlass, "ma").ok());
  EXPECT_FALSE(ValidateBinding(svc, Role::kBreakGlass, "").ok());
  EXPECT_FALSE(ValidateBinding(user, Role::kBreakGlass, "ma").ok());
  // Bound by lockbox.admin, never by a tenant admin.
  EXPECT_TRUE(
      authz::CreateRoleBinding(Operator("root", {{Role::kAdmin, ""}}), Role::kBreakGlass, "").ok());
  EXPECT_FALSE(authz::CreateRoleBinding(TenantAdmin(), Role::kBreakGlass, "").ok());
}

TEST(EmergencyRoleTest, OpeningNeedsEngineerAndBreakglass) {
  EXPECT_TRUE(authz::OpenEmergencyAccess(kEngineer).ok());
  EXPECT_EQ(authz::OpenEmergencyAccess(Operator("a", {{Role::kEngineer, ""}})).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(authz::OpenEmergencyAccess(Operator("b", {{Role::kBreakGlass, ""}})).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(authz::OpenEmergencyAccess(Operator("c", {{Role::kAdmin, ""}})).ok());
  EXPECT_TRUE(authz::ReviewEmergencyAccess(TenantAdmin(), "ma").ok());
  EXPECT_FALSE(authz::ReviewEmergencyAccess(TenantAdmin(), "mb").ok());
  EXPECT_FALSE(authz::ReviewEmergencyAccess(kEngineer, "ma").ok());
}

TEST(EmergencyRequestTest, ApprovedAtOnceWithAReviewDueIn7Days) {
  absl::StatusOr<AccessRequest> r = Make(Asked());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state(), AccessRequest::APPROVED);
  EXPECT_EQ(r->incident_id(), "INC-42");
  EXPECT_EQ(r->display_status(), "Emergency access");
  EXPECT_EQ(r->emergency_review().state(), EmergencyReview::OPEN);
  EXPECT_EQ(FromProto(r->emergency_review().due_time()), kT0 + absl::Hours(24 * 7));
  EXPECT_EQ(FromProto(r->access_duration()), absl::Hours(1));
  v1::Grant g = NewGrant(*r, Env(), Policy(), "ma", "g1", kT0);
  EXPECT_TRUE(g.emergency());
  EXPECT_EQ(FromProto(g.start_time()), kT0);
  EXPECT_EQ(FromProto(g.expire_time()), kT0 + absl::Hours(1));
}

TEST(EmergencyRequestTest, TheIncidentIsRequiredShortAndPrintable) {
  AccessRequest a = Asked();
  a.clear_incident_id();
  EXPECT_EQ(FieldOf(Make(a).status()), "access_request.incident_id");
  a.set_incident_id(std::string(kMaxIncidentIdBytes, 'x'));
  EXPECT_TRUE(Make(a).ok());
  a.set_incident_id(std::string(kMaxIncidentIdBytes + 1, 'x'));
  EXPECT_EQ(Make(a).status().code(), absl::StatusCode::kInvalidArgument);
  a.set_incident_id("INC\n1");
  EXPECT_EQ(Make(a).status().code(), absl::StatusCode::kInvalidArgument);
  a = Asked();
  a.clear_justification();
  EXPECT_EQ(FieldOf(Make(a).status()), "access_request.justification");
  a = Asked();
  a.set_justification(std::string(kMaxJustificationBytes + 1, 'j'));
  EXPECT_EQ(Make(a).status().code(), absl::StatusCode::kInvalidArgument);
  // Not for the other reasons.
  a = Asked();
  a.set_reason(AccessRequest::OPERATOR_INITIATED);
  EXPECT_EQ(FieldOf(NewAccessRequest(a, "ma", "x", Env(), Policy(), kEngineer, kT0).status()),
            "access_request.incident_id");
}

TEST(EmergencyRequestTest, NoStartTimeAndThePeriodCappedByThePolicy) {
  AccessRequest a = Asked();
  *a.mutable_start_time() = ToProto(kT0 + absl::Hours(1));
  EXPECT_EQ(FieldOf(Make(a).status()), "access_request.start_time");
  a = Asked();
  *a.mutable_access_duration() = ToProto(absl::Hours(1) + absl::Seconds(1));
  EXPECT_EQ(FieldReasonOf(Make(a).status()), "OUT_OF_RANGE");
  *a.mutable_access_duration() = ToProto(absl::Minutes(30));
  ASSERT_TRUE(Make(a).ok());
  EXPECT_EQ(FromProto(Make(a)->access_duration()), absl::Minutes(30));
  v1::LockboxPolicy four = Policy();
  *four.mutable_emergency_access_duration() = ToProto(absl::Hours(4));
  *a.mutable_access_duration() = ToProto(absl::Hours(4));
  EXPECT_TRUE(Make(a, four).ok());
  *a.mutable_access_duration() = ToProto(absl::Hours(4) + absl::Seconds(1));
  EXPECT_EQ(Make(a, four).status().code(), absl::StatusCode::kInvalidArgument);
  // The policy itself never allows more than 4 hours.
  v1::LockboxPolicy p = Policy();
  v1::LockboxPolicy update;
  *update.mutable_emergency_access_duration() = ToProto(absl::Hours(5));
  google::protobuf::FieldMask mask;
  mask.add_paths("emergency_access_duration");
  EXPECT_EQ(ApplyPolicyUpdate(update, mask, &p).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmergencyDuration(DefaultPolicy("ma")), absl::Hours(1));
}

TEST(EmergencyRequestTest, ForbiddenAndOneAtATime) {
  EXPECT_TRUE(CheckEmergencyAllowed(Policy()).ok());
  v1::LockboxPolicy forbidden = Policy();
  forbidden.set_emergency_access(v1::LockboxPolicy::FORBIDDEN);
  EXPECT_EQ(ReasonOf(CheckEmergencyAllowed(forbidden)), "EMERGENCY_ACCESS_FORBIDDEN");
  EXPECT_EQ(CheckEmergencyAllowed(forbidden).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(CheckNoActiveEmergencyGrant(0).ok());
  EXPECT_EQ(ReasonOf(CheckNoActiveEmergencyGrant(1)), "EMERGENCY_GRANT_ACTIVE");
}

TEST(EmergencyGrantTest, CoversWhatItPinnedFromMemoryAndFromTheDatabase) {
  AccessRequest asked = Asked();
  asked.add_data_sources("sql");
  v1::Grant g = NewGrant(*Make(asked), Env(), Policy(), "ma", "g1", kT0);
  ASSERT_EQ(g.pinned_data_sources_size(), 1);
  EXPECT_FALSE(g.pinned_data_sources(0).customer_reviewed());
  const v1::Environment env = Env();
  const v1::LockboxPolicy policy = Policy();
  AccessCheck memory{g.principal(), g.environment(), "sql", kT0, true, nullptr, nullptr};
  AccessCheck database{g.principal(), g.environment(), "sql", kT0, true, &env, &policy};
  EXPECT_TRUE(GrantAllows(g, memory));
  EXPECT_TRUE(GrantAllows(g, database));
  // Not what it did not pin.
  memory.data_source = database.data_source = "rcs";
  EXPECT_FALSE(GrantAllows(g, memory));
  EXPECT_FALSE(GrantAllows(g, database));
  // The same grant not emergency: the customer did not review it.
  v1::Grant normal = g;
  normal.set_emergency(false);
  memory.data_source = database.data_source = "sql";
  EXPECT_FALSE(GrantAllows(normal, memory));
  EXPECT_FALSE(GrantAllows(normal, database));
  // It stops at its end, and without operator.engineer.
  database.now = kT0 + absl::Hours(1) - absl::Seconds(1);
  EXPECT_TRUE(GrantAllows(g, database));
  database.now = kT0 + absl::Hours(1);
  EXPECT_FALSE(GrantAllows(g, database));
  memory.principal_is_engineer = false;
  EXPECT_FALSE(GrantAllows(g, memory));
}

TEST(EmergencyReviewTest, AcceptOrDisputeOnce) {
  EXPECT_EQ(ValidateReview(EmergencyReview::VERDICT_UNSPECIFIED, "").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateReview(EmergencyReview::ACCEPT, "").ok());
  EXPECT_EQ(FieldOf(ValidateReview(EmergencyReview::DISPUTE, "")), "comment");
  EXPECT_TRUE(ValidateReview(EmergencyReview::DISPUTE, "why").ok());
  EXPECT_EQ(FieldReasonOf(
                ValidateReview(EmergencyReview::ACCEPT, std::string(kMaxCommentBytes + 1, 'c'))),
            "TOO_LONG");

  AccessRequest r = *Make(Asked());
  Actor admin = TenantAdmin();
  ASSERT_TRUE(RecordReview(admin, EmergencyReview::DISPUTE, "why", kT0 + absl::Hours(2), &r).ok());
  EXPECT_EQ(r.emergency_review().state(), EmergencyReview::DISPUTED);
  EXPECT_EQ(r.emergency_review().reviewer(), admin.principal.spiffe_id);
  EXPECT_EQ(r.emergency_review().comment(), "why");
  EXPECT_EQ(FromProto(r.emergency_review().review_time()), kT0 + absl::Hours(2));
  absl::Status again = RecordReview(admin, EmergencyReview::ACCEPT, "", kT0, &r);
  EXPECT_EQ(ReasonOf(again), "REVIEW_CLOSED");
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);

  AccessRequest normal;
  normal.set_reason(AccessRequest::OPERATOR_INITIATED);
  EXPECT_EQ(ReasonOf(RecordReview(admin, EmergencyReview::ACCEPT, "", kT0, &normal)),
            "STATE_TRANSITION_NOT_ALLOWED");
}

TEST(EmergencyReviewTest, RemindersAndTheDueTimeToTheSecond) {
  EXPECT_EQ(EmergencyReminderTime(kT0, 1), kT0 + absl::Hours(24));
  EXPECT_EQ(EmergencyReminderTime(kT0, 2), kT0 + absl::Hours(24 * 6));
  EXPECT_EQ(EmergencyRemindersDue(kT0, kT0 + absl::Hours(24) - absl::Seconds(1)), 0);
  EXPECT_EQ(EmergencyRemindersDue(kT0, kT0 + absl::Hours(24)), 1);
  EXPECT_EQ(EmergencyRemindersDue(kT0, kT0 + absl::Hours(24 * 6) - absl::Seconds(1)), 1);
  EXPECT_EQ(EmergencyRemindersDue(kT0, kT0 + absl::Hours(24 * 6)), 2);
  EXPECT_EQ(EmergencyRemindersDue(kT0, kT0 + absl::Hours(24 * 30)), 2);

  AccessRequest r = *Make(Asked());
  absl::Time due = kT0 + kEmergencyReviewPeriod;
  EXPECT_FALSE(EmergencyReviewOverdueAt(r.emergency_review(), due - absl::Seconds(1)));
  EXPECT_EQ(RecordReviewOverdue(due - absl::Seconds(1), &r).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(EmergencyReviewOverdueAt(r.emergency_review(), due));
  ASSERT_TRUE(RecordReviewOverdue(due, &r).ok());
  EXPECT_TRUE(r.emergency_review().overdue());
  EXPECT_EQ(r.emergency_review().state(), EmergencyReview::OPEN);
  // Once.
  EXPECT_FALSE(RecordReviewOverdue(due + absl::Hours(1), &r).ok());
  // Still closed, late.
  EXPECT_TRUE(
      RecordReview(TenantAdmin(), EmergencyReview::ACCEPT, "", due + absl::Hours(1), &r).ok());
  EXPECT_TRUE(r.emergency_review().overdue());
  EXPECT_FALSE(EmergencyReviewOverdueAt(r.emergency_review(), due + absl::Hours(2)));
}

std::vector<std::string> Recipients(const std::vector<OutboundMessage>& messages,
                                    v1::Notification::Channel channel) {
  std::vector<std::string> out;
  for (const OutboundMessage& m : messages) {
    if (m.channel == channel) out.push_back(m.recipient);
  }
  return out;
}

TEST(EmergencyMessagesTest, MarkedAndSentToWhoMustKnow) {
  AccessRequest r = *Make(Asked());
  r.set_name("tenants/ma/accessRequests/00000000-0000-4000-8000-000000000001");
  r.set_requester(kEngineer.principal.spiffe_id);
  r.set_grant("tenants/ma/grants/g1");
  Contacts c;
  c.reviewers = {"reviewer@provider.example"};
  c.tenant_admins = {"admin@ma.example"};
  c.policy_emails = {"oncall@ma.example"};
  c.requester = {"eve@provider.example"};
  c.webhook_url = "https://hooks.ma.example/lockbox";
  c.security_contact = "security@provider.example";

  auto opened = RequestMessages(RequestEvent::kEmergencyOpened, r, nullptr, c, kT0);
  EXPECT_EQ(Recipients(opened, v1::Notification::EMAIL),
            (std::vector<std::string>{"admin@ma.example", "oncall@ma.example"}));
  ASSERT_EQ(Recipients(opened, v1::Notification::WEBHOOK).size(), 1u);
  for (const OutboundMessage& m : opened) {
    EXPECT_TRUE(absl::StartsWith(m.subject, "[EMERGENCY ACCESS] ")) << m.subject;
    EXPECT_EQ(m.event, "access_request.emergency_opened");
    EXPECT_EQ(m.tenant, "ma");
    if (m.channel == v1::Notification::WEBHOOK) {
      EXPECT_TRUE(absl::StrContains(m.body, "\"emergency\":true")) << m.body;
      EXPECT_TRUE(absl::StrContains(m.body, "\"event\":\"access_request.emergency_opened\""));
    } else {
      EXPECT_TRUE(absl::StrContains(m.body, "INC-42"));
      EXPECT_TRUE(absl::StrContains(m.body, "lockboxctl breakglass review"));
    }
  }

  auto reminder = RequestMessages(RequestEvent::kEmergencyReminder, r, nullptr, c, kT0);
  EXPECT_EQ(Recipients(reminder, v1::Notification::EMAIL),
            (std::vector<std::string>{"admin@ma.example", "oncall@ma.example"}));

  auto overdue = RequestMessages(RequestEvent::kEmergencyOverdue, r, nullptr, c, kT0);
  EXPECT_EQ(Recipients(overdue, v1::Notification::EMAIL),
            (std::vector<std::string>{"admin@ma.example", "oncall@ma.example",
                                      "security@provider.example"}));
  for (const OutboundMessage& m : overdue) {
    // The security contact's copy is the provider's, not listed to the tenant.
    if (m.recipient == "security@provider.example") EXPECT_EQ(m.tenant, "");
  }

  auto disputed = RequestMessages(RequestEvent::kEmergencyDisputed, r, nullptr, c, kT0);
  EXPECT_EQ(Recipients(disputed, v1::Notification::EMAIL),
            (std::vector<std::string>{"security@provider.example"}));
  // Without a security contact, a dispute e-mails nobody.
  c.security_contact.clear();
  disputed = RequestMessages(RequestEvent::kEmergencyDisputed, r, nullptr, c, kT0);
  EXPECT_TRUE(Recipients(disputed, v1::Notification::EMAIL).empty());

  // An ordinary request's webhook is not marked.
  AccessRequest normal = r;
  normal.set_reason(AccessRequest::OPERATOR_INITIATED);
  normal.clear_emergency_review();
  for (const OutboundMessage& m :
       RequestMessages(RequestEvent::kCreated, normal, nullptr, c, kT0)) {
    EXPECT_FALSE(absl::StrContains(m.body, "\"emergency\"")) << m.body;
  }
}

}  // namespace
}  // namespace lockbox
