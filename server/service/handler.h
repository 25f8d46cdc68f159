// What every RPC adapter does: read the caller from the TLS peer and the
// on-behalf-of header, call the application layer, map the status in one
// place, never let an exception escape, and log one line.
#ifndef LOCKBOX_SERVER_SERVICE_HANDLER_H_
#define LOCKBOX_SERVER_SERVICE_HANDLER_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <exception>

#include "absl/status/statusor.h"
#include "server/app/lockbox.h"
#include "server/observe/log.h"

namespace lockbox {

inline constexpr char kOnBehalfOfHeader[] = "x-lockbox-on-behalf-of";
// A caller's correlation ID, echoed back in the response's initial
// metadata; one is made when the caller sends none.
inline constexpr char kRequestIdHeader[] = "x-request-id";

// The single mapping from our statuses to gRPC's, with ErrorInfo details.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The caller as the transport saw it (peer_spiffe_id of the verified client
// certificate, and the on-behalf-of header).
CallerIdentity CallerOf(const grpc::ServerContextBase& context);

// The call's request ID (the caller's x-request-id when it is a sane token,
// else a fresh one), already added to the response's initial metadata.
std::string RequestIdOf(grpc::ServerContextBase* context);

// One structured line per call on stderr, and the call's metrics.
void LogCall(const char* method, const CallerIdentity& caller, const std::string& request_id,
             const grpc::Status& status, std::chrono::steady_clock::duration latency);

template <typename Response, typename Fn>
grpc::Status Handle(const char* method, grpc::ServerContext* context, Response* response,
                    Fn&& fn) {
  auto start = std::chrono::steady_clock::now();
  const std::string request_id = RequestIdOf(context);
  ScopedRequestId scope(request_id);
  CallerIdentity caller;
  grpc::Status status;
  try {
    caller = CallerOf(*context);
    absl::StatusOr<Response> result = fn(caller);
    if (result.ok()) {
      *response = std::move(*result);
      status = grpc::Status::OK;
    } else {
      status = ToGrpcStatus(result.status());
    }
  } catch (const std::exception& e) {
    status = grpc::Status(grpc::StatusCode::INTERNAL, "internal error");
  }
  LogCall(method, caller, request_id, status, std::chrono::steady_clock::now() - start);
  return status;
}

}  // namespace lockbox

// Defines a unary RPC that forwards to the Lockbox method of the same name.
#define LOCKBOX_UNARY(Method, Request, Response)                                        \
  grpc::Status Method(grpc::ServerContext* context, const Request* request,             \
                      Response* response) override {                                     \
    return ::lockbox::Handle(#Method, context, response,                                 \
                             [&](const ::lockbox::CallerIdentity& caller) {              \
                               return lockbox_->Method(caller, *request);                \
                             });                                                         \
  }

#endif  // LOCKBOX_SERVER_SERVICE_HANDLER_H_
