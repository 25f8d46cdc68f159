// The grant aggregate: grants, read with the read-time expiry rule applied to
// filters on state, and the sweep's claim on grants whose time is up.
//
// Reached through Transaction::grants(); owned by the transaction and valid
// until it ends. Not thread-safe: it belongs to the transaction's call.
// Errors are statuses (see store.h), never exceptions.
#ifndef LOCKBOX_SERVER_STORE_GRANT_STORE_H_
#define LOCKBOX_SERVER_STORE_GRANT_STORE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/store/list_query.h"

namespace lockbox {

class GrantStore {
 public:
  virtual ~GrantStore() = default;

  // Sets the grant's etag; publishes ChangeTopic::kAccess "<tenant>/<id>" on
  // commit.
  virtual absl::Status InsertGrant(const std::string& tenant, const std::string& id,
                                   v1::Grant* grant) = 0;
  // As recorded (the caller applies the read-time state).
  virtual absl::StatusOr<v1::Grant> GetGrant(const std::string& tenant, const std::string& id,
                                             bool for_update) = 0;
  // Writes state, end_time, expire_time (an extension moves it) and
  // extensions; sets the new etag and publishes
  // ChangeTopic::kAccess "<tenant>/<id>" on commit.
  // REQUIRES: the grant exists.
  virtual absl::Status UpdateGrant(const std::string& tenant, const std::string& id,
                                   v1::Grant* grant) = 0;
  // Newest first. A condition on state means the effective state at
  // query.now.
  virtual absl::StatusOr<std::vector<v1::Grant>> ListGrants(const ListQuery& query) = 0;
  // Grants of `principal` on the environment still ACTIVE as recorded
  // (whatever their times: SCHEDULED and past their end too; the caller
  // applies the rule).
  virtual absl::StatusOr<std::vector<v1::Grant>> ActiveGrants(
      const std::string& principal, const std::string& tenant,
      const std::string& environment_id) = 0;
  // Every grant whose effective state at `now` is ACTIVE or SCHEDULED
  // (domain RecordedStatesOfUnendedGrants): a replica's grant view holds
  // both, so that a scheduled grant starts allowing there by itself.
  virtual absl::StatusOr<std::vector<v1::Grant>> AllActiveGrants(absl::Time now) = 0;
  // The grants with these "tenant/id" keys; missing ones are left out.
  virtual absl::StatusOr<std::vector<v1::Grant>> GetGrantsByKey(
      const std::vector<std::string>& keys) = 0;

  // One grant still recorded ACTIVE whose expire_time has come, locked, or
  // nullopt when none is left that another replica does not hold.
  virtual absl::StatusOr<std::optional<ClaimedRow>> ClaimExpiredGrant(absl::Time now) = 0;

  // Break-glass: serialises the emergency opens of `principal` in `tenant`
  // (a lock held until this transaction ends, so that two racing opens
  // cannot both see none), then returns their emergency grants still
  // ACTIVE at `now`.
  virtual absl::StatusOr<std::vector<v1::Grant>> LockActiveEmergencyGrants(
      const std::string& tenant, const std::string& principal, absl::Time now) = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_GRANT_STORE_H_
