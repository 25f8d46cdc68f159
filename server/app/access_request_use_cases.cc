// AccessRequestService: the request's life.
#include "server/app/access_request_use_cases.h"

#include "server/app/audit_events.h"
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
      {"create_time", FilterField::Type::kTime}};
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
        std::string id = NewUuid();
        ASSIGN_OR_RETURN(v1::AccessRequest request,
                         NewAccessRequest(r.access_request(), tenant, id, *env, policy, a, now));
        RETURN_IF_ERROR(tx.requests().InsertAccessRequest(tenant, id, &request));
        v1::AuditEvent e = NewAuditEvent(a, "access_request.create", tenant, request.name(), now);
        SetRequestFields(request, &e);
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        RETURN_IF_ERROR(NotifyRequest(tx, RequestEvent::kCreated, request, nullptr, now));
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
};

}  // namespace

// Approve and Deny share everything but the verdict.
static absl::StatusOr<v1::AccessRequest> DecideIn(const AuditLog& audit_log, Transaction& tx,
                                                  const Actor& a, absl::Time now,
                                                  const TenantChildName& name,
                                                  const DecideArgs& args,
                                                  v1::Decision::Verdict verdict,
                                                  v1::Grant* grant_out) {
  // Permission before existence: only reviewers of some stage get further.
  RETURN_IF_ERROR(authz::DecideAccessRequests(a, name.tenant));
  ASSIGN_OR_RETURN(v1::AccessRequest request,
                   tx.requests().GetAccessRequest(name.tenant, name.id, true));
  RETURN_IF_ERROR(CheckEtag(args.etag, request.etag()));
  bool needs_customer = false;
  if (verdict == v1::Decision::APPROVE && request.stage() == v1::AccessRequest::INTERNAL_REVIEW) {
    // Whether the customer must also approve is decided now, from the
    // current policy and environment: a policy change takes effect at once.
    std::string env_id = IdOfName(request.environment());
    ASSIGN_OR_RETURN(v1::Environment env, tx.tenancy().GetEnvironment(name.tenant, env_id, false));
    ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(name.tenant, false));
    needs_customer = NeedsCustomerReview(policy, env, request.data_sources());
  }
  RETURN_IF_ERROR(Decide(a, verdict, args.comment, needs_customer, now, &request));
  v1::AuditEvent e = NewAuditEvent(
      a, verdict == v1::Decision::APPROVE ? "access_request.approve" : "access_request.deny",
      name.tenant, request.name(), now);
  (*e.mutable_details())["stage"] =
      v1::AccessRequest::Stage_Name(request.decisions().rbegin()->stage());
  if (!args.comment.empty()) (*e.mutable_details())["comment"] = args.comment;
  if (request.state() == v1::AccessRequest::APPROVED) {
    std::string grant_id = NewUuid();
    v1::Grant grant = NewGrant(request, name.tenant, grant_id, now);
    RETURN_IF_ERROR(tx.grants().InsertGrant(name.tenant, grant_id, &grant));
    request.set_grant(grant.name());
    if (grant_out != nullptr) *grant_out = grant;
    *e.mutable_access_expire_time() = grant.expire_time();
    (*e.mutable_details())["grant"] = grant.name();
  }
  RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(name.tenant, name.id, &request));
  SetRequestFields(request, &e);
  RETURN_IF_ERROR(audit_log.Append(tx, &e));
  return request;
}

// The requester hears of every decision; the customer, when it is theirs.
static absl::Status NotifyDecision(Transaction& tx, const v1::AccessRequest& request,
                                   const v1::Grant& grant, absl::Time now) {
  const v1::Grant* made = request.state() == v1::AccessRequest::APPROVED ? &grant : nullptr;
  RETURN_IF_ERROR(NotifyRequest(tx, RequestEvent::kDecided, request, made, now));
  if (request.state() == v1::AccessRequest::PENDING &&
      request.stage() == v1::AccessRequest::CUSTOMER_REVIEW) {
    RETURN_IF_ERROR(NotifyRequest(tx, RequestEvent::kCustomerReview, request, nullptr, now));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::ApproveAccessRequest(
    const C& c, const v1::ApproveAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  DecideArgs args{r.etag(), r.comment()};
  return runner().Change<v1::AccessRequest>(
      c, "ApproveAccessRequest", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::DecideAccessRequests(a, name.tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        v1::Grant grant;
        ASSIGN_OR_RETURN(v1::AccessRequest request, DecideIn(runner().audit_log(), tx, a, now, name,
                                                             args, v1::Decision::APPROVE, &grant));
        RETURN_IF_ERROR(NotifyDecision(tx, request, grant, now));
        return request;
      });
}

absl::StatusOr<v1::AccessRequest> AccessRequestUseCases::DenyAccessRequest(
    const C& c, const v1::DenyAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  DecideArgs args{r.etag(), r.comment()};
  return runner().Change<v1::AccessRequest>(
      c, "DenyAccessRequest", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::DecideAccessRequests(a, name.tenant); },
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AccessRequest> {
        v1::Grant grant;
        ASSIGN_OR_RETURN(v1::AccessRequest request, DecideIn(runner().audit_log(), tx, a, now, name,
                                                             args, v1::Decision::DENY, &grant));
        RETURN_IF_ERROR(NotifyDecision(tx, request, grant, now));
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
        ASSIGN_OR_RETURN(v1::AccessRequest request,
                         tx.requests().GetAccessRequest(name.tenant, name.id, true));
        RETURN_IF_ERROR(CheckEtag(r.etag(), request.etag()));
        RETURN_IF_ERROR(Cancel(a, now, &request));
        RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(name.tenant, name.id, &request));
        v1::AuditEvent e =
            NewAuditEvent(a, "access_request.cancel", name.tenant, request.name(), now);
        SetRequestFields(request, &e);
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        return request;
      });
}

// What time decides. Row claims (FOR UPDATE SKIP LOCKED) make each
// transition happen exactly once however many replicas sweep.
absl::StatusOr<bool> AccessRequestUseCases::ExpireOneRequest() {
  return runner().HandleOneDue(
      [](Transaction& tx, absl::Time now) { return tx.requests().ClaimExpiredRequest(now); },
      [this](Transaction& tx, const ClaimedRow& row, absl::Time now) -> absl::Status {
        ASSIGN_OR_RETURN(v1::AccessRequest r,
                         tx.requests().GetAccessRequest(row.tenant, row.id, true));
        RETURN_IF_ERROR(RecordExpiry(now, &r));
        RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(row.tenant, row.id, &r));
        v1::AuditEvent e =
            NewAuditEvent(SystemActor(), "access_request.expire", row.tenant, r.name(), now);
        SetRequestFields(r, &e);
        RETURN_IF_ERROR(runner().audit_log().Append(tx, &e));
        return NotifyRequest(tx, RequestEvent::kExpired, r, nullptr, now);
      });
}

absl::StatusOr<bool> AccessRequestUseCases::RemindOne() {
  return runner().HandleOneDue(
      [](Transaction& tx, absl::Time now) {
        return tx.requests().ClaimReminder(now, now + kReminderBefore);
      },
      [](Transaction& tx, const ClaimedRow& row, absl::Time now) -> absl::Status {
        ASSIGN_OR_RETURN(v1::AccessRequest r,
                         tx.requests().GetAccessRequest(row.tenant, row.id, true));
        RETURN_IF_ERROR(tx.requests().MarkReminded(row.tenant, row.id));
        ApplyReadTimeState(now, &r);
        return NotifyRequest(tx, RequestEvent::kReminder, r, nullptr, now);
      });
}

}  // namespace lockbox
