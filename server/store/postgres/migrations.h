// The schema: numbered SQL files in migrations/, compiled into the binary at
// configure time (migrations.cc.in), applied in order. EmbeddedMigrations()
// is immutable (thread-safe); Migrate uses only the connection it is given.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_MIGRATIONS_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_MIGRATIONS_H_

#include <pqxx/connection>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lockbox {

// One numbered migration compiled into the binary.
struct Migration {
  int version;
  const char* name;
  const char* sql;
};
// In order.
const std::vector<Migration>& EmbeddedMigrations();

namespace postgres {

// Applies every migration not yet applied, each in its own transaction,
// under an advisory lock so that replicas starting at once take turns.
// INTERNAL if one fails; throws what libpqxx throws for a lost connection
// (the caller, PgStore::Create, reports it as a failure to connect).
// REQUIRES: `conn` is open and used by no one else meanwhile.
absl::Status Migrate(pqxx::connection& conn);

// The tables the runtime role may read and append to but never change
// (SELECT and INSERT only): the audit log, its checkpoints, the list of
// logs, the published signing keys, and the shared secrets (made once).
const std::vector<const char*>& AppendOnlyTables();

// What `lockboxd migrate` does, connected as the schema's owner with
// `owner_url`: Migrate, then the grants of `runtime_role`, made afresh on
// every run so that the tables of later migrations are covered: USAGE on the
// schema and its sequences, SELECT, INSERT, UPDATE and DELETE on every table
// but those of AppendOnlyTables (SELECT and INSERT), schema_migrations
// (SELECT), encryption_policies (no DELETE) and key_versions (SELECT,
// INSERT, and UPDATE of its state only); never ownership, never GRANT OPTION. FAILED_PRECONDITION when
// the runtime role does not exist, is the owner or a member of it;
// UNAVAILABLE when the database cannot be reached.
absl::Status MigrateAndGrant(const std::string& owner_url, const std::string& runtime_role);

// The role a connection URL logs in as (current_user).
absl::StatusOr<std::string> RoleOf(const std::string& url);

// FAILED_PRECONDITION unless every migration of this binary is applied.
absl::Status CheckSchemaCurrent(pqxx::connection& conn);

// FAILED_PRECONDITION when the connection's role is a superuser, owns (or
// is a member of a role that owns) the schema or any of its tables, or may
// UPDATE, DELETE or TRUNCATE an audit table: a role that could rewrite
// history must not serve.
absl::Status CheckRuntimeRole(pqxx::connection& conn);

}  // namespace postgres
}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_MIGRATIONS_H_
