#include "notifications.h"

#include <iostream>
#include <memory>
#include <string>

namespace lockbox::ctl {
namespace {

void PrintNotifications(const v1::ListNotificationsResponse& resp) {
  Table t({"CREATED", "CHANNEL", "RECIPIENT", "EVENT", "STATE", "ATTEMPTS", "LAST ERROR"});
  for (const auto& n : resp.notifications()) {
    t.Add({Time(n.create_time()), v1::Notification::Channel_Name(n.channel()), n.recipient(),
           n.event(), v1::Notification::State_Name(n.state()), std::to_string(n.attempts()),
           n.last_error().empty() ? "-" : n.last_error()});
  }
  t.Print();
}

}  // namespace

void AddNotificationCommands(CLI::App& app, Context& ctx) {
  auto* notes = app.add_subcommand("notifications", "What Lockbox sent, and what it could not");
  notes->require_subcommand(1);
  struct Flags {
    std::string tenant, filter;
    bool failed = false;
  };
  auto f = std::make_shared<Flags>();
  auto* l = notes->add_subcommand("list", "List notifications, newest first");
  l->add_option("TENANT", f->tenant, "Tenant ID, or - for every tenant (lockbox.admin)")
      ->required();
  l->add_option("--filter", f->filter, "e.g. channel = WEBHOOK AND state = PENDING");
  l->add_flag("--failed", f->failed, "Only those that could not be delivered");
  OnRun(ctx, l, [&ctx, f](Client& cl) {
    v1::ListNotificationsRequest r;
    if (f->tenant != "-") r.set_parent(TenantName(f->tenant));
    std::string filter = f->filter;
    if (f->failed) filter = (filter.empty() ? "" : filter + " AND ") + "state = FAILED";
    r.set_filter(filter);
    r.set_page_size(1000);
    return Show(ctx, cl.ListNotifications(r), PrintNotifications);
  });
}

}  // namespace lockbox::ctl
