// AuditService: reading and verifying the hash-chained log.
#include "server/app/change.h"
#include "server/domain/audit_chain.h"
#include "server/domain/filter.h"
#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {

constexpr int kVerifyBatch = 1000;

absl::StatusOr<std::string> AuditTenant(const std::string& parent) {
  if (parent.empty()) return std::string();
  return ParseTenantName(parent, "parent");
}

absl::Status MayReadAudit(const Actor& a, const std::string& tenant) {
  if (a.permissions.Has(Role::kAdmin)) return absl::OkStatus();
  if (!tenant.empty() && a.permissions.IsTenantMember(tenant)) return absl::OkStatus();
  return PermissionDenied(tenant.empty()
                              ? "the global log needs lockbox.admin"
                              : "needs tenant.admin or tenant.auditor of the tenant");
}

}  // namespace

absl::StatusOr<v1::ListAuditEventsResponse> Lockbox::ListAuditEvents(
    const C& c, const v1::ListAuditEventsRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, AuditTenant(r.parent()));
  ListQuery q;
  ASSIGN_OR_RETURN(q.conditions, ParseFilter(r.filter(), {{"action"},
                                                          {"actor"},
                                                          {"access_request"},
                                                          {"environment"},
                                                          {"support_ticket_id"},
                                                          {"event_time", FilterField::Type::kTime}}));
  std::string key = absl::StrCat("ListAuditEvents|", r.parent(), "|", r.filter());
  RETURN_IF_ERROR(StartPage(key, r.page_token(), r.page_size(), &q));
  return Read<v1::ListAuditEventsResponse>(c, [&](Transaction& tx, const Actor& a, absl::Time)
                                                  -> absl::StatusOr<v1::ListAuditEventsResponse> {
    RETURN_IF_ERROR(MayReadAudit(a, tenant));
    int limit = q.limit;
    q.limit = limit + 1;
    ASSIGN_OR_RETURN(std::vector<v1::AuditEvent> events, tx.ListAuditEvents(tenant, q));
    v1::ListAuditEventsResponse out;
    out.set_next_page_token(NextPageToken(page_tokens_, key, limit, &events,
                                          [](const v1::AuditEvent& last) {
      return Cursor{absl::StrCat(last.sequence()), ""};
    }));
    for (auto& e : events) *out.add_audit_events() = std::move(e);
    return out;
  });
}

absl::StatusOr<v1::VerifyAuditLogResponse> Lockbox::VerifyAuditLog(
    const C& c, const v1::VerifyAuditLogRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, AuditTenant(r.parent()));
  return Read<v1::VerifyAuditLogResponse>(c, [&](Transaction& tx, const Actor& a, absl::Time)
                                                 -> absl::StatusOr<v1::VerifyAuditLogResponse> {
    RETURN_IF_ERROR(MayReadAudit(a, tenant));
    v1::VerifyAuditLogResponse out;
    out.set_ok(true);
    std::string previous;
    int64_t expected = 1;
    while (true) {
      ASSIGN_OR_RETURN(std::vector<v1::AuditEvent> batch,
                       tx.ReadAuditLog(tenant, expected - 1, kVerifyBatch));
      for (const v1::AuditEvent& e : batch) {
        std::string problem;
        if (e.sequence() != expected) {
          problem = absl::StrCat("expected sequence ", expected, ", found ", e.sequence(),
                                 ": events are missing");
        } else if (e.previous_hash() != previous) {
          problem = "previous_hash does not match the previous event's hash";
        } else if (ChainHash(previous, e) != e.hash()) {
          problem = "hash does not match the event's contents";
        }
        if (!problem.empty()) {
          out.set_ok(false);
          out.set_first_bad_event(e.name());
          out.set_detail(problem);
          return out;
        }
        previous = e.hash();
        out.set_verified_events(out.verified_events() + 1);
        ++expected;
      }
      if (static_cast<int>(batch.size()) < kVerifyBatch) break;
    }
    out.set_head_hash(previous);
    out.set_detail(absl::StrCat("verified ", out.verified_events(), " events up to head ",
                                previous.empty() ? "(empty log)" : previous));
    return out;
  });
}

}  // namespace lockbox
