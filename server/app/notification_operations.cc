// NotificationService: what was sent to whom, and what could not be.
#include "server/app/change.h"
#include "server/domain/filter.h"
#include "server/domain/lifecycle.h"

namespace lockbox {

absl::StatusOr<v1::ListNotificationsResponse> Lockbox::ListNotifications(
    const C& c, const v1::ListNotificationsRequest& r) {
  std::string tenant;
  if (!r.parent().empty()) {
    ASSIGN_OR_RETURN(tenant, ParseTenantName(r.parent(), "parent"));
  }
  ListQuery q;
  ASSIGN_OR_RETURN(q.conditions,
                   ParseFilter(r.filter(), {{"state", FilterField::Type::kEnum,
                                             {"PENDING", "DELIVERED", "FAILED"}},
                                            {"channel", FilterField::Type::kEnum,
                                             {"EMAIL", "WEBHOOK"}},
                                            {"event"},
                                            {"resource"}}));
  std::string key = absl::StrCat("ListNotifications|", r.parent(), "|", r.filter());
  RETURN_IF_ERROR(StartPage(key, r.page_token(), r.page_size(), &q));
  return Read<v1::ListNotificationsResponse>(
      c, [&](Transaction& tx, const Actor& a, absl::Time)
             -> absl::StatusOr<v1::ListNotificationsResponse> {
        bool admin = a.permissions.Has(Role::kAdmin);
        if (tenant.empty()) {
          if (!admin) return PermissionDenied("every tenant's notifications need lockbox.admin");
        } else {
          if (!admin && !a.permissions.IsTenantMember(tenant)) {
            return PermissionDenied("needs tenant.admin or tenant.auditor of the tenant");
          }
          q.tenants = std::vector<std::string>{tenant};
        }
        int limit = q.limit;
        q.limit = limit + 1;
        ASSIGN_OR_RETURN(std::vector<v1::Notification> items, tx.outbox().ListNotifications(q));
        v1::ListNotificationsResponse out;
        out.set_next_page_token(NextPageToken(page_tokens_, key, limit, &items,
                                              [](const v1::Notification& last) {
          return Cursor{MicrosKey(last.create_time()), last.idempotency_key()};
        }));
        for (auto& n : items) *out.add_notifications() = std::move(n);
        return out;
      });
}

}  // namespace lockbox
