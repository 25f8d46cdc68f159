#include "server/service/services.h"

#include "server/domain/status.h"

namespace lockbox {

grpc::Status AccessRequestService::WatchAccessRequest(
    grpc::ServerContext*, const v1::WatchAccessRequestRequest*,
    grpc::ServerWriter<v1::AccessRequest>*) {
  return ToGrpcStatus(Error(absl::StatusCode::kUnimplemented, reason::kUnimplemented,
                            "WatchAccessRequest is not available in this version"));
}

grpc::Status AuditService::ExportAuditEvents(
    grpc::ServerContext*, const v1::ExportAuditEventsRequest*,
    grpc::ServerWriter<v1::ExportAuditEventsResponse>*) {
  return ToGrpcStatus(Error(absl::StatusCode::kUnimplemented, reason::kUnimplemented,
                            "ExportAuditEvents is not available in this version"));
}

}  // namespace lockbox
