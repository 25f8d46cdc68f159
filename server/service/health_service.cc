#include "server/service/health_service.h"

#include <thread>

namespace lockbox {
namespace {
using grpc::health::v1::HealthCheckResponse;

// "liveness": is the process serving at all (the kubelet restarts it when
// not). Unlike the others it does not depend on the database, so an outage
// of PostgreSQL takes replicas out of rotation without restarting them all.
constexpr char kLiveness[] = "liveness";

bool KnownService(const std::string& name) {
  return name.empty() || name == kLiveness || name == "lockbox.v1.PolicyService" ||
         name == "lockbox.v1.AccessRequestService" || name == "lockbox.v1.GrantService" ||
         name == "lockbox.v1.AuditService" || name == "lockbox.v1.NotificationService";
}
}  // namespace

HealthCheckResponse::ServingStatus HealthService::Current() {
  if (shutting_down_) return HealthCheckResponse::NOT_SERVING;
  absl::MutexLock lock(&mu_);
  auto now = std::chrono::steady_clock::now();
  if (now - checked_at_ > std::chrono::seconds(1)) {
    last_ok_ = database_ok_();
    checked_at_ = now;
  }
  return last_ok_ ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

grpc::Status HealthService::Check(grpc::ServerContext*,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  if (!KnownService(request->service())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service");
  }
  response->set_status(request->service() == kLiveness ? HealthCheckResponse::SERVING : Current());
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  HealthCheckResponse response;
  if (!KnownService(request->service())) {
    response.set_status(HealthCheckResponse::SERVICE_UNKNOWN);
    writer->Write(response);
    return grpc::Status::OK;
  }
  auto last = HealthCheckResponse::SERVICE_UNKNOWN;
  while (!context->IsCancelled()) {
    auto status = request->service() == kLiveness ? HealthCheckResponse::SERVING : Current();
    if (status != last) {
      response.set_status(status);
      if (!writer->Write(response)) break;
      last = status;
    }
    if (shutting_down_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return grpc::Status::OK;
}

}  // namespace lockbox
