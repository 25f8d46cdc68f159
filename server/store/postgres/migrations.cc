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

const std::vector<const char*>& AppendOnlyTables() {
  static const std::vector<const char*> kTables = {
      "audit_events", "audit_checkpoints", "audit_heads", "audit_signing_keys", "server_secrets"};
  return kTables;
}

namespace {

absl::Status Refused(absl::string_view why) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kInternal, why);
}

// The grants of MigrateAndGrant, in the owner's transaction `w`.
absl::Status Grant(pqxx::work& w, const std::string& role) {
  auto found = w.exec_params(
      "SELECT pg_has_role($1, current_user, 'MEMBER'), $1 = current_user FROM pg_roles "
      "WHERE rolname = $1",
      role);
  if (found.empty()) return Refused(absl::StrCat("the runtime role ", role, " does not exist"));
  if (found[0][1].as<bool>()) {
    return Refused("the runtime role must not be the role that runs the migrations");
  }
  if (found[0][0].as<bool>()) {
    return Refused(absl::StrCat("the runtime role ", role,
                                " is a member of the migrating role and would own its tables"));
  }
  std::string r = w.quote_name(role);
  std::string schema = w.quote_name(w.exec1("SELECT current_schema()")[0].as<std::string>());
  // Start from nothing, so that a privilege granted by hand or by an older
  // version does not survive this run.
  for (const std::string& sql : std::vector<std::string>{
           absl::StrCat("REVOKE ALL ON ALL TABLES IN SCHEMA ", schema, " FROM ", r),
           absl::StrCat("REVOKE ALL ON ALL SEQUENCES IN SCHEMA ", schema, " FROM ", r),
           absl::StrCat("GRANT USAGE ON SCHEMA ", schema, " TO ", r),
           absl::StrCat("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ", schema,
                        " TO ", r),
           absl::StrCat("GRANT USAGE ON ALL SEQUENCES IN SCHEMA ", schema, " TO ", r),
           absl::StrCat("REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM ", r)}) {
    w.exec(sql);
  }
  for (const char* table : AppendOnlyTables()) {
    w.exec(absl::StrCat("REVOKE UPDATE, DELETE ON ", w.quote_name(table), " FROM ", r));
  }
  // Deleting a policy or a key version would destroy every key made under
  // it (data planes' data, sealed fields) as surely as revoking the
  // customer's key, without the customer: lockboxd only disables them. A
  // version's wrapped keys never change; only its state does.
  for (const char* table : {"encryption_policies", "key_versions"}) {
    w.exec(absl::StrCat("REVOKE DELETE ON ", w.quote_name(table), " FROM ", r));
  }
  w.exec(absl::StrCat("REVOKE UPDATE ON key_versions FROM ", r));
  w.exec(absl::StrCat("GRANT UPDATE (state) ON key_versions TO ", r));
  // A policy's identity never changes (the trigger of migration 0014 holds
  // even the owner to it); lockboxd writes the rest of the row on every
  // change. An environment joins or leaves a policy by its row being
  // inserted or deleted, never moved to another policy.
  w.exec(absl::StrCat("REVOKE UPDATE ON encryption_policies FROM ", r));
  w.exec(absl::StrCat(
      "GRANT UPDATE (display_name, key_uri, state, state_reason, protects_lockbox_data, "
      "primary_version, update_time, version) ON encryption_policies TO ",
      r));
  w.exec(absl::StrCat("REVOKE UPDATE ON policy_environments FROM ", r));
  return absl::OkStatus();
}

}  // namespace

absl::Status MigrateAndGrant(const std::string& owner_url, const std::string& runtime_role) {
  try {
    pqxx::connection c(owner_url);
    // Replicas starting at once grant in turn, too: two GRANTs on one table
    // at once fail ("tuple concurrently updated"). Migrate takes the same
    // session lock again; it stacks.
    {
      pqxx::nontransaction lock(c);
      lock.exec_params("SELECT pg_advisory_lock($1)", kMigrationLockKey);
    }
    absl::Status status = Migrate(c);
    if (status.ok()) {
      try {
        pqxx::work w(c);
        status = Grant(w, runtime_role);
        if (status.ok()) w.commit();
      } catch (const pqxx::sql_error& e) {
        status = Error(absl::StatusCode::kInternal, reason::kInternal,
                       absl::StrCat("granting the runtime role failed: ", e.what()));
      }
    }
    pqxx::nontransaction unlock(c);
    unlock.exec_params("SELECT pg_advisory_unlock($1)", kMigrationLockKey);
    return status;
  } catch (const pqxx::broken_connection& e) {
    return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                 absl::StrCat("cannot connect to the database: ", e.what()));
  } catch (const std::exception& e) {
    return Error(absl::StatusCode::kInternal, reason::kInternal,
                 absl::StrCat("granting the runtime role failed: ", e.what()));
  }
}

absl::StatusOr<std::string> RoleOf(const std::string& url) {
  try {
    pqxx::connection c(url);
    pqxx::nontransaction n(c);
    return n.exec1("SELECT current_user")[0].as<std::string>();
  } catch (const std::exception& e) {
    return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                 absl::StrCat("cannot connect to the database: ", e.what()));
  }
}

absl::Status CheckSchemaCurrent(pqxx::connection& c) {
  pqxx::nontransaction n(c);
  if (n.exec1("SELECT to_regclass('schema_migrations') IS NULL")[0].as<bool>()) {
    return Refused(
        "the database has no Lockbox schema: run `lockboxd migrate` (or give "
        "--migration-database-url) first");
  }
  int missing = 0, first_missing = 0;
  for (const Migration& m : EmbeddedMigrations()) {
    auto done = n.exec_params("SELECT 1 FROM schema_migrations WHERE version = $1", m.version);
    if (done.empty() && missing++ == 0) first_missing = m.version;
  }
  if (missing > 0) {
    return Refused(absl::StrCat("the database schema is not current: ", missing,
                                " migration(s) from ", first_missing,
                                " not applied; run `lockboxd migrate` (or give "
                                "--migration-database-url) first"));
  }
  return absl::OkStatus();
}

absl::Status CheckRuntimeRole(pqxx::connection& c) {
  pqxx::nontransaction n(c);
  const std::string name = n.exec1("SELECT current_user")[0].as<std::string>();
  // The role's own attributes and those of every role it is a member of
  // (it may SET ROLE to one): a superuser bypasses every check; CREATEROLE
  // can grant itself the owner's role (PostgreSQL 15 lets it grant any role
  // but a superuser), then SET ROLE and disable the append-only triggers;
  // REPLICATION and BYPASSRLS read or write past the server's checks.
  auto privileged = n.exec(
      "SELECT rolname, rolsuper, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles "
      "WHERE pg_has_role(current_user, oid, 'MEMBER') "
      "AND (rolsuper OR rolcreaterole OR rolreplication OR rolbypassrls) "
      "ORDER BY rolname <> current_user, rolname LIMIT 1");
  if (!privileged.empty()) {
    const auto& r = privileged[0];
    const std::string holder = r[0].as<std::string>();
    std::string what = r[1].as<bool>()   ? "is a superuser"
                       : r[2].as<bool>() ? "has CREATEROLE"
                       : r[3].as<bool>() ? "has REPLICATION"
                                         : "has BYPASSRLS";
    std::string who = holder == name ? "" : absl::StrCat(" is a member of ", holder, ", which");
    return Refused(absl::StrCat("the database role ", name, who, " ", what,
                                "; lockboxd runs as a role that owns nothing "
                                "(docs/OPERATIONS.md, database roles)"));
  }
  // Whoever owns a table, or a function a trigger of one calls, can switch
  // the triggers off or replace what they do; a member of the owner can
  // become it. Trigger functions are checked wherever they live.
  auto owned = n.exec(
      "SELECT 'schema ' || n.nspname FROM pg_namespace n WHERE n.nspname = current_schema() "
      "AND pg_has_role(current_user, n.nspowner, 'MEMBER') "
      "UNION ALL SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname = current_schema() AND pg_has_role(current_user, c.relowner, 'MEMBER') "
      "UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p "
      "JOIN pg_namespace n ON n.oid = p.pronamespace "
      "WHERE n.nspname = current_schema() AND pg_has_role(current_user, p.proowner, 'MEMBER') "
      "UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_trigger t "
      "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
      "JOIN pg_proc p ON p.oid = t.tgfoid "
      "WHERE n.nspname = current_schema() AND pg_has_role(current_user, p.proowner, 'MEMBER') "
      "LIMIT 1");
  if (!owned.empty()) {
    return Refused(absl::StrCat("the database role ", name, " owns ", owned[0][0].as<std::string>(),
                                " (or is a member of its owner); lockboxd runs as a role that "
                                "owns nothing: migrate as the owner with `lockboxd migrate`"));
  }
  for (const char* table : AppendOnlyTables()) {
    auto can = n.exec_params(
        "SELECT has_table_privilege($1, 'UPDATE') OR has_table_privilege($1, 'DELETE') OR "
        "has_table_privilege($1, 'TRUNCATE')",
        std::string(table));
    if (can[0][0].as<bool>()) {
      return Refused(absl::StrCat("the database role ", name, " may change ", table,
                                  "; run `lockboxd migrate` to reset its grants"));
    }
  }
  return absl::OkStatus();
}

}  // namespace lockbox::postgres
