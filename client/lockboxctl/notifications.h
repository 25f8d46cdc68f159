// lockboxctl notifications: what Lockbox sent, and what it could not.
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_NOTIFICATIONS_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_NOTIFICATIONS_H_

#include <CLI/CLI.hpp>

#include "common.h"

namespace lockbox::ctl {

void AddNotificationCommands(CLI::App& app, Context& ctx);

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_NOTIFICATIONS_H_
