#include "server/app/audit_events.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "server/domain/lifecycle.h"

namespace lockbox {

v1::AuditEvent NewAuditEvent(const Actor& actor, absl::string_view action, absl::string_view tenant,
                             absl::string_view resource, absl::Time now) {
  v1::AuditEvent e;
  *e.mutable_event_time() = ToProto(now);
  e.set_tenant(std::string(tenant));
  e.set_actor(actor.principal.spiffe_id);
  if (actor.via) e.set_via(actor.via->spiffe_id);
  e.set_action(std::string(action));
  e.set_resource(std::string(resource));
  return e;
}

Actor SystemActor() {
  return Actor{Principal{"lockboxd", Principal::Kind::kService, "", "lockboxd"}, std::nullopt,
               Permissions()};
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
  // A sealed request read while its key was unavailable: the event says
  // what it could not copy.
  if (!r.unavailable_fields().empty()) {
    (*e->mutable_details())["withheld"] = absl::StrJoin(r.unavailable_fields(), ",");
  }
}

void SetRequestScopeDetails(const v1::AccessRequest& r, v1::AuditEvent* e) {
  using google::protobuf::util::TimeUtil;
  auto& d = *e->mutable_details();
  d["access_duration"] = TimeUtil::ToString(r.access_duration());
  d["data_sources"] = absl::StrJoin(r.data_sources(), ",");
  if (r.has_start_time()) d["start_time"] = TimeUtil::ToString(r.start_time());
  d["internal_approvals_required"] = absl::StrCat(r.internal_approvals_required());
  d["customer_approvals_required"] = absl::StrCat(r.customer_approvals_required());
}

}  // namespace lockbox
