// RequestStore on PostgreSQL. Not thread-safe: one per transaction.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_REQUEST_STORE_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_REQUEST_STORE_H_

#include "server/store/postgres/context.h"
#include "server/store/request_store.h"

namespace lockbox::postgres {

class PgRequestStore final : public RequestStore {
 public:
  // `tx` is not owned and outlives this store.
  explicit PgRequestStore(TxContext& tx) : tx_(tx) {}

  absl::Status InsertAccessRequest(const std::string& tenant, const std::string& id,
                                   v1::AccessRequest* request) override;
  absl::StatusOr<v1::AccessRequest> GetAccessRequest(const std::string& tenant,
                                                     const std::string& id,
                                                     bool for_update) override;
  absl::Status UpdateAccessRequest(const std::string& tenant, const std::string& id,
                                   v1::AccessRequest* request) override;
  absl::StatusOr<std::vector<v1::AccessRequest>> ListAccessRequests(
      const ListQuery& query) override;
  absl::StatusOr<std::vector<v1::AccessRequest>> GetAccessRequestsById(
      const std::vector<std::string>& ids) override;
  absl::StatusOr<std::optional<std::string>> FindPendingExtension(const std::string& tenant,
                                                                  const std::string& grant_id,
                                                                  absl::Time now) override;
  absl::StatusOr<std::optional<ClaimedRow>> ClaimExpiredRequest(absl::Time now) override;
  absl::StatusOr<std::optional<ClaimedRow>> ClaimReminder(absl::Time now,
                                                          absl::Time expiring_before) override;
  absl::Status MarkReminded(const std::string& tenant, const std::string& id) override;
  absl::StatusOr<std::optional<ClaimedRow>> ClaimEmergencyReminder(
      absl::Time now, absl::Time first_due_by, absl::Time second_due_by) override;
  absl::Status SetEmergencyReminders(const std::string& tenant, const std::string& id,
                                     int sent) override;
  absl::StatusOr<std::optional<ClaimedRow>> ClaimOverdueReview(absl::Time now) override;

 private:
  TxContext& tx_;
};

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_REQUEST_STORE_H_
