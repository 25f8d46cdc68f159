#include "server/store/postgres/grant_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/store/postgres/change_feed.h"
#include "server/store/postgres/sql.h"

namespace lockbox::postgres {
namespace {

constexpr char kGrantCols[] =
    "tenant_id, id, request_id, principal, environment_id, data_sources, "
    "start_time, expire_time, state, end_time, version, pinned_data_sources::text, "
    "customer_reviewed, extensions, emergency";
v1::Grant ToGrant(const pqxx::row& r) {
  v1::Grant g = FromJson<v1::Grant>(r[11].as<std::string>());
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
  g.set_customer_reviewed(r[12].as<bool>());
  for (absl::string_view ext : absl::StrSplit(r[13].as<std::string>(), ',', absl::SkipEmpty())) {
    g.add_extensions(ChildName(tenant, "accessRequests", ext));
  }
  g.set_emergency(r[14].as<bool>());
  return g;
}

std::string PinnedJson(const v1::Grant& grant) {
  v1::Grant only;
  *only.mutable_pinned_data_sources() = grant.pinned_data_sources();
  return Json(only);
}

// The approved extensions as stored: their request IDs, comma-separated.
std::string ExtensionIds(const v1::Grant& grant) {
  std::vector<std::string> ids;
  for (const std::string& name : grant.extensions()) ids.push_back(IdOfName(name));
  return absl::StrJoin(ids, ",");
}

// Delivered to every replica's grant view when the transaction commits.
void PublishGrantChanged(pqxx::work& w, const std::string& tenant, const std::string& id) {
  w.exec_params("SELECT pg_notify($1, $2)", ChannelOf(ChangeTopic::kAccess),
                GrantKey(tenant, id));
}

}  // namespace

absl::Status PgGrantStore::InsertGrant(const std::string& tenant, const std::string& id,
                                       v1::Grant* g) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "INSERT INTO grants (tenant_id, id, request_id, principal, environment_id, data_sources, "
        "start_time, expire_time, state, end_time, version, pinned_data_sources, "
        "customer_reviewed, extensions, emergency) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 1, $10::jsonb, $11, $12, $13)",
        tenant, id, IdOfName(g->access_request()), g->principal(), IdOfName(g->environment()),
        List(g->data_sources()), Us(g->start_time()), Us(g->expire_time()), Enum(g->state()),
        PinnedJson(*g), g->customer_reviewed(), ExtensionIds(*g), g->emergency());
    g->set_etag(EtagOf(1));
    PublishGrantChanged(w, tenant, id);
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::Grant> PgGrantStore::GetGrant(const std::string& tenant, const std::string& id,
                                                 bool for_update) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<v1::Grant> {
    auto r = w.exec_params(
        absl::StrCat("SELECT ", kGrantCols, " FROM grants WHERE tenant_id = $1 AND id = $2",
                     for_update ? " FOR UPDATE" : ""),
        tenant, id);
    if (r.empty()) return NotFound(ChildName(tenant, "grants", id));
    return ToGrant(r[0]);
  });
}

absl::Status PgGrantStore::UpdateGrant(const std::string& tenant, const std::string& id,
                                       v1::Grant* g) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    auto r = w.exec_params1(
        "UPDATE grants SET state = $3, end_time = $4, expire_time = $5, extensions = $6, "
        "version = version + 1 WHERE tenant_id = $1 AND id = $2 RETURNING version",
        tenant, id, Enum(g->state()), g->has_end_time() ? Us(g->end_time()) : "0",
        Us(g->expire_time()), ExtensionIds(*g));
    g->set_etag(EtagOf(r[0].as<int64_t>()));
    PublishGrantChanged(w, tenant, id);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::Grant>> PgGrantStore::ListGrants(const ListQuery& q) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::Grant>> {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kGrantCols, " FROM grants WHERE TRUE");
    AppendTenantScope(q, &p, &sql);
    if (!q.principal.empty()) absl::StrAppend(&sql, " AND principal = ", p.Add(q.principal));
    static const std::map<std::string, Column> kColumns = {
        {"state", {"state", Column::Kind::kGrantState}},
        {"environment", {"environment_id", Column::Kind::kEnvironment}},
        {"principal", {"principal", Column::Kind::kText}}};
    RETURN_IF_ERROR(AppendConditions(q, kColumns, &p, &sql));
    absl::StrAppend(&sql, KeysetDesc(q, "start_time", "id", "uuid", &p),
                    " ORDER BY start_time DESC, id DESC LIMIT ", q.limit);
    return MapRows<v1::Grant>(Exec(w, sql, p), ToGrant);
  });
}

absl::StatusOr<std::vector<v1::Grant>> PgGrantStore::ActiveGrants(
    const std::string& principal, const std::string& tenant, const std::string& environment_id) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::Grant>> {
    auto r = w.exec_params(absl::StrCat("SELECT ", kGrantCols,
                                        " FROM grants WHERE principal = $1 AND tenant_id = $2 "
                                        "AND environment_id = $3 AND state = $4::integer"),
                           principal, tenant, environment_id, Enum(v1::Grant::ACTIVE));
    return MapRows<v1::Grant>(r, ToGrant);
  });
}

absl::StatusOr<std::vector<v1::Grant>> PgGrantStore::AllActiveGrants(absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::Grant>> {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kGrantCols, " FROM grants WHERE ",
                                   StateCondition(RecordedStatesOfUnendedGrants(), now, &p));
    return MapRows<v1::Grant>(Exec(w, sql, p), ToGrant);
  });
}

absl::StatusOr<std::vector<v1::Grant>> PgGrantStore::GetGrantsByKey(
    const std::vector<std::string>& keys) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::Grant>> {
    std::vector<v1::Grant> out;
    for (const std::string& key : keys) {
      size_t slash = key.find('/');
      if (slash == std::string::npos) continue;
      auto r = w.exec_params(
          absl::StrCat("SELECT ", kGrantCols, " FROM grants WHERE tenant_id = $1 AND id = $2"),
          key.substr(0, slash), key.substr(slash + 1));
      if (!r.empty()) out.push_back(ToGrant(r[0]));
    }
    return out;
  });
}

absl::StatusOr<std::optional<ClaimedRow>> PgGrantStore::ClaimExpiredGrant(absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::optional<ClaimedRow>> {
    // Recorded open, read as expired: what time decided and nobody wrote.
    auto r = w.exec_params(
        "SELECT tenant_id, id FROM grants WHERE state = $1::integer AND expire_time <= $2 "
        "ORDER BY expire_time LIMIT 1 FOR UPDATE SKIP LOCKED",
        Enum(kGrantExpiry.open), Us(now));
    if (r.empty()) return std::optional<ClaimedRow>();
    return std::optional<ClaimedRow>(
        ClaimedRow{r[0][0].as<std::string>(), r[0][1].as<std::string>()});
  });
}

absl::StatusOr<std::vector<v1::Grant>> PgGrantStore::LockActiveEmergencyGrants(
    const std::string& tenant, const std::string& principal, absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::Grant>> {
    // A transaction-scoped advisory lock on a digest of the pair: the
    // second of two racing opens waits here, then sees the first's grant.
    w.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(10) || $2, 19))", tenant,
                  principal);
    Params p;
    std::string sql = absl::StrCat("SELECT ", kGrantCols,
                                   " FROM grants WHERE emergency AND tenant_id = ", p.Add(tenant),
                                   " AND principal = ", p.Add(principal), " AND ",
                                   StateCondition(RecordedStatesFor(v1::Grant::ACTIVE), now, &p));
    return MapRows<v1::Grant>(Exec(w, sql, p), ToGrant);
  });
}

}  // namespace lockbox::postgres
