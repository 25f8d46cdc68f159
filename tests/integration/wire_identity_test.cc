// What only the wire shows, through the real lockboxd over mTLS: the caller
// is the certificate (its SPIFFE ID, and the on-behalf-of header for the
// portal alone), never a field of the message; and every service's adapter
// reaches its use case, streams included. Who may call what is the
// in-process matrix's (tests/usecase/authorization_matrix_test.cc).
#include <gtest/gtest.h>
#include <lockbox/client.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "tests/support/harness.h"
#include "tests/support/tokens.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

using Code = grpc::StatusCode;
constexpr auto kWatchTimeout = std::chrono::seconds(30);

class WireIdentityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    const std::map<std::string, std::string> paths = {
        {"alice", "operator/alice"},     {"bob", "operator/bob"},
        {"dana", "tenant/ma/user/dana"}, {"enforcer", "service/enforcer"},
        {"portal", "service/portal"},    {"zed", "operator/zed"}};
    for (const auto& [who, path] : paths) certs_->Make(who, path);
    server_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"));
    ASSERT_TRUE(server_->WaitReady("admin"));
    lockbox::Client& admin = As("admin");
    // dana is the tenant's first tenant.admin, named at its creation, with
    // the tenant's token issuer.
    issuer_ = new TestTokenIssuer("https://login.ma.example", "lockbox");
    v1::CreateTenantRequest ct = TenantRequest(*certs_, "ma", "dana");
    *ct.mutable_identity()->add_token_issuers() = issuer_->Registration();
    ASSERT_TRUE(admin.CreateTenant(ct).ok());
    ASSERT_TRUE(server_->WaitReady("dana", 15));
    v1::CreateEnvironmentRequest ce;
    ce.set_parent("tenants/ma");
    ce.set_environment_id("prod");
    ASSERT_TRUE(admin.CreateEnvironment(ce).ok());
    Bind(Id("operator/alice"), "operator.engineer", "");
    Bind(Id("operator/bob"), "operator.reviewer", "");
    Bind(Id("service/enforcer"), "service.enforcer", "");
    Bind(Id("service/portal"), "service.portal", "");
    v1::UpdateLockboxPolicyRequest up;
    up.mutable_lockbox_policy()->set_name("tenants/ma/lockboxPolicy");
    up.mutable_lockbox_policy()->set_enabled(true);
    up.mutable_update_mask()->add_paths("enabled");
    ASSERT_TRUE(As("dana").UpdateLockboxPolicy(up).ok());
  }
  static void TearDownTestSuite() {
    clients_.clear();
    delete issuer_;
    delete server_;
    delete certs_;
    delete db_;
  }

  // `who`'s certificate; with `on_behalf_of`, the header on every call.
  static lockbox::Client& As(const std::string& who, const std::string& on_behalf_of = "") {
    std::string key = who + "|" + on_behalf_of;
    auto it = clients_.find(key);
    if (it != clients_.end()) return *it->second;
    return *(clients_[key] = LibraryClient(*certs_, who, server_->target(),
                                           [&](Options* o) { o->on_behalf_of = on_behalf_of; }));
  }
  static void Bind(const std::string& principal, const std::string& role,
                   const std::string& tenant) {
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(principal);
    r.mutable_role_binding()->set_role(role);
    r.mutable_role_binding()->set_tenant(tenant);
    ASSERT_TRUE(As("admin").CreateRoleBinding(r).ok()) << principal;
  }
  static v1::CreateAccessRequestRequest Ask() {
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/ma");
    r.mutable_access_request()->set_environment("tenants/ma/environments/prod");
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_justification("wire");
    return r;
  }
  static std::vector<v1::AuditEvent> Audit(const std::string& filter) {
    v1::ListAuditEventsRequest r;
    r.set_parent("tenants/ma");
    r.set_filter(filter);
    r.set_page_size(1000);
    auto got = As("admin").ListAuditEvents(r);
    EXPECT_TRUE(got.ok()) << got.status().error_message();
    if (!got.ok()) return {};
    return {got->audit_events().begin(), got->audit_events().end()};
  }

  static TestDatabase* db_;
  static Certificates* certs_;
  static ServerProcess* server_;
  static TestTokenIssuer* issuer_;  // tenants/ma's registered issuer
  static std::map<std::string, std::unique_ptr<lockbox::Client>> clients_;
};
TestDatabase* WireIdentityTest::db_ = nullptr;
Certificates* WireIdentityTest::certs_ = nullptr;
ServerProcess* WireIdentityTest::server_ = nullptr;
TestTokenIssuer* WireIdentityTest::issuer_ = nullptr;
std::map<std::string, std::unique_ptr<lockbox::Client>> WireIdentityTest::clients_;

// Each service's adapter reaches its use case with the certificate's
// identity: one call per service, and both streams.
TEST_F(WireIdentityTest, EveryServiceAnswersTheCertificatesHolder) {
  v1::GetTenantRequest gt;
  gt.set_name("tenants/ma");
  auto tenant = As("dana").GetTenant(gt);
  ASSERT_TRUE(tenant.ok()) << tenant.status().error_message();
  EXPECT_EQ(tenant->name(), "tenants/ma");

  auto created = As("alice").CreateAccessRequest(Ask());
  ASSERT_TRUE(created.ok()) << created.status().error_message();
  EXPECT_EQ(created->requester(), Id("operator/alice"));

  // The watch's first message is the current state; the cancel it is sent
  // after ends it, so it returns at once without waiting for its deadline.
  v1::WatchAccessRequestRequest watch;
  watch.set_name(created->name());
  std::vector<v1::AccessRequest::State> seen;
  auto watched =
      As("dana").WatchAccessRequest(watch, kWatchTimeout, [&](const v1::AccessRequest& r) {
        seen.push_back(r.state());
        if (seen.size() == 1) {
          v1::CancelAccessRequestRequest cancel;
          cancel.set_name(created->name());
          EXPECT_TRUE(As("alice").CancelAccessRequest(cancel).ok());
        }
      });
  ASSERT_TRUE(watched.ok()) << watched.status().error_message();
  EXPECT_EQ(watched->state(), v1::AccessRequest::CANCELLED);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(), v1::AccessRequest::PENDING);

  // A grant, and the enforcer's check of it (the callback adapter).
  auto asked = As("alice").CreateAccessRequest(Ask());
  ASSERT_TRUE(asked.ok()) << asked.status().error_message();
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(asked->name());
  ASSERT_TRUE(As("bob").ApproveAccessRequest(approve).ok());
  auto approved = As("dana").ApproveAccessRequest(approve);
  ASSERT_TRUE(approved.ok()) << approved.status().error_message();
  ASSERT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  v1::CheckAccessRequest check;
  check.set_principal(Id("operator/alice"));
  check.set_environment("tenants/ma/environments/prod");
  auto checked = As("enforcer").CheckAccess(check);
  ASSERT_TRUE(checked.ok()) << checked.status().error_message();
  EXPECT_TRUE(checked->allowed());
  EXPECT_EQ(checked->grant().name(), approved->grant());

  // The export stream carries the log the list shows.
  std::vector<v1::AuditEvent> events = Audit("access_request = \"" + asked->name() + "\"");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].actor(), Id("operator/alice"));
  EXPECT_EQ(events[1].actor(), Id("operator/bob"));
  EXPECT_EQ(events[2].actor(), Id("tenant/ma/user/dana"));
  v1::ExportAuditEventsRequest ex;
  ex.set_parent("tenants/ma");
  ex.set_filter("access_request = \"" + asked->name() + "\"");
  std::string exported;
  auto bytes = As("dana").ExportAuditEvents(
      ex,
      [&](const std::string& chunk) {
        exported += chunk;
        return true;
      },
      std::chrono::seconds(30));
  ASSERT_TRUE(bytes.ok()) << bytes.status().error_message();
  EXPECT_EQ(*bytes, static_cast<int64_t>(exported.size()));
  for (const auto& e : events) EXPECT_NE(exported.find(e.hash()), std::string::npos);

  v1::ListNotificationsRequest ln;
  ln.set_parent("tenants/ma");
  auto notes = As("dana").ListNotifications(ln);
  EXPECT_TRUE(notes.ok()) << notes.status().error_message();
}

// A valid certificate of this trust domain with no binding reaches nothing,
// on every service and both streams.
TEST_F(WireIdentityTest, ACertificateWithNoBindingIsRefusedEverywhere) {
  lockbox::Client& zed = As("zed");
  v1::GetTenantRequest gt;
  gt.set_name("tenants/ma");
  EXPECT_EQ(zed.GetTenant(gt).status().error_code(), Code::PERMISSION_DENIED);
  EXPECT_EQ(zed.CreateAccessRequest(Ask()).status().error_code(), Code::PERMISSION_DENIED);

  auto existing = As("alice").CreateAccessRequest(Ask());
  ASSERT_TRUE(existing.ok()) << existing.status().error_message();
  v1::WatchAccessRequestRequest watch;
  watch.set_name(existing->name());
  int updates = 0;
  auto watched =
      zed.WatchAccessRequest(watch, kWatchTimeout, [&](const v1::AccessRequest&) { ++updates; });
  EXPECT_EQ(watched.status().error_code(), Code::PERMISSION_DENIED);
  EXPECT_EQ(updates, 0);

  v1::CheckAccessRequest check;
  check.set_principal(Id("operator/alice"));
  check.set_environment("tenants/ma/environments/prod");
  EXPECT_EQ(zed.CheckAccess(check).status().error_code(), Code::PERMISSION_DENIED);

  v1::ListAuditEventsRequest la;
  la.set_parent("tenants/ma");
  EXPECT_EQ(zed.ListAuditEvents(la).status().error_code(), Code::PERMISSION_DENIED);
  v1::ExportAuditEventsRequest ex;
  ex.set_parent("tenants/ma");
  std::string exported;
  auto bytes = zed.ExportAuditEvents(
      ex,
      [&](const std::string& chunk) {
        exported += chunk;
        return true;
      },
      std::chrono::seconds(30));
  EXPECT_EQ(bytes.status().error_code(), Code::PERMISSION_DENIED);
  EXPECT_EQ(exported, "");

  v1::ListNotificationsRequest ln;
  ln.set_parent("tenants/ma");
  EXPECT_EQ(zed.ListNotifications(ln).status().error_code(), Code::PERMISSION_DENIED);
}

// The request's fields that name people are the server's to set: naming
// someone else in the message changes neither who acts nor what is allowed.
TEST_F(WireIdentityTest, AMessageNamingSomeoneElseChangesNothing) {
  v1::CreateAccessRequestRequest ask = Ask();
  ask.mutable_access_request()->set_requester(Id("operator/bob"));
  ask.mutable_access_request()->set_state(v1::AccessRequest::APPROVED);
  auto mine = As("alice").CreateAccessRequest(ask);
  ASSERT_TRUE(mine.ok()) << mine.status().error_message();
  EXPECT_EQ(mine->requester(), Id("operator/alice"));
  EXPECT_EQ(mine->state(), v1::AccessRequest::PENDING);
  std::vector<v1::AuditEvent> events = Audit("access_request = \"" + mine->name() + "\"");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].actor(), Id("operator/alice"));

  // Naming the engineer does not make the unbound caller one.
  ask.mutable_access_request()->set_requester(Id("operator/alice"));
  EXPECT_EQ(As("zed").CreateAccessRequest(ask).status().error_code(), Code::PERMISSION_DENIED);
  // Nor does naming an approver lend bob's role to the engineer.
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(mine->name());
  EXPECT_EQ(As("alice").ApproveAccessRequest(approve).status().error_code(),
            Code::PERMISSION_DENIED);
}

// The on-behalf-of header: the portal acts as the tenant user its token
// (from the tenant's registered issuer) names, and is nobody without it; a
// bare SPIFFE ID is refused, from the portal or anyone else.
TEST_F(WireIdentityTest, OnlyThePortalMayActOnBehalfOfAUser) {
  const std::string dana = Id("tenant/ma/user/dana");
  v1::GetTenantRequest gt;
  gt.set_name("tenants/ma");
  auto as_dana = As("portal", issuer_->Sign(dana, absl::Now())).GetTenant(gt);
  EXPECT_TRUE(as_dana.ok()) << as_dana.status().error_message();
  EXPECT_EQ(As("portal").GetTenant(gt).status().error_code(), Code::PERMISSION_DENIED);
  auto claimed = As("alice", dana).GetTenant(gt);
  EXPECT_EQ(claimed.status().error_code(), Code::PERMISSION_DENIED);
  EXPECT_EQ(claimed.reason(), "ON_BEHALF_OF_NOT_ALLOWED");
  auto bare = As("portal", dana).GetTenant(gt);
  EXPECT_EQ(bare.status().error_code(), Code::PERMISSION_DENIED);
  EXPECT_EQ(bare.reason(), "ON_BEHALF_OF_NOT_ALLOWED");
  auto elsewhere = As("portal", issuer_->Sign(dana, absl::Now(), {{"aud", "other"}})).GetTenant(gt);
  EXPECT_EQ(elsewhere.status().error_code(), Code::PERMISSION_DENIED);
  EXPECT_EQ(elsewhere.reason(), "TOKEN_REFUSED");

  // What the portal does for the user is recorded as the user's, via it; a
  // refused claim is recorded too, once a minute per caller.
  v1::UpdateLockboxPolicyRequest up;
  up.mutable_lockbox_policy()->set_name("tenants/ma/lockboxPolicy");
  up.mutable_lockbox_policy()->set_enabled(true);
  up.mutable_update_mask()->add_paths("enabled");
  const std::string token = issuer_->Sign(dana, absl::Now());
  auto updated = As("portal", token).UpdateLockboxPolicy(up);
  ASSERT_TRUE(updated.ok()) << updated.status().error_message();
  std::vector<v1::AuditEvent> updates = Audit("action = lockbox_policy.update");
  ASSERT_FALSE(updates.empty());
  EXPECT_EQ(updates.back().actor(), dana);
  EXPECT_EQ(updates.back().via(), Id("service/portal"));
  // The same token again: spent.
  auto replayed = As("portal", token).UpdateLockboxPolicy(up);
  EXPECT_EQ(replayed.status().error_code(), Code::PERMISSION_DENIED);
  EXPECT_EQ(replayed.reason(), "TOKEN_REPLAYED");
  std::vector<v1::AuditEvent> refusals = Audit("action = security.on_behalf_of_refused");
  ASSERT_EQ(refusals.size(), 2u);
  EXPECT_EQ(refusals[0].actor(), Id("operator/alice"));
  EXPECT_EQ(refusals[1].actor(), Id("service/portal"));
  EXPECT_EQ(refusals[1].details().at("claimed_user"), dana);
}

}  // namespace
}  // namespace lockbox::testing
