// AuditStore on PostgreSQL. Not thread-safe: one per transaction.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_AUDIT_STORE_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_AUDIT_STORE_H_

#include "server/store/audit_store.h"
#include "server/store/postgres/context.h"

namespace lockbox::postgres {

class PgAuditStore final : public AuditStore {
 public:
  // `tx` is not owned and outlives this store.
  explicit PgAuditStore(TxContext& tx) : tx_(tx) {}

  absl::StatusOr<ChainHead> LockHead(const std::string& tenant) override;
  absl::StatusOr<ChainHead> ReadHead(const std::string& tenant) override;
  absl::Status InsertEvent(const v1::AuditEvent& event) override;
  // One multi-row INSERT for all of them.
  absl::Status InsertEvents(const std::vector<v1::AuditEvent>& events) override;
  absl::Status InsertCheckpoint(const v1::AuditCheckpoint& checkpoint) override;
  absl::StatusOr<std::vector<v1::AuditEvent>> ListEvents(const std::string& tenant,
                                                         const ListQuery& query) override;
  absl::StatusOr<std::vector<v1::AuditEvent>> ReadLog(const std::string& tenant, int64_t after,
                                                      int limit) override;
  absl::StatusOr<std::vector<v1::AuditCheckpoint>> ListCheckpoints(const std::string& tenant,
                                                                   int64_t after,
                                                                   int limit) override;
  absl::StatusOr<std::vector<std::string>> LogsDueForCheckpoint(absl::Time signed_before,
                                                                int limit) override;
  absl::Status PublishSigningKey(const v1::AuditPublicKey& key, absl::Time now,
                                 bool ephemeral) override;
  absl::StatusOr<std::vector<v1::AuditPublicKey>> ListSigningKeys() override;

 private:
  TxContext& tx_;
};

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_AUDIT_STORE_H_
