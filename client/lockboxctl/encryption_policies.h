// lockboxctl encryption-policy: a tenant's customer-managed keys (create,
// get, list, update, disable, enable, rotate), for the tenant's tenant.admin
// (tenant.auditor reads).
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_ENCRYPTION_POLICIES_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_ENCRYPTION_POLICIES_H_

#include <CLI/CLI.hpp>

#include "common.h"

namespace lockbox::ctl {

void AddEncryptionPolicyCommands(CLI::App& app, Context& ctx);

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_ENCRYPTION_POLICIES_H_
