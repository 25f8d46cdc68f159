#include "server/app/lockbox.h"

#include "server/observe/log.h"

#include <cstdio>

#include "server/app/change.h"
#include "server/domain/lifecycle.h"

namespace lockbox {

Lockbox::Lockbox(LockboxOptions options)
    : options_(std::move(options)),
      page_tokens_(options_.page_token_key),
      audit_log_(options_.audit_signer, options_.audit_checkpoint_events) {}

absl::StatusOr<Actor> Lockbox::Authenticate(Transaction& tx, const CallerIdentity& c) {
  if (c.spiffe_id.empty()) {
    return Error(absl::StatusCode::kUnauthenticated, reason::kUnauthenticated,
                 "a client certificate with a SPIFFE ID is required");
  }
  ASSIGN_OR_RETURN(Principal caller, ParseSpiffeId(c.spiffe_id, options_.trust_domain));
  ASSIGN_OR_RETURN(std::vector<Binding> bindings, tx.tenancy().BindingsOf(caller.spiffe_id));
  Actor actor{caller, std::nullopt, Permissions(std::move(bindings))};
  if (c.on_behalf_of.empty()) return actor;

  if (!actor.permissions.Has(Role::kPortal)) {
    return Error(absl::StatusCode::kPermissionDenied, reason::kOnBehalfOfRefused,
                 "only a service.portal caller may act on behalf of a user");
  }
  auto user = ParseSpiffeId(c.on_behalf_of, options_.trust_domain, "x-lockbox-on-behalf-of");
  if (!user.ok() || user->kind != Principal::Kind::kTenantUser) {
    return Error(absl::StatusCode::kPermissionDenied, reason::kOnBehalfOfRefused,
                 "x-lockbox-on-behalf-of must name a tenant user of this trust domain");
  }
  ASSIGN_OR_RETURN(std::vector<Binding> user_bindings, tx.tenancy().BindingsOf(user->spiffe_id));
  return Actor{*user, caller, Permissions(std::move(user_bindings))};
}

void Lockbox::AuditRefusal(const CallerIdentity& c, const absl::Status& refusal) {
  absl::Status recorded = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    std::string tenant;
    auto claimed = ParseSpiffeId(c.on_behalf_of, options_.trust_domain, "on_behalf_of");
    if (claimed.ok() && !claimed->tenant.empty() && tx.tenancy().GetTenant(claimed->tenant).ok()) {
      tenant = claimed->tenant;
    }
    Actor caller{Principal{c.spiffe_id, Principal::Kind::kService, "", ""}, std::nullopt,
                 Permissions()};
    absl::Time now = options_.clock->Now();
    v1::AuditEvent e = NewAuditEvent(caller, "security.on_behalf_of_refused", tenant,
                                     tenant.empty() ? "" : TenantName(tenant), now);
    (*e.mutable_details())["claimed_user"] = c.on_behalf_of.substr(0, 512);
    (*e.mutable_details())["reason"] = std::string(refusal.message());
    return audit_log_.Append(tx, &e);
  });
  if (!recorded.ok()) {
    Log("error", "auditing a refusal failed", {{"error", std::string(recorded.message())}});
  }
}

absl::Status Lockbox::StartPage(absl::string_view query_key, const std::string& page_token,
                                int page_size, ListQuery* query) {
  ASSIGN_OR_RETURN(query->limit, EffectivePageSize(page_size));
  if (!page_token.empty()) {
    ASSIGN_OR_RETURN(Cursor cursor, page_tokens_.Decode(query_key, page_token));
    query->after = std::move(cursor);
  }
  return absl::OkStatus();
}

absl::Status Lockbox::EnsureBootstrapAdmin(const std::string& spiffe_id) {
  ASSIGN_OR_RETURN(Principal admin,
                   ParseSpiffeId(spiffe_id, options_.trust_domain, "--bootstrap-admin"));
  if (admin.kind != Principal::Kind::kOperator) {
    return InvalidField("--bootstrap-admin", "NOT_ALLOWED",
                        "must be an operator: spiffe://<trust-domain>/operator/<user>");
  }
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<Binding> bindings, tx.tenancy().BindingsOf(spiffe_id));
    for (const Binding& b : bindings) {
      if (b.role == Role::kAdmin) return absl::OkStatus();
    }
    absl::Time now = options_.clock->Now();
    std::string id = NewUuid();
    v1::RoleBinding binding;
    binding.set_name(absl::StrCat("roleBindings/", id));
    binding.set_principal(spiffe_id);
    binding.set_role(std::string(RoleName(Role::kAdmin)));
    *binding.mutable_create_time() = ToProto(now);
    RETURN_IF_ERROR(tx.tenancy().InsertRoleBinding(id, binding));
    Actor system{Principal{"lockboxd:bootstrap", Principal::Kind::kService, "", "lockboxd"},
                 std::nullopt, Permissions()};
    v1::AuditEvent event = NewAuditEvent(system, "role_binding.create", "", binding.name(), now);
    (*event.mutable_details())["principal"] = spiffe_id;
    (*event.mutable_details())["role"] = binding.role();
    return audit_log_.Append(tx, &event);
  });
  // Another replica starting at the same moment made the same binding.
  if (absl::IsAlreadyExists(status)) return absl::OkStatus();
  return status;
}

v1::AuditEvent NewAuditEvent(const Actor& actor, absl::string_view action,
                             absl::string_view tenant, absl::string_view resource,
                             absl::Time now) {
  v1::AuditEvent e;
  *e.mutable_event_time() = ToProto(now);
  e.set_tenant(std::string(tenant));
  e.set_actor(actor.principal.spiffe_id);
  if (actor.via) e.set_via(actor.via->spiffe_id);
  e.set_action(std::string(action));
  e.set_resource(std::string(resource));
  return e;
}

void SetRequestFields(const v1::AccessRequest& r, v1::AuditEvent* e) {
  e->set_access_request(r.name());
  *e->mutable_request_create_time() = r.create_time();
  e->set_operator_user_id(r.requester());
  e->set_request_state(r.state());
  e->set_support_ticket_id(r.support_ticket_id());
  *e->mutable_request_expire_time() = r.expire_time();
  e->set_environment(r.environment());
  e->set_justification(r.justification());
}

}  // namespace lockbox
