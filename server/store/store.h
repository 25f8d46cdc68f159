// The store: everything Lockbox keeps, behind an interface so the domain and
// application layers never see SQL. A Transaction is one database
// transaction; every state change and its audit event go through one.
//
// Errors: NOT_FOUND, ALREADY_EXISTS (unique violation), ABORTED (conflict,
// retried by RunInTransaction), UNAVAILABLE (database unreachable or the
// commit's outcome unknown). Never exceptions.
#ifndef LOCKBOX_SERVER_STORE_STORE_H_
#define LOCKBOX_SERVER_STORE_STORE_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lockbox/v1/audit_service.pb.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/filter.h"
#include "server/domain/identity.h"
#include "server/domain/notifications.h"
#include "server/domain/page_token.h"

namespace lockbox {

struct ListQuery {
  // Tenants to look in; nullopt means all.
  std::optional<std::vector<std::string>> tenants;
  // When set, only rows whose principal column (requester, grant principal,
  // binding principal) is this one.
  std::string principal;
  std::vector<Condition> conditions;
  std::optional<Cursor> after;
  int limit = 50;
  // For conditions on state, which is read as of this time.
  absl::Time now;
};

// A tenant-scoped row a sweep claimed: locked for this transaction, skipped
// by every other replica's sweep until it commits.
struct ClaimedRow {
  std::string tenant;
  std::string id;
};

// An outbox message claimed for sending.
struct Delivery {
  OutboundMessage message;
  int attempts = 0;            // Including this one.
  std::string webhook_secret;  // The tenant's, for webhooks.
};

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

// Not thread-safe: one transaction belongs to one call.
class Transaction {
 public:
  virtual ~Transaction() = default;

  virtual absl::Status InsertTenant(const v1::Tenant& tenant) = 0;
  virtual absl::StatusOr<v1::Tenant> GetTenant(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<v1::Tenant>> ListTenants(
      const ListQuery& query) = 0;

  // Sets the policy's etag.
  virtual absl::Status InsertPolicy(const std::string& tenant,
                                    v1::LockboxPolicy* policy) = 0;
  virtual absl::StatusOr<v1::LockboxPolicy> GetPolicy(const std::string& tenant,
                                                      bool for_update) = 0;
  virtual absl::Status UpdatePolicy(const std::string& tenant,
                                    v1::LockboxPolicy* policy) = 0;

  virtual absl::Status InsertEnvironment(const std::string& tenant,
                                         const std::string& id,
                                         v1::Environment* env) = 0;
  virtual absl::StatusOr<v1::Environment> GetEnvironment(
      const std::string& tenant, const std::string& id, bool for_update) = 0;
  virtual absl::Status UpdateEnvironment(const std::string& tenant,
                                         const std::string& id,
                                         v1::Environment* env) = 0;
  virtual absl::StatusOr<std::vector<v1::Environment>> ListEnvironments(
      const ListQuery& query) = 0;

  virtual absl::Status InsertRoleBinding(const std::string& id,
                                         const v1::RoleBinding& binding) = 0;
  virtual absl::StatusOr<v1::RoleBinding> GetRoleBinding(const std::string& id,
                                                         bool for_update) = 0;
  virtual absl::Status DeleteRoleBinding(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<v1::RoleBinding>> ListRoleBindings(
      const ListQuery& query) = 0;
  virtual absl::StatusOr<std::vector<Binding>> BindingsOf(
      const std::string& principal) = 0;
  // Every principal bound to the global `role`.
  virtual absl::StatusOr<std::vector<std::string>> PrincipalsWithRole(Role role) = 0;

  virtual absl::Status InsertAccessRequest(const std::string& tenant,
                                           const std::string& id,
                                           v1::AccessRequest* request) = 0;
  virtual absl::StatusOr<v1::AccessRequest> GetAccessRequest(
      const std::string& tenant, const std::string& id, bool for_update) = 0;
  virtual absl::Status UpdateAccessRequest(const std::string& tenant,
                                           const std::string& id,
                                           v1::AccessRequest* request) = 0;
  virtual absl::StatusOr<std::vector<v1::AccessRequest>> ListAccessRequests(
      const ListQuery& query) = 0;
  // The requests with these IDs (any tenant); missing ones are left out.
  virtual absl::StatusOr<std::vector<v1::AccessRequest>> GetAccessRequestsById(
      const std::vector<std::string>& ids) = 0;

  virtual absl::Status InsertGrant(const std::string& tenant,
                                   const std::string& id, v1::Grant* grant) = 0;
  virtual absl::StatusOr<v1::Grant> GetGrant(const std::string& tenant,
                                             const std::string& id,
                                             bool for_update) = 0;
  virtual absl::Status UpdateGrant(const std::string& tenant,
                                   const std::string& id, v1::Grant* grant) = 0;
  virtual absl::StatusOr<std::vector<v1::Grant>> ListGrants(
      const ListQuery& query) = 0;
  // Grants of `principal` on the environment still ACTIVE as recorded.
  virtual absl::StatusOr<std::vector<v1::Grant>> ActiveGrants(
      const std::string& principal, const std::string& tenant,
      const std::string& environment_id) = 0;
  // Every grant ACTIVE as recorded whose expire_time is after `now`.
  virtual absl::StatusOr<std::vector<v1::Grant>> AllActiveGrants(absl::Time now) = 0;
  // The grants with these "tenant/id" keys; missing ones are left out.
  virtual absl::StatusOr<std::vector<v1::Grant>> GetGrantsByKey(
      const std::vector<std::string>& keys) = 0;

  // Appends to the event's tenant chain: sets sequence, name, previous_hash
  // and hash.
  virtual absl::Status AppendAuditEvent(v1::AuditEvent* event) = 0;
  virtual absl::StatusOr<std::vector<v1::AuditEvent>> ListAuditEvents(
      const std::string& tenant, const ListQuery& query) = 0;
  // The log's head (sequence 0 and "" when empty), locked until commit so
  // that no event is appended meanwhile.
  virtual absl::StatusOr<std::pair<int64_t, std::string>> LockAuditHead(
      const std::string& tenant) = 0;
  virtual absl::Status InsertCheckpoint(const v1::AuditCheckpoint& checkpoint) = 0;
  // Checkpoints with sequence > after, in order.
  virtual absl::StatusOr<std::vector<v1::AuditCheckpoint>> ListCheckpoints(
      const std::string& tenant, int64_t after, int limit) = 0;
  // Logs whose head is past their last checkpoint, and whose last
  // checkpoint (if any) was signed before `signed_before`.
  virtual absl::StatusOr<std::vector<std::string>> LogsDueForCheckpoint(absl::Time signed_before,
                                                                      int limit) = 0;
  // Events of the tenant's log with sequence > after, in order.
  virtual absl::StatusOr<std::vector<v1::AuditEvent>> ReadAuditLog(
      const std::string& tenant, int64_t after, int limit) = 0;

  // E-mail addresses of the bindings of `role` (in `tenant` for tenant
  // roles), leaving out `except_principal`'s.
  virtual absl::StatusOr<std::vector<std::string>> ContactEmails(
      Role role, const std::string& tenant, const std::string& except_principal) = 0;
  virtual absl::StatusOr<std::vector<std::string>> EmailsOf(const std::string& principal) = 0;
  // The tenant's webhook URL and secret ("" when none).
  virtual absl::StatusOr<std::pair<std::string, std::string>> Webhook(
      const std::string& tenant) = 0;
  virtual absl::Status SetWebhook(const std::string& tenant, const std::string& url,
                                  const std::string& secret) = 0;

  // The outbox.
  virtual absl::Status EnqueueMessages(const std::vector<OutboundMessage>& messages,
                                       absl::Time now) = 0;
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

  // Time-driven work: one due row, locked, or nullopt when none is left
  // that another replica does not hold.
  virtual absl::StatusOr<std::optional<ClaimedRow>> ClaimExpiredRequest(absl::Time now) = 0;
  virtual absl::StatusOr<std::optional<ClaimedRow>> ClaimExpiredGrant(absl::Time now) = 0;
  // A PENDING request expiring before `expiring_before` not yet reminded.
  virtual absl::StatusOr<std::optional<ClaimedRow>> ClaimReminder(absl::Time now,
                                                                  absl::Time expiring_before) = 0;
  virtual absl::Status MarkReminded(const std::string& tenant, const std::string& id) = 0;

  virtual absl::StatusOr<std::optional<IdempotencyRecord>> GetIdempotencyRecord(
      const std::string& caller, const std::string& request_id) = 0;
  // ABORTED (retried by RunInTransaction) if another call stored one first.
  virtual absl::Status PutIdempotencyRecord(const std::string& caller,
                                            const std::string& request_id,
                                            const IdempotencyRecord& record,
                                            absl::Time now) = 0;

  // Counts across every tenant, for the metrics (cheap: partial indexes).
  virtual absl::StatusOr<OperationalCounts> CountOperational(absl::Time now) = 0;
};

// What a ChangeFeed tells about.
enum class ChangeTopic {
  // Payload: the access request's UUID.
  kAccessRequests,
  // Payload: "<tenant>/<grant id>" for a grant, "bindings" when any role
  // binding was made or deleted.
  kAccess,
};

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
  // Runs fn in a new transaction and commits if it returns OK. Conflicts
  // (serialization failures, deadlocks, idempotency races) and connections
  // lost before the commit are retried a few times with fn run again, so fn
  // must do nothing outside the transaction.
  virtual absl::Status RunInTransaction(
      const std::function<absl::Status(Transaction&)>& fn) = 0;
  // A secret shared by all replicas, made the first time it is asked:
  // `initial` if given, else 32 random bytes.
  virtual absl::StatusOr<std::string> SharedSecret(const std::string& name,
                                                   const std::string& initial = "") = 0;
  // Whether the database answers now.
  virtual bool Ping() = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_STORE_H_
