// GrantStore on PostgreSQL. Not thread-safe: one per transaction.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_GRANT_STORE_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_GRANT_STORE_H_

#include "server/store/grant_store.h"
#include "server/store/postgres/context.h"

namespace lockbox::postgres {

class PgGrantStore final : public GrantStore {
 public:
  // `tx` is not owned and outlives this store.
  explicit PgGrantStore(TxContext& tx) : tx_(tx) {}

  absl::Status InsertGrant(const std::string& tenant, const std::string& id,
                           v1::Grant* grant) override;
  absl::StatusOr<v1::Grant> GetGrant(const std::string& tenant, const std::string& id,
                                     bool for_update) override;
  absl::Status UpdateGrant(const std::string& tenant, const std::string& id,
                           v1::Grant* grant) override;
  absl::StatusOr<std::vector<v1::Grant>> ListGrants(const ListQuery& query) override;
  absl::StatusOr<std::vector<v1::Grant>> ActiveGrants(const std::string& principal,
                                                      const std::string& tenant,
                                                      const std::string& environment_id) override;
  absl::StatusOr<std::vector<v1::Grant>> AllActiveGrants(absl::Time now) override;
  absl::StatusOr<std::vector<v1::Grant>> GetGrantsByKey(
      const std::vector<std::string>& keys) override;
  absl::StatusOr<std::optional<ClaimedRow>> ClaimExpiredGrant(absl::Time now) override;
  absl::StatusOr<std::vector<v1::Grant>> LockActiveEmergencyGrants(const std::string& tenant,
                                                                   const std::string& principal,
                                                                   absl::Time now) override;

 private:
  TxContext& tx_;
};

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_GRANT_STORE_H_
