// grpc.health.v1.Health, generated from Debian's grpc-proto so that it is
// visible through reflection, on gRPC's callback API. Serves on the mTLS
// port and, alone, on the plaintext health port for Kubernetes probes.
//
// One HealthMonitor samples the database once a second on its own thread
// and pushes each change to every Watch stream; a watcher holds no thread
// while it waits, and Check answers from the last sample without touching
// the database.
#ifndef LOCKBOX_SERVER_SERVICE_HEALTH_SERVICE_H_
#define LOCKBOX_SERVER_SERVICE_HEALTH_SERVICE_H_

#include <atomic>
#include <functional>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/service/serving_limits.h"

namespace lockbox {

using HealthStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

// The server's health as the probes see it. Thread-safe.
class HealthMonitor {
 public:
  // Told of every change of the database's status, and of the shutdown.
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // `ending`: the server is draining; `status` is the last to send.
    // Called with the monitor's lock held: it must not call back into it.
    virtual void Changed(HealthStatus status, bool ending) = 0;
  };

  // `database_ok` runs on the monitor's thread, once a second.
  // REQUIRES: `database_ok` does not call back into the monitor.
  explicit HealthMonitor(std::function<bool()> database_ok);
  // Stops the sampling thread.
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Samples once now, then every second on a thread of its own.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // NOT_SERVING from now on (drain); watchers are told and end.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  HealthStatus Current() const ABSL_LOCKS_EXCLUDED(mu_);
  bool shutting_down() const ABSL_LOCKS_EXCLUDED(mu_);

  // Adds `w` and tells it the current status (so it sends the first
  // message), unless the server is draining: then false, and `w` is not
  // added.
  bool Add(Watcher* w) ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(Watcher* w) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Sample() ABSL_LOCKS_EXCLUDED(mu_);
  void Publish(HealthStatus status, bool ending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::function<bool()> database_ok_;
  mutable absl::Mutex mu_;
  HealthStatus status_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread sampler_;
};

// Thread-safe. Watch streams count against `caps`, keyed by the caller's
// SPIFFE ID on the mTLS port, by the peer's address on the plaintext one.
class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  enum class WatcherKey { kCaller, kPeerAddress };
  // REQUIRES: `monitor` and `caps` outlive the service.
  HealthService(HealthMonitor* monitor, StreamCaps* caps, WatcherKey key)
      : monitor_(monitor), caps_(caps), key_(key) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  HealthMonitor* const monitor_;
  StreamCaps* const caps_;
  const WatcherKey key_;
};

// "ipv4:10.0.0.7:51234" → "ipv4:10.0.0.7": the address without the port,
// so that every connection from one host counts together.
std::string PeerAddressOf(const std::string& peer);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_HEALTH_SERVICE_H_
