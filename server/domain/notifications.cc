#include "server/domain/notifications.h"

#include <google/protobuf/util/json_util.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"

namespace lockbox {
namespace {

using v1::AccessRequest;

std::string When(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M UTC", FromProto(t), absl::UTCTimeZone());
}

std::string Ticket(const AccessRequest& r) {
  if (r.reason() == AccessRequest::EMERGENCY) return absl::StrCat("incident ", r.incident_id());
  return r.reason() == AccessRequest::OPERATOR_INITIATED ? "Operator initiated"
                                                         : r.support_ticket_id();
}

// Every break-glass message's subject starts so, for filters and eyes.
constexpr char kEmergencyPrefix[] = "[EMERGENCY ACCESS] ";

std::string TenantOf(const std::string& name) {
  std::string rest = name.substr(name.find('/') + 1);
  return rest.substr(0, rest.find('/'));
}

// Where a message to provider staff (reviewers, the requesting engineer) is
// listed: the global notifications/ collection, for lockbox.admin, never
// under the customer's tenant, whose members must not read the provider
// staff's addresses and messages. Delivery does not depend on it.
constexpr char kProviderOutbox[] = "";

std::string Hours(const google::protobuf::Duration& d) {
  return absl::FormatDuration(FromProto(d));
}

// The facts a person needs to decide, in every e-mail about a request.
std::string Facts(const AccessRequest& r) {
  std::string sources =
      r.data_sources().empty() ? "all" : absl::StrJoin(r.data_sources(), ", ");
  std::string out = absl::StrCat(
      "Requested by:    ", r.requester(), "\n",
      "Environment:     ", r.environment(), "\n",
      "Data sources:    ", sources, "\n",
      "Support ticket:  ", Ticket(r), "\n",
      "Justification:   ", r.justification(), "\n",
      "Requested at:    ", When(r.create_time()), "\n");
  if (r.state() == AccessRequest::PENDING) {
    absl::StrAppend(&out, "Decide before:   ", When(r.expire_time()), "\n");
    if (r.approvals_needed() > 0) {
      absl::StrAppend(&out, "Approvals:       ", r.approvals_needed(), " more needed\n");
    }
  }
  // Scheduled access: the window the approvers are asked to open.
  if (r.has_start_time()) absl::StrAppend(&out, "Access from:     ", When(r.start_time()), "\n");
  absl::StrAppend(&out, "Access period:   ", Hours(r.access_duration()), "\n",
                  "Status:          ", r.display_status(), "\n",
                  "Request:         ", r.name(), "\n");
  // An extension asks for more time on a grant the reviewers approved
  // before: the period is on top of that grant's end.
  if (!r.extends_grant().empty()) {
    absl::StrAppend(&out, "Extends grant:   ", r.extends_grant(),
                    " (the period is added to its end)\n");
  }
  if (r.has_emergency_review()) {
    const v1::EmergencyReview& review = r.emergency_review();
    absl::StrAppend(&out, "Grant:           ", r.grant(), "\n",
                    "Review:          ", v1::EmergencyReview::State_Name(review.state()),
                    review.overdue() ? " (overdue)" : "", "\n",
                    "Review due:      ", When(review.due_time()), "\n");
    if (!review.reviewer().empty()) {
      absl::StrAppend(&out, "Reviewed by:     ", review.reviewer(),
                      review.via().empty() ? "" : absl::StrCat(" (via ", review.via(), ")"), "\n",
                      "Review comment:  ", review.comment(), "\n");
    }
  }
  return out;
}

std::string LastDecision(const AccessRequest& r) {
  if (r.decisions().empty()) return "";
  const v1::Decision& d = *r.decisions().rbegin();
  return absl::StrCat(d.verdict() == v1::Decision::APPROVE ? "Approved" : "Denied", " by ",
                      d.reviewer(), d.via().empty() ? "" : absl::StrCat(" (via ", d.via(), ")"),
                      " at the ",
                      d.stage() == AccessRequest::CUSTOMER_REVIEW ? "customer" : "internal",
                      " review", d.comment().empty() ? "" : absl::StrCat(": ", d.comment()));
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out);
  return out;
}

std::string Quote(const std::string& s) {
  return absl::StrCat("\"", absl::CEscape(s), "\"");
}

std::vector<std::string> Unique(std::vector<std::string> a, const std::vector<std::string>& b = {}) {
  a.insert(a.end(), b.begin(), b.end());
  std::set<std::string> seen;
  std::vector<std::string> out;
  for (auto& x : a) {
    if (!x.empty() && seen.insert(x).second) out.push_back(x);
  }
  return out;
}

void AddEmails(const std::vector<std::string>& to, const std::string& tenant,
               const std::string& event, const std::string& resource, const std::string& subject,
               const std::string& body, std::vector<OutboundMessage>* out) {
  for (const std::string& address : Unique(to)) {
    out->push_back(OutboundMessage{NewUuid(), tenant, v1::Notification::EMAIL, address, event,
                                   resource, subject, body});
  }
}

void AddWebhook(const Contacts& c, const std::string& tenant, const std::string& event,
                const std::string& resource, const std::string& subject, absl::Time now,
                const AccessRequest& r, const v1::Grant* grant,
                std::vector<OutboundMessage>* out) {
  if (c.webhook_url.empty()) return;
  std::string id = NewUuid();
  // JSON that the usual chat and ticketing integrations can take apart.
  std::string body = absl::StrCat(
      "{\"id\":", Quote(id), ",\"event\":", Quote(event),
      ",\"time\":", Quote(absl::FormatTime(absl::RFC3339_full, now, absl::UTCTimeZone())),
      ",\"tenant\":", Quote(tenant), ",\"text\":", Quote(subject),
      r.reason() == AccessRequest::EMERGENCY ? ",\"emergency\":true" : "",
      ",\"access_request\":", Json(r), grant ? absl::StrCat(",\"grant\":", Json(*grant)) : "", "}");
  out->push_back(OutboundMessage{id, tenant, v1::Notification::WEBHOOK, c.webhook_url, event,
                                 resource, subject, body});
}

}  // namespace

std::vector<OutboundMessage> RequestMessages(RequestEvent event, const AccessRequest& r,
                                             const v1::Grant* grant, const Contacts& c,
                                             absl::Time now) {
  std::vector<OutboundMessage> out;
  const std::string tenant = TenantOf(r.name());
  const std::string about = absl::StrCat(r.environment(), " (", Ticket(r), ")");
  std::string name, subject, body;
  std::vector<std::string> to;
  // Whether `to` is provider staff rather than the customer's people.
  bool to_provider = true;
  // Provider staff told besides the customer's `to` (break-glass).
  std::vector<std::string> also_provider;
  const std::string review_cmd = absl::StrCat("  lockboxctl breakglass review ", r.name(),
                                              " accept\n  lockboxctl breakglass review ", r.name(),
                                              " dispute --comment \"what is wrong\"\n");
  switch (event) {
    case RequestEvent::kCreated:
      name = "access_request.created";
      subject = absl::StrCat("[Lockbox] Review needed: access to ", about);
      body = absl::StrCat(
          "An engineer asks for access to customer data. Every request is reviewed by the "
          "provider first.\n\n",
          Facts(r),
          "\nWhat to do: check the ticket and the justification, then approve or deny:\n"
          "  lockboxctl approve ", r.name(), "\n  lockboxctl deny ", r.name(),
          " --comment \"why\"\nYou cannot decide a request of your own.\n");
      to = c.reviewers;
      break;
    case RequestEvent::kCustomerReview:
      name = "access_request.customer_review";
      subject = absl::StrCat("[Lockbox] Action needed: access request for ", about);
      body = absl::StrCat(
          "A provider engineer asks to access your organisation's data. The provider's "
          "internal review approved it; nothing is accessed until you approve.\n\n",
          Facts(r),
          "\nWhat to do: approve or deny before ", When(r.expire_time()),
          ". If nobody decides, the request expires and no access is given.\n"
          "  lockboxctl approve ", r.name(), "\n  lockboxctl deny ", r.name(),
          " --comment \"why\"\nor use your admin portal (Lockbox requests, \"Action needed\").\n");
      to = Unique(c.tenant_admins, c.policy_emails);
      to_provider = false;
      break;
    case RequestEvent::kDecided: {
      name = "access_request.decided";
      bool approved = r.state() == AccessRequest::APPROVED;
      bool waiting = r.state() == AccessRequest::PENDING;
      // Quorum: an approval that leaves the stage waiting for more people.
      bool counted =
          waiting && !r.decisions().empty() && r.decisions().rbegin()->stage() == r.stage();
      subject = absl::StrCat("[Lockbox] Your access request was ",
                             approved  ? "approved"
                             : counted ? "approved by one reviewer"
                             : waiting ? "approved internally"
                                       : "denied",
                             ": ", about);
      std::string what;
      if (approved) {
        // A scheduled grant (its start after the decision) allows nothing yet.
        std::string from;
        if (grant && FromProto(grant->start_time()) > FromProto(r.update_time())) {
          from = absl::StrCat(" from ", When(grant->start_time()));
        }
        what = absl::StrCat("You have access",
                            grant ? absl::StrCat(from, " until ", When(grant->expire_time()),
                                                 " (grant ", grant->name(), ")")
                                  : "",
                            ". Release it when you are done:\n  lockboxctl release ",
                            grant ? grant->name() : r.grant(), "\n");
      } else if (counted) {
        what = absl::StrCat("It waits for ", r.approvals_needed(), " more approval",
                            r.approvals_needed() == 1 ? "" : "s", " at the ",
                            r.stage() == AccessRequest::CUSTOMER_REVIEW ? "customer" : "internal",
                            " review, until ", When(r.expire_time()), ".\n");
      } else if (waiting) {
        what = absl::StrCat("It now waits for the customer, until ", When(r.expire_time()),
                            ". You will be told when they decide.\n");
      } else {
        what = "No access is given. Create a new request if the reason changes.\n";
      }
      body = absl::StrCat(LastDecision(r), ".\n\n", Facts(r), "\n", what);
      to = c.requester;
      break;
    }
    case RequestEvent::kExpired:
      name = "access_request.expired";
      subject = absl::StrCat("[Lockbox] Your access request expired: ", about);
      body = absl::StrCat("Nobody decided before ", When(r.expire_time()),
                          ", so the request expired and no access is given.\n\n", Facts(r),
                          "\nWhat to do: create a new request if you still need access, and "
                          "ask the approvers to watch for it.\n");
      to = c.requester;
      break;
    case RequestEvent::kReminder: {
      name = "access_request.reminder";
      bool customer = r.stage() == AccessRequest::CUSTOMER_REVIEW;
      subject = absl::StrCat("[Lockbox] Reminder: decide by ", When(r.expire_time()), " on ",
                             about);
      body = absl::StrCat("This access request expires in less than 24 hours and still waits ",
                          customer ? "for your organisation" : "for the provider's review",
                          ".\n\n", Facts(r), "\nWhat to do: approve or deny it now:\n"
                          "  lockboxctl approve ", r.name(), "\n  lockboxctl deny ", r.name(),
                          " --comment \"why\"\n");
      to = customer ? Unique(c.tenant_admins, c.policy_emails) : c.reviewers;
      to_provider = !customer;
      break;
    }
    case RequestEvent::kNoLongerNeeded: {
      name = "access_request.no_longer_needed";
      bool customer = StageLeft(r) == AccessRequest::CUSTOMER_REVIEW;
      std::string why;
      switch (r.state()) {
        case AccessRequest::PENDING:
        case AccessRequest::APPROVED:
          why = "it has the approvals it needed";
          break;
        case AccessRequest::DENIED:
          why = "it was denied";
          break;
        case AccessRequest::CANCELLED:
          // An extension is also cancelled by the system, when its grant
          // ended or can no longer be extended.
          why = r.extends_grant().empty()
                    ? "the requester cancelled it"
                    : "it was cancelled (its grant ended or can no longer be extended)";
          break;
        default:
          why = "it expired";
      }
      subject = absl::StrCat("[Lockbox] No longer needs you: access request for ", about);
      body = absl::StrCat("This access request no longer needs your decision at the ",
                          customer ? "customer" : "internal", " review: ", why, ".\n\n",
                          LastDecision(r).empty() ? "" : absl::StrCat(LastDecision(r), ".\n\n"),
                          Facts(r), "\nWhat to do: nothing.\n");
      std::vector<std::string> asked =
          customer ? Unique(c.tenant_admins, c.policy_emails) : c.reviewers;
      std::set<std::string> decided(c.deciders.begin(), c.deciders.end());
      for (const std::string& address : asked) {
        if (!decided.count(address)) to.push_back(address);
      }
      to_provider = !customer;
      break;
    }
    case RequestEvent::kEmergencyOpened:
      name = "access_request.emergency_opened";
      subject =
          absl::StrCat(kEmergencyPrefix, r.requester(), " opened emergency access to ", about);
      body = absl::StrCat(
          "A provider engineer opened emergency (break-glass) access to your organisation's "
          "data for an incident. It was granted at once, without your approval, because your "
          "lockbox policy allows emergency access; it ends by itself after the access period.\n\n",
          Facts(r), "\nWhat to do: review it before ", When(r.emergency_review().due_time()),
          ": accept it, or dispute it with a comment (the provider's security team is told):\n",
          review_cmd,
          "To forbid emergency access from now on, set the policy's emergency_access to "
          "FORBIDDEN.\n");
      to = Unique(c.tenant_admins, c.policy_emails);
      to_provider = false;
      break;
    case RequestEvent::kEmergencyReminder:
      name = "access_request.emergency_review_reminder";
      subject = absl::StrCat(kEmergencyPrefix, "Reminder: review emergency access to ", about,
                             " by ", When(r.emergency_review().due_time()));
      body = absl::StrCat(
          "An emergency access to your organisation's data still waits for your "
          "review.\n\n",
          Facts(r), "\nWhat to do: accept it or dispute it:\n", review_cmd);
      to = Unique(c.tenant_admins, c.policy_emails);
      to_provider = false;
      break;
    case RequestEvent::kEmergencyOverdue:
      name = "access_request.emergency_review_overdue";
      subject = absl::StrCat(kEmergencyPrefix, "Review overdue: emergency access to ", about);
      body = absl::StrCat(
          "Nobody reviewed this emergency access by its due time. It is recorded "
          "overdue, and the provider's security contact is told. It may still be "
          "reviewed, late.\n\n",
          Facts(r), "\nWhat to do: accept it or dispute it:\n", review_cmd);
      to = Unique(c.tenant_admins, c.policy_emails);
      to_provider = false;
      also_provider = {c.security_contact};
      break;
    case RequestEvent::kEmergencyDisputed:
      name = "access_request.emergency_disputed";
      subject =
          absl::StrCat(kEmergencyPrefix, "Disputed by the customer: emergency access to ", about);
      body = absl::StrCat(
          "A tenant admin disputed this emergency access. Follow it up with the "
          "customer and the engineer.\n\n",
          Facts(r));
      to = {c.security_contact};
      break;
  }
  AddEmails(to, to_provider ? kProviderOutbox : tenant, name, r.name(), subject, body, &out);
  AddEmails(also_provider, kProviderOutbox, name, r.name(), subject, body, &out);
  if (event == RequestEvent::kNoLongerNeeded && to_provider) return out;
  AddWebhook(c, tenant, name, r.name(), subject, now, r, grant, &out);
  return out;
}

AccessRequest::Stage StageLeft(const AccessRequest& r) {
  return r.state() == AccessRequest::PENDING ? AccessRequest::INTERNAL_REVIEW : r.stage();
}

std::vector<OutboundMessage> GrantEndedMessages(const v1::Grant& g, const AccessRequest& r,
                                                const Contacts& c, absl::Time now) {
  std::vector<OutboundMessage> out;
  const std::string tenant = TenantOf(g.name());
  std::string how = g.state() == v1::Grant::EXPIRED    ? "expired"
                    : g.state() == v1::Grant::RELEASED ? "was released"
                                                       : "was revoked";
  std::string subject =
      absl::StrCat("[Lockbox] Your access to ", g.environment(), " ", how, " (", Ticket(r), ")");
  std::string body = absl::StrCat(
      "Your grant ", g.name(), " ", how, " at ",
      When(g.has_end_time() ? g.end_time() : g.expire_time()),
      ". Data-plane services no longer let you in.\n\n", Facts(r),
      "\nWhat to do: nothing, unless you still need access: then create a new request.\n");
  AddEmails(c.requester, kProviderOutbox, "grant.ended", g.name(), subject, body, &out);
  AddWebhook(c, tenant, "grant.ended", g.name(), subject, now, r, &g, &out);
  return out;
}

namespace {

std::string IdentitySummary(const v1::TenantIdentity& identity) {
  std::string out;
  for (const std::string& f : identity.ca_fingerprints()) {
    absl::StrAppend(&out, "  CA (SHA-256):  ", f, "\n");
  }
  if (identity.token_issuers().empty()) absl::StrAppend(&out, "  Token issuers: none\n");
  for (const v1::TokenIssuer& i : identity.token_issuers()) {
    absl::StrAppend(&out, "  Token issuer:  ", i.issuer(), " (audience ", i.audience(), ")\n");
  }
  return out;
}

}  // namespace

std::vector<OutboundMessage> IdentityChangedMessages(const v1::TenantIdentity& before,
                                                     const v1::TenantIdentity& after,
                                                     const std::string& changed_by,
                                                     const std::vector<std::string>& tenant_admins,
                                                     absl::Time now) {
  std::vector<OutboundMessage> out;
  const std::string tenant = TenantOf(after.name());
  std::string subject =
      absl::StrCat("[Lockbox] Your organisation's identity configuration changed (", tenant, ")");
  std::string body = absl::StrCat(
      "Who Lockbox trusts to prove your users changed at ",
      absl::FormatTime("%Y-%m-%d %H:%M UTC", now, absl::UTCTimeZone()), ".\n\n",
      "Changed by:      ", changed_by, "\n\nBefore:\n", IdentitySummary(before), "\nNow:\n",
      IdentitySummary(after),
      "\nWhat to do: compare the fingerprints with your own CA certificates:\n"
      "  lockboxctl tenants identity get ",
      tenant,
      "\nIf you did not expect this change, remove the admin who made it and set your own "
      "bundle again.\n");
  AddEmails(tenant_admins, tenant, "tenant_identity.updated", after.name(), subject, body, &out);
  return out;
}

std::string WebhookSignature(const std::string& secret, int64_t unix_seconds,
                             const std::string& body) {
  std::string signed_text = absl::StrCat(unix_seconds, ".", body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size(), mac, &len);
  return absl::StrCat("t=", unix_seconds, ",v1=",
                      absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(mac), len)));
}

}  // namespace lockbox
