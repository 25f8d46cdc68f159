// Appending to the audit log: how a new event is linked after the log's head,
// and when the append also signs a checkpoint. Pure functions; the store
// locks the head and persists what these decide.
#ifndef LOCKBOX_SERVER_DOMAIN_AUDIT_LINK_H_
#define LOCKBOX_SERVER_DOMAIN_AUDIT_LINK_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "lockbox/v1/audit_service.pb.h"
#include "lockbox/v1/resources.pb.h"

namespace lockbox {

// The last event of a tenant's log: sequence 0 and hash "" when it is empty.
struct ChainHead {
  int64_t sequence = 0;
  std::string hash;
};

// "tenants/<tenant>/auditEvents/<sequence>", or "auditEvents/<sequence>" in
// the global log (tenant "").
std::string AuditEventName(const std::string& tenant, int64_t sequence);
// The same for checkpoints ("auditCheckpoints").
std::string AuditCheckpointName(const std::string& tenant, int64_t sequence);

// Links `event` (its tenant and content set) after `head`: sets sequence,
// name, previous_hash and hash. The head to give is the one after it.
// REQUIRES: head is the current head of event->tenant()'s log, locked so
// that nothing else links after it meanwhile.
ChainHead LinkAuditEvent(const ChainHead& head, v1::AuditEvent* event);

// Whether the append that made `head` also signs a checkpoint of it: a
// log's first event, so that every log that has events has a checkpoint
// (one stripped away is then noticed, SECURITY.md), and every `every` events
// after it (never when `every` <= 0).
bool CheckpointDue(const ChainHead& head, int every);

// A checkpoint of `tenant`'s log at `head`, signed at `sign_time`, not yet
// signed (key_id and signature empty).
v1::AuditCheckpoint UnsignedCheckpoint(const std::string& tenant, const ChainHead& head,
                                       absl::Time sign_time);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_AUDIT_LINK_H_
