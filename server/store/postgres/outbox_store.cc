#include "server/store/postgres/outbox_store.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/store/postgres/sql.h"

namespace lockbox::postgres {
namespace {

// The database's clock in microseconds: what outbox scheduling runs on.
#define LOCKBOX_DB_NOW_US "(extract(epoch from clock_timestamp()) * 1000000)::bigint"

using v1::Notification;

v1::Notification ToNotification(const pqxx::row& r) {
  v1::Notification n;
  std::string tenant = r[1].as<std::string>();
  n.set_name(tenant.empty() ? absl::StrCat("notifications/", r[0].as<std::string>())
                            : ChildName(tenant, "notifications", r[0].as<std::string>()));
  n.set_idempotency_key(r[0].as<std::string>());
  n.set_channel(static_cast<Notification::Channel>(r[2].as<int>()));
  n.set_recipient(r[3].as<std::string>());
  n.set_event(r[4].as<std::string>());
  n.set_resource(r[5].as<std::string>());
  n.set_subject(r[6].as<std::string>());
  n.set_state(static_cast<Notification::State>(r[7].as<int>()));
  n.set_attempts(r[8].as<int>());
  n.set_last_error(r[9].as<std::string>());
  *n.mutable_create_time() = Ts(r[10]);
  if (n.state() == Notification::PENDING) *n.mutable_next_attempt_time() = Ts(r[11]);
  if (r[12].as<int64_t>() != 0) *n.mutable_deliver_time() = Ts(r[12]);
  return n;
}

}  // namespace

absl::Status PgOutboxStore::EnqueueMessages(const std::vector<OutboundMessage>& messages,
                                            absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    for (const OutboundMessage& m : messages) {
      w.exec_params(
          "INSERT INTO outbox (id, tenant_id, channel, recipient, event, resource, subject, body, "
          "state, attempts, next_attempt_time, claimed_until, last_error, create_time, "
          "deliver_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, 0, " LOCKBOX_DB_NOW_US
          ", 0, '', $9, 0)",
          m.id, m.tenant, Enum(m.channel), m.recipient, m.event, m.resource, m.subject, m.body,
          Us(now), Enum(Notification::PENDING));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::Notification>> PgOutboxStore::ListNotifications(const ListQuery& q) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<v1::Notification>> {
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
    return MapRows<v1::Notification>(Exec(w, sql, p), ToNotification);
  });
}

absl::StatusOr<std::vector<DueMessage>> PgOutboxStore::LockDue(
    int limit, const std::vector<std::string>& busy) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<DueMessage>> {
    auto r = w.exec_params(
        "SELECT id, destination FROM outbox WHERE state = $1::integer "
        "AND next_attempt_time <= " LOCKBOX_DB_NOW_US " AND claimed_until <= " LOCKBOX_DB_NOW_US
        " AND destination <> ALL (SELECT jsonb_array_elements_text($2::jsonb)) "
        "ORDER BY next_attempt_time LIMIT $3 FOR UPDATE SKIP LOCKED",
        Enum(Notification::PENDING), nlohmann::json(busy).dump(), limit);
    std::vector<DueMessage> out;
    for (const auto& row : r) out.push_back({row[0].as<std::string>(), row[1].as<std::string>()});
    return out;
  });
}

absl::StatusOr<std::vector<Delivery>> PgOutboxStore::ClaimDeliveries(
    const std::vector<std::string>& ids, const std::string& lease_token, absl::Duration lease) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<Delivery>> {
    std::vector<Delivery> out;
    if (ids.empty()) return out;
    auto r = w.exec_params(
        "UPDATE outbox o SET claimed_until = " LOCKBOX_DB_NOW_US
        " + $1, lease_token = $2, "
        "attempts = o.attempts + 1 "
        "WHERE o.id IN (SELECT jsonb_array_elements_text($3::jsonb)::uuid) "
        "RETURNING o.id, o.tenant_id, o.channel, o.recipient, o.event, o.resource, o.subject, "
        "o.body, o.attempts, COALESCE((SELECT webhook_secret FROM lockbox_policies p "
        "WHERE p.tenant_id = o.tenant_id), ''), o.destination",
        absl::ToInt64Microseconds(lease), lease_token, nlohmann::json(ids).dump());
    for (const auto& row : r) {
      Delivery d;
      d.message = OutboundMessage{row[0].as<std::string>(),
                                  row[1].as<std::string>(),
                                  static_cast<Notification::Channel>(row[2].as<int>()),
                                  row[3].as<std::string>(),
                                  row[4].as<std::string>(),
                                  row[5].as<std::string>(),
                                  row[6].as<std::string>(),
                                  row[7].as<std::string>()};
      d.attempts = row[8].as<int>();
      d.webhook_secret = row[9].as<std::string>();
      d.destination = row[10].as<std::string>();
      d.lease_token = lease_token;
      out.push_back(std::move(d));
    }
    return out;
  });
}

absl::StatusOr<int> PgOutboxStore::RenewLeases(const std::vector<std::string>& ids,
                                               const std::string& lease_token,
                                               absl::Duration lease) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<int> {
    if (ids.empty()) return 0;
    auto r = w.exec_params(
        "UPDATE outbox SET claimed_until = " LOCKBOX_DB_NOW_US
        " + $1 "
        "WHERE id IN (SELECT jsonb_array_elements_text($3::jsonb)::uuid) AND lease_token = $2 "
        "AND state = $4::integer",
        absl::ToInt64Microseconds(lease), lease_token, nlohmann::json(ids).dump(),
        Enum(Notification::PENDING));
    return static_cast<int>(r.affected_rows());
  });
}

absl::Status PgOutboxStore::Postpone(const std::vector<std::string>& ids,
                                     const std::string& lease_token, absl::Duration retry_after,
                                     const std::string& why) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    if (ids.empty()) return absl::OkStatus();
    w.exec_params(
        "UPDATE outbox SET attempts = GREATEST(attempts - 1, 0), claimed_until = 0, "
        "lease_token = '', next_attempt_time = " LOCKBOX_DB_NOW_US
        " + $3, last_error = $4 "
        "WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::uuid) "
        "AND lease_token = $2 AND state = $5::integer",
        nlohmann::json(ids).dump(), lease_token, absl::ToInt64Microseconds(retry_after),
        why.substr(0, 1000), Enum(Notification::PENDING));
    return absl::OkStatus();
  });
}

absl::StatusOr<bool> PgOutboxStore::RecordAttempt(const std::string& id,
                                                  const std::string& lease_token, bool delivered,
                                                  const std::string& error, bool give_up,
                                                  absl::Duration retry_after, absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<bool> {
    pqxx::result r;
    if (delivered) {
      r = w.exec_params(
          "UPDATE outbox SET state = $3, deliver_time = $2, claimed_until = 0, last_error = '', "
          "lease_token = '' WHERE id = $1 AND lease_token = $4 AND state = $5::integer",
          id, Us(now), Enum(Notification::DELIVERED), lease_token, Enum(Notification::PENDING));
    } else {
      r = w.exec_params("UPDATE outbox SET state = $2, next_attempt_time = " LOCKBOX_DB_NOW_US
                        " + $3, claimed_until = 0, last_error = $4, lease_token = '' "
                        "WHERE id = $1 AND lease_token = $5 AND state = $6::integer",
                        id, Enum(give_up ? Notification::FAILED : Notification::PENDING),
                        absl::ToInt64Microseconds(retry_after), error.substr(0, 1000), lease_token,
                        Enum(Notification::PENDING));
    }
    return r.affected_rows() == 1;
  });
}

}  // namespace lockbox::postgres
