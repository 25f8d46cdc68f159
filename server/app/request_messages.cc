#include "server/app/request_messages.h"

#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {

absl::StatusOr<Contacts> ContactsFor(Transaction& tx, const v1::AccessRequest& r) {
  std::string tenant = TenantOfName(r.name());
  Contacts c;
  ASSIGN_OR_RETURN(c.reviewers, tx.tenancy().ContactEmails(Role::kReviewer, "", r.requester()));
  ASSIGN_OR_RETURN(c.tenant_admins, tx.tenancy().ContactEmails(Role::kTenantAdmin, tenant, ""));
  ASSIGN_OR_RETURN(c.requester, tx.tenancy().EmailsOf(r.requester()));
  ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(tenant, false));
  c.policy_emails.assign(policy.notification_emails().begin(), policy.notification_emails().end());
  c.webhook_url = policy.webhook_url();
  return c;
}

namespace {

// Whether messages built from `r` hold none of its people's words: a
// field that could not be opened reads empty, so only when every one of
// them is empty (one that opened, e.g. under a version still enabled, would
// otherwise go out of the outbox in plain text).
bool HoldsNoWords(const v1::AccessRequest& r) {
  if (!r.justification().empty()) return false;
  for (const v1::Decision& d : r.decisions()) {
    if (!d.comment().empty()) return false;
  }
  return r.emergency_review().comment().empty();
}

absl::Status Enqueue(const Sealer& sealer, Transaction& tx, const v1::AccessRequest& r,
                     std::vector<OutboundMessage> messages, absl::Time now) {
  std::vector<OutboundMessage> stored = messages;
  absl::Status sealed = sealer.SealMessages(tx, &stored);
  if (sealed.ok()) return tx.outbox().EnqueueMessages(stored, now);
  // Built from a request whose sealed fields could not be opened either
  // (a sweep while the key is revoked), they hold none of them: stored as
  // they are rather than lost.
  bool nothing_to_hide = r.unavailable_reason() == v1::KEY_UNAVAILABLE && HoldsNoWords(r);
  if (!(nothing_to_hide && ReasonOf(sealed) == "KEY_UNAVAILABLE")) return sealed;
  return tx.outbox().EnqueueMessages(messages, now);
}

}  // namespace

absl::Status NotifyRequest(const Sealer& sealer, Transaction& tx, RequestEvent event,
                           const v1::AccessRequest& r, const v1::Grant* grant, absl::Time now,
                           const std::string& security_contact) {
  ASSIGN_OR_RETURN(Contacts contacts, ContactsFor(tx, r));
  if (event == RequestEvent::kNoLongerNeeded) {
    // Who decided the stage left needs no telling, by any of their
    // addresses.
    const v1::AccessRequest::Stage left = StageLeft(r);
    for (const v1::Decision& d : r.decisions()) {
      if (d.stage() != left) continue;
      ASSIGN_OR_RETURN(std::vector<std::string> emails, tx.tenancy().EmailsOf(d.reviewer()));
      contacts.deciders.insert(contacts.deciders.end(), emails.begin(), emails.end());
    }
  }
  contacts.security_contact = security_contact;
  return Enqueue(sealer, tx, r, RequestMessages(event, r, grant, contacts, now), now);
}

absl::Status NotifyGrantEnded(const Sealer& sealer, Transaction& tx, const v1::Grant& grant,
                              const v1::AccessRequest& request, absl::Time now) {
  ASSIGN_OR_RETURN(Contacts contacts, ContactsFor(tx, request));
  return Enqueue(sealer, tx, request, GrantEndedMessages(grant, request, contacts, now), now);
}

absl::Status EnqueueWithoutWords(const Sealer& sealer, Transaction& tx,
                                 std::vector<OutboundMessage> messages, absl::Time now) {
  std::vector<OutboundMessage> stored = messages;
  absl::Status sealed = sealer.SealMessages(tx, &stored);
  if (sealed.ok()) return tx.outbox().EnqueueMessages(stored, now);
  if (ReasonOf(sealed) != "KEY_UNAVAILABLE") return sealed;
  return tx.outbox().EnqueueMessages(messages, now);
}

absl::Status NotifyIdentityChanged(const Sealer& sealer, Transaction& tx, const std::string& tenant,
                                   const v1::TenantIdentity& before,
                                   const v1::TenantIdentity& after, const std::string& changed_by,
                                   absl::Time now) {
  ASSIGN_OR_RETURN(std::vector<std::string> admins,
                   tx.tenancy().ContactEmails(Role::kTenantAdmin, tenant, ""));
  return EnqueueWithoutWords(sealer, tx,
                             IdentityChangedMessages(before, after, changed_by, admins, now), now);
}

}  // namespace lockbox
