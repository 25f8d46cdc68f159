// The offline verifier's check of grants against signed approvals
// (server/domain/signed_approvals.h): events built by hand, as the log
// records them, no database.
#include "server/domain/signed_approvals.h"

#include <gtest/gtest.h>

#include <string>

#include "google/protobuf/util/time_util.h"

namespace lockbox {
namespace {

using google::protobuf::util::TimeUtil;

constexpr char kRequest[] = "tenants/ma/accessRequests/r1";
const absl::Time kT0 = absl::FromUnixSeconds(1796000000);

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp out;
  out.set_seconds(absl::ToUnixSeconds(t));
  out.set_nanos(
      static_cast<int32_t>((t - absl::FromUnixSeconds(out.seconds())) / absl::Nanoseconds(1)));
  return out;
}

std::string Text(absl::Time t) { return TimeUtil::ToString(Ts(t)); }

v1::AuditEvent Policy(int customer_approvals) {
  v1::AuditEvent e;
  e.set_action("lockbox_policy.update");
  (*e.mutable_details())["customer_approvals"] = std::to_string(customer_approvals);
  return e;
}

v1::AuditEvent Create(int customer_required, const std::string& duration = "7200s") {
  v1::AuditEvent e;
  e.set_action("access_request.create");
  e.set_resource(kRequest);
  e.set_request_state(v1::AccessRequest::PENDING);
  auto& d = *e.mutable_details();
  d["access_duration"] = duration;
  d["data_sources"] = "";
  d["customer_approvals_required"] = std::to_string(customer_required);
  return e;
}

v1::AuditEvent Approve(const std::string& actor, absl::Time at) {
  v1::AuditEvent e;
  e.set_action("access_request.approve");
  e.set_resource(kRequest);
  e.set_actor(actor);
  *e.mutable_event_time() = Ts(at);
  e.set_request_state(v1::AccessRequest::PENDING);
  (*e.mutable_details())["stage"] = "CUSTOMER_REVIEW";
  return e;
}

// The approval that made a grant on sql from `start` to `end`.
v1::AuditEvent Completing(v1::AuditEvent e, absl::Time start, absl::Time end,
                          const std::string& sources = "sql") {
  e.set_request_state(v1::AccessRequest::APPROVED);
  auto& d = *e.mutable_details();
  d["grant"] = "tenants/ma/grants/g1";
  d["grant_data_sources"] = sources;
  d["grant_customer_reviewed"] = sources;
  d["grant_start_time"] = Text(start);
  *e.mutable_access_expire_time() = Ts(end);
  return e;
}

TEST(SignedApprovalCheck, AGrantInsideEverySignedWindowPasses) {
  SignedApprovalCheck check;
  EXPECT_EQ(check.Add(Policy(2), true, false), "");
  EXPECT_EQ(check.Add(Create(2), true, false), "");
  v1::AuditEvent ann = Approve("spiffe://x/tenant/ma/user/ann", kT0);
  (*ann.mutable_details())["narrowed.access_duration"] = "3600s";
  (*ann.mutable_details())["narrowed.data_sources"] = "sql,rcs";
  EXPECT_EQ(check.Add(ann, true, true), "");
  v1::AuditEvent ben = Completing(Approve("spiffe://x/tenant/ma/user/ben", kT0 + absl::Minutes(10)),
                                  kT0 + absl::Minutes(10), kT0 + absl::Hours(1));
  EXPECT_EQ(check.Add(ben, true, true), "");
}

TEST(SignedApprovalCheck, SourcesOutsideASignedNarrowingFail) {
  SignedApprovalCheck check;
  check.Add(Create(1), true, false);
  v1::AuditEvent ann =
      Completing(Approve("spiffe://x/ann", kT0), kT0, kT0 + absl::Hours(1), "sql,rcs");
  (*ann.mutable_details())["narrowed.data_sources"] = "sql";
  EXPECT_NE(check.Add(ann, true, true).find("data source rcs"), std::string::npos);
}

TEST(SignedApprovalCheck, AStartBeforeTheSignedStartFails) {
  SignedApprovalCheck check;
  check.Add(Create(1), true, false);
  v1::AuditEvent ann =
      Completing(Approve("spiffe://x/ann", kT0), kT0 + absl::Minutes(5), kT0 + absl::Hours(1));
  (*ann.mutable_details())["narrowed.start_time"] = Text(kT0 + absl::Minutes(30));
  EXPECT_NE(check.Add(ann, true, true).find("before the"), std::string::npos);
}

TEST(SignedApprovalCheck, AnEndPastTheEarlierApproversWindowFails) {
  // ann signed a start at T0+1h for an hour: the grant may not end after
  // T0+2h.
  SignedApprovalCheck check;
  check.Add(Create(1), false, false);
  v1::AuditEvent ann = Approve("spiffe://x/ann", kT0);
  (*ann.mutable_details())["narrowed.start_time"] = Text(kT0 + absl::Hours(1));
  (*ann.mutable_details())["narrowed.access_duration"] = "3600s";
  ann = Completing(ann, kT0 + absl::Hours(1), kT0 + absl::Hours(2) + absl::Seconds(1));
  // Checked even where signatures are not required: the signature proves
  // what was allowed.
  EXPECT_NE(check.Add(ann, false, true).find("after the window"), std::string::npos);
}

TEST(SignedApprovalCheck, TheRequestsPeriodBoundsAnApprovalThatDidNotNarrow) {
  SignedApprovalCheck check;
  check.Add(Create(1, "1800s"), true, false);
  v1::AuditEvent ann = Completing(Approve("spiffe://x/ann", kT0), kT0, kT0 + absl::Minutes(31));
  EXPECT_NE(check.Add(ann, true, true).find("after the window"), std::string::npos);
}

TEST(SignedApprovalCheck, FewerDistinctSignersThanTheQuorumFail) {
  SignedApprovalCheck check;
  check.Add(Create(2), true, false);
  // The same person twice counts once.
  check.Add(Approve("spiffe://x/ann", kT0), true, true);
  v1::AuditEvent again = Completing(Approve("spiffe://x/ann", kT0), kT0, kT0 + absl::Hours(1));
  EXPECT_NE(check.Add(again, true, true).find("quorum was 2"), std::string::npos);
}

TEST(SignedApprovalCheck, ThePolicysQuorumRaisesThePinnedOne) {
  SignedApprovalCheck check;
  check.Add(Policy(1), true, false);
  check.Add(Create(1), true, false);
  check.Add(Policy(3), true, false);
  check.Add(Approve("spiffe://x/ann", kT0), true, true);
  // Lowered again: the raise at ann's approval stands.
  check.Add(Policy(1), true, false);
  v1::AuditEvent ben = Completing(Approve("spiffe://x/ben", kT0), kT0, kT0 + absl::Hours(1));
  EXPECT_NE(check.Add(ben, true, true).find("quorum was 3"), std::string::npos);
}

TEST(SignedApprovalCheck, QuorumIsNotAskedWhereSignaturesAreNotRequiredOrNotNeeded) {
  SignedApprovalCheck off;
  off.Add(Create(2), false, false);
  EXPECT_EQ(
      off.Add(Completing(Approve("spiffe://x/ann", kT0), kT0, kT0 + absl::Hours(1)), false, false),
      "");
  // A grant on nothing the customer reviewed needed no consent.
  SignedApprovalCheck internal;
  internal.Add(Create(2), true, false);
  v1::AuditEvent e = Completing(Approve("spiffe://x/ops", kT0), kT0, kT0 + absl::Hours(1));
  (*e.mutable_details())["grant_customer_reviewed"] = "";
  EXPECT_EQ(internal.Add(e, true, false), "");
}

TEST(SignedApprovalCheck, AnExtensionMayAddNoMoreThanItsSignedPeriod) {
  SignedApprovalCheck check;
  v1::AuditEvent create = Create(1, "7200s");
  (*create.mutable_details())["extends_grant"] = "tenants/ma/grants/g1";
  check.Add(create, true, false);
  v1::AuditEvent ann = Approve("spiffe://x/ann", kT0);
  (*ann.mutable_details())["narrowed.access_duration"] = "3600s";
  ann = Completing(ann, kT0 - absl::Hours(1), kT0 + absl::Hours(3));
  (*ann.mutable_details())["grant_previous_expire_time"] =
      absl::FormatTime(absl::RFC3339_full, kT0 + absl::Hours(1), absl::UTCTimeZone());
  EXPECT_NE(check.Add(ann, true, true).find("past the 1h"), std::string::npos);
}

TEST(SignedApprovalCheck, EventsWithoutTheNewDetailsAreCheckedOnWhatTheyCarry) {
  // A log from before quorum and narrowing: no scope on the create, no
  // grant_start_time; one signature, quorum 1.
  SignedApprovalCheck check;
  v1::AuditEvent create;
  create.set_action("access_request.create");
  create.set_resource(kRequest);
  check.Add(create, true, false);
  v1::AuditEvent ann = Completing(Approve("spiffe://x/ann", kT0), kT0, kT0 + absl::Hours(8));
  ann.mutable_details()->erase("grant_start_time");
  EXPECT_EQ(check.Add(ann, true, true), "");
}

}  // namespace
}  // namespace lockbox
