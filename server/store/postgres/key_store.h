// KeyStore on PostgreSQL. Not thread-safe: one per transaction.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_KEY_STORE_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_KEY_STORE_H_

#include "server/store/key_store.h"
#include "server/store/postgres/context.h"

namespace lockbox::postgres {

class PgKeyStore final : public KeyStore {
 public:
  // `tx` is not owned and outlives this store.
  explicit PgKeyStore(TxContext& tx) : tx_(tx) {}

  absl::Status InsertPolicy(const std::string& tenant, v1::EncryptionPolicy* policy) override;
  absl::StatusOr<v1::EncryptionPolicy> GetPolicy(const std::string& tenant,
                                                 const std::string& policy_id,
                                                 bool for_update) override;
  absl::StatusOr<std::vector<v1::EncryptionPolicy>> ListPolicies(const std::string& tenant,
                                                                 const ListQuery& query) override;
  absl::Status UpdatePolicy(const std::string& tenant, v1::EncryptionPolicy* policy) override;
  absl::Status InsertKeyVersion(const StoredKeyVersion& version) override;
  absl::StatusOr<StoredKeyVersion> GetKeyVersion(const std::string& tenant,
                                                 const std::string& policy_id,
                                                 int32_t version) override;
  absl::Status SetKeyVersionState(const std::string& tenant, const std::string& policy_id,
                                  int32_t version, v1::KeyVersion::State state) override;
  absl::StatusOr<std::optional<v1::EncryptionPolicy>> PolicyCovering(
      const std::string& tenant, const std::string& environment_id) override;
  absl::StatusOr<std::optional<v1::EncryptionPolicy>> LockboxDataPolicy(
      const std::string& tenant) override;
  absl::StatusOr<std::vector<ProbedKey>> ProbedKeys() override;

 private:
  TxContext& tx_;
};

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_KEY_STORE_H_
