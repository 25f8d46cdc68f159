#include "server/service/health_service.h"

#include <memory>
#include <optional>
#include <vector>

#include "server/service/call_scope.h"
#include "server/service/serving.h"

namespace lockbox {
namespace {
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// "liveness": is the process serving at all (the kubelet restarts it when
// not). Unlike the others it does not depend on the database, so an outage
// of PostgreSQL takes replicas out of rotation without restarting them all.
constexpr char kLiveness[] = "liveness";

bool KnownService(const std::string& name) {
  return name.empty() || name == kLiveness || name == "lockbox.v1.PolicyService" ||
         name == "lockbox.v1.AccessRequestService" || name == "lockbox.v1.GrantService" ||
         name == "lockbox.v1.AuditService" || name == "lockbox.v1.NotificationService" ||
         name == "lockbox.v1.EncryptionPolicyService";
}

// One Watch stream. Sends the status when it changes; ends after the last
// status of a drain, on cancellation, or when the client goes.
class HealthWatchReactor final : public grpc::ServerWriteReactor<HealthCheckResponse>,
                                 public HealthMonitor::Watcher {
 public:
  // Deletes itself in OnDone.
  HealthWatchReactor(HealthMonitor* monitor, bool liveness, StreamSlot slot)
      : monitor_(monitor), liveness_(liveness), slot_(std::move(slot)) {}

  bool has_slot() const { return slot_.held(); }

  // REQUIRES: called once, by the handler, before it returns the reactor.
  void Begin() ABSL_LOCKS_EXCLUDED(mu_) {
    if (monitor_->Add(this)) {
      registered_ = true;
      return;
    }
    // Draining already: the last status, then the end.
    Changed(HealthCheckResponse::NOT_SERVING, /*ending=*/true);
  }

  // Ends the call before it began. REQUIRES: instead of Begin.
  void Refuse(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    finished_ = true;
    Finish(status);
  }

  void Changed(HealthStatus status, bool ending) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    // Liveness says SERVING while the process lives, whatever the database.
    if (liveness_) status = HealthCheckResponse::SERVING;
    if (status != last_) pending_ = status;
    last_ = status;
    ending_ = ending_ || ending;
    if (!writing_) NextLocked();
  }

  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      EndLocked();
      return;
    }
    NextLocked();
  }
  void OnCancel() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!writing_) EndLocked();
  }
  void OnDone() override {
    if (registered_) monitor_->Remove(this);
    delete this;
  }

 private:
  // Writes the pending status, or ends when draining and nothing is left.
  // REQUIRES: no write under way.
  void NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (cancelled_) {
      EndLocked();
    } else if (pending_) {
      message_.set_status(*pending_);
      pending_.reset();
      writing_ = true;
      StartWrite(&message_);
    } else if (ending_) {
      EndLocked();
    }
  }
  void EndLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(grpc::Status::OK);
  }

  HealthMonitor* const monitor_;
  const bool liveness_;
  StreamSlot slot_;
  // Set by Begin before the call can end, read by OnDone: needs no lock.
  bool registered_ = false;
  absl::Mutex mu_;
  std::optional<HealthStatus> pending_ ABSL_GUARDED_BY(mu_);
  // What was last made pending; none before the first message.
  std::optional<HealthStatus> last_ ABSL_GUARDED_BY(mu_);
  HealthCheckResponse message_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

std::string PeerAddressOf(const std::string& peer) {
  size_t colon = peer.rfind(':');
  size_t scheme = peer.find(':');
  if (colon == std::string::npos || colon == scheme) return peer;
  return peer.substr(0, colon);
}

HealthMonitor::HealthMonitor(std::function<bool()> database_ok)
    : database_ok_(std::move(database_ok)), status_(HealthCheckResponse::NOT_SERVING) {}

HealthMonitor::~HealthMonitor() {
  stop_.Notify();
  if (sampler_.joinable()) sampler_.join();
}

void HealthMonitor::Start() {
  Sample();
  sampler_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(absl::Seconds(1))) Sample();
  });
}

void HealthMonitor::Sample() {
  bool ok = database_ok_();
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  HealthStatus status = ok ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
  if (status == status_) return;
  status_ = status;
  Publish(status, /*ending=*/false);
}

void HealthMonitor::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  shutting_down_ = true;
  status_ = HealthCheckResponse::NOT_SERVING;
  Publish(status_, /*ending=*/true);
}

void HealthMonitor::Publish(HealthStatus status, bool ending) {
  for (Watcher* w : watchers_) w->Changed(status, ending);
}

HealthStatus HealthMonitor::Current() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

bool HealthMonitor::shutting_down() const {
  absl::MutexLock lock(&mu_);
  return shutting_down_;
}

bool HealthMonitor::Add(Watcher* w) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return false;
  watchers_.insert(w);
  w->Changed(status_, /*ending=*/false);
  return true;
}

void HealthMonitor::Remove(Watcher* w) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(w);
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const HealthCheckRequest* request,
                                               HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!KnownService(request->service())) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
    return reactor;
  }
  response->set_status(request->service() == kLiveness ? HealthCheckResponse::SERVING
                                                       : monitor_->Current());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* context, const HealthCheckRequest* request) {
  std::string key;
  if (key_ == WatcherKey::kCaller) {
    std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
    std::vector<grpc::string_ref> ids;
    if (auth) ids = auth->FindPropertyValues("peer_spiffe_id");
    if (ids.size() == 1) key.assign(ids[0].data(), ids[0].size());
  } else {
    key = PeerAddressOf(context->peer());
  }
  auto* reactor = new HealthWatchReactor(monitor_, request->service() == kLiveness,
                                         StreamSlot(caps_, key));
  if (!KnownService(request->service())) {
    // As before: one SERVICE_UNKNOWN, then the end.
    reactor->Changed(HealthCheckResponse::SERVICE_UNKNOWN, /*ending=*/true);
    return reactor;
  }
  if (!reactor->has_slot()) {
    // Logged and counted like any call refused before it ran; accepted
    // probes are not logged (the kubelet's would flood the log).
    CallScope call("Health.Watch", context);
    Serving::CountShed("Health.Watch", "stream_limit");
    reactor->Refuse(call.Finish(Serving::StreamLimit()));
    return reactor;
  }
  reactor->Begin();
  return reactor;
}

}  // namespace lockbox
