#include "server/service/services.h"

#include "server/domain/status.h"
#include "server/service/watch_reactor.h"

namespace lockbox {

grpc::ServerWriteReactor<v1::AccessRequest>* AccessRequestService::WatchAccessRequest(
    grpc::CallbackServerContext* context, const v1::WatchAccessRequestRequest* request) {
  auto start = std::chrono::steady_clock::now();
  CallerIdentity caller = CallerOf(*context);
  v1::GetAccessRequestRequest get;
  get.set_name(request->name());
  // The same authorisation as reading the request; the first state comes
  // from this read.
  absl::StatusOr<v1::AccessRequest> initial = lockbox_->GetAccessRequest(caller, get);
  auto* reactor = new WatchReactor(
      hub_, initial.ok() ? initial->name().substr(initial->name().rfind('/') + 1) : "");
  grpc::Status status = initial.ok() ? grpc::Status::OK : ToGrpcStatus(initial.status());
  LogCall("WatchAccessRequest", caller, status, std::chrono::steady_clock::now() - start);
  if (!initial.ok()) {
    reactor->Refuse(status);
  } else {
    reactor->Begin(*initial);
  }
  return reactor;
}

grpc::Status AuditService::ExportAuditEvents(
    grpc::ServerContext* context, const v1::ExportAuditEventsRequest* request,
    grpc::ServerWriter<v1::ExportAuditEventsResponse>* writer) {
  google::protobuf::Empty done;
  return Handle("ExportAuditEvents", context, &done,
                [&](const CallerIdentity& caller) -> absl::StatusOr<google::protobuf::Empty> {
                  v1::ExportAuditEventsResponse chunk;
                  absl::Status st = lockbox_->ExportAuditEvents(
                      caller, *request, [&](const std::string& data) {
                        if (context->IsCancelled()) return false;
                        chunk.set_data(data);
                        return writer->Write(chunk);
                      });
                  if (!st.ok()) return st;
                  return google::protobuf::Empty();
                });
}

}  // namespace lockbox
