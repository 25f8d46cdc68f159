// The store: everything Lockbox keeps, behind interfaces so the domain and
// application layers never see SQL. A Transaction is one database
// transaction; it hands out one store per aggregate (tenancy_store.h,
// request_store.h, grant_store.h, audit_store.h, outbox_store.h,
// operations_store.h, key_store.h). The PostgreSQL implementation is in postgres/.
//
// Errors, from every method of every part: NOT_FOUND, ALREADY_EXISTS (unique
// violation), FAILED_PRECONDITION (a row it refers to is missing), ABORTED
// (conflict, retried by RunInTransaction), UNAVAILABLE (database unreachable
// or the commit's outcome unknown), INTERNAL. Statuses, never exceptions: no
// exception escapes a store method.
#ifndef LOCKBOX_SERVER_STORE_STORE_H_
#define LOCKBOX_SERVER_STORE_STORE_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/audit_store.h"
#include "server/store/grant_store.h"
#include "server/store/key_store.h"
#include "server/store/list_query.h"
#include "server/store/operations_store.h"
#include "server/store/outbox_store.h"
#include "server/store/request_store.h"
#include "server/store/tenancy_store.h"

namespace lockbox {

// One database transaction, handing out the store of each aggregate. Every
// state change and its audit event and outbox rows go through one.
//
// Ownership: made by Store::RunInTransaction, which owns it and the parts it
// hands out; they are valid only inside the function given to it. Not
// thread-safe: one transaction belongs to one call.
//
// Once the database has raised an error in any part's method (a conflict, a
// unique violation, a lost connection), it refuses the rest of the
// transaction: every later call returns that same error, and
// RunInTransaction returns it (retrying it if it may) whatever the function
// returned. A NOT_FOUND for a missing row is only an answer and leaves the
// transaction usable.
class Transaction {
 public:
  virtual ~Transaction() = default;

  virtual TenancyStore& tenancy() = 0;
  virtual RequestStore& requests() = 0;
  virtual GrantStore& grants() = 0;
  virtual AuditStore& audit() = 0;
  virtual OutboxStore& outbox() = 0;
  virtual OperationsStore& operations() = 0;
  // Encryption policies and their key versions (SPEC section 9).
  virtual KeyStore& keys() = 0;
};

// What a ChangeFeed tells about.
enum class ChangeTopic {
  // Payload: the access request's UUID.
  kAccessRequests,
  // Payload: "<tenant>/<grant id>" for a grant, "bindings" when any role
  // binding was made or deleted, kEnvironmentChanged + "<tenant>/<id>" when
  // an environment changed, kPolicyChanged + "<tenant>" when a tenant's
  // lockbox policy did (what a grant covers depends on both).
  kAccess,
  // Payload: "<tenant>" when any of its encryption policies or key versions
  // changed (server/store/key_store.h).
  kKeys,
};
inline constexpr char kEnvironmentChanged[] = "environment:";
inline constexpr char kPolicyChanged[] = "policy:";

// Tells what changed, across every replica. Changes are published by the
// transaction that makes them, when it commits. Thread-safe.
class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;
  // Runs until Stop(): calls on_change(payload) for each committed change,
  // and on_gap() whenever changes may have been missed: each time it starts
  // listening (the first time included), and as soon as the connection is
  // found lost. What a reader loads after an on_gap() is complete: every
  // later change is notified.
  virtual void Run(const std::function<void(const std::string&)>& on_change,
                   const std::function<void()>& on_gap) = 0;
  virtual void Stop() = 0;
  // Whether the feed has seen its connection working within `within`: a
  // feed that cannot say so may have missed changes without knowing.
  virtual bool AliveWithin(absl::Duration within) const = 0;
};

// Thread-safe.
class Store {
 public:
  virtual ~Store() = default;
  // Runs fn in a new transaction and commits if it returns OK (and no
  // store method met a database error). Conflicts (serialization failures,
  // deadlocks, idempotency races) and connections lost before the commit are
  // retried a few times with fn run again, so fn must do nothing outside the
  // transaction. A commit whose outcome is unknown is never retried: it
  // returns UNAVAILABLE. The Transaction given to fn is owned by this call.
  virtual absl::Status RunInTransaction(const std::function<absl::Status(Transaction&)>& fn) = 0;
  // A secret shared by all replicas, made the first time it is asked:
  // `initial` if given, else 32 random bytes.
  virtual absl::StatusOr<std::string> SharedSecret(const std::string& name,
                                                   const std::string& initial = "") = 0;
  // Whether the database answers now.
  virtual bool Ping() = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_STORE_H_
