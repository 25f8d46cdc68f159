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
  // The webhook URL's authority (host:port), "" for e-mail: what the
  // per-destination cap counts.
  std::string destination;
  // The claim's: only its holder renews the lease or records the outcome.
  std::string lease_token;
};

// A due message no replica holds, locked by the transaction that found it.
struct DueMessage {
  std::string id;
  std::string destination;
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
  // Up to `limit` due messages that no replica holds and that go to none
  // of `busy` destinations, oldest due first, locked until this
  // transaction ends (passing over those another transaction has locked).
  // Scheduling (due times, leases) runs on the database's clock, the one
  // clock every replica shares, so clock skew between replicas can never
  // make two of them send the same message.
  virtual absl::StatusOr<std::vector<DueMessage>> LockDue(int limit,
                                                          const std::vector<std::string>& busy) = 0;
  // Claims `ids` (locked by LockDue in this transaction) under
  // `lease_token` for `lease`, and counts the attempt.
  virtual absl::StatusOr<std::vector<Delivery>> ClaimDeliveries(const std::vector<std::string>& ids,
                                                                const std::string& lease_token,
                                                                absl::Duration lease) = 0;
  // Extends, to `lease` from now, the lease of those of `ids` still held
  // under `lease_token`; returns how many it extended.
  virtual absl::StatusOr<int> RenewLeases(const std::vector<std::string>& ids,
                                          const std::string& lease_token, absl::Duration lease) = 0;
  // After an attempt under `lease_token`: delivered (at `now`), or failed
  // and either retried `retry_after` from now or, when `give_up`, FAILED for
  // good. False, recording nothing, when the lease is no longer this
  // token's (it ran out and another replica claimed the message).
  // Gives back messages claimed under `lease_token` in this transaction
  // unsent, uncounted (their attempt is not made): still PENDING, due again
  // `retry_after` from now, `why` as their last error. For messages that
  // cannot be opened yet (their tenant's key is revoked): they wait.
  virtual absl::Status Postpone(const std::vector<std::string>& ids, const std::string& lease_token,
                                absl::Duration retry_after, const std::string& why) = 0;
  virtual absl::StatusOr<bool> RecordAttempt(const std::string& id, const std::string& lease_token,
                                             bool delivered, const std::string& error, bool give_up,
                                             absl::Duration retry_after, absl::Time now) = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_OUTBOX_STORE_H_
