// NotificationService: what was sent to whom, and what could not be.
#include "server/app/notification_use_cases.h"

#include "server/app/audit_events.h"
#include "server/app/list_page.h"
#include "server/app/request_messages.h"
#include "server/domain/authorization.h"
#include "server/domain/filter.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {

absl::StatusOr<v1::ListNotificationsResponse> NotificationUseCases::ListNotifications(
    const CallerIdentity& c, const v1::ListNotificationsRequest& r) {
  std::string tenant;
  if (!r.parent().empty()) {
    ASSIGN_OR_RETURN(tenant, ParseTenantName(r.parent(), "parent"));
  }
  ListQuery q;
  ASSIGN_OR_RETURN(
      q.conditions,
      ParseFilter(r.filter(),
                  {{"state", FilterField::Type::kEnum, {"PENDING", "DELIVERED", "FAILED"}},
                   {"channel", FilterField::Type::kEnum, {"EMAIL", "WEBHOOK"}},
                   {"event"},
                   {"resource"}}));
  ASSIGN_OR_RETURN(ListPage page,
                   ListPage::Start(*options_.page_tokens, "ListNotifications", c, r.parent(),
                                   r.filter(), r.page_token(), r.page_size(), &q));
  return runner().Read<v1::ListNotificationsResponse>(
      c,
      [&](Transaction& tx, const Actor& a,
          absl::Time) -> absl::StatusOr<v1::ListNotificationsResponse> {
        RETURN_IF_ERROR(authz::ListNotifications(a, tenant));
        if (!tenant.empty()) q.tenants = std::vector<std::string>{tenant};
        ASSIGN_OR_RETURN(std::vector<v1::Notification> items, tx.outbox().ListNotifications(q));
        v1::ListNotificationsResponse out;
        out.set_next_page_token(page.Finish(&items, [](const v1::Notification& last) {
          return Cursor{MicrosKey(last.create_time()), last.idempotency_key()};
        }));
        for (auto& n : items) *out.add_notifications() = std::move(n);
        return out;
      });
}

}  // namespace lockbox
