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

namespace lockbox {

inline constexpr char kOnBehalfOfHeader[] = "x-lockbox-on-behalf-of";

// The single mapping from our statuses to gRPC's, with ErrorInfo details.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The caller as the transport saw it (peer_spiffe_id of the verified client
// certificate, and the on-behalf-of header).
CallerIdentity CallerOf(const grpc::ServerContextBase& context);

// One structured line per call on stderr.
void LogCall(const char* method, const CallerIdentity& caller, const grpc::Status& status,
             std::chrono::steady_clock::duration latency);

template <typename Response, typename Fn>
grpc::Status Handle(const char* method, grpc::ServerContext* context, Response* response,
                    Fn&& fn) {
  auto start = std::chrono::steady_clock::now();
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
  LogCall(method, caller, status, std::chrono::steady_clock::now() - start);
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
