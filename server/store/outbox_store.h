// The outbox aggregate: messages written by the transaction whose change
// they announce, and their deliveries, claimed and recorded by the sender of
// every replica.
//
// Reached through Transaction::outbox(); owned by the transaction and valid
// until it ends. Not thread-safe: it belongs to the transaction's call.
// Errors are statuses (see store.h), never exceptions.
#ifndef LOCKBOX_SERVER_STORE_OUTBOX_STORE_H_
#define LOCKBOX_SERVER_STORE_OUTBOX_STORE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/notifications.h"
#include "server/store/list_query.h"

namespace lockbox {

// An outbox message claimed for sending.
struct Delivery {
  OutboundMessage message;
  int attempts = 0;            // Including this one.
  std::string webhook_secret;  // The tenant's, for webhooks.
};

class OutboxStore {
 public:
  virtual ~OutboxStore() = default;

  // PENDING, due now.
  virtual absl::Status EnqueueMessages(const std::vector<OutboundMessage>& messages,
                                       absl::Time now) = 0;
  // Newest first.
  virtual absl::StatusOr<std::vector<v1::Notification>> ListNotifications(
      const ListQuery& query) = 0;
  // Claims up to `limit` due messages that no replica is sending, for
  // `lease`, and counts the attempt. Scheduling (due times, leases) runs on
  // the database's clock, the one clock every replica shares, so clock skew
  // between replicas can never make two of them send the same message.
  virtual absl::StatusOr<std::vector<Delivery>> ClaimDeliveries(absl::Duration lease,
                                                                int limit) = 0;
  // After an attempt: delivered (at `now`), or failed and either retried
  // `retry_after` from now or, when `give_up`, FAILED for good.
  virtual absl::Status RecordAttempt(const std::string& id, bool delivered,
                                     const std::string& error, bool give_up,
                                     absl::Duration retry_after, absl::Time now) = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_OUTBOX_STORE_H_
