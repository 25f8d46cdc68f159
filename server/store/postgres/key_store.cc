#include "server/store/postgres/key_store.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/store/postgres/change_feed.h"
#include "server/store/postgres/sql.h"

namespace lockbox::postgres {
namespace {

constexpr char kCollection[] = "encryptionPolicies";

constexpr char kPolicyCols[] =
    "tenant_id, id, display_name, key_uri, state, state_reason, protects_lockbox_data, "
    "primary_version, create_time, update_time, version";
v1::EncryptionPolicy ToPolicy(const pqxx::row& r) {
  v1::EncryptionPolicy p;
  p.set_name(ChildName(r[0].as<std::string>(), kCollection, r[1].as<std::string>()));
  p.set_display_name(r[2].as<std::string>());
  p.set_key_uri(r[3].as<std::string>());
  p.set_state(static_cast<v1::EncryptionPolicy::State>(r[4].as<int>()));
  p.set_state_reason(r[5].as<std::string>());
  p.set_protects_lockbox_data(r[6].as<bool>());
  p.set_primary_version(r[7].as<int32_t>());
  *p.mutable_create_time() = Ts(r[8]);
  *p.mutable_update_time() = Ts(r[9]);
  p.set_etag(EtagOf(r[10].as<int64_t>()));
  return p;
}

constexpr char kVersionCols[] = "version, key_uri, state, create_time";
v1::KeyVersion ToVersion(const pqxx::row& r) {
  v1::KeyVersion v;
  v.set_version(r[0].as<int32_t>());
  v.set_key_uri(r[1].as<std::string>());
  v.set_state(static_cast<v1::KeyVersion::State>(r[2].as<int>()));
  *v.mutable_create_time() = Ts(r[3]);
  return v;
}

// The environments and versions, which live in their own tables.
void Complete(pqxx::work& w, const std::string& tenant, const std::string& id,
              v1::EncryptionPolicy* p) {
  for (const auto& row : w.exec_params(
           "SELECT environment_id FROM policy_environments WHERE tenant_id = $1 AND "
           "policy_id = $2 ORDER BY environment_id",
           tenant, id)) {
    p->add_environments(row[0].as<std::string>());
  }
  for (const auto& row : w.exec_params(absl::StrCat("SELECT ", kVersionCols,
                                                    " FROM key_versions WHERE tenant_id = $1 AND "
                                                    "policy_id = $2 ORDER BY version"),
                                       tenant, id)) {
    *p->add_key_versions() = ToVersion(row);
  }
}

// The policy's environments become exactly `p`'s. A unique violation (an
// environment in another policy) is ALREADY_EXISTS; a missing environment
// FAILED_PRECONDITION.
void WriteEnvironments(pqxx::work& w, const std::string& tenant, const std::string& id,
                       const v1::EncryptionPolicy& p) {
  w.exec_params("DELETE FROM policy_environments WHERE tenant_id = $1 AND policy_id = $2", tenant,
                id);
  for (const std::string& env : p.environments()) {
    w.exec_params(
        "INSERT INTO policy_environments (tenant_id, environment_id, policy_id) "
        "VALUES ($1, $2, $3)",
        tenant, env, id);
  }
}

// Delivered to every replica's key ring when the transaction commits.
void PublishKeysChanged(pqxx::work& w, const std::string& tenant) {
  w.exec_params("SELECT pg_notify($1, $2)", ChannelOf(ChangeTopic::kKeys), tenant);
}

}  // namespace

absl::Status PgKeyStore::InsertPolicy(const std::string& tenant, v1::EncryptionPolicy* p) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    std::string id = IdOfName(p->name());
    w.exec_params(
        "INSERT INTO encryption_policies (tenant_id, id, display_name, key_uri, state, "
        "state_reason, protects_lockbox_data, primary_version, create_time, update_time, "
        "version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1)",
        tenant, id, p->display_name(), p->key_uri(), Enum(p->state()), p->state_reason(),
        p->protects_lockbox_data(), p->primary_version(), Us(p->create_time()),
        Us(p->update_time()));
    WriteEnvironments(w, tenant, id, *p);
    p->set_etag(EtagOf(1));
    PublishKeysChanged(w, tenant);
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::EncryptionPolicy> PgKeyStore::GetPolicy(const std::string& tenant,
                                                           const std::string& policy_id,
                                                           bool for_update) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<v1::EncryptionPolicy> {
    auto r = w.exec_params(absl::StrCat("SELECT ", kPolicyCols,
                                        " FROM encryption_policies WHERE tenant_id = $1 AND id = $2",
                                        for_update ? " FOR UPDATE" : ""),
                           tenant, policy_id);
    if (r.empty()) return NotFound(ChildName(tenant, kCollection, policy_id));
    v1::EncryptionPolicy p = ToPolicy(r[0]);
    Complete(w, tenant, policy_id, &p);
    return p;
  });
}

absl::StatusOr<std::vector<v1::EncryptionPolicy>> PgKeyStore::ListPolicies(
    const std::string& tenant, const ListQuery& q) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::EncryptionPolicy>> {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kPolicyCols,
                                   " FROM encryption_policies WHERE tenant_id = ", p.Add(tenant));
    if (q.after) absl::StrAppend(&sql, " AND id > ", p.Add(q.after->id));
    absl::StrAppend(&sql, " ORDER BY id LIMIT ", q.limit);
    std::vector<v1::EncryptionPolicy> out = MapRows<v1::EncryptionPolicy>(Exec(w, sql, p), ToPolicy);
    for (v1::EncryptionPolicy& policy : out) Complete(w, tenant, IdOfName(policy.name()), &policy);
    return out;
  });
}

absl::Status PgKeyStore::UpdatePolicy(const std::string& tenant, v1::EncryptionPolicy* p) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    std::string id = IdOfName(p->name());
    auto r = w.exec_params1(
        "UPDATE encryption_policies SET display_name = $3, key_uri = $4, state = $5, "
        "state_reason = $6, protects_lockbox_data = $7, primary_version = $8, "
        "update_time = $9, version = version + 1 WHERE tenant_id = $1 AND id = $2 "
        "RETURNING version",
        tenant, id, p->display_name(), p->key_uri(), Enum(p->state()), p->state_reason(),
        p->protects_lockbox_data(), p->primary_version(), Us(p->update_time()));
    WriteEnvironments(w, tenant, id, *p);
    p->set_etag(EtagOf(r[0].as<int64_t>()));
    PublishKeysChanged(w, tenant);
    return absl::OkStatus();
  });
}

absl::Status PgKeyStore::InsertKeyVersion(const StoredKeyVersion& v) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "INSERT INTO key_versions (tenant_id, policy_id, version, key_uri, state, "
        "wrapped_policy_key, wrapped_data_key, create_time) "
        "VALUES ($1, $2, $3, $4, $5, decode($6, 'base64'), decode($7, 'base64'), $8)",
        v.tenant, v.policy_id, v.version.version(), v.version.key_uri(),
        Enum(v.version.state()), absl::Base64Escape(v.wrapped_policy_key),
        absl::Base64Escape(v.wrapped_data_key), Us(v.version.create_time()));
    PublishKeysChanged(w, v.tenant);
    return absl::OkStatus();
  });
}

absl::StatusOr<StoredKeyVersion> PgKeyStore::GetKeyVersion(const std::string& tenant,
                                                           const std::string& policy_id,
                                                           int32_t version) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<StoredKeyVersion> {
    auto r = w.exec_params(
        absl::StrCat("SELECT ", kVersionCols,
                     ", encode(wrapped_policy_key, 'base64'), encode(wrapped_data_key, 'base64') "
                     "FROM key_versions WHERE tenant_id = $1 AND policy_id = $2 AND version = $3"),
        tenant, policy_id, version);
    if (r.empty()) {
      return NotFound(absl::StrCat(ChildName(tenant, kCollection, policy_id), " version ", version));
    }
    StoredKeyVersion out;
    out.tenant = tenant;
    out.policy_id = policy_id;
    out.version = ToVersion(r[0]);
    // encode() breaks base64 into lines of 76; Base64Unescape skips them.
    if (!absl::Base64Unescape(r[0][4].as<std::string>(), &out.wrapped_policy_key) ||
        !absl::Base64Unescape(r[0][5].as<std::string>(), &out.wrapped_data_key)) {
      return Error(absl::StatusCode::kInternal, reason::kInternal,
                   "a stored wrapped key does not decode");
    }
    return out;
  });
}

absl::Status PgKeyStore::SetKeyVersionState(const std::string& tenant,
                                            const std::string& policy_id, int32_t version,
                                            v1::KeyVersion::State state) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    auto r = w.exec_params(
        "UPDATE key_versions SET state = $4 WHERE tenant_id = $1 AND policy_id = $2 AND "
        "version = $3",
        tenant, policy_id, version, Enum(state));
    if (r.affected_rows() == 0) {
      return NotFound(absl::StrCat(ChildName(tenant, kCollection, policy_id), " version ", version));
    }
    PublishKeysChanged(w, tenant);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<v1::EncryptionPolicy>> PgKeyStore::PolicyCovering(
    const std::string& tenant, const std::string& environment_id) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::optional<v1::EncryptionPolicy>> {
    auto r = w.exec_params(absl::StrCat("SELECT ", kPolicyCols,
                                        " FROM encryption_policies WHERE tenant_id = $1 AND id = "
                                        "(SELECT policy_id FROM policy_environments "
                                        "WHERE tenant_id = $1 AND environment_id = $2)"),
                           tenant, environment_id);
    if (r.empty()) return std::optional<v1::EncryptionPolicy>();
    v1::EncryptionPolicy p = ToPolicy(r[0]);
    Complete(w, tenant, IdOfName(p.name()), &p);
    return std::optional<v1::EncryptionPolicy>(std::move(p));
  });
}

absl::StatusOr<std::optional<v1::EncryptionPolicy>> PgKeyStore::LockboxDataPolicy(
    const std::string& tenant) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::optional<v1::EncryptionPolicy>> {
    auto r = w.exec_params(absl::StrCat("SELECT ", kPolicyCols,
                                        " FROM encryption_policies WHERE tenant_id = $1 "
                                        "AND protects_lockbox_data"),
                           tenant);
    if (r.empty()) return std::optional<v1::EncryptionPolicy>();
    v1::EncryptionPolicy p = ToPolicy(r[0]);
    Complete(w, tenant, IdOfName(p.name()), &p);
    return std::optional<v1::EncryptionPolicy>(std::move(p));
  });
}

absl::StatusOr<std::vector<ProbedKey>> PgKeyStore::ProbedKeys() {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<ProbedKey>> {
    std::vector<ProbedKey> out;
    for (const auto& row : w.exec_params(
             "SELECT v.tenant_id, v.policy_id, v.version, v.key_uri, p.state "
             "FROM key_versions v JOIN encryption_policies p "
             "ON p.tenant_id = v.tenant_id AND p.id = v.policy_id "
             "WHERE v.state = $1::integer AND p.state <> $2::integer "
             "ORDER BY v.tenant_id, v.policy_id, v.version",
             Enum(v1::KeyVersion::ENABLED), Enum(v1::EncryptionPolicy::DISABLED))) {
      ProbedKey k;
      k.tenant = row[0].as<std::string>();
      k.policy_id = row[1].as<std::string>();
      k.version = row[2].as<int32_t>();
      k.key_uri = row[3].as<std::string>();
      k.policy_state = static_cast<v1::EncryptionPolicy::State>(row[4].as<int>());
      out.push_back(std::move(k));
    }
    return out;
  });
}

}  // namespace lockbox::postgres
