// lockboxctl tenants, policy, environments and bindings: the set-up of a
// tenant and of who may do what.
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_TENANCY_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_TENANCY_H_

#include <CLI/CLI.hpp>

#include "common.h"

namespace lockbox::ctl {

void AddTenancyCommands(CLI::App& app, Context& ctx);

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_TENANCY_H_
