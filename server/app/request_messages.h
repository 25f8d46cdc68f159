// Who is told about a request, and the messages put in the outbox of the
// transaction that changes it.
#ifndef LOCKBOX_SERVER_APP_REQUEST_MESSAGES_H_
#define LOCKBOX_SERVER_APP_REQUEST_MESSAGES_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/sealed_data.h"
#include "server/domain/notifications.h"
#include "server/store/store.h"

namespace lockbox {

// Everyone who may be told about `request`: reviewers (not the requester),
// the tenant's admins, the requester, the policy's addresses and webhook.
absl::StatusOr<Contacts> ContactsFor(Transaction& tx, const v1::AccessRequest& request);

// The messages below are built from `request` opened (in plain text) and
// their bodies sealed for a sealed tenant (Sealer::SealMessages): that
// fails with KEY_UNAVAILABLE while its key cannot be used, unless the
// request's sealed fields could not be opened either (a sweep while the
// key is revoked) and it holds no other words (every justification and
// comment reads empty): then the messages, which hold none, are stored as
// they are.

// Puts the messages for `event` in this transaction's outbox.
// `security_contact` is the provider's (break-glass events), "" for none.
absl::Status NotifyRequest(const Sealer& sealer, Transaction& tx, RequestEvent event,
                           const v1::AccessRequest& request, const v1::Grant* grant, absl::Time now,
                           const std::string& security_contact = "");

// Puts the messages for a grant's end in this transaction's outbox.
absl::Status NotifyGrantEnded(const Sealer& sealer, Transaction& tx, const v1::Grant& grant,
                              const v1::AccessRequest& request, absl::Time now);

// Puts messages that hold no person's words (a policy's or an identity
// configuration's change) in this transaction's outbox: sealed for a sealed
// tenant when its key can be used, else as they are (these changes must be
// told, and can be made, while the key is revoked).
absl::Status EnqueueWithoutWords(const Sealer& sealer, Transaction& tx,
                                 std::vector<OutboundMessage> messages, absl::Time now);

// Puts the e-mails telling the tenant's admins that its identity
// configuration changed in this transaction's outbox (EnqueueWithoutWords).
absl::Status NotifyIdentityChanged(const Sealer& sealer, Transaction& tx, const std::string& tenant,
                                   const v1::TenantIdentity& before,
                                   const v1::TenantIdentity& after, const std::string& changed_by,
                                   absl::Time now);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_REQUEST_MESSAGES_H_
