#include "server/store/pg_store.h"

#include <google/protobuf/util/json_util.h>
#include <openssl/rand.h>

#include <chrono>
#include <map>
#include <pqxx/pqxx>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/domain/audit_chain.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/observe/metrics.h"

namespace lockbox {
namespace {

constexpr int kMaxAttempts = 4;
// The database's clock in microseconds: what outbox scheduling runs on.
#define LOCKBOX_DB_NOW_US "(extract(epoch from clock_timestamp()) * 1000000)::bigint"

// The NOTIFY channel that carries the IDs of changed access requests.
constexpr char kRequestChannel[] = "lockbox_access_requests";
// The NOTIFY channel that carries changed grants and role bindings.
constexpr char kAccessChannel[] = "lockbox_access";

const char* ChannelOf(ChangeTopic topic) {
  return topic == ChangeTopic::kAccessRequests ? kRequestChannel : kAccessChannel;
}
// Any constant works; it only has to be the same for every replica.
constexpr int64_t kMigrationLockKey = 0x6c6f636b626f78;  // "lockbox"

// A retryable conflict produced inside a transaction (not by PostgreSQL).
constexpr char kRetryReason[] = "LOCKBOX_RETRY";

// The one place libpqxx exceptions become statuses.
absl::Status ToStatus(const std::exception& e) {
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                 "the database connection was lost during commit; the outcome "
                 "is unknown: read the resource to see whether it changed");
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                 "the database is unavailable");
  }
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) {
    return Error(absl::StatusCode::kAborted, reason::kConflict,
                 "a concurrent change conflicted; try again");
  }
  if (dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr) {
    return Error(absl::StatusCode::kAlreadyExists, reason::kAlreadyExists,
                 "already exists");
  }
  if (dynamic_cast<const pqxx::foreign_key_violation*>(&e) != nullptr) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNotFound,
                 "a resource it refers to does not exist");
  }
  // The text reaches the server's log only; callers see "internal error".
  return Error(absl::StatusCode::kInternal, reason::kInternal,
               absl::StrCat("internal database error: ", e.what()));
}

bool Retryable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kAborted &&
         (ReasonOf(s) == reason::kConflict || ReasonOf(s) == kRetryReason);
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

template <typename M>
M FromJson(const std::string& json) {
  M m;
  (void)google::protobuf::util::JsonStringToMessage(json, &m);
  return m;
}

std::string Us(absl::Time t) { return absl::StrCat(absl::ToUnixMicros(t)); }
std::string Us(const google::protobuf::Timestamp& t) { return Us(FromProto(t)); }
std::string Us(const google::protobuf::Duration& d) {
  return absl::StrCat(absl::ToInt64Microseconds(FromProto(d)));
}
google::protobuf::Timestamp Ts(const pqxx::field& f) {
  return ToProto(absl::FromUnixMicros(f.as<int64_t>()));
}
google::protobuf::Duration Dur(const pqxx::field& f) {
  return ToProto(absl::Microseconds(f.as<int64_t>()));
}
std::string List(const google::protobuf::RepeatedPtrField<std::string>& items) {
  return absl::StrJoin(items, ",");
}
void SetList(const pqxx::field& f, google::protobuf::RepeatedPtrField<std::string>* out) {
  std::string s = f.as<std::string>();
  if (s.empty()) return;
  for (absl::string_view part : absl::StrSplit(s, ',')) out->Add(std::string(part));
}

// Positional parameters for statements whose shape depends on the query.
class Params {
 public:
  std::string Add(std::string value) {
    values_.push_back(std::move(value));
    return absl::StrCat("$", values_.size());
  }
  const std::vector<std::string>& values() const { return values_; }

 private:
  std::vector<std::string> values_;
};

pqxx::result Exec(pqxx::work& w, const std::string& sql, const Params& p) {
  return w.exec_params(sql, pqxx::prepare::make_dynamic_params(p.values()));
}

// How a filter field maps to SQL.
struct Column {
  enum class Kind {
    kText, kTime, kRequestState, kGrantState, kStage, kEnvironment, kNotificationState, kChannel
  };
  std::string expr;
  Kind kind;
};

absl::Status AppendConditions(const ListQuery& q,
                              const std::map<std::string, Column>& columns,
                              Params* p, std::string* sql) {
  for (const Condition& c : q.conditions) {
    auto it = columns.find(c.field);
    if (it == columns.end()) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFilter,
                   absl::StrCat("filter: cannot filter on ", c.field));
    }
    const Column& col = it->second;
    std::string value = c.value;
    switch (col.kind) {
      case Column::Kind::kTime:
        value = Us(c.time);
        break;
      case Column::Kind::kRequestState: {
        v1::AccessRequest::State s = v1::AccessRequest::STATE_UNSPECIFIED;
        v1::AccessRequest::State_Parse(c.value, &s);
        value = absl::StrCat(static_cast<int>(s));
        // Implied by the read-time state, and lets the planner use the
        // index of open requests however long the tenant's history.
        if (c.op == Condition::Op::kEq && s == v1::AccessRequest::PENDING) {
          absl::StrAppend(sql, " AND state = 1");
        }
        break;
      }
      case Column::Kind::kGrantState: {
        v1::Grant::State s = v1::Grant::STATE_UNSPECIFIED;
        v1::Grant::State_Parse(c.value, &s);
        value = absl::StrCat(static_cast<int>(s));
        break;
      }
      case Column::Kind::kStage: {
        v1::AccessRequest::Stage s = v1::AccessRequest::STAGE_UNSPECIFIED;
        v1::AccessRequest::Stage_Parse(c.value, &s);
        value = absl::StrCat(static_cast<int>(s));
        break;
      }
      case Column::Kind::kNotificationState: {
        v1::Notification::State s = v1::Notification::STATE_UNSPECIFIED;
        v1::Notification::State_Parse(c.value, &s);
        value = absl::StrCat(static_cast<int>(s));
        break;
      }
      case Column::Kind::kChannel: {
        v1::Notification::Channel ch = v1::Notification::CHANNEL_UNSPECIFIED;
        v1::Notification::Channel_Parse(c.value, &ch);
        value = absl::StrCat(static_cast<int>(ch));
        break;
      }
      case Column::Kind::kEnvironment:
        if (absl::StartsWith(value, "tenants/")) {
          auto env = ParseChildName(value, "environments", "filter");
          if (!env.ok()) return env.status();
          std::string cond = absl::StrCat("(tenant_id = ", p->Add(env->tenant),
                                          " AND ", col.expr, " = ", p->Add(env->id), ")");
          absl::StrAppend(sql, " AND ", c.op == Condition::Op::kNe ? "NOT " : "", cond);
          continue;
        }
        break;
      case Column::Kind::kText:
        break;
    }
    absl::StrAppend(sql, " AND ", col.expr, " ", OpSql(c.op), " ", p->Add(value));
  }
  return absl::OkStatus();
}

bool HasField(const ListQuery& q, absl::string_view field) {
  for (const Condition& c : q.conditions) {
    if (c.field == field) return true;
  }
  return false;
}

void AppendTenantScope(const ListQuery& q, Params* p, std::string* sql) {
  if (!q.tenants) return;
  if (q.tenants->empty()) {
    absl::StrAppend(sql, " AND FALSE");
    return;
  }
  std::vector<std::string> refs;
  for (const std::string& t : *q.tenants) refs.push_back(p->Add(t));
  absl::StrAppend(sql, " AND tenant_id IN (", absl::StrJoin(refs, ", "), ")");
}

// --- Row mapping ---------------------------------------------------------

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
    "webhook_secret <> ''";
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

constexpr char kRequestCols[] =
    "tenant_id, id, environment_id, data_sources, reason, support_ticket_id, "
    "justification, requester, create_time, expire_time, access_duration_us, "
    "state, stage, decisions::text, grant_id, update_time, version";
v1::AccessRequest ToRequest(const pqxx::row& r) {
  v1::AccessRequest a = FromJson<v1::AccessRequest>(r[13].as<std::string>());
  std::string tenant = r[0].as<std::string>();
  a.set_name(ChildName(tenant, "accessRequests", r[1].as<std::string>()));
  a.set_environment(ChildName(tenant, "environments", r[2].as<std::string>()));
  SetList(r[3], a.mutable_data_sources());
  a.set_reason(static_cast<v1::AccessRequest::Reason>(r[4].as<int>()));
  a.set_support_ticket_id(r[5].as<std::string>());
  a.set_justification(r[6].as<std::string>());
  a.set_requester(r[7].as<std::string>());
  *a.mutable_create_time() = Ts(r[8]);
  *a.mutable_expire_time() = Ts(r[9]);
  *a.mutable_access_duration() = Dur(r[10]);
  a.set_state(static_cast<v1::AccessRequest::State>(r[11].as<int>()));
  a.set_stage(static_cast<v1::AccessRequest::Stage>(r[12].as<int>()));
  std::string grant = r[14].as<std::string>();
  if (!grant.empty()) a.set_grant(ChildName(tenant, "grants", grant));
  *a.mutable_update_time() = Ts(r[15]);
  a.set_etag(EtagOf(r[16].as<int64_t>()));
  a.set_display_status(DisplayStatus(a.state(), a.stage()));
  return a;
}
std::string DecisionsJson(const v1::AccessRequest& a) {
  v1::AccessRequest only;
  *only.mutable_decisions() = a.decisions();
  return Json(only);
}
std::string IdOf(const std::string& name) { return name.substr(name.rfind('/') + 1); }

constexpr char kGrantCols[] =
    "tenant_id, id, request_id, principal, environment_id, data_sources, "
    "start_time, expire_time, state, end_time, version";
v1::Grant ToGrant(const pqxx::row& r) {
  v1::Grant g;
  std::string tenant = r[0].as<std::string>();
  g.set_name(ChildName(tenant, "grants", r[1].as<std::string>()));
  g.set_access_request(ChildName(tenant, "accessRequests", r[2].as<std::string>()));
  g.set_principal(r[3].as<std::string>());
  g.set_environment(ChildName(tenant, "environments", r[4].as<std::string>()));
  SetList(r[5], g.mutable_data_sources());
  *g.mutable_start_time() = Ts(r[6]);
  *g.mutable_expire_time() = Ts(r[7]);
  g.set_state(static_cast<v1::Grant::State>(r[8].as<int>()));
  if (r[9].as<int64_t>() != 0) *g.mutable_end_time() = Ts(r[9]);
  g.set_etag(EtagOf(r[10].as<int64_t>()));
  return g;
}

constexpr char kAuditCols[] =
    "tenant_id, sequence, event_time, actor, via, action, resource, access_request, "
    "request_create_time, operator_user_id, request_state, support_ticket_id, "
    "request_expire_time, access_expire_time, environment, justification, "
    "details::text, previous_hash, hash";
std::string AuditName(const std::string& tenant, int64_t sequence) {
  return tenant.empty() ? absl::StrCat("auditEvents/", sequence)
                        : absl::StrCat("tenants/", tenant, "/auditEvents/", sequence);
}
v1::AuditEvent ToAudit(const pqxx::row& r) {
  v1::AuditEvent e = FromJson<v1::AuditEvent>(r[16].as<std::string>());
  e.set_tenant(r[0].as<std::string>());
  e.set_sequence(r[1].as<int64_t>());
  e.set_name(AuditName(e.tenant(), e.sequence()));
  *e.mutable_event_time() = Ts(r[2]);
  e.set_actor(r[3].as<std::string>());
  e.set_via(r[4].as<std::string>());
  e.set_action(r[5].as<std::string>());
  e.set_resource(r[6].as<std::string>());
  e.set_access_request(r[7].as<std::string>());
  if (r[8].as<int64_t>() != 0) *e.mutable_request_create_time() = Ts(r[8]);
  e.set_operator_user_id(r[9].as<std::string>());
  e.set_request_state(static_cast<v1::AccessRequest::State>(r[10].as<int>()));
  e.set_support_ticket_id(r[11].as<std::string>());
  if (r[12].as<int64_t>() != 0) *e.mutable_request_expire_time() = Ts(r[12]);
  if (r[13].as<int64_t>() != 0) *e.mutable_access_expire_time() = Ts(r[13]);
  e.set_environment(r[14].as<std::string>());
  e.set_justification(r[15].as<std::string>());
  e.set_previous_hash(r[17].as<std::string>());
  e.set_hash(r[18].as<std::string>());
  return e;
}
std::string OptionalUs(bool has, const google::protobuf::Timestamp& t) {
  return has ? Us(t) : "0";
}

template <typename T, typename F>
std::vector<T> MapRows(const pqxx::result& rows, F f) {
  std::vector<T> out;
  out.reserve(rows.size());
  for (const auto& row : rows) out.push_back(f(row));
  return out;
}

std::string KeysetDesc(const ListQuery& q, const char* key, const char* id,
                       const char* id_type, Params* p) {
  if (!q.after) return "";
  return absl::StrCat(" AND (", key, ", ", id, ") < (", p->Add(q.after->key),
                      "::bigint, ", p->Add(q.after->id), "::", id_type, ")");
}

// --- The transaction ---------------------------------------------------------

class PgTransaction final : public Transaction {
 public:
  PgTransaction(pqxx::work& w, const AuditSigner* signer, int checkpoint_every)
      : w_(w), signer_(signer), checkpoint_every_(checkpoint_every) {}

  // The audit events this transaction appended, for after its commit.
  const std::vector<v1::AuditEvent>& appended() const { return appended_; }

  absl::StatusOr<std::optional<ClaimedRow>> Claim(const std::string& sql, const std::string& now) {
    auto r = w_.exec_params(sql, now);
    if (r.empty()) return std::optional<ClaimedRow>();
    return std::optional<ClaimedRow>(ClaimedRow{r[0][0].as<std::string>(), r[0][1].as<std::string>()});
  }

  absl::Status InsertTenant(const v1::Tenant& t) override {
    w_.exec_params("INSERT INTO tenants (id, display_name, create_time) VALUES ($1, $2, $3)",
                   IdOf(t.name()), t.display_name(), Us(t.create_time()));
    return absl::OkStatus();
  }

  absl::StatusOr<v1::Tenant> GetTenant(const std::string& id) override {
    auto r = w_.exec_params(absl::StrCat("SELECT ", kTenantCols, " FROM tenants WHERE id = $1"), id);
    if (r.empty()) return NotFound(TenantName(id));
    return ToTenant(r[0]);
  }

  absl::StatusOr<std::vector<v1::Tenant>> ListTenants(const ListQuery& q) override {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kTenantCols, " FROM tenants WHERE TRUE");
    if (q.tenants) {
      std::vector<std::string> refs;
      for (const std::string& t : *q.tenants) refs.push_back(p.Add(t));
      absl::StrAppend(&sql, refs.empty() ? " AND FALSE"
                                         : absl::StrCat(" AND id IN (", absl::StrJoin(refs, ", "), ")"));
    }
    if (q.after) absl::StrAppend(&sql, " AND id > ", p.Add(q.after->id));
    absl::StrAppend(&sql, " ORDER BY id LIMIT ", q.limit);
    return MapRows<v1::Tenant>(Exec(w_, sql, p), ToTenant);
  }

  absl::Status InsertPolicy(const std::string& tenant, v1::LockboxPolicy* p) override {
    w_.exec_params(
        "INSERT INTO lockbox_policies (tenant_id, enabled, request_ttl_us, access_duration_us, "
        "notification_emails, allow_revocation, update_time, version) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, 1)",
        tenant, p->enabled(), Us(p->request_ttl()), Us(p->access_duration()),
        List(p->notification_emails()), p->allow_revocation(), Us(p->update_time()));
    p->set_etag(EtagOf(1));
    return absl::OkStatus();
  }

  absl::StatusOr<v1::LockboxPolicy> GetPolicy(const std::string& tenant, bool for_update) override {
    auto r = w_.exec_params(absl::StrCat("SELECT ", kPolicyCols,
                                         " FROM lockbox_policies WHERE tenant_id = $1",
                                         for_update ? " FOR UPDATE" : ""),
                            tenant);
    if (r.empty()) return NotFound(TenantName(tenant));
    return ToPolicy(r[0]);
  }

  absl::Status UpdatePolicy(const std::string& tenant, v1::LockboxPolicy* p) override {
    auto r = w_.exec_params1(
        "UPDATE lockbox_policies SET enabled = $2, request_ttl_us = $3, access_duration_us = $4, "
        "notification_emails = $5, allow_revocation = $6, update_time = $7, version = version + 1 "
        "WHERE tenant_id = $1 RETURNING version",
        tenant, p->enabled(), Us(p->request_ttl()), Us(p->access_duration()),
        List(p->notification_emails()), p->allow_revocation(), Us(p->update_time()));
    p->set_etag(EtagOf(r[0].as<int64_t>()));
    return absl::OkStatus();
  }

  absl::Status InsertEnvironment(const std::string& tenant, const std::string& id,
                                 v1::Environment* e) override {
    w_.exec_params(
        "INSERT INTO environments (tenant_id, id, display_name, managed, data_sources, "
        "create_time, update_time, version) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, 1)",
        tenant, id, e->display_name(), e->managed(), DataSourcesJson(*e), Us(e->create_time()),
        Us(e->update_time()));
    e->set_etag(EtagOf(1));
    return absl::OkStatus();
  }

  absl::StatusOr<v1::Environment> GetEnvironment(const std::string& tenant, const std::string& id,
                                                 bool for_update) override {
    auto r = w_.exec_params(absl::StrCat("SELECT ", kEnvCols,
                                         " FROM environments WHERE tenant_id = $1 AND id = $2",
                                         for_update ? " FOR UPDATE" : ""),
                            tenant, id);
    if (r.empty()) return NotFound(ChildName(tenant, "environments", id));
    return ToEnvironment(r[0]);
  }

  absl::Status UpdateEnvironment(const std::string& tenant, const std::string& id,
                                 v1::Environment* e) override {
    auto r = w_.exec_params1(
        "UPDATE environments SET display_name = $3, managed = $4, data_sources = $5::jsonb, "
        "update_time = $6, version = version + 1 WHERE tenant_id = $1 AND id = $2 "
        "RETURNING version",
        tenant, id, e->display_name(), e->managed(), DataSourcesJson(*e), Us(e->update_time()));
    e->set_etag(EtagOf(r[0].as<int64_t>()));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::Environment>> ListEnvironments(const ListQuery& q) override {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kEnvCols, " FROM environments WHERE TRUE");
    AppendTenantScope(q, &p, &sql);
    if (q.after) absl::StrAppend(&sql, " AND id > ", p.Add(q.after->id));
    absl::StrAppend(&sql, " ORDER BY tenant_id, id LIMIT ", q.limit);
    return MapRows<v1::Environment>(Exec(w_, sql, p), ToEnvironment);
  }

  absl::Status InsertRoleBinding(const std::string& id, const v1::RoleBinding& b) override {
    std::string tenant = b.tenant().empty() ? "" : IdOf(b.tenant());
    w_.exec_params(
        "INSERT INTO role_bindings (id, principal, role, tenant_id, email, create_time) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        id, b.principal(), b.role(), tenant, b.email(), Us(b.create_time()));
    w_.exec_params("SELECT pg_notify($1, 'bindings')", kAccessChannel);
    return absl::OkStatus();
  }

  absl::StatusOr<v1::RoleBinding> GetRoleBinding(const std::string& id, bool for_update) override {
    auto r = w_.exec_params(absl::StrCat("SELECT ", kBindingCols,
                                         " FROM role_bindings WHERE id = $1",
                                         for_update ? " FOR UPDATE" : ""),
                            id);
    if (r.empty()) return NotFound(absl::StrCat("roleBindings/", id));
    return ToBinding(r[0]);
  }

  absl::Status DeleteRoleBinding(const std::string& id) override {
    w_.exec_params("DELETE FROM role_bindings WHERE id = $1", id);
    w_.exec_params("SELECT pg_notify($1, 'bindings')", kAccessChannel);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::RoleBinding>> ListRoleBindings(const ListQuery& q) override {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kBindingCols, " FROM role_bindings WHERE TRUE");
    AppendTenantScope(q, &p, &sql);
    static const std::map<std::string, Column> kColumns = {
        {"principal", {"principal", Column::Kind::kText}},
        {"role", {"role", Column::Kind::kText}}};
    RETURN_IF_ERROR(AppendConditions(q, kColumns, &p, &sql));
    if (q.after) {
      absl::StrAppend(&sql, " AND (create_time, id) > (", p.Add(q.after->key), "::bigint, ",
                      p.Add(q.after->id), "::uuid)");
    }
    absl::StrAppend(&sql, " ORDER BY create_time, id LIMIT ", q.limit);
    return MapRows<v1::RoleBinding>(Exec(w_, sql, p), ToBinding);
  }

  absl::StatusOr<std::vector<Binding>> BindingsOf(const std::string& principal) override {
    auto r = w_.exec_params("SELECT role, tenant_id FROM role_bindings WHERE principal = $1",
                            principal);
    std::vector<Binding> out;
    for (const auto& row : r) {
      std::optional<Role> role = ParseRole(row[0].as<std::string>());
      if (role) out.push_back(Binding{*role, row[1].as<std::string>()});
    }
    return out;
  }

  absl::StatusOr<std::vector<std::string>> PrincipalsWithRole(Role role) override {
    auto r = w_.exec_params(
        "SELECT principal FROM role_bindings WHERE role = $1 AND tenant_id = ''",
        std::string(RoleName(role)));
    std::vector<std::string> out;
    for (const auto& row : r) out.push_back(row[0].as<std::string>());
    return out;
  }

  absl::Status InsertAccessRequest(const std::string& tenant, const std::string& id,
                                   v1::AccessRequest* a) override {
    w_.exec_params(
        "INSERT INTO access_requests (tenant_id, id, environment_id, data_sources, reason, "
        "support_ticket_id, justification, requester, create_time, expire_time, "
        "access_duration_us, state, stage, decisions, grant_id, update_time, version) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb, $15, $16, 1)",
        tenant, id, IdOf(a->environment()), List(a->data_sources()), static_cast<int>(a->reason()),
        a->support_ticket_id(), a->justification(), a->requester(), Us(a->create_time()),
        Us(a->expire_time()), Us(a->access_duration()), static_cast<int>(a->state()),
        static_cast<int>(a->stage()), DecisionsJson(*a), a->grant().empty() ? "" : IdOf(a->grant()),
        Us(a->update_time()));
    a->set_etag(EtagOf(1));
    return absl::OkStatus();
  }

  absl::StatusOr<v1::AccessRequest> GetAccessRequest(const std::string& tenant,
                                                     const std::string& id,
                                                     bool for_update) override {
    auto r = w_.exec_params(absl::StrCat("SELECT ", kRequestCols,
                                         " FROM access_requests WHERE tenant_id = $1 AND id = $2",
                                         for_update ? " FOR UPDATE" : ""),
                            tenant, id);
    if (r.empty()) return NotFound(ChildName(tenant, "accessRequests", id));
    return ToRequest(r[0]);
  }

  absl::Status UpdateAccessRequest(const std::string& tenant, const std::string& id,
                                   v1::AccessRequest* a) override {
    auto r = w_.exec_params1(
        "UPDATE access_requests SET state = $3, stage = $4, decisions = $5::jsonb, "
        "grant_id = $6, update_time = $7, version = version + 1 "
        "WHERE tenant_id = $1 AND id = $2 RETURNING version",
        tenant, id, static_cast<int>(a->state()), static_cast<int>(a->stage()),
        DecisionsJson(*a), a->grant().empty() ? "" : IdOf(a->grant()), Us(a->update_time()));
    a->set_etag(EtagOf(r[0].as<int64_t>()));
    // Delivered to every replica's watchers when this transaction commits.
    w_.exec_params("SELECT pg_notify($1, $2)", kRequestChannel, id);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::AccessRequest>> ListAccessRequests(const ListQuery& q) override {
    Params p;
    // Typed in place: an unused untyped parameter would be an error.
    std::string now = HasField(q, "state") ? p.Add(Us(q.now)) : "0";
    std::string sql = absl::StrCat("SELECT ", kRequestCols, " FROM access_requests WHERE TRUE");
    AppendTenantScope(q, &p, &sql);
    if (!q.principal.empty()) absl::StrAppend(&sql, " AND requester = ", p.Add(q.principal));
    const std::map<std::string, Column> columns = {
        {"state", {absl::StrCat("(CASE WHEN state = 1 AND expire_time <= ", now,
                                "::bigint THEN 4 ELSE state END)"),
                   Column::Kind::kRequestState}},
        {"stage", {"stage", Column::Kind::kStage}},
        {"environment", {"environment_id", Column::Kind::kEnvironment}},
        {"requester", {"requester", Column::Kind::kText}},
        {"support_ticket_id", {"support_ticket_id", Column::Kind::kText}},
        {"create_time", {"create_time", Column::Kind::kTime}}};
    RETURN_IF_ERROR(AppendConditions(q, columns, &p, &sql));
    absl::StrAppend(&sql, KeysetDesc(q, "create_time", "id", "uuid", &p),
                    " ORDER BY create_time DESC, id DESC LIMIT ", q.limit);
    return MapRows<v1::AccessRequest>(Exec(w_, sql, p), ToRequest);
  }

  absl::StatusOr<std::vector<v1::AccessRequest>> GetAccessRequestsById(
      const std::vector<std::string>& ids) override {
    if (ids.empty()) return std::vector<v1::AccessRequest>();
    auto r = w_.exec_params(absl::StrCat("SELECT ", kRequestCols,
                                         " FROM access_requests WHERE id = ANY($1::uuid[])"),
                            absl::StrCat("{", absl::StrJoin(ids, ","), "}"));
    return MapRows<v1::AccessRequest>(r, ToRequest);
  }

  absl::Status InsertGrant(const std::string& tenant, const std::string& id,
                           v1::Grant* g) override {
    w_.exec_params(
        "INSERT INTO grants (tenant_id, id, request_id, principal, environment_id, data_sources, "
        "start_time, expire_time, state, end_time, version) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 1)",
        tenant, id, IdOf(g->access_request()), g->principal(), IdOf(g->environment()),
        List(g->data_sources()), Us(g->start_time()), Us(g->expire_time()),
        static_cast<int>(g->state()));
    g->set_etag(EtagOf(1));
    w_.exec_params("SELECT pg_notify($1, $2)", kAccessChannel, absl::StrCat(tenant, "/", id));
    return absl::OkStatus();
  }

  absl::StatusOr<v1::Grant> GetGrant(const std::string& tenant, const std::string& id,
                                     bool for_update) override {
    auto r = w_.exec_params(absl::StrCat("SELECT ", kGrantCols,
                                         " FROM grants WHERE tenant_id = $1 AND id = $2",
                                         for_update ? " FOR UPDATE" : ""),
                            tenant, id);
    if (r.empty()) return NotFound(ChildName(tenant, "grants", id));
    return ToGrant(r[0]);
  }

  absl::Status UpdateGrant(const std::string& tenant, const std::string& id,
                           v1::Grant* g) override {
    auto r = w_.exec_params1(
        "UPDATE grants SET state = $3, end_time = $4, version = version + 1 "
        "WHERE tenant_id = $1 AND id = $2 RETURNING version",
        tenant, id, static_cast<int>(g->state()), g->has_end_time() ? Us(g->end_time()) : "0");
    g->set_etag(EtagOf(r[0].as<int64_t>()));
    w_.exec_params("SELECT pg_notify($1, $2)", kAccessChannel, absl::StrCat(tenant, "/", id));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::Grant>> ListGrants(const ListQuery& q) override {
    Params p;
    // Typed in place: an unused untyped parameter would be an error.
    std::string now = HasField(q, "state") ? p.Add(Us(q.now)) : "0";
    std::string sql = absl::StrCat("SELECT ", kGrantCols, " FROM grants WHERE TRUE");
    AppendTenantScope(q, &p, &sql);
    if (!q.principal.empty()) absl::StrAppend(&sql, " AND principal = ", p.Add(q.principal));
    const std::map<std::string, Column> columns = {
        {"state", {absl::StrCat("(CASE WHEN state = 1 AND expire_time <= ", now,
                                "::bigint THEN 2 ELSE state END)"),
                   Column::Kind::kGrantState}},
        {"environment", {"environment_id", Column::Kind::kEnvironment}},
        {"principal", {"principal", Column::Kind::kText}}};
    RETURN_IF_ERROR(AppendConditions(q, columns, &p, &sql));
    absl::StrAppend(&sql, KeysetDesc(q, "start_time", "id", "uuid", &p),
                    " ORDER BY start_time DESC, id DESC LIMIT ", q.limit);
    return MapRows<v1::Grant>(Exec(w_, sql, p), ToGrant);
  }

  absl::StatusOr<std::vector<v1::Grant>> ActiveGrants(const std::string& principal,
                                                      const std::string& tenant,
                                                      const std::string& environment_id) override {
    auto r = w_.exec_params(absl::StrCat("SELECT ", kGrantCols,
                                         " FROM grants WHERE principal = $1 AND tenant_id = $2 "
                                         "AND environment_id = $3 AND state = 1"),
                            principal, tenant, environment_id);
    return MapRows<v1::Grant>(r, ToGrant);
  }

  absl::StatusOr<std::vector<v1::Grant>> AllActiveGrants(absl::Time now) override {
    auto r = w_.exec_params(absl::StrCat("SELECT ", kGrantCols,
                                         " FROM grants WHERE state = 1 AND expire_time > $1"),
                            Us(now));
    return MapRows<v1::Grant>(r, ToGrant);
  }

  absl::StatusOr<std::vector<v1::Grant>> GetGrantsByKey(
      const std::vector<std::string>& keys) override {
    std::vector<v1::Grant> out;
    for (const std::string& key : keys) {
      size_t slash = key.find('/');
      if (slash == std::string::npos) continue;
      auto r = w_.exec_params(absl::StrCat("SELECT ", kGrantCols,
                                           " FROM grants WHERE tenant_id = $1 AND id = $2"),
                              key.substr(0, slash), key.substr(slash + 1));
      if (!r.empty()) out.push_back(ToGrant(r[0]));
    }
    return out;
  }

  absl::Status AppendAuditEvent(v1::AuditEvent* e) override {
    // Lock (or create) the chain head: appends to one tenant queue here.
    w_.exec_params(
        "INSERT INTO audit_heads (tenant_id, sequence, hash) VALUES ($1, 0, '') "
        "ON CONFLICT (tenant_id) DO NOTHING",
        e->tenant());
    auto head = w_.exec_params1(
        "SELECT sequence, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE", e->tenant());
    e->set_sequence(head[0].as<int64_t>() + 1);
    e->set_previous_hash(head[1].as<std::string>());
    e->set_name(AuditName(e->tenant(), e->sequence()));
    e->set_hash(ChainHash(e->previous_hash(), *e));
    v1::AuditEvent details_only;
    *details_only.mutable_details() = e->details();
    w_.exec_params(
        "INSERT INTO audit_events (tenant_id, sequence, event_time, actor, via, action, resource, "
        "access_request, request_create_time, operator_user_id, request_state, "
        "support_ticket_id, request_expire_time, access_expire_time, environment, "
        "justification, details, previous_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "$9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, $18, $19)",
        e->tenant(), e->sequence(), Us(e->event_time()), e->actor(), e->via(), e->action(),
        e->resource(), e->access_request(),
        OptionalUs(e->has_request_create_time(), e->request_create_time()),
        e->operator_user_id(), static_cast<int>(e->request_state()), e->support_ticket_id(),
        OptionalUs(e->has_request_expire_time(), e->request_expire_time()),
        OptionalUs(e->has_access_expire_time(), e->access_expire_time()), e->environment(),
        e->justification(), Json(details_only), e->previous_hash(), e->hash());
    w_.exec_params("UPDATE audit_heads SET sequence = $2, hash = $3 WHERE tenant_id = $1",
                   e->tenant(), e->sequence(), e->hash());
    if (signer_ != nullptr && checkpoint_every_ > 0 && e->sequence() % checkpoint_every_ == 0) {
      v1::AuditCheckpoint c;
      c.set_tenant(e->tenant());
      c.set_sequence(e->sequence());
      c.set_head_hash(e->hash());
      *c.mutable_sign_time() = e->event_time();
      RETURN_IF_ERROR(signer_->Sign(&c));
      RETURN_IF_ERROR(InsertCheckpoint(c));
    }
    appended_.push_back(*e);
    return absl::OkStatus();
  }

  absl::StatusOr<OperationalCounts> CountOperational(absl::Time now) override {
    OperationalCounts out;
    // Each count walks a partial index of the rows in that state only.
    for (const auto& row :
         w_.exec("SELECT stage, count(*) FROM access_requests WHERE state = 1 GROUP BY stage")) {
      out.pending_by_stage[row[0].as<int>()] = row[1].as<int64_t>();
    }
    out.active_grants = w_.exec_params1(
        "SELECT count(*) FROM grants WHERE state = 1 AND expire_time > $1", Us(now))[0]
                            .as<int64_t>();
    out.outbox_pending = w_.exec1("SELECT count(*) FROM outbox WHERE state = 1")[0].as<int64_t>();
    out.outbox_failed = w_.exec1("SELECT count(*) FROM outbox WHERE state = 3")[0].as<int64_t>();
    auto due = w_.exec1(
        "SELECT least((SELECT min(expire_time) FROM access_requests WHERE state = 1), "
        "(SELECT min(expire_time) FROM grants WHERE state = 1))");
    if (!due[0].is_null()) out.earliest_due = absl::FromUnixMicros(due[0].as<int64_t>());
    return out;
  }

  absl::StatusOr<std::pair<int64_t, std::string>> LockAuditHead(const std::string& tenant) override {
    auto r = w_.exec_params(
        "SELECT sequence, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE", tenant);
    if (r.empty()) return std::make_pair(int64_t{0}, std::string());
    return std::make_pair(r[0][0].as<int64_t>(), r[0][1].as<std::string>());
  }

  absl::Status InsertCheckpoint(const v1::AuditCheckpoint& c) override {
    w_.exec_params(
        "INSERT INTO audit_checkpoints (tenant_id, sequence, head_hash, sign_time, key_id, "
        "signature) VALUES ($1, $2, $3, $4, $5, $6)",
        c.tenant(), c.sequence(), c.head_hash(), Us(c.sign_time()), c.key_id(),
        absl::Base64Escape(c.signature()));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::AuditCheckpoint>> ListCheckpoints(const std::string& tenant,
                                                                   int64_t after,
                                                                   int limit) override {
    auto r = w_.exec_params(
        "SELECT tenant_id, sequence, head_hash, sign_time, key_id, signature FROM "
        "audit_checkpoints WHERE tenant_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
        tenant, after, limit);
    return MapRows<v1::AuditCheckpoint>(r, [](const pqxx::row& row) {
      v1::AuditCheckpoint c;
      c.set_tenant(row[0].as<std::string>());
      c.set_sequence(row[1].as<int64_t>());
      c.set_name(c.tenant().empty()
                     ? absl::StrCat("auditCheckpoints/", c.sequence())
                     : absl::StrCat("tenants/", c.tenant(), "/auditCheckpoints/", c.sequence()));
      c.set_head_hash(row[2].as<std::string>());
      *c.mutable_sign_time() = Ts(row[3]);
      c.set_key_id(row[4].as<std::string>());
      std::string sig;
      absl::Base64Unescape(row[5].as<std::string>(), &sig);
      c.set_signature(sig);
      return c;
    });
  }

  absl::StatusOr<std::vector<std::string>> LogsDueForCheckpoint(absl::Time signed_before,
                                                              int limit) override {
    auto r = w_.exec_params(
        "SELECT h.tenant_id FROM audit_heads h LEFT JOIN LATERAL (SELECT sequence, sign_time "
        "FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id ORDER BY sequence DESC "
        "LIMIT 1) last ON true WHERE h.sequence > COALESCE(last.sequence, 0) "
        "AND COALESCE(last.sign_time, 0) < $1 LIMIT $2",
        Us(signed_before), limit);
    std::vector<std::string> out;
    for (const auto& row : r) out.push_back(row[0].as<std::string>());
    return out;
  }

  absl::StatusOr<std::vector<v1::AuditEvent>> ListAuditEvents(const std::string& tenant,
                                                              const ListQuery& q) override {
    Params p;
    std::string sql =
        absl::StrCat("SELECT ", kAuditCols, " FROM audit_events WHERE tenant_id = ", p.Add(tenant));
    static const std::map<std::string, Column> kColumns = {
        {"action", {"action", Column::Kind::kText}},
        {"actor", {"actor", Column::Kind::kText}},
        {"access_request", {"access_request", Column::Kind::kText}},
        {"environment", {"environment", Column::Kind::kText}},
        {"support_ticket_id", {"support_ticket_id", Column::Kind::kText}},
        {"event_time", {"event_time", Column::Kind::kTime}}};
    RETURN_IF_ERROR(AppendConditions(q, kColumns, &p, &sql));
    if (q.after) absl::StrAppend(&sql, " AND sequence > ", p.Add(q.after->key), "::bigint");
    absl::StrAppend(&sql, " ORDER BY sequence LIMIT ", q.limit);
    return MapRows<v1::AuditEvent>(Exec(w_, sql, p), ToAudit);
  }

  absl::StatusOr<std::vector<v1::AuditEvent>> ReadAuditLog(const std::string& tenant,
                                                           int64_t after, int limit) override {
    auto r = w_.exec_params(absl::StrCat("SELECT ", kAuditCols,
                                         " FROM audit_events WHERE tenant_id = $1 AND sequence > $2 "
                                         "ORDER BY sequence LIMIT $3"),
                            tenant, after, limit);
    return MapRows<v1::AuditEvent>(r, ToAudit);
  }

  absl::StatusOr<std::vector<std::string>> ContactEmails(
      Role role, const std::string& tenant, const std::string& except_principal) override {
    auto r = w_.exec_params(
        "SELECT DISTINCT email FROM role_bindings WHERE role = $1 AND tenant_id = $2 "
        "AND email <> '' AND principal <> $3 ORDER BY email",
        std::string(RoleName(role)), tenant, except_principal);
    std::vector<std::string> out;
    for (const auto& row : r) out.push_back(row[0].as<std::string>());
    return out;
  }

  absl::StatusOr<std::vector<std::string>> EmailsOf(const std::string& principal) override {
    auto r = w_.exec_params(
        "SELECT DISTINCT email FROM role_bindings WHERE principal = $1 AND email <> '' "
        "ORDER BY email",
        principal);
    std::vector<std::string> out;
    for (const auto& row : r) out.push_back(row[0].as<std::string>());
    return out;
  }

  absl::StatusOr<std::pair<std::string, std::string>> Webhook(const std::string& tenant) override {
    auto r = w_.exec_params(
        "SELECT webhook_url, webhook_secret FROM lockbox_policies WHERE tenant_id = $1", tenant);
    if (r.empty()) return std::make_pair(std::string(), std::string());
    return std::make_pair(r[0][0].as<std::string>(), r[0][1].as<std::string>());
  }

  absl::Status SetWebhook(const std::string& tenant, const std::string& url,
                          const std::string& secret) override {
    w_.exec_params(
        "UPDATE lockbox_policies SET webhook_url = $2, webhook_secret = $3 WHERE tenant_id = $1",
        tenant, url, secret);
    return absl::OkStatus();
  }

  absl::Status EnqueueMessages(const std::vector<OutboundMessage>& messages,
                               absl::Time now) override {
    for (const OutboundMessage& m : messages) {
      w_.exec_params(
          "INSERT INTO outbox (id, tenant_id, channel, recipient, event, resource, subject, body, "
          "state, attempts, next_attempt_time, claimed_until, last_error, create_time, "
          "deliver_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 0, " LOCKBOX_DB_NOW_US
          ", 0, '', $9, 0)",
          m.id, m.tenant, static_cast<int>(m.channel), m.recipient, m.event, m.resource,
          m.subject, m.body, Us(now));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::Notification>> ListNotifications(const ListQuery& q) override {
    Params p;
    std::string sql = absl::StrCat(
        "SELECT id, tenant_id, channel, recipient, event, resource, subject, state, attempts, "
        "last_error, create_time, next_attempt_time, deliver_time FROM outbox WHERE TRUE");
    AppendTenantScope(q, &p, &sql);
    static const std::map<std::string, Column> kColumns = {
        {"state", {"state", Column::Kind::kNotificationState}},
        {"channel", {"channel", Column::Kind::kChannel}},
        {"event", {"event", Column::Kind::kText}},
        {"resource", {"resource", Column::Kind::kText}}};
    RETURN_IF_ERROR(AppendConditions(q, kColumns, &p, &sql));
    absl::StrAppend(&sql, KeysetDesc(q, "create_time", "id", "uuid", &p),
                    " ORDER BY create_time DESC, id DESC LIMIT ", q.limit);
    return MapRows<v1::Notification>(Exec(w_, sql, p), [](const pqxx::row& r) {
      v1::Notification n;
      std::string tenant = r[1].as<std::string>();
      n.set_name(tenant.empty() ? absl::StrCat("notifications/", r[0].as<std::string>())
                                : ChildName(tenant, "notifications", r[0].as<std::string>()));
      n.set_idempotency_key(r[0].as<std::string>());
      n.set_channel(static_cast<v1::Notification::Channel>(r[2].as<int>()));
      n.set_recipient(r[3].as<std::string>());
      n.set_event(r[4].as<std::string>());
      n.set_resource(r[5].as<std::string>());
      n.set_subject(r[6].as<std::string>());
      n.set_state(static_cast<v1::Notification::State>(r[7].as<int>()));
      n.set_attempts(r[8].as<int>());
      n.set_last_error(r[9].as<std::string>());
      *n.mutable_create_time() = Ts(r[10]);
      if (n.state() == v1::Notification::PENDING) *n.mutable_next_attempt_time() = Ts(r[11]);
      if (r[12].as<int64_t>() != 0) *n.mutable_deliver_time() = Ts(r[12]);
      return n;
    });
  }

  absl::StatusOr<std::vector<Delivery>> ClaimDeliveries(absl::Duration lease,
                                                        int limit) override {
    auto r = w_.exec_params(
        "UPDATE outbox o SET claimed_until = " LOCKBOX_DB_NOW_US " + $1, "
        "attempts = o.attempts + 1 "
        "FROM (SELECT id FROM outbox WHERE state = 1 AND next_attempt_time <= " LOCKBOX_DB_NOW_US
        "      AND claimed_until <= " LOCKBOX_DB_NOW_US " ORDER BY next_attempt_time LIMIT $2 "
        "      FOR UPDATE SKIP LOCKED) due "
        "WHERE o.id = due.id "
        "RETURNING o.id, o.tenant_id, o.channel, o.recipient, o.event, o.resource, o.subject, "
        "o.body, o.attempts, COALESCE((SELECT webhook_secret FROM lockbox_policies p "
        "WHERE p.tenant_id = o.tenant_id), '')",
        absl::ToInt64Microseconds(lease), limit);
    std::vector<Delivery> out;
    for (const auto& row : r) {
      Delivery d;
      d.message = OutboundMessage{row[0].as<std::string>(), row[1].as<std::string>(),
                                  static_cast<v1::Notification::Channel>(row[2].as<int>()),
                                  row[3].as<std::string>(), row[4].as<std::string>(),
                                  row[5].as<std::string>(), row[6].as<std::string>(),
                                  row[7].as<std::string>()};
      d.attempts = row[8].as<int>();
      d.webhook_secret = row[9].as<std::string>();
      out.push_back(std::move(d));
    }
    return out;
  }

  absl::Status RecordAttempt(const std::string& id, bool delivered, const std::string& error,
                             bool give_up, absl::Duration retry_after, absl::Time now) override {
    if (delivered) {
      w_.exec_params(
          "UPDATE outbox SET state = 2, deliver_time = $2, claimed_until = 0, last_error = '' "
          "WHERE id = $1",
          id, Us(now));
    } else {
      w_.exec_params(
          "UPDATE outbox SET state = $2, next_attempt_time = " LOCKBOX_DB_NOW_US " + $3, "
          "claimed_until = 0, last_error = $4 WHERE id = $1",
          id, give_up ? 3 : 1, absl::ToInt64Microseconds(retry_after), error.substr(0, 1000));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<ClaimedRow>> ClaimExpiredRequest(absl::Time now) override {
    return Claim(
        "SELECT tenant_id, id FROM access_requests WHERE state = 1 AND expire_time <= $1 "
        "ORDER BY expire_time LIMIT 1 FOR UPDATE SKIP LOCKED",
        Us(now));
  }

  absl::StatusOr<std::optional<ClaimedRow>> ClaimExpiredGrant(absl::Time now) override {
    return Claim(
        "SELECT tenant_id, id FROM grants WHERE state = 1 AND expire_time <= $1 "
        "ORDER BY expire_time LIMIT 1 FOR UPDATE SKIP LOCKED",
        Us(now));
  }

  absl::StatusOr<std::optional<ClaimedRow>> ClaimReminder(absl::Time now,
                                                          absl::Time expiring_before) override {
    auto r = w_.exec_params(
        "SELECT tenant_id, id FROM access_requests WHERE state = 1 AND NOT reminder_sent "
        "AND expire_time <= $2 AND expire_time > $1 "
        "ORDER BY expire_time LIMIT 1 FOR UPDATE SKIP LOCKED",
        Us(now), Us(expiring_before));
    if (r.empty()) return std::optional<ClaimedRow>();
    return std::optional<ClaimedRow>(ClaimedRow{r[0][0].as<std::string>(), r[0][1].as<std::string>()});
  }

  absl::Status MarkReminded(const std::string& tenant, const std::string& id) override {
    w_.exec_params(
        "UPDATE access_requests SET reminder_sent = true WHERE tenant_id = $1 AND id = $2",
        tenant, id);
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<IdempotencyRecord>> GetIdempotencyRecord(
      const std::string& caller, const std::string& request_id) override {
    auto r = w_.exec_params(
        "SELECT method, request_hash, encode(response, 'base64') FROM idempotency_keys "
        "WHERE caller = $1 AND request_id = $2",
        caller, request_id);
    if (r.empty()) return std::optional<IdempotencyRecord>();
    IdempotencyRecord rec{r[0][0].as<std::string>(), r[0][1].as<std::string>(), ""};
    std::string b64 = r[0][2].as<std::string>();
    b64.erase(std::remove(b64.begin(), b64.end(), '\n'), b64.end());
    absl::Base64Unescape(b64, &rec.response);
    return std::optional<IdempotencyRecord>(std::move(rec));
  }

  absl::Status PutIdempotencyRecord(const std::string& caller, const std::string& request_id,
                                    const IdempotencyRecord& rec, absl::Time now) override {
    auto r = w_.exec_params(
        "INSERT INTO idempotency_keys (caller, request_id, method, request_hash, response, "
        "create_time) VALUES ($1, $2, $3, $4, decode($5, 'base64'), $6) "
        "ON CONFLICT DO NOTHING",
        caller, request_id, rec.method, rec.request_hash, absl::Base64Escape(rec.response),
        Us(now));
    if (r.affected_rows() == 0) {
      // A concurrent call with the same request_id committed first: run
      // again, and the retry returns that call's response.
      return Error(absl::StatusCode::kAborted, kRetryReason, "request_id race");
    }
    return absl::OkStatus();
  }

 private:
  pqxx::work& w_;
  const AuditSigner* signer_;
  int checkpoint_every_;
  std::vector<v1::AuditEvent> appended_;
};

}  // namespace

// --- Migrations and the pool ---------------------------------------------------

namespace {
absl::Status Migrate(pqxx::connection& c) {
  {
    // A session-level lock: it outlives this statement's nontransaction.
    pqxx::nontransaction lock(c);
    lock.exec_params("SELECT pg_advisory_lock($1)", kMigrationLockKey);
  }
  absl::Status result = absl::OkStatus();
  try {
    {
      pqxx::work w(c);
      w.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
             "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
      w.commit();
    }
    for (const Migration& m : EmbeddedMigrations()) {
      pqxx::work w(c);
      auto done = w.exec_params("SELECT 1 FROM schema_migrations WHERE version = $1", m.version);
      if (!done.empty()) continue;
      w.exec(m.sql);
      w.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                    m.name);
      w.commit();
    }
  } catch (const pqxx::sql_error& e) {
    result = Error(absl::StatusCode::kInternal, reason::kInternal,
                   absl::StrCat("migration failed: ", e.what()));
  }
  {
    pqxx::nontransaction unlock(c);
    unlock.exec_params("SELECT pg_advisory_unlock($1)", kMigrationLockKey);
  }
  return result;
}
}  // namespace

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Create(PgStoreOptions options) {
  if (options.pool_size < 1) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                 "pool size must be at least 1");
  }
  std::unique_ptr<PgStore> store(new PgStore(std::move(options)));
  try {
    auto conn = std::make_unique<pqxx::connection>(store->options_.database_url);
    RETURN_IF_ERROR(Migrate(*conn));
    std::lock_guard<std::mutex> lock(store->mu_);
    store->idle_.push_back(std::move(conn));
    store->open_ = 1;
  } catch (const std::exception& e) {
    return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                 absl::StrCat("cannot connect to the database: ", e.what()));
  }
  return store;
}

PgStore::~PgStore() = default;

absl::StatusOr<std::unique_ptr<pqxx::connection>> PgStore::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  auto deadline = std::chrono::steady_clock::now() +
                  absl::ToChronoMilliseconds(options_.acquire_timeout);
  while (idle_.empty() && open_ >= options_.pool_size) {
    if (available_.wait_until(lock, deadline) == std::cv_status::timeout &&
        idle_.empty() && open_ >= options_.pool_size) {
      return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                   "no database connection became free in time");
    }
  }
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    return conn;
  }
  ++open_;
  bool replacing = lost_ > 0;
  if (replacing) --lost_;
  lock.unlock();
  try {
    auto conn = std::make_unique<pqxx::connection>(options_.database_url);
    if (replacing) Metrics::Get().DatabaseReconnect("pool");
    return conn;
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> relock(mu_);
    --open_;
    if (replacing) ++lost_;
    available_.notify_one();
    Metrics::Get().DatabaseError("unavailable");
    return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                 "the database is unavailable");
  }
}

void PgStore::Release(std::unique_ptr<pqxx::connection> conn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (conn && conn->is_open()) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
    ++lost_;  // The next connection opened replaces it.
  }
  available_.notify_one();
}

absl::Status PgStore::RunInTransaction(const std::function<absl::Status(Transaction&)>& fn) {
  absl::Status status;
  for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
    ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> conn, Acquire());
    bool retry_safe = false;
    try {
      pqxx::work w(*conn);
      PgTransaction tx(w, signer_, checkpoint_every_);
      status = fn(tx);
      if (status.ok()) {
        w.commit();
        if (options_.on_committed_event) {
          for (const v1::AuditEvent& e : tx.appended()) options_.on_committed_event(e);
        }
      } else {
        w.abort();
      }
    } catch (const pqxx::in_doubt_error& e) {
      status = ToStatus(e);  // Never retried blindly.
      conn.reset();
      Metrics::Get().DatabaseError("in_doubt");
    } catch (const pqxx::broken_connection& e) {
      status = ToStatus(e);
      retry_safe = true;  // Lost before the commit: nothing was written.
      conn.reset();
      Metrics::Get().DatabaseError("unavailable");
    } catch (const std::exception& e) {
      status = ToStatus(e);
      if (status.code() == absl::StatusCode::kInternal) Metrics::Get().DatabaseError("internal");
    }
    Release(std::move(conn));
    if (status.ok() || !(Retryable(status) || retry_safe) || attempt == kMaxAttempts) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * attempt));
  }
  if (ReasonOf(status) == kRetryReason) {
    return Error(absl::StatusCode::kAborted, reason::kConflict,
                 "a concurrent call with the same request_id is in progress; try again");
  }
  return status;
}

absl::StatusOr<std::string> PgStore::SharedSecret(const std::string& name,
                                                  const std::string& initial) {
  std::string fresh = initial;
  if (fresh.empty()) {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) {
      return Error(absl::StatusCode::kInternal, reason::kInternal, "no randomness");
    }
    fresh.assign(reinterpret_cast<char*>(bytes), sizeof bytes);
  }
  std::string value;
  ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> conn, Acquire());
  absl::Status status;
  try {
    pqxx::work w(*conn);
    w.exec_params(
        "INSERT INTO server_secrets (name, value) VALUES ($1, decode($2, 'base64')) "
        "ON CONFLICT (name) DO NOTHING",
        name, absl::Base64Escape(fresh));
    auto r = w.exec_params1("SELECT encode(value, 'hex') FROM server_secrets WHERE name = $1",
                            name);
    value = absl::HexStringToBytes(r[0].as<std::string>());
    w.commit();
  } catch (const std::exception& e) {
    status = ToStatus(e);
    conn.reset();
  }
  Release(std::move(conn));
  if (!status.ok()) return status;
  return value;
}

namespace {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Notifications final : public pqxx::notification_receiver {
 public:
  Notifications(pqxx::connection_base& c, const char* channel,
                const std::function<void(const std::string&)>& on_change)
      : pqxx::notification_receiver(c, channel), on_change_(on_change) {}
  void operator()(const std::string& payload, int) override { on_change_(payload); }

 private:
  const std::function<void(const std::string&)>& on_change_;
};

}  // namespace

void PgChangeFeed::Run(const std::function<void(const std::string&)>& on_change,
                       const std::function<void()>& on_gap) {
  int backoff_ms = 100;
  while (!stopped_) {
    try {
      pqxx::connection conn(database_url_);
      Notifications receiver(conn, ChannelOf(topic_), on_change);
      // LISTEN is active now; anything before it may have been missed
      // (on the first connection too: readers load what exists after this).
      on_gap();
      alive_ns_ = SteadyNowNs();
      backoff_ms = 100;
      int64_t probe_ns = absl::ToInt64Nanoseconds(probe_);
      while (!stopped_) {
        conn.await_notification(0, 100000);  // Wakes every 100 ms to see Stop().
        if (SteadyNowNs() - alive_ns_ >= probe_ns) {
          // A lost connection that nobody closed shows itself only when
          // used. LISTEN again is a no-op that keeps the connection's
          // last query recognisable in pg_stat_activity.
          pqxx::nontransaction probe(conn);
          probe.exec(absl::StrCat("LISTEN ", ChannelOf(topic_)));
          probe.commit();
          alive_ns_ = SteadyNowNs();
        }
      }
      alive_ns_ = 0;
      return;
    } catch (const std::exception& e) {
      // A listening connection lost is counted once; failed attempts to
      // connect again are errors.
      if (alive_ns_.exchange(0) != 0) {
        Metrics::Get().DatabaseReconnect(
            topic_ == ChangeTopic::kAccessRequests ? "listen_requests" : "listen_access");
      } else {
        Metrics::Get().DatabaseError("unavailable");
      }
      on_gap();  // Readers stop trusting what they hold while we reconnect.
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = std::min(backoff_ms * 2, 2000);
    }
  }
}

bool PgChangeFeed::AliveWithin(absl::Duration within) const {
  int64_t alive = alive_ns_.load();
  return alive != 0 && SteadyNowNs() - alive <= absl::ToInt64Nanoseconds(within);
}

bool PgStore::Ping() {
  auto conn = Acquire();
  if (!conn.ok()) return false;
  bool ok = true;
  try {
    pqxx::nontransaction n(**conn);
    n.exec("SELECT 1");
  } catch (const std::exception&) {
    ok = false;
    conn->reset();
  }
  Release(std::move(*conn));
  return ok;
}

}  // namespace lockbox
