// What the aggregate stores of one PostgreSQL transaction share: the open
// libpqxx transaction, the first database error it met, and the audit
// events it inserted (for the hook that runs after the commit).
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_CONTEXT_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_CONTEXT_H_

#include <exception>
#include <optional>
#include <pqxx/transaction>
#include <utility>
#include <vector>

#include "lockbox/v1/resources.pb.h"
#include "server/store/postgres/errors.h"

namespace lockbox::postgres {

// Not thread-safe: one per transaction, used by its call only.
class TxContext {
 public:
  // `work` is not owned and outlives the context.
  explicit TxContext(pqxx::work& work) : work_(work) {}

  // Runs one store method's statements: the only place the aggregate stores
  // touch the database, so that no exception escapes them. Returns what `f`
  // returns, or the mapped error if it threw. After a database error the
  // transaction is refused by PostgreSQL, so every later call returns that
  // first error without sending anything.
  // REQUIRES: f returns absl::Status or absl::StatusOr<T>.
  template <typename F>
  auto Run(F&& f) -> decltype(f(std::declval<pqxx::work&>())) {
    if (failure_) return failure_->status;
    try {
      return f(work_);
    } catch (const std::exception& e) {
      failure_ = MapException(e);
      return failure_->status;
    }
  }

  // The first database error, if any: what the transaction ends with.
  const std::optional<DatabaseError>& failure() const { return failure_; }

  void AddInserted(const v1::AuditEvent& event) { inserted_.push_back(event); }
  const std::vector<v1::AuditEvent>& inserted() const { return inserted_; }

 private:
  pqxx::work& work_;
  std::optional<DatabaseError> failure_;
  std::vector<v1::AuditEvent> inserted_;
};

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_CONTEXT_H_
