#include "server/observe/metrics.h"

#include <map>
#include <utility>

namespace lockbox {

const char* GrpcCodeName(int code) {
  static const char* const kNames[] = {
      "OK",        "CANCELLED",          "UNKNOWN",        "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",  "ALREADY_EXISTS", "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code < 17 ? kNames[code] : "UNKNOWN";
}

namespace {

// From half a millisecond (an answer from memory) to ten seconds.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return kBuckets;
}

}  // namespace

Metrics& Metrics::Get() {
  static Metrics* metrics = new Metrics();  // Never destroyed: used until exit.
  return *metrics;
}

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      calls_(prometheus::BuildCounter()
                 .Name("lockbox_rpc_requests_total")
                 .Help("Finished calls by method and gRPC status code")
                 .Register(*registry_)),
      checks_(prometheus::BuildCounter()
                  .Name("lockbox_checkaccess_answers_total")
                  .Help("CheckAccess answers by where they came from: the grant view "
                        "(allowed, from memory) or the database")
                  .Register(*registry_)),
      checks_from_view_(checks_.Add({{"from", "view"}})),
      checks_from_database_(checks_.Add({{"from", "database"}})),
      latency_(prometheus::BuildHistogram()
                   .Name("lockbox_rpc_duration_seconds")
                   .Help("Time from a call's arrival to its answer, by method")
                   .Register(*registry_)),
      events_(prometheus::BuildCounter()
                  .Name("lockbox_lifecycle_events_total")
                  .Help("Committed audit events of requests and grants, by action")
                  .Register(*registry_)),
      emergency_reviews_(prometheus::BuildCounter()
                             .Name("lockbox_emergency_reviews_total")
                             .Help("Break-glass reviews by outcome: accepted, disputed, or "
                                   "overdue (past 7 days while still open)")
                             .Register(*registry_)),
      db_errors_(prometheus::BuildCounter()
                     .Name("lockbox_database_errors_total")
                     .Help("Database operations that failed other than on a caller's input")
                     .Register(*registry_)),
      db_reconnects_(prometheus::BuildCounter()
                         .Name("lockbox_database_reconnects_total")
                         .Help("Lost database connections replaced, by connection")
                         .Register(*registry_)),
      deliveries_(prometheus::BuildCounter()
                      .Name("lockbox_delivery_attempts_total")
                      .Help("Outbox delivery attempts by this replica, by channel and result")
                      .Register(*registry_)),
      deliveries_failed_(prometheus::BuildCounter()
                             .Name("lockbox_deliveries_failed_total")
                             .Help("Messages this replica gave up on after the last attempt")
                             .Register(*registry_)),
      pending_(prometheus::BuildGauge()
                   .Name("lockbox_pending_requests")
                   .Help("Pending access requests in every tenant, by stage")
                   .Register(*registry_)),
      active_grants_(prometheus::BuildGauge()
                         .Name("lockbox_active_grants")
                         .Help("Grants active and not yet ended, in every tenant")
                         .Register(*registry_)
                         .Add({})),
      outbox_pending_(prometheus::BuildGauge()
                          .Name("lockbox_outbox_backlog")
                          .Help("Messages waiting to be sent (pending, in every tenant)")
                          .Register(*registry_)
                          .Add({})),
      outbox_failed_(prometheus::BuildGauge()
                         .Name("lockbox_outbox_failed")
                         .Help("Messages that failed for good, kept for ListNotifications")
                         .Register(*registry_)
                         .Add({})),
      sweep_lag_(prometheus::BuildGauge()
                     .Name("lockbox_sweep_lag_seconds")
                     .Help("How long the oldest past-due expiry has waited to be recorded")
                     .Register(*registry_)
                     .Add({})),
      sweep_last_(prometheus::BuildGauge()
                      .Name("lockbox_sweep_last_pass_timestamp_seconds")
                      .Help("When this replica last finished a sweep pass (Unix time)")
                      .Register(*registry_)
                      .Add({})),
      watchers_(prometheus::BuildGauge()
                    .Name("lockbox_watchers")
                    .Help("WatchAccessRequest streams held by this replica")
                    .Register(*registry_)
                    .Add({})),
      grant_view_ready_(prometheus::BuildGauge()
                            .Name("lockbox_grant_view_ready")
                            .Help("1 when CheckAccess is answered from this replica's memory")
                            .Register(*registry_)
                            .Add({})),
      grant_view_grants_(prometheus::BuildGauge()
                             .Name("lockbox_grant_view_grants")
                             .Help("Active grants held by this replica's grant view")
                             .Register(*registry_)
                             .Add({})),
      grant_view_enforcers_(prometheus::BuildGauge()
                                .Name("lockbox_grant_view_enforcers")
                                .Help("service.enforcer principals known to this replica's grant view")
                                .Register(*registry_)
                                .Add({})),
      scrape_error_(prometheus::BuildGauge()
                        .Name("lockbox_metrics_database_error")
                        .Help("1 when the last scrape could not read the database gauges")
                        .Register(*registry_)
                        .Add({})) {
  // Series that alerts rate() on exist from the start, at zero.
  for (const char* kind : {"unavailable", "in_doubt", "internal"}) db_errors_.Add({{"kind", kind}});
  for (const char* c : {"pool", "listen_requests", "listen_access"}) {
    db_reconnects_.Add({{"connection", c}});
  }
  for (const char* channel : {"email", "webhook"}) deliveries_failed_.Add({{"channel", channel}});
}

void Metrics::ObserveCall(const char* method, int grpc_code, double seconds) {
  // Method names are string literals: their addresses key a per-thread
  // cache, so the hot path takes no lock after a thread's first call.
  thread_local std::map<std::pair<const char*, int>, prometheus::Counter*> counters;
  thread_local std::map<const char*, prometheus::Histogram*> histograms;
  auto c = counters.find({method, grpc_code});
  if (c == counters.end()) {
    c = counters
            .emplace(std::make_pair(method, grpc_code),
                     &calls_.Add({{"method", method}, {"code", GrpcCodeName(grpc_code)}}))
            .first;
  }
  c->second->Increment();
  auto h = histograms.find(method);
  if (h == histograms.end()) {
    h = histograms.emplace(method, &latency_.Add({{"method", method}}, LatencyBuckets())).first;
  }
  h->second->Observe(seconds);
}

void Metrics::CheckAccessAnswered(bool from_view) {
  (from_view ? checks_from_view_ : checks_from_database_).Increment();
}

void Metrics::LifecycleEvent(const std::string& action) {
  events_.Add({{"action", action}}).Increment();
}

void Metrics::EmergencyReview(const char* outcome) {
  emergency_reviews_.Add({{"outcome", outcome}}).Increment();
}

void Metrics::DatabaseError(const char* kind) { db_errors_.Add({{"kind", kind}}).Increment(); }

void Metrics::DatabaseReconnect(const char* connection) {
  db_reconnects_.Add({{"connection", connection}}).Increment();
}

void Metrics::DeliveryAttempt(const char* channel, bool delivered, bool failed_for_good) {
  deliveries_.Add({{"channel", channel}, {"result", delivered ? "delivered" : "failed"}})
      .Increment();
  if (failed_for_good) deliveries_failed_.Add({{"channel", channel}}).Increment();
}

void Metrics::SweepPassed(double unix_seconds) { sweep_last_.Set(unix_seconds); }

void Metrics::SetPending(const std::string& stage, double count) {
  pending_.Add({{"stage", stage}}).Set(count);
}
void Metrics::SetActiveGrants(double count) { active_grants_.Set(count); }
void Metrics::SetOutbox(double pending, double failed) {
  outbox_pending_.Set(pending);
  outbox_failed_.Set(failed);
}
void Metrics::SetSweepLag(double seconds) { sweep_lag_.Set(seconds); }
void Metrics::SetWatchers(double count) { watchers_.Set(count); }
void Metrics::SetGrantViewReady(bool ready) { grant_view_ready_.Set(ready ? 1 : 0); }

void Metrics::SetGrantViewSize(double grants, double enforcers) {
  grant_view_grants_.Set(grants);
  grant_view_enforcers_.Set(enforcers);
}
void Metrics::SetScrapeError(bool failed) { scrape_error_.Set(failed ? 1 : 0); }

RefreshingCollectable::RefreshingCollectable(std::shared_ptr<prometheus::Registry> registry,
                                             std::function<void()> refresh,
                                             std::function<void()> refresh_costly,
                                             std::chrono::milliseconds min_interval)
    : registry_(std::move(registry)),
      refresh_(std::move(refresh)),
      refresh_costly_(std::move(refresh_costly)),
      min_interval_(min_interval) {}

std::vector<prometheus::MetricFamily> RefreshingCollectable::Collect() const {
  {
    absl::MutexLock lock(&mu_);
    refresh_();
    auto now = std::chrono::steady_clock::now();
    if (refreshed_ == std::chrono::steady_clock::time_point{} ||
        now - refreshed_ >= min_interval_) {
      refresh_costly_();
      refreshed_ = now;
    }
  }
  return registry_->Collect();
}

}  // namespace lockbox
