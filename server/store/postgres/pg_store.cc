#include "server/store/postgres/pg_store.h"

#include <openssl/rand.h>

#include <chrono>
#include <optional>
#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/domain/status.h"
#include "server/observe/log.h"
#include "server/observe/metrics.h"
#include "server/store/postgres/audit_store.h"
#include "server/store/postgres/context.h"
#include "server/store/postgres/errors.h"
#include "server/store/postgres/grant_store.h"
#include "server/store/postgres/key_store.h"
#include "server/store/postgres/operations_store.h"
#include "server/store/postgres/outbox_store.h"
#include "server/store/postgres/request_store.h"
#include "server/store/postgres/tenancy_store.h"

namespace lockbox {
namespace {

using postgres::DatabaseError;
using postgres::MapException;

constexpr int kMaxAttempts = 4;

// One transaction's aggregate stores over one libpqxx transaction. Not
// thread-safe.
class PgTransaction final : public Transaction {
 public:
  explicit PgTransaction(pqxx::work& w)
      : context_(w),
        tenancy_(context_),
        requests_(context_),
        grants_(context_),
        audit_(context_),
        outbox_(context_),
        operations_(context_),
        keys_(context_) {}

  TenancyStore& tenancy() override { return tenancy_; }
  RequestStore& requests() override { return requests_; }
  GrantStore& grants() override { return grants_; }
  AuditStore& audit() override { return audit_; }
  OutboxStore& outbox() override { return outbox_; }
  OperationsStore& operations() override { return operations_; }
  KeyStore& keys() override { return keys_; }

  const postgres::TxContext& context() const { return context_; }

 private:
  postgres::TxContext context_;
  postgres::PgTenancyStore tenancy_;
  postgres::PgRequestStore requests_;
  postgres::PgGrantStore grants_;
  postgres::PgAuditStore audit_;
  postgres::PgOutboxStore outbox_;
  postgres::PgOperationsStore operations_;
  postgres::PgKeyStore keys_;
};

// Counts a database error by kind.
void CountError(const DatabaseError& e) {
  if (e.in_doubt) {
    Metrics::Get().DatabaseError("in_doubt");
  } else if (e.connection_lost) {
    Metrics::Get().DatabaseError("unavailable");
  } else if (e.status.code() == absl::StatusCode::kInternal) {
    Metrics::Get().DatabaseError("internal");
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Create(PgStoreOptions options) {
  if (options.pool_size < 1) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                 "pool size must be at least 1");
  }
  std::unique_ptr<PgStore> store(new PgStore(std::move(options)));
  try {
    auto conn = std::make_unique<pqxx::connection>(store->options_.database_url);
    if (store->options_.migrate) {
      RETURN_IF_ERROR(postgres::Migrate(*conn));
    } else {
      RETURN_IF_ERROR(postgres::CheckSchemaCurrent(*conn));
    }
    if (store->options_.check_runtime_role) RETURN_IF_ERROR(postgres::CheckRuntimeRole(*conn));
    store->SetSessionLimits(*conn);
    absl::MutexLock lock(&store->mu_);
    store->idle_.push_back(std::move(conn));
    store->open_ = 1;
  } catch (const std::exception& e) {
    return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                 absl::StrCat("cannot connect to the database: ", e.what()));
  }
  return store;
}

PgStore::~PgStore() = default;

void PgStore::SetSessionLimits(pqxx::connection& conn) const {
  pqxx::nontransaction n(conn);
  for (const auto& [name, limit] :
       {std::pair<const char*, absl::Duration>{"lock_timeout", options_.lock_timeout},
        {"statement_timeout", options_.statement_timeout},
        {"idle_in_transaction_session_timeout", options_.idle_in_transaction_timeout}}) {
    // Session-wide (is_local false): every later transaction on it.
    n.exec_params("SELECT set_config($1, $2, false)", name,
                  absl::StrCat(absl::ToInt64Milliseconds(limit), "ms"));
  }
}

bool PgStore::CanAcquire() const { return !idle_.empty() || open_ < options_.pool_size; }

absl::StatusOr<std::unique_ptr<pqxx::connection>> PgStore::Acquire() {
  bool replacing = false;
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &PgStore::CanAcquire),
                              options_.acquire_timeout)) {
      return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                   "no database connection became free in time");
    }
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
    ++open_;
    replacing = lost_ > 0;
    if (replacing) --lost_;
  }
  // Connecting takes a round trip or a timeout: not under the lock.
  try {
    auto conn = std::make_unique<pqxx::connection>(options_.database_url);
    SetSessionLimits(*conn);
    if (replacing) Metrics::Get().DatabaseReconnect("pool");
    return conn;
  } catch (const std::exception& e) {
    {
      absl::MutexLock lock(&mu_);
      --open_;
      if (replacing) ++lost_;
    }
    Metrics::Get().DatabaseError("unavailable");
    return Error(absl::StatusCode::kUnavailable, reason::kDatabaseUnavailable,
                 "the database is unavailable");
  }
}

void PgStore::Release(std::unique_ptr<pqxx::connection> conn) {
  absl::MutexLock lock(&mu_);
  if (conn && conn->is_open()) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
    ++lost_;  // The next connection opened replaces it.
  }
}

void PgStore::DropIdle() {
  absl::MutexLock lock(&mu_);
  int dropped = static_cast<int>(idle_.size());
  idle_.clear();
  open_ -= dropped;
  lost_ += dropped;
}

absl::Status PgStore::RunInTransaction(const std::function<absl::Status(Transaction&)>& fn) {
  absl::Status status;
  for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
    ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> conn, Acquire());
    std::optional<DatabaseError> failure;
    bool committing = false;
    std::vector<v1::AuditEvent> committed;
    try {
      pqxx::work w(*conn);
      PgTransaction tx(w);
      status = fn(tx);
      if (tx.context().failure()) {
        // The database refused a statement, and with it the rest of the
        // transaction: that error is the outcome. w's destructor rolls back.
        failure = tx.context().failure();
      } else if (status.ok()) {
        committing = true;
        w.commit();
        if (options_.on_committed_event) committed = tx.context().inserted();
      } else {
        w.abort();
      }
    } catch (const std::exception& e) {
      // The commit, the rollback, or something else below fn.
      failure = MapException(e);
      if (committing && failure->connection_lost) {
        // The server may have committed before it went away (a primary
        // killed while waiting for its standby): never run it again blindly.
        failure->connection_lost = false;
        failure->in_doubt = true;
        failure->status = MapException(pqxx::in_doubt_error(e.what())).status;
      }
    }
    if (!failure && status.ok()) {
      // Committed: the outcome is OK whatever the hook does, so a throw
      // from it is logged, never turned into an error or a retry.
      for (const v1::AuditEvent& e : committed) {
        try {
          options_.on_committed_event(e);
        } catch (const std::exception& hook_error) {
          Log("error", "on_committed_event failed after the commit",
              {{"event", e.name()}, {"error", hook_error.what()}});
        }
      }
    }
    if (failure) {
      status = failure->status;
      CountError(*failure);
      // A broken connection is not returned to the pool; in doubt, it
      // cannot be trusted either.
      if (failure->connection_lost || failure->in_doubt) {
        conn.reset();
        // The idle ones most likely reached the same server (a primary that
        // died or became a standby): drop them now rather than one failed
        // attempt each, so that the retry below opens a connection to
        // whichever node is primary now.
        DropIdle();
      }
    }
    Release(std::move(conn));
    // Lost before the commit: nothing was written, so running again is safe.
    // In doubt: never retried blindly.
    bool retry = postgres::Retryable(status) || (failure && failure->connection_lost);
    if (status.ok() || !retry || attempt == kMaxAttempts) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * attempt));
  }
  if (ReasonOf(status) == postgres::kRetryReason) {
    return Error(absl::StatusCode::kAborted, reason::kConflict,
                 "a concurrent call with the same request_id is in progress; try again");
  }
  return status;
}

absl::StatusOr<std::string> PgStore::SharedSecret(const std::string& name,
                                                  const std::string& initial) {
  std::string fresh = initial;
  if (fresh.empty()) {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) {
      return Error(absl::StatusCode::kInternal, reason::kInternal, "no randomness");
    }
    fresh.assign(reinterpret_cast<char*>(bytes), sizeof bytes);
  }
  std::string value;
  ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> conn, Acquire());
  absl::Status status;
  try {
    pqxx::work w(*conn);
    w.exec_params(
        "INSERT INTO server_secrets (name, value) VALUES ($1, decode($2, 'base64')) "
        "ON CONFLICT (name) DO NOTHING",
        name, absl::Base64Escape(fresh));
    auto r =
        w.exec_params1("SELECT encode(value, 'hex') FROM server_secrets WHERE name = $1", name);
    value = absl::HexStringToBytes(r[0].as<std::string>());
    w.commit();
  } catch (const std::exception& e) {
    status = MapException(e).status;
    conn.reset();
  }
  Release(std::move(conn));
  if (!status.ok()) return status;
  return value;
}

bool PgStore::Ping() {
  auto conn = Acquire();
  if (!conn.ok()) return false;
  bool ok = true;
  try {
    pqxx::nontransaction n(**conn);
    n.exec("SELECT 1");
  } catch (const std::exception&) {
    ok = false;
    conn->reset();
  }
  Release(std::move(*conn));
  return ok;
}

}  // namespace lockbox
