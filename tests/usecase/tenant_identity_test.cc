// Tenant-rooted identity in-process (SPEC section 8): CreateTenant takes the
// tenant's CA bundle, token issuers and first tenant.admin, or refuses with
// the field at fault; the identity is changed only by the tenant's own
// tenant.admin, audited in its log and told to its admins; the tenant's
// roles are bound by its admin alone; a caller whose certificate does not
// chain to its anchor is UNAUTHENTICATED.
#include "server/identity/tenant_identity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "server/domain/status.h"
#include "tests/support/demo_app_test.h"
#include "tests/support/in_process.h"
#include "tests/support/tokens.h"

namespace lockbox::testing {
namespace {

using Code = absl::StatusCode;

class TenantIdentityTest : public DemoAppTest {
 protected:
  PolicyUseCases& policy() { return app_->use_cases().policy(); }

  std::vector<v1::AuditEvent> Audit(const std::string& tenant, const std::string& action) {
    v1::ListAuditEventsRequest r;
    r.set_parent("tenants/" + tenant);
    r.set_filter("action = \"" + action + "\"");
    auto got = app_->use_cases().audit().ListAuditEvents(app_->TenantAdmin(tenant), r);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return {};
    return {got->audit_events().begin(), got->audit_events().end()};
  }
  v1::UpdateTenantIdentityRequest NewBundle(const std::string& pem) {
    v1::UpdateTenantIdentityRequest r;
    r.mutable_identity()->set_name("tenants/ma/identity");
    r.mutable_identity()->set_ca_bundle_pem(pem);
    r.mutable_update_mask()->add_paths("ca_bundle_pem");
    return r;
  }
};

void ExpectField(const absl::Status& s, const std::string& field, const std::string& why) {
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << field << ": " << s;
  EXPECT_EQ(FieldOf(s), field) << s;
  EXPECT_EQ(FieldReasonOf(s), why) << s;
}

TEST_F(TenantIdentityTest, CreateTenantRefusesAMissingOrBadIdentity) {
  auto refused = [&](const std::function<void(v1::CreateTenantRequest*)>& spoil) {
    v1::CreateTenantRequest r = app_->TenantRequest("newco");
    spoil(&r);
    return policy().CreateTenant(w().admin, r).status();
  };
  ExpectField(refused([](auto* r) { r->clear_identity(); }), "identity.ca_bundle_pem", "REQUIRED");
  ExpectField(refused([](auto* r) {
                r->mutable_identity()->set_ca_bundle_pem(
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
              }),
              "identity.ca_bundle_pem", "BAD_FORMAT");
  ExpectField(refused([](auto* r) { r->mutable_identity()->set_ca_bundle_pem("not PEM at all"); }),
              "identity.ca_bundle_pem", "BAD_FORMAT");
  ExpectField(refused([](auto* r) {
                r->mutable_identity()->set_ca_bundle_pem(TestCaPem("leaf", /*ca=*/false));
              }),
              "identity.ca_bundle_pem", "NOT_A_CA");
  // A good CA followed by something that is not a certificate.
  ExpectField(refused([](auto* r) {
                r->mutable_identity()->mutable_ca_bundle_pem()->append(
                    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
              }),
              "identity.ca_bundle_pem", "BAD_FORMAT");

  ExpectField(refused([](auto* r) { r->clear_first_admin(); }), "first_admin.principal",
              "REQUIRED");
  ExpectField(refused([](auto* r) {
                r->mutable_first_admin()->set_principal(SpiffeId("tenant/other/user/x"));
              }),
              "first_admin.principal", "NOT_ALLOWED");
  ExpectField(
      refused([](auto* r) { r->mutable_first_admin()->set_principal(SpiffeId("operator/admin")); }),
      "first_admin.principal", "NOT_ALLOWED");
  ExpectField(refused([](auto* r) { r->mutable_first_admin()->set_role("tenant.auditor"); }),
              "first_admin.role", "NOT_ALLOWED");
  ExpectField(refused([](auto* r) { r->mutable_first_admin()->set_tenant("tenants/ma"); }),
              "first_admin.tenant", "NOT_ALLOWED");
  ExpectField(refused([](auto* r) { r->mutable_first_admin()->set_email("nope"); }),
              "first_admin.email", "BAD_FORMAT");

  TestTokenIssuer idp("https://idp.newco.example", "lockbox");
  auto issuer = [&idp](v1::CreateTenantRequest* r) {
    v1::TokenIssuer* i = r->mutable_identity()->add_token_issuers();
    *i = idp.Registration();
    return i;
  };
  // A key set no token could ever verify against.
  ExpectField(refused([&](auto* r) { issuer(r)->set_jwks_json(R"({"keys": []})"); }),
              "identity.token_issuers[0].jwks_json", "BAD_FORMAT");
  ExpectField(refused([&](auto* r) { issuer(r)->clear_audience(); }),
              "identity.token_issuers[0].audience", "REQUIRED");
  ExpectField(refused([&](auto* r) { issuer(r)->clear_issuer(); }),
              "identity.token_issuers[0].issuer", "REQUIRED");
  ExpectField(refused([&](auto* r) { issuer(r)->set_jwks_json("[1, 2]"); }),
              "identity.token_issuers[0].jwks_json", "BAD_FORMAT");
  ExpectField(refused([&](auto* r) { issuer(r)->set_jwks_json(R"({"keys": {}})"); }),
              "identity.token_issuers[0].jwks_json", "BAD_FORMAT");
  ExpectField(refused([&](auto* r) {
                issuer(r);
                issuer(r);
              }),
              "identity.token_issuers[1].issuer", "DUPLICATE");

  // Nothing of a refused tenant was made.
  v1::GetTenantRequest get;
  get.set_name("tenants/newco");
  EXPECT_EQ(policy().GetTenant(w().admin, get).status().code(), Code::kNotFound);
}

TEST_F(TenantIdentityTest, CreateTenantRecordsTheIdentityAndTheFirstAdminInOneGo) {
  v1::CreateTenantRequest r = app_->TenantRequest("newco", "tenant/newco/user/nia");
  r.mutable_first_admin()->set_email("nia@newco.example");
  TestTokenIssuer idp("https://idp.newco.example", "lockbox");
  *r.mutable_identity()->add_token_issuers() = idp.Registration();
  auto made = policy().CreateTenant(w().admin, r);
  ASSERT_TRUE(made.ok()) << made.status();
  std::vector<std::string> fingerprints = CaFingerprints(r.identity().ca_bundle_pem());
  ASSERT_EQ(fingerprints.size(), 1u);

  // The first admin is the tenant's tenant.admin at once.
  CallerIdentity nia = Caller("tenant/newco/user/nia");
  v1::GetTenantIdentityRequest get;
  get.set_name("tenants/newco/identity");
  auto identity = policy().GetTenantIdentity(nia, get);
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(identity->ca_bundle_pem(), r.identity().ca_bundle_pem());
  EXPECT_EQ(std::vector<std::string>(identity->ca_fingerprints().begin(),
                                     identity->ca_fingerprints().end()),
            fingerprints);
  ASSERT_EQ(identity->token_issuers_size(), 1);
  EXPECT_FALSE(identity->etag().empty());
  // lockbox.admin reads it too (to support the customer); others do not.
  EXPECT_TRUE(policy().GetTenantIdentity(w().admin, get).ok());
  EXPECT_EQ(policy().GetTenantIdentity(w().tenant_a_admin, get).status().code(),
            Code::kPermissionDenied);
  EXPECT_EQ(policy().GetTenantIdentity(w().engineer, get).status().code(), Code::kPermissionDenied);

  // The creation's audit event records what was registered.
  v1::ListAuditEventsRequest audit;
  audit.set_parent("tenants/newco");
  auto events = app_->use_cases().audit().ListAuditEvents(nia, audit);
  ASSERT_TRUE(events.ok()) << events.status();
  bool created = false, bound = false;
  for (const v1::AuditEvent& e : events->audit_events()) {
    if (e.action() == "tenant.create") {
      created = true;
      EXPECT_EQ(e.actor(), w().admin.spiffe_id);
      EXPECT_EQ(e.details().at("identity.ca_fingerprints"), fingerprints[0]);
      EXPECT_EQ(e.details().at("identity.token_issuers"), "https://idp.newco.example aud=lockbox");
      EXPECT_EQ(e.details().at("first_admin"), nia.spiffe_id);
    }
    if (e.action() == "role_binding.create") {
      bound = true;
      EXPECT_EQ(e.details().at("principal"), nia.spiffe_id);
      EXPECT_EQ(e.details().at("role"), "tenant.admin");
      EXPECT_EQ(e.details().at("email"), "nia@newco.example");
    }
  }
  EXPECT_TRUE(created);
  EXPECT_TRUE(bound);
}

TEST_F(TenantIdentityTest, OnlyTheTenantsOwnAdminChangesItsIdentity) {
  std::string next = TestCaPem("Contoso next CA");
  // Not lockbox.admin, not another tenant's admin, not an auditor.
  for (const CallerIdentity* who :
       {&w().admin, &w().tenant_b_admin, &w().tenant_a_auditor, &w().reviewer}) {
    auto got = policy().UpdateTenantIdentity(*who, NewBundle(next));
    EXPECT_EQ(got.status().code(), Code::kPermissionDenied) << who->spiffe_id;
  }
  v1::GetTenantIdentityRequest get;
  get.set_name("tenants/ma/identity");
  auto before = policy().GetTenantIdentity(w().tenant_a_admin, get);
  ASSERT_TRUE(before.ok()) << before.status();

  // A stale etag is ABORTED; a bad mask or bundle INVALID_ARGUMENT.
  v1::UpdateTenantIdentityRequest stale = NewBundle(next);
  stale.mutable_identity()->set_etag("\"999\"");
  EXPECT_EQ(policy().UpdateTenantIdentity(w().tenant_a_admin, stale).status().code(),
            Code::kAborted);
  v1::UpdateTenantIdentityRequest bad_mask = NewBundle(next);
  bad_mask.mutable_update_mask()->add_paths("name");
  ExpectField(policy().UpdateTenantIdentity(w().tenant_a_admin, bad_mask).status(), "update_mask",
              "UNKNOWN_VALUE");
  ExpectField(policy().UpdateTenantIdentity(w().tenant_a_admin, NewBundle("")).status(),
              "identity.ca_bundle_pem", "REQUIRED");

  v1::UpdateTenantIdentityRequest ok = NewBundle(before->ca_bundle_pem() + next);
  ok.mutable_identity()->set_etag(before->etag());
  auto after = policy().UpdateTenantIdentity(w().tenant_a_admin, ok);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->ca_fingerprints_size(), 2);
  EXPECT_EQ(after->ca_fingerprints(0), before->ca_fingerprints(0));
  EXPECT_NE(after->etag(), before->etag());

  // Audited in the tenant's log with what was and what is.
  std::vector<v1::AuditEvent> events = Audit("ma", "tenant_identity.update");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].actor(), w().tenant_a_admin.spiffe_id);
  EXPECT_EQ(events[0].details().at("before.ca_fingerprints"), before->ca_fingerprints(0));
  EXPECT_EQ(events[0].details().at("after.ca_fingerprints"),
            after->ca_fingerprints(0) + "," + after->ca_fingerprints(1));
}

TEST_F(TenantIdentityTest, AChangeIsToldToTheTenantsAdmins) {
  v1::CreateTenantRequest r = app_->TenantRequest("told", "tenant/told/user/tia");
  r.mutable_first_admin()->set_email("tia@told.example");
  ASSERT_TRUE(policy().CreateTenant(w().admin, r).ok());
  CallerIdentity tia = Caller("tenant/told/user/tia");
  v1::CreateRoleBindingRequest second;
  second.mutable_role_binding()->set_principal(SpiffeId("tenant/told/user/tom"));
  second.mutable_role_binding()->set_role("tenant.admin");
  second.mutable_role_binding()->set_tenant("tenants/told");
  second.mutable_role_binding()->set_email("tom@told.example");
  ASSERT_TRUE(policy().CreateRoleBinding(tia, second).ok());

  v1::UpdateTenantIdentityRequest up;
  up.mutable_identity()->set_name("tenants/told/identity");
  up.mutable_identity()->set_ca_bundle_pem(TestCaPem("Told next CA"));
  up.mutable_update_mask()->add_paths("ca_bundle_pem");
  ASSERT_TRUE(policy().UpdateTenantIdentity(tia, up).ok());

  v1::ListNotificationsRequest list;
  list.set_parent("tenants/told");
  list.set_filter("event = \"tenant_identity.updated\"");
  auto sent = app_->use_cases().notifications().ListNotifications(tia, list);
  ASSERT_TRUE(sent.ok()) << sent.status();
  std::vector<std::string> to;
  for (const v1::Notification& n : sent->notifications()) {
    to.push_back(n.recipient());
    EXPECT_EQ(n.resource(), "tenants/told/identity");
    EXPECT_NE(n.subject().find("identity configuration changed"), std::string::npos) << n.subject();
  }
  std::sort(to.begin(), to.end());
  EXPECT_EQ(to, (std::vector<std::string>{"tia@told.example", "tom@told.example"}));
}

TEST_F(TenantIdentityTest, LockboxAdminCannotBindOrUnbindATenantsRoles) {
  v1::CreateRoleBindingRequest r;
  r.mutable_role_binding()->set_principal(SpiffeId("tenant/ma/user/ghost"));
  r.mutable_role_binding()->set_role("tenant.admin");
  r.mutable_role_binding()->set_tenant(DemoWorld::kTenantA);
  EXPECT_EQ(policy().CreateRoleBinding(w().admin, r).status().code(), Code::kPermissionDenied);
  // Its own tenant.admin can; and only it removes the binding.
  auto made = policy().CreateRoleBinding(w().tenant_a_admin, r);
  ASSERT_TRUE(made.ok()) << made.status();
  v1::DeleteRoleBindingRequest del;
  del.set_name(made->name());
  EXPECT_EQ(policy().DeleteRoleBinding(w().admin, del).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(policy().DeleteRoleBinding(w().tenant_b_admin, del).status().code(),
            Code::kPermissionDenied);
  EXPECT_TRUE(policy().DeleteRoleBinding(w().tenant_a_admin, del).ok());
}

TEST_F(TenantIdentityTest, ACertificateFromTheWrongAnchorIsUnauthenticated) {
  v1::GetTenantRequest get;
  get.set_name(DemoWorld::kTenantA);
  ASSERT_TRUE(policy().GetTenant(w().tenant_a_admin, get).ok());
  CallerIdentity forged = w().tenant_a_admin;
  forged.certificate_pem = kUntrustedCertificate;
  absl::Status refused = policy().GetTenant(forged, get).status();
  EXPECT_EQ(refused.code(), Code::kUnauthenticated) << refused;
  EXPECT_EQ(ErrorReason(refused), "UNTRUSTED_CERTIFICATE_ANCHOR");
  // A tenant user of a tenant that registered no bundle has no anchor.
  absl::Status unknown = policy().GetTenant(Caller("tenant/nobody/user/x"), get).status();
  EXPECT_EQ(unknown.code(), Code::kUnauthenticated) << unknown;
  EXPECT_EQ(ErrorReason(unknown), "UNTRUSTED_CERTIFICATE_ANCHOR");
}

}  // namespace
}  // namespace lockbox::testing
