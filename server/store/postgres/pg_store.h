// The PostgreSQL store: a pool of connections, each transaction run on one,
// with the aggregate stores of this folder handed out by its Transaction.
// libpqxx exceptions stop in this folder and become statuses in one function
// (errors.h); SQL lives only here and in migrations/, always with
// parameters.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_PG_STORE_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_PG_STORE_H_

#include <functional>
#include <memory>
#include <pqxx/connection>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/store/postgres/change_feed.h"
#include "server/store/postgres/migrations.h"
#include "server/store/store.h"

namespace lockbox {

struct PgStoreOptions {
  // libpq connection URL; may name several hosts.
  std::string database_url;
  // Connections kept open for calls.
  int pool_size = 8;
  // How long a call waits for a free connection before UNAVAILABLE.
  absl::Duration acquire_timeout = absl::Seconds(5);
  // Each pool connection's session limits, so that a transaction stuck
  // holding a lock (its replica frozen, say) holds nobody else for long:
  // waiting for a lock longer than lock_timeout, or a statement running
  // longer than statement_timeout, fails with UNAVAILABLE DATABASE_BUSY; a
  // session idle inside a transaction longer than idle_in_transaction_timeout
  // is ended by the server, releasing its locks. Zero: no limit. Not applied
  // while migrating (a migration may wait for another replica's).
  absl::Duration lock_timeout = absl::Seconds(5);
  absl::Duration statement_timeout = absl::Seconds(30);
  absl::Duration idle_in_transaction_timeout = absl::Seconds(10);
  // Apply the migrations at start (the tests' and --dev-privileged-database-
  // role's way). false: only check that the schema is current, as lockboxd's
  // runtime role, which may not migrate, does.
  bool migrate = true;
  // Refuse a role that could rewrite history (postgres::CheckRuntimeRole).
  bool check_runtime_role = false;
  // Called after each commit, once per audit event the transaction
  // inserted (the lifecycle events' log lines and counters), on the
  // committing thread.
  std::function<void(const v1::AuditEvent&)> on_committed_event;
};

// Thread-safe: one store serves every call; each transaction holds one
// pooled connection while it runs.
class PgStore final : public Store {
 public:
  // Connects, and applies any migration not yet applied (or, without
  // `migrate`, refuses a schema that is not current). Safe when several
  // replicas start at once: migrations run under an advisory lock, each in
  // its own transaction. FAILED_PRECONDITION for a schema not current or a
  // role refused by `check_runtime_role`.
  static absl::StatusOr<std::unique_ptr<PgStore>> Create(PgStoreOptions options);
  ~PgStore() override;

  absl::Status RunInTransaction(const std::function<absl::Status(Transaction&)>& fn) override;
  absl::StatusOr<std::string> SharedSecret(const std::string& name,
                                           const std::string& initial = "") override;
  bool Ping() override;

 private:
  explicit PgStore(PgStoreOptions options) : options_(std::move(options)) {}

  // A connection from the pool (idle, or newly opened while fewer than
  // pool_size are open); UNAVAILABLE after acquire_timeout or if the
  // database refuses.
  absl::StatusOr<std::unique_ptr<pqxx::connection>> Acquire() ABSL_LOCKS_EXCLUDED(mu_);
  // Returns it to the pool, or (null or closed: it broke) counts it lost so
  // that the next one opened replaces it.
  void Release(std::unique_ptr<pqxx::connection> conn) ABSL_LOCKS_EXCLUDED(mu_);
  bool CanAcquire() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets the session limits of `options_` on a pool connection. Throws what
  // libpqxx throws.
  void SetSessionLimits(pqxx::connection& conn) const;
  // Closes every idle connection (counted lost, so that new ones replace
  // them): after one was found broken, the others reached the same server.
  void DropIdle() ABSL_LOCKS_EXCLUDED(mu_);

  const PgStoreOptions options_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // Connections handed out or idle.
  int lost_ ABSL_GUARDED_BY(mu_) = 0;  // Dropped as broken, not yet replaced.
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_PG_STORE_H_
