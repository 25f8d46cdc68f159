// Process-wide Prometheus metrics (prometheus-cpp). Always collected; served
// in the text format by --metrics-listen. Names and meanings are listed in
// docs/OPERATIONS.md.
#ifndef LOCKBOX_SERVER_OBSERVE_METRICS_H_
#define LOCKBOX_SERVER_OBSERVE_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace lockbox {

// "OK", "INVALID_ARGUMENT"...: a gRPC status code's canonical name.
const char* GrpcCodeName(int code);

class Metrics {
 public:
  static Metrics& Get();

  // One finished call: its method, gRPC status code and latency.
  void ObserveCall(const char* method, int grpc_code, double seconds);
  // A CheckAccess answered "allowed" from this replica's grant view, or one
  // answered from the database (either way).
  void CheckAccessAnswered(bool from_view);
  // A committed audit event of the request's or grant's life.
  void LifecycleEvent(const std::string& action);
  // A break-glass review closed or gone overdue (outcome "accepted",
  // "disputed" or "overdue"), counted by the replica that committed it.
  void EmergencyReview(const char* outcome);
  // A database operation failed for a reason other than the caller's input
  // (kind: "unavailable", "in_doubt", "internal").
  void DatabaseError(const char* kind);
  // A lost database connection was replaced (connection: "pool", or the
  // LISTEN connections "listen_requests", "listen_access").
  void DatabaseReconnect(const char* connection);
  // One delivery attempt of the outbox (channel "email" or "webhook").
  void DeliveryAttempt(const char* channel, bool delivered, bool failed_for_good);
  // The sweep finished a pass at this Unix time.
  void SweepPassed(double unix_seconds);

  // Set when scraped, from the database and this replica's state.
  void SetPending(const std::string& stage, double count);
  void SetActiveGrants(double count);
  void SetOutbox(double pending, double failed);
  void SetSweepLag(double seconds);
  void SetWatchers(double count);
  void SetGrantViewReady(bool ready);
  // What this replica's grant view holds: active grants and enforcers.
  void SetGrantViewSize(double grants, double enforcers);
  void SetScrapeError(bool failed);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  Metrics();

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Family<prometheus::Counter>& checks_;
  prometheus::Counter& checks_from_view_;
  prometheus::Counter& checks_from_database_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Counter>& events_;
  prometheus::Family<prometheus::Counter>& emergency_reviews_;
  prometheus::Family<prometheus::Counter>& db_errors_;
  prometheus::Family<prometheus::Counter>& db_reconnects_;
  prometheus::Family<prometheus::Counter>& deliveries_;
  prometheus::Family<prometheus::Counter>& deliveries_failed_;
  prometheus::Family<prometheus::Gauge>& pending_;
  prometheus::Gauge& active_grants_;
  prometheus::Gauge& outbox_pending_;
  prometheus::Gauge& outbox_failed_;
  prometheus::Gauge& sweep_lag_;
  prometheus::Gauge& sweep_last_;
  prometheus::Gauge& watchers_;
  prometheus::Gauge& grant_view_ready_;
  prometheus::Gauge& grant_view_grants_;
  prometheus::Gauge& grant_view_enforcers_;
  prometheus::Gauge& scrape_error_;
};

// What an exposer serves: on each scrape runs `refresh` (cheap, this
// replica's own state) and `refresh_costly` (the database's counts; at most
// once per `min_interval`, so many scrapers cost one query), then collects
// the registry. Thread-safe: concurrent scrapes refresh one at a time.
class RefreshingCollectable final : public prometheus::Collectable {
 public:
  // REQUIRES: `refresh` and `refresh_costly` do not scrape (call Collect).
  RefreshingCollectable(std::shared_ptr<prometheus::Registry> registry,
                        std::function<void()> refresh, std::function<void()> refresh_costly,
                        std::chrono::milliseconds min_interval);
  std::vector<prometheus::MetricFamily> Collect() const override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  const std::function<void()> refresh_;
  const std::function<void()> refresh_costly_;
  const std::chrono::milliseconds min_interval_;
  // Held while the refreshes run, so that they never overlap.
  mutable absl::Mutex mu_;
  mutable std::chrono::steady_clock::time_point refreshed_ ABSL_GUARDED_BY(mu_){};
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_OBSERVE_METRICS_H_
