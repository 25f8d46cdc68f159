#include "server/store/postgres/request_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/store/postgres/change_feed.h"
#include "server/store/postgres/sql.h"

namespace lockbox::postgres {
namespace {

constexpr char kRequestCols[] =
    "tenant_id, id, environment_id, data_sources, reason, support_ticket_id, "
    "justification, requester, create_time, expire_time, access_duration_us, "
    "state, stage, decisions::text, grant_id, update_time, version, start_time, incident_id, "
    "extends_grant, internal_approvals_required, customer_approvals_required, "
    "coalesce(emergency_review::text, '')";
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
  if (r[17].as<int64_t>() != 0) *a.mutable_start_time() = Ts(r[17]);
  a.set_incident_id(r[18].as<std::string>());
  std::string extends = r[19].as<std::string>();
  if (!extends.empty()) a.set_extends_grant(ChildName(tenant, "grants", extends));
  a.set_internal_approvals_required(r[20].as<int>());
  a.set_customer_approvals_required(r[21].as<int>());
  std::string review = r[22].as<std::string>();
  if (!review.empty()) *a.mutable_emergency_review() = FromJson<v1::EmergencyReview>(review);
  a.set_display_status(DisplayStatus(a.state(), a.stage()));
  return a;
}

// The start as stored: 0 when the request asked for none.
std::string StartUs(const v1::AccessRequest& a) {
  return a.has_start_time() ? Us(a.start_time()) : "0";
}

// The emergency review as stored: its JSON ('' is NULL: none), its state
// and due time as columns for the sweeps.
std::string ReviewJson(const v1::AccessRequest& a) {
  return a.has_emergency_review() ? Json(a.emergency_review()) : "";
}
std::string ReviewDueUs(const v1::AccessRequest& a) {
  return a.has_emergency_review() && a.emergency_review().has_due_time()
             ? Us(a.emergency_review().due_time())
             : "0";
}

std::string DecisionsJson(const v1::AccessRequest& a) {
  v1::AccessRequest only;
  *only.mutable_decisions() = a.decisions();
  return Json(only);
}

std::optional<ClaimedRow> FirstClaimed(const pqxx::result& r) {
  if (r.empty()) return std::nullopt;
  return ClaimedRow{r[0][0].as<std::string>(), r[0][1].as<std::string>()};
}

}  // namespace

absl::Status PgRequestStore::InsertAccessRequest(const std::string& tenant, const std::string& id,
                                                 v1::AccessRequest* a) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "INSERT INTO access_requests (tenant_id, id, environment_id, data_sources, reason, "
        "support_ticket_id, justification, requester, create_time, expire_time, "
        "access_duration_us, state, stage, decisions, grant_id, update_time, version, "
        "start_time, incident_id, extends_grant, internal_approvals_required, "
        "customer_approvals_required, emergency_review, review_state, review_due_time) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb, $15, $16, 1, "
        "$17, $18, $19, $20, $21, NULLIF($22, '')::jsonb, $23, $24)",
        tenant, id, IdOfName(a->environment()), List(a->data_sources()), Enum(a->reason()),
        a->support_ticket_id(), a->justification(), a->requester(), Us(a->create_time()),
        Us(a->expire_time()), Us(a->access_duration()), Enum(a->state()), Enum(a->stage()),
        DecisionsJson(*a), a->grant().empty() ? "" : IdOfName(a->grant()), Us(a->update_time()),
        StartUs(*a), a->incident_id(), a->extends_grant().empty() ? "" : IdOfName(a->extends_grant()),
        a->internal_approvals_required(), a->customer_approvals_required(), ReviewJson(*a),
        Enum(a->emergency_review().state()), ReviewDueUs(*a));
    a->set_etag(EtagOf(1));
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::AccessRequest> PgRequestStore::GetAccessRequest(const std::string& tenant,
                                                                   const std::string& id,
                                                                   bool for_update) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<v1::AccessRequest> {
    auto r = w.exec_params(absl::StrCat("SELECT ", kRequestCols,
                                        " FROM access_requests WHERE tenant_id = $1 AND id = $2",
                                        for_update ? " FOR UPDATE" : ""),
                           tenant, id);
    if (r.empty()) return NotFound(ChildName(tenant, "accessRequests", id));
    return ToRequest(r[0]);
  });
}

absl::Status PgRequestStore::UpdateAccessRequest(const std::string& tenant, const std::string& id,
                                                 v1::AccessRequest* a) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    auto r = w.exec_params1(
        "UPDATE access_requests SET state = $3, stage = $4, decisions = $5::jsonb, "
        "grant_id = $6, update_time = $7, start_time = $8, "
        "emergency_review = NULLIF($9, '')::jsonb, review_state = $10, review_due_time = $11, "
        "internal_approvals_required = $12, customer_approvals_required = $13, "
        "version = version + 1 "
        "WHERE tenant_id = $1 AND id = $2 RETURNING version",
        tenant, id, Enum(a->state()), Enum(a->stage()), DecisionsJson(*a),
        a->grant().empty() ? "" : IdOfName(a->grant()), Us(a->update_time()), StartUs(*a),
        ReviewJson(*a), Enum(a->emergency_review().state()), ReviewDueUs(*a),
        a->internal_approvals_required(), a->customer_approvals_required());
    a->set_etag(EtagOf(r[0].as<int64_t>()));
    // Delivered to every replica's watchers when this transaction commits.
    w.exec_params("SELECT pg_notify($1, $2)", ChannelOf(ChangeTopic::kAccessRequests), id);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::AccessRequest>> PgRequestStore::ListAccessRequests(
    const ListQuery& q) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::AccessRequest>> {
    Params p;
    std::string sql = absl::StrCat("SELECT ", kRequestCols, " FROM access_requests WHERE TRUE");
    AppendTenantScope(q, &p, &sql);
    if (!q.principal.empty()) absl::StrAppend(&sql, " AND requester = ", p.Add(q.principal));
    static const std::map<std::string, Column> kColumns = {
        {"state", {"state", Column::Kind::kRequestState}},
        {"stage", {"stage", Column::Kind::kStage}},
        {"environment", {"environment_id", Column::Kind::kEnvironment}},
        {"requester", {"requester", Column::Kind::kText}},
        {"support_ticket_id", {"support_ticket_id", Column::Kind::kText}},
        {"extends_grant", {"extends_grant", Column::Kind::kGrant}},
        {"create_time", {"create_time", Column::Kind::kTime}},
        {"reason", {"reason", Column::Kind::kReason}},
        {"review_state", {"review_state", Column::Kind::kReviewState}}};
    RETURN_IF_ERROR(AppendConditions(q, kColumns, &p, &sql));
    absl::StrAppend(&sql, KeysetDesc(q, "create_time", "id", "uuid", &p),
                    " ORDER BY create_time DESC, id DESC LIMIT ", q.limit);
    return MapRows<v1::AccessRequest>(Exec(w, sql, p), ToRequest);
  });
}

absl::StatusOr<std::vector<v1::AccessRequest>> PgRequestStore::GetAccessRequestsById(
    const std::vector<std::string>& ids) {
  if (ids.empty()) return std::vector<v1::AccessRequest>();
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::AccessRequest>> {
    auto r = w.exec_params(
        absl::StrCat("SELECT ", kRequestCols, " FROM access_requests WHERE id = ANY($1::uuid[])"),
        absl::StrCat("{", absl::StrJoin(ids, ","), "}"));
    return MapRows<v1::AccessRequest>(r, ToRequest);
  });
}

absl::StatusOr<std::optional<std::string>> PgRequestStore::FindPendingExtension(
    const std::string& tenant, const std::string& grant_id, absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::optional<std::string>> {
    // Pending as every reader sees it: recorded open and not yet expired
    // (the index access_requests_extensions finds the grant's few).
    auto r = w.exec_params(
        "SELECT id FROM access_requests WHERE tenant_id = $1 AND extends_grant = $2 "
        "AND extends_grant <> '' AND state = $3::integer AND expire_time > $4 LIMIT 1",
        tenant, grant_id, Enum(kRequestExpiry.open), Us(now));
    if (r.empty()) return std::optional<std::string>();
    return std::optional<std::string>(r[0][0].as<std::string>());
  });
}

absl::StatusOr<std::optional<ClaimedRow>> PgRequestStore::ClaimExpiredRequest(absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::optional<ClaimedRow>> {
    // Recorded open, read as expired: what time decided and nobody wrote.
    return FirstClaimed(
        w.exec_params("SELECT tenant_id, id FROM access_requests WHERE state = $1::integer "
                      "AND expire_time <= $2 ORDER BY expire_time LIMIT 1 FOR UPDATE SKIP LOCKED",
                      Enum(kRequestExpiry.open), Us(now)));
  });
}

absl::StatusOr<std::optional<ClaimedRow>> PgRequestStore::ClaimReminder(
    absl::Time now, absl::Time expiring_before) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::optional<ClaimedRow>> {
    return FirstClaimed(
        w.exec_params("SELECT tenant_id, id FROM access_requests WHERE state = $3::integer "
                      "AND NOT reminder_sent AND expire_time <= $2 AND expire_time > $1 "
                      "ORDER BY expire_time LIMIT 1 FOR UPDATE SKIP LOCKED",
                      Us(now), Us(expiring_before), Enum(kRequestExpiry.open)));
  });
}

absl::Status PgRequestStore::MarkReminded(const std::string& tenant, const std::string& id) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "UPDATE access_requests SET reminder_sent = true WHERE tenant_id = $1 AND id = $2", tenant,
        id);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<ClaimedRow>> PgRequestStore::ClaimEmergencyReminder(
    absl::Time now, absl::Time first_due_by, absl::Time second_due_by) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::optional<ClaimedRow>> {
    return FirstClaimed(w.exec_params(
        "SELECT tenant_id, id FROM access_requests WHERE review_state = $1::integer "
        "AND review_due_time > $2 AND ((review_reminders = 0 AND review_due_time <= $3) "
        "OR (review_reminders = 1 AND review_due_time <= $4)) "
        "ORDER BY review_due_time LIMIT 1 FOR UPDATE SKIP LOCKED",
        Enum(v1::EmergencyReview::OPEN), Us(now), Us(first_due_by), Us(second_due_by)));
  });
}

absl::Status PgRequestStore::SetEmergencyReminders(const std::string& tenant, const std::string& id,
                                                   int sent) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "UPDATE access_requests SET review_reminders = $3 WHERE tenant_id = $1 AND id = $2", tenant,
        id, sent);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<ClaimedRow>> PgRequestStore::ClaimOverdueReview(absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::optional<ClaimedRow>> {
    // The JSON leaves a false overdue out.
    return FirstClaimed(
        w.exec_params("SELECT tenant_id, id FROM access_requests WHERE review_state = $1::integer "
                      "AND review_due_time <= $2 "
                      "AND NOT coalesce((emergency_review->>'overdue')::boolean, false) "
                      "ORDER BY review_due_time LIMIT 1 FOR UPDATE SKIP LOCKED",
                      Enum(v1::EmergencyReview::OPEN), Us(now)));
  });
}

}  // namespace lockbox::postgres
