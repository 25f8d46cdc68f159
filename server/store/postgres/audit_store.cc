#include "server/store/postgres/audit_store.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/domain/status.h"
#include "server/store/postgres/sql.h"

namespace lockbox::postgres {
namespace {

// The first key of the two-key advisory locks that serialize appends to a
// log (the second is the log's hashed name). Two-key locks never collide
// with the one-key migration lock.
constexpr int kChainLockSpace = 0x4c42;  // "LB"

constexpr char kAuditCols[] =
    "tenant_id, sequence, event_time, actor, via, action, resource, access_request, "
    "request_create_time, operator_user_id, request_state, support_ticket_id, "
    "request_expire_time, access_expire_time, environment, justification, "
    "details::text, previous_hash, hash";
v1::AuditEvent ToAudit(const pqxx::row& r) {
  v1::AuditEvent e = FromJson<v1::AuditEvent>(r[16].as<std::string>());
  e.set_tenant(r[0].as<std::string>());
  e.set_sequence(r[1].as<int64_t>());
  e.set_name(AuditEventName(e.tenant(), e.sequence()));
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

v1::AuditCheckpoint ToCheckpoint(const pqxx::row& row) {
  v1::AuditCheckpoint c;
  c.set_tenant(row[0].as<std::string>());
  c.set_sequence(row[1].as<int64_t>());
  c.set_name(AuditCheckpointName(c.tenant(), c.sequence()));
  c.set_head_hash(row[2].as<std::string>());
  *c.mutable_sign_time() = Ts(row[3]);
  c.set_key_id(row[4].as<std::string>());
  std::string sig;
  absl::Base64Unescape(row[5].as<std::string>(), &sig);
  c.set_signature(sig);
  return c;
}

}  // namespace

absl::StatusOr<ChainHead> PgAuditStore::LockHead(const std::string& tenant) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<ChainHead> {
    // A transaction-level advisory lock per log, not a locked row: locking a
    // row (FOR UPDATE) would need UPDATE on it, which the runtime role must
    // not have on any audit table. Two logs whose names hash alike merely
    // queue together.
    w.exec_params("SELECT pg_advisory_xact_lock($1, hashtext($2))", kChainLockSpace, tenant);
    // Read after the lock, so the statement's snapshot holds every append
    // committed before it (READ COMMITTED).
    auto head = w.exec_params(
        "SELECT sequence, hash FROM audit_events WHERE tenant_id = $1 "
        "ORDER BY sequence DESC LIMIT 1",
        tenant);
    if (head.empty()) return ChainHead{0, ""};
    return ChainHead{head[0][0].as<int64_t>(), head[0][1].as<std::string>()};
  });
}

absl::StatusOr<ChainHead> PgAuditStore::ReadHead(const std::string& tenant) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<ChainHead> {
    auto head = w.exec_params(
        "SELECT sequence, hash FROM audit_events WHERE tenant_id = $1 "
        "ORDER BY sequence DESC LIMIT 1",
        tenant);
    if (head.empty()) return ChainHead{0, ""};
    return ChainHead{head[0][0].as<int64_t>(), head[0][1].as<std::string>()};
  });
}

absl::Status PgAuditStore::InsertEvent(const v1::AuditEvent& e) {
  RETURN_IF_ERROR(tx_.Run([&](pqxx::work& w) -> absl::Status {
    v1::AuditEvent details_only;
    *details_only.mutable_details() = e.details();
    w.exec_params(
        "INSERT INTO audit_events (tenant_id, sequence, event_time, actor, via, action, resource, "
        "access_request, request_create_time, operator_user_id, request_state, "
        "support_ticket_id, request_expire_time, access_expire_time, environment, "
        "justification, details, previous_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "$9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, $18, $19)",
        e.tenant(), e.sequence(), Us(e.event_time()), e.actor(), e.via(), e.action(), e.resource(),
        e.access_request(), OptionalUs(e.has_request_create_time(), e.request_create_time()),
        e.operator_user_id(), Enum(e.request_state()), e.support_ticket_id(),
        OptionalUs(e.has_request_expire_time(), e.request_expire_time()),
        OptionalUs(e.has_access_expire_time(), e.access_expire_time()), e.environment(),
        e.justification(), Json(details_only), e.previous_hash(), e.hash());
    // A log's first event lists the log, for the idle-checkpoint sweep.
    if (e.sequence() == 1) {
      w.exec_params("INSERT INTO audit_heads (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
                    e.tenant());
    }
    return absl::OkStatus();
  }));
  tx_.AddInserted(e);
  return absl::OkStatus();
}

absl::Status PgAuditStore::InsertEvents(const std::vector<v1::AuditEvent>& events) {
  if (events.empty()) return absl::OkStatus();
  if (events.size() == 1) return InsertEvent(events[0]);
  RETURN_IF_ERROR(tx_.Run([&](pqxx::work& w) -> absl::Status {
    // One statement for a group commit's events: a round trip and a plan
    // per event was most of an append's cost.
    Params p;
    std::string sql =
        "INSERT INTO audit_events (tenant_id, sequence, event_time, actor, via, action, "
        "resource, access_request, request_create_time, operator_user_id, request_state, "
        "support_ticket_id, request_expire_time, access_expire_time, environment, "
        "justification, details, previous_hash, hash) VALUES ";
    bool first_of_log = false;
    for (size_t i = 0; i < events.size(); ++i) {
      const v1::AuditEvent& e = events[i];
      first_of_log = first_of_log || e.sequence() == 1;
      v1::AuditEvent details_only;
      *details_only.mutable_details() = e.details();
      absl::StrAppend(
          &sql, i == 0 ? "(" : ", (", p.Add(e.tenant()), ", ",
          p.Add(absl::StrCat(e.sequence())), "::bigint, ", p.Add(Us(e.event_time())), "::bigint, ",
          p.Add(e.actor()), ", ", p.Add(e.via()), ", ", p.Add(e.action()), ", ",
          p.Add(e.resource()), ", ", p.Add(e.access_request()), ", ",
          p.Add(OptionalUs(e.has_request_create_time(), e.request_create_time())), "::bigint, ",
          p.Add(e.operator_user_id()), ", ", p.Add(absl::StrCat(Enum(e.request_state()))),
          "::smallint, ", p.Add(e.support_ticket_id()), ", ",
          p.Add(OptionalUs(e.has_request_expire_time(), e.request_expire_time())), "::bigint, ",
          p.Add(OptionalUs(e.has_access_expire_time(), e.access_expire_time())), "::bigint, ",
          p.Add(e.environment()), ", ", p.Add(e.justification()), ", ", p.Add(Json(details_only)),
          "::jsonb, ", p.Add(e.previous_hash()), ", ", p.Add(e.hash()), ")");
    }
    Exec(w, sql, p);
    // A log's first event lists the log, for the idle-checkpoint sweep.
    if (first_of_log) {
      w.exec_params("INSERT INTO audit_heads (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
                    events[0].tenant());
    }
    return absl::OkStatus();
  }));
  for (const v1::AuditEvent& e : events) tx_.AddInserted(e);
  return absl::OkStatus();
}

absl::Status PgAuditStore::InsertCheckpoint(const v1::AuditCheckpoint& c) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "INSERT INTO audit_checkpoints (tenant_id, sequence, head_hash, sign_time, key_id, "
        "signature) VALUES ($1, $2, $3, $4, $5, $6)",
        c.tenant(), c.sequence(), c.head_hash(), Us(c.sign_time()), c.key_id(),
        absl::Base64Escape(c.signature()));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::AuditEvent>> PgAuditStore::ListEvents(const std::string& tenant,
                                                                     const ListQuery& q) {
  static const std::map<std::string, Column> kColumns = {
      {"action", {"action", Column::Kind::kText}},
      {"actor", {"actor", Column::Kind::kText}},
      {"access_request", {"access_request", Column::Kind::kText}},
      {"environment", {"environment", Column::Kind::kText}},
      {"support_ticket_id", {"support_ticket_id", Column::Kind::kText}},
      {"event_time", {"event_time", Column::Kind::kTime}}};
  bool by_time = false;
  for (const Condition& c : q.conditions) by_time = by_time || c.field == "event_time";
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::AuditEvent>> {
    // The tenant's rows past the cursor that match the filter.
    auto matching = [&](Params* p, std::string* sql) -> absl::Status {
      absl::StrAppend(sql, " WHERE tenant_id = ", p->Add(tenant));
      RETURN_IF_ERROR(AppendConditions(q, kColumns, p, sql));
      if (q.after) absl::StrAppend(sql, " AND sequence > ", p->Add(q.after->key), "::bigint");
      return absl::OkStatus();
    };
    if (!by_time) {
      // Every other field's index is (tenant_id, field, sequence): the rows
      // come out in order and the scan stops at the page's end.
      Params p;
      std::string sql = absl::StrCat("SELECT ", kAuditCols, " FROM audit_events");
      RETURN_IF_ERROR(matching(&p, &sql));
      absl::StrAppend(&sql, " ORDER BY sequence LIMIT ", q.limit);
      return MapRows<v1::AuditEvent>(Exec(w, sql, p), ToAudit);
    }
    // A time range. Left alone, the planner walks the log in sequence order
    // and filters, expecting the range's events spread evenly through it;
    // they are one stretch of it (a log is appended in time order), so a
    // week of a year's history 200 days back read 460,000 rows for a page.
    // First the log from the cursor on, a bounded window: a range that
    // starts there fills its page from it.
    constexpr int kWindow = 2000;
    {
      Params p;
      std::string sql = absl::StrCat("SELECT ", kAuditCols,
                                     " FROM (SELECT * FROM audit_events WHERE tenant_id = ",
                                     p.Add(tenant));
      if (q.after) absl::StrAppend(&sql, " AND sequence > ", p.Add(q.after->key), "::bigint");
      absl::StrAppend(&sql, " ORDER BY sequence LIMIT ", kWindow, ") window_rows WHERE true");
      RETURN_IF_ERROR(AppendConditions(q, kColumns, &p, &sql));
      absl::StrAppend(&sql, " ORDER BY sequence LIMIT ", q.limit);
      std::vector<v1::AuditEvent> page = MapRows<v1::AuditEvent>(Exec(w, sql, p), ToAudit);
      if (static_cast<int>(page.size()) >= q.limit) return page;
    }
    // Else the range's sequences through the time index (index only), the
    // page's first ones picked from them, and only those rows read.
    Params p;
    std::string sql = "WITH matching AS MATERIALIZED (SELECT sequence FROM audit_events";
    RETURN_IF_ERROR(matching(&p, &sql));
    absl::StrAppend(&sql, ") SELECT ", kAuditCols, " FROM audit_events WHERE tenant_id = ",
                    p.Add(tenant), " AND sequence IN (SELECT sequence FROM matching ORDER BY ",
                    "sequence LIMIT ", q.limit, ") ORDER BY sequence");
    return MapRows<v1::AuditEvent>(Exec(w, sql, p), ToAudit);
  });
}

absl::StatusOr<std::vector<v1::AuditEvent>> PgAuditStore::ReadLog(const std::string& tenant,
                                                                  int64_t after, int limit) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::AuditEvent>> {
    auto r = w.exec_params(absl::StrCat("SELECT ", kAuditCols,
                                        " FROM audit_events WHERE tenant_id = $1 AND sequence > $2 "
                                        "ORDER BY sequence LIMIT $3"),
                           tenant, after, limit);
    return MapRows<v1::AuditEvent>(r, ToAudit);
  });
}

absl::StatusOr<std::vector<v1::AuditCheckpoint>> PgAuditStore::ListCheckpoints(
    const std::string& tenant, int64_t after, int limit) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::AuditCheckpoint>> {
    auto r = w.exec_params(
        "SELECT tenant_id, sequence, head_hash, sign_time, key_id, signature FROM "
        "audit_checkpoints WHERE tenant_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
        tenant, after, limit);
    return MapRows<v1::AuditCheckpoint>(r, ToCheckpoint);
  });
}

absl::StatusOr<std::vector<std::string>> PgAuditStore::LogsDueForCheckpoint(
    absl::Time signed_before, int limit) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<std::string>> {
    auto r = w.exec_params(
        "SELECT h.tenant_id FROM audit_heads h CROSS JOIN LATERAL (SELECT sequence FROM "
        "audit_events e WHERE e.tenant_id = h.tenant_id ORDER BY sequence DESC LIMIT 1) head "
        "LEFT JOIN LATERAL (SELECT sequence, sign_time FROM audit_checkpoints c "
        "WHERE c.tenant_id = h.tenant_id ORDER BY sequence DESC LIMIT 1) last ON true "
        "WHERE head.sequence > COALESCE(last.sequence, 0) "
        "AND COALESCE(last.sign_time, 0) < $1 LIMIT $2",
        Us(signed_before), limit);
    std::vector<std::string> out;
    for (const auto& row : r) out.push_back(row[0].as<std::string>());
    return out;
  });
}

absl::Status PgAuditStore::PublishSigningKey(const v1::AuditPublicKey& key, absl::Time now,
                                             bool ephemeral) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    w.exec_params(
        "INSERT INTO audit_signing_keys (key_id, public_key_pem, algorithm, valid_from, "
        "ephemeral) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO NOTHING",
        key.key_id(), key.public_key_pem(), key.algorithm(), Us(now), ephemeral);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::AuditPublicKey>> PgAuditStore::ListSigningKeys() {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::AuditPublicKey>> {
    auto r = w.exec(
        "SELECT key_id, public_key_pem, algorithm, valid_from, "
        "lead(valid_from) OVER (ORDER BY valid_from, key_id) FROM audit_signing_keys "
        "ORDER BY valid_from, key_id");
    return MapRows<v1::AuditPublicKey>(r, [](const pqxx::row& row) {
      v1::AuditPublicKey k;
      k.set_key_id(row[0].as<std::string>());
      k.set_public_key_pem(row[1].as<std::string>());
      k.set_algorithm(row[2].as<std::string>());
      *k.mutable_valid_from() = Ts(row[3]);
      if (!row[4].is_null()) *k.mutable_valid_until() = Ts(row[4]);
      return k;
    });
  });
}

}  // namespace lockbox::postgres
