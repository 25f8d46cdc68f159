#include "server/app/audit_log.h"

#include "server/domain/audit_link.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"

namespace lockbox {

absl::Status AuditLog::Append(Transaction& tx, v1::AuditEvent* event) const {
  ASSIGN_OR_RETURN(ChainHead head, tx.audit().LockHead(event->tenant()));
  ChainHead linked = LinkAuditEvent(head, event);
  RETURN_IF_ERROR(tx.audit().InsertEvent(*event));
  if (signer_ != nullptr && CheckpointDue(linked, checkpoint_every_)) {
    v1::AuditCheckpoint c =
        UnsignedCheckpoint(event->tenant(), linked, FromProto(event->event_time()));
    RETURN_IF_ERROR(signer_->Sign(&c));
    RETURN_IF_ERROR(tx.audit().InsertCheckpoint(c));
  }
  return absl::OkStatus();
}

}  // namespace lockbox
