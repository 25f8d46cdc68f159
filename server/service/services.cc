#include "server/service/services.h"

#include <atomic>
#include <memory>

#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/observe/metrics.h"
#include "server/service/watch_reactor.h"

namespace lockbox {
namespace {

// One ExportAuditEvents stream: each step (authorising and the
// checkpoints, then a chunk's pages) runs on an executor; the next
// starts when the client has taken the chunk before. Between steps it holds
// no thread and no transaction, however slowly the client reads. Exactly
// one step or one write is under way at a time until Finish, so the
// reactor's state needs no lock; only a cancel arrives from elsewhere.
class ExportReactor final : public grpc::ServerWriteReactor<v1::ExportAuditEventsResponse> {
 public:
  // Deletes itself in OnDone.
  ExportReactor(AuditUseCases* use_cases, Serving* serving, grpc::CallbackServerContext* context,
                const v1::ExportAuditEventsRequest* request)
      : use_cases_(use_cases),
        serving_(serving),
        request_(request),
        call_("ExportAuditEvents", context),
        slot_(&serving->streams(), call_.caller().spiffe_id) {
    if (!slot_.held()) {
      Serving::CountShed("ExportAuditEvents", "stream_limit");
      End(Serving::StreamLimit());
      return;
    }
    Step();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      End(Error(absl::StatusCode::kCancelled, "CANCELLED", "client went away"));
      return;
    }
    Step();
  }
  void OnCancel() override { cancelled_ = true; }
  void OnDone() override { delete this; }

 private:
  // The next step, on the streams' executor: apart from the unary calls'
  // queue, so exports never make unary calls shed, and never shed
  // themselves mid-stream. Its queue holds at most one step per open
  // export, which the stream caps bound.
  void Step() {
    auto step = [this] {
      if (cancelled_) {
        End(Error(absl::StatusCode::kCancelled, "CANCELLED", "cancelled or past its deadline"));
        return;
      }
      absl::StatusOr<std::string> chunk = call_.Run([this]() -> absl::StatusOr<std::string> {
        if (!export_) {
          ASSIGN_OR_RETURN(export_, use_cases_->StartExport(call_.caller(), *request_));
        }
        return export_->Next();
      });
      if (!chunk.ok()) {
        End(chunk.status());
      } else if (chunk->empty()) {
        End(absl::OkStatus());
      } else {
        message_.set_data(std::move(*chunk));
        StartWrite(&message_);
      }
    };
    serving_->stream_steps().Submit(std::move(step));
  }

  // The call's log line, once, for the whole stream.
  void End(const absl::Status& status) { Finish(call_.Finish(status)); }

  AuditUseCases* const use_cases_;
  Serving* const serving_;
  const v1::ExportAuditEventsRequest* const request_;
  CallScope call_;
  StreamSlot slot_;
  std::unique_ptr<AuditExport> export_;
  v1::ExportAuditEventsResponse message_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace

grpc::ServerWriteReactor<v1::AccessRequest>* AccessRequestService::WatchAccessRequest(
    grpc::CallbackServerContext* context, const v1::WatchAccessRequestRequest* request) {
  auto call = std::make_shared<CallScope>("WatchAccessRequest", context);
  auto* reactor = new WatchReactor(hub_, StreamSlot(&serving_->streams(), call->caller().spiffe_id));
  if (!reactor->has_slot()) {
    Serving::CountShed("WatchAccessRequest", "stream_limit");
    reactor->Refuse(call->Finish(Serving::StreamLimit()));
    return reactor;
  }
  // The same authorisation as reading the request; the first state comes
  // from this read, on the streams' executor (never shed: the stream caps
  // bound how many wait). The call's line is logged once the watch is
  // accepted or refused: a stream may then wait for hours.
  serving_->stream_steps().Submit([this, call, reactor, request] {
    absl::StatusOr<v1::AccessRequest> initial = call->Run([&] {
      v1::GetAccessRequestRequest get;
      get.set_name(request->name());
      return use_cases_->GetAccessRequest(call->caller(), get);
    });
    grpc::Status status = call->Finish(initial.status());
    if (!initial.ok()) {
      reactor->Refuse(status);
    } else {
      reactor->Begin(IdOfName(initial->name()), *initial);
    }
  });
  return reactor;
}

grpc::ServerWriteReactor<v1::ExportAuditEventsResponse>* AuditService::ExportAuditEvents(
    grpc::CallbackServerContext* context, const v1::ExportAuditEventsRequest* request) {
  return new ExportReactor(use_cases_, serving_, context, request);
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
  Executor& slow_path = serving_->CheckSlowPathFor(held->caller());
  bool queued = slow_path.TrySubmit([this, request, response, reactor, held] {
    absl::StatusOr<v1::CheckAccessResponse> result =
        held->Run([&] { return use_cases_->CheckAccessFromDatabase(held->caller(), *request); });
    if (result.ok()) *response = std::move(*result);
    Metrics::Get().CheckAccessAnswered(/*from_view=*/false);
    reactor->Finish(held->Finish(result.status()));
  });
  if (!queued) {
    Serving::CountShed("CheckAccess", "queue_full");
    reactor->Finish(held->Finish(Serving::Overloaded()));
  }
  return reactor;
}

}  // namespace lockbox
