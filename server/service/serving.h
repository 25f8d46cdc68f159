// What the service layer serves with: the executors that run blocking
// use-case work off gRPC's event threads, and the limits that keep one
// caller from starving the others (rate limit, stream caps). One per
// server, shared by every service; made and owned by the composition root.
#ifndef LOCKBOX_SERVER_SERVICE_SERVING_H_
#define LOCKBOX_SERVER_SERVICE_SERVING_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "server/app/use_case_runner.h"
#include "server/service/executor.h"
#include "server/service/serving_limits.h"

namespace lockbox {

struct ServingOptions {
  // Threads running unary calls and stream steps that need the database,
  // and how many may wait for one before calls are shed
  // (RESOURCE_EXHAUSTED, OVERLOADED).
  int threads = 64;
  size_t max_queued = 256;
  // CheckAccess's database path (enforcers' and everyone else's, apart),
  // and stream steps: this many threads each.
  int check_threads = 8;
  size_t max_queued_checks = 1024;
  RateLimiter::Options rate;
  // Open streams (every server stream of every service) per caller SPIFFE
  // ID, and in all.
  int max_streams_per_caller = 32;
  int max_streams = 10000;
  // Whether a SPIFFE ID is a known enforcer. Asked on CheckAccess's slow
  // path only; empty: nobody is.
  std::function<bool(const std::string&)> is_enforcer;
};

// Thread-safe. Destroy only after the gRPC servers that use it: its
// executors finish what they hold first.
class Serving {
 public:
  explicit Serving(ServingOptions options);

  Executor& calls() { return calls_; }
  // Stream work (WatchAccessRequest's first read, ExportAuditEvents'
  // pages): never shed, as the stream caps bound how many can wait; apart
  // from calls(), so streams never make unary calls shed.
  Executor& stream_steps() { return stream_steps_; }
  // The executor for `caller`'s CheckAccess database path.
  Executor& CheckSlowPathFor(const CallerIdentity& caller);
  StreamCaps& streams() { return streams_; }

  // A state-changing call of `caller` may run now: OK, or RATE_LIMITED with
  // `retry_after` set to when its next token is due.
  absl::Status AdmitChange(const CallerIdentity& caller, absl::Duration* retry_after = nullptr);

  // Counts a call refused before it ran (lockbox_calls_shed_total; reason
  // "queue_full", "rate_limited" or "stream_limit"). Its log line is the
  // call's own, written by CallScope::Finish.
  static void CountShed(const char* method, const char* reason);

  // The errors of a shed call.
  static absl::Status Overloaded();
  static absl::Status StreamLimit();

 private:
  const ServingOptions options_;
  Executor calls_;
  Executor stream_steps_;
  Executor enforcer_checks_;
  Executor other_checks_;
  RateLimiter rate_;
  StreamCaps streams_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_SERVING_H_
