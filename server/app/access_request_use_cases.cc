// AccessRequestService: the request's life.
#include "server/app/access_request_use_cases.h"

#include <optional>

#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "lockbox/decision.h"
#include "server/app/audit_events.h"
#include "server/app/decision_evidence.h"
#include "server/app/grant_extensions.h"
#include "server/app/list_page.h"
#include "server/app/request_messages.h"
#include "server/domain/authorization.h"
#include "server/domain/filter.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

constexpr absl::Duration kRecent = absl::Hours(24 * 28);
constexpr absl::Duration kReminderBefore = absl::Hours(24);

const std::vector<FilterField>& RequestFilterFields() {
  static const std::vector<FilterField> kFields = {
      {"state",
       FilterField::Type::kEnum,
       {"PENDING", "APPROVED", "DENIED", "EXPIRED", "CANCELLED"}},
      {"stage", FilterField::Type::kEnum, {"INTERNAL_REVIEW", "CUSTOMER_REVIEW"}},
      {"environment"},
      {"requester"},
      {"support_ticket_id"},
      {"extends_grant"},
      {"create_time", FilterField::Type::kTime},
      // Break-glass: `reason = EMERGENCY AND review_state = OPEN` is what
      // waits for the customer's review.
      {"reason",
       FilterField::Type::kEnum,
       {"CUSTOMER_INITIATED_SUPPORT", "OPERATOR_INITIATED", "EMERGENCY"}},
      {"review_state", FilterField::Type::kEnum, {"OPEN", "ACCEPTED", "DISPUTED"}}};
  return kFields;
}

}  // namespace

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::CreateAccessRequest(
    const C& c, const v1::CreateAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseTenantName(r.parent(), "parent"));
  ASSIGN_OR_RETURN(TenantChildName env_name,
                   ParseChildName(r.access_request().environment(), "environments",
                                  "access_request.environment"));
  if (env_name.tenant != tenant) {
    return InvalidField("access_request.environment", "NOT_ALLOWED",
                        "must be an environment of the parent tenant");
  }
  if (r.access_request().reason() == v1::AccessRequest::EMERGENCY) {
    return OpenEmergencyAccess(c, r);
  }
  return runner().Change<v1::AccessRequest>(
      c, "CreateAccessRequest", r, r.request_id(),
      [](Transaction&, const Actor& a) { return authz::CreateAccessRequest(a); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        RETURN_IF_ERROR(authz::CreateAccessRequest(a));
        auto env = tx.tenancy().GetEnvironment(tenant, env_name.id, false);
        if (absl::IsNotFound(env.status())) {
          return Error(absl::StatusCode::kNotFound, reason::kNotFound,
                       absl::StrCat(r.access_request().environment(), " not found"));
        }
        RETURN_IF_ERROR(env.status());
        ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(tenant, false));
        // A sealed tenant whose key cannot be used gets no new request:
        // its justification could not be stored sealed (KEY_UNAVAILABLE).
        ASSIGN_OR_RETURN(std::optional<VersionKey> key, runner().sealer().KeyForNew(tx, tenant));
        std::string id = NewUuid();
        ASSIGN_OR_RETURN(v1::AccessRequest request,
                         NewAccessRequest(r.access_request(), tenant, id, *env, policy, a, now));
        v1::AccessRequest stored = Sealer::NewRequestForStore(key, request);
        RETURN_IF_ERROR(tx.requests().InsertAccessRequest(tenant, id, &stored));
        request.set_etag(stored.etag());
        v1::AuditEvent e = NewAuditEvent(a, "access_request.create", tenant, request.name(), now);
        SetRequestFields(request, &e);
        SetRequestScopeDetails(request, &e);
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        RETURN_IF_ERROR(
            NotifyRequest(runner().sealer(), tx, RequestEvent::kCreated, request, nullptr, now));
        return request;
      });
}

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::GetAccessRequest(
    const C& c, const v1::GetAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  return runner().Read<v1::AccessRequest>(
      c, [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        RETURN_IF_ERROR(authz::ReadAccessRequests(a, name.tenant));
        ASSIGN_OR_RETURN(v1::AccessRequest request,
                         tx.requests().GetAccessRequest(name.tenant, name.id, false));
        RETURN_IF_ERROR(authz::ReadAccessRequest(a, name.tenant, request.requester()));
        RETURN_IF_ERROR(runner().sealer().OpenRequest(tx, &request));
        ApplyReadTimeState(now, &request);
        return request;
      });
}

absl::StatusOr<v1::ListAccessRequestsResponse> AccessRequestUseCases::ListAccessRequests(
    const C& c, const v1::ListAccessRequestsRequest& r) {
  std::string tenant;
  if (r.parent() != "tenants/-") {
    ASSIGN_OR_RETURN(tenant, ParseTenantName(r.parent(), "parent"));
  }
  ListQuery q;
  ASSIGN_OR_RETURN(q.conditions, ParseFilter(r.filter(), RequestFilterFields()));
  ASSIGN_OR_RETURN(ListPage page,
                   ListPage::Start(*options_.page_tokens, "ListAccessRequests", c, r.parent(),
                                   r.filter(), r.page_token(), r.page_size(), &q));
  bool has_time = std::any_of(q.conditions.begin(), q.conditions.end(),
                              [](const Condition& cond) { return cond.field == "create_time"; });
  return runner().Read<v1::ListAccessRequestsResponse>(
      c,
      [&](Transaction& tx, const Actor& a,
          absl::Time now) -> absl::StatusOr<v1::ListAccessRequestsResponse> {
        ASSIGN_OR_RETURN(authz::ListScope scope, authz::ListAccessRequests(a, tenant));
        q.tenants = std::move(scope.tenants);
        q.principal = std::move(scope.principal);
        if (!has_time) {
          // "Recent": without a time filter, the last 28 days.
          Condition recent{"create_time", Condition::Op::kGe, "", now - kRecent};
          q.conditions.push_back(recent);
        }
        q.now = now;
        ASSIGN_OR_RETURN(std::vector<v1::AccessRequest> requests,
                         tx.requests().ListAccessRequests(q));
        v1::ListAccessRequestsResponse out;
        out.set_next_page_token(page.Finish(&requests, [](const v1::AccessRequest& last) {
          return Cursor{MicrosKey(last.create_time()), IdOfName(last.name())};
        }));
        for (auto& request : requests) {
          RETURN_IF_ERROR(runner().sealer().OpenRequest(tx, &request));
          ApplyReadTimeState(now, &request);
          *out.add_access_requests() = std::move(request);
        }
        return out;
      });
}

namespace {

struct DecideArgs {
  std::string etag;
  std::string comment;
  // The reviewer's signature; null when the call carries none.
  const v1::DecisionSignature* signature = nullptr;
  // An approval's narrowing (SPEC section 10), and the same as the call
  // sent it: what the signature covers and the audit event shows.
  Narrowing narrowing;
  DecisionToSign sent;

  SignedCall Signed() const { return {etag, signature}; }
};

// ApproveAccessRequestRequest's narrowing fields.
DecideArgs ApproveArgs(const v1::ApproveAccessRequestRequest& r) {
  DecideArgs args;
  args.etag = r.etag();
  args.comment = r.comment();
  args.signature = r.has_signature() ? &r.signature() : nullptr;
  if (r.has_access_duration()) {
    args.narrowing.access_duration = FromProto(r.access_duration());
    args.sent.access_duration = r.access_duration();
  }
  args.narrowing.data_sources.assign(r.data_sources().begin(), r.data_sources().end());
  args.sent.data_sources = args.narrowing.data_sources;
  if (r.has_start_time()) {
    args.narrowing.start_time = FromProto(r.start_time());
    args.sent.start_time = r.start_time();
  }
  return args;
}

}  // namespace

// Approve and Deny share everything but the verdict.
static absl::StatusOr<v1::AccessRequest> DecideIn(const UseCaseRunner& runner, Transaction& tx,
                                                  const CallerIdentity& c, const Actor& a,
                                                  absl::Time now, const TenantChildName& name,
                                                  const DecideArgs& args,
                                                  v1::Decision::Verdict verdict,
                                                  v1::Grant* grant_out) {
  // Permission before existence: only reviewers of some stage get further.
  RETURN_IF_ERROR(authz::DecideAccessRequests(a, name.tenant));
  ASSIGN_OR_RETURN(const v1::AccessRequest as_read,
                   tx.requests().GetAccessRequest(name.tenant, name.id, true));
  RETURN_IF_ERROR(CheckEtag(args.etag, as_read.etag()));
  // Every decision of a sealed tenant writes sealed fields (its comment,
  // the justification its audit event and messages copy): refused with
  // KEY_UNAVAILABLE, nothing written, while its key cannot be used.
  ASSIGN_OR_RETURN(std::optional<VersionKey> key, runner.sealer().KeyForNew(tx, name.tenant));
  v1::AccessRequest request = as_read;
  RETURN_IF_ERROR(runner.sealer().OpenRequest(tx, &request));
  // An approval reads the environment and policy as they are now: whether
  // the customer must also approve is decided from them (a policy change
  // takes effect at once), narrowed sources are checked against the
  // environment, and a grant pins what they say.
  v1::Environment env;
  v1::LockboxPolicy policy;
  if (verdict == v1::Decision::APPROVE) {
    std::string env_id = IdOfName(request.environment());
    ASSIGN_OR_RETURN(env, tx.tenancy().GetEnvironment(name.tenant, env_id, false));
    // Share-locked: the quorum and the signature rule this approval follows
    // are the policy's where its event lands in the log.
    ASSIGN_OR_RETURN(policy, tx.tenancy().GetPolicyForShare(name.tenant));
  }
  const v1::AccessRequest reviewed = request;
  RETURN_IF_ERROR(Decide(a, verdict, args.comment, args.narrowing,
                         verdict == v1::Decision::APPROVE ? &env : nullptr,
                         verdict == v1::Decision::APPROVE ? &policy : nullptr, now, &request));
  // An extension whose grant can no longer be extended (ended, or the
  // policy's max_extensions reached since it was asked) is not approved
  // on: the caller cancels it (ApproveAccessRequest).
  if (verdict == v1::Decision::APPROVE && !request.extends_grant().empty()) {
    RETURN_IF_ERROR(CheckStillExtensible(tx, request, policy, now));
  }
  // Only the customer's stage is proven and signed: the internal review is
  // the provider's own, and an operator's signature would be ignored.
  std::optional<v1::DecisionEvidence> evidence;
  std::string signer_pem;
  // An approval has read the policy already: not read again.
  SignedCall call = args.Signed();
  if (verdict == v1::Decision::APPROVE) call.policy = &policy;
  if (reviewed.stage() == v1::AccessRequest::CUSTOMER_REVIEW) {
    ASSIGN_OR_RETURN(evidence,
                     ProveCustomerDecision(
                         runner, tx, c, a, now, name.tenant, call,
                         [&](const std::string& pem, const v1::DecisionSignature& signature) {
                           // The bytes rebuilt from what the call carries: a signature
                           // over anything else fails.
                           DecisionToSign signed_bytes = args.sent;
                           signed_bytes.request = reviewed.name();
                           signed_bytes.etag = args.etag;
                           signed_bytes.verdict = verdict;
                           signed_bytes.comment = args.comment;
                           signed_bytes.sign_time = signature.sign_time();
                           return VerifyDecisionSignature(pem, signed_bytes, signature.signature());
                         },
                         &signer_pem));
    *request.mutable_decisions(request.decisions_size() - 1)->mutable_evidence() = *evidence;
  }
  v1::AuditEvent e = NewAuditEvent(
      a, verdict == v1::Decision::APPROVE ? "access_request.approve" : "access_request.deny",
      name.tenant, request.name(), now);
  (*e.mutable_details())["stage"] =
      v1::AccessRequest::Stage_Name(request.decisions().rbegin()->stage());
  if (!args.comment.empty()) (*e.mutable_details())["comment"] = args.comment;
  if (evidence) EvidenceDetails(*evidence, a, call, signer_pem, &e);
  if (verdict == v1::Decision::APPROVE) {
    // Each narrowing as sent (and signed), and where the stage's quorum
    // stands after this approval.
    PutNarrowingDetails(args.sent, e.mutable_details());
    const v1::AccessRequest::Stage stage = reviewed.stage();
    (*e.mutable_details())["approvals_counted"] = absl::StrCat(ApprovalsCounted(request, stage));
    (*e.mutable_details())["approvals_required"] = absl::StrCat(ApprovalsRequired(request, stage));
    (*e.mutable_details())["approvals_needed"] = absl::StrCat(
        std::max(0, ApprovalsRequired(request, stage) - ApprovalsCounted(request, stage)));
  }
  if (request.state() == v1::AccessRequest::APPROVED && !request.extends_grant().empty()) {
    // An approved extension moves its grant's end (grant_extensions.h).
    ASSIGN_OR_RETURN(v1::Grant grant, ApplyApprovedExtension(runner, tx, request, now, &e));
    request.set_grant(grant.name());
    if (grant_out != nullptr) *grant_out = grant;
  } else if (request.state() == v1::AccessRequest::APPROVED) {
    std::string grant_id = NewUuid();
    v1::Grant grant = NewGrant(request, env, policy, name.tenant, grant_id, now);
    RETURN_IF_ERROR(tx.grants().InsertGrant(name.tenant, grant_id, &grant));
    request.set_grant(grant.name());
    if (grant_out != nullptr) *grant_out = grant;
    *e.mutable_access_expire_time() = grant.expire_time();
    (*e.mutable_details())["grant"] = grant.name();
    // What the grant pinned, so the log shows what the approval covers.
    std::vector<std::string> pinned, reviewed;
    for (const v1::PinnedDataSource& p : grant.pinned_data_sources()) {
      pinned.push_back(p.id());
      if (p.customer_reviewed()) reviewed.push_back(p.id());
    }
    (*e.mutable_details())["grant_data_sources"] = absl::StrJoin(pinned, ",");
    (*e.mutable_details())["grant_customer_reviewed"] = absl::StrJoin(reviewed, ",");
    (*e.mutable_details())["grant_start_time"] =
        google::protobuf::util::TimeUtil::ToString(grant.start_time());
    // An environment without sources, reviewed as a whole by the customer.
    if (grant.customer_reviewed()) (*e.mutable_details())["grant_customer_reviewed_whole"] = "true";
  }
  v1::AccessRequest stored = Sealer::ChangedRequestForStore(as_read, key, request);
  RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(name.tenant, name.id, &stored));
  request.set_etag(stored.etag());
  SetRequestFields(request, &e);
  RETURN_IF_ERROR(runner.audit_log().Append(tx, &e));
  return request;
}

// The requester hears of every decision; the customer, when it is theirs;
// and when the decision ends a stage, whoever was asked at that stage and
// did not decide hears it no longer needs them.
static absl::Status NotifyDecision(const Sealer& sealer, Transaction& tx,
                                   const v1::AccessRequest& request, const v1::Grant& grant,
                                   absl::Time now) {
  const v1::Grant* made = request.state() == v1::AccessRequest::APPROVED ? &grant : nullptr;
  RETURN_IF_ERROR(NotifyRequest(sealer, tx, RequestEvent::kDecided, request, made, now));
  const bool left_stage = request.state() != v1::AccessRequest::PENDING ||
                          request.decisions().rbegin()->stage() != request.stage();
  if (left_stage) {
    RETURN_IF_ERROR(
        NotifyRequest(sealer, tx, RequestEvent::kNoLongerNeeded, request, nullptr, now));
  }
  if (request.state() == v1::AccessRequest::PENDING &&
      request.stage() == v1::AccessRequest::CUSTOMER_REVIEW) {
    RETURN_IF_ERROR(
        NotifyRequest(sealer, tx, RequestEvent::kCustomerReview, request, nullptr, now));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::ApproveAccessRequest(
    const C& c, const v1::ApproveAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  const DecideArgs args = ApproveArgs(r);
  std::optional<absl::Status> moot;
  absl::StatusOr<v1::AccessRequest> approved = runner().Change<v1::AccessRequest>(
      c, "ApproveAccessRequest", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::DecideAccessRequests(a, name.tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        moot.reset();
        v1::Grant grant;
        absl::StatusOr<v1::AccessRequest> request =
            DecideIn(runner(), tx, c, a, now, name, args, v1::Decision::APPROVE, &grant);
        if (!request.ok() && IsMootExtensionRefusal(request.status())) {
          // Nothing is written yet: the extension is cancelled by the
          // system in this transaction, and the approver still told why.
          moot = request.status();
          return CancelExtensionBySystem(runner(), tx, name.tenant, name.id,
                                         request.status().message(), now);
        }
        if (!request.ok()) return request.status();
        RETURN_IF_ERROR(NotifyDecision(runner().sealer(), tx, *request, grant, now));
        return request;
      });
  // The cancellation is committed; the approval is refused. A retry with
  // the same request_id gets the cancelled extension back.
  if (approved.ok() && moot) return *moot;
  return approved;
}

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::DenyAccessRequest(
    const C& c, const v1::DenyAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  DecideArgs args;
  args.etag = r.etag();
  args.comment = r.comment();
  args.signature = r.has_signature() ? &r.signature() : nullptr;
  return runner().Change<v1::AccessRequest>(
      c, "DenyAccessRequest", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::DecideAccessRequests(a, name.tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        v1::Grant grant;
        ASSIGN_OR_RETURN(v1::AccessRequest request,
                         DecideIn(runner(), tx, c, a, now, name, args, v1::Decision::DENY, &grant));
        RETURN_IF_ERROR(NotifyDecision(runner().sealer(), tx, request, grant, now));
        return request;
      });
}

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::CancelAccessRequest(
    const C& c, const v1::CancelAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  return runner().Change<v1::AccessRequest>(
      c, "CancelAccessRequest", r, r.request_id(),
      [](Transaction&, const Actor& a) { return authz::CancelAccessRequest(a); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        RETURN_IF_ERROR(authz::CancelAccessRequest(a));
        ASSIGN_OR_RETURN(const v1::AccessRequest as_read,
                         tx.requests().GetAccessRequest(name.tenant, name.id, true));
        RETURN_IF_ERROR(CheckEtag(r.etag(), as_read.etag()));
        // Its audit event copies the justification, sealed: refused with
        // KEY_UNAVAILABLE while a sealed tenant's key cannot be used.
        ASSIGN_OR_RETURN(std::optional<VersionKey> key,
                         runner().sealer().KeyForNew(tx, name.tenant));
        v1::AccessRequest request = as_read;
        RETURN_IF_ERROR(runner().sealer().OpenRequest(tx, &request));
        RETURN_IF_ERROR(Cancel(a, now, &request));
        v1::AccessRequest stored = Sealer::ChangedRequestForStore(as_read, key, request);
        RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(name.tenant, name.id, &stored));
        request.set_etag(stored.etag());
        v1::AuditEvent e =
            NewAuditEvent(a, "access_request.cancel", name.tenant, request.name(), now);
        SetRequestFields(request, &e);
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        RETURN_IF_ERROR(NotifyRequest(runner().sealer(), tx, RequestEvent::kNoLongerNeeded, request,
                                      nullptr, now));
        return request;
      });
}

// What time decides. Row claims (FOR UPDATE SKIP LOCKED) make each
// transition happen exactly once however many replicas sweep.
absl::StatusOr<bool> AccessRequestUseCases::ExpireOneRequest() {
  return runner().HandleOneDue(
      [](Transaction& tx, absl::Time now) { return tx.requests().ClaimExpiredRequest(now); },
      [this](Transaction& tx, const ClaimedRow& row, absl::Time now) -> absl::Status {
        ASSIGN_OR_RETURN(const v1::AccessRequest as_read,
                         tx.requests().GetAccessRequest(row.tenant, row.id, true));
        // Expiry runs whatever the tenant's key: what cannot be opened now
        // is kept as stored in the row, and left out of the event and the
        // messages (AuditLog::AppendOrWithhold, NotifyRequest).
        v1::AccessRequest r = as_read;
        RETURN_IF_ERROR(runner().sealer().OpenRequest(tx, &r));
        RETURN_IF_ERROR(RecordExpiry(now, &r));
        v1::AccessRequest stored = Sealer::ChangedRequestForStore(as_read, std::nullopt, r);
        RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(row.tenant, row.id, &stored));
        r.set_etag(stored.etag());
        v1::AuditEvent e =
            NewAuditEvent(SystemActor(), "access_request.expire", row.tenant, r.name(), now);
        SetRequestFields(r, &e);
        RETURN_IF_ERROR(runner().audit_log().AppendOrWithhold(tx, &e));
        RETURN_IF_ERROR(
            NotifyRequest(runner().sealer(), tx, RequestEvent::kExpired, r, nullptr, now));
        return NotifyRequest(runner().sealer(), tx, RequestEvent::kNoLongerNeeded, r, nullptr, now);
      });
}

absl::StatusOr<bool> AccessRequestUseCases::RemindOne() {
  return runner().HandleOneDue(
      [](Transaction& tx, absl::Time now) {
        return tx.requests().ClaimReminder(now, now + kReminderBefore);
      },
      [this](Transaction& tx, const ClaimedRow& row, absl::Time now) -> absl::Status {
        ASSIGN_OR_RETURN(v1::AccessRequest r,
                         tx.requests().GetAccessRequest(row.tenant, row.id, true));
        RETURN_IF_ERROR(tx.requests().MarkReminded(row.tenant, row.id));
        RETURN_IF_ERROR(runner().sealer().OpenRequest(tx, &r));
        ApplyReadTimeState(now, &r);
        return NotifyRequest(runner().sealer(), tx, RequestEvent::kReminder, r, nullptr, now);
      });
}

}  // namespace lockbox
