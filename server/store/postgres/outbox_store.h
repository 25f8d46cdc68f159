// OutboxStore on PostgreSQL. Not thread-safe: one per transaction.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_OUTBOX_STORE_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_OUTBOX_STORE_H_

#include "server/store/outbox_store.h"
#include "server/store/postgres/context.h"

namespace lockbox::postgres {

class PgOutboxStore final : public OutboxStore {
 public:
  // `tx` is not owned and outlives this store.
  explicit PgOutboxStore(TxContext& tx) : tx_(tx) {}

  absl::Status EnqueueMessages(const std::vector<OutboundMessage>& messages,
                               absl::Time now) override;
  absl::StatusOr<std::vector<v1::Notification>> ListNotifications(const ListQuery& query) override;
  absl::StatusOr<std::vector<DueMessage>> LockDue(int limit,
                                                  const std::vector<std::string>& busy) override;
  absl::StatusOr<std::vector<Delivery>> ClaimDeliveries(const std::vector<std::string>& ids,
                                                        const std::string& lease_token,
                                                        absl::Duration lease) override;
  absl::StatusOr<int> RenewLeases(const std::vector<std::string>& ids,
                                  const std::string& lease_token, absl::Duration lease) override;
  absl::Status Postpone(const std::vector<std::string>& ids, const std::string& lease_token,
                        absl::Duration retry_after, const std::string& why) override;
  absl::StatusOr<bool> RecordAttempt(const std::string& id, const std::string& lease_token,
                                     bool delivered, const std::string& error, bool give_up,
                                     absl::Duration retry_after, absl::Time now) override;

 private:
  TxContext& tx_;
};

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_OUTBOX_STORE_H_
