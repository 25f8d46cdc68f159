// Tenant-rooted identity (SPEC section 8) over real mTLS, on two replicas of
// one database: a tenant user is served only with a certificate from their
// own tenant's CA; the provider's CA makes no customer user, and a tenant's
// CA makes no operator or service; a tenant made on one replica is usable
// on the other, and a changed bundle takes effect on both without a restart.
#include <gtest/gtest.h>
#include <lockbox/client.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

void FailFast(Options* o) {
  o->default_deadline = std::chrono::seconds(3);
  o->retry.max_attempts = 1;
}

// Hex SHA-256 of the DER of the first certificate in `pem`.
std::string Fingerprint(const std::string& pem) {
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  if (cert == nullptr) return "";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  X509_digest(cert, EVP_sha256(), digest, &n);
  X509_free(cert);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), n));
}

class TenantIdentityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    certs_->Make("alice", "operator/alice");
    certs_->Make("enforcer", "service/enforcer");
    a_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"));
    b_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"));
    ASSERT_TRUE(a_->WaitReady("admin"));
    ASSERT_TRUE(b_->WaitReady("admin"));
    auto admin = Connect("admin", *a_);
    for (auto [who, role] : {std::pair{"operator/alice", "operator.engineer"},
                             std::pair{"service/enforcer", "service.enforcer"}}) {
      v1::CreateRoleBindingRequest r;
      r.mutable_role_binding()->set_principal(Id(who));
      r.mutable_role_binding()->set_role(role);
      ASSERT_TRUE(admin->CreateRoleBinding(r).ok()) << who;
    }
  }
  static void TearDownTestSuite() {
    delete a_;
    delete b_;
    delete certs_;
    delete db_;
  }

  static std::unique_ptr<lockbox::Client> Connect(const std::string& who, const ServerProcess& s) {
    return LibraryClient(*certs_, who, s.target(), FailFast);
  }
  static grpc::Status GetTenant(const std::string& who, const ServerProcess& s,
                                const std::string& tenant) {
    v1::GetTenantRequest r;
    r.set_name("tenants/" + tenant);
    return Connect(who, s)->GetTenant(r).status();
  }
  static void ExpectUntrustedAnchor(const grpc::Status& status, const std::string& what) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << what << ": " << status.error_message();
    EXPECT_EQ(ErrorInfoOf(status).reason(), "UNTRUSTED_CERTIFICATE_ANCHOR") << what;
  }

  static TestDatabase* db_;
  static Certificates* certs_;
  static ServerProcess* a_;
  static ServerProcess* b_;
};
TestDatabase* TenantIdentityTest::db_ = nullptr;
Certificates* TenantIdentityTest::certs_ = nullptr;
ServerProcess* TenantIdentityTest::a_ = nullptr;
ServerProcess* TenantIdentityTest::b_ = nullptr;

TEST_F(TenantIdentityTest, ATenantUserIsServedOnlyThroughTheirTenantsCa) {
  certs_->Make("acme-dana", "tenant/acme/user/dana");
  // The same identity, minted by the provider's CA: what issue 14 showed
  // the provider could do to approve for a customer.
  certs_->Make("acme-dana-by-provider", "tenant/acme/user/dana:provider");
  auto made = Connect("admin", *a_)->CreateTenant(TenantRequest(*certs_, "acme", "dana"));
  ASSERT_TRUE(made.ok()) << made.status().error_message();

  // Created on A, usable on B within seconds, without a restart.
  EXPECT_TRUE(Eventually([&] { return GetTenant("acme-dana", *b_, "acme").ok(); }, 15));
  EXPECT_TRUE(Eventually([&] { return GetTenant("acme-dana", *a_, "acme").ok(); }, 15));
  for (const ServerProcess* s : {a_, b_}) {
    ExpectUntrustedAnchor(GetTenant("acme-dana-by-provider", *s, "acme"), "provider-minted user");
  }

  // What the customer checks: the fingerprint of the CA they handed over.
  v1::GetTenantIdentityRequest gi;
  gi.set_name("tenants/acme/identity");
  auto identity = Connect("acme-dana", *b_)->GetTenantIdentity(gi);
  ASSERT_TRUE(identity.ok()) << identity.status().error_message();
  ASSERT_EQ(identity->ca_fingerprints_size(), 1);
  EXPECT_EQ(identity->ca_fingerprints(0), Fingerprint(certs_->Read("tenant-acme-ca.crt")));
}

TEST_F(TenantIdentityTest, AnOperatorOrServiceFromATenantCaGetsNothing) {
  auto made = Connect("admin", *a_)->CreateTenant(TenantRequest(*certs_, "mint", "owner"));
  ASSERT_TRUE(made.ok()) << made.status().error_message();
  v1::CreateEnvironmentRequest ce;
  ce.set_parent("tenants/mint");
  ce.set_environment_id("prod");
  ASSERT_TRUE(Connect("admin", *a_)->CreateEnvironment(ce).ok());
  // Bound identities, minted by the tenant's CA (which the TLS layer trusts
  // once the tenant exists).
  certs_->Make("admin-by-tenant", "operator/admin:tenant-mint");
  certs_->Make("enforcer-by-tenant", "service/enforcer:tenant-mint");
  for (const ServerProcess* s : {a_, b_}) {
    grpc::Status listed;
    // Until the roots follow, the handshake itself fails (UNAVAILABLE);
    // then the identity layer refuses.
    EXPECT_TRUE(Eventually(
        [&] {
          listed = Connect("admin-by-tenant", *s)->ListTenants(v1::ListTenantsRequest()).status();
          return listed.error_code() != grpc::StatusCode::UNAVAILABLE;
        },
        15));
    ExpectUntrustedAnchor(listed, "operator minted by a tenant CA");
    v1::CheckAccessRequest check;
    check.set_principal(Id("operator/alice"));
    check.set_environment("tenants/mint/environments/prod");
    ExpectUntrustedAnchor(Connect("enforcer-by-tenant", *s)->CheckAccess(check).status(),
                          "enforcer minted by a tenant CA");
    // The real enforcer, from the provider's CA, is answered.
    auto real = Connect("enforcer", *s)->CheckAccess(check);
    ASSERT_TRUE(real.ok()) << real.status().error_message();
    EXPECT_FALSE(real->allowed());
  }
}

TEST_F(TenantIdentityTest, AChangedBundleTakesEffectOnEveryReplicaWithoutARestart) {
  certs_->Make("rot-dana", "tenant/rot/user/dana");
  // erin's certificate comes from the tenant's next CA, not yet registered.
  certs_->Make("rot-erin", "tenant/rot/user/erin:tenant-rotnext");
  auto made = Connect("admin", *a_)->CreateTenant(TenantRequest(*certs_, "rot", "dana"));
  ASSERT_TRUE(made.ok()) << made.status().error_message();
  ASSERT_TRUE(Eventually([&] { return GetTenant("rot-dana", *b_, "rot").ok(); }, 15));
  v1::CreateRoleBindingRequest bind;
  bind.mutable_role_binding()->set_principal(Id("tenant/rot/user/erin"));
  bind.mutable_role_binding()->set_role("tenant.auditor");
  bind.mutable_role_binding()->set_tenant("tenants/rot");
  ASSERT_TRUE(Connect("rot-dana", *b_)->CreateRoleBinding(bind).ok());
  EXPECT_FALSE(GetTenant("rot-erin", *a_, "rot").ok());

  // The tenant's admin adds the next CA (old and new during the rotation).
  v1::UpdateTenantIdentityRequest up;
  up.mutable_identity()->set_name("tenants/rot/identity");
  up.mutable_identity()->set_ca_bundle_pem(certs_->TenantCa("rot") + certs_->TenantCa("rotnext"));
  up.mutable_update_mask()->add_paths("ca_bundle_pem");
  auto both = Connect("rot-dana", *b_)->UpdateTenantIdentity(up);
  ASSERT_TRUE(both.ok()) << both.status().error_message();
  EXPECT_EQ(both->ca_fingerprints_size(), 2);
  for (const ServerProcess* s : {a_, b_}) {
    EXPECT_TRUE(Eventually([&] { return GetTenant("rot-erin", *s, "rot").ok(); }, 15));
    EXPECT_TRUE(GetTenant("rot-dana", *s, "rot").ok());
  }

  // Then drops the old one: dana's certificate stops working on both.
  up.mutable_identity()->set_ca_bundle_pem(certs_->TenantCa("rotnext"));
  up.mutable_identity()->set_etag(both->etag());
  auto next = Connect("rot-dana", *a_)->UpdateTenantIdentity(up);
  ASSERT_TRUE(next.ok()) << next.status().error_message();
  for (const ServerProcess* s : {a_, b_}) {
    // Refused by the identity layer at once, and by the handshake once the
    // roots follow: never served.
    EXPECT_TRUE(Eventually([&] { return !GetTenant("rot-dana", *s, "rot").ok(); }, 15));
    EXPECT_TRUE(GetTenant("rot-erin", *s, "rot").ok());
  }
}

}  // namespace
}  // namespace lockbox::testing
