// The pool's session limits (PgStoreOptions): a transaction stuck holding a
// lock, as a replica frozen mid-transaction leaves one, holds another
// replica's writes only until lock_timeout, which then fail with
// UNAVAILABLE DATABASE_BUSY instead of hanging; and PostgreSQL ends a
// session idle inside a transaction, releasing what it held.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "server/domain/status.h"
#include "server/store/postgres/pg_store.h"
#include "tests/support/harness.h"

namespace lockbox {
namespace {

using Clock = std::chrono::steady_clock;

// The audit chain's lock of `tenant`, as PgAuditStore::LockHead takes it.
constexpr char kHeadLock[] = "SELECT pg_advisory_xact_lock(19522, hashtext($1))";

class SessionLimitsTest : public ::testing::Test {
 protected:
  std::unique_ptr<PgStore> Store(absl::Duration lock, absl::Duration idle) {
    PgStoreOptions options;
    options.database_url = db_.url();
    options.pool_size = 2;
    options.lock_timeout = lock;
    options.idle_in_transaction_timeout = idle;
    auto store = PgStore::Create(std::move(options));
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  testing::TestDatabase db_;
};

TEST_F(SessionLimitsTest, AWriteBehindAStuckLockFailsRetryablyAfterTheLockTimeout) {
  auto store = Store(absl::Seconds(1), absl::Seconds(30));
  ASSERT_NE(store, nullptr);
  // Another session (a frozen replica's) holds tenant t1's head lock.
  pqxx::connection raw(db_.url());
  auto stuck = std::make_unique<pqxx::work>(raw);
  stuck->exec_params(kHeadLock, "t1");

  auto start = Clock::now();
  absl::Status s = store->RunInTransaction(
      [](Transaction& tx) { return tx.audit().LockHead("t1").status(); });
  auto waited = Clock::now() - start;
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(ReasonOf(s), "DATABASE_BUSY") << s;
  EXPECT_LT(waited, std::chrono::seconds(10));
  // Other tenants' writes never waited.
  EXPECT_TRUE(store->RunInTransaction([](Transaction& tx) {
                     return tx.audit().LockHead("t2").status();
                   }).ok());

  // Once it lets go, the same write goes through on the same pool.
  stuck->abort();
  stuck.reset();
  s = store->RunInTransaction([](Transaction& tx) { return tx.audit().LockHead("t1").status(); });
  EXPECT_TRUE(s.ok()) << s;
}

TEST_F(SessionLimitsTest, ASessionIdleInATransactionIsEndedAndItsLocksReleased) {
  auto store = Store(absl::Seconds(30), absl::Seconds(1));
  ASSERT_NE(store, nullptr);
  std::atomic<int> attempts{0};
  std::atomic<bool> stalled_done{false};
  std::atomic<bool> got_lock_while_stalled{false};
  std::thread other([&] {
    // Waits (no lock_timeout on this session) for the stalled attempt's
    // lock, which PostgreSQL frees when it ends that session.
    while (attempts.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    pqxx::connection raw(db_.url());
    pqxx::work w(raw);
    w.exec_params(kHeadLock, "t1");
    got_lock_while_stalled = !stalled_done.load();
    w.commit();
  });
  absl::Status s = store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    if (++attempts > 1) return absl::OkStatus();
    RETURN_IF_ERROR(tx.audit().LockHead("t1").status());
    // The replica stalls mid-transaction, well past the idle limit.
    std::this_thread::sleep_for(std::chrono::seconds(4));
    stalled_done = true;
    // Its session is gone: the statement fails, nothing was committed, and
    // the store runs the transaction again on a new connection.
    return tx.audit().LockHead("t1").status();
  });
  other.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(attempts.load(), 2);
  EXPECT_TRUE(got_lock_while_stalled.load());
}

}  // namespace
}  // namespace lockbox
