// The schema: numbered SQL files in migrations/, compiled into the binary at
// configure time (migrations.cc.in), applied in order. EmbeddedMigrations()
// is immutable (thread-safe); Migrate uses only the connection it is given.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_MIGRATIONS_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_MIGRATIONS_H_

#include <pqxx/connection>
#include <vector>

#include "absl/status/status.h"

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

}  // namespace postgres
}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_MIGRATIONS_H_
