// Break-glass (SPEC section 10): an operator.breakglass caller's emergency
// grant, granted at once, told to the tenant's admins at once, and reviewed
// by the customer afterwards. The rules are domain/emergency.h's.
#include <optional>

#include "absl/strings/str_join.h"
#include "lockbox/decision.h"
#include "server/app/access_request_use_cases.h"
#include "server/app/audit_events.h"
#include "server/app/decision_evidence.h"
#include "server/app/request_messages.h"
#include "server/domain/authorization.h"
#include "server/domain/emergency.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::OpenEmergencyAccess(
    const C& c, const v1::CreateAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseTenantName(r.parent(), "parent"));
  ASSIGN_OR_RETURN(TenantChildName env_name,
                   ParseChildName(r.access_request().environment(), "environments",
                                  "access_request.environment"));
  return runner().Change<v1::AccessRequest>(
      c, "CreateAccessRequest", r, r.request_id(),
      [](Transaction&, const Actor& a) { return authz::OpenEmergencyAccess(a); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        RETURN_IF_ERROR(authz::OpenEmergencyAccess(a));
        auto env = tx.tenancy().GetEnvironment(tenant, env_name.id, false);
        if (absl::IsNotFound(env.status())) {
          return Error(absl::StatusCode::kNotFound, reason::kNotFound,
                       absl::StrCat(r.access_request().environment(), " not found"));
        }
        RETURN_IF_ERROR(env.status());
        ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(tenant, false));
        RETURN_IF_ERROR(CheckEmergencyAllowed(policy));
        // A sealed tenant whose key cannot be used gets no new request, as
        // CreateAccessRequest (KEY_UNAVAILABLE).
        ASSIGN_OR_RETURN(std::optional<VersionKey> key, runner().sealer().KeyForNew(tx, tenant));
        std::string id = NewUuid();
        ASSIGN_OR_RETURN(v1::AccessRequest request,
                         NewEmergencyRequest(r.access_request(), tenant, id, *env, policy, a, now));
        // One at a time per engineer and tenant: racing opens wait on the
        // lock, and the later sees the earlier's grant.
        ASSIGN_OR_RETURN(std::vector<v1::Grant> active,
                         tx.grants().LockActiveEmergencyGrants(tenant, a.principal.spiffe_id, now));
        RETURN_IF_ERROR(CheckNoActiveEmergencyGrant(active.size()));
        std::string grant_id = NewUuid();
        v1::Grant grant = NewGrant(request, *env, policy, tenant, grant_id, now);
        request.set_grant(grant.name());
        v1::AccessRequest stored = Sealer::NewRequestForStore(key, request);
        RETURN_IF_ERROR(tx.requests().InsertAccessRequest(tenant, id, &stored));
        RETURN_IF_ERROR(tx.grants().InsertGrant(tenant, grant_id, &grant));
        request.set_etag(stored.etag());
        v1::AuditEvent e =
            NewAuditEvent(a, "access_request.emergency_open", tenant, request.name(), now);
        SetRequestFields(request, &e);
        *e.mutable_access_expire_time() = grant.expire_time();
        auto& d = *e.mutable_details();
        d["incident_id"] = request.incident_id();
        d["grant"] = grant.name();
        std::vector<std::string> pinned;
        for (const v1::PinnedDataSource& p : grant.pinned_data_sources()) pinned.push_back(p.id());
        d["grant_data_sources"] = absl::StrJoin(pinned, ",");
        d["review_due_time"] =
            absl::FormatTime(absl::RFC3339_full, FromProto(request.emergency_review().due_time()),
                             absl::UTCTimeZone());
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        RETURN_IF_ERROR(NotifyRequest(runner().sealer(), tx, RequestEvent::kEmergencyOpened,
                                      request, &grant, now));
        return request;
      });
}

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::ReviewEmergencyAccess(
    const C& c, const v1::ReviewEmergencyAccessRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  return runner().Change<v1::AccessRequest>(
      c, "ReviewEmergencyAccess", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::ReviewEmergencyAccess(a, name.tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        // Permission before anything about the request is read or said.
        RETURN_IF_ERROR(authz::ReviewEmergencyAccess(a, name.tenant));
        RETURN_IF_ERROR(ValidateReview(r.verdict(), r.comment()));
        ASSIGN_OR_RETURN(const v1::AccessRequest as_read,
                         tx.requests().GetAccessRequest(name.tenant, name.id, true));
        RETURN_IF_ERROR(CheckEtag(r.etag(), as_read.etag()));
        // The comment is the admin's words, sealed for a sealed tenant:
        // refused with KEY_UNAVAILABLE, nothing written, while its key
        // cannot be used. A review without a comment seals nothing, so the
        // customer can close it even then (e.g. after revoking the key).
        std::optional<VersionKey> key;
        if (!r.comment().empty()) {
          ASSIGN_OR_RETURN(key, runner().sealer().KeyForNew(tx, name.tenant));
        }
        v1::AccessRequest request = as_read;
        RETURN_IF_ERROR(runner().sealer().OpenRequest(tx, &request));
        RETURN_IF_ERROR(RecordReview(a, r.verdict(), r.comment(), now, &request));
        // The customer's own word, proven and signed as a decision is
        // (SPEC section 8): under require_signed_decisions the provider
        // cannot accept its own break-glass. The bytes are the review's
        // (lockbox.emergency_review.v1), rebuilt from what the call carries.
        const SignedCall call{r.etag(), r.has_signature() ? &r.signature() : nullptr};
        std::string signer_pem;
        ASSIGN_OR_RETURN(v1::DecisionEvidence evidence,
                         ProveCustomerDecision(
                             runner(), tx, c, a, now, name.tenant, call,
                             [&](const std::string& pem, const v1::DecisionSignature& signature) {
                               ReviewToSign signed_bytes{request.name(), r.etag(), r.verdict(),
                                                         r.comment(), signature.sign_time()};
                               return VerifyReviewSignature(pem, signed_bytes,
                                                            signature.signature());
                             },
                             &signer_pem));
        *request.mutable_emergency_review()->mutable_evidence() = evidence;
        v1::AccessRequest stored = Sealer::ChangedRequestForStore(as_read, key, request);
        RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(name.tenant, name.id, &stored));
        request.set_etag(stored.etag());
        ApplyReadTimeState(now, &request);
        v1::AuditEvent e =
            NewAuditEvent(a, "access_request.emergency_review", name.tenant, request.name(), now);
        SetRequestFields(request, &e);
        auto& d = *e.mutable_details();
        d["verdict"] = v1::EmergencyReview::Verdict_Name(r.verdict());
        if (!r.comment().empty()) d["comment"] = r.comment();
        d["overdue"] = request.emergency_review().overdue() ? "true" : "false";
        d["grant"] = request.grant();
        EvidenceDetails(evidence, a, call, signer_pem, &e);
        // Without a comment the event holds no words of the reviewer; what
        // of the request could not be opened is withheld, as sweeps do.
        RETURN_IF_ERROR(r.comment().empty() ? runner().audit_log().AppendOrWithhold(tx, &e)
                                            : runner().audit_log().Append(tx, &e));
        if (r.verdict() == v1::EmergencyReview::DISPUTE) {
          RETURN_IF_ERROR(NotifyRequest(runner().sealer(), tx, RequestEvent::kEmergencyDisputed,
                                        request, nullptr, now, options_.security_contact_email));
        }
        return request;
      });
}

absl::StatusOr<bool> AccessRequestUseCases::RemindEmergencyReviewOne() {
  return runner().HandleOneDue(
      [](Transaction& tx, absl::Time now) {
        // A review is due kEmergencyReviewPeriod after its grant opened, so
        // "opened at least N ago" is "due by now + period - N".
        return tx.requests().ClaimEmergencyReminder(
            now, now + kEmergencyReviewPeriod - kEmergencyFirstReminder,
            now + kEmergencyReviewPeriod - kEmergencySecondReminder);
      },
      [this](Transaction& tx, const ClaimedRow& row, absl::Time now) -> absl::Status {
        ASSIGN_OR_RETURN(v1::AccessRequest r,
                         tx.requests().GetAccessRequest(row.tenant, row.id, true));
        absl::Time opened = FromProto(r.emergency_review().due_time()) - kEmergencyReviewPeriod;
        // One message however late the sweep comes: the latest reminder due
        // stands for the ones before it.
        RETURN_IF_ERROR(tx.requests().SetEmergencyReminders(
            row.tenant, row.id, std::max(1, EmergencyRemindersDue(opened, now))));
        RETURN_IF_ERROR(runner().sealer().OpenRequest(tx, &r));
        ApplyReadTimeState(now, &r);
        return NotifyRequest(runner().sealer(), tx, RequestEvent::kEmergencyReminder, r, nullptr,
                             now);
      });
}

absl::StatusOr<bool> AccessRequestUseCases::MarkEmergencyReviewOverdueOne() {
  return runner().HandleOneDue(
      [](Transaction& tx, absl::Time now) { return tx.requests().ClaimOverdueReview(now); },
      [this](Transaction& tx, const ClaimedRow& row, absl::Time now) -> absl::Status {
        ASSIGN_OR_RETURN(const v1::AccessRequest as_read,
                         tx.requests().GetAccessRequest(row.tenant, row.id, true));
        // Runs whatever the tenant's key, as expiry does: what cannot be
        // opened is kept as stored and left out of the event and messages.
        v1::AccessRequest r = as_read;
        RETURN_IF_ERROR(runner().sealer().OpenRequest(tx, &r));
        RETURN_IF_ERROR(RecordReviewOverdue(now, &r));
        v1::AccessRequest stored = Sealer::ChangedRequestForStore(as_read, std::nullopt, r);
        RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(row.tenant, row.id, &stored));
        r.set_etag(stored.etag());
        ApplyReadTimeState(now, &r);
        v1::AuditEvent e = NewAuditEvent(SystemActor(), "access_request.emergency_review_overdue",
                                         row.tenant, r.name(), now);
        SetRequestFields(r, &e);
        (*e.mutable_details())["grant"] = r.grant();
        (*e.mutable_details())["review_due_time"] = absl::FormatTime(
            absl::RFC3339_full, FromProto(r.emergency_review().due_time()), absl::UTCTimeZone());
        RETURN_IF_ERROR(runner().audit_log().AppendOrWithhold(tx, &e));
        return NotifyRequest(runner().sealer(), tx, RequestEvent::kEmergencyOverdue, r, nullptr,
                             now, options_.security_contact_email);
      });
}

}  // namespace lockbox
