// Appending to the audit log inside a use case's transaction: lock the
// tenant's head, link the event after it (domain/audit_link.h), store it,
// and every `checkpoint_every` events of a log sign a checkpoint of the new
// head in the same transaction.
#ifndef LOCKBOX_SERVER_APP_AUDIT_LOG_H_
#define LOCKBOX_SERVER_APP_AUDIT_LOG_H_

#include "absl/status/status.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/audit_signing.h"
#include "server/store/store.h"

namespace lockbox {

// Thread-safe (immutable): one serves every call.
class AuditLog {
 public:
  // `signer` (not owned; may be null: no checkpoints) outlives the log.
  AuditLog(const AuditSigner* signer, int checkpoint_every)
      : signer_(signer), checkpoint_every_(checkpoint_every) {}

  // Appends `event` (tenant and content set) to its tenant's chain: sets
  // sequence, name, previous_hash and hash. Appends to one log queue on its
  // head until the transaction ends.
  absl::Status Append(Transaction& tx, v1::AuditEvent* event) const;

 private:
  const AuditSigner* const signer_;
  const int checkpoint_every_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_AUDIT_LOG_H_
