// lockboxctl breakglass open, list and review: emergency access (SPEC
// section 10), opened at once by operator.breakglass engineers and reviewed
// afterwards by the customer's tenant admins.
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_BREAKGLASS_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_BREAKGLASS_H_

#include <CLI/CLI.hpp>

#include "common.h"

namespace lockbox::ctl {

void AddBreakGlassCommands(CLI::App& app, Context& ctx);

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_BREAKGLASS_H_
