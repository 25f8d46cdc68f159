// AccessRequestService: the request's life.
#include "server/app/change.h"
#include "server/domain/filter.h"
#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {

constexpr absl::Duration kRecent = absl::Hours(24 * 28);

// Whether the actor may read some requests of the tenant. Engineers who are
// not reviewers see only their own requests (checked on the row).
bool MayReadRequests(const Actor& a, const std::string& tenant) {
  const Permissions& p = a.permissions;
  return p.Has(Role::kAdmin) || p.Has(Role::kReviewer) || p.Has(Role::kEngineer) ||
         p.IsTenantMember(tenant);
}

bool MayReadAllOf(const Actor& a, const std::string& tenant) {
  const Permissions& p = a.permissions;
  return p.Has(Role::kAdmin) || p.Has(Role::kReviewer) || p.IsTenantMember(tenant);
}

const std::vector<FilterField>& RequestFilterFields() {
  static const std::vector<FilterField> kFields = {
      {"state", FilterField::Type::kEnum, {"PENDING", "APPROVED", "DENIED", "EXPIRED", "CANCELLED"}},
      {"stage", FilterField::Type::kEnum, {"INTERNAL_REVIEW", "CUSTOMER_REVIEW"}},
      {"environment"},
      {"requester"},
      {"support_ticket_id"},
      {"create_time", FilterField::Type::kTime}};
  return kFields;
}

}  // namespace

absl::StatusOr<v1::AccessRequest> Lockbox::CreateAccessRequest(
    const C& c, const v1::CreateAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseTenantName(r.parent(), "parent"));
  ASSIGN_OR_RETURN(TenantChildName env_name,
                   ParseChildName(r.access_request().environment(), "environments",
                                  "access_request.environment"));
  if (env_name.tenant != tenant) {
    return InvalidField("access_request.environment", "NOT_ALLOWED",
                        "must be an environment of the parent tenant");
  }
  return Change<v1::AccessRequest>(c, "CreateAccessRequest", r, r.request_id(),
                                   [&](Transaction& tx, const Actor& a, absl::Time now)
                                       -> absl::StatusOr<v1::AccessRequest> {
    if (!a.permissions.Has(Role::kEngineer)) {
      return PermissionDenied("creating an access request needs operator.engineer");
    }
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
    RETURN_IF_ERROR(audit_log_.Append(tx, &e));
    RETURN_IF_ERROR(Notify(tx, RequestEvent::kCreated, request, nullptr, now));
    return request;
  });
}

absl::StatusOr<v1::AccessRequest> Lockbox::GetAccessRequest(
    const C& c, const v1::GetAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  return Read<v1::AccessRequest>(c, [&](Transaction& tx, const Actor& a, absl::Time now)
                                        -> absl::StatusOr<v1::AccessRequest> {
    if (!MayReadRequests(a, name.tenant)) {
      return PermissionDenied("reading requests needs a provider role or a role in the tenant");
    }
    ASSIGN_OR_RETURN(v1::AccessRequest request,
                     tx.requests().GetAccessRequest(name.tenant, name.id, false));
    if (!MayReadAllOf(a, name.tenant) && request.requester() != a.principal.spiffe_id) {
      return PermissionDenied("engineers may read only their own requests");
    }
    ApplyReadTimeState(now, &request);
    return request;
  });
}

absl::StatusOr<v1::ListAccessRequestsResponse> Lockbox::ListAccessRequests(
    const C& c, const v1::ListAccessRequestsRequest& r) {
  std::string tenant;
  if (r.parent() != "tenants/-") {
    ASSIGN_OR_RETURN(tenant, ParseTenantName(r.parent(), "parent"));
  }
  ListQuery q;
  ASSIGN_OR_RETURN(q.conditions, ParseFilter(r.filter(), RequestFilterFields()));
  std::string key =
      absl::StrCat("ListAccessRequests|", r.parent(), "|", r.filter(), "|", c.spiffe_id);
  RETURN_IF_ERROR(StartPage(key, r.page_token(), r.page_size(), &q));
  bool has_time = std::any_of(q.conditions.begin(), q.conditions.end(),
                              [](const Condition& cond) { return cond.field == "create_time"; });
  return Read<v1::ListAccessRequestsResponse>(
      c, [&](Transaction& tx, const Actor& a, absl::Time now)
             -> absl::StatusOr<v1::ListAccessRequestsResponse> {
        const Permissions& p = a.permissions;
        bool everything = p.Has(Role::kAdmin) || p.Has(Role::kReviewer);
        if (!tenant.empty()) {
          if (!MayReadRequests(a, tenant)) {
            return PermissionDenied("reading requests needs a provider role or a role in the tenant");
          }
          q.tenants = std::vector<std::string>{tenant};
          if (!MayReadAllOf(a, tenant)) q.principal = a.principal.spiffe_id;
        } else if (!everything) {
          if (p.Has(Role::kEngineer)) {
            q.principal = a.principal.spiffe_id;
          } else if (!p.Tenants().empty()) {
            q.tenants = p.Tenants();
          } else {
            return PermissionDenied("reading requests needs a provider role or a tenant role");
          }
        }
        if (!has_time) {
          // "Recent": without a time filter, the last 28 days.
          Condition recent{"create_time", Condition::Op::kGe, "", now - kRecent};
          q.conditions.push_back(recent);
        }
        q.now = now;
        int limit = q.limit;
        q.limit = limit + 1;
        ASSIGN_OR_RETURN(std::vector<v1::AccessRequest> requests,
                         tx.requests().ListAccessRequests(q));
        v1::ListAccessRequestsResponse out;
        out.set_next_page_token(NextPageToken(page_tokens_, key, limit, &requests,
                                              [](const v1::AccessRequest& last) {
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
  if (!a.permissions.Has(Role::kReviewer) &&
      !a.permissions.HasInTenant(Role::kTenantAdmin, name.tenant)) {
    return PermissionDenied(
        "deciding needs operator.reviewer or tenant.admin of the request's tenant");
  }
  ASSIGN_OR_RETURN(v1::AccessRequest request,
                   tx.requests().GetAccessRequest(name.tenant, name.id, true));
  RETURN_IF_ERROR(CheckEtag(args.etag, request.etag()));
  bool needs_customer = false;
  if (verdict == v1::Decision::APPROVE && request.stage() == v1::AccessRequest::INTERNAL_REVIEW) {
    // Whether the customer must also approve is decided now, from the
    // current policy and environment: a policy change takes effect at once.
    std::string env_id = request.environment().substr(request.environment().rfind('/') + 1);
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

absl::Status Lockbox::NotifyDecision(Transaction& tx, const v1::AccessRequest& request,
                                     const v1::Grant& grant, absl::Time now) {
  // The requester hears of every decision; the customer, when it is theirs.
  const v1::Grant* made = request.state() == v1::AccessRequest::APPROVED ? &grant : nullptr;
  RETURN_IF_ERROR(Notify(tx, RequestEvent::kDecided, request, made, now));
  if (request.state() == v1::AccessRequest::PENDING &&
      request.stage() == v1::AccessRequest::CUSTOMER_REVIEW) {
    RETURN_IF_ERROR(Notify(tx, RequestEvent::kCustomerReview, request, nullptr, now));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::AccessRequest> Lockbox::ApproveAccessRequest(
    const C& c, const v1::ApproveAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  DecideArgs args{r.etag(), r.comment()};
  return Change<v1::AccessRequest>(c, "ApproveAccessRequest", r, r.request_id(),
                                   [&](Transaction& tx, const Actor& a, absl::Time now)
                                       -> absl::StatusOr<v1::AccessRequest> {
    v1::Grant grant;
    ASSIGN_OR_RETURN(v1::AccessRequest request,
                     DecideIn(audit_log_, tx, a, now, name, args, v1::Decision::APPROVE, &grant));
    RETURN_IF_ERROR(NotifyDecision(tx, request, grant, now));
    return request;
  });
}

absl::StatusOr<v1::AccessRequest> Lockbox::DenyAccessRequest(
    const C& c, const v1::DenyAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  DecideArgs args{r.etag(), r.comment()};
  return Change<v1::AccessRequest>(c, "DenyAccessRequest", r, r.request_id(),
                                   [&](Transaction& tx, const Actor& a, absl::Time now)
                                       -> absl::StatusOr<v1::AccessRequest> {
    v1::Grant grant;
    ASSIGN_OR_RETURN(v1::AccessRequest request,
                     DecideIn(audit_log_, tx, a, now, name, args, v1::Decision::DENY, &grant));
    RETURN_IF_ERROR(NotifyDecision(tx, request, grant, now));
    return request;
  });
}

absl::StatusOr<v1::AccessRequest> Lockbox::CancelAccessRequest(
    const C& c, const v1::CancelAccessRequestRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseChildName(r.name(), "accessRequests", "name"));
  return Change<v1::AccessRequest>(c, "CancelAccessRequest", r, r.request_id(),
                                   [&](Transaction& tx, const Actor& a, absl::Time now)
                                       -> absl::StatusOr<v1::AccessRequest> {
    if (!a.permissions.Has(Role::kEngineer)) {
      return PermissionDenied("only the requester (operator.engineer) can cancel");
    }
    ASSIGN_OR_RETURN(v1::AccessRequest request,
                     tx.requests().GetAccessRequest(name.tenant, name.id, true));
    RETURN_IF_ERROR(CheckEtag(r.etag(), request.etag()));
    RETURN_IF_ERROR(Cancel(a, now, &request));
    RETURN_IF_ERROR(tx.requests().UpdateAccessRequest(name.tenant, name.id, &request));
    v1::AuditEvent e = NewAuditEvent(a, "access_request.cancel", name.tenant, request.name(), now);
    SetRequestFields(request, &e);
    RETURN_IF_ERROR(audit_log_.Append(tx, &e));
    return request;
  });
}

}  // namespace lockbox
