// liblockbox: the C++ client of Lockbox.
//
//   lockbox::Options options;
//   options.target = "lockbox.internal:8443";
//   options.ca_file = "ca.crt";
//   options.cert_file = "me.crt";
//   options.key_file = "me.key";
//   auto client = lockbox::Client::Create(options);
//   if (!client.ok()) ...
//   lockbox::v1::CreateAccessRequestRequest ask;  // parent, environment, ...
//   auto grant = (*client)->RequestAccess(ask, std::chrono::hours(4));
//   if (grant.ok()) { use grant->expire_time() }
//   else if (grant.reason() == lockbox::kRequestDenied) ...
//
// Every method returns a Result (a value or a grpc::Status); nothing throws.
// The library owns deadlines and retries: each call gets
// Options::default_deadline, and calls that failed with UNAVAILABLE are
// retried with exponential backoff. State-changing calls get a fresh
// request_id when the caller set none, so a retry never acts twice.
//
// Thread-safety: a Client may be used from any number of threads at once.
#ifndef LOCKBOX_CLIENT_INCLUDE_LOCKBOX_CLIENT_H_
#define LOCKBOX_CLIENT_INCLUDE_LOCKBOX_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "lockbox/error_reason.h"
#include "lockbox/v1/access_request_service.grpc.pb.h"
#include "lockbox/v1/audit_service.grpc.pb.h"
#include "lockbox/v1/encryption_policy_service.grpc.pb.h"
#include "lockbox/v1/grant_service.grpc.pb.h"
#include "lockbox/v1/key_service.grpc.pb.h"
#include "lockbox/v1/notification_service.grpc.pb.h"
#include "lockbox/v1/policy_service.grpc.pb.h"

namespace lockbox {

struct DecisionToSign;  // lockbox/decision.h

// Reasons RequestAccess gives when the request ended without a grant (all
// with FAILED_PRECONDITION), besides the server's own reasons (every reason
// is a lockbox.v1.ErrorReason; see lockbox/error_reason.h).
inline constexpr Reason kRequestDenied{v1::REQUEST_DENIED};
inline constexpr Reason kRequestCancelled{v1::REQUEST_CANCELLED};
inline constexpr Reason kRequestExpired{v1::REQUEST_EXPIRED};

struct RetryPolicy {
  // Attempts of one call, the first included (RequestAccess's waiting is
  // bounded by its own deadline instead).
  int max_attempts = 4;
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  double multiplier = 2.0;
};

struct Options {
  // host:port, or any gRPC target ("ipv4:10.0.0.1:8443,10.0.0.2:8443",
  // "dns:///lockbox.internal:8443").
  std::string target;
  // PEM files: the CA that signed the server's certificate, and this
  // caller's certificate (with its SPIFFE ID) and key.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // The name to expect in the server's certificate when the target does not
  // say it (e.g. "localhost" with an ipv4: target list).
  std::string server_name;
  std::chrono::milliseconds default_deadline{10000};
  RetryPolicy retry;
  // For a service.portal: the signed token (a JWT from an issuer the user's
  // tenant registered; docs/PORTAL_TOKENS.md) naming the tenant user every
  // call acts for. The server accepts each token once.
  std::string on_behalf_of;
  // ApproveAccessRequest (with its narrowing, if any) and DenyAccessRequest
  // sign a customer's decision with key_file's key (docs/SIGNED_DECISIONS.md)
  // unless the request carries a signature already. Never for on_behalf_of calls: the portal's
  // key is not the user's.
  bool sign_decisions = true;
};

// A value or the status that explains why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design.
  Result(grpc::Status status) : status_(std::move(status)) {}  // NOLINT
  bool ok() const { return status_.ok() && value_.has_value(); }
  const grpc::Status& status() const { return status_; }
  // The machine-readable reason from the error's ErrorInfo ("" if none).
  std::string reason() const;
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  grpc::Status status_;
  std::optional<T> value_;
};

// The machine-readable reason carried by a Lockbox error ("" if none).
std::string ReasonOf(const grpc::Status& status);

class Client {
 public:
  // Reads the certificate files; INVALID_ARGUMENT names the one that is bad.
  static Result<std::unique_ptr<Client>> Create(Options options);

  // --- RequestAccess: ask and wait for the decision ---------------------
  // Called with every state the request passes through while waiting.
  using Progress = std::function<void(const v1::AccessRequest&)>;
  // Creates the request (with a request_id, so a retry never makes a second
  // one) and blocks until it is decided or `timeout` passes. Returns the
  // grant when approved; otherwise FAILED_PRECONDITION with reason
  // REQUEST_DENIED, REQUEST_CANCELLED or REQUEST_EXPIRED, or
  // DEADLINE_EXCEEDED. Survives a server restart or a move to another
  // replica while it waits. A request with access_request.start_time (a
  // maintenance window) returns at approval with its grant SCHEDULED: it
  // allows nothing before grant.start_time.
  Result<v1::Grant> RequestAccess(v1::CreateAccessRequestRequest request,
                                  std::chrono::milliseconds timeout,
                                  const Progress& progress = nullptr);
  // The same for a request that already exists.
  Result<v1::Grant> WaitForDecision(const std::string& name, std::chrono::milliseconds timeout,
                                    const Progress& progress = nullptr);
  // RequestAccess without blocking the calling thread: the wait runs on a
  // library thread and the future becomes ready with the outcome.
  std::future<Result<v1::Grant>> RequestAccessAsync(v1::CreateAccessRequestRequest request,
                                                    std::chrono::milliseconds timeout,
                                                    Progress progress = nullptr);

  // --- ExtendGrant: ask for more time and wait for the decision ---------
  // The grant's engineer asks for `request.access_duration` more (default
  // and maximum the tenant policy's access_duration) with a justification:
  // an extension request (extends_grant set) that runs the same stages,
  // policy and quorum as any request. Like RequestAccess, creates it with a
  // request_id and blocks until it is decided or `timeout` passes, through
  // server restarts and moves to another replica; `progress` sees the
  // extension request's states. Returns the grant with its new expire_time
  // when approved; otherwise FAILED_PRECONDITION with REQUEST_DENIED,
  // REQUEST_CANCELLED (the grant was released or revoked meanwhile) or
  // REQUEST_EXPIRED (undecided when the request's time, at most the
  // grant's end, ran out), or the server's refusal: GRANT_NOT_EXTENSIBLE
  // (ended, or an emergency grant), EXTENSIONS_EXHAUSTED (the policy's
  // max_extensions), EXTENSION_PENDING (one is already waiting; wait for it
  // with WaitForDecision), PERMISSION_DENIED (not the caller's grant); or
  // DEADLINE_EXCEEDED.
  Result<v1::Grant> ExtendGrant(v1::ExtendGrantRequest request, std::chrono::milliseconds timeout,
                                const Progress& progress = nullptr);
  // ExtendGrant without blocking the calling thread.
  std::future<Result<v1::Grant>> ExtendGrantAsync(v1::ExtendGrantRequest request,
                                                  std::chrono::milliseconds timeout,
                                                  Progress progress = nullptr);

  // --- PolicyService ----------------------------------------------------
  Result<v1::Tenant> CreateTenant(v1::CreateTenantRequest request);
  Result<v1::Tenant> GetTenant(const v1::GetTenantRequest& request);
  Result<v1::TenantIdentity> GetTenantIdentity(const v1::GetTenantIdentityRequest& request);
  Result<v1::TenantIdentity> UpdateTenantIdentity(v1::UpdateTenantIdentityRequest request);
  Result<v1::ListTenantsResponse> ListTenants(const v1::ListTenantsRequest& request);
  Result<v1::LockboxPolicy> GetLockboxPolicy(const v1::GetLockboxPolicyRequest& request);
  Result<v1::LockboxPolicy> UpdateLockboxPolicy(v1::UpdateLockboxPolicyRequest request);
  Result<v1::Environment> CreateEnvironment(v1::CreateEnvironmentRequest request);
  Result<v1::Environment> GetEnvironment(const v1::GetEnvironmentRequest& request);
  Result<v1::ListEnvironmentsResponse> ListEnvironments(
      const v1::ListEnvironmentsRequest& request);
  Result<v1::Environment> UpdateEnvironment(v1::UpdateEnvironmentRequest request);
  Result<v1::RoleBinding> CreateRoleBinding(v1::CreateRoleBindingRequest request);
  Result<v1::ListRoleBindingsResponse> ListRoleBindings(
      const v1::ListRoleBindingsRequest& request);
  Result<google::protobuf::Empty> DeleteRoleBinding(v1::DeleteRoleBindingRequest request);

  // --- AccessRequestService ---------------------------------------------
  Result<v1::AccessRequest> CreateAccessRequest(v1::CreateAccessRequestRequest request);
  Result<v1::AccessRequest> GetAccessRequest(const v1::GetAccessRequestRequest& request);
  Result<v1::ListAccessRequestsResponse> ListAccessRequests(
      const v1::ListAccessRequestsRequest& request);
  // With Options::sign_decisions, a decision at the customer stage is
  // signed with this client's key: without an etag the request is read
  // first for its etag (and stage; an internal-stage decision is sent
  // unsigned), and the signature covers that etag, so a request changed in
  // between is refused as stale. INVALID_ARGUMENT when the key cannot sign.
  Result<v1::AccessRequest> ApproveAccessRequest(v1::ApproveAccessRequestRequest request);
  Result<v1::AccessRequest> DenyAccessRequest(v1::DenyAccessRequestRequest request);
  Result<v1::AccessRequest> CancelAccessRequest(v1::CancelAccessRequestRequest request);
  // Break-glass (SPEC section 10): opens an emergency grant at once, for a
  // caller holding operator.engineer and operator.breakglass. `request`'s
  // access_request gets reason EMERGENCY; its incident_id and justification
  // are required. Returns the grant (the request is its access_request).
  Result<v1::Grant> OpenEmergencyAccess(v1::CreateAccessRequestRequest request);
  // A tenant.admin closes an emergency request's review. With
  // Options::sign_decisions it is signed with this client's key as a
  // customer decision is (the review's own bytes, lockbox/decision.h
  // ReviewToSign): without an etag the request is read first for it, and a
  // request changed in between is refused as stale. INVALID_ARGUMENT when
  // the key cannot sign.
  Result<v1::AccessRequest> ReviewEmergencyAccess(v1::ReviewEmergencyAccessRequest request);
  // Streams the request's states to `on_update` until it is terminal (the
  // last state is returned) or `timeout` passes. Reconnects if the stream
  // breaks.
  Result<v1::AccessRequest> WatchAccessRequest(const v1::WatchAccessRequestRequest& request,
                                               std::chrono::milliseconds timeout,
                                               const Progress& on_update = nullptr);

  // --- GrantService -----------------------------------------------------
  Result<v1::Grant> GetGrant(const v1::GetGrantRequest& request);
  Result<v1::ListGrantsResponse> ListGrants(const v1::ListGrantsRequest& request);
  Result<v1::CheckAccessResponse> CheckAccess(const v1::CheckAccessRequest& request);
  Result<v1::Grant> ReleaseGrant(v1::ReleaseGrantRequest request);
  Result<v1::Grant> RevokeGrant(v1::RevokeGrantRequest request);
  // Only asks: the extension request, without waiting for its decision.
  Result<v1::AccessRequest> ExtendGrant(v1::ExtendGrantRequest request);

  // --- AuditService -----------------------------------------------------
  Result<v1::ListAuditEventsResponse> ListAuditEvents(const v1::ListAuditEventsRequest& request);
  Result<v1::VerifyAuditLogResponse> VerifyAuditLog(const v1::VerifyAuditLogRequest& request);
  Result<v1::AuditCheckpoint> CreateAuditCheckpoint(const v1::CreateAuditCheckpointRequest& request);
  Result<v1::ListAuditCheckpointsResponse> ListAuditCheckpoints(
      const v1::ListAuditCheckpointsRequest& request);
  Result<v1::AuditPublicKeys> GetAuditPublicKey(const v1::GetAuditPublicKeyRequest& request);
  // Streams the export to `sink` chunk by chunk (returns false to stop).
  // Returns the number of bytes received.
  Result<int64_t> ExportAuditEvents(const v1::ExportAuditEventsRequest& request,
                                    const std::function<bool(const std::string&)>& sink,
                                    std::chrono::milliseconds timeout);

  // --- NotificationService ----------------------------------------------
  Result<v1::ListNotificationsResponse> ListNotifications(
      const v1::ListNotificationsRequest& request);

  // --- KeyService (a data plane, service.keyuser) ----------------------
  Result<v1::GenerateDataKeyResponse> GenerateDataKey(const v1::GenerateDataKeyRequest& request);
  Result<v1::UnwrapDataKeyResponse> UnwrapDataKey(const v1::UnwrapDataKeyRequest& request);
  Result<v1::RewrapDataKeyResponse> RewrapDataKey(const v1::RewrapDataKeyRequest& request);

  // --- EncryptionPolicyService ------------------------------------------
  Result<v1::EncryptionPolicy> CreateEncryptionPolicy(v1::CreateEncryptionPolicyRequest request);
  Result<v1::EncryptionPolicy> GetEncryptionPolicy(const v1::GetEncryptionPolicyRequest& request);
  Result<v1::ListEncryptionPoliciesResponse> ListEncryptionPolicies(
      const v1::ListEncryptionPoliciesRequest& request);
  Result<v1::EncryptionPolicy> UpdateEncryptionPolicy(v1::UpdateEncryptionPolicyRequest request);
  Result<v1::EncryptionPolicy> DisableEncryptionPolicy(
      v1::DisableEncryptionPolicyRequest request);
  Result<v1::EncryptionPolicy> EnableEncryptionPolicy(v1::EnableEncryptionPolicyRequest request);
  Result<v1::EncryptionPolicy> RotateEncryptionPolicy(v1::RotateEncryptionPolicyRequest request);

  const Options& options() const { return options_; }

 private:
  Client(Options options, std::shared_ptr<grpc::Channel> channel);

  // RequestAccess's and ExtendGrant's part: `create` (retried while
  // UNAVAILABLE, with the request_id it carries, until the deadline), then
  // WaitForDecision.
  Result<v1::Grant> CreateAndWait(const std::function<Result<v1::AccessRequest>()>& create,
                                  std::chrono::milliseconds timeout, const Progress& progress);
  // Runs `call` with the default deadline, retrying UNAVAILABLE (and
  // conflicts the server marks retryable) with backoff.
  template <typename Response, typename Call>
  Result<Response> Invoke(Call call);
  std::unique_ptr<grpc::ClientContext> NewContext(
      std::chrono::system_clock::time_point deadline) const;
  // Signs a decision as ApproveAccessRequest documents; OK and unchanged
  // when there is nothing to sign. `narrowing`: an approval's narrowing
  // fields, signed with it (null: none).
  grpc::Status SignDecision(const std::string& name, v1::Decision::Verdict verdict,
                            const std::string& comment, std::string* etag,
                            v1::DecisionSignature* signature,
                            const DecisionToSign* narrowing = nullptr);
  // Signs a break-glass review as ReviewEmergencyAccess documents; OK and
  // unchanged when there is nothing to sign.
  grpc::Status SignReview(v1::ReviewEmergencyAccessRequest* request);
  // What both share: whether this client signs the call (*sign), and the
  // etag the signature covers, read from the request when the call has
  // none; `customer_stage_only`: a request found at another stage is not
  // signed.
  grpc::Status PrepareSigning(const std::string& name, bool customer_stage_only, std::string* etag,
                              bool* sign);

  Options options_;
  std::string key_pem_;  // key_file's contents, which sign decisions
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PolicyService::Stub> policy_;
  std::unique_ptr<v1::AccessRequestService::Stub> requests_;
  std::unique_ptr<v1::GrantService::Stub> grants_;
  std::unique_ptr<v1::AuditService::Stub> audit_;
  std::unique_ptr<v1::NotificationService::Stub> notifications_;
  std::unique_ptr<v1::KeyService::Stub> keys_;
  std::unique_ptr<v1::EncryptionPolicyService::Stub> encryption_policies_;
};

template <typename T>
std::string Result<T>::reason() const {
  return ReasonOf(status_);
}

}  // namespace lockbox

#endif  // LOCKBOX_CLIENT_INCLUDE_LOCKBOX_CLIENT_H_
