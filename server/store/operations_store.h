// What the server keeps for its own running rather than for a resource: the
// request_id records that make a retried change return its first response,
// the on-behalf-of tokens already used, and the counts the metrics read.
//
// Reached through Transaction::operations(); owned by the transaction and
// valid until it ends. Not thread-safe: it belongs to the transaction's call.
// Errors are statuses (see store.h), never exceptions.
#ifndef LOCKBOX_SERVER_STORE_OPERATIONS_STORE_H_
#define LOCKBOX_SERVER_STORE_OPERATIONS_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lockbox {

struct IdempotencyRecord {
  std::string method;
  std::string request_hash;
  std::string response;  // The serialized response message.
};

// What the metrics read from the database, in one snapshot.
struct OperationalCounts {
  // Pending access requests by AccessRequest::Stage value.
  std::map<int, int64_t> pending_by_stage;
  int64_t active_grants = 0;
  int64_t outbox_pending = 0;
  int64_t outbox_failed = 0;
  // The earliest end time not yet recorded (a pending request's or an
  // active grant's), if any.
  std::optional<absl::Time> earliest_due;
};

class OperationsStore {
 public:
  virtual ~OperationsStore() = default;

  virtual absl::StatusOr<std::optional<IdempotencyRecord>> GetIdempotencyRecord(
      const std::string& caller, const std::string& request_id) = 0;
  // Holds (caller, request_id) until this transaction ends, without
  // waiting: false when another transaction holds it, i.e. an attempt with
  // that request_id is still running.
  virtual absl::StatusOr<bool> ClaimRequestId(const std::string& caller,
                                              const std::string& request_id) = 0;
  // ABORTED (retried by RunInTransaction) if another call stored one first.
  virtual absl::Status PutIdempotencyRecord(const std::string& caller,
                                            const std::string& request_id,
                                            const IdempotencyRecord& record, absl::Time now) = 0;

  // Records the use of the token (issuer, jti) valid until `expire_time`.
  // False when it was used before and that use has not expired; the first
  // of two concurrent uses wins (the second waits on the key and gets
  // false).
  virtual absl::StatusOr<bool> RecordTokenUse(const std::string& issuer, const std::string& jti,
                                              absl::Time expire_time, absl::Time now) = 0;
  // Forgets uses whose token expired at or before `now`, at most `limit` of
  // them; returns how many.
  virtual absl::StatusOr<int> PurgeTokenUses(absl::Time now, int limit) = 0;

  // Counts across every tenant, for the metrics (cheap: partial indexes).
  virtual absl::StatusOr<OperationalCounts> CountOperational(absl::Time now) = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_OPERATIONS_STORE_H_
