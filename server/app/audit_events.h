// How the use cases build audit events: who acted (and through which
// portal), what, where and when, and the source product's request fields.
#ifndef LOCKBOX_SERVER_APP_AUDIT_EVENTS_H_
#define LOCKBOX_SERVER_APP_AUDIT_EVENTS_H_

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/identity.h"

namespace lockbox {

// An audit event by `actor` at `now`, in `tenant`'s log ("" is the global
// log).
v1::AuditEvent NewAuditEvent(const Actor& actor, absl::string_view action, absl::string_view tenant,
                             absl::string_view resource, absl::Time now);

// The actor of what time decides (the sweep).
Actor SystemActor();

// Copies the source product's request fields into an audit event.
void SetRequestFields(const v1::AccessRequest& request, v1::AuditEvent* event);

// What a new request asks for, as the offline verifier needs it to check
// each grant against the customer's signed approvals (docs/APPROVALS.md):
// details access_duration and start_time (protobuf JSON text, "3600s",
// "2026-12-01T20:00:00Z"; start_time only when set), data_sources (IDs
// joined by ",", "" for all), internal_approvals_required and
// customer_approvals_required.
void SetRequestScopeDetails(const v1::AccessRequest& request, v1::AuditEvent* event);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_AUDIT_EVENTS_H_
