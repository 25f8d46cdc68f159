// grpc.health.v1.Health, generated from Debian's grpc-proto so that it is
// visible through reflection. Serves on the mTLS port and, alone, on the
// plaintext health port for Kubernetes probes.
#ifndef LOCKBOX_SERVER_SERVICE_HEALTH_SERVICE_H_
#define LOCKBOX_SERVER_SERVICE_HEALTH_SERVICE_H_

#include <atomic>
#include <chrono>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace lockbox {

// Thread-safe.
class HealthService final : public grpc::health::v1::Health::Service {
 public:
  // `database_ok` is asked at most once a second, by one caller at a time
  // while the others wait for its answer.
  // REQUIRES: `database_ok` does not call back into the service.
  explicit HealthService(std::function<bool()> database_ok)
      : database_ok_(std::move(database_ok)) {}

  // NOT_SERVING from now on (drain).
  void Shutdown() { shutting_down_ = true; }

  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override
      ABSL_LOCKS_EXCLUDED(mu_);
  grpc::Status Watch(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  grpc::health::v1::HealthCheckResponse::ServingStatus Current() ABSL_LOCKS_EXCLUDED(mu_);

  const std::function<bool()> database_ok_;
  std::atomic<bool> shutting_down_{false};
  // Held while database_ok_ runs, so that concurrent probes share one check.
  absl::Mutex mu_;
  std::chrono::steady_clock::time_point checked_at_ ABSL_GUARDED_BY(mu_);
  bool last_ok_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_HEALTH_SERVICE_H_
