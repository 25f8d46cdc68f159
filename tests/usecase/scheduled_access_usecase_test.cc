// Scheduled access (SPEC section 10), in-process on a real PostgreSQL with
// the fake clock: a request's start_time refused in the past and after the
// request's expiry; the approved grant SCHEDULED until its start for every
// reader (GetGrant, ListGrants' filters, CheckAccess from the database with
// GRANT_NOT_STARTED, and a replica's grant view, which starts allowing by
// itself at the start with nothing written); its early end by release and
// revocation.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/app/grant_view.h"
#include "server/domain/lifecycle.h"
#include "server/store/postgres/change_feed.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

using Code = absl::StatusCode;
constexpr absl::Duration kLead = absl::Hours(2);

class ScheduledAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<DemoApp> demo = StartDemoApp();
    ASSERT_TRUE(demo.ok()) << demo.status();
    app_ = std::move(demo->app);
    world_ = std::move(demo->world);
    auto pem = AuditSigner::GeneratePem();
    ASSERT_TRUE(pem.ok());
    auto signer = AuditSigner::FromPem(*pem);
    ASSERT_TRUE(signer.ok());
    signer_ = std::move(*signer);
  }

  void TearDown() override {
    with_view_.reset();
    if (view_) view_->Stop();
  }

  // A second set of use cases on the same database with a grant view fed by
  // LISTEN/NOTIFY, as lockboxd runs it: the memory path. Started when the
  // test asks, so that a test can have the view read a scheduled grant in
  // its first build or hear it approved.
  void StartView() {
    PgStoreOptions store_options;
    store_options.database_url = app_->database().url();
    store_options.pool_size = 2;
    auto store = PgStore::Create(std::move(store_options));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    feed_ = std::make_unique<PgChangeFeed>(app_->database().url(), ChangeTopic::kAccess,
                                           absl::Milliseconds(100));
    view_ = std::make_unique<GrantView>(
        GrantView::Options{store_.get(), &app_->clock(), feed_.get(), absl::Seconds(5)});
    view_->Start();
    UseCasesOptions options;
    options.store = store_.get();
    options.clock = &app_->clock();
    options.trust_domain = kTrustDomain;
    options.page_token_key = "in-process-test-page-token-key";
    options.audit_signer = signer_.get();
    options.grant_view = view_.get();
    options.certificates = &certificates_;
    with_view_ = std::make_unique<UseCases>(std::move(options));
    ASSERT_TRUE(WaitFor([&] { return view_->Ready(); })) << "the grant view never got ready";
  }

  // Real time, not the fake clock: the feed's delivery is what is waited for.
  static bool WaitFor(const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  }

  UseCases& use_cases() { return app_->use_cases(); }
  const DemoWorld& w() const { return *world_; }

  static v1::CreateAccessRequestRequest AskFrom(
      absl::Time start, const std::string& environment = DemoWorld::kEnvironmentA) {
    v1::CreateAccessRequestRequest r = DemoWorld::Ask(environment);
    *r.mutable_access_request()->mutable_start_time() = ToProto(start);
    return r;
  }

  // A request starting at `start`, approved by both of tenant A's stages
  // now; the grant it made, as the engineer reads it.
  absl::StatusOr<v1::Grant> ScheduledGrant(absl::Time start) {
    auto request = use_cases().requests().CreateAccessRequest(w().engineer, AskFrom(start));
    if (!request.ok()) return request.status();
    v1::ApproveAccessRequestRequest approve;
    approve.set_name(request->name());
    auto decided = use_cases().requests().ApproveAccessRequest(w().reviewer, approve);
    if (!decided.ok()) return decided.status();
    decided = use_cases().requests().ApproveAccessRequest(w().tenant_a_admin, approve);
    if (!decided.ok()) return decided.status();
    if (decided->state() != v1::AccessRequest::APPROVED) {
      return absl::FailedPreconditionError("not approved: " + decided->DebugString());
    }
    return Get(decided->grant());
  }

  absl::StatusOr<v1::Grant> Get(const std::string& name) {
    v1::GetGrantRequest get;
    get.set_name(name);
    return use_cases().grants().GetGrant(w().engineer, get);
  }

  static v1::CheckAccessRequest Ask(const std::string& source = "sql") {
    v1::CheckAccessRequest r;
    r.set_principal(SpiffeId("operator/alice"));
    r.set_environment(DemoWorld::kEnvironmentA);
    r.set_data_source(source);
    return r;
  }
  // The database path alone (the harness's use cases have no grant view).
  v1::CheckAccessResponse FromDatabase(const std::string& source = "sql") {
    auto got = use_cases().grants().CheckAccess(w().enforcer, Ask(source));
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::CheckAccessResponse();
  }
  // Whether the grant view alone allows it (nullopt from memory: it does
  // not, and lockboxd would ask the database).
  bool AllowedFromMemory(const std::string& source = "sql") {
    auto got = with_view_->grants().CheckAccessFromMemory(w().enforcer, Ask(source));
    if (!got) return false;
    EXPECT_TRUE(got->ok()) << got->status();
    return got->ok() && (*got)->allowed();
  }
  // As lockboxd answers: memory first, then the database.
  v1::CheckAccessResponse WithView() {
    auto got = with_view_->grants().CheckAccess(w().enforcer, Ask());
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::CheckAccessResponse();
  }

  std::vector<std::string> Listed(const std::string& filter) {
    v1::ListGrantsRequest r;
    r.set_parent(DemoWorld::kTenantA);
    r.set_filter(filter);
    r.set_page_size(1000);
    auto got = use_cases().grants().ListGrants(w().reviewer, r);
    EXPECT_TRUE(got.ok()) << got.status();
    std::vector<std::string> names;
    if (got.ok()) {
      for (const auto& g : got->grants()) names.push_back(g.name());
    }
    return names;
  }

  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<DemoWorld> world_;
  std::unique_ptr<AuditSigner> signer_;
  std::unique_ptr<PgStore> store_;
  std::unique_ptr<PgChangeFeed> feed_;
  std::unique_ptr<GrantView> view_;
  InProcessCertificateVerifier certificates_;
  std::unique_ptr<UseCases> with_view_;
};

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST_F(ScheduledAccessTest, AStartInThePastOrAfterTheRequestsExpiryIsRefused) {
  const absl::Time now = app_->clock().Now();
  auto past =
      use_cases().requests().CreateAccessRequest(w().engineer, AskFrom(now - absl::Seconds(1)));
  EXPECT_EQ(past.status().code(), Code::kInvalidArgument) << past.status();
  EXPECT_EQ(ErrorReason(past.status()), "INVALID_FIELD");
  auto late = use_cases().requests().CreateAccessRequest(
      w().engineer, AskFrom(now + kDefaultRequestTtl + absl::Seconds(1)));
  EXPECT_EQ(late.status().code(), Code::kInvalidArgument) << late.status();
  // Nothing half-written: neither made a request.
  v1::ListAccessRequestsRequest list;
  list.set_parent(DemoWorld::kTenantA);
  auto listed = use_cases().requests().ListAccessRequests(w().reviewer, list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->access_requests_size(), 0);

  auto made = use_cases().requests().CreateAccessRequest(w().engineer, AskFrom(now + kLead));
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(FromProto(made->start_time()), now + kLead);
}

TEST_F(ScheduledAccessTest, TheGrantIsScheduledUntilItsStartFromTheDatabase) {
  const absl::Time start = app_->clock().Now() + kLead;
  auto grant = ScheduledGrant(start);
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->state(), v1::Grant::SCHEDULED);
  EXPECT_EQ(FromProto(grant->start_time()), start);
  EXPECT_EQ(FromProto(grant->expire_time()), start + kDefaultAccessDuration)
      << "the access period counts from the start";
  EXPECT_TRUE(Contains(Listed("state = SCHEDULED"), grant->name()));
  EXPECT_FALSE(Contains(Listed("state = ACTIVE"), grant->name()));
  EXPECT_TRUE(Contains(Listed("state != ACTIVE"), grant->name()));

  app_->clock().Set(start - absl::Seconds(1));
  v1::CheckAccessResponse before = FromDatabase();
  EXPECT_FALSE(before.allowed());
  EXPECT_EQ(before.reason(), "GRANT_NOT_STARTED");
  EXPECT_EQ(before.grant().name(), grant->name());
  EXPECT_EQ(before.grant().state(), v1::Grant::SCHEDULED);
  EXPECT_EQ(FromProto(before.grant().start_time()), start);
  EXPECT_FALSE(before.has_expire_time());
  // A source the grant would not cover is simply not granted.
  EXPECT_EQ(FromDatabase("made-up").reason(), "NO_ACTIVE_GRANT");

  app_->clock().Set(start + absl::Seconds(1));
  v1::CheckAccessResponse after = FromDatabase();
  EXPECT_TRUE(after.allowed());
  EXPECT_EQ(after.grant().name(), grant->name());
  EXPECT_EQ(FromProto(after.expire_time()), start + kDefaultAccessDuration);
  auto read = Get(grant->name());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->state(), v1::Grant::ACTIVE);
  EXPECT_TRUE(Contains(Listed("state = ACTIVE"), grant->name()));
  EXPECT_FALSE(Contains(Listed("state = SCHEDULED"), grant->name()));

  app_->clock().Set(start + kDefaultAccessDuration);
  EXPECT_EQ(FromDatabase().reason(), "NO_ACTIVE_GRANT");
  EXPECT_TRUE(Contains(Listed("state = EXPIRED"), grant->name()));
}

// The view hears the approval, holds the scheduled grant, and starts
// allowing at the start by the clock alone: nothing is written then.
TEST_F(ScheduledAccessTest, TheGrantViewStartsAllowingByItselfAtTheStart) {
  StartView();
  const absl::Time start = app_->clock().Now() + kLead;
  auto grant = ScheduledGrant(start);
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_TRUE(WaitFor([&] { return view_->size() == 1; })) << "the view holds the scheduled grant";

  app_->clock().Set(start - absl::Seconds(1));
  EXPECT_FALSE(AllowedFromMemory());
  v1::CheckAccessResponse before = WithView();
  EXPECT_FALSE(before.allowed());
  EXPECT_EQ(before.reason(), "GRANT_NOT_STARTED");

  app_->clock().Set(start + absl::Seconds(1));
  EXPECT_TRUE(AllowedFromMemory()) << "no notification: the start is the clock's";
  EXPECT_TRUE(WithView().allowed());
  EXPECT_EQ(view_->size(), 1u);
}

// A view built after the approval reads the scheduled grant in its first
// read (GrantStore::AllActiveGrants holds SCHEDULED grants too).
TEST_F(ScheduledAccessTest, AGrantViewBuiltLaterHoldsTheScheduledGrant) {
  const absl::Time start = app_->clock().Now() + kLead;
  auto grant = ScheduledGrant(start);
  ASSERT_TRUE(grant.ok()) << grant.status();
  StartView();
  EXPECT_EQ(view_->size(), 1u);
  app_->clock().Set(start - absl::Seconds(1));
  EXPECT_FALSE(AllowedFromMemory());
  app_->clock().Set(start + absl::Seconds(1));
  EXPECT_TRUE(AllowedFromMemory());
}

TEST_F(ScheduledAccessTest, AScheduledGrantIsReleasedOrRevokedBeforeItStarts) {
  StartView();
  const absl::Time start = app_->clock().Now() + kLead;
  auto released = ScheduledGrant(start);
  ASSERT_TRUE(released.ok()) << released.status();
  v1::ReleaseGrantRequest release;
  release.set_name(released->name());
  release.set_etag(released->etag());
  auto done = use_cases().grants().ReleaseGrant(w().engineer, release);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::Grant::RELEASED);
  EXPECT_EQ(FromProto(done->end_time()), app_->clock().Now());
  EXPECT_TRUE(Contains(Listed("state = RELEASED"), released->name()));
  EXPECT_FALSE(Contains(Listed("state = SCHEDULED"), released->name()));

  // tenants/ma allows revocation.
  auto revoked = ScheduledGrant(start);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  v1::RevokeGrantRequest revoke;
  revoke.set_name(revoked->name());
  revoke.set_reason("the window moved");
  auto ended = use_cases().grants().RevokeGrant(w().tenant_a_admin, revoke);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->state(), v1::Grant::REVOKED);

  // Their ends are audited like any grant's.
  v1::ListAuditEventsRequest audit;
  audit.set_parent(DemoWorld::kTenantA);
  audit.set_filter("action = grant.release");
  auto events = use_cases().audit().ListAuditEvents(w().admin, audit);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->audit_events_size(), 1);
  EXPECT_EQ(events->audit_events(0).details().at("grant_state"), "RELEASED");

  // Neither ever starts, from the database or from memory.
  ASSERT_TRUE(WaitFor([&] { return view_->size() == 0; })) << "the view dropped both";
  app_->clock().Set(start + absl::Seconds(1));
  EXPECT_EQ(FromDatabase().reason(), "NO_ACTIVE_GRANT");
  EXPECT_FALSE(AllowedFromMemory());
  // Ended is ended: no second release.
  release.clear_etag();
  EXPECT_EQ(use_cases().grants().ReleaseGrant(w().engineer, release).status().code(),
            Code::kFailedPrecondition);
}

// With quorum and narrowing (h-quorum): an approval may set a later start,
// never an earlier one, and the grant starts at the latest.
TEST_F(ScheduledAccessTest, AnApproverMovesTheStartLaterNeverEarlier) {
  const absl::Time start = app_->clock().Now() + kLead;
  auto request = use_cases().requests().CreateAccessRequest(w().engineer, AskFrom(start));
  ASSERT_TRUE(request.ok()) << request.status();
  v1::ApproveAccessRequestRequest earlier;
  earlier.set_name(request->name());
  *earlier.mutable_start_time() = ToProto(start - absl::Minutes(1));
  auto refused = use_cases().requests().ApproveAccessRequest(w().reviewer, earlier);
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument) << refused.status();
  EXPECT_EQ(ErrorReason(refused.status()), "APPROVAL_WIDENS");

  const absl::Time later = start + absl::Hours(1);
  v1::ApproveAccessRequestRequest moved;
  moved.set_name(request->name());
  *moved.mutable_start_time() = ToProto(later);
  auto internal = use_cases().requests().ApproveAccessRequest(w().reviewer, moved);
  ASSERT_TRUE(internal.ok()) << internal.status();
  v1::ApproveAccessRequestRequest as_asked;
  as_asked.set_name(request->name());
  auto decided = use_cases().requests().ApproveAccessRequest(w().tenant_a_admin, as_asked);
  ASSERT_TRUE(decided.ok()) << decided.status();
  ASSERT_EQ(decided->state(), v1::AccessRequest::APPROVED);
  auto grant = Get(decided->grant());
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->state(), v1::Grant::SCHEDULED);
  EXPECT_EQ(FromProto(grant->start_time()), later);
  // The grant is the intersection of the approvals' windows: the admin
  // approved the request as asked, from its start for the whole period.
  EXPECT_EQ(FromProto(grant->expire_time()), start + kDefaultAccessDuration);

  // The request's own start is not enough: the approver's later one counts.
  app_->clock().Set(start + absl::Seconds(1));
  EXPECT_EQ(FromDatabase().reason(), "GRANT_NOT_STARTED");
  app_->clock().Set(later - absl::Seconds(1));
  EXPECT_EQ(FromDatabase().reason(), "GRANT_NOT_STARTED");
  app_->clock().Set(later + absl::Seconds(1));
  EXPECT_TRUE(FromDatabase().allowed());
}

}  // namespace
}  // namespace lockbox::testing
