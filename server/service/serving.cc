#include "server/service/serving.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>

#include "absl/time/clock.h"
#include "server/domain/status.h"
#include "server/observe/metrics.h"

namespace lockbox {
namespace {

prometheus::Family<prometheus::Counter>& ShedFamily() {
  static prometheus::Family<prometheus::Counter>& family =
      prometheus::BuildCounter()
          .Name("lockbox_calls_shed_total")
          .Help("Calls refused before they ran: queue_full (no thread free and the queue full), "
                "rate_limited, stream_limit")
          .Register(*Metrics::Get().registry());
  return family;
}

}  // namespace

Serving::Serving(ServingOptions options)
    : options_(std::move(options)),
      calls_(options_.threads, options_.max_queued),
      stream_steps_(options_.check_threads),
      enforcer_checks_(options_.check_threads, options_.max_queued_checks),
      other_checks_(options_.check_threads, options_.max_queued_checks),
      rate_(options_.rate),
      streams_(options_.max_streams_per_caller, options_.max_streams) {
  ShedFamily();  // Listed on the metrics port from the start.
}

Executor& Serving::CheckSlowPathFor(const CallerIdentity& caller) {
  bool enforcer = options_.is_enforcer && options_.is_enforcer(caller.spiffe_id);
  return enforcer ? enforcer_checks_ : other_checks_;
}

absl::Status Serving::AdmitChange(const CallerIdentity& caller, absl::Duration* retry_after) {
  // absl::Now() moves with the wall clock; the bucket only ever looks at
  // differences and treats a step back as no time passed.
  return rate_.Admit(caller.spiffe_id, absl::Now(), retry_after);
}

void Serving::CountShed(const char* method, const char* reason) {
  ShedFamily().Add({{"method", method}, {"reason", reason}}).Increment();
}

absl::Status Serving::Overloaded() {
  return Error(absl::StatusCode::kResourceExhausted, reason::kOverloaded,
               "the server is overloaded; retry with backoff");
}

absl::Status Serving::StreamLimit() {
  return Error(absl::StatusCode::kResourceExhausted, reason::kStreamLimit,
               "too many open streams from this caller; close one first");
}

}  // namespace lockbox
