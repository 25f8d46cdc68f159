// The five Lockbox gRPC services, all on gRPC's callback API: adapters
// only. Each RPC forwards to the use-case method of the same name on the
// serving's executor (see call_scope.h); the logic lives in server/app and
// server/domain. No handler holds one of gRPC's threads while it waits.
#ifndef LOCKBOX_SERVER_SERVICE_SERVICES_H_
#define LOCKBOX_SERVER_SERVICE_SERVICES_H_

#include "lockbox/v1/access_request_service.grpc.pb.h"
#include "lockbox/v1/audit_service.grpc.pb.h"
#include "lockbox/v1/encryption_policy_service.grpc.pb.h"
#include "lockbox/v1/grant_service.grpc.pb.h"
#include "lockbox/v1/key_service.grpc.pb.h"
#include "lockbox/v1/notification_service.grpc.pb.h"
#include "lockbox/v1/policy_service.grpc.pb.h"
#include "server/app/use_cases.h"
#include "server/app/watch_hub.h"
#include "server/service/call_scope.h"
#include "server/service/serving.h"

namespace lockbox {

class PolicyService final : public v1::PolicyService::CallbackService {
 public:
  PolicyService(PolicyUseCases* use_cases, Serving* serving)
      : use_cases_(use_cases), serving_(serving) {}
  LOCKBOX_CHANGE(CreateTenant, v1::CreateTenantRequest, v1::Tenant)
  LOCKBOX_UNARY(GetTenant, v1::GetTenantRequest, v1::Tenant)
  LOCKBOX_UNARY(GetTenantIdentity, v1::GetTenantIdentityRequest, v1::TenantIdentity)
  LOCKBOX_CHANGE(UpdateTenantIdentity, v1::UpdateTenantIdentityRequest, v1::TenantIdentity)
  LOCKBOX_UNARY(ListTenants, v1::ListTenantsRequest, v1::ListTenantsResponse)
  LOCKBOX_UNARY(GetLockboxPolicy, v1::GetLockboxPolicyRequest, v1::LockboxPolicy)
  LOCKBOX_CHANGE(UpdateLockboxPolicy, v1::UpdateLockboxPolicyRequest, v1::LockboxPolicy)
  LOCKBOX_CHANGE(CreateEnvironment, v1::CreateEnvironmentRequest, v1::Environment)
  LOCKBOX_UNARY(GetEnvironment, v1::GetEnvironmentRequest, v1::Environment)
  LOCKBOX_UNARY(ListEnvironments, v1::ListEnvironmentsRequest, v1::ListEnvironmentsResponse)
  LOCKBOX_CHANGE(UpdateEnvironment, v1::UpdateEnvironmentRequest, v1::Environment)
  LOCKBOX_CHANGE(CreateRoleBinding, v1::CreateRoleBindingRequest, v1::RoleBinding)
  LOCKBOX_UNARY(ListRoleBindings, v1::ListRoleBindingsRequest, v1::ListRoleBindingsResponse)
  LOCKBOX_CHANGE(DeleteRoleBinding, v1::DeleteRoleBindingRequest, google::protobuf::Empty)

 private:
  PolicyUseCases* use_cases_;
  Serving* serving_;
};

// A waiting WatchAccessRequest holds no thread; its first read runs on the
// call executor. It counts against the caller's stream cap.
class AccessRequestService final : public v1::AccessRequestService::CallbackService {
 public:
  AccessRequestService(AccessRequestUseCases* use_cases, WatchHub* hub, Serving* serving)
      : use_cases_(use_cases), hub_(hub), serving_(serving) {}
  LOCKBOX_CHANGE(CreateAccessRequest, v1::CreateAccessRequestRequest, v1::AccessRequest)
  LOCKBOX_UNARY(GetAccessRequest, v1::GetAccessRequestRequest, v1::AccessRequest)
  LOCKBOX_UNARY(ListAccessRequests, v1::ListAccessRequestsRequest, v1::ListAccessRequestsResponse)
  LOCKBOX_CHANGE(ApproveAccessRequest, v1::ApproveAccessRequestRequest, v1::AccessRequest)
  LOCKBOX_CHANGE(DenyAccessRequest, v1::DenyAccessRequestRequest, v1::AccessRequest)
  LOCKBOX_CHANGE(CancelAccessRequest, v1::CancelAccessRequestRequest, v1::AccessRequest)
  LOCKBOX_CHANGE(ReviewEmergencyAccess, v1::ReviewEmergencyAccessRequest, v1::AccessRequest)
  grpc::ServerWriteReactor<v1::AccessRequest>* WatchAccessRequest(
      grpc::CallbackServerContext* context, const v1::WatchAccessRequestRequest* request) override;

 private:
  AccessRequestUseCases* use_cases_;
  WatchHub* hub_;
  Serving* serving_;
};

// CheckAccess, the data plane's hot path: an answer from memory is sent
// from gRPC's own thread with no hand-off; one that needs the database runs
// on the serving's CheckAccess executor for the caller (enforcers apart
// from everyone else), so a flood of other callers' checks cannot queue
// ahead of the enforcers'.
class GrantService final : public v1::GrantService::CallbackService {
 public:
  GrantService(GrantUseCases* use_cases, Serving* serving)
      : use_cases_(use_cases), serving_(serving) {}
  LOCKBOX_UNARY(GetGrant, v1::GetGrantRequest, v1::Grant)
  LOCKBOX_UNARY(ListGrants, v1::ListGrantsRequest, v1::ListGrantsResponse)
  LOCKBOX_CHANGE(ReleaseGrant, v1::ReleaseGrantRequest, v1::Grant)
  LOCKBOX_CHANGE(RevokeGrant, v1::RevokeGrantRequest, v1::Grant)
  LOCKBOX_CHANGE(ExtendGrant, v1::ExtendGrantRequest, v1::AccessRequest)
  grpc::ServerUnaryReactor* CheckAccess(grpc::CallbackServerContext* context,
                                        const v1::CheckAccessRequest* request,
                                        v1::CheckAccessResponse* response) override;

 private:
  GrantUseCases* use_cases_;
  Serving* serving_;
};

class AuditService final : public v1::AuditService::CallbackService {
 public:
  AuditService(AuditUseCases* use_cases, Serving* serving)
      : use_cases_(use_cases), serving_(serving) {}
  LOCKBOX_UNARY(ListAuditEvents, v1::ListAuditEventsRequest, v1::ListAuditEventsResponse)
  LOCKBOX_UNARY(VerifyAuditLog, v1::VerifyAuditLogRequest, v1::VerifyAuditLogResponse)
  LOCKBOX_CHANGE(CreateAuditCheckpoint, v1::CreateAuditCheckpointRequest, v1::AuditCheckpoint)
  LOCKBOX_UNARY(ListAuditCheckpoints, v1::ListAuditCheckpointsRequest,
                v1::ListAuditCheckpointsResponse)
  LOCKBOX_UNARY(GetAuditPublicKey, v1::GetAuditPublicKeyRequest, v1::AuditPublicKeys)
  // Streams chunk by chunk, a page read on the executor per step and the
  // next step started when the client has taken the last chunk: a slow
  // reader holds no thread and no transaction.
  grpc::ServerWriteReactor<v1::ExportAuditEventsResponse>* ExportAuditEvents(
      grpc::CallbackServerContext* context, const v1::ExportAuditEventsRequest* request) override;

 private:
  AuditUseCases* use_cases_;
  Serving* serving_;
};

class NotificationService final : public v1::NotificationService::CallbackService {
 public:
  NotificationService(NotificationUseCases* use_cases, Serving* serving)
      : use_cases_(use_cases), serving_(serving) {}
  LOCKBOX_UNARY(ListNotifications, v1::ListNotificationsRequest, v1::ListNotificationsResponse)

 private:
  NotificationUseCases* use_cases_;
  Serving* serving_;
};

// Data keys for data planes (issue 16). UnwrapDataKey is the data plane's
// hot path: a read for the serving's limits (no rate-limit token), its
// key-use event committed with the others of its tenant. Generate and
// Rewrap count as changes.
class KeyService final : public v1::KeyService::CallbackService {
 public:
  KeyService(KeyUseCases* use_cases, Serving* serving)
      : use_cases_(use_cases), serving_(serving) {}
  LOCKBOX_CHANGE(GenerateDataKey, v1::GenerateDataKeyRequest, v1::GenerateDataKeyResponse)
  LOCKBOX_UNARY(UnwrapDataKey, v1::UnwrapDataKeyRequest, v1::UnwrapDataKeyResponse)
  LOCKBOX_CHANGE(RewrapDataKey, v1::RewrapDataKeyRequest, v1::RewrapDataKeyResponse)

 private:
  KeyUseCases* use_cases_;
  Serving* serving_;
};

// A tenant's encryption policies; Create and Rotate use the tenant's token
// in the PKCS#11 module, on the call executor like every change.
class EncryptionPolicyService final : public v1::EncryptionPolicyService::CallbackService {
 public:
  EncryptionPolicyService(EncryptionPolicyUseCases* use_cases, Serving* serving)
      : use_cases_(use_cases), serving_(serving) {}
  LOCKBOX_CHANGE(CreateEncryptionPolicy, v1::CreateEncryptionPolicyRequest, v1::EncryptionPolicy)
  LOCKBOX_UNARY(GetEncryptionPolicy, v1::GetEncryptionPolicyRequest, v1::EncryptionPolicy)
  LOCKBOX_UNARY(ListEncryptionPolicies, v1::ListEncryptionPoliciesRequest,
                v1::ListEncryptionPoliciesResponse)
  LOCKBOX_CHANGE(UpdateEncryptionPolicy, v1::UpdateEncryptionPolicyRequest, v1::EncryptionPolicy)
  LOCKBOX_CHANGE(DisableEncryptionPolicy, v1::DisableEncryptionPolicyRequest, v1::EncryptionPolicy)
  LOCKBOX_CHANGE(EnableEncryptionPolicy, v1::EnableEncryptionPolicyRequest, v1::EncryptionPolicy)
  LOCKBOX_CHANGE(RotateEncryptionPolicy, v1::RotateEncryptionPolicyRequest, v1::EncryptionPolicy)

 private:
  EncryptionPolicyUseCases* use_cases_;
  Serving* serving_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_SERVICES_H_
