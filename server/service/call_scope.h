// One call as the service layer sees it, the same for every kind of handler
// (synchronous unary, callback unary, server stream): the caller read from
// the TLS peer and the on-behalf-of header, the request ID, the timer, the
// guard that turns an escaped exception into INTERNAL with ErrorInfo after
// logging its cause, the single status mapping, and the one log line and
// metrics of the call.
#ifndef LOCKBOX_SERVER_SERVICE_CALL_SCOPE_H_
#define LOCKBOX_SERVER_SERVICE_CALL_SCOPE_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/app/use_case_runner.h"
#include "server/domain/status.h"
#include "server/observe/log.h"
#include "server/service/serving.h"

namespace lockbox {

inline constexpr char kOnBehalfOfHeader[] = "x-lockbox-on-behalf-of";
// A caller's correlation ID, echoed back in the response's initial
// metadata; one is made when the caller sends none.
inline constexpr char kRequestIdHeader[] = "x-request-id";

// The single mapping from our statuses to gRPC's, with ErrorInfo details.
// INTERNAL and UNKNOWN messages are logged and replaced: internals stay in
// the server's log.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Not thread-safe; movable, so that a callback handler can carry it to the
// thread that finishes the call. Finish() is called exactly once.
class CallScope {
 public:
  // Reads the caller and the request ID (the caller's x-request-id when it
  // is a plain token, else a fresh one, added to the response's initial
  // metadata) and starts the timer. `method` is a string literal.
  CallScope(const char* method, grpc::ServerContextBase* context);
  CallScope(CallScope&&) = default;
  CallScope& operator=(CallScope&&) = default;

  const CallerIdentity& caller() const { return caller_; }
  const std::string& request_id() const { return request_id_; }

  // Runs fn() (returning absl::Status or absl::StatusOr<T>) on this thread
  // with the call's request ID in scope, so that what it logs or commits
  // names the call. An exception escaping fn becomes INTERNAL carrying its
  // cause, which ToGrpcStatus logs before it hides it from the caller.
  template <typename Fn>
  auto Run(Fn&& fn) -> decltype(fn()) {
    ScopedRequestId in_scope(request_id_);
    try {
      return fn();
    } catch (const std::exception& e) {
      return Escaped(e.what());
    } catch (...) {
      return Escaped("an exception that is no std::exception");
    }
  }

  // The call's gRPC status: logs its line and counts it in the metrics.
  grpc::Status Finish(const absl::Status& status);

 private:
  absl::Status Escaped(const char* what) const;

  const char* method_;
  CallerIdentity caller_;
  std::string request_id_;
  std::chrono::steady_clock::time_point start_;
};

// Whether a unary call changes state (rate-limited per caller) or reads.
enum class CallKind { kRead, kChange };

// Answers a call refused by its caller's rate limit once its next token is
// due (at most kMaxRateLimitHold later), on a gRPC alarm: no thread waits.
// A caller that keeps a fixed number of calls in flight is so slowed to
// its limit instead of spinning on refusals, which cost the server (TLS,
// parsing, the log line) nearly as much as the calls themselves.
inline constexpr absl::Duration kMaxRateLimitHold = absl::Seconds(1);
void FinishRateLimited(grpc::ServerUnaryReactor* reactor, std::shared_ptr<CallScope> call,
                       absl::Status refusal, absl::Duration retry_after);

// A callback-API unary handler whose work blocks: fn(caller) returns
// absl::StatusOr<Response> and runs on `serving`'s call executor, never on
// gRPC's event thread. A state-changing call past its caller's rate limit,
// or any call when the executor's queue is full, is refused here
// (RESOURCE_EXHAUSTED), logged and counted as shed.
// REQUIRES: `serving` outlives the call; fn is copyable or movable and
// holds only what lives until the call finishes (the request does).
template <typename Response, typename Fn>
grpc::ServerUnaryReactor* ServeUnary(const char* method, CallKind kind,
                                     grpc::CallbackServerContext* context, Serving* serving,
                                     Response* response, Fn&& fn) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto call = std::make_shared<CallScope>(method, context);
  if (kind == CallKind::kChange) {
    absl::Duration retry_after;
    absl::Status admitted = serving->AdmitChange(call->caller(), &retry_after);
    if (!admitted.ok()) {
      Serving::CountShed(method, "rate_limited");
      FinishRateLimited(reactor, std::move(call), admitted, retry_after);
      return reactor;
    }
  }
  bool queued = serving->calls().TrySubmit(
      [call, context, reactor, response, fn = std::forward<Fn>(fn)]() mutable {
        absl::Status status;
        if (context->IsCancelled()) {
          // Nobody waits for the answer: spend no database time on it.
          status = Error(absl::StatusCode::kCancelled, "CANCELLED", "cancelled before it ran");
        } else {
          status = call->Run([&]() -> absl::Status {
            ASSIGN_OR_RETURN(*response, fn(call->caller()));
            return absl::OkStatus();
          });
        }
        reactor->Finish(call->Finish(status));
      });
  if (!queued) {
    Serving::CountShed(method, "queue_full");
    reactor->Finish(call->Finish(Serving::Overloaded()));
  }
  return reactor;
}

}  // namespace lockbox

// Defines a callback-API unary RPC that forwards to the use-case method of
// the same name on the service's executor. The class has `use_cases_` and
// `serving_` members. LOCKBOX_UNARY reads; LOCKBOX_CHANGE changes state
// and is rate-limited per caller.
#define LOCKBOX_UNARY_OF_KIND(Kind, Method, Request, Response)                             \
  grpc::ServerUnaryReactor* Method(grpc::CallbackServerContext* context,                  \
                                   const Request* request, Response* response) override { \
    return ::lockbox::ServeUnary(#Method, Kind, context, serving_, response,              \
                                 [this, request](const ::lockbox::CallerIdentity& caller) { \
                                   return use_cases_->Method(caller, *request);           \
                                 });                                                      \
  }
#define LOCKBOX_UNARY(Method, Request, Response) \
  LOCKBOX_UNARY_OF_KIND(::lockbox::CallKind::kRead, Method, Request, Response)
#define LOCKBOX_CHANGE(Method, Request, Response) \
  LOCKBOX_UNARY_OF_KIND(::lockbox::CallKind::kChange, Method, Request, Response)

#endif  // LOCKBOX_SERVER_SERVICE_CALL_SCOPE_H_
