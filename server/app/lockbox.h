// The application layer: one method per RPC. Each authenticates the caller
// against the role bindings, authorises before it reveals whether anything
// exists, and runs the whole change (resource, grant, audit event and
// request_id record) in one transaction. The gRPC services are thin adapters
// over this class; tests drive it the same way.
//
// Thread-safe: one instance serves every call.
#ifndef LOCKBOX_SERVER_APP_LOCKBOX_H_
#define LOCKBOX_SERVER_APP_LOCKBOX_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/empty.pb.h"
#include "lockbox/v1/access_request_service.pb.h"
#include "lockbox/v1/audit_service.pb.h"
#include "lockbox/v1/grant_service.pb.h"
#include "lockbox/v1/notification_service.pb.h"
#include "lockbox/v1/policy_service.pb.h"
#include "server/app/audit_log.h"
#include "server/app/grant_view.h"
#include "server/domain/clock.h"
#include "server/domain/audit_signing.h"
#include "server/domain/identity.h"
#include "server/domain/notifications.h"
#include "server/domain/page_token.h"
#include "server/store/store.h"

namespace lockbox {

// What the transport knows of the caller: the SPIFFE ID of the verified
// client certificate, and the on-behalf-of header if one was sent.
struct CallerIdentity {
  std::string spiffe_id;
  std::string on_behalf_of;
};

struct LockboxOptions {
  Store* store = nullptr;         // Not owned; outlives the Lockbox.
  const Clock* clock = nullptr;   // Not owned; outlives the Lockbox.
  std::string trust_domain;
  std::string page_token_key;     // Shared by all replicas.
  const AuditSigner* audit_signer = nullptr;  // Not owned; signs checkpoints.
  // Not owned. When set, CheckAccess answers "allowed" from it.
  GrantView* grant_view = nullptr;
  // Every this many events of a log, the append also signs a checkpoint
  // (with audit_signer); 0: only on demand and when idle.
  int audit_checkpoint_events = 0;
};

class Lockbox {
 public:
  explicit Lockbox(LockboxOptions options);

  // Makes sure `spiffe_id` (an operator) holds lockbox.admin.
  absl::Status EnsureBootstrapAdmin(const std::string& spiffe_id);

  using C = CallerIdentity;
  // PolicyService
  absl::StatusOr<v1::Tenant> CreateTenant(const C& c, const v1::CreateTenantRequest& r);
  absl::StatusOr<v1::Tenant> GetTenant(const C& c, const v1::GetTenantRequest& r);
  absl::StatusOr<v1::ListTenantsResponse> ListTenants(const C& c, const v1::ListTenantsRequest& r);
  absl::StatusOr<v1::LockboxPolicy> GetLockboxPolicy(const C& c,
                                                     const v1::GetLockboxPolicyRequest& r);
  absl::StatusOr<v1::LockboxPolicy> UpdateLockboxPolicy(
      const C& c, const v1::UpdateLockboxPolicyRequest& r);
  absl::StatusOr<v1::Environment> CreateEnvironment(const C& c,
                                                    const v1::CreateEnvironmentRequest& r);
  absl::StatusOr<v1::Environment> GetEnvironment(const C& c, const v1::GetEnvironmentRequest& r);
  absl::StatusOr<v1::ListEnvironmentsResponse> ListEnvironments(
      const C& c, const v1::ListEnvironmentsRequest& r);
  absl::StatusOr<v1::Environment> UpdateEnvironment(const C& c,
                                                    const v1::UpdateEnvironmentRequest& r);
  absl::StatusOr<v1::RoleBinding> CreateRoleBinding(const C& c,
                                                    const v1::CreateRoleBindingRequest& r);
  absl::StatusOr<v1::ListRoleBindingsResponse> ListRoleBindings(
      const C& c, const v1::ListRoleBindingsRequest& r);
  absl::StatusOr<google::protobuf::Empty> DeleteRoleBinding(
      const C& c, const v1::DeleteRoleBindingRequest& r);

  // AccessRequestService
  absl::StatusOr<v1::AccessRequest> CreateAccessRequest(
      const C& c, const v1::CreateAccessRequestRequest& r);
  absl::StatusOr<v1::AccessRequest> GetAccessRequest(const C& c,
                                                     const v1::GetAccessRequestRequest& r);
  absl::StatusOr<v1::ListAccessRequestsResponse> ListAccessRequests(
      const C& c, const v1::ListAccessRequestsRequest& r);
  absl::StatusOr<v1::AccessRequest> ApproveAccessRequest(
      const C& c, const v1::ApproveAccessRequestRequest& r);
  absl::StatusOr<v1::AccessRequest> DenyAccessRequest(const C& c,
                                                      const v1::DenyAccessRequestRequest& r);
  absl::StatusOr<v1::AccessRequest> CancelAccessRequest(
      const C& c, const v1::CancelAccessRequestRequest& r);

  // GrantService
  absl::StatusOr<v1::Grant> GetGrant(const C& c, const v1::GetGrantRequest& r);
  absl::StatusOr<v1::ListGrantsResponse> ListGrants(const C& c, const v1::ListGrantsRequest& r);
  absl::StatusOr<v1::CheckAccessResponse> CheckAccess(const C& c,
                                                      const v1::CheckAccessRequest& r);
  // CheckAccess's answer when it needs no database (a bad argument, or an
  // active grant in this replica's view); nullopt when CheckAccess must
  // read the database. Never blocks.
  std::optional<absl::StatusOr<v1::CheckAccessResponse>> CheckAccessFromMemory(
      const C& c, const v1::CheckAccessRequest& r);
  // CheckAccess's database path alone: for a caller that has already asked
  // CheckAccessFromMemory and got nullopt.
  absl::StatusOr<v1::CheckAccessResponse> CheckAccessFromDatabase(const C& c,
                                                                  const v1::CheckAccessRequest& r);
  absl::StatusOr<v1::Grant> ReleaseGrant(const C& c, const v1::ReleaseGrantRequest& r);
  absl::StatusOr<v1::Grant> RevokeGrant(const C& c, const v1::RevokeGrantRequest& r);

  // AuditService
  absl::StatusOr<v1::ListAuditEventsResponse> ListAuditEvents(
      const C& c, const v1::ListAuditEventsRequest& r);
  absl::StatusOr<v1::VerifyAuditLogResponse> VerifyAuditLog(const C& c,
                                                            const v1::VerifyAuditLogRequest& r);

  absl::StatusOr<v1::AuditCheckpoint> CreateAuditCheckpoint(
      const C& c, const v1::CreateAuditCheckpointRequest& r);
  absl::StatusOr<v1::ListAuditCheckpointsResponse> ListAuditCheckpoints(
      const C& c, const v1::ListAuditCheckpointsRequest& r);
  absl::StatusOr<v1::AuditPublicKey> GetAuditPublicKey(const C& c,
                                                       const v1::GetAuditPublicKeyRequest& r);
  // Streams the filtered log in `r.format()` to `write` in chunks, reading a
  // page at a time so memory stays flat however large the log. `write`
  // returns false when the client has gone.
  absl::Status ExportAuditEvents(const C& c, const v1::ExportAuditEventsRequest& r,
                                 const std::function<bool(const std::string&)>& write);
  // Signs the head of every log idle past `max_age` since its last
  // checkpoint. Returns how many it signed.
  absl::StatusOr<int> CheckpointIdleLogs(absl::Duration max_age);

  // NotificationService
  absl::StatusOr<v1::ListNotificationsResponse> ListNotifications(
      const C& c, const v1::ListNotificationsRequest& r);

  // What time decides, recorded by the sweep of every replica. Each call
  // handles one due item in one transaction (state, audit event and
  // messages) and says whether there was one; replicas never take the same.
  absl::StatusOr<bool> ExpireOneRequest();
  absl::StatusOr<bool> ExpireOneGrant();
  // Reminds the approvers of one request expiring within 24 hours, once.
  absl::StatusOr<bool> RemindOne();

 private:
  // Resolves the caller into an Actor: parses the SPIFFE ID, loads the
  // bindings, and applies the on-behalf-of header (service.portal only).
  absl::StatusOr<Actor> Authenticate(Transaction& tx, const CallerIdentity& c);

  // Records a refused on-behalf-of attempt in its own transaction (the
  // call's transaction rolled back): in the claimed user's tenant log when
  // that tenant exists, else in the global log.
  void AuditRefusal(const CallerIdentity& c, const absl::Status& refusal);

  // Runs a read in a transaction with the authenticated actor.
  template <typename R>
  absl::StatusOr<R> Read(const CallerIdentity& c,
                         const std::function<absl::StatusOr<R>(Transaction&, const Actor&,
                                                               absl::Time)>& fn);

  // Runs a change in one transaction. With a request_id, the first response
  // is stored with the change, and a retry returns it without running fn.
  template <typename R>
  absl::StatusOr<R> Change(const CallerIdentity& c, absl::string_view method,
                           const google::protobuf::Message& request,
                           const std::string& request_id,
                           const std::function<absl::StatusOr<R>(Transaction&, const Actor&,
                                                                 absl::Time)>& fn);

  // Signs `tenant`'s head now, unless its last checkpoint already covers it.
  absl::StatusOr<v1::AuditCheckpoint> Checkpoint(Transaction& tx, const std::string& tenant,
                                                 absl::Time now);

  // Everyone who may be told about `request`.
  absl::StatusOr<Contacts> ContactsFor(Transaction& tx, const v1::AccessRequest& request);
  // Puts the messages for `event` in the outbox of this transaction.
  absl::Status Notify(Transaction& tx, RequestEvent event, const v1::AccessRequest& request,
                      const v1::Grant* grant, absl::Time now);

  absl::Status NotifyDecision(Transaction& tx, const v1::AccessRequest& request,
                              const v1::Grant& grant, absl::Time now);

  // Drops the grant from this replica's view after a call that may have
  // ended it.
  void ForgetGrant(const std::string& tenant, const std::string& id);

  // Fills the ListQuery's cursor from a page token bound to `query_key`.
  absl::Status StartPage(absl::string_view query_key, const std::string& page_token,
                         int page_size, ListQuery* query);

  LockboxOptions options_;
  PageTokenCodec page_tokens_;
  AuditLog audit_log_;
};

// An audit event by `actor` at `now`, in `tenant`'s log.
v1::AuditEvent NewAuditEvent(const Actor& actor, absl::string_view action,
                             absl::string_view tenant, absl::string_view resource,
                             absl::Time now);
// The actor of what time decides.
Actor SystemActor();

// Copies the source product's request fields into an audit event.
void SetRequestFields(const v1::AccessRequest& request, v1::AuditEvent* event);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_LOCKBOX_H_
