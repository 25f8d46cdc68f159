// PolicyService: tenants, lockbox policy, environments and role bindings.
#include "server/app/policy_use_cases.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/app/audit_events.h"
#include "server/app/list_page.h"
#include "server/app/request_messages.h"
#include "server/domain/authorization.h"
#include "server/domain/emergency.h"
#include "server/domain/encryption_policy.h"
#include "server/domain/extensions.h"
#include "server/domain/filter.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/identity/tenant_identity.h"
#include "server/observe/log.h"

namespace lockbox {
namespace {

std::string Bool(bool b) { return b ? "true" : "false"; }

void PolicyDetails(const v1::LockboxPolicy& p, v1::AuditEvent* e) {
  auto& d = *e->mutable_details();
  d["enabled"] = Bool(p.enabled());
  d["request_ttl"] = absl::FormatDuration(FromProto(p.request_ttl()));
  d["access_duration"] = absl::FormatDuration(FromProto(p.access_duration()));
  d["notification_emails"] = absl::StrJoin(p.notification_emails(), ",");
  d["allow_revocation"] = Bool(p.allow_revocation());
  d["webhook_url"] = p.webhook_url();
  d["webhook_secret_set"] = Bool(p.webhook_secret_set());
  // The offline verifier follows this to know when decisions had to be
  // signed (docs/SIGNED_DECISIONS.md).
  d["require_signed_decisions"] = Bool(p.require_signed_decisions());
  // Richer approvals (docs/APPROVALS.md), as in force: an unset field is
  // its default. The offline verifier follows customer_approvals to know
  // how many signed customer approvals a grant needed.
  d["internal_approvals"] = absl::StrCat(std::max(1, p.internal_approvals()));
  d["customer_approvals"] = absl::StrCat(std::max(1, p.customer_approvals()));
  d["max_extensions"] = absl::StrCat(MaxExtensionsOf(p));
  d["emergency_access"] =
      p.emergency_access() == v1::LockboxPolicy::FORBIDDEN ? "forbidden" : "allowed";
  d["emergency_access_duration"] = absl::FormatDuration(EmergencyDuration(p));
}

void EnvironmentDetails(const v1::Environment& env, v1::AuditEvent* e) {
  auto& d = *e->mutable_details();
  d["display_name"] = env.display_name();
  d["managed"] = Bool(env.managed());
  std::vector<std::string> sources;
  for (const v1::DataSource& ds : env.data_sources()) {
    sources.push_back(absl::StrCat(ds.id(), ":", ds.kind(),
                                   ds.lockbox_supported() ? ":lockbox" : ":unsupported",
                                   CmkSupported(ds) ? "" : ":provider-key"));
  }
  d["data_sources"] = absl::StrJoin(sources, ",");
  e->set_environment(env.name());
}

// The output-only key_protection: which key protects each data source.
absl::Status ReadKeyProtection(Transaction& tx, const std::string& tenant, v1::Environment* env) {
  ASSIGN_OR_RETURN(std::optional<v1::EncryptionPolicy> covering,
                   tx.keys().PolicyCovering(tenant, IdOfName(env->name())));
  lockbox::FillKeyProtection(covering, env);
  return absl::OkStatus();
}

// The authorisation of an environment update, checked before its replay.
absl::Status MayUpdateEnvironment(const Actor& a, const EnvironmentUpdate& needs,
                                  absl::string_view tenant) {
  if (needs.provider_fields) RETURN_IF_ERROR(authz::ManageTenants(a));
  if (needs.tenant_fields) RETURN_IF_ERROR(authz::ManageTenantPolicy(a, tenant));
  return absl::OkStatus();
}

// Whether `a` may delete binding `id`, checked before its replay: as the
// body decides while the binding exists; once it is gone (a retry of the
// delete that removed it), whoever may delete bindings somewhere gets the
// (empty) answer again, which tells nothing.
absl::Status MayDeleteRoleBinding(Transaction& tx, const Actor& a, const std::string& id) {
  absl::StatusOr<v1::RoleBinding> binding = tx.tenancy().GetRoleBinding(id, false);
  if (binding.ok()) {
    return authz::DeleteRoleBinding(a, binding->tenant().empty() ? "" : binding->tenant().substr(8),
                                    binding->role());
  }
  if (!absl::IsNotFound(binding.status())) return binding.status();
  absl::Status global = authz::DeleteRoleBinding(a, "");
  if (global.ok()) return global;
  for (const std::string& tenant : a.permissions.Tenants()) {
    if (authz::DeleteRoleBinding(a, tenant).ok()) return absl::OkStatus();
  }
  return global;
}

// What the audit event of an identity change records: the CA fingerprints
// and the issuers (with their audiences), under `prefix`.
void IdentityDetails(const v1::TenantIdentity& identity, absl::string_view prefix,
                     v1::AuditEvent* e) {
  auto& d = *e->mutable_details();
  d[absl::StrCat(prefix, "ca_fingerprints")] = absl::StrJoin(identity.ca_fingerprints(), ",");
  std::vector<std::string> issuers;
  for (const v1::TokenIssuer& i : identity.token_issuers()) {
    issuers.push_back(absl::StrCat(i.issuer(), " aud=", i.audience()));
  }
  d[absl::StrCat(prefix, "token_issuers")] = absl::StrJoin(issuers, ",");
}

// Each issuer's keys, checked by the token verifier: they load, and are of a
// kind it accepts (so a registration never holds a key no token can use).
absl::Status CheckIssuerKeys(const UseCaseRunner& runner,
                             const google::protobuf::RepeatedPtrField<v1::TokenIssuer>& issuers) {
  if (issuers.empty()) return absl::OkStatus();
  if (runner.tokens() == nullptr) {
    return InvalidField("identity.token_issuers", "NOT_ALLOWED", "this server verifies no tokens");
  }
  for (int i = 0; i < issuers.size(); ++i) {
    RETURN_IF_ERROR(
        runner.tokens()->CheckIssuer(issuers[i], absl::StrCat("identity.token_issuers[", i, "]")));
  }
  return absl::OkStatus();
}

// The first tenant.admin of CreateTenant: a user of this very tenant.
absl::StatusOr<Principal> FirstAdmin(const v1::CreateTenantRequest& r,
                                     absl::string_view trust_domain) {
  const v1::RoleBinding& in = r.first_admin();
  if (in.principal().empty()) {
    return InvalidField("first_admin.principal", "REQUIRED",
                        "the tenant's first tenant.admin, spiffe://<td>/tenant/<id>/user/<user>");
  }
  ASSIGN_OR_RETURN(Principal p,
                   ParseSpiffeId(in.principal(), trust_domain, "first_admin.principal"));
  if (p.kind != Principal::Kind::kTenantUser || p.tenant != r.tenant_id()) {
    return InvalidField("first_admin.principal", "NOT_ALLOWED",
                        absl::StrCat("must be a user of this tenant: spiffe://", trust_domain,
                                     "/tenant/", r.tenant_id(), "/user/<user>"));
  }
  if (!in.role().empty() && in.role() != RoleName(Role::kTenantAdmin)) {
    return InvalidField("first_admin.role", "NOT_ALLOWED", "must be empty or tenant.admin");
  }
  if (!in.tenant().empty() && in.tenant() != TenantName(r.tenant_id())) {
    return InvalidField("first_admin.tenant", "NOT_ALLOWED",
                        absl::StrCat("must be empty or ", TenantName(r.tenant_id())));
  }
  if (!in.email().empty() && !IsValidEmail(in.email())) {
    return InvalidField("first_admin.email", "BAD_FORMAT", "is not an e-mail address");
  }
  return p;
}

absl::StatusOr<std::string> ParseIdentityName(absl::string_view name, absl::string_view field) {
  std::string s(name);
  constexpr absl::string_view kSuffix = "/identity";
  if (!absl::EndsWith(s, kSuffix)) {
    return InvalidField(field, name.empty() ? "REQUIRED" : "BAD_FORMAT",
                        "must be tenants/{tenant}/identity");
  }
  return ParseTenantName(s.substr(0, s.size() - kSuffix.size()), field);
}

}  // namespace

absl::StatusOr<v1::Tenant> PolicyUseCases::CreateTenant(const C& c,
                                                        const v1::CreateTenantRequest& r) {
  if (!IsValidId(r.tenant_id())) {
    return InvalidField("tenant_id", r.tenant_id().empty() ? "REQUIRED" : "BAD_FORMAT",
                        "must match [a-z][a-z0-9-]{0,62}");
  }
  RETURN_IF_ERROR(ValidateDisplayName(r.tenant().display_name(), "tenant.display_name"));
  // Who vouches for the tenant's users comes with the tenant, from the
  // customer, and is recorded with it: a tenant never exists without it.
  RETURN_IF_ERROR(ValidateTenantIdentity(r.identity(), "identity"));
  RETURN_IF_ERROR(CheckIssuerKeys(runner(), r.identity().token_issuers()));
  ASSIGN_OR_RETURN(Principal first_admin, FirstAdmin(r, runner().trust_domain()));
  return runner().Change<v1::Tenant>(
      c, "CreateTenant", r, r.request_id(),
      [](Transaction&, const Actor& a) { return authz::ManageTenants(a); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::Tenant> {
        RETURN_IF_ERROR(authz::ManageTenants(a));
        if (tx.tenancy().GetTenant(r.tenant_id()).ok()) {
          return Error(absl::StatusCode::kAlreadyExists, reason::kAlreadyExists,
                       absl::StrCat(TenantName(r.tenant_id()), " already exists"));
        }
        v1::Tenant t;
        t.set_name(TenantName(r.tenant_id()));
        t.set_display_name(r.tenant().display_name().empty() ? r.tenant_id()
                                                             : r.tenant().display_name());
        *t.mutable_create_time() = ToProto(now);
        RETURN_IF_ERROR(tx.tenancy().InsertTenant(t));
        v1::LockboxPolicy policy = DefaultPolicy(r.tenant_id());
        *policy.mutable_update_time() = ToProto(now);
        RETURN_IF_ERROR(tx.tenancy().InsertPolicy(r.tenant_id(), &policy));
        v1::TenantIdentity identity;
        identity.set_ca_bundle_pem(r.identity().ca_bundle_pem());
        *identity.mutable_token_issuers() = r.identity().token_issuers();
        *identity.mutable_update_time() = ToProto(now);
        RETURN_IF_ERROR(tx.tenancy().InsertTenantIdentity(r.tenant_id(), &identity));
        FillCaFingerprints(&identity);
        v1::AuditEvent e = NewAuditEvent(a, "tenant.create", r.tenant_id(), t.name(), now);
        (*e.mutable_details())["display_name"] = t.display_name();
        PolicyDetails(policy, &e);
        IdentityDetails(identity, "identity.", &e);
        (*e.mutable_details())["first_admin"] = first_admin.spiffe_id;
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));

        std::string id = NewUuid();
        v1::RoleBinding b;
        b.set_name(absl::StrCat("roleBindings/", id));
        b.set_principal(first_admin.spiffe_id);
        b.set_role(std::string(RoleName(Role::kTenantAdmin)));
        b.set_tenant(t.name());
        b.set_email(r.first_admin().email());
        *b.mutable_create_time() = ToProto(now);
        RETURN_IF_ERROR(tx.tenancy().InsertRoleBinding(id, b));
        v1::AuditEvent be = NewAuditEvent(a, "role_binding.create", r.tenant_id(), b.name(), now);
        (*be.mutable_details())["principal"] = b.principal();
        (*be.mutable_details())["role"] = b.role();
        (*be.mutable_details())["email"] = b.email();
        (*be.mutable_details())["first_admin"] = "true";
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &be));
        return t;
      });
}

absl::StatusOr<v1::Tenant> PolicyUseCases::GetTenant(const C& c, const v1::GetTenantRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseTenantName(r.name(), "name"));
  return runner().Read<v1::Tenant>(
      c, [&](Transaction& tx, const Actor& a, absl::Time) -> absl::StatusOr<v1::Tenant> {
        RETURN_IF_ERROR(authz::ReadTenantConfig(a, tenant));
        return tx.tenancy().GetTenant(tenant);
      });
}

absl::StatusOr<v1::TenantIdentity> PolicyUseCases::GetTenantIdentity(
    const C& c, const v1::GetTenantIdentityRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseIdentityName(r.name(), "name"));
  return runner().Read<v1::TenantIdentity>(
      c, [&](Transaction& tx, const Actor& a, absl::Time) -> absl::StatusOr<v1::TenantIdentity> {
        RETURN_IF_ERROR(authz::ReadTenantIdentity(a, tenant));
        ASSIGN_OR_RETURN(v1::TenantIdentity identity,
                         tx.tenancy().GetTenantIdentity(tenant, false));
        FillCaFingerprints(&identity);
        return identity;
      });
}

absl::StatusOr<v1::TenantIdentity> PolicyUseCases::UpdateTenantIdentity(
    const C& c, const v1::UpdateTenantIdentityRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseIdentityName(r.identity().name(), "identity.name"));
  bool bundle = r.update_mask().paths().empty();
  bool issuers = bundle;
  for (const std::string& path : r.update_mask().paths()) {
    if (path == "ca_bundle_pem") {
      bundle = true;
    } else if (path == "token_issuers") {
      issuers = true;
    } else {
      return InvalidField("update_mask", "UNKNOWN_VALUE",
                          absl::StrCat("\"", path, "\" is not ca_bundle_pem or token_issuers"));
    }
  }
  if (bundle) {
    RETURN_IF_ERROR(ParseCaBundle(r.identity().ca_bundle_pem(), "identity.ca_bundle_pem").status());
  }
  if (issuers) {
    RETURN_IF_ERROR(ValidateTokenIssuers(r.identity().token_issuers(), "identity.token_issuers"));
    RETURN_IF_ERROR(CheckIssuerKeys(runner(), r.identity().token_issuers()));
  }
  return runner().Change<v1::TenantIdentity>(
      c, "UpdateTenantIdentity", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::ManageTenantIdentity(a, tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::TenantIdentity> {
        RETURN_IF_ERROR(authz::ManageTenantIdentity(a, tenant));
        ASSIGN_OR_RETURN(v1::TenantIdentity identity, tx.tenancy().GetTenantIdentity(tenant, true));
        RETURN_IF_ERROR(CheckEtag(r.identity().etag(), identity.etag()));
        v1::TenantIdentity before = identity;
        FillCaFingerprints(&before);
        if (bundle) identity.set_ca_bundle_pem(r.identity().ca_bundle_pem());
        if (issuers) *identity.mutable_token_issuers() = r.identity().token_issuers();
        *identity.mutable_update_time() = ToProto(now);
        RETURN_IF_ERROR(tx.tenancy().UpdateTenantIdentity(tenant, &identity));
        FillCaFingerprints(&identity);
        v1::AuditEvent e = NewAuditEvent(a, "tenant_identity.update", tenant, identity.name(), now);
        IdentityDetails(before, "before.", &e);
        IdentityDetails(identity, "after.", &e);
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        RETURN_IF_ERROR(NotifyIdentityChanged(runner().sealer(), tx, tenant, before, identity,
                                              a.principal.spiffe_id, now));
        return identity;
      });
}

absl::StatusOr<v1::ListTenantsResponse> PolicyUseCases::ListTenants(
    const C& c, const v1::ListTenantsRequest& r) {
  ListQuery q;
  ASSIGN_OR_RETURN(ListPage page, ListPage::Start(*options_.page_tokens, "ListTenants", c, "", "",
                                                  r.page_token(), r.page_size(), &q));
  return runner().Read<v1::ListTenantsResponse>(
      c,
      [&](Transaction& tx, const Actor& a, absl::Time) -> absl::StatusOr<v1::ListTenantsResponse> {
        ASSIGN_OR_RETURN(authz::ListScope scope, authz::ListTenants(a));
        q.tenants = std::move(scope.tenants);
        ASSIGN_OR_RETURN(std::vector<v1::Tenant> tenants, tx.tenancy().ListTenants(q));
        v1::ListTenantsResponse out;
        out.set_next_page_token(page.Finish(&tenants, [](const v1::Tenant& t) {
          return Cursor{"", IdOfName(t.name())};
        }));
        for (auto& t : tenants) *out.add_tenants() = std::move(t);
        return out;
      });
}

absl::StatusOr<v1::LockboxPolicy> PolicyUseCases::GetLockboxPolicy(
    const C& c, const v1::GetLockboxPolicyRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParsePolicyName(r.name(), "name"));
  return runner().Read<v1::LockboxPolicy>(
      c, [&](Transaction& tx, const Actor& a, absl::Time) -> absl::StatusOr<v1::LockboxPolicy> {
        RETURN_IF_ERROR(authz::ReadTenantConfig(a, tenant));
        return tx.tenancy().GetPolicy(tenant, false);
      });
}

absl::StatusOr<v1::LockboxPolicy> PolicyUseCases::UpdateLockboxPolicy(
    const C& c, const v1::UpdateLockboxPolicyRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant,
                   ParsePolicyName(r.lockbox_policy().name(), "lockbox_policy.name"));
  const auto& paths = r.update_mask().paths();
  bool sets_url =
      paths.empty() || std::find(paths.begin(), paths.end(), "webhook_url") != paths.end();
  if (sets_url && !r.lockbox_policy().webhook_url().empty()) {
    // Authorised first, so that nobody else learns what a name resolves
    // to; resolved outside the change's transaction, which holds the
    // tenant's policy row.
    RETURN_IF_ERROR(
        runner()
            .Read<bool>(c,
                        [&](Transaction&, const Actor& a, absl::Time) -> absl::StatusOr<bool> {
                          RETURN_IF_ERROR(authz::ManageTenantPolicy(a, tenant));
                          return true;
                        })
            .status());
    if (options_.webhook_urls == nullptr) {
      return InvalidField("lockbox_policy.webhook_url", "NOT_ALLOWED",
                          "this server sends no webhooks");
    }
    RETURN_IF_ERROR(options_.webhook_urls->Check(r.lockbox_policy().webhook_url(),
                                                 "lockbox_policy.webhook_url"));
  }
  return runner().Change<v1::LockboxPolicy>(
      c, "UpdateLockboxPolicy", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::ManageTenantPolicy(a, tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::LockboxPolicy> {
        // The customer's policy is the customer's: not even lockbox.admin may
        // change it.
        RETURN_IF_ERROR(authz::ManageTenantPolicy(a, tenant));
        ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(tenant, true));
        RETURN_IF_ERROR(CheckEtag(r.lockbox_policy().etag(), policy.etag()));
        std::string url_before = policy.webhook_url();
        RETURN_IF_ERROR(ApplyPolicyUpdate(r.lockbox_policy(), r.update_mask(), &policy));
        *policy.mutable_update_time() = ToProto(now);
        RETURN_IF_ERROR(tx.tenancy().UpdatePolicy(tenant, &policy));
        // A new secret replaces the stored one; a cleared one is erased,
        // not merely reported unset.
        bool secret_given = !policy.webhook_secret().empty();
        bool secret_cleared = !policy.webhook_secret_set();
        if (secret_given || secret_cleared || policy.webhook_url() != url_before) {
          ASSIGN_OR_RETURN(auto current, tx.tenancy().Webhook(tenant));
          // As stored: a new secret sealed for a sealed tenant (refused
          // with KEY_UNAVAILABLE while its key cannot be used), a kept one
          // as it was.
          std::string secret = current.second;
          if (secret_given) {
            ASSIGN_OR_RETURN(
                secret, runner().sealer().SealWebhookSecret(tx, tenant, policy.webhook_secret()));
          } else if (secret_cleared) {
            secret.clear();
          }
          if (policy.webhook_url() != current.first || secret != current.second) {
            RETURN_IF_ERROR(tx.tenancy().SetWebhook(tenant, policy.webhook_url(), secret));
          }
        }
        // The secret is write-only: never returned, never audited.
        policy.clear_webhook_secret();
        v1::AuditEvent e = NewAuditEvent(a, "lockbox_policy.update", tenant, policy.name(), now);
        PolicyDetails(policy, &e);
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        return policy;
      });
}

absl::StatusOr<v1::Environment> PolicyUseCases::CreateEnvironment(
    const C& c, const v1::CreateEnvironmentRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseTenantName(r.parent(), "parent"));
  if (!IsValidId(r.environment_id())) {
    return InvalidField("environment_id", r.environment_id().empty() ? "REQUIRED" : "BAD_FORMAT",
                        "must match [a-z][a-z0-9-]{0,62}");
  }
  RETURN_IF_ERROR(ValidateDisplayName(r.environment().display_name(), "environment.display_name"));
  RETURN_IF_ERROR(ValidateDataSources(r.environment(), "environment.data_sources"));
  return runner().Change<v1::Environment>(
      c, "CreateEnvironment", r, r.request_id(),
      [](Transaction&, const Actor& a) { return authz::ManageTenants(a); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::Environment> {
        RETURN_IF_ERROR(authz::ManageTenants(a));
        ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(tenant, false));
        v1::Environment env;
        env.set_name(ChildName(tenant, "environments", r.environment_id()));
        if (tx.tenancy().GetEnvironment(tenant, r.environment_id(), false).ok()) {
          return Error(absl::StatusCode::kAlreadyExists, reason::kAlreadyExists,
                       absl::StrCat(env.name(), " already exists"));
        }
        env.set_display_name(r.environment().display_name().empty()
                                 ? r.environment_id()
                                 : r.environment().display_name());
        // New environments start managed; only the tenant may unmanage one.
        env.set_managed(true);
        *env.mutable_data_sources() = r.environment().data_sources();
        *env.mutable_create_time() = ToProto(now);
        *env.mutable_update_time() = ToProto(now);
        RETURN_IF_ERROR(tx.tenancy().InsertEnvironment(tenant, r.environment_id(), &env));
        env.set_protected_(IsProtected(policy, env));
        RETURN_IF_ERROR(ReadKeyProtection(tx, tenant, &env));
        v1::AuditEvent e = NewAuditEvent(a, "environment.create", tenant, env.name(), now);
        EnvironmentDetails(env, &e);
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        return env;
      });
}

absl::StatusOr<v1::Environment> PolicyUseCases::GetEnvironment(const C& c,
                                                               const v1::GetEnvironmentRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "environments", "name"));
  return runner().Read<v1::Environment>(
      c, [&](Transaction& tx, const Actor& a, absl::Time) -> absl::StatusOr<v1::Environment> {
        RETURN_IF_ERROR(authz::ReadTenantConfig(a, name.tenant));
        ASSIGN_OR_RETURN(v1::Environment env,
                         tx.tenancy().GetEnvironment(name.tenant, name.id, false));
        ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(name.tenant, false));
        env.set_protected_(IsProtected(policy, env));
        RETURN_IF_ERROR(ReadKeyProtection(tx, name.tenant, &env));
        return env;
      });
}

absl::StatusOr<v1::ListEnvironmentsResponse> PolicyUseCases::ListEnvironments(
    const C& c, const v1::ListEnvironmentsRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseTenantName(r.parent(), "parent"));
  ListQuery q;
  ASSIGN_OR_RETURN(ListPage page,
                   ListPage::Start(*options_.page_tokens, "ListEnvironments", c, r.parent(), "",
                                   r.page_token(), r.page_size(), &q));
  q.tenants = std::vector<std::string>{tenant};
  return runner().Read<v1::ListEnvironmentsResponse>(
      c,
      [&](Transaction& tx, const Actor& a,
          absl::Time) -> absl::StatusOr<v1::ListEnvironmentsResponse> {
        RETURN_IF_ERROR(authz::ReadTenantConfig(a, tenant));
        ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(tenant, false));
        ASSIGN_OR_RETURN(std::vector<v1::Environment> envs, tx.tenancy().ListEnvironments(q));
        v1::ListEnvironmentsResponse out;
        out.set_next_page_token(page.Finish(&envs, [](const v1::Environment& e) {
          return Cursor{"", IdOfName(e.name())};
        }));
        for (auto& e : envs) {
          e.set_protected_(IsProtected(policy, e));
          RETURN_IF_ERROR(ReadKeyProtection(tx, tenant, &e));
          *out.add_environments() = std::move(e);
        }
        return out;
      });
}

absl::StatusOr<v1::Environment> PolicyUseCases::UpdateEnvironment(
    const C& c, const v1::UpdateEnvironmentRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name,
                   ParseChildName(r.environment().name(), "environments", "environment.name"));
  ASSIGN_OR_RETURN(EnvironmentUpdate needs,
                   CheckEnvironmentUpdate(r.environment(), r.update_mask()));
  return runner().Change<v1::Environment>(
      c, "UpdateEnvironment", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return MayUpdateEnvironment(a, needs, name.tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::Environment> {
        if (needs.provider_fields) RETURN_IF_ERROR(authz::ManageTenants(a));
        if (needs.tenant_fields) RETURN_IF_ERROR(authz::ManageTenantPolicy(a, name.tenant));
        ASSIGN_OR_RETURN(v1::Environment env,
                         tx.tenancy().GetEnvironment(name.tenant, name.id, true));
        RETURN_IF_ERROR(CheckEtag(r.environment().etag(), env.etag()));
        const v1::Environment before = env;
        ApplyEnvironmentUpdate(r.environment(), r.update_mask(), name.id, &env);
        // The provider describes data sources, but never moves one from its
        // customer's key to its own.
        ASSIGN_OR_RETURN(std::optional<v1::EncryptionPolicy> covering,
                         tx.keys().PolicyCovering(name.tenant, name.id));
        RETURN_IF_ERROR(CheckKeyProtectionKept(covering, before, env));
        *env.mutable_update_time() = ToProto(now);
        RETURN_IF_ERROR(tx.tenancy().UpdateEnvironment(name.tenant, name.id, &env));
        ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(name.tenant, false));
        env.set_protected_(IsProtected(policy, env));
        lockbox::FillKeyProtection(covering, &env);
        v1::AuditEvent e = NewAuditEvent(a, "environment.update", name.tenant, env.name(), now);
        EnvironmentDetails(env, &e);
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        return env;
      });
}

absl::StatusOr<v1::RoleBinding> PolicyUseCases::CreateRoleBinding(
    const C& c, const v1::CreateRoleBindingRequest& r) {
  const v1::RoleBinding& in = r.role_binding();
  ASSIGN_OR_RETURN(Principal principal, ParseSpiffeId(in.principal(), runner().trust_domain(),
                                                      "role_binding.principal"));
  std::optional<Role> role = ParseRole(in.role());
  if (!role) {
    return InvalidField("role_binding.role", in.role().empty() ? "REQUIRED" : "UNKNOWN_VALUE",
                        "must be one of lockbox.admin, operator.engineer, operator.reviewer, "
                        "tenant.admin, tenant.auditor, service.enforcer, service.portal, "
                        "service.keyuser, operator.breakglass");
  }
  std::string tenant;
  if (!in.tenant().empty()) {
    ASSIGN_OR_RETURN(tenant, ParseTenantName(in.tenant(), "role_binding.tenant"));
  }
  RETURN_IF_ERROR(ValidateBinding(principal, *role, tenant));
  if (!in.email().empty() && !IsValidEmail(in.email())) {
    return InvalidField("role_binding.email", "BAD_FORMAT", "is not an e-mail address");
  }
  return runner().Change<v1::RoleBinding>(
      c, "CreateRoleBinding", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::CreateRoleBinding(a, *role, tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::RoleBinding> {
        RETURN_IF_ERROR(authz::CreateRoleBinding(a, *role, tenant));
        if (!tenant.empty()) RETURN_IF_ERROR(tx.tenancy().GetTenant(tenant).status());
        ASSIGN_OR_RETURN(std::vector<Binding> existing,
                         tx.tenancy().BindingsOf(principal.spiffe_id));
        for (const Binding& b : existing) {
          if (b.role == *role && b.tenant == tenant) {
            return Error(absl::StatusCode::kAlreadyExists, reason::kAlreadyExists,
                         "the principal already holds this role");
          }
        }
        std::string id = NewUuid();
        v1::RoleBinding b;
        b.set_name(absl::StrCat("roleBindings/", id));
        b.set_principal(principal.spiffe_id);
        b.set_role(std::string(RoleName(*role)));
        if (!tenant.empty()) b.set_tenant(TenantName(tenant));
        b.set_email(in.email());
        *b.mutable_create_time() = ToProto(now);
        RETURN_IF_ERROR(tx.tenancy().InsertRoleBinding(id, b));
        v1::AuditEvent e = NewAuditEvent(a, "role_binding.create", tenant, b.name(), now);
        (*e.mutable_details())["principal"] = b.principal();
        (*e.mutable_details())["role"] = b.role();
        (*e.mutable_details())["email"] = b.email();
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        return b;
      });
}

absl::StatusOr<v1::ListRoleBindingsResponse> PolicyUseCases::ListRoleBindings(
    const C& c, const v1::ListRoleBindingsRequest& r) {
  std::string tenant;
  if (!r.parent().empty()) {
    ASSIGN_OR_RETURN(tenant, ParseTenantName(r.parent(), "parent"));
  }
  ListQuery q;
  ASSIGN_OR_RETURN(q.conditions, ParseFilter(r.filter(), {{"principal"}, {"role"}}));
  ASSIGN_OR_RETURN(ListPage page,
                   ListPage::Start(*options_.page_tokens, "ListRoleBindings", c, r.parent(),
                                   r.filter(), r.page_token(), r.page_size(), &q));
  return runner().Read<v1::ListRoleBindingsResponse>(
      c,
      [&](Transaction& tx, const Actor& a,
          absl::Time) -> absl::StatusOr<v1::ListRoleBindingsResponse> {
        ASSIGN_OR_RETURN(authz::ListScope scope, authz::ListRoleBindings(a, tenant));
        q.tenants = std::move(scope.tenants);
        ASSIGN_OR_RETURN(std::vector<v1::RoleBinding> bindings, tx.tenancy().ListRoleBindings(q));
        v1::ListRoleBindingsResponse out;
        out.set_next_page_token(page.Finish(&bindings, [](const v1::RoleBinding& b) {
          return Cursor{MicrosKey(b.create_time()), IdOfName(b.name())};
        }));
        for (auto& b : bindings) *out.add_role_bindings() = std::move(b);
        return out;
      });
}

namespace {

// Nobody could manage tenants or provider roles again without a lockbox.admin
// (and --bootstrap-admin acts only while none exists). Every lockbox.admin
// binding is locked, in one order, before any is removed: racing removals on
// any number of replicas are serialised, and the last one left is refused.
absl::Status CheckNotLastAdmin(Transaction& tx, const std::string& binding_name) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, tx.tenancy().LockBindingsOfRole(Role::kAdmin));
  bool present = std::any_of(ids.begin(), ids.end(), [&](const std::string& id) {
    return absl::StrCat("roleBindings/", id) == binding_name;
  });
  if (!present) return NotFound(binding_name);
  if (ids.size() <= 1) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kLastAdmin,
                 "this is the last lockbox.admin binding; bind another lockbox.admin first");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<google::protobuf::Empty> PolicyUseCases::DeleteRoleBinding(
    const C& c, const v1::DeleteRoleBindingRequest& r) {
  ASSIGN_OR_RETURN(std::string id, ParseRoleBindingName(r.name(), "name"));
  return runner().Change<google::protobuf::Empty>(
      c, "DeleteRoleBinding", r, r.request_id(),
      [&](Transaction& tx, const Actor& a) { return MayDeleteRoleBinding(tx, a, id); },
      [&](Transaction& tx, const Actor& a,
          absl::Time now) -> absl::StatusOr<google::protobuf::Empty> {
        auto binding = tx.tenancy().GetRoleBinding(id, false);
        // A tenant admin learns nothing of bindings outside their tenant.
        RETURN_IF_ERROR(authz::DeleteRoleBinding(
            a, binding.ok() && !binding->tenant().empty() ? binding->tenant().substr(8) : "",
            binding.ok() ? binding->role() : ""));
        if (!binding.ok()) return binding.status();
        if (binding->tenant().empty() && binding->role() == RoleName(Role::kAdmin)) {
          RETURN_IF_ERROR(CheckNotLastAdmin(tx, binding->name()));
        }
        // Locked now (after every lockbox.admin binding, for an admin's): a
        // racing removal of the same binding finds it gone.
        ASSIGN_OR_RETURN(*binding, tx.tenancy().GetRoleBinding(id, true));
        RETURN_IF_ERROR(tx.tenancy().DeleteRoleBinding(id));
        std::string tenant = binding->tenant().empty() ? "" : binding->tenant().substr(8);
        v1::AuditEvent e = NewAuditEvent(a, "role_binding.delete", tenant, binding->name(), now);
        (*e.mutable_details())["principal"] = binding->principal();
        (*e.mutable_details())["role"] = binding->role();
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        return google::protobuf::Empty();
      });
}

absl::Status PolicyUseCases::EnsureBootstrapAdmin(const std::string& spiffe_id) {
  ASSIGN_OR_RETURN(Principal admin,
                   ParseSpiffeId(spiffe_id, runner().trust_domain(), "--bootstrap-admin"));
  if (admin.kind != Principal::Kind::kOperator) {
    return InvalidField("--bootstrap-admin", "NOT_ALLOWED",
                        "must be an operator: spiffe://<trust-domain>/operator/<user>");
  }
  // Only while nobody holds lockbox.admin: a bootstrap identity removed by
  // the admins it made does not come back at the next start.
  std::vector<std::string> admins;
  absl::Status status = runner().store().RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(admins, tx.tenancy().PrincipalsWithRole(Role::kAdmin));
    if (!admins.empty()) return absl::OkStatus();
    absl::Time now = runner().clock().Now();
    std::string id = NewUuid();
    v1::RoleBinding binding;
    binding.set_name(absl::StrCat("roleBindings/", id));
    binding.set_principal(spiffe_id);
    binding.set_role(std::string(RoleName(Role::kAdmin)));
    *binding.mutable_create_time() = ToProto(now);
    RETURN_IF_ERROR(tx.tenancy().InsertRoleBinding(id, binding));
    Actor system{Principal{"lockboxd:bootstrap", Principal::Kind::kService, "", "lockboxd"},
                 std::nullopt, Permissions()};
    v1::AuditEvent event = NewAuditEvent(system, "role_binding.create", "", binding.name(), now);
    (*event.mutable_details())["principal"] = spiffe_id;
    (*event.mutable_details())["role"] = binding.role();
    return runner().audit_log().Append(tx, &event);
  });
  // Another replica starting at the same moment made the same binding.
  if (absl::IsAlreadyExists(status)) {
    Log("info", "--bootstrap-admin: another replica bound it", {{"principal", spiffe_id}});
    return absl::OkStatus();
  }
  if (!status.ok()) return status;
  if (admins.empty()) {
    Log("warn", "--bootstrap-admin: no lockbox.admin existed; bound it",
        {{"principal", spiffe_id}});
  } else {
    bool self = std::find(admins.begin(), admins.end(), spiffe_id) != admins.end();
    Log("info",
        self ? "--bootstrap-admin: already a lockbox.admin; nothing done"
             : "--bootstrap-admin: a lockbox.admin exists; the flag does nothing and can be "
               "removed",
        {{"principal", spiffe_id}, {"admins", static_cast<int64_t>(admins.size())}});
  }
  return absl::OkStatus();
}

}  // namespace lockbox
