#include "server/store/postgres/migrations.h"

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "server/domain/status.h"

namespace lockbox::postgres {
namespace {

// Any constant works; it only has to be the same for every replica.
constexpr int64_t kMigrationLockKey = 0x6c6f636b626f78;  // "lockbox"

}  // namespace

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
      w.exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
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

}  // namespace lockbox::postgres
