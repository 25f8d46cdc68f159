// The PostgreSQL store. libpqxx exceptions stop here and become statuses in
// one function (ToStatus); SQL lives only in this file and the migrations,
// always with parameters.
#ifndef LOCKBOX_SERVER_STORE_PG_STORE_H_
#define LOCKBOX_SERVER_STORE_PG_STORE_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <pqxx/connection>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/domain/audit_signing.h"
#include "server/store/store.h"


namespace lockbox {

struct PgStoreOptions {
  // libpq connection URL; may name several hosts.
  std::string database_url;
  // Connections kept open for calls.
  int pool_size = 8;
  // How long a call waits for a free connection before UNAVAILABLE.
  absl::Duration acquire_timeout = absl::Seconds(5);
  // Called after each commit, once per audit event the transaction
  // appended (the lifecycle events' log lines and counters).
  std::function<void(const v1::AuditEvent&)> on_committed_event;
};

// The numbered migrations compiled into the binary, in order.
struct Migration {
  int version;
  const char* name;
  const char* sql;
};
const std::vector<Migration>& EmbeddedMigrations();

// LISTEN/NOTIFY on a dedicated connection (never through a pooler in
// transaction mode), made again with backoff whenever it is lost. The
// connection is probed every `probe` so that a silent loss is noticed.
class PgChangeFeed final : public ChangeFeed {
 public:
  PgChangeFeed(std::string database_url, ChangeTopic topic,
               absl::Duration probe = absl::Milliseconds(500))
      : database_url_(std::move(database_url)), topic_(topic), probe_(probe) {}
  void Run(const std::function<void(const std::string&)>& on_change,
           const std::function<void()>& on_gap) override;
  void Stop() override { stopped_ = true; }
  bool AliveWithin(absl::Duration within) const override;

 private:
  std::string database_url_;
  ChangeTopic topic_;
  absl::Duration probe_;
  std::atomic<bool> stopped_{false};
  // Steady-clock nanoseconds of the last proof the connection worked; 0
  // while it is not listening.
  std::atomic<int64_t> alive_ns_{0};
};

class PgStore final : public Store {
 public:
  // Connects, and applies any migration not yet applied. Safe when several
  // replicas start at once: migrations run under an advisory lock, each in
  // its own transaction.
  static absl::StatusOr<std::unique_ptr<PgStore>> Create(PgStoreOptions options);
  ~PgStore() override;

  absl::Status RunInTransaction(
      const std::function<absl::Status(Transaction&)>& fn) override;
  absl::StatusOr<std::string> SharedSecret(const std::string& name,
                                           const std::string& initial = "") override;
  // Every `every` events of a log, the append also writes a checkpoint
  // signed by `signer` (not owned; outlives the store).
  void SetAuditSigner(const AuditSigner* signer, int every) {
    signer_ = signer;
    checkpoint_every_ = every;
  }
  bool Ping() override;

 private:
  explicit PgStore(PgStoreOptions options) : options_(std::move(options)) {}

  // A pooled connection; returned to the pool when released, or dropped if
  // it broke.
  class Lease;
  absl::StatusOr<std::unique_ptr<pqxx::connection>> Acquire();
  void Release(std::unique_ptr<pqxx::connection> conn);

  PgStoreOptions options_;
  const AuditSigner* signer_ = nullptr;
  int checkpoint_every_ = 0;
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  int open_ = 0;  // Connections handed out or idle.
  int lost_ = 0;  // Connections dropped as broken, not yet replaced.
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_PG_STORE_H_
