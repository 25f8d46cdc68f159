// What lockboxd does with each committed lifecycle event: count it and log
// one line naming it (never its justification or details).
#ifndef LOCKBOX_SERVER_APP_LIFECYCLE_LOG_H_
#define LOCKBOX_SERVER_APP_LIFECYCLE_LOG_H_

#include "lockbox/v1/resources.pb.h"

namespace lockbox {

// For PgStoreOptions::on_committed_event. Thread-safe.
void LogCommittedEvent(const v1::AuditEvent& event);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_LIFECYCLE_LOG_H_
