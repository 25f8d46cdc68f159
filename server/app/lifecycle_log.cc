#include "server/app/lifecycle_log.h"

#include "server/observe/log.h"
#include "server/observe/metrics.h"

namespace lockbox {

void LogCommittedEvent(const v1::AuditEvent& e) {
  Metrics::Get().LifecycleEvent(e.action());
  // Break-glass reviews, once committed (docs/OPERATIONS.md).
  if (e.action() == "access_request.emergency_review") {
    auto verdict = e.details().find("verdict");
    bool disputed = verdict != e.details().end() && verdict->second == "DISPUTE";
    Metrics::Get().EmergencyReview(disputed ? "disputed" : "accepted");
  } else if (e.action() == "access_request.emergency_review_overdue") {
    Metrics::Get().EmergencyReview("overdue");
  }
  // Names, times and codes only: never the justification or details.
  LogFields fields = {{"action", e.action()},
                      {"resource", e.resource()},
                      {"tenant", e.tenant()},
                      {"sequence", e.sequence()},
                      {"actor", e.actor()}};
  if (!e.via().empty()) fields["via"] = e.via();
  if (!e.access_request().empty()) fields["access_request"] = e.access_request();
  if (e.request_state() != v1::AccessRequest::STATE_UNSPECIFIED) {
    fields["request_state"] = v1::AccessRequest::State_Name(e.request_state());
  }
  const std::string& request_id = ScopedRequestId::Current();
  if (!request_id.empty()) fields["request_id"] = request_id;
  Log("info", "event", fields);
}

}  // namespace lockbox
