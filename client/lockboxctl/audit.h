// lockboxctl audit: list, verify (on the server or offline against an
// export), export, public-key and checkpoint.
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_AUDIT_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_AUDIT_H_

#include <CLI/CLI.hpp>

#include "common.h"

namespace lockbox::ctl {

void AddAuditCommands(CLI::App& app, Context& ctx);

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_AUDIT_H_
