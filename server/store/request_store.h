// The access-request aggregate: requests, read with the read-time expiry rule
// applied to filters on state, and the sweeps' claims on requests that time
// has decided or that need a reminder.
//
// Reached through Transaction::requests(); owned by the transaction and
// valid until it ends. Not thread-safe: it belongs to the transaction's call.
// Errors are statuses (see store.h), never exceptions.
#ifndef LOCKBOX_SERVER_STORE_REQUEST_STORE_H_
#define LOCKBOX_SERVER_STORE_REQUEST_STORE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/store/list_query.h"

namespace lockbox {

class RequestStore {
 public:
  virtual ~RequestStore() = default;

  // Sets the request's etag.
  virtual absl::Status InsertAccessRequest(const std::string& tenant, const std::string& id,
                                           v1::AccessRequest* request) = 0;
  // As recorded (the caller applies the read-time state).
  virtual absl::StatusOr<v1::AccessRequest> GetAccessRequest(const std::string& tenant,
                                                             const std::string& id,
                                                             bool for_update) = 0;
  // Writes state, stage, decisions, grant, update_time, start_time (an
  // approver may move it later) and emergency_review; sets the new etag
  // and publishes ChangeTopic::kAccessRequests `id` on commit.
  // REQUIRES: the request exists.
  virtual absl::Status UpdateAccessRequest(const std::string& tenant, const std::string& id,
                                           v1::AccessRequest* request) = 0;
  // Newest first. A condition on state means the effective state at
  // query.now.
  virtual absl::StatusOr<std::vector<v1::AccessRequest>> ListAccessRequests(
      const ListQuery& query) = 0;
  // The requests with these IDs (any tenant); missing ones are left out.
  virtual absl::StatusOr<std::vector<v1::AccessRequest>> GetAccessRequestsById(
      const std::vector<std::string>& ids) = 0;

  // The ID of an extension of grant `grant_id` (extends_grant) still
  // PENDING at `now`, or nullopt when none is. The caller serialises
  // extensions of one grant by holding its row FOR UPDATE.
  virtual absl::StatusOr<std::optional<std::string>> FindPendingExtension(
      const std::string& tenant, const std::string& grant_id, absl::Time now) = 0;

  // One request still recorded open whose expire_time has come, locked, or
  // nullopt when none is left that another replica does not hold.
  virtual absl::StatusOr<std::optional<ClaimedRow>> ClaimExpiredRequest(absl::Time now) = 0;
  // An open request expiring in (now, expiring_before] not yet reminded.
  virtual absl::StatusOr<std::optional<ClaimedRow>> ClaimReminder(absl::Time now,
                                                                  absl::Time expiring_before) = 0;
  virtual absl::Status MarkReminded(const std::string& tenant, const std::string& id) = 0;

  // Break-glass reviews (domain/emergency.h). An OPEN review not yet past
  // its due time (> now) owing a reminder: none sent and due by
  // `first_due_by`, or one sent and due by `second_due_by`.
  virtual absl::StatusOr<std::optional<ClaimedRow>> ClaimEmergencyReminder(
      absl::Time now, absl::Time first_due_by, absl::Time second_due_by) = 0;
  // Records how many reminders of the review were sent.
  virtual absl::Status SetEmergencyReminders(const std::string& tenant, const std::string& id,
                                             int sent) = 0;
  // An OPEN review whose due time has come (<= now), not yet recorded
  // overdue.
  virtual absl::StatusOr<std::optional<ClaimedRow>> ClaimOverdueReview(absl::Time now) = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_REQUEST_STORE_H_
