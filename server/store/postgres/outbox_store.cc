#include "server/store/postgres/outbox_store.h"

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

absl::StatusOr<std::vector<Delivery>> PgOutboxStore::ClaimDeliveries(absl::Duration lease,
                                                                     int limit) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::vector<Delivery>> {
    auto r = w.exec_params(
        "UPDATE outbox o SET claimed_until = " LOCKBOX_DB_NOW_US
        " + $1, "
        "attempts = o.attempts + 1 "
        "FROM (SELECT id FROM outbox WHERE state = $3::integer "
        "      AND next_attempt_time <= " LOCKBOX_DB_NOW_US
        "      AND claimed_until <= " LOCKBOX_DB_NOW_US
        " ORDER BY next_attempt_time LIMIT $2 "
        "      FOR UPDATE SKIP LOCKED) due "
        "WHERE o.id = due.id "
        "RETURNING o.id, o.tenant_id, o.channel, o.recipient, o.event, o.resource, o.subject, "
        "o.body, o.attempts, COALESCE((SELECT webhook_secret FROM lockbox_policies p "
        "WHERE p.tenant_id = o.tenant_id), '')",
        absl::ToInt64Microseconds(lease), limit, Enum(Notification::PENDING));
    std::vector<Delivery> out;
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
      out.push_back(std::move(d));
    }
    return out;
  });
}

absl::Status PgOutboxStore::RecordAttempt(const std::string& id, bool delivered,
                                          const std::string& error, bool give_up,
                                          absl::Duration retry_after, absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    if (delivered) {
      w.exec_params(
          "UPDATE outbox SET state = $3, deliver_time = $2, claimed_until = 0, last_error = '' "
          "WHERE id = $1",
          id, Us(now), Enum(Notification::DELIVERED));
    } else {
      w.exec_params("UPDATE outbox SET state = $2, next_attempt_time = " LOCKBOX_DB_NOW_US
                    " + $3, "
                    "claimed_until = 0, last_error = $4 WHERE id = $1",
                    id, Enum(give_up ? Notification::FAILED : Notification::PENDING),
                    absl::ToInt64Microseconds(retry_after), error.substr(0, 1000));
    }
    return absl::OkStatus();
  });
}

}  // namespace lockbox::postgres
