// The application in the test's own process: a fresh PostgreSQL database,
// the PostgreSQL store on it, a fake clock and Lockbox, called with a
// CallerIdentity as the transport would make it from a verified
// certificate. No TLS, no lockboxd, no sleeping: use-case tests move the
// clock instead.
//
// Only Lockbox's public API is used here, so that tests written against it
// keep compiling however the layers beneath change.
#ifndef LOCKBOX_TESTS_SUPPORT_IN_PROCESS_H_
#define LOCKBOX_TESTS_SUPPORT_IN_PROCESS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app/use_cases.h"
#include "server/domain/audit_signing.h"
#include "server/domain/clock.h"
#include "server/identity/token_verifier.h"
#include "server/store/postgres/pg_store.h"
#include "tests/support/harness.h"
#include "tests/support/tokens.h"

namespace lockbox::testing {

inline constexpr char kTrustDomain[] = "lockbox.test";

// spiffe://lockbox.test/<path>
std::string SpiffeId(absl::string_view path);

// A fresh self-signed CA certificate (PEM) called `common_name`: a tenant's
// bundle for tests with no certificate files. With `ca` false, a
// self-signed certificate that is not a CA (basicConstraints CA:FALSE).
std::string TestCaPem(const std::string& common_name, bool ca = true);

// What the in-process certificate verifier refuses: a caller whose
// certificate_pem is this gets UNAUTHENTICATED (UNTRUSTED_CERTIFICATE_ANCHOR),
// as a certificate from the wrong anchor would over the wire.
inline constexpr char kUntrustedCertificate[] = "in-process: a certificate from the wrong anchor";

// The CertificateVerifier of in-process tests, whose callers carry no
// certificates: it accepts every caller, except a tenant user whose tenant
// has no CA bundle and a caller with kUntrustedCertificate, and fills
// recognisable evidence: certificate_sha256 is the hex SHA-256 of the SPIFFE
// ID; the anchor is the first CA of the tenant's bundle (its fingerprint and
// subject) for a tenant user, "in-process-provider-ca" otherwise.
class InProcessCertificateVerifier final : public CertificateVerifier {
 public:
  absl::StatusOr<CertificateEvidence> Verify(
      const Principal& principal, const CallerIdentity& caller,
      const v1::TenantIdentity* tenant_identity) const override;
};

// The machine-readable reason an error of the use cases carries (what the
// wire sends as ErrorInfo.reason); "" for none.
std::string ErrorReason(const absl::Status& status);

// The caller whose certificate carries spiffe://lockbox.test/<path>, acting
// on behalf of spiffe://lockbox.test/<on_behalf_of> when that is not empty
// (a bare SPIFFE ID in the header, which the server refuses).
CallerIdentity Caller(absl::string_view path, absl::string_view on_behalf_of = "");
// The caller at <path> relaying `token` in x-lockbox-on-behalf-of.
CallerIdentity CallerWithToken(absl::string_view path, absl::string_view token);

struct InProcessOptions {
  // Where the fake clock starts. The default, the current time cut to the
  // whole second, lets a test reason to the second.
  absl::Time start = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  // The bootstrap admin, bound as lockbox.admin as lockboxd does at start.
  std::string bootstrap_admin = "operator/admin";
  // Proves certificates beyond the caller's SPIFFE ID (not owned; outlives
  // the application); none by default.
  const CertificateVerifier* certificates = nullptr;
  // Checks webhook URLs (not owned; outlives the application); without
  // one, setting a webhook is refused, as the use cases do.
  const WebhookUrlChecker* webhook_urls = nullptr;
  // The module holding customers' keys (not owned; outlives the
  // application); without one, encryption policies cannot be created.
  KeyModule* key_module = nullptr;
  // The tenants' keys KeyService uses, which also seal and open Lockbox's
  // own data of a sealed tenant (not owned; outlives the application); none
  // by default (KeyService refuses KEY_UNAVAILABLE, nothing is sealed).
  KeyRing* key_ring = nullptr;
  // Break-glass: the provider's security contact; none by default.
  std::string security_contact_email;
};

// One database, store and application. Thread-safe as Lockbox is: tests
// may call it from many threads at once.
class InProcessLockbox {
 public:
  // Makes a fresh database, applies the migrations, and binds the bootstrap
  // admin. Needs LOCKBOX_TEST_PG_URL (scripts/test sets it).
  static absl::StatusOr<std::unique_ptr<InProcessLockbox>> Create(
      InProcessOptions options = InProcessOptions());
  ~InProcessLockbox();
  InProcessLockbox(const InProcessLockbox&) = delete;
  InProcessLockbox& operator=(const InProcessLockbox&) = delete;

  UseCases& use_cases() { return *use_cases_; }
  FakeClock& clock() { return clock_; }
  const TestDatabase& database() const { return database_; }
  // The application's store, for tests of what runs beside the use cases
  // (the delivery worker).
  Store& store() { return *store_; }
  const CallerIdentity& admin() const { return admin_; }

  // Binds `role` to `principal` (a full SPIFFE ID), in `tenant`
  // ("tenants/<id>", empty for global roles), through CreateRoleBinding:
  // global roles as the bootstrap admin, tenant roles as the tenant's first
  // tenant.admin (SPEC section 8: only the tenant binds its roles).
  absl::StatusOr<v1::RoleBinding> Bind(const std::string& principal, const std::string& role,
                                       const std::string& tenant = "");
  // Sets the token issuers of tenants/<tenant_id>'s identity straight
  // through the store (TenancyStore::InsertTenantIdentity, or
  // UpdateTenantIdentity when there is one), in one transaction.
  absl::Status SetTokenIssuers(const std::string& tenant_id,
                               const std::vector<v1::TokenIssuer>& issuers);
  // A valid CreateTenantRequest for tenants/<tenant_id>: the tenant's test CA
  // (TenantCaPem) as its bundle and `first_admin` (a path such as
  // "tenant/<id>/user/dana"; default "tenant/<id>/user/admin") as its first
  // tenant.admin.
  v1::CreateTenantRequest TenantRequest(const std::string& tenant_id,
                                        const std::string& first_admin = "");
  // CreateTenant(TenantRequest(...)) as the bootstrap admin.
  absl::StatusOr<v1::Tenant> CreateTenant(const std::string& tenant_id,
                                          const std::string& first_admin = "");
  // The first tenant.admin CreateTenant named for `tenant_id` (empty
  // identity if none was made here).
  CallerIdentity TenantAdmin(const std::string& tenant_id) const;
  // The tenant's test CA, made on first use and the same afterwards.
  std::string TenantCaPem(const std::string& tenant_id);
  // Creates tenants/<tenant_id>/environments/<environment_id> from `spec`
  // (data sources, display name) as the bootstrap admin.
  absl::StatusOr<v1::Environment> CreateEnvironment(const std::string& tenant_id,
                                                    const std::string& environment_id,
                                                    const v1::Environment& spec = {});

 private:
  explicit InProcessLockbox(const InProcessOptions& options);

  // In the order each needs the one before: destroyed in reverse, so the
  // store's connections close before the database is dropped.
  TestDatabase database_;
  FakeClock clock_;
  CallerIdentity admin_;
  InProcessCertificateVerifier certificates_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> tenant_cas_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, CallerIdentity> tenant_admins_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<AuditSigner> signer_;
  JoseTokenVerifier tokens_;
  std::unique_ptr<PgStore> store_;
  std::unique_ptr<UseCases> use_cases_;
};

// The people and places most use-case tests need, made through the use
// cases:
//   tenants/ma  policy enabled, revocation allowed; environment prod is
//               managed, so protected: requests wait for the customer. Its
//               data sources are "sql" (lockbox-supported) and "rcs" (not).
//   tenants/mb  the default policy (disabled); environment prod, so
//               unprotected: the internal review decides alone.
class DemoWorld {
 public:
  static absl::StatusOr<DemoWorld> Create(InProcessLockbox* app);

  static constexpr char kTenantA[] = "tenants/ma";
  static constexpr char kTenantB[] = "tenants/mb";
  static constexpr char kEnvironmentA[] = "tenants/ma/environments/prod";
  static constexpr char kEnvironmentB[] = "tenants/mb/environments/prod";

  CallerIdentity admin;                      // lockbox.admin (bootstrap)
  CallerIdentity engineer;                   // operator.engineer
  CallerIdentity reviewer;                   // operator.reviewer
  CallerIdentity second_reviewer;            // operator.reviewer
  CallerIdentity tenant_a_admin;             // tenant.admin of tenants/ma
  CallerIdentity tenant_a_auditor;           // tenant.auditor of tenants/ma
  CallerIdentity tenant_b_admin;             // tenant.admin of tenants/mb
  CallerIdentity enforcer;                   // service.enforcer
  CallerIdentity portal;                     // service.portal, for no user
  CallerIdentity unbound;                    // a valid operator ID with no binding at all
  // Each tenant's token issuer, registered in its identity ("https://login.
  // ma.example" and "https://login.mb.example", audience "lockbox").
  std::shared_ptr<TestTokenIssuer> issuer_a;
  std::shared_ptr<TestTokenIssuer> issuer_b;

  // `portal` relaying a fresh token for `user` (a tenant user of ma or mb)
  // from their tenant's issuer, valid at the app's clock, `overrides`
  // merged into its claims. Each call makes a new token: one is good once.
  CallerIdentity PortalFor(const CallerIdentity& user,
                           const nlohmann::json& overrides = nlohmann::json::object()) const;
  // PortalFor(tenant_a_admin).
  CallerIdentity PortalForTenantAAdmin() const { return PortalFor(tenant_a_admin); }

  // A request by `engineer` for `environment` (kEnvironmentA by default),
  // as CreateAccessRequest would receive it.
  static v1::CreateAccessRequestRequest Ask(const std::string& environment = kEnvironmentA);
  // A new PENDING request by `engineer`, in its internal review.
  absl::StatusOr<v1::AccessRequest> PendingRequest(
      const std::string& environment = kEnvironmentA) const;
  // A new ACTIVE grant of `engineer`, approved by every stage it needed.
  absl::StatusOr<v1::Grant> ActiveGrant(const std::string& environment = kEnvironmentA) const;

 private:
  explicit DemoWorld(InProcessLockbox* app) : app_(app) {}
  InProcessLockbox* app_;
};

// A fresh application with its demo world: what most use-case tests start
// from. `world` refers to `app`.
struct DemoApp {
  std::unique_ptr<InProcessLockbox> app;
  std::unique_ptr<DemoWorld> world;
};
absl::StatusOr<DemoApp> StartDemoApp();

}  // namespace lockbox::testing

#endif  // LOCKBOX_TESTS_SUPPORT_IN_PROCESS_H_
