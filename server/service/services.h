// The five Lockbox gRPC services: adapters only. Each RPC forwards to the
// use-case method of the same name (see call_scope.h); the logic lives in
// server/app and server/domain.
#ifndef LOCKBOX_SERVER_SERVICE_SERVICES_H_
#define LOCKBOX_SERVER_SERVICE_SERVICES_H_

#include "lockbox/v1/access_request_service.grpc.pb.h"
#include "lockbox/v1/audit_service.grpc.pb.h"
#include "lockbox/v1/grant_service.grpc.pb.h"
#include "lockbox/v1/notification_service.grpc.pb.h"
#include "lockbox/v1/policy_service.grpc.pb.h"
#include "server/app/use_cases.h"
#include "server/app/watch_hub.h"
#include "server/service/call_scope.h"
#include "server/service/executor.h"

namespace lockbox {

class PolicyService final : public v1::PolicyService::Service {
 public:
  explicit PolicyService(PolicyUseCases* use_cases) : use_cases_(use_cases) {}
  LOCKBOX_UNARY(CreateTenant, v1::CreateTenantRequest, v1::Tenant)
  LOCKBOX_UNARY(GetTenant, v1::GetTenantRequest, v1::Tenant)
  LOCKBOX_UNARY(GetTenantIdentity, v1::GetTenantIdentityRequest, v1::TenantIdentity)
  LOCKBOX_UNARY(UpdateTenantIdentity, v1::UpdateTenantIdentityRequest, v1::TenantIdentity)
  LOCKBOX_UNARY(ListTenants, v1::ListTenantsRequest, v1::ListTenantsResponse)
  LOCKBOX_UNARY(GetLockboxPolicy, v1::GetLockboxPolicyRequest, v1::LockboxPolicy)
  LOCKBOX_UNARY(UpdateLockboxPolicy, v1::UpdateLockboxPolicyRequest, v1::LockboxPolicy)
  LOCKBOX_UNARY(CreateEnvironment, v1::CreateEnvironmentRequest, v1::Environment)
  LOCKBOX_UNARY(GetEnvironment, v1::GetEnvironmentRequest, v1::Environment)
  LOCKBOX_UNARY(ListEnvironments, v1::ListEnvironmentsRequest, v1::ListEnvironmentsResponse)
  LOCKBOX_UNARY(UpdateEnvironment, v1::UpdateEnvironmentRequest, v1::Environment)
  LOCKBOX_UNARY(CreateRoleBinding, v1::CreateRoleBindingRequest, v1::RoleBinding)
  LOCKBOX_UNARY(ListRoleBindings, v1::ListRoleBindingsRequest, v1::ListRoleBindingsResponse)
  LOCKBOX_UNARY(DeleteRoleBinding, v1::DeleteRoleBindingRequest, google::protobuf::Empty)

 private:
  PolicyUseCases* use_cases_;
};

// WatchAccessRequest runs on the callback API (a waiting client holds no
// thread); the unary methods on the synchronous one.
class AccessRequestService final
    : public v1::AccessRequestService::WithCallbackMethod_WatchAccessRequest<
          v1::AccessRequestService::Service> {
 public:
  AccessRequestService(AccessRequestUseCases* use_cases, WatchHub* hub)
      : use_cases_(use_cases), hub_(hub) {}
  LOCKBOX_UNARY(CreateAccessRequest, v1::CreateAccessRequestRequest, v1::AccessRequest)
  LOCKBOX_UNARY(GetAccessRequest, v1::GetAccessRequestRequest, v1::AccessRequest)
  LOCKBOX_UNARY(ListAccessRequests, v1::ListAccessRequestsRequest, v1::ListAccessRequestsResponse)
  LOCKBOX_UNARY(ApproveAccessRequest, v1::ApproveAccessRequestRequest, v1::AccessRequest)
  LOCKBOX_UNARY(DenyAccessRequest, v1::DenyAccessRequestRequest, v1::AccessRequest)
  LOCKBOX_UNARY(CancelAccessRequest, v1::CancelAccessRequestRequest, v1::AccessRequest)
  grpc::ServerWriteReactor<v1::AccessRequest>* WatchAccessRequest(
      grpc::CallbackServerContext* context, const v1::WatchAccessRequestRequest* request) override;

 private:
  AccessRequestUseCases* use_cases_;
  WatchHub* hub_;
};

// CheckAccess, the data plane's hot path, runs on the callback API: an
// answer from memory is sent from gRPC's own thread with no hand-off; one
// that needs the database runs on `slow_path` (not owned).
class GrantService final
    : public v1::GrantService::WithCallbackMethod_CheckAccess<v1::GrantService::Service> {
 public:
  GrantService(GrantUseCases* use_cases, Executor* slow_path)
      : use_cases_(use_cases), slow_path_(slow_path) {}
  LOCKBOX_UNARY(GetGrant, v1::GetGrantRequest, v1::Grant)
  LOCKBOX_UNARY(ListGrants, v1::ListGrantsRequest, v1::ListGrantsResponse)
  LOCKBOX_UNARY(ReleaseGrant, v1::ReleaseGrantRequest, v1::Grant)
  LOCKBOX_UNARY(RevokeGrant, v1::RevokeGrantRequest, v1::Grant)
  grpc::ServerUnaryReactor* CheckAccess(grpc::CallbackServerContext* context,
                                        const v1::CheckAccessRequest* request,
                                        v1::CheckAccessResponse* response) override;

 private:
  GrantUseCases* use_cases_;
  Executor* slow_path_;
};

class AuditService final : public v1::AuditService::Service {
 public:
  explicit AuditService(AuditUseCases* use_cases) : use_cases_(use_cases) {}
  LOCKBOX_UNARY(ListAuditEvents, v1::ListAuditEventsRequest, v1::ListAuditEventsResponse)
  LOCKBOX_UNARY(VerifyAuditLog, v1::VerifyAuditLogRequest, v1::VerifyAuditLogResponse)
  LOCKBOX_UNARY(CreateAuditCheckpoint, v1::CreateAuditCheckpointRequest, v1::AuditCheckpoint)
  LOCKBOX_UNARY(ListAuditCheckpoints, v1::ListAuditCheckpointsRequest,
                v1::ListAuditCheckpointsResponse)
  LOCKBOX_UNARY(GetAuditPublicKey, v1::GetAuditPublicKeyRequest, v1::AuditPublicKeys)
  // Streams chunk by chunk; gRPC's flow control keeps the server's memory
  // flat when the client reads slowly.
  grpc::Status ExportAuditEvents(
      grpc::ServerContext* context, const v1::ExportAuditEventsRequest* request,
      grpc::ServerWriter<v1::ExportAuditEventsResponse>* writer) override;

 private:
  AuditUseCases* use_cases_;
};

class NotificationService final : public v1::NotificationService::Service {
 public:
  explicit NotificationService(NotificationUseCases* use_cases) : use_cases_(use_cases) {}
  LOCKBOX_UNARY(ListNotifications, v1::ListNotificationsRequest, v1::ListNotificationsResponse)

 private:
  NotificationUseCases* use_cases_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_SERVICES_H_
