// lockboxctl grants, grant, release, revoke and check: access once granted.
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_GRANTS_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_GRANTS_H_

#include <CLI/CLI.hpp>

#include "common.h"

namespace lockbox::ctl {

void AddGrantCommands(CLI::App& app, Context& ctx);

// One grant as a one-row table, then its full name (also what --wait prints).
void PrintGrant(const v1::Grant& g);

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_GRANTS_H_
