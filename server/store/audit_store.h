// The audit aggregate: each tenant's hash-chained log of events (the global
// log is the tenant ""), its head, and its signed checkpoints. The store
// persists what the domain decided: linking an event after the head
// (domain/audit_link.h) and signing checkpoints happen above it, in
// app/audit_log.h.
//
// Reached through Transaction::audit(); owned by the transaction and valid
// until it ends. Not thread-safe: it belongs to the transaction's call.
// Errors are statuses (see store.h), never exceptions.
#ifndef LOCKBOX_SERVER_STORE_AUDIT_STORE_H_
#define LOCKBOX_SERVER_STORE_AUDIT_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lockbox/v1/audit_service.pb.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/audit_link.h"
#include "server/store/list_query.h"

namespace lockbox {

class AuditStore {
 public:
  virtual ~AuditStore() = default;

  // The log's head (sequence 0 and "" when empty), locked until the
  // transaction ends so that no other transaction appends meanwhile: appends
  // to one log queue here.
  virtual absl::StatusOr<ChainHead> LockHead(const std::string& tenant) = 0;
  // The log's head as this statement sees it, without a lock: where a
  // reader that walks the log in several transactions stops.
  virtual absl::StatusOr<ChainHead> ReadHead(const std::string& tenant) = 0;
  // Stores an event linked after the head and makes it the head. After the
  // commit, the store's on-committed hook sees it.
  // REQUIRES: LockHead(event.tenant()) in this transaction, and `event`
  // linked after that head (LinkAuditEvent) or after the last event
  // inserted since.
  virtual absl::Status InsertEvent(const v1::AuditEvent& event) = 0;
  // Stores events of one log, each linked after the one before it (the
  // first after the head), as InsertEvent one by one would; a store may do
  // it in one statement. REQUIRES: as InsertEvent's, for the first.
  virtual absl::Status InsertEvents(const std::vector<v1::AuditEvent>& events) {
    for (const v1::AuditEvent& e : events) {
      absl::Status inserted = InsertEvent(e);
      if (!inserted.ok()) return inserted;
    }
    return absl::OkStatus();
  }
  // ALREADY_EXISTS if the log has a checkpoint at that sequence.
  virtual absl::Status InsertCheckpoint(const v1::AuditCheckpoint& checkpoint) = 0;

  // In sequence order, filtered.
  virtual absl::StatusOr<std::vector<v1::AuditEvent>> ListEvents(const std::string& tenant,
                                                                 const ListQuery& query) = 0;
  // Events of the tenant's log with sequence > after, in order.
  virtual absl::StatusOr<std::vector<v1::AuditEvent>> ReadLog(const std::string& tenant,
                                                              int64_t after, int limit) = 0;
  // Checkpoints with sequence > after, in order.
  virtual absl::StatusOr<std::vector<v1::AuditCheckpoint>> ListCheckpoints(
      const std::string& tenant, int64_t after, int limit) = 0;
  // Logs whose head is past their last checkpoint, and whose last
  // checkpoint (if any) was signed before `signed_before`.
  virtual absl::StatusOr<std::vector<std::string>> LogsDueForCheckpoint(absl::Time signed_before,
                                                                        int limit) = 0;

  // Records a checkpoint signing key's public half (key_id, public_key_pem,
  // algorithm) as first used at `now`; a key already recorded keeps its
  // first use.
  virtual absl::Status PublishSigningKey(const v1::AuditPublicKey& key, absl::Time now,
                                         bool ephemeral) = 0;
  // Every key recorded, in order of first use, with valid_from and (all but
  // the last) valid_until: when the next key took over.
  virtual absl::StatusOr<std::vector<v1::AuditPublicKey>> ListSigningKeys() = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_AUDIT_STORE_H_
