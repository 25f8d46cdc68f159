#include "tests/support/in_process.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"
#include "server/identity/tenant_identity.h"

namespace lockbox::testing {

std::string SpiffeId(absl::string_view path) {
  return absl::StrCat("spiffe://", kTrustDomain, "/", path);
}

std::string ErrorReason(const absl::Status& status) { return ReasonOf(status); }

std::string TestCaPem(const std::string& common_name, bool ca) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  static int serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 30L * 24 * 3600);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  X509_set_pubkey(cert, key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  for (auto [nid, value] :
       {std::pair<int, const char*>{NID_basic_constraints,
                                    ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
        {NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(cert, key, EVP_sha256());
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(out, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  std::string pem(data, n);
  BIO_free(out);
  X509_free(cert);
  EVP_PKEY_free(key);
  return pem;
}

absl::StatusOr<CertificateEvidence> InProcessCertificateVerifier::Verify(
    const Principal& principal, const CallerIdentity& caller,
    const v1::TenantIdentity* tenant_identity) const {
  if (caller.certificate_pem == kUntrustedCertificate) {
    return Error(absl::StatusCode::kUnauthenticated, reason::kUntrustedAnchor,
                 "the client certificate does not chain to the anchor its identity needs");
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(principal.spiffe_id.data()),
         principal.spiffe_id.size(), digest);
  CertificateEvidence evidence;
  evidence.certificate_sha256 =
      absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), sizeof digest));
  if (principal.kind != Principal::Kind::kTenantUser) {
    evidence.anchor_sha256 = "in-process-provider-ca";
    evidence.anchor_subject = "CN=in-process provider CA";
    return evidence;
  }
  auto bundle = tenant_identity == nullptr
                    ? absl::StatusOr<std::vector<CaCertificate>>(absl::NotFoundError("none"))
                    : ParseCaBundle(tenant_identity->ca_bundle_pem(), "ca_bundle_pem");
  if (!bundle.ok()) {
    return Error(absl::StatusCode::kUnauthenticated, reason::kUntrustedAnchor,
                 absl::StrCat("tenant ", principal.tenant, " has no usable CA bundle"));
  }
  evidence.anchor_sha256 = bundle->front().sha256;
  evidence.anchor_subject = bundle->front().subject;
  return evidence;
}

CallerIdentity Caller(absl::string_view path, absl::string_view on_behalf_of) {
  return CallerIdentity{SpiffeId(path), on_behalf_of.empty() ? "" : SpiffeId(on_behalf_of)};
}

CallerIdentity CallerWithToken(absl::string_view path, absl::string_view token) {
  CallerIdentity caller;
  caller.spiffe_id = SpiffeId(path);
  caller.on_behalf_of = std::string(token);
  return caller;
}

InProcessLockbox::InProcessLockbox(const InProcessOptions& options)
    : clock_(options.start), admin_(Caller(options.bootstrap_admin)) {}

InProcessLockbox::~InProcessLockbox() = default;

absl::StatusOr<std::unique_ptr<InProcessLockbox>> InProcessLockbox::Create(
    InProcessOptions options) {
  std::unique_ptr<InProcessLockbox> app(new InProcessLockbox(options));
  PgStoreOptions store_options;
  store_options.database_url = app->database_.url();
  // Enough for the racing tests' threads to meet in the database.
  store_options.pool_size = 8;
  absl::StatusOr<std::unique_ptr<PgStore>> store = PgStore::Create(std::move(store_options));
  if (!store.ok()) return store.status();
  app->store_ = std::move(*store);

  absl::StatusOr<std::string> pem = AuditSigner::GeneratePem();
  if (!pem.ok()) return pem.status();
  absl::StatusOr<std::unique_ptr<AuditSigner>> signer = AuditSigner::FromPem(*pem);
  if (!signer.ok()) return signer.status();
  app->signer_ = std::move(*signer);

  UseCasesOptions lockbox_options;
  lockbox_options.store = app->store_.get();
  lockbox_options.clock = &app->clock_;
  lockbox_options.trust_domain = kTrustDomain;
  // A fixed key: the tests never compare tokens across processes.
  lockbox_options.page_token_key = "in-process-test-page-token-key";
  lockbox_options.audit_signer = app->signer_.get();
  // No grant view: CheckAccess reads the database, which is what decides.
  lockbox_options.grant_view = nullptr;
  lockbox_options.certificates =
      options.certificates != nullptr ? options.certificates : &app->certificates_;
  lockbox_options.tokens = &app->tokens_;
  lockbox_options.webhook_urls = options.webhook_urls;
  lockbox_options.key_module = options.key_module;
  lockbox_options.key_ring = options.key_ring;
  lockbox_options.security_contact_email = options.security_contact_email;
  app->use_cases_ = std::make_unique<UseCases>(std::move(lockbox_options));

  absl::Status bootstrap = app->use_cases_->policy().EnsureBootstrapAdmin(app->admin_.spiffe_id);
  if (!bootstrap.ok()) return bootstrap;
  return app;
}

absl::StatusOr<v1::RoleBinding> InProcessLockbox::Bind(const std::string& principal,
                                                       const std::string& role,
                                                       const std::string& tenant) {
  v1::CreateRoleBindingRequest r;
  r.mutable_role_binding()->set_principal(principal);
  r.mutable_role_binding()->set_role(role);
  r.mutable_role_binding()->set_tenant(tenant);
  CallerIdentity as = admin_;
  if (!tenant.empty()) as = TenantAdmin(tenant.substr(tenant.find('/') + 1));
  return use_cases_->policy().CreateRoleBinding(as, r);
}

std::string InProcessLockbox::TenantCaPem(const std::string& tenant_id) {
  absl::MutexLock lock(&mu_);
  std::string& pem = tenant_cas_[tenant_id];
  if (pem.empty()) pem = TestCaPem("Lockbox test tenant " + tenant_id + " CA");
  return pem;
}

v1::CreateTenantRequest InProcessLockbox::TenantRequest(const std::string& tenant_id,
                                                        const std::string& first_admin) {
  v1::CreateTenantRequest r;
  r.set_tenant_id(tenant_id);
  r.mutable_identity()->set_ca_bundle_pem(TenantCaPem(tenant_id));
  r.mutable_first_admin()->set_principal(
      SpiffeId(first_admin.empty() ? "tenant/" + tenant_id + "/user/admin" : first_admin));
  return r;
}

absl::StatusOr<v1::Tenant> InProcessLockbox::CreateTenant(const std::string& tenant_id,
                                                          const std::string& first_admin) {
  v1::CreateTenantRequest r = TenantRequest(tenant_id, first_admin);
  absl::StatusOr<v1::Tenant> made = use_cases_->policy().CreateTenant(admin_, r);
  if (made.ok()) {
    absl::MutexLock lock(&mu_);
    tenant_admins_[tenant_id] = CallerIdentity{r.first_admin().principal(), ""};
  }
  return made;
}

CallerIdentity InProcessLockbox::TenantAdmin(const std::string& tenant_id) const {
  absl::MutexLock lock(&mu_);
  auto it = tenant_admins_.find(tenant_id);
  return it == tenant_admins_.end() ? CallerIdentity{} : it->second;
}

absl::Status InProcessLockbox::SetTokenIssuers(const std::string& tenant_id,
                                               const std::vector<v1::TokenIssuer>& issuers) {
  return store_->RunInTransaction([&](Transaction& tx) -> absl::Status {
    absl::StatusOr<v1::TenantIdentity> identity = tx.tenancy().GetTenantIdentity(tenant_id, true);
    const bool exists = identity.ok();
    if (!exists && !absl::IsNotFound(identity.status())) return identity.status();
    v1::TenantIdentity updated = exists ? *identity : v1::TenantIdentity();
    updated.clear_token_issuers();
    for (const v1::TokenIssuer& issuer : issuers) *updated.add_token_issuers() = issuer;
    *updated.mutable_update_time() = ToProto(clock_.Now());
    return exists ? tx.tenancy().UpdateTenantIdentity(tenant_id, &updated)
                  : tx.tenancy().InsertTenantIdentity(tenant_id, &updated);
  });
}

absl::StatusOr<v1::Environment> InProcessLockbox::CreateEnvironment(
    const std::string& tenant_id, const std::string& environment_id, const v1::Environment& spec) {
  v1::CreateEnvironmentRequest r;
  r.set_parent("tenants/" + tenant_id);
  r.set_environment_id(environment_id);
  *r.mutable_environment() = spec;
  return use_cases_->policy().CreateEnvironment(admin_, r);
}

namespace {

absl::Status Check(const absl::Status& status, absl::string_view what) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
}

}  // namespace

absl::StatusOr<DemoWorld> DemoWorld::Create(InProcessLockbox* app) {
  DemoWorld w(app);
  w.admin = app->admin();
  w.engineer = Caller("operator/alice");
  w.reviewer = Caller("operator/bob");
  w.second_reviewer = Caller("operator/carol");
  w.tenant_a_admin = Caller("tenant/ma/user/dana");
  w.tenant_a_auditor = Caller("tenant/ma/user/audrey");
  w.tenant_b_admin = Caller("tenant/mb/user/erin");
  w.enforcer = Caller("service/enforcer");
  w.portal = Caller("service/portal");
  w.unbound = Caller("operator/zed");
  w.issuer_a = std::make_shared<TestTokenIssuer>("https://login.ma.example", "lockbox", "ma-");
  w.issuer_b = std::make_shared<TestTokenIssuer>("https://login.mb.example", "lockbox", "mb-");

  v1::Environment with_sources;
  auto* sql = with_sources.add_data_sources();
  sql->set_id("sql");
  sql->set_kind("sql_database");
  sql->set_lockbox_supported(true);
  auto* rcs = with_sources.add_data_sources();
  rcs->set_id("rcs");
  rcs->set_kind("storage_account");
  rcs->set_lockbox_supported(false);
  for (auto [tenant, first_admin] :
       {std::pair<const char*, const char*>{"ma", "tenant/ma/user/dana"},
        {"mb", "tenant/mb/user/erin"}}) {
    absl::Status made = Check(app->CreateTenant(tenant, first_admin).status(), tenant);
    if (!made.ok()) return made;
    made = Check(app->CreateEnvironment(tenant, "prod", with_sources).status(), tenant);
    if (!made.ok()) return made;
    const TestTokenIssuer& issuer = std::string(tenant) == "ma" ? *w.issuer_a : *w.issuer_b;
    made = Check(app->SetTokenIssuers(tenant, {issuer.Registration()}), tenant);
    if (!made.ok()) return made;
  }

  const struct {
    const CallerIdentity* who;
    const char* role;
    const char* tenant;
  } kBindings[] = {
      {&w.engineer, "operator.engineer", ""},
      {&w.reviewer, "operator.reviewer", ""},
      {&w.second_reviewer, "operator.reviewer", ""},
      // The tenants' admins are CreateTenant's first admins; the tenant's
      // other roles are bound by them (Bind).
      {&w.tenant_a_auditor, "tenant.auditor", kTenantA},
      {&w.enforcer, "service.enforcer", ""},
      {&w.portal, "service.portal", ""},
  };
  for (const auto& b : kBindings) {
    absl::Status bound =
        Check(app->Bind(b.who->spiffe_id, b.role, b.tenant).status(), b.who->spiffe_id);
    if (!bound.ok()) return bound;
  }

  // The customer's policy is the customer's to change.
  v1::UpdateLockboxPolicyRequest up;
  up.mutable_lockbox_policy()->set_name(std::string(kTenantA) + "/lockboxPolicy");
  up.mutable_lockbox_policy()->set_enabled(true);
  up.mutable_lockbox_policy()->set_allow_revocation(true);
  up.mutable_update_mask()->add_paths("enabled");
  up.mutable_update_mask()->add_paths("allow_revocation");
  absl::Status policy =
      Check(app->use_cases().policy().UpdateLockboxPolicy(w.tenant_a_admin, up).status(), "policy");
  if (!policy.ok()) return policy;
  return w;
}

CallerIdentity DemoWorld::PortalFor(const CallerIdentity& user,
                                    const nlohmann::json& overrides) const {
  const bool in_b = user.spiffe_id.find("/tenant/mb/") != std::string::npos;
  const TestTokenIssuer& issuer = in_b ? *issuer_b : *issuer_a;
  CallerIdentity caller = portal;
  caller.on_behalf_of = issuer.Sign(user.spiffe_id, app_->clock().Now(), overrides);
  return caller;
}

v1::CreateAccessRequestRequest DemoWorld::Ask(const std::string& environment) {
  v1::CreateAccessRequestRequest r;
  r.set_parent(environment.substr(0, environment.find("/environments/")));
  r.mutable_access_request()->set_environment(environment);
  r.mutable_access_request()->set_reason(v1::AccessRequest::CUSTOMER_INITIATED_SUPPORT);
  r.mutable_access_request()->set_support_ticket_id("TKT-42");
  r.mutable_access_request()->set_justification("invoices fail to post since Tuesday");
  return r;
}

absl::StatusOr<v1::AccessRequest> DemoWorld::PendingRequest(const std::string& environment) const {
  return app_->use_cases().requests().CreateAccessRequest(engineer, Ask(environment));
}

absl::StatusOr<v1::Grant> DemoWorld::ActiveGrant(const std::string& environment) const {
  absl::StatusOr<v1::AccessRequest> request = PendingRequest(environment);
  if (!request.ok()) return request.status();
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(request->name());
  absl::StatusOr<v1::AccessRequest> decided =
      app_->use_cases().requests().ApproveAccessRequest(reviewer, approve);
  if (!decided.ok()) return decided.status();
  if (decided->state() == v1::AccessRequest::PENDING) {
    // Protected: the customer's stage follows.
    decided = app_->use_cases().requests().ApproveAccessRequest(
        environment.rfind(kTenantA, 0) == 0 ? tenant_a_admin : tenant_b_admin, approve);
    if (!decided.ok()) return decided.status();
  }
  if (decided->state() != v1::AccessRequest::APPROVED) {
    return absl::FailedPreconditionError("the request was not approved: " + decided->DebugString());
  }
  v1::GetGrantRequest get;
  get.set_name(decided->grant());
  return app_->use_cases().grants().GetGrant(engineer, get);
}

absl::StatusOr<DemoApp> StartDemoApp() {
  DemoApp demo;
  ASSIGN_OR_RETURN(demo.app, InProcessLockbox::Create());
  ASSIGN_OR_RETURN(DemoWorld world, DemoWorld::Create(demo.app.get()));
  demo.world = std::make_unique<DemoWorld>(std::move(world));
  return demo;
}

}  // namespace lockbox::testing
