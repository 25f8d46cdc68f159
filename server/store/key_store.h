// The keys aggregate (SPEC section 9): tenants' encryption policies and the
// versions of their keys, each with Lockbox's own keys for it wrapped by the
// customer's key inside its PKCS#11 module (the bytes stored here are
// useless without that module).
//
// Reached through Transaction::keys(); owned by the transaction and valid
// until it ends. Not thread-safe. Errors are statuses (see store.h).
//
// Every change to a policy or a version publishes ChangeTopic::kKeys
// "<tenant>" on commit, so that every replica's key ring drops what it holds
// for the tenant.
#ifndef LOCKBOX_SERVER_STORE_KEY_STORE_H_
#define LOCKBOX_SERVER_STORE_KEY_STORE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lockbox/v1/resources.pb.h"
#include "server/store/list_query.h"

namespace lockbox {

// A key version as stored.
struct StoredKeyVersion {
  std::string tenant;
  std::string policy_id;  // The last segment of the policy's name.
  v1::KeyVersion version;
  // 32 bytes each, wrapped (KeyModule::Wrap) by version.key_uri:
  // the key that wraps data planes' data keys,
  std::string wrapped_policy_key;
  // and the tenant data key that seals Lockbox's own fields (used only when
  // the policy protects Lockbox's data).
  std::string wrapped_data_key;
};

// A key version the prober should keep trying: enabled, of a policy that
// is not DISABLED.
struct ProbedKey {
  std::string tenant;
  std::string policy_id;
  int32_t version = 0;
  std::string key_uri;
  v1::EncryptionPolicy::State policy_state = v1::EncryptionPolicy::STATE_UNSPECIFIED;
};

class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // The policy without its key_versions (filled from the versions when
  // read). Sets the etag. ALREADY_EXISTS if the ID is taken.
  virtual absl::Status InsertPolicy(const std::string& tenant, v1::EncryptionPolicy* policy) = 0;
  // With key_versions and primary_version filled. With `for_update`, locked
  // until the transaction ends. NOT_FOUND if none.
  virtual absl::StatusOr<v1::EncryptionPolicy> GetPolicy(const std::string& tenant,
                                                         const std::string& policy_id,
                                                         bool for_update) = 0;
  // By ID.
  virtual absl::StatusOr<std::vector<v1::EncryptionPolicy>> ListPolicies(
      const std::string& tenant, const ListQuery& query) = 0;
  // Sets the new etag. REQUIRES: the policy exists.
  virtual absl::Status UpdatePolicy(const std::string& tenant, v1::EncryptionPolicy* policy) = 0;

  virtual absl::Status InsertKeyVersion(const StoredKeyVersion& version) = 0;
  // NOT_FOUND if none.
  virtual absl::StatusOr<StoredKeyVersion> GetKeyVersion(const std::string& tenant,
                                                         const std::string& policy_id,
                                                         int32_t version) = 0;
  virtual absl::Status SetKeyVersionState(const std::string& tenant, const std::string& policy_id,
                                          int32_t version, v1::KeyVersion::State state) = 0;

  // The policy covering the environment, if any.
  virtual absl::StatusOr<std::optional<v1::EncryptionPolicy>> PolicyCovering(
      const std::string& tenant, const std::string& environment_id) = 0;
  // The tenant's policy whose key seals Lockbox's own data, if any.
  virtual absl::StatusOr<std::optional<v1::EncryptionPolicy>> LockboxDataPolicy(
      const std::string& tenant) = 0;
  // Every key version the prober tries, across tenants.
  virtual absl::StatusOr<std::vector<ProbedKey>> ProbedKeys() = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_KEY_STORE_H_
