// Who is told what, and what the message says (SPEC section 4). Pure: the
// application layer puts the messages in the outbox in the same transaction
// as the change they tell of; a delivery worker sends them later.
#ifndef LOCKBOX_SERVER_DOMAIN_NOTIFICATIONS_H_
#define LOCKBOX_SERVER_DOMAIN_NOTIFICATIONS_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"

namespace lockbox {

struct OutboundMessage {
  std::string id;  // Idempotency key: Message-ID / X-Lockbox-Idempotency-Key.
  // Where it is listed: the customer's tenant for what goes to the
  // customer's people and webhook; "" (notifications/, lockbox.admin) for
  // what goes to provider staff.
  std::string tenant;
  v1::Notification::Channel channel = v1::Notification::EMAIL;
  std::string recipient;  // E-mail address or webhook URL.
  std::string event;
  std::string resource;
  std::string subject;
  std::string body;  // Plain text for e-mail, JSON for webhooks.
};

// Everyone who may need telling about one request, from role bindings and
// the tenant's policy.
struct Contacts {
  std::vector<std::string> reviewers;      // operator.reviewer, not the requester.
  std::vector<std::string> tenant_admins;  // tenant.admin of the request's tenant.
  std::vector<std::string> requester;      // The requester's own addresses.
  std::vector<std::string> policy_emails;  // The policy's notification_emails.
  std::string webhook_url;                 // The tenant's webhook, if any.
  // For kNoLongerNeeded: the addresses of the people who decided the stage
  // the request left, who need no telling.
  std::vector<std::string> deciders;
  // The provider's security contact (--security-contact-email), for
  // break-glass reviews overdue or disputed; "" when none is configured.
  std::string security_contact;
};

enum class RequestEvent {
  kCreated,         // To reviewers.
  kCustomerReview,  // To tenant admins and the policy's addresses.
  kDecided,         // To the requester, after any approval or denial.
  kExpired,         // To the requester.
  kReminder,        // To whoever must decide now, 24 hours before expiry.
  // The request left a stage (its quorum met, denied, cancelled or
  // expired): to the people asked at that stage who did not decide it
  // (StageLeft): reviewers for the internal stage; tenant admins, the
  // policy's addresses and the tenant's webhook for the customer's.
  kNoLongerNeeded,
  // Break-glass (domain/emergency.h), each marked as emergency access:
  kEmergencyOpened,    // Granted: to tenant admins and the policy's addresses.
  kEmergencyReminder,  // The review is still open: to the same.
  kEmergencyOverdue,   // Past its due time: to the same and the security contact.
  kEmergencyDisputed,  // A tenant admin disputed it: to the security contact.
};

// The stage a request that was just decided, cancelled or expired left: the
// internal one while it is still PENDING (it moved on to the customer),
// else the one it ended in.
v1::AccessRequest::Stage StageLeft(const v1::AccessRequest& request);

// The messages for one event of `request` (its state after the event).
// `grant` is the grant an approval made, if any. Every event also goes to
// the tenant's webhook when one is set, except kNoLongerNeeded of the
// internal stage (the provider's own reviewers).
std::vector<OutboundMessage> RequestMessages(RequestEvent event, const v1::AccessRequest& request,
                                             const v1::Grant* grant, const Contacts& contacts,
                                             absl::Time now);

// The requester's grant ended (expired, released or revoked).
std::vector<OutboundMessage> GrantEndedMessages(const v1::Grant& grant,
                                                const v1::AccessRequest& request,
                                                const Contacts& contacts, absl::Time now);

// The tenant's identity configuration (CA bundle, token issuers) was
// changed by `changed_by`: told to the tenant's admins, with the CA
// fingerprints and issuers before and after (ca_fingerprints filled), so
// an admin who did not make the change sees it at once.
std::vector<OutboundMessage> IdentityChangedMessages(const v1::TenantIdentity& before,
                                                     const v1::TenantIdentity& after,
                                                     const std::string& changed_by,
                                                     const std::vector<std::string>& tenant_admins,
                                                     absl::Time now);

// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>", the value
// of the X-Lockbox-Signature header. Receivers recompute it and reject old
// timestamps to stop replays.
std::string WebhookSignature(const std::string& secret, int64_t unix_seconds,
                             const std::string& body);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_NOTIFICATIONS_H_
