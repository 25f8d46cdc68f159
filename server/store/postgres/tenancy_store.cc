#include "server/store/postgres/tenancy_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/store/postgres/change_feed.h"
#include "server/store/postgres/sql.h"

namespace lockbox::postgres {
namespace {

constexpr char kTenantCols[] = "id, display_name, create_time";
v1::Tenant ToTenant(const pqxx::row& r) {
  v1::Tenant t;
  t.set_name(TenantName(r[0].as<std::string>()));
  t.set_display_name(r[1].as<std::string>());
  *t.mutable_create_time() = Ts(r[2]);
  return t;
}

constexpr char kPolicyCols[] =
    "tenant_id, enabled, request_ttl_us, access_duration_us, "
    "notification_emails, allow_revocation, update_time, version, webhook_url, "
    "webhook_secret <> '', require_signed_decisions, internal_approvals, customer_approvals, "
    "max_extensions, emergency_access, emergency_access_us";
v1::LockboxPolicy ToPolicy(const pqxx::row& r) {
  v1::LockboxPolicy p;
  p.set_name(absl::StrCat("tenants/", r[0].as<std::string>(), "/lockboxPolicy"));
  p.set_enabled(r[1].as<bool>());
  *p.mutable_request_ttl() = Dur(r[2]);
  *p.mutable_access_duration() = Dur(r[3]);
  SetList(r[4], p.mutable_notification_emails());
  p.set_allow_revocation(r[5].as<bool>());
  *p.mutable_update_time() = Ts(r[6]);
  p.set_etag(EtagOf(r[7].as<int64_t>()));
  p.set_webhook_url(r[8].as<std::string>());
  p.set_webhook_secret_set(r[9].as<bool>());
  p.set_require_signed_decisions(r[10].as<bool>());
  p.set_internal_approvals(r[11].as<int>());
  p.set_customer_approvals(r[12].as<int>());
  p.set_max_extensions(r[13].as<int>());
  p.set_emergency_access(static_cast<v1::LockboxPolicy::EmergencyAccess>(r[14].as<int>()));
  *p.mutable_emergency_access_duration() = Dur(r[15]);
  return p;
}

constexpr char kEnvCols[] =
    "tenant_id, id, display_name, managed, data_sources::text, create_time, "
    "update_time, version";
v1::Environment ToEnvironment(const pqxx::row& r) {
  v1::Environment e = FromJson<v1::Environment>(r[4].as<std::string>());
  e.set_name(ChildName(r[0].as<std::string>(), "environments", r[1].as<std::string>()));
  e.set_display_name(r[2].as<std::string>());
  e.set_managed(r[3].as<bool>());
  *e.mutable_create_time() = Ts(r[5]);
  *e.mutable_update_time() = Ts(r[6]);
  e.set_etag(EtagOf(r[7].as<int64_t>()));
  return e;
}
std::string DataSourcesJson(const v1::Environment& env) {
  v1::Environment only;
  *only.mutable_data_sources() = env.data_sources();
  return Json(only);
}

constexpr char kBindingCols[] = "id, principal, role, tenant_id, email, create_time";
v1::RoleBinding ToBinding(const pqxx::row& r) {
  v1::RoleBinding b;
  b.set_name(absl::StrCat("roleBindings/", r[0].as<std::string>()));
  b.set_principal(r[1].as<std::string>());
  b.set_role(r[2].as<std::string>());
  std::string tenant = r[3].as<std::string>();
  if (!tenant.empty()) b.set_tenant(TenantName(tenant));
  b.set_email(r[4].as<std::string>());
  *b.mutable_create_time() = Ts(r[5]);
  return b;
}

std::vector<std::string> FirstColumn(const pqxx::result& r) {
  std::vector<std::string> out;
  for (const auto& row : r) out.push_back(row[0].as<std::string>());
  return out;
}

// Delivered to every replica's grant view when the transaction commits.
void PublishBindingsChanged(pqxx::work& w) {
  w.exec_params("SELECT pg_notify($1, 'bindings')", ChannelOf(ChangeTopic::kAccess));
}

// The stored part of a TenantIdentity: what the tenant handed over.
std::string IdentityJson(const v1::TenantIdentity& identity) {
  v1::TenantIdentity stored;
  stored.set_ca_bundle_pem(identity.ca_bundle_pem());
  *stored.mutable_token_issuers() = identity.token_issuers();
  return Json(stored);
}

void PublishIdentityChanged(pqxx::work& w) {
  w.exec_params("SELECT pg_notify($1, 'identity')", ChannelOf(ChangeTopic::kAccess));
}

}  // namespace

absl::Status PgTenancyStore::InsertTenantIdentity(const std::string& tenant,
                                                  v1::TenantIdentity* identity) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "INSERT INTO tenant_identities (tenant_id, identity, update_time, version) "
        "VALUES ($1, $2::jsonb, $3, 1)",
        tenant, IdentityJson(*identity), Us(identity->update_time()));
    identity->set_name(absl::StrCat(TenantName(tenant), "/identity"));
    identity->set_etag(EtagOf(1));
    PublishIdentityChanged(w);
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::TenantIdentity> PgTenancyStore::GetTenantIdentity(const std::string& tenant,
                                                                     bool for_update) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<v1::TenantIdentity> {
    auto r = w.exec_params(
        absl::StrCat("SELECT identity::text, update_time, version FROM tenant_identities "
                     "WHERE tenant_id = $1",
                     for_update ? " FOR UPDATE" : ""),
        tenant);
    if (r.empty()) return NotFound(absl::StrCat(TenantName(tenant), "/identity"));
    v1::TenantIdentity identity = FromJson<v1::TenantIdentity>(r[0][0].as<std::string>());
    identity.set_name(absl::StrCat(TenantName(tenant), "/identity"));
    *identity.mutable_update_time() = Ts(r[0][1]);
    identity.set_etag(EtagOf(r[0][2].as<int64_t>()));
    return identity;
  });
}

absl::Status PgTenancyStore::UpdateTenantIdentity(const std::string& tenant,
                                                  v1::TenantIdentity* identity) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    auto r = w.exec_params1(
        "UPDATE tenant_identities SET identity = $2::jsonb, update_time = $3, "
        "version = version + 1 WHERE tenant_id = $1 RETURNING version",
        tenant, IdentityJson(*identity), Us(identity->update_time()));
    identity->set_etag(EtagOf(r[0].as<int64_t>()));
    PublishIdentityChanged(w);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
PgTenancyStore::TenantCaBundles() {
  using Bundles = std::vector<std::pair<std::string, std::string>>;
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<Bundles> {
    Bundles out;
    for (const auto& row : w.exec(
             "SELECT tenant_id, identity->>'ca_bundle_pem' FROM tenant_identities ORDER BY tenant_id")) {
      out.emplace_back(row[0].as<std::string>(), row[1].is_null() ? "" : row[1].as<std::string>());
    }
    return out;
  });
}

absl::Status PgTenancyStore::InsertTenant(const v1::Tenant& t) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params("INSERT INTO tenants (id, display_name, create_time) VALUES ($1, $2, $3)",
                  IdOfName(t.name()), t.display_name(), Us(t.create_time()));
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::Tenant> PgTenancyStore::GetTenant(const std::string& id) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<v1::Tenant> {
    auto r = w.exec_params(absl::StrCat("SELECT ", kTenantCols, " FROM tenants WHERE id = $1"), id);
    if (r.empty()) return NotFound(TenantName(id));
    return ToTenant(r[0]);
  });
}

absl::StatusOr<std::vector<v1::Tenant>> PgTenancyStore::ListTenants(const ListQuery& q) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::Tenant>> {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kTenantCols, " FROM tenants WHERE TRUE");
    if (q.tenants) {
      std::vector<std::string> refs;
      for (const std::string& t : *q.tenants) refs.push_back(p.Add(t));
      absl::StrAppend(&sql, refs.empty()
                                ? " AND FALSE"
                                : absl::StrCat(" AND id IN (", absl::StrJoin(refs, ", "), ")"));
    }
    if (q.after) absl::StrAppend(&sql, " AND id > ", p.Add(q.after->id));
    absl::StrAppend(&sql, " ORDER BY id LIMIT ", q.limit);
    return MapRows<v1::Tenant>(Exec(w, sql, p), ToTenant);
  });
}

absl::Status PgTenancyStore::InsertPolicy(const std::string& tenant, v1::LockboxPolicy* p) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "INSERT INTO lockbox_policies (tenant_id, enabled, request_ttl_us, access_duration_us, "
        "notification_emails, allow_revocation, update_time, version, require_signed_decisions, "
        "internal_approvals, customer_approvals, max_extensions, emergency_access, "
        "emergency_access_us) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $11, $12, $13)",
        tenant, p->enabled(), Us(p->request_ttl()), Us(p->access_duration()),
        List(p->notification_emails()), p->allow_revocation(), Us(p->update_time()),
        p->require_signed_decisions(), p->internal_approvals(), p->customer_approvals(),
        p->max_extensions(), Enum(p->emergency_access()), Us(p->emergency_access_duration()));
    p->set_etag(EtagOf(1));
    return absl::OkStatus();
  });
}

namespace {

absl::StatusOr<v1::LockboxPolicy> ReadPolicy(TxContext& tx, const std::string& tenant,
                                             const char* lock) {
  return tx.Run([&](pqxx::work& w) -> absl::StatusOr<v1::LockboxPolicy> {
    auto r = w.exec_params(
        absl::StrCat("SELECT ", kPolicyCols, " FROM lockbox_policies WHERE tenant_id = $1", lock),
        tenant);
    if (r.empty()) return NotFound(TenantName(tenant));
    return ToPolicy(r[0]);
  });
}

}  // namespace

absl::StatusOr<v1::LockboxPolicy> PgTenancyStore::GetPolicy(const std::string& tenant,
                                                            bool for_update) {
  return ReadPolicy(tx_, tenant, for_update ? " FOR UPDATE" : "");
}

absl::StatusOr<v1::LockboxPolicy> PgTenancyStore::GetPolicyForShare(const std::string& tenant) {
  return ReadPolicy(tx_, tenant, " FOR SHARE");
}

absl::Status PgTenancyStore::UpdatePolicy(const std::string& tenant, v1::LockboxPolicy* p) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    auto r = w.exec_params1(
        "UPDATE lockbox_policies SET enabled = $2, request_ttl_us = $3, access_duration_us = $4, "
        "notification_emails = $5, allow_revocation = $6, update_time = $7, "
        "require_signed_decisions = $8, internal_approvals = $9, customer_approvals = $10, "
        "max_extensions = $11, emergency_access = $12, emergency_access_us = $13, "
        "version = version + 1 "
        "WHERE tenant_id = $1 RETURNING version",
        tenant, p->enabled(), Us(p->request_ttl()), Us(p->access_duration()),
        List(p->notification_emails()), p->allow_revocation(), Us(p->update_time()),
        p->require_signed_decisions(), p->internal_approvals(), p->customer_approvals(),
        p->max_extensions(), Enum(p->emergency_access()), Us(p->emergency_access_duration()));
    p->set_etag(EtagOf(r[0].as<int64_t>()));
    // Every replica's grant view re-reads what its grants' coverage needs.
    w.exec_params("SELECT pg_notify($1, $2)", ChannelOf(ChangeTopic::kAccess),
                  absl::StrCat(kPolicyChanged, tenant));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::pair<std::string, std::string>> PgTenancyStore::Webhook(
    const std::string& tenant) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::pair<std::string, std::string>> {
    auto r = w.exec_params(
        "SELECT webhook_url, webhook_secret FROM lockbox_policies WHERE tenant_id = $1", tenant);
    if (r.empty()) return std::make_pair(std::string(), std::string());
    return std::make_pair(r[0][0].as<std::string>(), r[0][1].as<std::string>());
  });
}

absl::Status PgTenancyStore::SetWebhook(const std::string& tenant, const std::string& url,
                                        const std::string& secret) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "UPDATE lockbox_policies SET webhook_url = $2, webhook_secret = $3 WHERE tenant_id = $1",
        tenant, url, secret);
    return absl::OkStatus();
  });
}

absl::Status PgTenancyStore::InsertEnvironment(const std::string& tenant, const std::string& id,
                                               v1::Environment* e) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "INSERT INTO environments (tenant_id, id, display_name, managed, data_sources, "
        "create_time, update_time, version) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, 1)",
        tenant, id, e->display_name(), e->managed(), DataSourcesJson(*e), Us(e->create_time()),
        Us(e->update_time()));
    e->set_etag(EtagOf(1));
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::Environment> PgTenancyStore::GetEnvironment(const std::string& tenant,
                                                               const std::string& id,
                                                               bool for_update) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<v1::Environment> {
    auto r = w.exec_params(
        absl::StrCat("SELECT ", kEnvCols, " FROM environments WHERE tenant_id = $1 AND id = $2",
                     for_update ? " FOR UPDATE" : ""),
        tenant, id);
    if (r.empty()) return NotFound(ChildName(tenant, "environments", id));
    return ToEnvironment(r[0]);
  });
}

absl::Status PgTenancyStore::UpdateEnvironment(const std::string& tenant, const std::string& id,
                                               v1::Environment* e) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    auto r = w.exec_params1(
        "UPDATE environments SET display_name = $3, managed = $4, data_sources = $5::jsonb, "
        "update_time = $6, version = version + 1 WHERE tenant_id = $1 AND id = $2 "
        "RETURNING version",
        tenant, id, e->display_name(), e->managed(), DataSourcesJson(*e), Us(e->update_time()));
    e->set_etag(EtagOf(r[0].as<int64_t>()));
    w.exec_params("SELECT pg_notify($1, $2)", ChannelOf(ChangeTopic::kAccess),
                  absl::StrCat(kEnvironmentChanged, tenant, "/", id));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::Environment>> PgTenancyStore::ListEnvironments(const ListQuery& q) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::Environment>> {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kEnvCols, " FROM environments WHERE TRUE");
    AppendTenantScope(q, &p, &sql);
    // The keyset is the whole sort key, so pages across tenants neither
    // skip nor repeat.
    if (q.after) {
      absl::StrAppend(&sql, " AND (tenant_id, id) > (", p.Add(q.after->key), ", ",
                      p.Add(q.after->id), ")");
    }
    absl::StrAppend(&sql, " ORDER BY tenant_id, id LIMIT ", q.limit);
    return MapRows<v1::Environment>(Exec(w, sql, p), ToEnvironment);
  });
}

absl::Status PgTenancyStore::InsertRoleBinding(const std::string& id, const v1::RoleBinding& b) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    std::string tenant = b.tenant().empty() ? "" : IdOfName(b.tenant());
    w.exec_params(
        "INSERT INTO role_bindings (id, principal, role, tenant_id, email, create_time) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        id, b.principal(), b.role(), tenant, b.email(), Us(b.create_time()));
    PublishBindingsChanged(w);
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::RoleBinding> PgTenancyStore::GetRoleBinding(const std::string& id,
                                                               bool for_update) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<v1::RoleBinding> {
    auto r =
        w.exec_params(absl::StrCat("SELECT ", kBindingCols, " FROM role_bindings WHERE id = $1",
                                   for_update ? " FOR UPDATE" : ""),
                      id);
    if (r.empty()) return NotFound(absl::StrCat("roleBindings/", id));
    return ToBinding(r[0]);
  });
}

absl::Status PgTenancyStore::DeleteRoleBinding(const std::string& id) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params("DELETE FROM role_bindings WHERE id = $1", id);
    PublishBindingsChanged(w);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::RoleBinding>> PgTenancyStore::ListRoleBindings(const ListQuery& q) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::RoleBinding>> {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kBindingCols, " FROM role_bindings WHERE TRUE");
    AppendTenantScope(q, &p, &sql);
    static const std::map<std::string, Column> kColumns = {
        {"principal", {"principal", Column::Kind::kText}}, {"role", {"role", Column::Kind::kText}}};
    RETURN_IF_ERROR(AppendConditions(q, kColumns, &p, &sql));
    if (q.after) {
      absl::StrAppend(&sql, " AND (create_time, id) > (", p.Add(q.after->key), "::bigint, ",
                      p.Add(q.after->id), "::uuid)");
    }
    absl::StrAppend(&sql, " ORDER BY create_time, id LIMIT ", q.limit);
    return MapRows<v1::RoleBinding>(Exec(w, sql, p), ToBinding);
  });
}

absl::StatusOr<std::vector<Binding>> PgTenancyStore::BindingsOf(const std::string& principal) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<Binding>> {
    auto r =
        w.exec_params("SELECT role, tenant_id FROM role_bindings WHERE principal = $1", principal);
    std::vector<Binding> out;
    for (const auto& row : r) {
      std::optional<Role> role = ParseRole(row[0].as<std::string>());
      if (role) out.push_back(Binding{*role, row[1].as<std::string>()});
    }
    return out;
  });
}

absl::StatusOr<std::vector<std::string>> PgTenancyStore::PrincipalsWithRole(Role role) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<std::string>> {
    return FirstColumn(
        w.exec_params("SELECT principal FROM role_bindings WHERE role = $1 AND tenant_id = ''",
                      std::string(RoleName(role))));
  });
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
PgTenancyStore::TenantBindingsOfRole(Role role) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<std::pair<std::string, std::string>>> {
    auto r = w.exec_params(
        "SELECT principal, tenant_id FROM role_bindings WHERE role = $1 AND tenant_id <> ''",
        std::string(RoleName(role)));
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(r.size());
    for (const auto& row : r) out.emplace_back(row[0].as<std::string>(), row[1].as<std::string>());
    return out;
  });
}

absl::StatusOr<std::vector<std::string>> PgTenancyStore::LockBindingsOfRole(Role role) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<std::string>> {
    return FirstColumn(
        w.exec_params("SELECT id::text FROM role_bindings WHERE role = $1 AND tenant_id = '' "
                      "ORDER BY id FOR UPDATE",
                      std::string(RoleName(role))));
  });
}

absl::StatusOr<std::vector<std::string>> PgTenancyStore::ContactEmails(
    Role role, const std::string& tenant, const std::string& except_principal) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<std::string>> {
    return FirstColumn(
        w.exec_params("SELECT DISTINCT email FROM role_bindings WHERE role = $1 AND tenant_id = $2 "
                      "AND email <> '' AND principal <> $3 ORDER BY email",
                      std::string(RoleName(role)), tenant, except_principal));
  });
}

absl::StatusOr<std::vector<std::string>> PgTenancyStore::EmailsOf(const std::string& principal) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<std::string>> {
    return FirstColumn(w.exec_params(
        "SELECT DISTINCT email FROM role_bindings WHERE principal = $1 AND email <> '' "
        "ORDER BY email",
        principal));
  });
}

}  // namespace lockbox::postgres
