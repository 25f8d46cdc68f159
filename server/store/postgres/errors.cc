#include "server/store/postgres/errors.h"

#include <pqxx/pqxx>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/domain/status.h"

namespace lockbox::postgres {

DatabaseError MapException(const std::exception& e) {
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return {Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                  "the database connection was lost during commit; the outcome "
                  "is unknown: read the resource to see whether it changed"),
            false, true};
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    return {Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                  "the database is unavailable"),
            true, false};
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e); sql != nullptr) {
    const std::string state = sql->sqlstate();
    // After a failover a connection may reach a node that is a standby now
    // (25006: read-only transaction), or one that is shutting down (57P01
    // admin, 57P02 crash, 57P03 cannot connect now). The statement was
    // refused and nothing was written: the connection is dropped and the
    // transaction runs again on a new one, which target_session_attrs=
    // read-write leads to the primary. (At the commit, a lost connection is
    // in doubt instead: RunInTransaction.)
    if (state == "25006" || state == "57P01" || state == "57P02" || state == "57P03") {
      return {Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                    "the database is unavailable"),
              true, false};
    }
  }
  // Not an sql_error in libpqxx 6.4: tested on its own.
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) {
    return {Error(absl::StatusCode::kAborted, reason::kConflict,
                  "a concurrent change conflicted; try again")};
  }
  // lock_timeout (55P03) and statement_timeout (57014): the session's limits
  // (PgStoreOptions), the statement and with it the transaction undone.
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    if (sql->sqlstate() == "55P03") {
      return {Error(absl::StatusCode::kUnavailable, reason::kDatabaseBusy,
                    "a lock this change needs was held too long (by a stuck or frozen "
                    "transaction?); nothing was written: try again")};
    }
    if (sql->sqlstate() == "57014") {
      return {Error(absl::StatusCode::kUnavailable, reason::kDatabaseBusy,
                    "a database statement ran past its time limit; nothing was written: "
                    "try again")};
    }
  }
  if (dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr) {
    return {Error(absl::StatusCode::kAlreadyExists, reason::kAlreadyExists, "already exists")};
  }
  if (dynamic_cast<const pqxx::foreign_key_violation*>(&e) != nullptr) {
    return {Error(absl::StatusCode::kFailedPrecondition, reason::kNotFound,
                  "a resource it refers to does not exist")};
  }
  // The text reaches the server's log only; callers see "internal error".
  return {Error(absl::StatusCode::kInternal, reason::kInternal,
                absl::StrCat("internal database error: ", e.what()))};
}

bool Retryable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kAborted &&
         (ReasonOf(s) == reason::kConflict || ReasonOf(s) == kRetryReason);
}

}  // namespace lockbox::postgres
