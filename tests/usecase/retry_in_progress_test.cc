// A retry that arrives while its first attempt is still running: told that
// the first attempt is in progress (ABORTED REQUEST_IN_PROGRESS, retry the
// same request_id), never a misleading conflict; once the first attempt
// commits, the retry gets its answer.
#include <gtest/gtest.h>

#include <chrono>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "tests/support/demo_app_test.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

class RetryInProgressTest : public DemoAppTest {};

TEST_F(RetryInProgressTest, ARetryDuringTheFirstAttemptIsToldToRetryAndThenGetsItsAnswer) {
  v1::CreateAccessRequestRequest ask = DemoWorld::Ask();
  ask.set_request_id("0d1e5a38-7c1f-4a7e-9a3b-5b8f6d2c4e10");

  // Hold the first attempt inside its transaction: another session has the
  // tenant's audit chain lock (PgAuditStore::LockHead) that it needs.
  pqxx::connection raw(app_->database().url());
  auto holder = std::make_unique<pqxx::work>(raw);
  for (const char* tenant : {"ma", "tenants/ma"}) {
    holder->exec_params("SELECT pg_advisory_xact_lock(19522, hashtext($1))", tenant);
  }
  absl::StatusOr<v1::AccessRequest> first;
  std::thread attempt([&] { first = use_cases().requests().CreateAccessRequest(w().engineer, ask); });
  // Until it waits on that lock.
  pqxx::connection probe(app_->database().url());
  bool waiting = false;
  for (int i = 0; i < 200 && !waiting; ++i) {
    pqxx::nontransaction n(probe);
    waiting = n.exec("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0][0]
                  .as<int>() > 0;
    if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(waiting);

  auto retry = use_cases().requests().CreateAccessRequest(w().engineer, ask);
  ASSERT_FALSE(retry.ok());
  EXPECT_EQ(retry.status().code(), absl::StatusCode::kAborted) << retry.status();
  EXPECT_EQ(ReasonOf(retry.status()), "REQUEST_IN_PROGRESS") << retry.status();
  EXPECT_NE(retry.status().message().find("retry the same request_id"), std::string::npos)
      << retry.status();

  holder->abort();
  attempt.join();
  ASSERT_TRUE(first.ok()) << first.status();
  auto again = use_cases().requests().CreateAccessRequest(w().engineer, ask);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->name(), first->name());
  EXPECT_EQ(again->etag(), first->etag());
}

}  // namespace
}  // namespace lockbox::testing
