#include "server/service/services.h"

#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/observe/metrics.h"
#include "server/service/watch_reactor.h"

namespace lockbox {

grpc::ServerWriteReactor<v1::AccessRequest>* AccessRequestService::WatchAccessRequest(
    grpc::CallbackServerContext* context, const v1::WatchAccessRequestRequest* request) {
  CallScope call("WatchAccessRequest", context);
  // The same authorisation as reading the request; the first state comes
  // from this read. The call's line is logged once the watch is accepted or
  // refused: a stream may then wait for hours.
  absl::StatusOr<v1::AccessRequest> initial = call.Run([&] {
    v1::GetAccessRequestRequest get;
    get.set_name(request->name());
    return use_cases_->GetAccessRequest(call.caller(), get);
  });
  grpc::Status status = call.Finish(initial.status());
  auto* reactor = new WatchReactor(hub_, initial.ok() ? IdOfName(initial->name()) : "");
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
                  absl::Status st =
                      use_cases_->ExportAuditEvents(caller, *request, [&](const std::string& data) {
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
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  CallScope call("CheckAccess", context);
  std::optional<absl::StatusOr<v1::CheckAccessResponse>> answered;
  absl::Status guarded = call.Run([&]() -> absl::Status {
    answered = use_cases_->CheckAccessFromMemory(call.caller(), *request);
    return absl::OkStatus();
  });
  if (!guarded.ok() || answered) {
    absl::Status status = guarded.ok() ? answered->status() : guarded;
    if (status.ok()) {
      *response = std::move(**answered);
      Metrics::Get().CheckAccessAnswered(/*from_view=*/true);
    }
    reactor->Finish(call.Finish(status));
    return reactor;
  }
  // The request and response live until Finish; the scope travels with the
  // work to the thread that finishes the call.
  auto held = std::make_shared<CallScope>(std::move(call));
  slow_path_->Submit([this, request, response, reactor, held] {
    absl::StatusOr<v1::CheckAccessResponse> result =
        held->Run([&] { return use_cases_->CheckAccessFromDatabase(held->caller(), *request); });
    if (result.ok()) *response = std::move(*result);
    Metrics::Get().CheckAccessAnswered(/*from_view=*/false);
    reactor->Finish(held->Finish(result.status()));
  });
  return reactor;
}

}  // namespace lockbox
