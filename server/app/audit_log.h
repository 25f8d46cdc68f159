// Appending to the audit log inside a use case's transaction: lock the
// tenant's head, link the event after it (domain/audit_link.h), store it,
// and every `checkpoint_every` events of a log sign a checkpoint of the new
// head in the same transaction.
#ifndef LOCKBOX_SERVER_APP_AUDIT_LOG_H_
#define LOCKBOX_SERVER_APP_AUDIT_LOG_H_

#include <vector>

#include "absl/status/status.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/sealed_data.h"
#include "server/domain/audit_signing.h"
#include "server/store/store.h"

namespace lockbox {

// Thread-safe (immutable): one serves every call.
class AuditLog {
 public:
  // `signer` (not owned; may be null: no checkpoints) and `sealer` (not
  // owned; may be null: nothing sealed) outlive the log.
  AuditLog(const AuditSigner* signer, int checkpoint_every, const Sealer* sealer = nullptr)
      : signer_(signer), checkpoint_every_(checkpoint_every), sealer_(sealer) {}

  // Appends `event` (tenant and content set, its justification and details
  // in plain text) to its tenant's chain: seals the person's words for a
  // sealed tenant (Sealer::SealAuditEvent; FAILED_PRECONDITION
  // KEY_UNAVAILABLE when there are some and its key cannot be used), sets
  // sequence, name, previous_hash and hash over what is stored. Appends to
  // one log queue on its head until the transaction ends.
  absl::Status Append(Transaction& tx, v1::AuditEvent* event) const;
  // Appends `events` (all of one tenant) in order, as Append of each in
  // turn would (the same chain, sealing and checkpoints every
  // `checkpoint_every` events), with the head locked once and the events
  // stored in one batch. INVALID_ARGUMENT when they are of several tenants.
  absl::Status AppendAll(Transaction& tx, std::vector<v1::AuditEvent>* events) const;
  // For what time decides (sweeps), which runs whatever a tenant's key:
  // Append, or when the tenant's key cannot be used, Append without the
  // person's words, named in details["withheld"] (e.g. "justification").
  absl::Status AppendOrWithhold(Transaction& tx, v1::AuditEvent* event) const;

 private:
  const AuditSigner* const signer_;
  const int checkpoint_every_;
  const Sealer* const sealer_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_AUDIT_LOG_H_
