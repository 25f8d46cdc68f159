// The application's view of Lockbox's own keys (SPEC section 9): for each
// key version, the policy key that wraps data planes' data keys and the
// tenant data key that seals Lockbox's own fields, unwrapped by the
// customer's key inside its module (KeyModule) and held in a bounded cache.
//
// Revocation: the cache drops a tenant's keys when ChangeTopic::kKeys
// "<tenant>" is notified, is trusted only while that feed has proved its
// connection recently (as the grant view is), and a prober uses every
// enabled key in its module several times a second, so that a disabled
// policy or a key that stops answering refuses on every replica within a
// second. A key found failing marks its policy KEY_UNAVAILABLE (audited);
// found answering again, ACTIVE.
//
// Thread-safe.
#ifndef LOCKBOX_SERVER_APP_KEY_RING_H_
#define LOCKBOX_SERVER_APP_KEY_RING_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/domain/aead.h"
#include "server/store/store.h"

namespace lockbox {

// One unwrapped key of one key version.
struct VersionKey {
  std::string tenant;     // "" for the provider's key.
  std::string policy_id;  // "" for the provider's key.
  int32_t version = 0;
  std::shared_ptr<const SecretKey> key;
};

// Errors of every method: FAILED_PRECONDITION KEY_UNAVAILABLE when the
// policy or version is disabled, or its key does not answer in its module
// (the message says which); NOT_FOUND for a version that does not exist;
// UNAVAILABLE when the database or module cannot be reached.
//
// `tx`: reads go through it when given (a caller inside a transaction),
// else the ring opens its own. The ring reads only on a cache miss or
// while its feed is not proved alive.
class KeyRing {
 public:
  virtual ~KeyRing() = default;

  // The policy key for a new data key of (tenant, environment ID, data
  // source): the primary version of the policy covering the environment
  // when the data source supports customer keys (cmk_supported), else the
  // provider's key (tenant and policy_id empty).
  virtual absl::StatusOr<VersionKey> DataPlaneKeyForNew(Transaction* tx, const std::string& tenant,
                                                        const std::string& environment_id,
                                                        const std::string& data_source) = 0;
  // The policy key of a stored version (policy_id "" for the provider's).
  virtual absl::StatusOr<VersionKey> DataPlaneKey(Transaction* tx, const std::string& tenant,
                                                  const std::string& policy_id,
                                                  int32_t version) = 0;
  // The tenant data key new sealed values use: nullopt when no policy of
  // the tenant protects Lockbox's data (its fields stay plain).
  virtual absl::StatusOr<std::optional<VersionKey>> SealingKeyForNew(
      Transaction* tx, const std::string& tenant) = 0;
  // The tenant data key of a stored version, to open a sealed value.
  virtual absl::StatusOr<VersionKey> SealingKey(Transaction* tx, const std::string& tenant,
                                                const std::string& policy_id,
                                                int32_t version) = 0;
  // DataPlaneKey when the ring can answer it from memory alone, with no
  // read and no module call, and the answer is a usable key: held, and its
  // state vouched for by a live feed. nullopt otherwise (then ask
  // DataPlaneKey, which refuses with the reason).
  virtual std::optional<VersionKey> HeldDataPlaneKey(const std::string& tenant,
                                                     const std::string& policy_id,
                                                     int32_t version) {
    return std::nullopt;
  }
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_KEY_RING_H_
