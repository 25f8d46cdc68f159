#include "server/app/audit_log.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/domain/audit_link.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"

namespace lockbox {

absl::Status AuditLog::Append(Transaction& tx, v1::AuditEvent* event) const {
  ASSIGN_OR_RETURN(ChainHead head, tx.audit().LockHead(event->tenant()));
  if (sealer_ != nullptr) {
    // Sealed for the place the event is about to take, so that the chain
    // hashes the sealed bytes (a revoked key never stops verification).
    event->set_sequence(head.sequence + 1);
    RETURN_IF_ERROR(sealer_->SealAuditEvent(tx, event));
  }
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

absl::Status AuditLog::AppendAll(Transaction& tx, std::vector<v1::AuditEvent>* events) const {
  if (events->empty()) return absl::OkStatus();
  const std::string tenant = events->front().tenant();
  for (const v1::AuditEvent& e : *events) {
    if (e.tenant() != tenant) {
      return absl::InvalidArgumentError("AppendAll appends to one tenant's log");
    }
  }
  ASSIGN_OR_RETURN(ChainHead head, tx.audit().LockHead(tenant));
  std::vector<v1::AuditCheckpoint> checkpoints;
  for (v1::AuditEvent& e : *events) {
    if (sealer_ != nullptr) {
      e.set_sequence(head.sequence + 1);
      RETURN_IF_ERROR(sealer_->SealAuditEvent(tx, &e));
    }
    head = LinkAuditEvent(head, &e);
    if (signer_ != nullptr && CheckpointDue(head, checkpoint_every_)) {
      checkpoints.push_back(UnsignedCheckpoint(tenant, head, FromProto(e.event_time())));
    }
  }
  RETURN_IF_ERROR(tx.audit().InsertEvents(*events));
  for (v1::AuditCheckpoint& c : checkpoints) {
    RETURN_IF_ERROR(signer_->Sign(&c));
    RETURN_IF_ERROR(tx.audit().InsertCheckpoint(c));
  }
  return absl::OkStatus();
}

absl::Status AuditLog::AppendOrWithhold(Transaction& tx, v1::AuditEvent* event) const {
  v1::AuditEvent whole = *event;
  absl::Status appended = Append(tx, event);
  if (appended.ok() || ReasonOf(appended) != "KEY_UNAVAILABLE") return appended;
  *event = std::move(whole);
  std::vector<std::string> withheld;
  if (!event->justification().empty()) {
    event->clear_justification();
    withheld.push_back("justification");
  }
  for (const char* k : kSealedDetails) {
    if (event->mutable_details()->erase(k) != 0) withheld.push_back(absl::StrCat("details.", k));
  }
  std::string& listed = (*event->mutable_details())["withheld"];
  listed = absl::StrJoin(withheld, ",") + (listed.empty() || withheld.empty() ? "" : ",") + listed;
  return Append(tx, event);
}

}  // namespace lockbox
