#include "server/store/postgres/operations_store.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"
#include "server/store/postgres/errors.h"
#include "server/store/postgres/sql.h"

namespace lockbox::postgres {

absl::StatusOr<std::optional<IdempotencyRecord>> PgOperationsStore::GetIdempotencyRecord(
    const std::string& caller, const std::string& request_id) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<std::optional<IdempotencyRecord>> {
    auto r = w.exec_params(
        "SELECT method, request_hash, encode(response, 'base64') FROM idempotency_keys "
        "WHERE caller = $1 AND request_id = $2",
        caller, request_id);
    if (r.empty()) return std::optional<IdempotencyRecord>();
    IdempotencyRecord rec{r[0][0].as<std::string>(), r[0][1].as<std::string>(), ""};
    std::string b64 = r[0][2].as<std::string>();
    b64.erase(std::remove(b64.begin(), b64.end(), '\n'), b64.end());
    absl::Base64Unescape(b64, &rec.response);
    return std::optional<IdempotencyRecord>(std::move(rec));
  });
}

absl::StatusOr<bool> PgOperationsStore::ClaimRequestId(const std::string& caller,
                                                      const std::string& request_id) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<bool> {
    // A transaction-scoped advisory lock on a 64-bit digest of the key: no
    // row to write, released by the commit or rollback (or the session's
    // end, when a replica dies). A digest collision only makes a retry
    // wait its turn.
    auto r = w.exec_params(
        "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(10) || $2, 15))", caller,
        request_id);
    return r[0][0].as<bool>();
  });
}

absl::Status PgOperationsStore::PutIdempotencyRecord(const std::string& caller,
                                                     const std::string& request_id,
                                                     const IdempotencyRecord& rec, absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::Status {
    auto r = w.exec_params(
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
  });
}

absl::StatusOr<bool> PgOperationsStore::RecordTokenUse(const std::string& issuer,
                                                       const std::string& jti,
                                                       absl::Time expire_time, absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<bool> {
    // A row left over from an expired token is not a use of this one (the
    // sweeper may not have deleted it yet): the new use takes its place.
    auto r = w.exec_params(
        "INSERT INTO token_uses (issuer, jti, expire_time, use_time) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (issuer, jti) DO UPDATE SET expire_time = EXCLUDED.expire_time, "
        "use_time = EXCLUDED.use_time WHERE token_uses.expire_time <= EXCLUDED.use_time",
        issuer, jti, Us(expire_time), Us(now));
    return r.affected_rows() == 1;
  });
}

absl::StatusOr<int> PgOperationsStore::PurgeTokenUses(absl::Time now, int limit) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<int> {
    auto r = w.exec_params(
        "DELETE FROM token_uses WHERE (issuer, jti) IN (SELECT issuer, jti FROM token_uses "
        "WHERE expire_time <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        Us(now), limit);
    return static_cast<int>(r.affected_rows());
  });
}

absl::StatusOr<OperationalCounts> PgOperationsStore::CountOperational(absl::Time now) {
  return tx_.Run([&](pqxx::work& w) -> absl::StatusOr<OperationalCounts> {
    OperationalCounts out;
    const int request_open = Enum(kRequestExpiry.open);
    const int grant_open = Enum(kGrantExpiry.open);
    // Each count walks a partial index of the rows in that state only.
    for (const auto& row :
         w.exec_params("SELECT stage, count(*) FROM access_requests WHERE state = $1::integer "
                       "GROUP BY stage",
                       request_open)) {
      out.pending_by_stage[row[0].as<int>()] = row[1].as<int64_t>();
    }
    Params p;
    out.active_grants =
        Exec(w,
             absl::StrCat("SELECT count(*) FROM grants WHERE ",
                          StateCondition(RecordedStatesFor(v1::Grant::ACTIVE), now, &p)),
             p)[0][0]
            .as<int64_t>();
    out.outbox_pending = w.exec_params1("SELECT count(*) FROM outbox WHERE state = $1::integer",
                                        Enum(v1::Notification::PENDING))[0]
                             .as<int64_t>();
    out.outbox_failed = w.exec_params1("SELECT count(*) FROM outbox WHERE state = $1::integer",
                                       Enum(v1::Notification::FAILED))[0]
                            .as<int64_t>();
    // What is still recorded open: its end is due and not yet written.
    auto due = w.exec_params1(
        "SELECT least((SELECT min(expire_time) FROM access_requests WHERE state = $1::integer), "
        "(SELECT min(expire_time) FROM grants WHERE state = $2::integer))",
        request_open, grant_open);
    if (!due[0].is_null()) out.earliest_due = absl::FromUnixMicros(due[0].as<int64_t>());
    return out;
  });
}

}  // namespace lockbox::postgres
