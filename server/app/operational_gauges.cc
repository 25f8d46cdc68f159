#include "server/app/operational_gauges.h"

#include "server/observe/metrics.h"

namespace lockbox {

void RefreshDatabaseGauges(Store& store, const Clock& clock) {
  Metrics& metrics = Metrics::Get();
  absl::Time now = clock.Now();
  OperationalCounts counts;
  absl::Status st = store.RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto got = tx.operations().CountOperational(now);
    if (!got.ok()) return got.status();
    counts = std::move(*got);
    return absl::OkStatus();
  });
  metrics.SetScrapeError(!st.ok());
  if (!st.ok()) return;
  const auto* stages = v1::AccessRequest::Stage_descriptor();
  for (int i = 0; i < stages->value_count(); ++i) {
    int number = stages->value(i)->number();
    if (number == 0) continue;
    auto it = counts.pending_by_stage.find(number);
    metrics.SetPending(stages->value(i)->name(),
                       it == counts.pending_by_stage.end() ? 0 : it->second);
  }
  metrics.SetActiveGrants(counts.active_grants);
  metrics.SetOutbox(counts.outbox_pending, counts.outbox_failed);
  metrics.SetSweepLag(counts.earliest_due && *counts.earliest_due < now
                          ? absl::ToDoubleSeconds(now - *counts.earliest_due)
                          : 0);
}

}  // namespace lockbox
