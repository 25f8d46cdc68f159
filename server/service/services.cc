#include "server/service/services.h"

#include "server/domain/status.h"
#include "server/service/watch_reactor.h"

namespace lockbox {

grpc::ServerWriteReactor<v1::AccessRequest>* AccessRequestService::WatchAccessRequest(
    grpc::CallbackServerContext* context, const v1::WatchAccessRequestRequest* request) {
  auto start = std::chrono::steady_clock::now();
  const std::string request_id = RequestIdOf(context);
  CallerIdentity caller = CallerOf(*context);
  v1::GetAccessRequestRequest get;
  get.set_name(request->name());
  // The same authorisation as reading the request; the first state comes
  // from this read.
  absl::StatusOr<v1::AccessRequest> initial = lockbox_->GetAccessRequest(caller, get);
  auto* reactor = new WatchReactor(
      hub_, initial.ok() ? initial->name().substr(initial->name().rfind('/') + 1) : "");
  grpc::Status status = initial.ok() ? grpc::Status::OK : ToGrpcStatus(initial.status());
  LogCall("WatchAccessRequest", caller, request_id, status,
          std::chrono::steady_clock::now() - start);
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

grpc::ServerUnaryReactor* GrantService::CheckAccess(grpc::CallbackServerContext* context,
                                                    const v1::CheckAccessRequest* request,
                                                    v1::CheckAccessResponse* response) {
  auto start = std::chrono::steady_clock::now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  CallerIdentity caller = CallerOf(*context);
  std::string request_id = RequestIdOf(context);
  auto finish = [reactor, response, start, request_id](
                    const CallerIdentity& caller, absl::StatusOr<v1::CheckAccessResponse> result) {
    grpc::Status status = grpc::Status::OK;
    if (result.ok()) {
      *response = std::move(*result);
    } else {
      status = ToGrpcStatus(result.status());
    }
    LogCall("CheckAccess", caller, request_id, status, std::chrono::steady_clock::now() - start);
    reactor->Finish(status);
  };
  try {
    auto answered = lockbox_->CheckAccessFromMemory(caller, *request);
    if (answered) {
      finish(caller, std::move(*answered));
      return reactor;
    }
  } catch (const std::exception&) {
    finish(caller, absl::InternalError("internal error"));
    return reactor;
  }
  // The request and response live until Finish.
  slow_path_->Submit([this, request, caller, finish] {
    try {
      finish(caller, lockbox_->CheckAccessFromDatabase(caller, *request));
    } catch (const std::exception&) {
      finish(caller, absl::InternalError("internal error"));
    }
  });
  return reactor;
}

}  // namespace lockbox
