// What time decides: expiry of requests and grants, and reminders. Run by
// the sweep in every replica; row claims (FOR UPDATE SKIP LOCKED) make each
// transition happen exactly once however many replicas sweep.
#include "server/app/change.h"
#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {
constexpr absl::Duration kReminderBefore = absl::Hours(24);
}  // namespace

Actor SystemActor() {
  return Actor{Principal{"lockboxd", Principal::Kind::kService, "", "lockboxd"}, std::nullopt,
               Permissions()};
}

absl::StatusOr<Contacts> Lockbox::ContactsFor(Transaction& tx, const v1::AccessRequest& r) {
  std::string tenant = r.name().substr(8, r.name().find('/', 8) - 8);
  Contacts c;
  ASSIGN_OR_RETURN(c.reviewers, tx.tenancy().ContactEmails(Role::kReviewer, "", r.requester()));
  ASSIGN_OR_RETURN(c.tenant_admins, tx.tenancy().ContactEmails(Role::kTenantAdmin, tenant, ""));
  ASSIGN_OR_RETURN(c.requester, tx.tenancy().EmailsOf(r.requester()));
  ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(tenant, false));
  c.policy_emails.assign(policy.notification_emails().begin(), policy.notification_emails().end());
  c.webhook_url = policy.webhook_url();
  return c;
}

absl::Status Lockbox::Notify(Transaction& tx, RequestEvent event, const v1::AccessRequest& r,
                             const v1::Grant* grant, absl::Time now) {
  ASSIGN_OR_RETURN(Contacts contacts, ContactsFor(tx, r));
  return tx.outbox().EnqueueMessages(RequestMessages(event, r, grant, contacts, now), now);
}

absl::StatusOr<bool> Lockbox::ExpireOneRequest() {
  bool found = false;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    absl::Time now = options_.clock->Now();
    ASSIGN_OR_RETURN(std::optional<ClaimedRow> row, tx.requests().ClaimExpiredRequest(now));
    found = row.has_value();
    if (!found) return absl::OkStatus();
    ASSIGN_OR_RETURN(v1::AccessRequest r,
                     tx.requests().GetAccessRequest(row->tenant, row->id, true));
    RETURN_IF_ERROR(RecordExpiry(now, &r));
    RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(row->tenant, row->id, &r));
    v1::AuditEvent e = NewAuditEvent(SystemActor(), "access_request.expire", row->tenant,
                                     r.name(), now);
    SetRequestFields(r, &e);
    RETURN_IF_ERROR(audit_log_.Append(tx, &e));
    return Notify(tx, RequestEvent::kExpired, r, nullptr, now);
  });
  if (!status.ok()) return status;
  return found;
}

absl::StatusOr<bool> Lockbox::ExpireOneGrant() {
  bool found = false;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    absl::Time now = options_.clock->Now();
    ASSIGN_OR_RETURN(std::optional<ClaimedRow> row, tx.grants().ClaimExpiredGrant(now));
    found = row.has_value();
    if (!found) return absl::OkStatus();
    ASSIGN_OR_RETURN(v1::Grant g, tx.grants().GetGrant(row->tenant, row->id, true));
    RETURN_IF_ERROR(RecordExpiry(now, &g));
    RETURN_IF_ERROR(tx.grants().UpdateGrant(row->tenant, row->id, &g));
    ASSIGN_OR_RETURN(v1::AccessRequest r, tx.requests().GetAccessRequest(
                                              row->tenant, IdOfName(g.access_request()), false));
    v1::AuditEvent e = NewAuditEvent(SystemActor(), "grant.expire", row->tenant, g.name(), now);
    SetRequestFields(r, &e);
    *e.mutable_access_expire_time() = g.expire_time();
    (*e.mutable_details())["grant_state"] = v1::Grant::State_Name(g.state());
    RETURN_IF_ERROR(audit_log_.Append(tx, &e));
    ASSIGN_OR_RETURN(Contacts contacts, ContactsFor(tx, r));
    return tx.outbox().EnqueueMessages(GrantEndedMessages(g, r, contacts, now), now);
  });
  if (!status.ok()) return status;
  return found;
}

absl::StatusOr<bool> Lockbox::RemindOne() {
  bool found = false;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    absl::Time now = options_.clock->Now();
    ASSIGN_OR_RETURN(std::optional<ClaimedRow> row,
                     tx.requests().ClaimReminder(now, now + kReminderBefore));
    found = row.has_value();
    if (!found) return absl::OkStatus();
    ASSIGN_OR_RETURN(v1::AccessRequest r,
                     tx.requests().GetAccessRequest(row->tenant, row->id, true));
    RETURN_IF_ERROR(tx.requests().MarkReminded(row->tenant, row->id));
    ApplyReadTimeState(now, &r);
    return Notify(tx, RequestEvent::kReminder, r, nullptr, now);
  });
  if (!status.ok()) return status;
  return found;
}

}  // namespace lockbox
