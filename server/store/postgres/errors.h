// Where libpqxx exceptions stop: the one function that maps them to
// statuses, following the SQLSTATE classes libpqxx mirrors. Pure functions:
// thread-safe.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_ERRORS_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_ERRORS_H_

#include <exception>

#include "absl/status/status.h"

namespace lockbox::postgres {

// A retryable conflict produced by the store itself (not by PostgreSQL):
// the reason of an ABORTED status that RunInTransaction retries.
inline constexpr char kRetryReason[] = "LOCKBOX_RETRY";

// What an exception from libpqxx (or anything else thrown below a store
// method) means.
struct DatabaseError {
  absl::Status status;
  // The connection is gone before any commit was asked: nothing was
  // written, so the transaction may run again on a new connection.
  bool connection_lost = false;
  // The connection was lost during the commit: whether it happened is
  // unknown, so it is never retried blindly.
  bool in_doubt = false;
};

// The one mapping: in doubt -> UNAVAILABLE (never retried); broken
// connection, or a statement refused because the server is a standby now
// (SQLSTATE 25006) or is shutting down (57P01-57P03) -> UNAVAILABLE
// (retried on a new connection); serialization failure or deadlock ->
// ABORTED with reason CONFLICT (retried); lock or statement timeout ->
// UNAVAILABLE with reason DATABASE_BUSY (not retried here: the caller's
// retry comes after its backoff, not at once); unique violation ->
// ALREADY_EXISTS; foreign key violation -> FAILED_PRECONDITION; anything
// else -> INTERNAL, its text for the server's log only.
DatabaseError MapException(const std::exception& e);

// Whether RunInTransaction runs a transaction again after `status`.
bool Retryable(const absl::Status& status);

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_ERRORS_H_
