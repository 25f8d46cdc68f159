// OperationsStore on PostgreSQL. Not thread-safe: one per transaction.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_OPERATIONS_STORE_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_OPERATIONS_STORE_H_

#include "server/store/operations_store.h"
#include "server/store/postgres/context.h"

namespace lockbox::postgres {

class PgOperationsStore final : public OperationsStore {
 public:
  // `tx` is not owned and outlives this store.
  explicit PgOperationsStore(TxContext& tx) : tx_(tx) {}

  absl::StatusOr<std::optional<IdempotencyRecord>> GetIdempotencyRecord(
      const std::string& caller, const std::string& request_id) override;
  absl::StatusOr<bool> ClaimRequestId(const std::string& caller,
                                      const std::string& request_id) override;
  absl::Status PutIdempotencyRecord(const std::string& caller, const std::string& request_id,
                                    const IdempotencyRecord& record, absl::Time now) override;
  absl::StatusOr<bool> RecordTokenUse(const std::string& issuer, const std::string& jti,
                                      absl::Time expire_time, absl::Time now) override;
  absl::StatusOr<int> PurgeTokenUses(absl::Time now, int limit) override;
  absl::StatusOr<OperationalCounts> CountOperational(absl::Time now) override;

 private:
  TxContext& tx_;
};

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_OPERATIONS_STORE_H_
